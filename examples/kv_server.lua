-- kv_server.lua: a line-based key-value server showing read_line.
--
--   nexus examples/kv_server.lua [port] [host]
--
-- Prints "listening <port>" when ready. Commands, one per line ("\n" or
-- "\r\n"), answered in order (so clients may pipeline them):
--   SET key value   -> OK
--   GET key         -> VALUE value | NOT_FOUND
--   DEL key         -> DELETED | NOT_FOUND
--   COUNT           -> COUNT n
--   QUIT            -> BYE, then the server closes the connection
-- A line over 1024 bytes gets "ERROR line too long" and the connection is
-- closed; a client idle for IDLE seconds is dropped.
local nexus = require "nexus"

local port = tonumber(arg and arg[1]) or 0
local host = arg and arg[2] or "127.0.0.1"
local IDLE = tonumber(os.getenv("KV_IDLE")) or 60
local MAX_LINE = 1024

local store, nkeys = {}, 0

local commands = {}
function commands.SET(key, value)
  if not key or not value then return "ERROR usage: SET key value" end
  if store[key] == nil then nkeys = nkeys + 1 end
  store[key] = value
  return "OK"
end
function commands.GET(key)
  local v = store[key or ""]
  return v and "VALUE " .. v or "NOT_FOUND"
end
function commands.DEL(key)
  if store[key or ""] == nil then return "NOT_FOUND" end
  store[key] = nil
  nkeys = nkeys - 1
  return "DELETED"
end
function commands.COUNT() return "COUNT " .. nkeys end

local function session(s)
  while true do
    local ok, line, err = nexus.timeout(IDLE, s.read_line, s, MAX_LINE)
    if not ok then break end                         -- idle too long
    if not line then
      if err == "too long" then s:write("ERROR line too long\r\n") end
      break                                          -- eof, reset, ...
    end
    local cmd, key, value = line:match("^(%u+)%s*(%S*)%s*(.*)$")
    if cmd == "QUIT" then
      s:write("BYE\r\n")
      break
    end
    local fn = commands[cmd or ""]
    local reply = fn and fn(key ~= "" and key or nil, value ~= "" and value or nil)
      or "ERROR unknown command"
    if not s:write(reply .. "\r\n") then break end
  end
  s:close()
end

local ln = assert(nexus.tcp.listen(host, port))
local _, _, bound = ln:local_addr()
print("listening " .. bound)
io.stdout:flush()

while true do
  local s, err = ln:accept()
  if s then
    nexus.spawn(session, s)
  else
    io.stderr:write("kv_server: accept: ", err, "\n")
    nexus.sleep(0.01)
  end
end

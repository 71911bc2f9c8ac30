-- bench/http_server_nexus_tcp.lua PORT: an information row of the HTTP
-- server benchmark, not an HTTP server: keep-alive GET answering written
-- by hand on nexus.tcp streams (a task per connection, stream:read, the
-- request head found with string.find "\r\n\r\n", the request line
-- matched, a fixed response written per request; no header table, no
-- request body, no parser). What nexus's streams and tasks cost for this
-- traffic, below which nexus.http.listen cannot go. Prints "listening
-- <port>" once ready (PORT 0 = any free port).
local nexus = require "nexus"
local port = tonumber(arg[1]) or 0

local ok = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"
local missing = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nnot found\n"
local find, sub = string.find, string.sub

local function session(s)
  s:set_nodelay(true)
  local buf = ""
  while true do
    local data = s:read(65536)
    if not data then break end
    buf = buf == "" and data or buf .. data
    local out, pos = {}, 1
    while true do
      local e = find(buf, "\r\n\r\n", pos, true)
      if not e then break end
      out[#out + 1] = find(buf, "^GET / HTTP/1%.1\r\n", pos) and ok or missing
      pos = e + 4
    end
    buf = pos > #buf and "" or sub(buf, pos)
    if #out > 0 and not s:write(#out == 1 and out[1] or table.concat(out)) then break end
  end
  s:close()
end

nexus.run(function()
  local ln = assert(nexus.tcp.listen("127.0.0.1", port, { backlog = 511 }))
  local addr, _, bound = ln:local_addr()
  bound = tonumber(bound) or tonumber(tostring(addr):match(":(%d+)$"))
  io.stdout:write("listening ", assert(bound, "no port in local_addr()"), "\n")
  io.stdout:flush()
  while true do
    local s, err = ln:accept()
    if not s then error("accept: " .. tostring(err)) end
    nexus.spawn(session, s)
  end
end)

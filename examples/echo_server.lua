-- echo_server.lua: a TCP echo server, one task per connection.
--
--   nexus examples/echo_server.lua [port] [host]
--
-- Prints "listening <port>" once it accepts connections (port 0, the
-- default, picks a free one) and runs until it is killed (SIGTERM, SIGINT).
local nexus = require "nexus"

local port = tonumber(arg and arg[1]) or 0
local host = arg and arg[2] or "127.0.0.1"

local ln = assert(nexus.tcp.listen(host, port, { backlog = 4096 }))
local _, _, bound = ln:local_addr()
print("listening " .. bound)
io.stdout:flush()

-- Whatever arrives goes back: read returns what is buffered (one read
-- syscall's worth), write suspends only when the peer does not keep up.
local function session(s)
  while true do
    local data = s:read()
    if not data or not s:write(data) then break end
  end
  s:close()
end

while true do
  local s, err = ln:accept()
  if s then
    nexus.spawn(session, s)
  else
    -- out of descriptors, say (libuv then drops the pending connections)
    io.stderr:write("echo_server: accept: ", err, "\n")
    nexus.sleep(0.01)
  end
end

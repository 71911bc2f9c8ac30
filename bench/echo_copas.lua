-- bench/echo_copas.lua PORT: the echo server on copas (lua-copas over
-- LuaSocket): copas.addserver with one handler coroutine per connection,
-- each taking whatever has arrived (copas.receivePartial, up to 64 KiB)
-- and sending it back with copas.send. TCP_NODELAY on every accepted
-- connection. Prints "listening <port>" once ready (PORT 0 = any free port).
local copas = require "copas"
local socket = require "socket"

local srv = assert(socket.bind("127.0.0.1", tonumber(arg[1]) or 0, 511))
local _, port = srv:getsockname()

local receive, send = copas.receivePartial, copas.send
local function session(skt)
  skt:setoption("tcp-nodelay", true)
  while true do
    local data, err, part = receive(skt, 65536)
    data = data or part
    if data and data ~= "" then send(skt, data) end
    if err and err ~= "timeout" then break end   -- "closed" or an error
  end
  skt:close()
end

copas.addserver(srv, session)
io.stdout:write("listening ", port, "\n")
io.stdout:flush()
copas.loop()

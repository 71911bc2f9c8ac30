-- bench/echo_luv.lua PORT: the echo server on luv (lua-luv, libuv's own
-- Lua binding), in luv's natural callback style: read_start on every
-- accepted connection, each chunk written straight back. luv hands every
-- read to Lua as a fresh string (its buffers are malloc'd per read and
-- freed after the callback). TCP_NODELAY on every accepted connection.
-- Prints "listening <port>" once ready (PORT 0 = any free port).
local uv = require "luv"

local server = uv.new_tcp()
assert(server:bind("127.0.0.1", tonumber(arg[1]) or 0))
assert(server:listen(511, function(err)
  assert(not err, err)
  local c = uv.new_tcp()
  if not server:accept(c) then c:close() return end
  c:nodelay(true)
  c:read_start(function(_, data)
    if data then
      c:write(data)
    elseif not c:is_closing() then   -- eof or error
      c:close()
    end
  end)
end))
io.stdout:write("listening ", server:getsockname().port, "\n")
io.stdout:flush()
uv.run()

-- echo_client.lua: sends messages to an echo server and times the round
-- trips; several connections run at once, one task each.
--
--   nexus examples/echo_client.lua <port> [count] [size] [connections] [host]
--
-- Each connection sends `count` messages of `size` bytes one at a time and
-- reads each one back with read_exactly; any difference is an error.
local nexus = require "nexus"

local port = tonumber(arg and arg[1])
if not port then
  io.stderr:write("usage: echo_client.lua <port> [count] [size] [connections] [host]\n")
  os.exit(2)
end
local count = tonumber(arg[2]) or 1000
local size = tonumber(arg[3]) or 64
local conns = tonumber(arg[4]) or 1
local host = arg[5] or "127.0.0.1"

local function session(id, rtts)
  local s = assert(nexus.tcp.connect(host, port, { timeout = 5 }))
  local base = ("%d:"):format(id)
  for i = 1, count do
    local msg = (base .. i .. ":"):rep(size):sub(1, size)
    local t0 = nexus.now()
    assert(s:write(msg))
    local back, err = s:read_exactly(size)
    if back ~= msg then error(("connection %d, message %d: %s"):format(id, i, err or "echoed wrong bytes")) end
    rtts[#rtts + 1] = nexus.now() - t0
  end
  s:close()
end

local t0 = nexus.now()
local rtts, hs = {}, {}
for id = 1, conns do hs[id] = nexus.spawn(session, id, rtts) end
for id = 1, conns do hs[id]:join() end
local elapsed = nexus.now() - t0

table.sort(rtts)
local function pct(p) return rtts[math.max(1, math.ceil(#rtts * p))] * 1e6 end
print(("%d connections x %d round trips of %d bytes: ok in %.3f s"):format(conns, count, size, elapsed))
print(("round trip p50 %.1f us, p99 %.1f us, max %.1f us"):format(pct(0.5), pct(0.99), rtts[#rtts] * 1e6))

-- The floor under sleepers_nexus_closure.lua that no scheduler passes:
-- the interpreter's cost of making N closures and N coroutines and
-- running each to its first yield and on to its end, with no timers and
-- no scheduler (LuaJIT does not compile closure creation, FNEW). Reported
-- as wall_ms in the sleepers format (lateness 0: nothing sleeps).
local H = require "bench.harness"
local N = H.size("BENCH_SLEEPERS_N", 100000)

local cocreate, resume, yield = coroutine.create, coroutine.resume, coroutine.yield
local nextd = H.lcg()
local cos, woken = {}, 0
local t0 = H.now()
for i = 1, N do
  local d = nextd() * 1e-3
  cos[i] = cocreate(function()
    local a = d + 1
    yield()
    woken = woken + (a > 0 and 1 or 0)
  end)
  resume(cos[i])
end
for i = 1, N do resume(cos[i]) end
local wall = H.now() - t0
H.report_sleepers(N, wall, 0, 0, woken)

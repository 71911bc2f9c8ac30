-- spawn/join reference: the bare-coroutine loop. Create and run to
-- completion N coroutines, one after the other (the floor for any
-- coroutine-based spawn + join).
local H = require "bench.harness"
local N = H.size("BENCH_SPAWN_N", 200000)

local create, resume = coroutine.create, coroutine.resume
local function task(i) return i * 2 end

local t0 = H.now()
local s = 0
for i = 1, N do
  local co = create(task)
  local _, r = resume(co, i)
  s = s + r
end
H.report_spawn(N, H.now() - t0, s)

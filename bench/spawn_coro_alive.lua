-- spawn/join, bare coroutines with all N alive at once: create every
-- coroutine first, then run each to completion in order. Same shape as the
-- scheduler workloads (all tasks exist before any finishes), no scheduler.
local H = require "bench.harness"
local N = H.size("BENCH_SPAWN_N", 200000)

local create, resume = coroutine.create, coroutine.resume
local function task(i) return i * 2 end

local t0 = H.now()
local cos = {}
for i = 1, N do cos[i] = create(task) end
local s = 0
for i = 1, N do
  local _, r = resume(cos[i], i)
  s = s + r
end
H.report_spawn(N, H.now() - t0, s)

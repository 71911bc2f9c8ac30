-- parked tasks, bare coroutines: N coroutines, each resumed once and left
-- suspended in coroutine.yield(). Memory per task: the floor for any
-- coroutine-based runtime.
local H = require "bench.harness"
local N = H.size("BENCH_PARKED_N", 100000)

local create, resume, yield = coroutine.create, coroutine.resume, coroutine.yield
local function task() yield() end

local cos = {}
for i = 1, N do cos[i] = false end   -- preallocate: count only the tasks
local before = H.snapshot()
for i = 1, N do
  local co = create(task)
  resume(co)
  cos[i] = co
end
local after = H.snapshot()
H.report_parked(N, before, after)

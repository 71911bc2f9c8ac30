-- parked tasks on cqueues: N wrapped coroutines, each in cqueues.sleep(3600);
-- one non-blocking step of the queue runs them all up to their sleep.
local H = require "bench.harness"
local cqueues = require "cqueues"
local N = H.size("BENCH_PARKED_N", 100000)

local cq = cqueues.new()
local started = 0
local function task() started = started + 1; cqueues.sleep(3600) end

local before = H.snapshot()
for _ = 1, N do cq:wrap(task) end
assert(cq:step(0))
local after = H.snapshot()
assert(started == N, "not every task parked")
assert(cq:count() == N)
H.report_parked(N, before, after)
os.exit(0)

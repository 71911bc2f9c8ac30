-- parked tasks on the hand-written Lua scheduler (bench/minisched.lua): N
-- spawned tasks, each waiting on one condition that is never signalled.
local H = require "bench.harness"
local S = require "bench.minisched"
local N = H.size("BENCH_PARKED_N", 100000)

local cond = S.condition()
for i = 1, N do cond[i] = false end  -- preallocate the waiter list
local function task() S.wait(cond) end

local before = H.snapshot()
for _ = 1, N do S.spawn(task) end
S.run()                              -- every task runs until it parks
local after = H.snapshot()
assert(cond.n == N, "not every task parked")
H.report_parked(N, before, after)

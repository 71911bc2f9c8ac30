-- sleepers on cqueues: N tasks (cq:wrap), each cqueues.sleep()ing 1..50 ms
-- (the shared LCG sequence). All are wrapped before the loop runs any.
-- Deadline = monotonic clock just before sleeping + d.
local H = require "bench.harness"
local cqueues = require "cqueues"
local N = H.size("BENCH_SLEEPERS_N", 100000)

local now, sleep = H.now, cqueues.sleep

local woken, early, late_sum, t_last = 0, 0, 0, 0
local function task(ms)
  local d = ms * 1e-3
  local deadline = now() + d
  sleep(d)
  local t = now()
  local late = t - deadline
  if late < 0 then early = early + 1 end
  late_sum = late_sum + late
  woken = woken + 1
  t_last = t
end

local cq = cqueues.new()
local nextd = H.lcg()
local t0 = now()
for _ = 1, N do cq:wrap(task, nextd()) end
assert(cq:loop())
H.report_sleepers(N, t_last - t0, late_sum, early, woken)

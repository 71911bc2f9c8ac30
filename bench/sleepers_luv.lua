-- sleepers over luv: N coroutines, each started at once and sleeping
-- 1..50 ms (the shared LCG sequence) on its own uv timer; sleep() refreshes
-- the loop time (uv.update_time) before arming, like the C reference.
-- Deadline = monotonic clock just before sleeping + d.
local H = require "bench.harness"
local uv = require "luv"
local N = H.size("BENCH_SLEEPERS_N", 100000)

local now = H.now
local create, resume, yield, running =
  coroutine.create, coroutine.resume, coroutine.yield, coroutine.running

local function sleep(ms)
  local co = running()
  local t = uv.new_timer()
  uv.update_time()
  t:start(ms, 0, function()
    t:close()
    assert(resume(co))
  end)
  yield()
end

local woken, early, late_sum, t_last = 0, 0, 0, 0
local function task(ms)
  local deadline = now() + ms * 1e-3
  sleep(ms)
  local t = now()
  local late = t - deadline
  if late < 0 then early = early + 1 end
  late_sum = late_sum + late
  woken = woken + 1
  t_last = t
end

local nextd = H.lcg()
local t0 = now()
for _ = 1, N do
  local co = create(task)
  assert(resume(co, nextd()))
end
uv.run()
H.report_sleepers(N, t_last - t0, late_sum, early, woken)

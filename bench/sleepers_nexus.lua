-- sleepers on nexus: the root task spawns N tasks, each nexus.sleep()ing
-- 1..50 ms (the shared LCG sequence); nexus.run returns once all finished.
-- As the issue states it: deadline = nexus.now() + d taken just before
-- sleeping, lateness = nexus.now() after the wake - deadline. The same is
-- also measured on the harness clock (CLOCK_MONOTONIC) as a cross-check:
-- late_rt_ms, early_rt. Where the wall time goes, in the raw results:
-- spawn_ms (root done spawning), started_ms (last task entered its sleep),
-- last_deadline_ms (latest deadline), all from the first spawn.
local H = require "bench.harness"
local nexus = require "nexus"
local N = H.size("BENCH_SLEEPERS_N", 100000)

local now, nx_now, sleep = H.now, nexus.now, nexus.sleep

local woken, early, late_sum, t_last = 0, 0, 0, 0
local early_rt, late_rt_sum = 0, 0
local started, t_started, max_deadline_rt = 0, 0, 0
local function task(ms)
  local d = ms * 1e-3
  local deadline_rt = now() + d
  local deadline = nx_now() + d
  started = started + 1
  if started == N then t_started = deadline_rt - d end
  if deadline_rt > max_deadline_rt then max_deadline_rt = deadline_rt end
  sleep(d)
  local late = nx_now() - deadline
  local t = now()
  local late_rt = t - deadline_rt
  if late < 0 then early = early + 1 end
  if late_rt < 0 then early_rt = early_rt + 1 end
  late_sum = late_sum + late
  late_rt_sum = late_rt_sum + late_rt
  woken = woken + 1
  t_last = t
end

local t0, t_spawned
nexus.run(function()
  local nextd = H.lcg()
  t0 = now()
  for _ = 1, N do nexus.spawn(task, nextd()) end
  t_spawned = now()
end)
H.report_sleepers(N, t_last - t0, late_sum, early, woken,
  { late_rt_ms = late_rt_sum / N * 1e3, early_rt = early_rt,
    spawn_ms = (t_spawned - t0) * 1e3, started_ms = (t_started - t0) * 1e3,
    last_deadline_ms = (max_deadline_rt - t0) * 1e3 })

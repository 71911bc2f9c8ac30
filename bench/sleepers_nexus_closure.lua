-- sleepers on nexus, written the way users write it (issue 17): each task
-- is a new closure, the handles are kept, and the root joins them all.
--   hs[i] = nexus.spawn(function() local a = now(); nexus.sleep(d); ... end)
-- Same sleeps (the shared LCG) and the same report as sleepers_nexus.lua.
local H = require "bench.harness"
local nexus = require "nexus"
local N = H.size("BENCH_SLEEPERS_N", 100000)

local now, nx_now = H.now, nexus.now
local woken, early, late_sum, t_last = 0, 0, 0, 0

local t0, t_spawned
nexus.run(function()
  local nextd = H.lcg()
  local hs = {}
  t0 = now()
  for i = 1, N do
    local d = nextd() * 1e-3
    hs[i] = nexus.spawn(function()
      local deadline = nx_now() + d
      nexus.sleep(d)
      local late = nx_now() - deadline
      if late < 0 then early = early + 1 end
      late_sum = late_sum + late
      woken = woken + 1
      t_last = now()
    end)
  end
  t_spawned = now()
  for i = 1, N do hs[i]:join() end
end)
H.report_sleepers(N, t_last - t0, late_sum, early, woken, { spawn_ms = (t_spawned - t0) * 1e3 })

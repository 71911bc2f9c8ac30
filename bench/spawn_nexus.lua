-- spawn/join on nexus, as the issue states it: the root task spawns N
-- trivial tasks (all alive at once), then joins each in order. Works both
-- under plain luajit (require "nexus") and under the nexus command.
local H = require "bench.harness"
local nexus = require "nexus"
local N = H.size("BENCH_SPAWN_N", 200000)

local elapsed, s
nexus.run(function()
  local t0 = H.now()
  local hs = {}
  for i = 1, N do hs[i] = nexus.spawn(function(i) return i * 2 end, i) end
  s = 0
  for i = 1, N do s = s + hs[i]:join() end
  elapsed = H.now() - t0
end)
H.report_spawn(N, elapsed, s)

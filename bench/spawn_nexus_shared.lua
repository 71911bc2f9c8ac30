-- spawn/join on nexus with one task function shared by every spawn, as the
-- peers do (spawn_sched.lua, spawn_luv.lua, spawn_cqueues.lua). The issue's
-- form (spawn_nexus.lua) creates a fresh closure per spawn: 200,000 extra
-- live closures for the GC. This row separates that cost from nexus's own.
local H = require "bench.harness"
local nexus = require "nexus"
local N = H.size("BENCH_SPAWN_N", 200000)

local spawn = nexus.spawn
local function task(i) return i * 2 end

local elapsed, s
nexus.run(function()
  local t0 = H.now()
  local hs = {}
  for i = 1, N do hs[i] = spawn(task, i) end
  s = 0
  for i = 1, N do s = s + hs[i]:join() end
  elapsed = H.now() - t0
end)
H.report_spawn(N, elapsed, s)

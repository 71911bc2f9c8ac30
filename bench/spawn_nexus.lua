-- spawn/join on nexus: the root task spawns N trivial tasks (all alive at
-- once), then joins each in order. One task function shared by every
-- spawn, as the reference loop and the peers do (spawn_coro_alive.lua,
-- spawn_sched.lua, spawn_luv.lua, spawn_cqueues.lua). Works under plain
-- luajit (require "nexus") and under the nexus command.
-- spawn_nexus_closure.lua makes a new closure per spawn instead.
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

-- spawn/join on the hand-written Lua scheduler (bench/minisched.lua): the
-- root task spawns N tasks (all queued before any runs), then joins each
-- in order.
local H = require "bench.harness"
local S = require "bench.minisched"
local N = H.size("BENCH_SPAWN_N", 200000)

local spawn, join = S.spawn, S.join
local function task(i) return i * 2 end

local elapsed, s
S.spawn(function()
  local t0 = H.now()
  local hs = {}
  for i = 1, N do hs[i] = spawn(task, i) end
  s = 0
  for i = 1, N do s = s + join(hs[i]) end
  elapsed = H.now() - t0
end)
S.run()
H.report_spawn(N, elapsed, s)

-- spawn/join over luv: the bench/minisched.lua scheduler driven by the
-- libuv loop. Ready tasks are resumed from a uv idle callback, one round of
-- the ready queue per loop iteration (tasks made ready during a round run
-- in the next iteration); the idle handle is stopped when nothing is ready,
-- so the loop ends when every task has finished.
local H = require "bench.harness"
local uv = require "luv"
local S = require "bench.minisched"
local N = H.size("BENCH_SPAWN_N", 200000)

local idle = uv.new_idle()
local active = false
local function round()
  if not S.run_once() then idle:stop(); active = false end
end
S.on_ready = function()
  if not active then active = true; idle:start(round) end
end

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
uv.run()
idle:close()
uv.run()
H.report_spawn(N, elapsed, s)

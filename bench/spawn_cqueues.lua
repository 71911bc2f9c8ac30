-- spawn/join on cqueues: cq:wrap each task; join waits on the task's
-- done flag with a per-task cqueues.condition.
local H = require "bench.harness"
local cqueues = require "cqueues"
local condition = require "cqueues.condition"
local N = H.size("BENCH_SPAWN_N", 200000)

local cq = cqueues.new()

local function task(h, i)
  h.res = i * 2
  h.done = true
  h.cond:signal()
end

local elapsed, s
cq:wrap(function()
  local t0 = H.now()
  local hs = {}
  for i = 1, N do
    local h = { done = false, res = nil, cond = condition.new() }
    hs[i] = h
    cq:wrap(task, h, i)
  end
  s = 0
  for i = 1, N do
    local h = hs[i]
    while not h.done do h.cond:wait() end
    s = s + h.res
  end
  elapsed = H.now() - t0
end)
assert(cq:loop())
H.report_spawn(N, elapsed, s)

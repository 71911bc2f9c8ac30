-- group spawn+next on nexus: as spawn_nexus.lua (N trivial tasks alive at
-- once, one shared task function), but every task is a member of a
-- nexus.group and the root collects them with g:next() in completion
-- order. Compared with spawn_nexus.lua (spawn + join in order).
local H = require "bench.harness"
local nexus = require "nexus"
local N = H.size("BENCH_SPAWN_N", 200000)

local function task(i) return i * 2 end

local elapsed, s
nexus.run(function()
  local t0 = H.now()
  local g = nexus.group()
  for i = 1, N do g:spawn(task, i) end
  s = 0
  while true do
    local h, ok, v = g:next()
    if not h then break end
    s = s + v
  end
  elapsed = H.now() - t0
end)
H.report_spawn(N, elapsed, s)

-- spawn/join on nexus with a new closure per spawn (spawn_nexus.lua with
-- `function(i) return i * 2 end` written at the call): 200,000 more live
-- closures for the GC, and LuaJIT 2.1 does not compile the closure's
-- creation (FNEW), so the spawn loop runs in the interpreter. Shown for
-- information; no target is judged on it.
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

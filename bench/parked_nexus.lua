-- parked tasks on nexus: the root task spawns N tasks, each in
-- nexus.sleep(3600), lets them all run up to their sleep (nexus.yield),
-- measures, then exits the process without tearing the tasks down.
-- BENCH_PARKED_ON=token: each task waits in a cancel token's cancelled()
-- instead (issue 17 measures both: a task parked on a token, a channel).
local H = require "bench.harness"
local nexus = require "nexus"
local N = H.size("BENCH_PARKED_N", 100000)

local parked = 0
local on = os.getenv("BENCH_PARKED_ON") or "sleep"
local token = nexus.cancel_token()
local task
if on == "token" then
  task = function() parked = parked + 1; token:cancelled() end
else
  task = function() parked = parked + 1; nexus.sleep(3600) end
end

nexus.run(function()
  local before = H.snapshot()
  for _ = 1, N do nexus.spawn(task) end  -- detached: handles dropped
  nexus.yield()
  if parked < N then nexus.sleep(0.01) end
  local after = H.snapshot()
  assert(parked == N, "not every task parked")
  H.report_parked(N, before, after)
  os.exit(0)
end)

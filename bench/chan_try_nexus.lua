-- chan try pair on nexus.channel(1): tx:try_send then rx:try_recv, never
-- suspending; reported per pair. Runs in the root task of nexus.run.
local H = require "bench.harness"
local nexus = require "nexus"
local N = H.size("BENCH_CHAN_TRY_N", 10000000)

local elapsed, sum
nexus.run(function()
  local tx, rx = nexus.channel(1)
  local t0 = H.now()
  local s = 0
  for i = 1, N do
    tx:try_send(i)
    s = s + rx:try_recv()
  end
  elapsed = H.now() - t0
  sum = s
end)
H.report_trypair(N, elapsed, sum)

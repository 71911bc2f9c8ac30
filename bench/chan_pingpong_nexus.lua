-- chan ping-pong on nexus: two tasks, two nexus.channel(1): task A sends i
-- and waits for it back, task B echoes. Under plain luajit and under the
-- nexus command (nexus.run is explicit).
local H = require "bench.harness"
local nexus = require "nexus"
local N = H.size("BENCH_CHAN_N", 1000000)

-- BENCH_COOP=n runs it on a runtime built with coop_budget(n) (0: off),
-- to measure what the cooperative budget costs.
local coop = tonumber(os.getenv("BENCH_COOP") or "")
local run = nexus.run
if coop then
  run = function(fn)
    local rt = nexus.runtime.builder():coop_budget(coop):build()
    rt:block_on(fn)
    rt:close()
  end
end

local elapsed, sum
run(function()
  local ab_tx, ab_rx = nexus.channel(1)
  local ba_tx, ba_rx = nexus.channel(1)
  local a = nexus.spawn(function()
    local t0 = H.now()
    local s = 0
    for i = 1, N do
      ab_tx:send(i)
      s = s + ba_rx:recv()
    end
    elapsed = H.now() - t0
    sum = s
  end)
  local b = nexus.spawn(function()
    for _ = 1, N do ba_tx:send(ab_rx:recv()) end
  end)
  a:join()
  b:join()
end)
H.report_pingpong(N, elapsed, sum)

-- The executor's own floor for a ping-pong hop: two nexus tasks that pass
-- the turn with nexus.yield() and no channel. Each hop is what every
-- channel hop also is (a yield to the executor, then a resume of the other
-- task from the ready queue), so a channel hop cannot beat it. Reported as
-- ping-pong round trips (two hops each), as the channel rows are; the sum
-- checks that both tasks ran every turn.
local H = require "bench.harness"
local nexus = require "nexus"
local N = H.size("BENCH_CHAN_N", 1000000)

local elapsed, sum
nexus.run(function()
  local turn = 0
  local yield = nexus.yield
  local a = nexus.spawn(function()
    local t0 = H.now()
    local s = 0
    for i = 1, N do
      turn = i
      yield()                      -- B runs
      s = s + turn
    end
    elapsed = H.now() - t0
    sum = s
  end)
  local b = nexus.spawn(function()
    for _ = 1, N do
      yield()                      -- A runs
    end
  end)
  a:join()
  b:join()
end)
H.report_pingpong(N, elapsed, sum)

-- select ping-pong on nexus: as chan_pingpong_nexus.lua, but every
-- receive is a nexus.select over two ops: the channel the value comes
-- on and a second channel that stays empty (ops built once, reused).
local H = require "bench.harness"
local nexus = require "nexus"
local N = H.size("BENCH_CHAN_N", 1000000)

local elapsed, sum
nexus.run(function()
  local ab_tx, ab_rx = nexus.channel(1)
  local ba_tx, ba_rx = nexus.channel(1)
  local keep_idle_a, idle_a = nexus.channel(1)
  local keep_idle_b, idle_b = nexus.channel(1)
  local a = nexus.spawn(function()
    local ops1, ops2 = ba_rx:recv_op(), idle_a:recv_op()
    local select = nexus.select
    local t0 = H.now()
    local s = 0
    for i = 1, N do
      ab_tx:send(i)
      local _, v = select(ops1, ops2)
      s = s + v
    end
    elapsed = H.now() - t0
    sum = s
  end)
  local b = nexus.spawn(function()
    local ops1, ops2 = ab_rx:recv_op(), idle_b:recv_op()
    local select = nexus.select
    for _ = 1, N do
      local _, v = select(ops1, ops2)
      ba_tx:send(v)
    end
  end)
  a:join()
  b:join()
end)
H.report_pingpong(N, elapsed, sum)

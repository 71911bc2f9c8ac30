-- chan try pair on the hand-written Lua channel (bench/luachan.lua):
-- try_send then try_recv, never suspending; reported per pair.
local H = require "bench.harness"
local C = require "bench.luachan"
local N = H.size("BENCH_CHAN_TRY_N", 10000000)

local try_send, try_recv = C.try_send, C.try_recv
local ch = C.new(1)
local t0 = H.now()
local s = 0
for i = 1, N do
  try_send(ch, i)
  s = s + try_recv(ch)
end
local elapsed = H.now() - t0
H.report_trypair(N, elapsed, s)

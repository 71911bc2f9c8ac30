-- chan ping-pong on the hand-written Lua channel and scheduler
-- (bench/luachan.lua), plain coroutines: task A sends i on channel ab and
-- waits for it back on ba; task B echoes. Both channels hold one value.
-- Reported per one-way hop (2 per round trip).
local H = require "bench.harness"
local C = require "bench.luachan"
local N = H.size("BENCH_CHAN_N", 1000000)

local send, recv = C.send, C.recv
local ab, ba = C.new(1), C.new(1)

local elapsed, sum
C.spawn(function()
  local t0 = H.now()
  local s = 0
  for i = 1, N do
    send(ab, i)
    s = s + recv(ba)
  end
  elapsed = H.now() - t0
  sum = s
end)
C.spawn(function()
  for _ = 1, N do send(ba, recv(ab)) end
end)
C.run()
H.report_pingpong(N, elapsed, sum)

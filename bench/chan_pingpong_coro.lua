-- chan ping-pong floor: no scheduler, no channel. One coroutine echoes
-- what it is resumed with; a hop is one resume or one yield, so a round
-- trip is one resume/yield pair. What a channel hop cannot beat.
local H = require "bench.harness"
local N = H.size("BENCH_CHAN_N", 1000000)

local resume, yield = coroutine.resume, coroutine.yield
local echo = coroutine.create(function(v)
  while true do v = yield(v) end
end)

local t0 = H.now()
local s = 0
for i = 1, N do
  local _, v = resume(echo, i)
  s = s + v
end
local elapsed = H.now() - t0
H.report_pingpong(N, elapsed, s)

-- chan ping-pong on cqueues: two cq:wrap coroutines and a channel built
-- on cqueues.condition (a ring and two conditions, as bench/luachan.lua).
local H = require "bench.harness"
local cqueues = require "cqueues"
local condition = require "cqueues.condition"
local N = H.size("BENCH_CHAN_N", 1000000)

local function new(cap)
  return { buf = {}, head = 1, n = 0, cap = cap,
           nonempty = condition.new(), nonfull = condition.new() }
end

local function send(ch, v)
  while ch.n == ch.cap do ch.nonfull:wait() end
  local n = ch.n
  ch.buf[(ch.head + n - 1) % ch.cap + 1] = v
  ch.n = n + 1
  ch.nonempty:signal()
end

local function recv(ch)
  while ch.n == 0 do ch.nonempty:wait() end
  local h, buf = ch.head, ch.buf
  local v = buf[h]
  buf[h] = nil
  ch.head = h % ch.cap + 1
  ch.n = ch.n - 1
  ch.nonfull:signal()
  return v
end

local cq = cqueues.new()
local ab, ba = new(1), new(1)
local elapsed, sum
cq:wrap(function()
  local t0 = H.now()
  local s = 0
  for i = 1, N do
    send(ab, i)
    s = s + recv(ba)
  end
  elapsed = H.now() - t0
  sum = s
end)
cq:wrap(function()
  for _ = 1, N do send(ba, recv(ab)) end
end)
assert(cq:loop())
H.report_pingpong(N, elapsed, sum)

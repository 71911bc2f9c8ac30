-- byte-channel reference: a hand-written bounded ring of Lua strings
-- between two bare coroutines (producer fills until full, then the
-- consumer drains until empty), holding as many 64-byte messages as a
-- 64 KiB nexus byte channel does (72 bytes of ring each). It moves
-- references to one interned string: no bytes are copied, so this is the
-- cost of the scheduling and the queue alone.
local H = require "bench.harness"

local N = H.size("BENCH_BYTES_N", 1000000)
local SIZE = H.size("BENCH_BYTES_SIZE", 64)
local CAP = H.size("BENCH_BYTES_CAP", 65536)
local slots = math.floor((CAP + 8) / (8 + math.ceil(SIZE / 8) * 8))

local ring, head, count = {}, 0, 0
local yield = coroutine.yield
local s = string.rep("L", SIZE)

local producer = coroutine.create(function()
  for _ = 1, N do
    while count == slots do yield() end
    ring[(head + count) % slots + 1] = s
    count = count + 1
  end
end)

local n, bad = 0, 0
local consumer = coroutine.create(function()
  while n < N do
    while count == 0 do yield() end
    local m = ring[head + 1]
    ring[head + 1] = nil
    head = (head + 1) % slots
    count = count - 1
    if #m ~= SIZE then bad = bad + 1 end
    n = n + 1
  end
end)

collectgarbage("collect")
collectgarbage("stop")
local heap0 = collectgarbage("count")
local t0 = H.now()
while coroutine.status(consumer) ~= "dead" do
  assert(coroutine.resume(producer))
  assert(coroutine.resume(consumer))
end
local elapsed = H.now() - t0
local grown = (collectgarbage("count") - heap0) * 1024
if n ~= N or bad ~= 0 then error("lua-queue: wrong count") end
H.report({ "ns_per_msg", "mmsgs_per_s", "gb_per_s", "alloc_per_msg", "n" }, {
  ns_per_msg = elapsed / N * 1e9, mmsgs_per_s = N / elapsed / 1e6,
  gb_per_s = N * SIZE / elapsed / 1e9, alloc_per_msg = grown / N, n = N,
})

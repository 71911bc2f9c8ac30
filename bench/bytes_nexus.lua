-- byte channel on nexus: N messages of SIZE bytes through a CAP-byte
-- nexus.channel.bytes, one producer task and one consumer task.
--   bytes_nexus.lua lua        Lua both sides: tx:send(s); rx:recv() + m:release()
--   bytes_nexus.lua c LIB.so   C both sides (bench/bytes_c.c, no Lua per
--                              message); Lua only schedules: when the ring
--                              is full (empty) the task waits in a claim (recv).
-- Reports ns per message, millions of messages/s, GB/s, and the Lua heap grown per
-- message with the GC stopped (0: the hot path allocates nothing).
local H = require "bench.harness"
local nexus = require "nexus"
local ffi = require "ffi"

local N = H.size("BENCH_BYTES_N", 1000000)
local SIZE = H.size("BENCH_BYTES_SIZE", 64)
local CAP = H.size("BENCH_BYTES_CAP", 65536)
local mode, libpath = arg[1] or "lua", arg[2]

local function lua_side(tx, rx)
  local s = string.rep("L", SIZE)
  local byte = s:byte(1)
  local producer = nexus.spawn(function()
    for _ = 1, N do tx:send(s) end
    tx:close()
  end)
  local n, bad = 0, 0
  while true do
    local m = rx:recv()
    if not m then break end
    if m.len ~= SIZE or m.ptr[0] ~= byte then bad = bad + 1 end
    n = n + 1
    m:release()
  end
  producer:join()
  return n, bad
end

local function c_side(tx, rx)
  ffi.cdef [[
int nxb_produce(const nexus_bytes_api *api, nexus_bchan *ch, uint32_t *seq, int n, int size);
int nxb_consume(const nexus_bytes_api *api, nexus_bchan *ch, uint32_t *seq, int n, int size);
]]
  local lib = ffi.load(assert(libpath, "usage: bytes_nexus.lua c LIB.so"))
  local api = require("nexus.bytes").c_api
  local txp, rxp = tx:cptr(), rx:cptr()
  local pseq, cseq = ffi.new("uint32_t[1]"), ffi.new("uint32_t[1]")
  local producer = nexus.spawn(function()
    local sent = 0
    while sent < N do
      local k = lib.nxb_produce(api, txp, pseq, N - sent, SIZE)
      assert(k >= 0, "producer: commit failed")
      sent = sent + k
      if sent < N then               -- full: wait for room the ordinary way
        local c = tx:claim(SIZE)
        ffi.fill(c.ptr, SIZE, 99)
        c.ptr[0] = pseq[0] % 251
        pseq[0] = pseq[0] + 1
        c:commit()
        sent = sent + 1
      end
    end
    tx:close()
  end)
  local n = 0
  while true do
    local k = lib.nxb_consume(api, rxp, cseq, N - n, SIZE)
    if k < 0 then error("consumer: wrong message") end
    n = n + k
    local m = rx:recv()                -- empty: wait for a message
    if not m then break end
    assert(m.len == SIZE and m.ptr[0] == cseq[0] % 251, "consumer: wrong message")
    cseq[0] = cseq[0] + 1
    n = n + 1
    m:release()
  end
  producer:join()
  return n, 0
end

local elapsed, n, bad, grown
nexus.run(function()
  local tx, rx = nexus.channel.bytes(CAP)
  local side = mode == "c" and c_side or lua_side
  collectgarbage("collect")
  collectgarbage("stop")
  local heap0 = collectgarbage("count")
  local t0 = H.now()
  n, bad = side(tx, rx)
  elapsed = H.now() - t0
  grown = (collectgarbage("count") - heap0) * 1024
  collectgarbage("restart")
end)
if n ~= N or bad ~= 0 then error(("bytes: received %d of %d, %d wrong"):format(n, N, bad)) end
H.report({ "ns_per_msg", "mmsgs_per_s", "gb_per_s", "alloc_per_msg", "n" }, {
  ns_per_msg = elapsed / N * 1e9, mmsgs_per_s = N / elapsed / 1e6,
  gb_per_s = N * SIZE / elapsed / 1e9, alloc_per_msg = grown / N, n = N,
})

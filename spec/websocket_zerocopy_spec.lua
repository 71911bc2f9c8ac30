-- ws:recv_into(tx): received messages moved in C from the connection's
-- buffer into a byte channel (nexus.channel.bytes), no Lua string on the
-- way; ws:send(m) sending a byte channel message back. Ordering and kinds,
-- max, backpressure with a slow consumer, close codes (the peer's, 1009,
-- 1006), empty and oversized messages, a channel closed while waiting, a C
-- consumer that never enters Lua, and the errors for bad input.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(dir .. "helpers.lua")
local ffi = require "ffi"
local nexus = require "nexus"
local bytes = require "nexus.bytes"
local ws_mod = nexus.websocket
local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$")) or "."

local function ws_pair(lopts, copts)
  local wl = assert(ws_mod.listen("127.0.0.1", 0, lopts))
  local _, _, port = wl:local_addr()
  local h = nexus.spawn(function() return wl:accept() end)
  local c = assert(ws_mod.connect("ws://127.0.0.1:" .. port .. "/", copts))
  local s, req = h:join()
  assert(s, req)
  return c, s, wl
end

-- Closes a pair at once: the server side reads, so it answers the close.
local function done(c, s, wl)
  nexus.spawn(function() while s:recv() do end end)
  c:close()
  wl:close()
end

-- Drains n messages from rx as strings.
local function take(rx, n, out)
  for _ = 1, n do
    local m = assert(rx:recv())
    out[#out + 1] = m:string()
    m:release()
  end
end

describe("ws:recv_into", function()
  it("moves messages in order, one kind per call, at most max", function()
    local r = nexus.run(function()
      local c, s, wl = ws_pair()
      local tx, rx = nexus.channel.bytes(4096)
      local sent = {}
      for i = 1, 30 do
        local kind = (i % 7 == 0) and "text" or "binary"
        local d = ("%s-%d-"):format(kind, i) .. ("x"):rep(i)
        sent[#sent + 1] = d
        assert(c:send(d, kind))
      end
      -- all 30 are on their way; wait until the server has read them all
      local got, calls = {}, {}
      while #got < 30 do
        local n, kind = s:recv_into(tx, 4)
        assert(n and n >= 1 and n <= 4, tostring(n))
        calls[#calls + 1] = { n, kind }
        local before = #got
        take(rx, n, got)
        for i = before + 1, #got do
          assert.are.equal(kind, got[i]:match("^(%a+)-"))
        end
      end
      done(c, s, wl)
      return { sent = sent, got = got, calls = calls }
    end)
    assert.are.same(r.sent, r.got)
    -- a text message never shares a call with binary ones
    for _, call in ipairs(r.calls) do
      if call[2] == "text" then assert.are.equal(1, call[1]) end
    end
  end)

  it("suspends while the channel is full: a slow consumer paces it, nothing is lost", function()
    local r = nexus.run(function()
      local c, s, wl = ws_pair()
      -- room for 3 messages of 64 bytes (each takes 72 bytes of the ring)
      local tx, rx = nexus.channel.bytes(216)
      local N = 60
      local producer = nexus.spawn(function()
        local moved, waits = 0, 0
        while moved < N do
          local t = nexus.now()
          local n = assert(s:recv_into(tx))
          if nexus.now() - t >= 0.001 then waits = waits + 1 end   -- it waited for room
          moved = moved + n
        end
        return moved, waits
      end)
      for i = 1, N do assert(c:send(("%04d"):format(i) .. ("p"):rep(60), "binary")) end
      local maxlen, got = 0, {}
      local t0 = nexus.now()
      for _ = 1, N do
        nexus.sleep(0.002)
        maxlen = math.max(maxlen, rx:len())
        take(rx, 1, got)
      end
      local dt = nexus.now() - t0
      local moved, waits = producer:join()
      done(c, s, wl)
      local seq = {}
      for i, d in ipairs(got) do seq[i] = tonumber(d:sub(1, 4)) end
      return { moved = moved, waits = waits, maxlen = maxlen, dt = dt, seq = seq, n = N }
    end)
    assert.are.equal(r.n, r.moved)
    for i = 1, r.n do assert.are.equal(i, r.seq[i]) end
    assert.truthy(r.maxlen <= 3, "the channel held " .. r.maxlen)
    assert.truthy(r.maxlen >= 2, "the producer never got ahead: " .. r.maxlen)
    assert.truthy(r.waits > 0, "recv_into never waited for room")
    assert.truthy(r.dt >= r.n * 0.002 - 1e-3)
  end)

  it("returns the peer's close code and reason after the messages before it", function()
    local r = nexus.run(function()
      local c, s, wl = ws_pair()
      local tx, rx = nexus.channel.bytes(1024)
      assert(c:send("a", "binary"))
      assert(c:send("b", "binary"))
      local h = nexus.spawn(function() return c:close(4001, "done") end)
      local got, res = {}, nil
      while true do
        local n, kind, code, reason = s:recv_into(tx)
        if not n then
          res = { kind, code, reason }
          break
        end
        take(rx, n, got)
      end
      h:join()
      local after = { s:recv_into(tx) }
      wl:close()
      return { got = got, res = res, after = after, closed = s:is_closed() }
    end)
    assert.are.same({ "a", "b" }, r.got)
    assert.are.same({ "closed", 4001, "done" }, r.res)
    assert.are.same({ nil, "closed", 4001, "done" }, r.after)
    assert.is_true(r.closed)
  end)

  it("fails the connection with 1009 over max_message, 1006 when the peer just goes", function()
    local r = nexus.run(function()
      local c, s, wl = ws_pair({ max_message = 100 })
      local tx = nexus.channel.bytes(1024)
      assert(c:send(("z"):rep(101), "binary"))
      local big = { s:recv_into(tx) }
      wl:close()
      local c2, s2, wl2 = ws_pair()
      c2.s:close()                          -- no close frame: the TCP end only
      local gone = { s2:recv_into(tx) }
      wl2:close()
      return { big = big, gone = gone, peer = { c:recv() } }
    end)
    assert.are.same({ nil, "closed", 1009, "message too big" }, r.big)
    assert.are.equal(nil, r.gone[1])
    assert.are.equal("closed", r.gone[2])
    assert.are.equal(1006, r.gone[3])
    assert.are.same({ nil, "closed", 1009, "message too big" }, r.peer)
  end)

  it("gives 0, kind for an empty message; leaves one too big for the channel to ws:recv", function()
    local r = nexus.run(function()
      local c, s, wl = ws_pair()
      local tx, rx = nexus.channel.bytes(16)
      assert(c:send("", "text"))
      assert(c:send(("q"):rep(17), "binary"))
      assert(c:send("after", "binary"))
      local e = { s:recv_into(tx) }
      local big = { s:recv_into(tx) }
      local big2 = { s:recv_into(tx) }       -- still there
      local d, k = s:recv()                  -- the string path takes it
      local n, kind = s:recv_into(tx)
      local m = rx:recv()
      local last = m:string()
      m:release()
      done(c, s, wl)
      return { e = e, big = big, big2 = big2, d = d, k = k, n = n, kind = kind, last = last }
    end)
    assert.are.same({ 0, "text" }, r.e)
    assert.are.same({ nil, "message too big for the channel", 17 }, r.big)
    assert.are.same(r.big, r.big2)
    assert.are.equal(("q"):rep(17), r.d)
    assert.are.equal("binary", r.k)
    assert.are.equal(1, r.n)
    assert.are.equal("after", r.last)
  end)

  it("returns nil, \"channel closed\" when the receiver closes while it waits; the message stays", function()
    local r = nexus.run(function()
      local c, s, wl = ws_pair()
      local tx, rx = nexus.channel.bytes(8)
      assert(c:send("12345678", "binary"))
      assert(c:send("second", "binary"))
      assert.are.equal(1, (s:recv_into(tx)))       -- fills the channel
      local h = nexus.spawn(function() return { s:recv_into(tx) } end)
      nexus.sleep(0.02)
      local waiting = h:is_finished() == false
      rx:close()
      local res = h:join()
      local d = s:recv()
      done(c, s, wl)
      return { waiting = waiting, res = res, d = d }
    end)
    assert.is_true(r.waiting)
    assert.are.same({ nil, "channel closed" }, r.res)
    assert.are.equal("second", r.d)
  end)

  it("ws:send sends a byte channel message without a Lua string (an echo through the channel)", function()
    local r = nexus.run(function()
      local c, s, wl = ws_pair()
      local tx, rx = nexus.channel.bytes(256)
      nexus.spawn(function()
        while s:recv_into(tx) do end
        tx:close()
      end)
      nexus.spawn(function()
        for m in rx:iter() do
          assert(s:send(m, "binary"))
        end
      end)
      local out = {}
      for i = 1, 50 do
        assert(c:send("echo " .. i, "binary"))
        local d, k = c:recv()
        out[i] = d .. "/" .. k
      end
      c:close()                            -- the recv_into loop answers it
      wl:close()
      return out
    end)
    for i = 1, 50 do assert.are.equal("echo " .. i .. "/binary", r[i]) end
  end)

  it("feeds a C consumer that takes the messages without entering Lua", function()
    local src = H.tmpfile([[
#include <stdint.h>
#include <string.h>
#include "nexus.h"
/* Takes every message there is: each is 4 bytes of big-endian sequence
 * number then (seq % 200) bytes of (seq & 0xff). Returns how many, -1 on a
 * wrong one; *sum adds the payload lengths. */
int ws_consume(const nexus_bytes_api *api, nexus_bchan *ch, uint32_t *next, uint64_t *sum) {
  nexus_bmsg m;
  memset(&m, 0, sizeof m);
  int n = 0;
  while (api->recv(ch, &m) == 0) {
    uint32_t seq = ((uint32_t)m.ptr[0] << 24) | ((uint32_t)m.ptr[1] << 16) | ((uint32_t)m.ptr[2] << 8) | m.ptr[3];
    int ok = seq == *next && m.len == 4 + seq % 200;
    for (uint32_t i = 4; ok && i < m.len; i++) ok = m.ptr[i] == (uint8_t)(seq & 0xff);
    *sum += m.len;
    api->release(&m);
    if (!ok) return -1;
    (*next)++;
    n++;
  }
  return n;
}
]])
    local so = H.tmpfile()
    local cc = os.getenv("CC") or "cc"
    local res = H.sh(("%s -shared -fPIC -O2 -Wall -Werror -I %s -o %s -x c %s"):format(
      cc, H.q(ROOT .. "/include"), H.q(so), H.q(src)))
    assert(res.rc == 0, "cc failed: " .. res.err)
    local lib = ffi.load(so)
    ffi.cdef [[
int ws_consume(const nexus_bytes_api *api, nexus_bchan *ch, uint32_t *next, uint64_t *sum);
]]
    local N = 3000
    local r = nexus.run(function()
      local c, s, wl = ws_pair()
      local tx, rx = nexus.channel.bytes(1024)
      local next, sum = ffi.new("uint32_t[1]", 0), ffi.new("uint64_t[1]", 0)
      local consumer = nexus.spawn(function()
        local got = 0
        while got < N do
          local k = lib.ws_consume(bytes.c_api, rx:cptr(), next, sum)
          assert(k >= 0, "the C consumer saw a wrong message at " .. tonumber(next[0]))
          got = got + k
          nexus.yield()
        end
        return got
      end)
      local producer = nexus.spawn(function()
        local moved = 0
        while moved < N do moved = moved + assert(s:recv_into(tx)) end
        return moved
      end)
      local want = 0
      for seq = 0, N - 1 do
        local len = seq % 200
        want = want + 4 + len
        local hdr = string.char(bit.band(bit.rshift(seq, 24), 255), bit.band(bit.rshift(seq, 16), 255),
                                bit.band(bit.rshift(seq, 8), 255), bit.band(seq, 255))
        assert(c:send(hdr .. string.char(bit.band(seq, 255)):rep(len), "binary"))
      end
      local moved, got = producer:join(), consumer:join()
      done(c, s, wl)
      return { moved = moved, got = got, next = tonumber(next[0]), sum = tonumber(sum[0]), want = want }
    end)
    assert.are.equal(N, r.moved)
    assert.are.equal(N, r.got)
    assert.are.equal(N, r.next)
    assert.are.equal(r.want, r.sum)
  end)

  it("raises clear errors for bad input, naming the function", function()
    local r = nexus.run(function()
      local c, s, wl = ws_pair()
      local tx, rx = nexus.channel.bytes(64)
      local ctx, _ = nexus.channel(4)
      local ctx2 = nexus.channel.bytes(64)
      ctx2:close()
      local tx3, rx3 = nexus.channel.bytes(64)
      rx3:close()
      local e = {
        H.errof(s.recv_into, s),
        H.errof(s.recv_into, s, 42),
        H.errof(s.recv_into, s, {}),
        H.errof(s.recv_into, s, rx),
        H.errof(s.recv_into, s, ctx),
        H.errof(s.recv_into, s, ctx2),
        H.errof(s.recv_into, s, tx3),
        H.errof(s.recv_into, s, tx, 0),
        H.errof(s.recv_into, s, tx, 1.5),
        H.errof(s.recv_into, s, tx, "2"),
        H.errof(s.recv_into, "nope", tx),
      }
      assert(tx:send("x"))
      local m = rx:recv()
      m:release()
      e[#e + 1] = H.errof(s.send, s, m, "binary")
      e[#e + 1] = H.errof(s.send, s, 12)
      assert(tx:send("\255"))
      m = rx:recv()
      e[#e + 1] = H.errof(s.send, s, m)                 -- text, and not UTF-8
      m:release()
      done(c, s, wl)
      return e
    end)
    local want = {
      "ws:recv_into: expected a byte channel sender (nexus.channel.bytes), got nil",
      "ws:recv_into: expected a byte channel sender (nexus.channel.bytes), got number",
      "ws:recv_into: expected a byte channel sender (nexus.channel.bytes), got table",
      "ws:recv_into: expected a byte channel sender (nexus.channel.bytes), got a byte channel receiver",
      "ws:recv_into: expected a byte channel sender (nexus.channel.bytes), got table",
      "ws:recv_into: the byte channel is closed",
      "ws:recv_into: the byte channel is closed",
      "ws:recv_into: max must be a positive integer, got 0",
      "ws:recv_into: max must be a positive integer, got 1.5",
      "ws:recv_into: max must be a positive integer, got string",
      "ws:recv_into: expected a websocket, got string",
      "ws:send: the byte channel message was released",
      "ws:send: expected a string or a byte channel message, got number",
      "ws:send: text is not valid UTF-8",
    }
    for i, w in ipairs(want) do
      assert.truthy(r[i] and r[i]:find(w, 1, true), tostring(r[i]) .. " ~ " .. w)
    end
  end)
end)

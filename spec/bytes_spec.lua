-- Byte channels (nexus.channel.bytes): claim/commit/abort, recv/release,
-- ordering and wrap-around in the ring, backpressure, FIFO service of
-- waiting producers, close rules, aborted and timed-out waits, garbage
-- collection, bad input, and driving the channel from C (through the FFI
-- table, and from a compiled C library).
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local nexus = require "nexus"
local bytes = require "nexus.bytes"
local ffi = require "ffi"

local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$")) or "."

-- Asserts that fn(...) raises a string error containing every needle.
local function raises(needles, fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error containing '" .. needles[1] .. "', but the call succeeded")
  assert(type(err) == "string", "expected a string error, got " .. type(err))
  for _, n in ipairs(needles) do
    assert(err:find(n, 1, true), "error '" .. err .. "' does not contain '" .. n .. "'")
  end
  assert(not err:find("C-call boundary", 1, true), "LuaJIT's own yield error leaked: " .. err)
  return err
end

-- The ring of a channel of capacity c holds records of 8 + len rounded up
-- to 8, in align8(c) + 8 bytes.
local function rec(n) return 8 + math.ceil(n / 8) * 8 end

-- Runs fn in a coroutine of its own, then collects garbage: what fn
-- dropped is gone. (Locals of the running function can linger in stale
-- stack slots, and compiled traces can keep a dropped object reachable:
-- hence the coroutine and jit.flush.)
local function dropped_in(fn)
  local r = coroutine.wrap(fn)()
  jit.flush()
  -- Four full cycles, not two: "a collected receiver closes the channel"
  -- failed about once in 50 runs with two (and once under valgrind), the
  -- receiver's finalizer not yet run.
  for _ = 1, 4 do collectgarbage() end
  return r
end

-- Deterministic sizes and contents.
local function lcg(seed)
  local x = seed
  return function(n)
    x = (x * 48271) % 2147483647
    return 1 + x % n
  end
end

local function payload(i, n)
  local s = ("%d:"):format(i)
  return (s .. string.rep(string.char(65 + i % 26), n)):sub(1, n)
end

describe("byte channel", function()
  after_each(H.cleanup)

  describe("messages", function()
    it("send and recv keep order and content through many wrap-arounds", function()
      local want, got = {}, {}
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(100)
        local size = lcg(7)
        for i = 1, 3000 do want[i] = payload(i, size(100)) end
        local step = lcg(11)
        local consumer = nexus.spawn(function()
          while true do
            local m, err = rx:recv()
            if not m then return err end
            got[#got + 1] = m:string()
            assert(#m == m.len)
            m:release()
            if step(4) == 1 then nexus.yield() end
          end
        end)
        for i = 1, #want do
          assert(tx:send(want[i]))
          if step(3) == 1 then nexus.yield() end
        end
        tx:close()
        assert.are.equal("closed", consumer:join())
      end)
      assert.are.equal(#want, #got)
      for i = 1, #want do assert(want[i] == got[i], "message " .. i .. " differs") end
    end)

    it("claim hands out room to write through ptr; recv reads it through ptr", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(64)
        local c = tx:claim(10)
        assert.are.equal(10, c.len)
        assert.are.equal(0, tonumber(ffi.cast("uintptr_t", c.ptr)) % 8)
        for i = 0, 9 do c.ptr[i] = 48 + i end
        assert.is_true(c:commit())
        local m = rx:recv()
        assert.are.equal(10, m.len)
        assert.are.equal(0, tonumber(ffi.cast("uintptr_t", m.ptr)) % 8)
        assert.are.equal(48 + 7, m.ptr[7])
        assert.are.equal("0123456789", m:string())
        assert.are.equal("0123456789", ffi.string(m.ptr, m.len))
        m:release()
      end)
    end)

    it("a message as large as the capacity fits, once the ring is empty", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(100)
        assert(tx:send("x"))
        local big = string.rep("B", 100)
        local sent = false
        local h = nexus.spawn(function() assert(tx:send(big)); sent = true end)
        nexus.sleep(0.01)
        assert.is_false(sent)                 -- waits for the whole ring
        local m = rx:recv()
        assert.are.equal("x", m:string())
        m:release()
        h:join()
        assert.is_true(sent)
        m = rx:recv()
        assert.are.equal(big, m:string())
        m:release()
        assert(tx:try_send(big))
      end)
    end)

    it("delivers in claim order: a later commit waits for an earlier claim", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(64)
        local c1, c2 = tx:claim(3), tx:claim(3)
        ffi.copy(c1.ptr, "one", 3)
        ffi.copy(c2.ptr, "two", 3)
        assert(c2:commit())
        assert.are.equal(1, rx:len())
        local m, err = rx:try_recv()
        assert.is_nil(m)
        assert.are.equal("empty", err)
        assert(c1:commit())
        m = rx:recv(); assert.are.equal("one", m:string()); m:release()
        m = rx:recv(); assert.are.equal("two", m:string()); m:release()
      end)
    end)

    it("abort gives the room back, wherever the claim is", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(64)
        -- the newest claim: its room is back at once
        local c = tx:claim(64)
        local x, err = tx:try_claim(1)
        assert.is_nil(x); assert.are.equal("full", err)
        c:abort()
        c = assert(tx:try_claim(64))
        c:abort()
        -- a claim in the middle: skipped, and freed when the receiver passes it
        local a, b, d = tx:claim(4), tx:claim(4), tx:claim(4)
        ffi.copy(a.ptr, "aaaa", 4); ffi.copy(d.ptr, "dddd", 4)
        b:abort()
        a:commit(); d:commit()
        local m = rx:recv(); assert.are.equal("aaaa", m:string()); m:release()
        m = rx:recv(); assert.are.equal("dddd", m:string()); m:release()
        assert.are.equal(0, rx:len())
        assert(tx:try_claim(64)):abort()      -- all room is back
      end)
    end)

    it("iter releases each message before the next and ends at closed", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(32)
        nexus.spawn(function()
          for i = 1, 50 do assert(tx:send("m" .. i)) end
          tx:close()
        end)
        local n, last = 0, nil
        for m in rx:iter() do
          n = n + 1
          assert.are.equal("m" .. n, m:string())
          last = m
        end
        assert.are.equal(50, n)
        raises({ "message:string", "released" }, last.string, last)
        local m, err = rx:recv()
        assert.is_nil(m); assert.are.equal("closed", err)
      end)
    end)

    it("the hot path allocates nothing: send, claim, recv and release", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(65536)
        local s = string.rep("a", 64)
        local bad = 0
        local function rounds(n)       -- (busted's assert allocates: count instead)
          for _ = 1, n do
            if not tx:send(s) then bad = bad + 1 end
            local c = tx:claim(64)
            ffi.fill(c.ptr, 64, 66)
            c:commit()
            local m = rx:recv()
            local first = m.ptr[0]
            m:release()
            m = rx:recv()
            if m.ptr[0] == first or m.len ~= 64 then bad = bad + 1 end
            m:release()
          end
        end
        rounds(20000)                        -- warm up (and compile)
        collectgarbage("collect")
        collectgarbage("stop")
        local before = collectgarbage("count")
        rounds(200000)
        local grown = (collectgarbage("count") - before) * 1024
        collectgarbage("restart")
        assert.are.equal(0, bad)
        assert(grown / 200000 < 1, ("%.2f bytes per round"):format(grown / 200000))
      end)
    end)
  end)

  describe("backpressure and waiting producers", function()
    it("the producer is never more than the ring ahead of the consumer", function()
      local worst
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(64)   -- 72-byte ring: 4 records of 16
        local sent, received = 0, 0
        worst = 0
        nexus.spawn(function()
          for i = 1, 200 do
            assert(tx:send(("%08d"):format(i)))
            sent = sent + 1
            if sent - received > worst then worst = sent - received end
          end
          tx:close()
        end)
        for m in rx:iter() do
          received = received + 1
          assert.are.equal(("%08d"):format(received), m:string())
          if received % 10 == 0 then nexus.sleep(0.001) end
        end
        assert.are.equal(200, received)
      end)
      assert.is_true(worst <= math.floor(72 / rec(8)) + 1, "worst lead " .. worst)
      assert.is_true(worst >= 4, "the producer never filled the ring (" .. worst .. ")")
    end)

    it("waiting producers are served first in, first out; a small claim never overtakes", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(64)   -- 72-byte ring
        assert(tx:send(string.rep("1", 24)))     -- [0, 32)
        assert(tx:send(string.rep("2", 24)))     -- [32, 64): 8 bytes left
        local order = {}
        local a = nexus.spawn(function()
          local c = tx:claim(40); ffi.copy(c.ptr, string.rep("A", 40), 40); c:commit()
          order[#order + 1] = "A"
        end)
        local b = nexus.spawn(function()
          local c = tx:claim(1); c.ptr[0] = 66; c:commit()
          order[#order + 1] = "B"
        end)
        nexus.yield()
        local m = rx:recv(); m:release()         -- 40 free bytes: B's 16 would fit, A's 48 not
        nexus.sleep(0.01)
        assert.are.same({}, order)               -- B waits behind A
        local x, err = tx:try_claim(1)
        assert.is_nil(x); assert.are.equal("full", err)   -- and so does a newcomer
        m = rx:recv(); m:release()
        a:join(); b:join()
        assert.are.same({ "A", "B" }, order)
        m = rx:recv(); assert.are.equal(string.rep("A", 40), m:string()); m:release()
        m = rx:recv(); assert.are.equal("B", m:string()); m:release()
      end)
    end)

    it("many producers waiting at once all get through, each in its own order", function()
      local got = {}
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(48)
        for p = 1, 8 do
          local mine = tx:clone()
          nexus.spawn(function()
            for i = 1, 100 do assert(mine:send(("%d:%d"):format(p, i))) end
            mine:close()
          end)
        end
        tx:close()
        for m in rx:iter() do got[#got + 1] = m:string() end
      end)
      assert.are.equal(800, #got)
      local last = {}
      for _, s in ipairs(got) do
        local p, i = s:match("(%d+):(%d+)")
        p, i = tonumber(p), tonumber(i)
        assert.are.equal((last[p] or 0) + 1, i)
        last[p] = i
      end
    end)
  end)

  describe("aborted and timed-out waits leave the channel consistent", function()
    it("a producer timed out while waiting for room loses nothing and blocks nobody", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(64)
        assert(tx:send(string.rep("f", 64)))
        local ok, err = nexus.timeout(0.02, function() return tx:claim(30) end)
        assert.is_nil(ok); assert.are.equal("timeout", err)
        local later = nexus.spawn(function() assert(tx:send("later")) end)
        nexus.yield()
        local m = rx:recv(); m:release()
        later:join()
        m = rx:recv(); assert.are.equal("later", m:string()); m:release()
        assert(tx:try_claim(64)):abort()
      end)
    end)

    it("a producer aborted while waiting drops out of the queue", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(64)
        assert(tx:send(string.rep("f", 64)))
        local w = nexus.spawn(function() tx:claim(50); error("never") end)
        local x = nexus.spawn(function() assert(tx:send("x")) end)
        nexus.yield()
        assert.is_true(w:abort())
        local m = rx:recv(); m:release()
        x:join()
        m = rx:recv(); assert.are.equal("x", m:string()); m:release()
        assert(tx:try_claim(64)):abort()
      end)
    end)

    it("a producer aborted after it was handed room, before it ran, gives the room back", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(64)   -- 72-byte ring
        assert(tx:send(string.rep("f", 64)))
        local w = nexus.spawn(function() local c = tx:claim(40); c:commit(); error("never") end)
        local x = nexus.spawn(function() assert(tx:send(string.rep("x", 24))) end)
        nexus.yield()
        local m = rx:recv()
        m:release()               -- w gets 48 bytes and is woken; x (32) does not fit behind it
        assert.is_true(w:abort()) -- before w runs: its 48 bytes come back, x is served
        x:join()
        m = rx:recv(); assert.are.equal(string.rep("x", 24), m:string()); m:release()
        assert.are.equal(0, rx:len())
        assert(tx:try_claim(64)):abort()
      end)
    end)

    it("a receiver timed out or aborted while waiting leaves no stale receiver behind", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(64)
        local ok, err = nexus.timeout(0.02, function() return rx:recv() end)
        assert.is_nil(ok); assert.are.equal("timeout", err)
        local r = nexus.spawn(function() rx:recv(); error("never") end)
        nexus.yield()
        r:abort()
        local got
        local r2 = nexus.spawn(function() local m = rx:recv(); got = m:string(); m:release() end)
        nexus.yield()
        assert(tx:send("hello"))
        r2:join()
        assert.are.equal("hello", got)
      end)
    end)

    it("rt:close() with producers and a receiver waiting closes cleanly", function()
      local rt = nexus.runtime.new()
      local tx, rx = rt:block_on(function()
        local tx, rx = nexus.channel.bytes(16)
        assert(tx:send(string.rep("z", 16)))
        for _ = 1, 3 do nexus.spawn(function() tx:send("w") end) end
        nexus.yield()
        return tx, rx
      end)
      rt:close()
      local m = rx:try_recv()
      assert.are.equal(string.rep("z", 16), m:string())
      m:release()
      assert(tx:try_send(string.rep("y", 16)))
    end)
  end)

  describe("closing", function()
    it("the receiver drains what was committed, then sees closed once every sender is", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(64)
        local tx2 = tx:clone()
        assert(tx:send("a")); assert(tx2:send("b"))
        tx:close()
        assert.is_true(tx:is_closed())
        assert.is_false(tx2:is_closed())
        local m = rx:recv(); assert.are.equal("a", m:string()); m:release()
        m = rx:recv(); assert.are.equal("b", m:string()); m:release()
        assert.is_false(rx:is_closed())
        local done
        nexus.spawn(function() done = { rx:recv() } end)
        nexus.yield()
        tx2:close()
        nexus.yield()
        assert.are.same({ nil, "closed" }, done)
        assert.is_true(rx:is_closed())
        local s, err = tx:send("late")
        assert.is_nil(s); assert.are.equal("closed", err)
      end)
    end)

    it("sends waiting on a sender that gets closed give up with closed", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(16)
        local other = tx:clone()
        assert(tx:send(string.rep("q", 16)))
        local w1 = nexus.spawn(function() return { tx:send("w1") } end)
        local w2 = nexus.spawn(function() return { other:send("w2") } end)
        nexus.yield()
        tx:close()
        local m = rx:recv(); m:release()
        assert.are.same({ nil, "closed" }, w1:join())
        assert.are.same({ true }, w2:join())
        other:close()
        m = rx:recv(); assert.are.equal("w2", m:string()); m:release()
        assert.are.same({ nil, "closed" }, { rx:recv() })
      end)
    end)

    it("an outstanding claim keeps the receiver waiting until it is committed", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(64)
        local c = tx:claim(4)
        ffi.copy(c.ptr, "last", 4)
        tx:close()
        local got
        local r = nexus.spawn(function() local m = rx:recv(); got = m:string(); m:release() end)
        nexus.yield()
        assert.is_nil(got)
        c:commit()
        r:join()
        assert.are.equal("last", got)
        assert.are.same({ nil, "closed" }, { rx:recv() })
      end)
    end)

    it("a collected sender counts as closed", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(64)
        dropped_in(function() assert(tx:clone():send("from the clone")) end)
        tx:close()
        local m = rx:recv(); assert.are.equal("from the clone", m:string()); m:release()
        local v, err = rx:recv()
        assert.is_nil(v); assert.are.equal("closed", err)
      end)
    end)

    it("closing the receiver: senders get closed, waiting ones too, queued messages are dropped", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(32)
        assert(tx:send(string.rep("q", 32)))
        local waiting
        local w = nexus.spawn(function() waiting = { tx:send("w") } end)
        local c
        nexus.yield()
        rx:close()
        w:join()
        assert.are.same({ nil, "closed" }, waiting)
        assert.are.equal(0, rx:len())
        assert.is_true(rx:is_closed())
        assert.is_true(tx:is_closed())
        assert.are.same({ nil, "closed" }, { tx:send("x") })
        assert.are.same({ nil, "closed" }, { tx:try_send("x") })
        assert.are.same({ nil, "closed" }, { tx:claim(1) })
        assert.are.same({ nil, "closed" }, { rx:recv() })
        assert.are.same({ nil, "closed" }, { rx:try_recv() })
        c = c
      end)
    end)

    it("a claim committed after the receiver closed reports closed; a held message stays readable", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(64)
        assert(tx:send("held"))
        local m = rx:recv()
        local c = tx:claim(4)
        rx:close()
        assert.are.same({ nil, "closed" }, { c:commit() })
        assert.are.equal("held", m:string())
        m:release()
      end)
    end)

    it("a collected receiver closes the channel for its senders", function()
      nexus.run(function()
        local tx = dropped_in(function() return (nexus.channel.bytes(64)) end)
        assert.are.same({ nil, "closed" }, { tx:send("x") })
        assert.is_true(tx:is_closed())
      end)
    end)

    it("a dropped claim gives its room back when collected; a dropped message too", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(64)
        dropped_in(function() tx:claim(64) end)
        assert(tx:try_claim(64)):abort()
        assert.is_false(rx:is_closed())
        local tx2 = dropped_in(function()
          local t, r = nexus.channel.bytes(64)
          assert(t:send("m"))
          assert(r:try_recv())     -- held, never released, dropped with r
          return t
        end)
        assert.are.same({ nil, "closed" }, { tx2:send("x") })
      end)
    end)
  end)

  -- Every way a producer waiting for room can lose its channel gives it
  -- nil, "closed" at once (the robustness issue's defect 7), and every way
  -- a task holding a claim can end abnormally gives the room back at once
  -- (defect 8); spec/regress_bytes_claims_spec.lua has the original cases.
  describe("waiting producers and claim holders, every way they can lose out", function()
    local function full(cap)
      local tx, rx = nexus.channel.bytes(cap)
      assert(tx:send(string.rep("f", cap)))
      return tx, rx
    end

    it("a claim waiting for room gives up when the receiver closes, like a send", function()
      nexus.run(function()
        local tx, rx = full(8)
        local w1 = nexus.spawn(function() return { tx:claim(3) } end)
        local w2 = nexus.spawn(function() return { tx:send("abc") } end)
        nexus.yield()
        rx:close()
        assert.are.same({ nil, "closed" }, w1:join())
        assert.are.same({ nil, "closed" }, w2:join())
      end)
    end)

    it("a send waiting for room gives up when the receiver is collected", function()
      nexus.run(function()
        local tx = coroutine.wrap(function() return (full(8)) end)()  -- the receiver: garbage
        local w = nexus.spawn(function() return { tx:send("abc") } end)
        nexus.yield()
        dropped_in(function() end)                         -- collects the receiver while w waits
        assert.are.same({ nil, "closed" }, w:join())
        assert.is_true(tx:is_closed())
      end)
    end)

    it("a send waiting behind another sender's uncommitted claim gives up when its own sender closes", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(8)
        local other = tx:clone()
        local c = tx:claim(8)
        local w = nexus.spawn(function() return { other:send("a") } end)
        nexus.yield()
        tx:close()                                         -- the holder's sender: its claim stays valid
        nexus.yield()
        other:close()                                      -- the waiter's sender
        assert.are.same({ nil, "closed" }, w:join())
        ffi.copy(c.ptr, "12345678", 8)
        assert.is_true(c:commit())
        local m = rx:recv(); assert.are.equal("12345678", m:string()); m:release()
        assert.are.same({ nil, "closed" }, { rx:recv() })
      end)
    end)

    it("a send waiting inside nexus.timeout gives up with closed when its sender closes", function()
      nexus.run(function()
        local tx, rx = full(8)
        local w = nexus.spawn(function() return { nexus.timeout(5, tx.send, tx, "a") } end)
        nexus.yield()
        tx:close()
        assert.are.same({ true, nil, "closed" }, w:join())
        rx:close()
      end)
    end)

    it("a claim held inside nexus.timeout comes back at once when the task is aborted or the timed function fails", function()
      nexus.run(function()
        collectgarbage("stop")
        local tx, rx = nexus.channel.bytes(8)
        local h = nexus.spawn(function()
          nexus.timeout(10, function() local c = tx:claim(8); nexus.sleep(5); c:commit() end)
        end)
        nexus.yield()
        assert.are.same({ nil, "full" }, { tx:try_send("x") })
        h:abort()
        assert.is_true(tx:try_send("12345678"))
        local m = rx:recv(); m:release()
        h = nexus.spawn(function()
          nexus.timeout(10, function() local c = tx:claim(8); nexus.sleep(0.001); error("fails") end)
        end)
        assert.is_false((pcall(h.join, h)))                -- joined: not reported
        assert.is_true(tx:try_send("12345678"))
        m = rx:recv(); m:release()
        collectgarbage("restart")
      end)
    end)

    it("a claim held by a scope's child comes back at once when a sibling's error aborts it", function()
      nexus.run(function()
        collectgarbage("stop")
        local tx, rx = nexus.channel.bytes(8)
        local ok = pcall(nexus.scope, function(s)
          s:spawn(function() local c = tx:claim(8); nexus.sleep(5); c:commit() end)
          s:spawn(function() nexus.sleep(0.001); error("sibling fails") end)
        end)
        assert.is_false(ok)
        assert.is_true(tx:try_send("12345678"))
        local m = rx:recv(); m:release()
        collectgarbage("restart")
      end)
    end)
  end)

  describe("bad input", function()
    it("capacity 0, negative, non-integer, non-number or too large raises", function()
      for _, v in ipairs({ 0, -1, 1.5, 0 / 0, "64", true, {} }) do
        raises({ "nexus.channel.bytes", "capacity" }, nexus.channel.bytes, v)
      end
      raises({ "nexus.channel.bytes", "capacity" }, nexus.channel.bytes)
      raises({ "nexus.channel.bytes", "too large" }, nexus.channel.bytes, 2 ^ 31)
    end)

    it("claim of 0 bytes, more than the capacity or a non-integer raises", function()
      local tx = nexus.channel.bytes(16)
      raises({ "tx:claim", "0 bytes" }, tx.claim, tx, 0)
      raises({ "tx:claim", "-3 bytes" }, tx.claim, tx, -3)
      raises({ "tx:claim", "more than the capacity (16)" }, tx.claim, tx, 17)
      raises({ "tx:claim", "integer" }, tx.claim, tx, 2.5)
      raises({ "tx:claim", "integer" }, tx.claim, tx, "4")
      raises({ "tx:try_claim", "0 bytes" }, tx.try_claim, tx, 0)
      raises({ "tx:try_claim", "more than the capacity" }, tx.try_claim, tx, 1000)
    end)

    it("send of a non-string, an empty or a too long string raises", function()
      local tx = nexus.channel.bytes(4)
      raises({ "tx:send", "expected a string, got number" }, tx.send, tx, 42)
      raises({ "tx:send", "expected a string, got nil" }, tx.send, tx, nil)
      raises({ "tx:send", "empty message" }, tx.send, tx, "")
      raises({ "tx:send", "5 bytes is more than the capacity (4)" }, tx.send, tx, "12345")
      raises({ "tx:try_send", "expected a string" }, tx.try_send, tx, {})
    end)

    it("committing or aborting a claim twice raises", function()
      local tx, rx = nexus.channel.bytes(64)
      local c = tx:claim(4)
      assert.is_true(c:commit())
      raises({ "claim:commit", "already committed or aborted" }, c.commit, c)
      raises({ "claim:abort", "already committed or aborted" }, c.abort, c)
      c = tx:claim(4)
      c:abort()
      raises({ "claim:commit", "already committed or aborted" }, c.commit, c)
      raises({ "claim:abort", "already committed or aborted" }, c.abort, c)
      assert.are.equal(1, rx:len())
    end)

    it("using a released message raises", function()
      local tx, rx = nexus.channel.bytes(16)
      assert(tx:send("abc"))
      local m = rx:try_recv()
      m:release()
      raises({ "message:string", "released" }, m.string, m)
      raises({ "message:release", "already released" }, m.release, m)
      assert.are.equal(0, m.len)
      assert.are.equal("nexus.bytes.message(released)", tostring(m))
    end)

    it("receiving again while holding a message raises", function()
      local tx, rx = nexus.channel.bytes(64)
      assert(tx:send("a")); assert(tx:send("b"))
      local m = rx:try_recv()
      raises({ "rx:try_recv", "previous message was not released" }, rx.try_recv, rx)
      nexus.run(function()
        raises({ "rx:recv", "previous message was not released" }, rx.recv, rx)
      end)
      m:release()
      assert.are.equal("b", rx:try_recv():string())
    end)

    it("receiving from two tasks at once raises", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(16)
        local first = nexus.spawn(function() local m = rx:recv(); return m:string() end)
        nexus.yield()
        raises({ "rx:recv", "another task is already receiving" }, rx.recv, rx)
        raises({ "rx:try_recv", "another task is already receiving" }, rx.try_recv, rx)
        assert(tx:send("one"))
        assert.are.equal("one", first:join())
      end)
    end)

    it("a suspending call outside a task raises; one that need not suspend works", function()
      local tx, rx = nexus.channel.bytes(8)
      raises({ "rx:recv", "not inside a nexus task" }, rx.recv, rx)
      assert(tx:send("12345678"))
      raises({ "tx:send", "not inside a nexus task" }, tx.send, tx, "x")
      raises({ "tx:claim", "not inside a nexus task" }, tx.claim, tx, 1)
      local m = rx:recv()
      assert.are.equal("12345678", m:string())
      m:release()
    end)

    it("suspending where Lua cannot yield raises a nexus error, and leaves no waiter", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(8)
        raises({ "rx:recv", "cannot suspend here" }, function()
          table.sort({ 1, 2 }, function(a, b) rx:recv(); return a < b end)
        end)
        assert(tx:send("ok"))
        local m = rx:recv(); assert.are.equal("ok", m:string()); m:release()
      end)
    end)

    it("using a channel of one runtime in another one's task raises", function()
      local a, b = nexus.runtime.new(), nexus.runtime.new()
      local tx, rx = a:block_on(function() return nexus.channel.bytes(8) end)
      raises({ "tx:send", "belongs to another runtime" }, b.block_on, b, function() return tx:send("x") end)
      raises({ "rx:recv", "belongs to another runtime" }, b.block_on, b, function() return rx:recv() end)
      a:close()
      -- a closed runtime has no waiters: another may take the channel over
      local got = b:block_on(function()
        nexus.spawn(function() tx:send("after") end)
        local m = rx:recv()
        local s = m:string()
        m:release()
        return s
      end)
      assert.are.equal("after", got)
      b:close()
    end)

    it("clone of a closed sender raises", function()
      local tx = nexus.channel.bytes(8)
      tx:close()
      raises({ "tx:clone", "closed" }, tx.clone, tx)
      assert.are.same({ nil, "closed" }, { tx:send("x") })
    end)
  end)

  describe("from C", function()
    local api = bytes.c_api
    local EAGAIN, EBUSY, EINVAL, EPIPE = -11, -16, -22, -32

    it("C claims and commits, Lua receives; Lua sends, C receives and releases", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(64)
        local ch = tx:cptr()
        local c = ffi.new("nexus_bclaim")
        assert.are.equal(0, api.claim(ch, 5, c))
        ffi.copy(c.ptr, "fromC", 5)
        assert.are.equal(0, api.commit(c))
        assert.are.equal(1, tonumber(api.len(ch)))
        assert.are.equal(64, tonumber(api.capacity(ch)))
        local m = rx:recv()
        assert.are.equal("fromC", m:string())
        m:release()
        assert(tx:send("toC"))
        local cm = ffi.new("nexus_bmsg")
        assert.are.equal(0, api.recv(rx:cptr(), cm))
        assert.are.equal("toC", ffi.string(cm.ptr, cm.len))
        assert.are.equal(0, api.release(cm))
        assert.are.equal(EAGAIN, api.recv(ch, cm))
      end)
    end)

    it("returns the documented codes for misuse", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(16)
        local ch = tx:cptr()
        local c, m = ffi.new("nexus_bclaim"), ffi.new("nexus_bmsg")
        assert.are.equal(EINVAL, api.claim(ch, 0, c))
        assert.are.equal(EINVAL, api.claim(ch, 17, c))
        assert.are.equal(0, api.claim(ch, 16, c))
        assert.are.equal(EINVAL, api.claim(ch, 1, c))       -- c is in use
        local c2 = ffi.new("nexus_bclaim")
        assert.are.equal(EAGAIN, api.claim(ch, 1, c2))      -- full
        assert.are.equal(0, api.commit(c))
        assert.are.equal(EINVAL, api.commit(c))             -- twice
        assert.are.equal(EINVAL, api.abort(c))
        assert.are.equal(0, api.recv(ch, m))
        local m2 = ffi.new("nexus_bmsg")
        assert.are.equal(EBUSY, api.recv(ch, m2))           -- one held at a time
        assert.are.equal(0, api.release(m))
        assert.are.equal(EINVAL, api.release(m))            -- twice
        rx:close()
        assert.are.equal(EPIPE, api.claim(ch, 1, c))
        assert.are.equal(EPIPE, api.recv(ch, m))
      end)
    end)

    it("a C commit wakes a waiting Lua receiver; C claims wait behind waiting tasks", function()
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(64)
        local ch = tx:cptr()
        local got
        local r = nexus.spawn(function() local m = rx:recv(); got = m:string(); m:release() end)
        nexus.yield()
        local m = ffi.new("nexus_bmsg")
        assert.are.equal(EBUSY, api.recv(ch, m))            -- a task is receiving
        local c = ffi.new("nexus_bclaim")
        assert.are.equal(0, api.claim(ch, 2, c))
        ffi.copy(c.ptr, "hi", 2)
        assert.are.equal(0, api.commit(c))
        r:join()
        assert.are.equal("hi", got)
        -- a task waits for room: C may not jump the queue
        assert(tx:send(string.rep("1", 24)))              -- [0, 32) of the 72-byte ring
        assert(tx:send(string.rep("2", 24)))              -- [32, 64)
        local w = nexus.spawn(function() assert(tx:send(string.rep("w", 40))) end)
        nexus.yield()
        local m1 = rx:recv(); m1:release()                  -- 40 bytes free: not enough for w
        assert.are.equal(EAGAIN, api.claim(ch, 1, c))       -- 16 would fit, but w is first
        m1 = rx:recv(); m1:release()
        w:join()
        assert.are.equal(string.rep("w", 40), rx:recv():string())
      end)
    end)

    -- A C library built against include/nexus.h: a producer and a consumer
    -- that never enter Lua.
    local csrc = [[
#include <stdio.h>
#include <string.h>
#include "nexus.h"
#ifdef VIA_SYMBOLS
#define CLAIM(ch, n, c) nexus_bchan_claim(ch, n, c)
#define COMMIT(c) nexus_bchan_commit(c)
#define RECV(ch, m) nexus_bchan_recv(ch, m)
#define RELEASE(m) nexus_bchan_release(m)
#define API_ARG
#else
#define CLAIM(ch, n, c) api->claim(ch, n, c)
#define COMMIT(c) api->commit(c)
#define RECV(ch, m) api->recv(ch, m)
#define RELEASE(m) api->release(m)
#define API_ARG const nexus_bytes_api *api,
#endif
/* Commits "c<first>", "c<first+1>"... until n or no room; returns the count. */
int produce(API_ARG nexus_bchan *ch, int first, int n) {
  nexus_bclaim c;
  memset(&c, 0, sizeof c);
  int i;
  for (i = 0; i < n; i++) {
    char buf[32];
    int len = snprintf(buf, sizeof buf, "c%d", first + i);
    if (CLAIM(ch, (size_t)len, &c) != 0) break;
    memcpy(c.ptr, buf, (size_t)len);
    if (COMMIT(&c) != 0) return -1;
  }
  return i;
}
/* Receives until none is left; returns the count and checks the sequence. */
int consume(API_ARG nexus_bchan *ch, int *next) {
  nexus_bmsg m;
  memset(&m, 0, sizeof m);
  int n = 0;
  while (RECV(ch, &m) == 0) {
    char want[32];
    int len = snprintf(want, sizeof want, "c%d", *next);
    if ((int)m.len != len || memcmp(m.ptr, want, (size_t)len) != 0) return -1;
    (*next)++;
    n++;
    if (RELEASE(&m) != 0) return -1;
  }
  return n;
}
]]

    local function build(defs)
      local src = H.tmpfile(csrc)
      local so = H.tmpfile()
      local cc = os.getenv("CC") or "cc"
      local r = H.sh(("%s -shared -fPIC -O2 -Wall -Werror %s -I %s -o %s -x c %s"):format(
        cc, defs, H.q(ROOT .. "/include"), H.q(so), H.q(src)))
      assert(r.rc == 0, "cc failed: " .. r.err)
      return so
    end

    local cdef = [[
int produce(const nexus_bytes_api *api, nexus_bchan *ch, int first, int n);
int consume(const nexus_bytes_api *api, nexus_bchan *ch, int *next);
]]

    it("a C producer and a C consumer move 20,000 messages, Lua only schedules", function()
      local lib = ffi.load(build(""))
      ffi.cdef(cdef)
      local total = 20000
      nexus.run(function()
        local tx, rx = nexus.channel.bytes(256)
        local next = ffi.new("int[1]", 1)
        local consumer = nexus.spawn(function()
          local n = 0
          while n < total do
            local got = lib.consume(api, rx:cptr(), next)
            assert(got >= 0, "C consumer saw a wrong message")
            n = n + got
            if got == 0 then nexus.yield() end
          end
          return n
        end)
        local sent = 0
        while sent < total do
          local k = lib.produce(api, tx:cptr(), sent + 1, math.min(100, total - sent))
          assert(k >= 0)
          sent = sent + k
          nexus.yield()
        end
        assert.are.equal(total, consumer:join())
        assert.are.equal(total + 1, next[0])
      end)
    end)

    it("the nexus command exports the nexus_bchan_* symbols to C libraries", function()
      local so = build("-DVIA_SYMBOLS")
      local r = H.nexus_script([[
local ffi = require "ffi"
local nexus = require "nexus"
ffi.cdef [=[
typedef struct nexus_bchan nexus_bchan;
int produce(nexus_bchan *ch, int first, int n);
int consume(nexus_bchan *ch, int *next);
]=]
local lib = ffi.load(arg[1])
local tx, rx = nexus.channel.bytes(128)
local next = ffi.new("int[1]", 1)
local made = lib.produce(ffi.cast("nexus_bchan *", tx:cptr()), 1, 1000)
local got = lib.consume(ffi.cast("nexus_bchan *", rx:cptr()), next)
assert(tx:send("c" .. next[0]))
local m = rx:recv()
print(made, got, m:string())
]], so)
      assert.are.equal(0, r.rc, r.err)
      local made, got, last = r.out:match("^(%d+)%s+(%d+)%s+(%S+)")
      assert.is_true(tonumber(made) > 0)
      assert.are.equal(made, got)
      assert.are.equal("c" .. (tonumber(made) + 1), last)
    end)
  end)
end)

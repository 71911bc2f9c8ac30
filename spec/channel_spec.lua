-- The local channel, nexus.channel(capacity): return values, FIFO service,
-- the close rules, identity of values, aborts and timeouts of waiters,
-- runtime close, several block_on calls, and bad input.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local nexus = require "nexus"
local pack = H.pack

local function gc()
  collectgarbage("collect")
  collectgarbage("collect")
end

-- Runs fn as the root task of a fresh runtime and returns its results;
-- a deadlock (a waiter nobody wakes) fails the spec instead of hanging.
local run = nexus.run

describe("channel", function()
  describe("rx:close with a task waiting in rx:recv", function()
    it("wakes the waiting receiver with nil, \"closed\"", function()
      local r = run(function()
        local _, rx = nexus.channel(1)
        local h = nexus.spawn(function() return pack(rx:recv()) end)
        nexus.yield()                    -- h waits in recv
        rx:close()                       -- from another task
        return h:join()
      end)
      assert.are.same({ n = 2, nil, "closed" }, r)
    end)
  end)
  describe("a granted sender aborted after every sender closed", function()
    it("wakes the waiting receiver with nil, \"closed\" (no hang)", function()
      local r = run(function()
        local tx, rx = nexus.channel(1)
        tx:send(1)
        local s2 = nexus.spawn(function() tx:send(2) end)
        nexus.yield()                    -- s2 waits for room
        local h = nexus.spawn(function()
          local a = rx:recv()            -- takes 1: s2 is granted the room
          return pack(a, rx:recv())      -- waits for s2's value
        end)
        nexus.yield()                    -- h ran; s2 is queued after us
        tx:close()                       -- the only sender object (s2 holds a grant:
                                         -- a waiting send would give up here)
        assert(s2:abort())               -- s2 never used its grant
        return h:join()
      end)
      assert.are.same({ n = 3, 1, nil, "closed" }, r)
    end)
  end)
  describe("a channel whose waiters a closed runtime aborted", function()
    -- The runtime's task records are freed with it: the channel must not
    -- keep entries pointing at them (SANITIZE=address catches a read).
    it("serves waiters of another runtime afterwards, in order", function()
      local tx, rx = nexus.channel(1)
      do
        local rt = nexus.runtime.new()
        rt:block_on(function()
          tx:send(0)
          for i = 1, 20 do nexus.spawn(function() tx:send(i) end) end
          nexus.yield()                  -- 20 senders wait for room
        end)
        rt:close()                       -- aborts them
      end
      gc()                               -- the first runtime is freed
      local rt2 = nexus.runtime.new()
      local got = rt2:block_on(function()
        for i = 1, 20 do nexus.spawn(function() tx:send(100 + i) end) end
        local got = {}
        for i = 1, 21 do got[i] = rx:recv() end
        return got
      end)
      rt2:close()
      local want = { 0 }
      for i = 1, 20 do want[i + 1] = 100 + i end
      assert.are.same(want, got)
    end)
  end)
  describe("a receiver that is garbage-collected", function()
    it("drops the queued values, though senders live on", function()
      local tx, rx = nexus.channel(4)
      local alive = setmetatable({}, { __mode = "k" })
      for _ = 1, 3 do
        local v = {}
        alive[v] = true
        assert.is_true(tx:try_send(v))
      end
      rx = nil
      gc()
      assert.is_nil(next(alive), "queued values outlived the receiver")
      assert.are.same({ n = 2, nil, "closed" }, pack(tx:try_send(1)))
    end)
  end)

  ---------------------------------------------------------------- API

  describe("return values", function()
    it("nexus.channel(n) and nexus.channel.new(n) give a sender and a receiver", function()
      for _, mk in ipairs({ nexus.channel, nexus.channel.new }) do
        local r = pack(mk(3))
        assert.are.equal(2, r.n)
        local tx, rx = r[1], r[2]
        assert.are.equal(3, tx:capacity())
        assert.are.equal(3, rx:capacity())
        assert.are.equal(0, tx:len())
        assert.are.equal(0, rx:len())
        assert.is_false(tx:is_closed())
        assert.is_false(rx:is_closed())
      end
    end)

    it("send returns true; recv returns the value alone", function()
      local s, r = run(function()
        local tx, rx = nexus.channel(2)
        return pack(tx:send("a")), pack(rx:recv())
      end)
      assert.are.same({ n = 1, true }, s)
      assert.are.same({ n = 1, "a" }, r)
    end)

    it("try_send: true | nil, \"full\" | nil, \"closed\"", function()
      local tx, rx = nexus.channel(1)
      assert.are.same({ n = 1, true }, pack(tx:try_send(1)))
      assert.are.same({ n = 2, nil, "full" }, pack(tx:try_send(2)))
      rx:close()
      assert.are.same({ n = 2, nil, "closed" }, pack(tx:try_send(3)))
    end)

    it("try_recv: v | nil, \"empty\" | nil, \"closed\"", function()
      local tx, rx = nexus.channel(1)
      assert.are.same({ n = 2, nil, "empty" }, pack(rx:try_recv()))
      tx:try_send(false)
      assert.are.same({ n = 1, false }, pack(rx:try_recv()))
      tx:close()
      assert.are.same({ n = 2, nil, "closed" }, pack(rx:try_recv()))
    end)

    it("send and recv of a closed channel: nil, \"closed\"", function()
      local s, r = run(function()
        local tx, rx = nexus.channel(1)
        local tx2 = tx:clone()
        tx:close()
        local s1 = pack(tx:send(1))            -- this sender is closed
        tx2:close()
        local r1 = pack(rx:recv())             -- every sender is closed
        local tx3, rx3 = nexus.channel(1)
        rx3:close()
        return { s1, pack(tx3:send(1)) }, { r1, pack(rx3:recv()) }
      end)
      assert.are.same({ { n = 2, nil, "closed" }, { n = 2, nil, "closed" } }, s)
      assert.are.same({ { n = 2, nil, "closed" }, { n = 2, nil, "closed" } }, r)
    end)

    it("close returns nothing and is idempotent", function()
      local tx, rx = nexus.channel(1)
      assert.are.equal(0, pack(tx:close()).n)
      assert.are.equal(0, pack(tx:close()).n)
      assert.are.equal(0, pack(rx:close()).n)
      assert.are.equal(0, pack(rx:close()).n)
    end)

    it("len counts queued values; capacity stays", function()
      local tx, rx = nexus.channel(3)
      local tx2 = tx:clone()
      tx:try_send(1)
      tx2:try_send(2)
      assert.are.equal(2, tx:len())
      assert.are.equal(2, tx2:len())
      assert.are.equal(2, rx:len())
      rx:try_recv()
      assert.are.equal(1, rx:len())
      assert.are.equal(3, tx2:capacity())
      assert.are.equal("number", type(rx:len()))
      assert.are.equal("number", type(tx:capacity()))
    end)

    it("is_closed: a sender once it or the receiver closed; the receiver once it or every sender closed", function()
      local tx, rx = nexus.channel(2)
      local tx2 = tx:clone()
      tx:close()
      assert.is_true(tx:is_closed())
      assert.is_false(tx2:is_closed())
      assert.is_false(rx:is_closed())
      tx2:try_send("queued")
      tx2:close()
      assert.is_true(rx:is_closed())         -- closed, though a value is still queued
      assert.are.equal("queued", rx:try_recv())

      local t3, r3 = nexus.channel(2)
      local t4 = t3:clone()
      r3:close()
      assert.is_true(r3:is_closed())
      assert.is_true(t3:is_closed())
      assert.is_true(t4:is_closed())
    end)

    it("clone gives another sender of the same channel", function()
      local tx, rx = nexus.channel(4)
      local tx2 = tx:clone()
      local tx3 = tx2:clone()
      assert.are_not.equal(tx, tx2)
      tx:try_send(1); tx2:try_send(2); tx3:try_send(3)
      assert.are.same({ 1, 2, 3 }, { rx:try_recv(), rx:try_recv(), rx:try_recv() })
    end)

    it("iter yields every value in order and ends when closed and drained", function()
      local got = run(function()
        local tx, rx = nexus.channel(2)
        nexus.spawn(function()
          for i = 1, 10 do tx:send(i) end
          tx:send(false)                     -- false does not end the loop
          tx:close()
        end)
        local got = {}
        for v in rx:iter() do got[#got + 1] = v end
        return got
      end)
      assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, false }, got)
    end)

    it("tostring shows the end, the fill and closing", function()
      local tx, rx = nexus.channel(4)
      assert.are.equal("nexus.channel.tx(0/4)", tostring(tx))
      assert.are.equal("nexus.channel.rx(0/4)", tostring(rx))
      tx:try_send(1)
      assert.are.equal("nexus.channel.tx(1/4)", tostring(tx))
      assert.are.equal("nexus.channel.rx(1/4)", tostring(rx))
      rx:close()
      assert.are.equal("nexus.channel.tx(0/4, closed)", tostring(tx))
      assert.are.equal("nexus.channel.rx(0/4, closed)", tostring(rx))
    end)
  end)

  describe("values", function()
    it("keep their identity (same table, function, coroutine, cdata)", function()
      local ffi = require "ffi"
      local vals = { {}, function() end, coroutine.create(function() end), ffi.new("int[1]"),
                     setmetatable({}, { __index = function() return 1 end }), io.stdout }
      local got = run(function()
        local tx, rx = nexus.channel(2)
        nexus.spawn(function() for _, v in ipairs(vals) do tx:send(v) end end)
        local got = {}
        for i = 1, #vals do got[i] = rx:recv() end
        return got
      end)
      for i, v in ipairs(vals) do assert.is_true(rawequal(v, got[i]), "value " .. i) end
    end)

    it("of every kind but nil pass through, false, 0 and \"\" included", function()
      local vals = { false, 0, "", true, -1.5, "x", 0 / 0 }
      local tx, rx = nexus.channel(#vals)
      for _, v in ipairs(vals) do assert.is_true(tx:try_send(v)) end
      for i, v in ipairs(vals) do
        local g = rx:try_recv()
        if v ~= v then assert.is_true(g ~= g) else assert.are.equal(v, g, "value " .. i) end
      end
    end)

    it("are served first in, first out across many wrap-arounds of the ring", function()
      local got = run(function()
        local tx, rx = nexus.channel(7)
        local tx2 = tx:clone()
        nexus.spawn(function() for i = 1, 5000, 2 do tx:send(i) end; tx:close() end)
        nexus.spawn(function() for i = 2, 5000, 2 do tx2:send(i) end; tx2:close() end)
        local got = {}
        for v in rx:iter() do got[#got + 1] = v end
        return got
      end)
      assert.are.equal(5000, #got)
      local last = { [0] = 0, [1] = -1 }      -- each sender's values in its order
      for _, v in ipairs(got) do
        assert.are.equal(last[v % 2] + 2, v)
        last[v % 2] = v
      end
    end)

    it("a value received is no longer held by the channel", function()
      local alive = setmetatable({}, { __mode = "k" })
      local tx, rx = nexus.channel(2)
      do
        local v = {}
        alive[v] = true
        tx:try_send(v)
      end
      rx:try_recv()
      gc()
      assert.is_nil(next(alive))
      assert.truthy(tx)
    end)
  end)

  ---------------------------------------------------------------- fairness

  describe("waiting senders", function()
    it("are served in the order they blocked, not the order they were spawned", function()
      local got = run(function()
        local tx, rx = nexus.channel(1)
        tx:send("first")
        -- spawned in order a..e, blocking in order c, a, e, b, d
        local delay = { a = 0.02, b = 0.06, c = 0.0, d = 0.08, e = 0.04 }
        for _, name in ipairs({ "a", "b", "c", "d", "e" }) do
          nexus.spawn(function()
            nexus.sleep(delay[name])
            tx:send(name)
          end)
        end
        nexus.sleep(0.2)                     -- every sender is blocked now
        local got = {}
        for i = 1, 6 do got[i] = rx:recv() end
        return got
      end)
      assert.are.same({ "first", "c", "a", "e", "b", "d" }, got)
    end)

    it("a newcomer's try_send gets \"full\" while senders wait, even after a recv made room", function()
      local r = run(function()
        local tx, rx = nexus.channel(2)
        tx:send(1); tx:send(2)
        local hs = {}
        for i = 3, 4 do hs[#hs + 1] = nexus.spawn(function() return tx:send(i) end) end
        nexus.yield()                        -- both wait
        local r = { full = pack(tx:try_send("newcomer")) }
        r.first = rx:try_recv()              -- room, granted to the first waiter
        r.len = rx:len()
        r.after_recv = pack(tx:clone():try_send("newcomer"))
        local late = nexus.spawn(function() return tx:send(5) end)   -- queues behind
        r.got = {}
        for i = 1, 4 do r.got[i] = rx:recv() end
        r.joins = { hs[1]:join(), hs[2]:join(), late:join() }
        return r
      end)
      assert.are.same({ n = 2, nil, "full" }, r.full)
      assert.are.equal(1, r.first)
      assert.are.equal(1, r.len)
      assert.are.same({ n = 2, nil, "full" }, r.after_recv)
      assert.are.same({ 2, 3, 4, 5 }, r.got)
      assert.are.same({ true, true, true }, r.joins)
    end)

    it("100 blocked senders of cap-3 channel arrive in order and all get true", function()
      local got, oks = run(function()
        local tx, rx = nexus.channel(3)
        local hs = {}
        for i = 1, 100 do hs[i] = nexus.spawn(function() return tx:send(i) end) end
        nexus.yield()
        local got, oks = {}, 0
        for i = 1, 100 do got[i] = rx:recv() end
        for i = 1, 100 do if hs[i]:join() == true then oks = oks + 1 end end
        return got, oks
      end)
      for i = 1, 100 do assert.are.equal(i, got[i]) end
      assert.are.equal(100, oks)
    end)

    it("a sender that sends while the channel has room does not suspend", function()
      local ran = run(function()
        local tx = nexus.channel(2)
        local ran = false
        nexus.spawn(function() ran = true end)
        tx:send(1); tx:send(2)
        return ran
      end)
      assert.is_false(ran)
    end)

    it("a receiver waiting on an empty channel is woken by the first send", function()
      local r = run(function()
        local tx, rx = nexus.channel(1)
        local t0 = nexus.now()
        nexus.spawn(function() nexus.sleep(0.03); tx:send("late") end)
        return { rx:recv(), nexus.now() - t0 }
      end)
      assert.are.equal("late", r[1])
      assert.is_true(r[2] >= 0.03 and r[2] < 0.03 + H.LATE, "waited " .. r[2])
    end)
  end)

  ---------------------------------------------------------------- close

  describe("close rules", function()
    it("the receiver drains what is queued, then gets nil, \"closed\" for good", function()
      local r = run(function()
        local tx, rx = nexus.channel(4)
        tx:send("a"); tx:send("b"); tx:send("c")
        tx:close()
        local r = {}
        for i = 1, 3 do r[i] = rx:recv() end
        r[4] = pack(rx:recv())
        r[5] = pack(rx:recv())
        r[6] = pack(rx:try_recv())
        return r
      end)
      assert.are.same({ "a", "b", "c", { n = 2, nil, "closed" }, { n = 2, nil, "closed" },
                        { n = 2, nil, "closed" } }, r)
    end)

    it("rx:close: senders get nil, \"closed\" and waiting senders wake with it", function()
      local r = run(function()
        local tx, rx = nexus.channel(1)
        tx:send(0)
        local hs = {}
        for i = 1, 3 do hs[i] = nexus.spawn(function() return pack(tx:send(i)) end) end
        nexus.yield()                        -- all three wait
        rx:close()
        local r = {}
        for i = 1, 3 do r[i] = hs[i]:join() end
        r[4] = pack(tx:send(9))
        r[5] = pack(tx:try_send(9))
        r[6] = pack(rx:recv())
        r[7] = rx:len()
        return r
      end)
      for i = 1, 6 do assert.are.same({ n = 2, nil, "closed" }, r[i], "result " .. i) end
      assert.are.equal(0, r[7])
    end)

    it("rx:close drops the queued values", function()
      local alive = setmetatable({}, { __mode = "k" })
      local tx, rx = nexus.channel(3)
      for _ = 1, 3 do
        local v = {}
        alive[v] = true
        tx:try_send(v)
      end
      rx:close()
      gc()
      assert.is_nil(next(alive))
      assert.are.equal(0, tx:len())
    end)

    it("tx:close of the last sender wakes a waiting receiver with nil, \"closed\"", function()
      local r = run(function()
        local tx, rx = nexus.channel(1)
        local h = nexus.spawn(function() return pack(rx:recv()) end)
        nexus.yield()
        tx:close()
        return h:join()
      end)
      assert.are.same({ n = 2, nil, "closed" }, r)
    end)

    it("clones count: the receiver waits on until the last one closes", function()
      local r = run(function()
        local tx, rx = nexus.channel(1)
        local tx2 = tx:clone()
        local got = {}
        local h = nexus.spawn(function()
          for v in rx:iter() do got[#got + 1] = v end
          return "done"
        end)
        nexus.yield()
        tx:close()
        nexus.sleep(0.01)
        local waiting = not h:is_finished()
        local closed_early = rx:is_closed()
        tx2:send("from the clone")
        tx2:close()
        return { waiting, closed_early, h:join(), got }
      end)
      assert.are.same({ true, false, "done", { "from the clone" } }, r)
    end)

    it("a sender that is garbage-collected counts as closed", function()
      local r = run(function()
        local function make()               -- the sender lives only in here
          local tx, rx = nexus.channel(2)
          tx:send("last words")
          return rx
        end
        local rx = make()
        local h = nexus.spawn(function() return { rx:recv(), pack(rx:recv()) } end)
        nexus.yield()                        -- h got the value and waits
        gc()
        return h:join()
      end)
      assert.are.same({ "last words", { n = 2, nil, "closed" } }, r)
    end)

    it("a collected clone counts as one closed sender, not the whole side", function()
      local tx, rx = nexus.channel(2)
      do local c = tx:clone(); c:try_send(1) end
      gc()
      assert.is_false(rx:is_closed())
      tx:try_send(2)
      assert.are.same({ 1, 2 }, { rx:try_recv(), rx:try_recv() })
      assert.are.same({ n = 2, nil, "empty" }, pack(rx:try_recv()))
      tx = nil
      gc()
      assert.are.same({ n = 2, nil, "closed" }, pack(rx:try_recv()))
    end)

    it("a receiver that is garbage-collected closes the channel for senders, waiting ones too", function()
      local r = run(function()
        local tx
        do
          local rx
          tx, rx = nexus.channel(1)
          tx:send(1)
          rx = nil
        end
        local h = nexus.spawn(function() return pack(tx:send(2)) end)
        nexus.yield()                        -- h waits for room
        gc()
        return { h:join(), pack(tx:try_send(3)), tx:is_closed() }
      end)
      assert.are.same({ { n = 2, nil, "closed" }, { n = 2, nil, "closed" }, true }, r)
    end)

    it("tx:clone of a closed sender raises", function()
      local tx = nexus.channel(1)
      tx:close()
      local e = H.errof(tx.clone, tx)
      assert.truthy(e and e:find("tx:clone: ", 1, true), e)
    end)
  end)

  ---------------------------------------------------------------- aborts, timeouts

  describe("a waiter aborted or timed out", function()
    it("a blocked sender aborted: its value never arrives, the others arrive in order, the channel fills to capacity", function()
      local r = run(function()
        local tx, rx = nexus.channel(3)
        for i = 1, 3 do tx:send(i) end
        local a = nexus.spawn(function() tx:send("A") end)
        local b = nexus.spawn(function() tx:send("B") end)
        local c = nexus.spawn(function() tx:send("C") end)
        nexus.yield()
        local aborted = b:abort()
        local got = {}
        for i = 1, 5 do got[i] = rx:recv() end
        a:join(); c:join()
        local fill = {}
        for i = 1, 4 do fill[i] = tx:try_send(i) or "full" end
        return { aborted, got, fill, rx:len() }
      end)
      assert.are.same({ true, { 1, 2, 3, "A", "C" }, { true, true, true, "full" }, 3 }, r)
    end)

    it("a sender granted room but aborted before it ran passes the room on", function()
      local r = run(function()
        local tx, rx = nexus.channel(1)
        tx:send(0)
        local s1 = nexus.spawn(function() tx:send(1) end)
        local s2 = nexus.spawn(function() tx:send(2) end)
        nexus.yield()
        local v0 = rx:try_recv()             -- room: granted to s1
        local full = pack(tx:try_send("x"))  -- the room is s1's
        s1:abort()                           -- before s1 ran: s2 gets it
        local v = rx:recv()
        local fill = { tx:try_send("y"), pack(tx:try_send("z")) }
        return { v0, full, v, fill, rx:recv(), s2:join() }
      end)
      assert.are.same({ 0, { n = 2, nil, "full" }, 2, { true, { n = 2, nil, "full" } }, "y" }, r)
    end)

    it("a granted sender aborted by a task other than the receiver passes its room on too", function()
      local got = run(function()
        local tx, rx = nexus.channel(2)
        tx:send(1); tx:send(2)
        local hs = {}
        for i = 3, 6 do hs[i] = nexus.spawn(function() tx:send(i) end) end
        nexus.yield()
        local killer = nexus.spawn(function()
          hs[3]:abort(); hs[4]:abort()       -- both granted by the recvs below
        end)
        local got = { rx:try_recv(), rx:try_recv() }
        killer:join()                        -- runs before 3 and 4 could
        for i = 3, 4 do got[i] = rx:recv() end
        return got
      end)
      assert.are.same({ 1, 2, 5, 6 }, got)
    end)

    it("a sender timed out: nil, \"timeout\", its value never arrives, later senders still served in order", function()
      local r = run(function()
        local tx, rx = nexus.channel(2)
        tx:send(1); tx:send(2)
        local t = nexus.spawn(function() return pack(nexus.timeout(0.02, tx.send, tx, "T")) end)
        local later = nexus.spawn(function() nexus.sleep(0.005); return tx:send("L") end)
        local tres = t:join()
        local got = { rx:recv(), rx:recv(), rx:recv() }
        local fill = { tx:try_send("a"), tx:try_send("b"), pack(tx:try_send("c")) }
        return { tres, got, later:join(), fill, rx:len() }
      end)
      assert.are.same({ { n = 2, nil, "timeout" }, { 1, 2, "L" }, true,
                        { true, true, { n = 2, nil, "full" } }, 2 }, r)
    end)

    it("a receiver timed out loses nothing, and another task may receive afterwards", function()
      local r = run(function()
        local tx, rx = nexus.channel(1)
        local first = pack(nexus.timeout(0.01, rx.recv, rx))
        local h = nexus.spawn(function() return rx:recv() end)   -- not "already receiving"
        nexus.yield()
        tx:send("v")
        return { first, h:join(), rx:len() }
      end)
      assert.are.same({ { n = 2, nil, "timeout" }, "v", 0 }, r)
    end)

    it("a receiver aborted while waiting frees the receiving side", function()
      local r = run(function()
        local tx, rx = nexus.channel(1)
        local h = nexus.spawn(function() return rx:recv() end)
        nexus.yield()
        h:abort()
        tx:send("kept")
        return { rx:recv(), pack(rx:try_recv()) }
      end)
      assert.are.same({ "kept", { n = 2, nil, "empty" } }, r)
    end)

    it("a receiver woken by a value but aborted before it ran leaves the value queued", function()
      local r = run(function()
        local tx, rx = nexus.channel(1)
        local h = nexus.spawn(function() return rx:recv() end)
        nexus.yield()
        tx:send("v")                         -- wakes h
        h:abort()                            -- before h took it
        return { rx:len(), rx:try_recv() }
      end)
      assert.are.same({ 1, "v" }, r)
    end)

    it("a deadline that passes after the sender was granted room keeps the send", function()
      -- tasks_per_cycle(1): timers fire between two tasks, so the deadline
      -- falls while the granted sender is ready but has not run yet
      local rt = nexus.runtime.builder():tasks_per_cycle(1):build()
      local r = rt:block_on(function()
        local tx, rx = nexus.channel(1)
        tx:send(0)
        local s = nexus.spawn(function() return pack(nexus.timeout(0.1, tx.send, tx, "kept")) end)
        nexus.yield()                        -- s waits
        rx:try_recv()                        -- grants s
        H.busy_wait(nexus, 0.12)             -- s's deadline passes
        return { s:join(), rx:recv() }
      end)
      rt:close()
      assert.are.same({ { n = 2, true, true }, "kept" }, r)
    end)

    it("a deadline that passes after the receiver was woken keeps the value", function()
      local rt = nexus.runtime.builder():tasks_per_cycle(1):build()
      local r = rt:block_on(function()
        local tx, rx = nexus.channel(1)
        local h = nexus.spawn(function() return pack(nexus.timeout(0.1, rx.recv, rx)) end)
        nexus.yield()
        tx:send("v")                         -- wakes h
        H.busy_wait(nexus, 0.12)
        return { h:join(), rx:len() }
      end)
      rt:close()
      assert.are.same({ { n = 2, true, "v" }, 0 }, r)
    end)

    it("random aborts and timeouts lose, duplicate and reorder nothing (seeded)", function()
      math.randomseed(7)
      local bad = run(function()
        local CAP, SENDERS, M = 3, 12, 60
        local tx, rx = nexus.channel(CAP)
        local delivered = {}                 -- sender -> values send returned true for
        local hs = {}
        for s = 1, SENDERS do
          delivered[s] = {}
          local my = s % 3 == 0 and tx or tx:clone()
          hs[s] = nexus.spawn(function()
            for i = 1, M do
              local ok
              if i % 4 == 0 then
                ok = nexus.timeout(math.random() * 0.002, my.send, my, s * 1000 + i)
                ok = ok and true
              else
                ok = my:send(s * 1000 + i)
              end
              if ok then delivered[s][#delivered[s] + 1] = s * 1000 + i end
              if math.random() < 0.3 then nexus.yield() end
            end
          end)
        end
        local chaos = nexus.spawn(function()
          for _ = 1, 8 do
            nexus.sleep(math.random() * 0.004)
            local victim = hs[math.random(SENDERS)]
            victim:abort()
          end
        end)
        local received, last = {}, {}
        local done = nexus.spawn(function()
          while true do
            local v, err = nexus.timeout(0.05, rx.recv, rx)
            if v then
              if math.random() < 0.1 then nexus.sleep(0.001) end   -- senders pile up
              local s = math.floor(err / 1000)
              received[#received + 1] = err
              if last[s] and err <= last[s] then error("reordered " .. err) end
              last[s] = err
            elseif err == "timeout" then
              local alive = 0
              for s = 1, SENDERS do if not hs[s]:is_finished() then alive = alive + 1 end end
              if alive == 0 and rx:len() == 0 then return end
            end
          end
        end)
        chaos:join()
        done:join()
        local want = 0
        for s = 1, SENDERS do
          local set = {}
          for _, v in ipairs(delivered[s]) do set[v] = true; want = want + 1 end
          for _, v in ipairs(received) do
            if math.floor(v / 1000) == s then
              if not set[v] then return "received a value whose send did not return true: " .. v end
              set[v] = nil
            end
          end
          if next(set) then return "lost a value of sender " .. s .. ": " .. next(set) end
        end
        if want ~= #received then return "count " .. #received .. " ~= " .. want end
        if want < SENDERS then return "too few values went through: " .. want end
        -- still consistent: fills to capacity exactly
        for i = 1, CAP do if not tx:try_send(i) then return "no room for " .. i end end
        if tx:try_send(0) then return "room beyond capacity" end
      end)
      assert.is_nil(bad)
    end)
  end)

  ---------------------------------------------------------------- runtimes

  describe("runtimes", function()
    it("rt:close() with tasks waiting on channels aborts them and leaves the channels usable", function()
      local tx, rx = nexus.channel(2)
      local tx2, rx2 = nexus.channel(1)
      local rt = nexus.runtime.new()
      local hs = rt:block_on(function()
        tx:send(1); tx:send(2)
        local hs = {}
        for i = 3, 5 do hs[#hs + 1] = nexus.spawn(function() tx:send(i) end) end
        hs[#hs + 1] = nexus.spawn(function() return rx2:recv() end)
        nexus.yield()
        return hs
      end)
      rt:close()
      for _, h in ipairs(hs) do
        assert.is_true(h:is_finished())
        assert.are.same({ false, "aborted" }, { h:result() })
      end
      -- the queued values stay, the aborted sends never arrive
      assert.are.same({ 1, 2 }, { rx:try_recv(), rx:try_recv() })
      assert.are.same({ n = 2, nil, "empty" }, pack(rx:try_recv()))
      -- and a fresh runtime can block on them again
      local r = nexus.run(function()
        local h = nexus.spawn(function() return rx2:recv() end)
        nexus.yield()
        tx2:send("again")
        tx:send(1); tx:send(2)
        local full = pack(tx:try_send(3))
        return { h:join(), full }
      end)
      assert.are.same({ "again", { n = 2, nil, "full" } }, r)
    end)

    it("a channel works across two block_on calls of one runtime", function()
      local rt = nexus.runtime.new()
      local tx, rx = nexus.channel(1)
      local got = {}
      local consumer = rt:block_on(function()
        return nexus.spawn(function()
          for v in rx:iter() do got[#got + 1] = v end
          return #got
        end)
      end)
      local producer = rt:block_on(function()
        local p = nexus.spawn(function()
          for i = 1, 5 do tx:send(i) end
        end)
        nexus.yield()
        return p
      end)
      local n = rt:block_on(function()
        producer:join()
        tx:close()
        return consumer:join()
      end)
      rt:close()
      assert.are.equal(5, n)
      assert.are.same({ 1, 2, 3, 4, 5 }, got)
    end)

    it("waiting on a channel that has waiters in another runtime raises naming the function", function()
      local tx, rx = nexus.channel(1)
      local a = nexus.runtime.new()
      a:block_on(function()
        tx:send(1)
        nexus.spawn(function() tx:send(2) end)
        nexus.yield()                        -- a's task waits for room
      end)
      local e = H.errof(nexus.run, function() tx:send(3) end)
      local e2 = H.errof(nexus.run, function() rx:recv(); rx:recv() end)
      a:close()
      assert.truthy(e and e:find("tx:send: ", 1, true) and e:find("another runtime", 1, true), e)
      -- the first recv took 1 and granted a's sender; the second found none
      assert.truthy(e2 and e2:find("rx:recv: ", 1, true) and e2:find("another runtime", 1, true), e2)
    end)
  end)

  ---------------------------------------------------------------- bad input

  describe("bad input", function()
    local function raises(needle, fn, ...)
      local ok, e = pcall(fn, ...)
      assert.is_false(ok, "expected an error containing " .. needle)
      assert.are.equal("string", type(e))
      assert.truthy(e:find(needle, 1, true), e)
      assert.is_nil(e:find("C-call boundary", 1, true), e)
      return e
    end

    it("capacity 0, negative, non-integer, huge, NaN or not a number raises", function()
      for _, c in ipairs({ 0, -1, -0.5, 1.5, 2 ^ 31 + 1, math.huge, -math.huge, 0 / 0 }) do
        raises("nexus.channel: capacity must be a positive integer", nexus.channel, c)
        raises("nexus.channel: capacity must be a positive integer", nexus.channel.new, c)
      end
      for _, c in ipairs({ "4", {}, true }) do
        raises("nexus.channel: capacity must be a positive integer", nexus.channel, c)
      end
      raises("nexus.channel: capacity must be a positive integer", nexus.channel)
    end)

    it("sending nil raises (send and try_send), inside and outside a task", function()
      local tx = nexus.channel(1)
      raises("tx:send: cannot send nil", tx.send, tx, nil)
      raises("tx:try_send: cannot send nil", tx.try_send, tx, nil)
      raises("tx:send: cannot send nil", tx.send, tx)
      run(function()
        raises("tx:send: cannot send nil", tx.send, tx, nil)
        raises("tx:try_send: cannot send nil", tx.try_send, tx)
      end)
      assert.are.equal(0, tx:len())
    end)

    it("receiving from two tasks at once: the second rx:recv raises, the first goes on", function()
      local r = run(function()
        local tx, rx = nexus.channel(1)
        local first = nexus.spawn(function() return rx:recv() end)
        local second = nexus.spawn(function() return rx:recv() end)
        local ok, e = second:result()        -- first waits in recv, then second runs
        tx:send("to the first")
        return { ok, e, first:join() }
      end)
      assert.is_false(r[1])
      assert.truthy(r[2]:find("rx:recv: another task is already receiving", 1, true), r[2])
      assert.are.equal("to the first", r[3])
    end)

    it("recv on an empty channel and send on a full one raise outside a task", function()
      local tx, rx = nexus.channel(1)
      raises("rx:recv: not inside a nexus task", rx.recv, rx)
      assert.is_true(tx:send(1))             -- room: no task needed
      raises("tx:send: not inside a nexus task", tx.send, tx, 2)
      assert.are.equal(1, rx:recv())         -- queued: no task needed
      -- nothing was left waiting
      assert.is_true(tx:try_send(3))
      assert.are.equal(3, rx:try_recv())
    end)

    it("inside a coroutine of the user's own in a task: a clear nexus error, the channel intact", function()
      local r = run(function()
        local tx, rx = nexus.channel(1)
        local e1 = H.errof(coroutine.wrap(function() return rx:recv() end))
        tx:send(1)
        local e2 = H.errof(coroutine.wrap(function() return tx:send(2) end))
        -- nothing left queued: the room freed next is for anyone
        local v = rx:try_recv()
        local ok = tx:try_send(3)
        local h = nexus.spawn(function() return rx:recv() end)   -- not "already receiving"
        return { e1, e2, v, ok, h:join() }
      end)
      assert.truthy(r[1]:find("rx:recv: cannot suspend inside a coroutine of your own", 1, true), r[1])
      assert.truthy(r[2]:find("tx:send: cannot suspend inside a coroutine of your own", 1, true), r[2])
      assert.are.same({ 1, true, 3 }, { r[3], r[4], r[5] })
    end)

    it("where Lua cannot yield (table.sort comparator, gsub callback): a clear nexus error", function()
      local r = run(function()
        local tx, rx = nexus.channel(1)
        local e1 = H.errof(table.sort, { 3, 1, 2 }, function(a, b) rx:recv(); return a < b end)
        tx:send(1)
        local e2 = H.errof(string.gsub, "ab", ".", function() tx:send(2) end)
        local v = rx:try_recv()
        return { e1, e2, v, tx:try_send(3), rx:recv() }
      end)
      assert.truthy(r[1]:find("rx:recv: cannot suspend here", 1, true), r[1])
      assert.truthy(r[2]:find("tx:send: cannot suspend here", 1, true), r[2])
      assert.is_nil(r[1]:find("C-call boundary", 1, true))
      assert.are.same({ 1, true, 3 }, { r[3], r[4], r[5] })
    end)

    it("under the nexus command, recv in the main chunk waits as a task", function()
      local res = H.nexus_script([[
        local nexus = require "nexus"
        local tx, rx = nexus.channel(1)
        nexus.spawn(function() nexus.sleep(0.01); tx:send("hi"); tx:close() end)
        print(rx:recv(), rx:recv())
      ]])
      H.cleanup()
      assert.are.equal(0, res.rc, res.err)
      assert.are.equal("hi\tnil\tclosed\n", res.out)
    end)
  end)
end)

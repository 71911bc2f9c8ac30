-- nexus.select ops of the byte channel (rx:recv_op, tx:send_op), the
-- cross-thread channel (the same, and a sender on another thread waking a
-- select) and the shutdown signal (sig:wait_op): each op wins when ready,
-- loses with no effect (value still there, nothing sent, no room held, the
-- signal still pending), is withdrawn by an abort or a nexus.timeout of
-- the selecting task, is reused across many selects; and bad input.
local dir = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
local H = dofile(dir .. "helpers.lua")
local P = dofile(dir .. "proc.lua")
local nexus = require "nexus"
local mpsc = require "nexus.mpsc"
local pack = H.pack
local run = nexus.run

-- Senders kept for the whole file: a collected sender closes its channel.
local kept = {}

-- An op that never completes: a local channel whose sender is kept.
local function idle_op()
  local tx, rx = nexus.channel(1)
  kept[#kept + 1] = tx
  return rx:recv_op()
end

-- An op that completes at once with "ready".
local function ready_op()
  local tx, rx = nexus.channel(1)
  kept[#kept + 1] = tx
  tx:send("ready")
  return rx:recv_op()
end

local function errmsg(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error, but the call succeeded")
  return tostring(err)
end

-- Messages of a byte channel until it is empty (each released).
local function bdrain(rx)
  local out = {}
  while true do
    local m, err = rx:try_recv()
    if not m then return out, err end
    out[#out + 1] = m:string()
    m:release()
  end
end

describe("select ops: byte channel", function()
  describe("rx:recv_op()", function()
    it("wins when a message is ready: the receiver's message object, as rx:recv gives", function()
      local r = run(function()
        local tx, rx = nexus.channel.bytes(64)
        local idle = idle_op()
        tx:send("hello")
        local i, m = nexus.select(idle, rx:recv_op())
        local s = m:string()
        m:release()
        return { i = i, s = s, same = m == rx._m }
      end)
      assert.are.same({ i = 2, s = "hello", same = true }, r)
    end)

    it("waits for the first message, and gives nil, \"closed\" once every sender closed", function()
      local r = run(function()
        local tx, rx = nexus.channel.bytes(64)
        local op = rx:recv_op()
        nexus.spawn(function()
          nexus.sleep(0.01)
          tx:send("late")
          tx:close()
        end)
        local i, m = nexus.select(op, nexus.sleep_op(5))
        local s = m:string()
        m:release()
        return { i = i, s = s, closed = pack(nexus.select(op)) }
      end)
      assert.are.same({ i = 1, s = "late", closed = { n = 3, 1, nil, "closed" } }, r)
    end)

    it("loses with no effect: the message stays, even when it woke the select", function()
      local r = run(function()
        local tx, rx = nexus.channel.bytes(64)
        local ltx, lrx = nexus.channel(1)
        tx:send("kept")
        local first = pack(nexus.select(ready_op(), rx:recv_op()))
        local kept_msg = bdrain(rx)
        -- both ready while the select waits: the first in order wins
        local h = nexus.spawn(function() return pack(nexus.select(lrx:recv_op(), rx:recv_op())) end)
        nexus.yield()
        tx:send("woke it")                 -- fires the bytes op first
        ltx:send("local")                  -- then the local one, before the task runs
        local second = h:join()
        local left = bdrain(rx)
        return { first = first, kept = kept_msg, second = second, left = left }
      end)
      assert.are.same({ n = 2, 1, "ready" }, r.first)
      assert.are.same({ "kept" }, r.kept)
      assert.are.same({ n = 2, 1, "local" }, r.second)
      assert.are.same({ "woke it" }, r.left)
    end)

    it("an aborted selecting task withdraws it: another task can receive", function()
      local r = run(function()
        local tx, rx = nexus.channel.bytes(64)
        local h = nexus.spawn(function() nexus.select(rx:recv_op(), nexus.sleep_op(10)) end)
        nexus.yield()
        h:abort()
        local g = nexus.spawn(function()
          local m = rx:recv()
          local s = m:string()
          m:release()
          return s
        end)
        nexus.yield()
        tx:send("for g")
        return g:join()
      end)
      assert.are.equal("for g", r)
    end)

    it("nexus.timeout around the select withdraws it; the op works again afterwards", function()
      local r = run(function()
        local tx, rx = nexus.channel.bytes(64)
        local op = rx:recv_op()
        local t = pack(nexus.timeout(0.02, nexus.select, op))
        local busy = pack(rx:try_recv())   -- not "another task is receiving"
        tx:send("after")
        local i, m = nexus.select(op)
        local s = m:string()
        m:release()
        return { t = t, busy = busy, i = i, s = s }
      end)
      assert.are.same({ n = 2, nil, "timeout" }, r.t)
      assert.are.same({ n = 2, nil, "empty" }, r.busy)
      assert.are.same({ 1, "after" }, { r.i, r.s })
    end)

    it("is reused across 20,000 selects with no allocation per call", function()
      local r = run(function()
        local tx, rx = nexus.channel.bytes(256)
        local a, b = rx:recv_op(), idle_op()
        local n = 0
        local function go(k)
          for _ = 1, k do
            tx:send("abc")
            local _, m = nexus.select(b, a)
            n = n + m.len
            m:release()
          end
        end
        go(2000)
        collectgarbage("collect")
        collectgarbage("stop")
        local before = collectgarbage("count")
        go(20000)
        local grew = collectgarbage("count") - before
        collectgarbage("restart")
        return { n = n, grew = grew }
      end)
      assert.are.equal(3 * 22000, r.n)
      assert.is_true(r.grew < 64, "grew by " .. r.grew .. " kB")
    end)

    it("faults (raised by select) on a message not released and on a busy receiver", function()
      run(function()
        local tx, rx = nexus.channel.bytes(64)
        tx:send("a")
        tx:send("b")
        local m = rx:recv()
        local err = errmsg(nexus.select, rx:recv_op())
        assert.matches("nexus.select: op 1 (bytes recv): the previous message was not released", err, 1, true)
        m:release()
        local _, m2 = nexus.select(rx:recv_op())   -- free again after the fault
        assert.are.equal("b", m2:string())
        m2:release()
        local h = nexus.spawn(function() rx:recv() end)
        nexus.yield()
        err = errmsg(nexus.select, rx:recv_op())
        assert.matches("another task is already receiving on this channel", err, 1, true)
        h:abort()
      end)
    end)
  end)

  describe("tx:send_op(s)", function()
    it("wins when there is room; gives nil, \"closed\" when the receiver or this sender closed", function()
      local r = run(function()
        local tx, rx = nexus.channel.bytes(64)
        local a = pack(nexus.select(idle_op(), tx:send_op("hi")))
        local got = bdrain(rx)
        local tx2 = tx:clone()
        tx2:close()
        local b = pack(nexus.select(tx2:send_op("x")))
        rx:close()
        local c = pack(nexus.select(tx:send_op("y")))
        return { a = a, got = got, b = b, c = c }
      end)
      assert.are.same({ n = 2, 2, true }, r.a)
      assert.are.same({ "hi" }, r.got)
      assert.are.same({ n = 3, 1, nil, "closed" }, r.b)
      assert.are.same({ n = 3, 1, nil, "closed" }, r.c)
    end)

    it("waits for room, then sends (room granted to the op, taken when it wins)", function()
      local r = run(function()
        local tx, rx = nexus.channel.bytes(8)
        tx:send("12345678")                   -- full
        local h = nexus.spawn(function() return pack(nexus.select(tx:send_op("abcdefgh"), nexus.sleep_op(5))) end)
        nexus.yield()
        local m = rx:recv()
        local first = m:string()
        m:release()                           -- room: granted to the op
        local res = h:join()
        return { res = res, first = first, left = bdrain(rx) }
      end)
      assert.are.same({ n = 2, 1, true }, r.res)
      assert.are.equal("12345678", r.first)
      assert.are.same({ "abcdefgh" }, r.left)
    end)

    it("loses with no effect: nothing sent, no room held", function()
      local r = run(function()
        local tx, rx = nexus.channel.bytes(8)
        -- ready at once, but a ready op before it wins
        local a = pack(nexus.select(ready_op(), tx:send_op("never")))
        local empty = pack(rx:try_recv())
        local fits = pack(tx:try_send("12345678"))   -- the whole ring: nothing is held
        return { a = a, empty = empty, fits = fits, left = bdrain(rx) }
      end)
      assert.are.same({ n = 2, 1, "ready" }, r.a)
      assert.are.same({ n = 2, nil, "empty" }, r.empty)
      assert.are.same({ n = 1, true }, r.fits)
      assert.are.same({ "12345678" }, r.left)
    end)

    it("a granted send that loses gives its room back (to the next waiting sender)", function()
      local r = run(function()
        local tx, rx = nexus.channel.bytes(8)
        local xtx, xrx = nexus.channel(1)
        tx:send("first---")                   -- full
        local a = nexus.spawn(function() return pack(nexus.select(xrx:recv_op(), tx:send_op("from a"))) end)
        local b = nexus.spawn(function() return tx:send("from b") end)
        nexus.yield()                         -- a's claim first in line, b's behind
        local m = rx:recv()
        local got = { m:string() }
        m:release()                           -- room: granted to a's send op
        xtx:send("x")                         -- a's recv op is ready too: it wins
        local ra = a:join()
        local rb = b:join()                   -- the room went on to b
        local rest = bdrain(rx)
        for _, s in ipairs(rest) do got[#got + 1] = s end
        -- and with no sender behind: the room comes back to the channel
        local c = nexus.spawn(function() return pack(nexus.select(xrx:recv_op(), tx:send_op("from c"))) end)
        tx:send("full----")
        nexus.yield()
        m = rx:recv()
        m:release()                           -- granted to c's op
        xtx:send("y")
        local rc = c:join()
        local fits = pack(tx:try_send("12345678"))
        return { ra = ra, rb = rb, got = got, rc = rc, fits = fits, left = bdrain(rx) }
      end)
      assert.are.same({ n = 2, 1, "x" }, r.ra)
      assert.is_true(r.rb)
      assert.are.same({ "first---", "from b" }, r.got)
      assert.are.same({ n = 2, 1, "y" }, r.rc)
      assert.are.same({ n = 1, true }, r.fits)
      assert.are.same({ "12345678" }, r.left)
    end)

    it("op:set(s) changes the string sent, also while the op waits with room granted for the old one", function()
      local r = run(function()
        local tx, rx = nexus.channel.bytes(8)
        local op = tx:send_op("one")
        nexus.select(op)
        local got = bdrain(rx)
        assert.are.equal(op, op:set("two"))
        nexus.select(op)
        got[#got + 1] = bdrain(rx)[1]
        tx:send("full----")
        op:set("ab")
        local h = nexus.spawn(function() return pack(nexus.select(op)) end)
        nexus.yield()
        op:set("abcdefgh")                    -- longer than the room about to be granted
        local m = rx:recv()
        got[#got + 1] = m:string()            -- "full----"
        m:release()                           -- granted for "ab": taken again for the new size
        local res = h:join()
        for _, s in ipairs(bdrain(rx)) do got[#got + 1] = s end
        return { res = res, got = got }
      end)
      assert.are.same({ n = 2, 1, true }, r.res)
      assert.are.same({ "one", "two", "full----", "abcdefgh" }, r.got)
    end)

    it("gives up with nil, \"closed\" when its sender or the receiver closes while it waits", function()
      local r = run(function()
        local tx, rx = nexus.channel.bytes(8)
        tx:send("full----")
        local tx2 = tx:clone()
        local a = nexus.spawn(function() return pack(nexus.select(tx2:send_op("a"), nexus.sleep_op(5))) end)
        nexus.yield()
        tx2:close()
        local ra = a:join()
        local b = nexus.spawn(function() return pack(nexus.select(tx:send_op("b"), nexus.sleep_op(5))) end)
        nexus.yield()
        rx:close()
        return { ra = ra, rb = b:join() }
      end)
      assert.are.same({ n = 3, 1, nil, "closed" }, r.ra)
      assert.are.same({ n = 3, 1, nil, "closed" }, r.rb)
    end)

    it("a send op granted room, its sender then closed, gives the room back", function()
      local r = run(function()
        local tx, rx = nexus.channel.bytes(8)
        tx:send("full----")
        local tx2 = tx:clone()
        local a = nexus.spawn(function() return pack(nexus.select(tx2:send_op("a"), nexus.sleep_op(5))) end)
        nexus.yield()
        local m = rx:recv()
        m:release()                           -- granted to a's op
        tx2:close()                           -- before a runs
        local ra = a:join()
        return { ra = ra, fits = pack(tx:try_send("12345678")), left = bdrain(rx) }
      end)
      assert.are.same({ n = 3, 1, nil, "closed" }, r.ra)
      assert.are.same({ n = 1, true }, r.fits)
      assert.are.same({ "12345678" }, r.left)
    end)

    it("an aborted selecting task withdraws it, waiting or granted room: nothing sent, no room held", function()
      local r = run(function()
        local tx, rx = nexus.channel.bytes(8)
        tx:send("full----")
        local h = nexus.spawn(function() nexus.select(tx:send_op("never"), nexus.sleep_op(10)) end)
        nexus.yield()
        h:abort()                             -- waiting for room
        local got = bdrain(rx)
        local fits1 = pack(tx:try_send("12345678"))
        got[#got + 1] = bdrain(rx)[1]
        tx:send("full----")
        h = nexus.spawn(function() nexus.select(tx:send_op("never"), nexus.sleep_op(10)) end)
        nexus.yield()
        local m = rx:recv()
        got[#got + 1] = m:string()
        m:release()                           -- room granted to h's op...
        h:abort()                             -- ...aborted before it ran
        local fits2 = pack(tx:try_send("12345678"))
        for _, s in ipairs(bdrain(rx)) do got[#got + 1] = s end
        return { got = got, fits1 = fits1, fits2 = fits2 }
      end)
      assert.are.same({ "full----", "12345678", "full----", "12345678" }, r.got)
      assert.are.same({ n = 1, true }, r.fits1)
      assert.are.same({ n = 1, true }, r.fits2)
    end)

    it("nexus.timeout around the select withdraws it: nothing sent, no room held", function()
      local r = run(function()
        local tx, rx = nexus.channel.bytes(8)
        tx:send("full----")
        local op = tx:send_op("late")
        local t = pack(nexus.timeout(0.02, nexus.select, op))
        local got = bdrain(rx)
        local fits = pack(tx:try_send("12345678"))
        for _, s in ipairs(bdrain(rx)) do got[#got + 1] = s end
        local again = pack(nexus.select(op))  -- the op is free again
        for _, s in ipairs(bdrain(rx)) do got[#got + 1] = s end
        return { t = t, got = got, fits = fits, again = again }
      end)
      assert.are.same({ n = 2, nil, "timeout" }, r.t)
      assert.are.same({ "full----", "12345678", "late" }, r.got)
      assert.are.same({ n = 1, true }, r.fits)
      assert.are.same({ n = 2, 1, true }, r.again)
    end)

    it("a task whose send op won and then failed holds no claim (the claim was committed in the select)", function()
      local r = run(function()
        local tx, rx = nexus.channel.bytes(8)
        tx:send("full----")
        local h = nexus.spawn(function()
          nexus.select(tx:send_op("granted"), nexus.sleep_op(5))
          error("after the send")
        end)
        nexus.yield()
        local m = rx:recv()
        m:release()
        local ok = pcall(h.join, h)
        return { ok = ok, got = bdrain(rx), fits = pack(tx:try_send("12345678")) }
      end)
      assert.is_false(r.ok)
      assert.are.same({ "granted" }, r.got)
      assert.are.same({ n = 1, true }, r.fits)
    end)

    it("is reused across 20,000 selects against a receiving task", function()
      local r = run(function()
        local tx, rx = nexus.channel.bytes(16)
        local n = 0
        local recv = nexus.spawn(function()
          for m in rx:iter() do n = n + m.len end
        end)
        local op, idle = tx:send_op("0123456789"), idle_op()
        local function go(k)
          for _ = 1, k do nexus.select(idle, op) end
        end
        go(2000)
        collectgarbage("collect")
        collectgarbage("stop")
        local before = collectgarbage("count")
        go(20000)
        local grew = collectgarbage("count") - before
        collectgarbage("restart")
        tx:close()
        recv:join()
        return { n = n, grew = grew }
      end)
      assert.are.equal(10 * 22000, r.n)
      assert.is_true(r.grew < 64, "grew by " .. r.grew .. " kB")
    end)

    it("raises on bad input, naming the function", function()
      local tx, rx = nexus.channel.bytes(8)
      assert.matches("tx:send_op: expected a string, got nil", errmsg(tx.send_op, tx, nil), 1, true)
      assert.matches("tx:send_op: expected a string, got number", errmsg(tx.send_op, tx, 12), 1, true)
      assert.matches("tx:send_op: empty message", errmsg(tx.send_op, tx, ""), 1, true)
      assert.matches("tx:send_op: 9 bytes is more than the capacity (8)", errmsg(tx.send_op, tx, "123456789"), 1, true)
      assert.matches("tx:send_op: expected a byte channel sender, got table", errmsg(tx.send_op, {}, "x"), 1, true)
      assert.matches("rx:recv_op: expected a byte channel receiver, got table", errmsg(rx.recv_op, {}), 1, true)
      local op = tx:send_op("ok")
      assert.matches("op:set: expected a string, got table", errmsg(op.set, op, {}), 1, true)
      assert.matches("op:set: expected a string, got nil", errmsg(op.set, op, nil), 1, true)
      assert.matches("op:set: 9 bytes is more than", errmsg(op.set, op, "123456789"), 1, true)
      assert.matches("op:set: expected a byte channel send op", errmsg(op.set, {}, "x"), 1, true)
      -- the error points at the caller
      assert.matches("select_more_spec", errmsg(function() tx:send_op(1) end), 1, true)
      assert.matches("nexus.select: not inside a nexus task", errmsg(nexus.select, op), 1, true)
    end)
  end)
end)

describe("select ops: cross-thread channel", function()
  after_each(H.cleanup)

  describe("rx:recv_op()", function()
    it("wins when a value is ready; nil, \"closed\" once every sender closed", function()
      local r = run(function()
        local tx, rx = nexus.channel.mpsc(4)
        tx:send({ k = "v" })
        tx:send(false)
        local op = rx:recv_op()
        local a = pack(nexus.select(idle_op(), op))
        local b = pack(nexus.select(op))
        tx:close()
        return { a = a, b = b, c = pack(nexus.select(op)) }
      end)
      assert.are.same({ n = 2, 2, { k = "v" } }, r.a)
      assert.are.same({ n = 2, 1, false }, r.b)
      assert.are.same({ n = 3, 1, nil, "closed" }, r.c)
    end)

    it("loses with no effect: the value stays, even when it woke the select", function()
      local r = run(function()
        local tx, rx = nexus.channel.mpsc(4)
        local ltx, lrx = nexus.channel(1)
        tx:send(1)
        local first = pack(nexus.select(ready_op(), rx:recv_op()))
        local kept = rx:recv()
        local h = nexus.spawn(function() return pack(nexus.select(lrx:recv_op(), rx:recv_op())) end)
        nexus.yield()
        tx:send(2)                            -- fires the mpsc op first
        ltx:send("local")
        local second = h:join()
        return { first = first, kept = kept, second = second, left = pack(rx:try_recv()) }
      end)
      assert.are.same({ n = 2, 1, "ready" }, r.first)
      assert.are.equal(1, r.kept)
      assert.are.same({ n = 2, 1, "local" }, r.second)
      assert.are.same({ n = 1, 2 }, r.left)
    end)

    it("an aborted or timed-out select withdraws it: others can receive", function()
      local r = run(function()
        local tx, rx = nexus.channel.mpsc(4)
        local h = nexus.spawn(function() nexus.select(rx:recv_op(), nexus.sleep_op(10)) end)
        nexus.yield()
        h:abort()
        local g = nexus.spawn(function() return rx:recv() end)
        nexus.yield()
        tx:send("for g")
        local vg = g:join()
        local op = rx:recv_op()
        local t = pack(nexus.timeout(0.02, nexus.select, op))
        local empty = pack(rx:try_recv())
        tx:send("again")
        return { vg = vg, t = t, empty = empty, again = pack(nexus.select(op)) }
      end)
      assert.are.equal("for g", r.vg)
      assert.are.same({ n = 2, nil, "timeout" }, r.t)
      assert.are.same({ n = 2, nil, "empty" }, r.empty)
      assert.are.same({ n = 2, 1, "again" }, r.again)
    end)

    it("is reused across 20,000 selects", function()
      local r = run(function()
        local tx, rx = nexus.channel.mpsc(4)
        local a, b = rx:recv_op(), idle_op()
        local s = 0
        for i = 1, 20000 do
          tx:send(i)
          local _, v = nexus.select(b, a)
          s = s + v
        end
        return s
      end)
      assert.are.equal(20000 * 20001 / 2, r)
    end)

    it("a sender on a libuv pool thread wakes a waiting select (through the loop)", function()
      local n = 2000
      local got = run(function()
        local tx, rx = nexus.channel.mpsc(4)
        mpsc._pool_send(tx:handle(), "p", n)
        tx:close()
        local op, idle, stop = rx:recv_op(), idle_op(), nexus.sleep_op(30)
        local out = {}
        while true do
          local i, v, err = nexus.select(idle, op, stop)
          assert(i == 2, "the select did not get a value")
          if v == nil then
            assert.are.equal("closed", err)
            return out
          end
          out[#out + 1] = v
        end
      end)
      assert.are.equal(n + 1, #got)
      assert.is_true(got[1], "the job did not run on another thread")
      for i = 1, n do assert(got[i + 1] == "p" .. i, "message " .. i .. ": " .. tostring(got[i + 1])) end
    end)

    it("a sender in another Lua state (nexus.thread.run) wakes a select parked on it", function()
      local r = run(function()
        local tx, rx = nexus.channel.mpsc(2)
        local addr = mpsc.address(tx:handle())
        tx:close()
        local job = nexus.spawn(function()
          return nexus.thread.run(function(a)
            local t = require("nexus.mpsc").sender(a)
            -- let the select park first: the value then comes through the loop
            local until_t = os.clock() + 0.05
            while os.clock() < until_t do end
            t:send({ from = "thread" })
            t:close()
            return true
          end, addr)
        end)
        local t0 = nexus.now()
        local first = pack(nexus.select(rx:recv_op(), nexus.sleep_op(30)))
        local waited = nexus.now() - t0
        local second = pack(nexus.select(rx:recv_op(), nexus.sleep_op(30)))
        return { first = first, second = second, job = job:join(), waited = waited }
      end)
      assert.are.same({ n = 2, 1, { from = "thread" } }, r.first)
      assert.are.same({ n = 3, 1, nil, "closed" }, r.second)
      assert.is_true(r.job)
      assert.is_true(r.waited < 10)
    end)

    it("faults (raised by select) on a busy receiver; raises on a non-receiver", function()
      run(function()
        local tx, rx = nexus.channel.mpsc(1)
        local h = nexus.spawn(function() rx:recv() end)
        nexus.yield()
        local err = errmsg(nexus.select, rx:recv_op())
        assert.matches("nexus.select: op 1 (mpsc recv): another task is already receiving", err, 1, true)
        h:abort()
        assert.matches("rx:recv_op: expected an mpsc receiver, got table", errmsg(rx.recv_op, {}), 1, true)
        assert.matches("rx:recv_op: expected an mpsc receiver, got userdata",
          errmsg(rx.recv_op, tx), 1, true)
        tx:close()
      end)
    end)
  end)

  describe("tx:send_op(v)", function()
    it("wins when there is room; nil, \"closed\" when the receiver or this sender closed", function()
      local r = run(function()
        local tx, rx = nexus.channel.mpsc(2)
        local a = pack(nexus.select(idle_op(), tx:send_op({ 1, 2, x = "y" })))
        local v = rx:recv()
        local tx2 = tx:clone()
        tx2:close()
        local b = pack(nexus.select(tx2:send_op(1)))
        rx:close()
        return { a = a, v = v, b = b, c = pack(nexus.select(tx:send_op(2))) }
      end)
      assert.are.same({ n = 2, 2, true }, r.a)
      assert.are.same({ 1, 2, x = "y" }, r.v)
      assert.are.same({ n = 3, 1, nil, "closed" }, r.b)
      assert.are.same({ n = 3, 1, nil, "closed" }, r.c)
    end)

    it("loses with no effect: nothing sent", function()
      local r = run(function()
        local tx, rx = nexus.channel.mpsc(1)
        local a = pack(nexus.select(ready_op(), tx:send_op("never")))
        return { a = a, left = pack(rx:try_recv()), len = rx:len() }
      end)
      assert.are.same({ n = 2, 1, "ready" }, r.a)
      assert.are.same({ n = 2, nil, "empty" }, r.left)
      assert.are.equal(0, r.len)
    end)

    it("waits for room; granted the turn but losing, passes it on", function()
      local r = run(function()
        local tx, rx = nexus.channel.mpsc(1)
        local xtx, xrx = nexus.channel(1)
        tx:send("first")
        local w = nexus.spawn(function() return pack(nexus.select(tx:send_op("waited"), nexus.sleep_op(5))) end)
        nexus.yield()
        local got = { rx:recv() }
        local rw = w:join()
        got[#got + 1] = rx:recv()
        tx:send("full")
        local a = nexus.spawn(function() return pack(nexus.select(xrx:recv_op(), tx:send_op("from a"))) end)
        local b = nexus.spawn(function() return tx:send("from b") end)
        nexus.yield()
        got[#got + 1] = rx:recv()             -- room: the turn goes to a's op
        xtx:send("x")                         -- a's recv op wins
        local ra = a:join()
        got[#got + 1] = rx:recv()             -- the turn went on to b
        b:join()
        return { rw = rw, ra = ra, got = got, left = pack(rx:try_recv()) }
      end)
      assert.are.same({ n = 2, 1, true }, r.rw)
      assert.are.same({ n = 2, 1, "x" }, r.ra)
      assert.are.same({ "first", "waited", "full", "from b" }, r.got)
      assert.are.same({ n = 2, nil, "empty" }, r.left)
    end)

    it("gives up with nil, \"closed\" when its sender closes while it waits", function()
      local r = run(function()
        local tx, rx = nexus.channel.mpsc(1)
        tx:send(1)
        local tx2 = tx:clone()
        local a = nexus.spawn(function() return pack(nexus.select(tx2:send_op(2), nexus.sleep_op(5))) end)
        nexus.yield()
        tx2:close()
        local ra = a:join()
        local b = nexus.spawn(function() return pack(nexus.select(tx:send_op(3), nexus.sleep_op(5))) end)
        nexus.yield()
        rx:close()
        return { ra = ra, rb = b:join() }
      end)
      assert.are.same({ n = 3, 1, nil, "closed" }, r.ra)
      assert.are.same({ n = 3, 1, nil, "closed" }, r.rb)
    end)

    it("an aborted or timed-out select withdraws it: nothing sent, the turn passed on", function()
      local r = run(function()
        local tx, rx = nexus.channel.mpsc(1)
        tx:send(1)
        local h = nexus.spawn(function() nexus.select(tx:send_op("aborted"), nexus.sleep_op(10)) end)
        local t = pack(nexus.timeout(0.02, nexus.select, tx:send_op("timed out")))
        local g = nexus.spawn(function() return tx:send(2) end)
        nexus.yield()
        h:abort()
        local got = { rx:recv() }             -- the turn: h is gone, g gets it
        g:join()
        got[#got + 1] = rx:recv()
        -- granted the turn, then aborted before it ran
        tx:send(3)
        h = nexus.spawn(function() nexus.select(tx:send_op("aborted too"), nexus.sleep_op(10)) end)
        g = nexus.spawn(function() return tx:send(4) end)
        nexus.yield()
        got[#got + 1] = rx:recv()
        h:abort()
        g:join()
        got[#got + 1] = rx:recv()
        return { t = t, got = got, left = pack(rx:try_recv()) }
      end)
      assert.are.same({ n = 2, nil, "timeout" }, r.t)
      assert.are.same({ 1, 2, 3, 4 }, r.got)
      assert.are.same({ n = 2, nil, "empty" }, r.left)
    end)

    it("op:set(v) changes the value; the op is reused across 20,000 selects", function()
      local r = run(function()
        local tx, rx = nexus.channel.mpsc(8)
        local op = tx:send_op(0)
        local s = 0
        local recv = nexus.spawn(function()
          for v in rx:iter() do s = s + v end
        end)
        local idle = idle_op()
        for i = 1, 20000 do nexus.select(idle, op:set(i)) end
        tx:close()
        recv:join()
        return s
      end)
      assert.are.equal(20000 * 20001 / 2, r)
    end)

    it("raises on bad input, naming the function", function()
      local tx, rx = nexus.channel.mpsc(1)
      assert.matches("tx:send_op: cannot send nil", errmsg(tx.send_op, tx, nil), 1, true)
      assert.matches("tx:send_op: cannot send a function", errmsg(tx.send_op, tx, print), 1, true)
      assert.matches("tx:send_op: cannot send a table that contains itself", errmsg(function()
        local t = {}
        t.t = t
        return tx:send_op(t)
      end), 1, true)
      assert.matches("tx:send_op: expected an mpsc sender, got table", errmsg(tx.send_op, {}, 1), 1, true)
      assert.matches("tx:send_op: expected an mpsc sender, got userdata", errmsg(tx.send_op, rx, 1), 1, true)
      local op = tx:send_op(1)
      assert.matches("op:set: cannot send nil", errmsg(op.set, op, nil), 1, true)
      assert.matches("op:set: cannot send a function", errmsg(op.set, op, { f = print }), 1, true)
      assert.matches("op:set: expected an mpsc send op", errmsg(op.set, {}, 1), 1, true)
      assert.matches("select_more_spec", errmsg(function() tx:send_op(nil) end), 1, true)
      -- a table changed after set so that it cannot be copied: the select raises, sends nothing
      local t = { 1 }
      op:set(t)
      t[2] = print
      run(function()
        local err = errmsg(nexus.select, op)
        assert.matches("nexus.select: op 1 (mpsc send): tx:send_op: cannot send a function", err, 1, true)
        assert.are.same({ nil, "empty" }, { rx:try_recv() })
        t[2] = nil
        assert.are.same({ 1, true }, { nexus.select(op) })
        assert.are.same({ 1 }, rx:recv())
      end)
    end)

    it("is refused on a sender in another thread (it could only block that thread)", function()
      local r = run(function()
        local tx, rx = nexus.channel.mpsc(1)
        local addr = mpsc.address(tx:handle())
        return { nexus.thread.run(function(a)
          local t = require("nexus.mpsc").sender(a)
          local ok, err = pcall(t.send_op, t, 1)
          t:close()
          return ok, err
        end, addr) }
      end)
      assert.is_true(r[1])
      assert.is_false(r[2])
      assert.matches("tx:send_op: the sender is on another thread than the receiver's runtime", r[3], 1, true)
    end)
  end)
end)

describe("select ops: shutdown signal", function()
  after_each(P.cleanup)

  it("sig:wait() returns \"trigger\" (or the signal's name)", function()
    local rt = nexus.runtime.new()
    local r = rt:block_on(function()
      local sig = nexus.shutdown_signal()
      nexus.spawn(function() nexus.shutdown_handle():trigger() end)
      return { sig:wait(), sig:wait() }
    end)
    rt:close()
    assert.are.same({ "trigger", "trigger" }, r)
  end)

  it("wait_op wins when shut down already, or when triggered while the select waits", function()
    local rt = nexus.runtime.new()
    local r = rt:block_on(function()
      local sig = nexus.shutdown_signal()
      local op = sig:wait_op()
      local h = nexus.spawn(function() return pack(nexus.select(idle_op(), op)) end)
      nexus.yield()
      nexus.shutdown_handle():trigger()
      local a = h:join()
      return { a = a, b = pack(nexus.select(idle_op(), op)) }
    end)
    rt:close()
    assert.are.same({ n = 2, 2, "trigger" }, r.a)
    assert.are.same({ n = 2, 2, "trigger" }, r.b)
  end)

  it("loses with no effect: the signal stays pending and the waiter's place is free", function()
    local rt = nexus.runtime.new()
    local r1 = rt:block_on(function()
      local sig = nexus.shutdown_signal()
      -- withdrawn before a trigger: another task may wait, and is woken
      local a = pack(nexus.select(ready_op(), sig:wait_op()))
      local other = nexus.spawn(function() return sig:wait() end)
      nexus.yield()
      nexus.shutdown_handle():trigger()
      return { a = a, other = other:join() }
    end)
    rt:close()
    assert.are.same({ n = 2, 1, "ready" }, r1.a)
    assert.are.equal("trigger", r1.other)
    rt = nexus.runtime.new()
    local r = rt:block_on(function()
      local sig = nexus.shutdown_signal()
      -- woken by the trigger, but losing to an op before it
      local ltx, lrx = nexus.channel(1)
      local h = nexus.spawn(function() return pack(nexus.select(lrx:recv_op(), sig:wait_op())) end)
      nexus.yield()
      nexus.shutdown_handle():trigger()
      ltx:send("local")
      return { h = h:join(), after = sig:wait(), shut = sig:is_shutdown() }
    end)
    rt:close()
    assert.are.same({ n = 2, 1, "local" }, r.h)
    assert.are.equal("trigger", r.after)
    assert.is_true(r.shut)
  end)

  it("an aborted or timed-out select withdraws it: another task may then wait", function()
    local rt = nexus.runtime.new()
    local r = rt:block_on(function()
      local sig = nexus.shutdown_signal()
      local h = nexus.spawn(function() nexus.select(sig:wait_op(), nexus.sleep_op(10)) end)
      nexus.yield()
      h:abort()
      local op = sig:wait_op()
      local t = pack(nexus.timeout(0.02, nexus.select, op))
      local w = nexus.spawn(function() return sig:wait() end)   -- no "already waiting"
      nexus.yield()
      nexus.shutdown_handle():trigger()
      return { t = t, w = w:join(), again = pack(nexus.select(op)) }
    end)
    rt:close()
    assert.are.same({ n = 2, nil, "timeout" }, r.t)
    assert.are.equal("trigger", r.w)
    assert.are.same({ n = 2, 1, "trigger" }, r.again)
  end)

  it("is reused across 5,000 selects, then wins", function()
    local rt = nexus.runtime.new()
    local r = rt:block_on(function()
      local sig = nexus.shutdown_signal()
      local op = sig:wait_op()
      local tx, rx = nexus.channel(1)
      local rop = rx:recv_op()
      local n = 0
      for i = 1, 5000 do
        tx:send(i)
        local k, v = nexus.select(op, rop)
        assert(k == 2)
        n = n + v
      end
      nexus.spawn(function() nexus.shutdown_handle():trigger() end)
      return { n = n, last = pack(nexus.select(op, rop)) }
    end)
    rt:close()
    assert.are.equal(5000 * 5001 / 2, r.n)
    assert.are.same({ n = 2, 1, "trigger" }, r.last)
  end)

  it("faults (raised by select) while another task waits, and on another runtime's signal", function()
    local rt = nexus.runtime.new()
    local other = nexus.runtime.new()
    local osig = other:shutdown_handle():signal()
    rt:block_on(function()
      local sig = nexus.shutdown_signal()
      local w = nexus.spawn(function() sig:wait() end)
      nexus.yield()
      local err = errmsg(nexus.select, sig:wait_op())
      assert.matches("nexus.select: op 1 (shutdown wait): another task is already waiting on the shutdown signal",
        err, 1, true)
      w:abort()
      err = errmsg(nexus.select, osig:wait_op())
      assert.matches("nexus.select: op 1 (shutdown wait): the signal belongs to another runtime", err, 1, true)
    end)
    rt:close()
    other:close()
    assert.matches("shutdown_signal:wait_op: expected a shutdown signal, got table",
      errmsg(osig.wait_op, {}), 1, true)
  end)

  it("SIGTERM wakes a select on wait_op (no interrupt); the result names the signal", function()
    local p = P.luajit([[
      io.stdout:setvbuf("no")
      local nexus = require "nexus"
      local rt = nexus.runtime.builder():signal_handlers(true):build()
      rt:block_on(function()
        local sig = nexus.shutdown_signal()
        print("ready")
        print(nexus.select(nexus.sleep_op(60), sig:wait_op()))
        print(sig:wait())
      end)
      rt:close()
    ]])
    assert.is_true(p:wait_for("ready\n", 30), p:show())
    p:signal("TERM")
    assert.is_truthy(p:wait(30), p:show())
    assert.are.same({ exited = true, code = 0 }, p.status, p:show())
    assert.are.equal("ready\n2\tSIGTERM\nSIGTERM\n", p:out())
  end)
end)

describe("select ops: runtime close", function()
  it("rt:close() with selects pending on every op (waiting, and granted room) withdraws them all", function()
    local rt = nexus.runtime.new()
    local keep = {}
    rt:block_on(function()
      local btx, brx = nexus.channel.bytes(8)
      local mtx, mrx = nexus.channel.mpsc(1)
      btx:send("full----")
      mtx:send(1)
      local sig = nexus.shutdown_signal()
      local _, erx = nexus.channel.bytes(8)
      local etx_keep, emrx = nexus.channel.mpsc(1)
      keep = { btx, brx, mtx, mrx, erx, etx_keep, emrx }
      nexus.spawn(function()
        nexus.select(erx:recv_op(), emrx:recv_op(), btx:send_op("granted"), mtx:send_op(2), sig:wait_op())
      end)
      nexus.spawn(function() nexus.select(btx:clone():send_op("waiting"), mrx:recv_op()) end)
      nexus.yield()
    end)
    -- between two block_ons: room granted to the first task's op, which cannot run now
    local m = keep[2]:try_recv()
    assert.are.equal("full----", m:string())
    m:release()
    rt:close()
    local st = rt:shutdown_stats()
    assert.are.equal(0, st.tasks_alive)
    -- nothing was sent, and the room granted to the first task came back
    local btx, brx, mrx = keep[1], keep[2], keep[4]
    assert.are.same({ nil, "empty" }, { brx:try_recv() })
    assert.are.same({ true }, { btx:try_send("12345678") })
    assert.are.same({ "12345678" }, bdrain(brx))
    assert.are.same({ nil, "closed" }, { mrx:try_recv() })   -- closed with its runtime
  end)
end)

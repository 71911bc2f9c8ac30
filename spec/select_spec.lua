-- nexus.select and nexus.try_select: which op wins, losers having no
-- effect (no value taken or sent, no grant kept), reuse of ops, abort and
-- timeout of a selecting task, and bad input.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local nexus = require "nexus"
local pack = H.pack
local run = nexus.run

describe("nexus.select", function()
  it("returns the first op in argument order when several are ready", function()
    local r = run(function()
      local tx1, rx1 = nexus.channel(1)
      local tx2, rx2 = nexus.channel(1)
      tx1:send("a")
      tx2:send("b")
      local first = pack(nexus.select(rx2:recv_op(), rx1:recv_op()))
      return { first = first, left = rx1:try_recv() }
    end)
    assert.are.same({ n = 2, 1, "b" }, r.first)
    assert.are.equal("a", r.left)        -- the losing recv took nothing
  end)

  it("waits for the first op to become ready", function()
    local r = run(function()
      local keep_rx1, rx1 = nexus.channel(1)   -- the sender kept: collected, it would close the channel
      local tx2, rx2 = nexus.channel(1)
      nexus.spawn(function()
        nexus.sleep(0.02)
        tx2:send("late")
      end)
      return pack(nexus.select(rx1:recv_op(), rx2:recv_op()))
    end)
    assert.are.same({ n = 2, 2, "late" }, r)
  end)

  it("gives nil, \"closed\" from a recv op on a closed channel", function()
    local r = run(function()
      local tx, rx = nexus.channel(1)
      tx:close()
      return pack(nexus.select(rx:recv_op()))
    end)
    assert.are.same({ n = 3, 1, nil, "closed" }, r)
  end)

  it("a losing send sends nothing", function()
    local r = run(function()
      local tx1, rx1 = nexus.channel(1)
      local tx2, rx2 = nexus.channel(1)
      local i = nexus.select(tx1:send_op("x"), tx2:send_op("y"))
      return { i = i, a = pack(rx1:try_recv()), b = pack(rx2:try_recv()) }
    end)
    assert.are.equal(1, r.i)
    assert.are.same({ n = 1, "x" }, r.a)
    assert.are.same({ n = 2, nil, "empty" }, r.b)
  end)

  it("a losing send that was granted room passes it to the next sender", function()
    local r = run(function()
      local tx, rx = nexus.channel(1)
      local xtx, xrx = nexus.channel(1)
      tx:send("first")                       -- full
      local a = nexus.spawn(function()
        return pack(nexus.select(xrx:recv_op(), tx:send_op("from select")))
      end)
      local b = nexus.spawn(function() return tx:send("from b") end)
      nexus.yield()                          -- a and b wait: a's send first in line
      local got = { rx:recv() }              -- room: granted to a's send op
      xtx:send("x")                          -- and a's recv op is ready too
      local ra = a:join()                    -- recv wins (first in order)
      got[2] = rx:recv()                     -- the grant went on to b
      b:join()
      return { ra = ra, got = got, left = pack(rx:try_recv()) }
    end)
    assert.are.same({ n = 2, 1, "x" }, r.ra)
    assert.are.same({ "first", "from b" }, r.got)
    assert.are.same({ n = 2, nil, "empty" }, r.left)
  end)

  it("a granted send op wins and sends its value", function()
    local r = run(function()
      local tx, rx = nexus.channel(1)
      tx:send(1)
      local a = nexus.spawn(function()
        return pack(nexus.select(tx:send_op(2), nexus.sleep_op(5)))
      end)
      nexus.yield()
      local v1 = rx:recv()
      return { a = a:join(), v1 = v1, v2 = rx:recv() }
    end)
    assert.are.same({ n = 2, 1, true }, r.a)
    assert.are.equal(1, r.v1)
    assert.are.equal(2, r.v2)
  end)

  it("send_op(v):set(w) changes the value sent", function()
    local r = run(function()
      local tx, rx = nexus.channel(2)
      local op = tx:send_op(1)
      nexus.select(op)
      nexus.select(op:set(2))
      return { rx:recv(), rx:recv() }
    end)
    assert.are.same({ 1, 2 }, r)
  end)

  it("sleep_op counts from the start of each select; deadline_op is absolute", function()
    local r = run(function()
      local keep_rx, rx = nexus.channel(1)   -- the sender kept: collected, it would close the channel
      local sl = nexus.sleep_op(0.03)
      local t0 = nexus.now()
      local i1 = nexus.select(rx:recv_op(), sl)
      local t1 = nexus.now()
      local i2 = nexus.select(rx:recv_op(), sl)
      local t2 = nexus.now()
      local i3 = nexus.select(nexus.deadline_op(t2 + 0.02), sl)
      local t3 = nexus.now()
      local i4 = nexus.select(nexus.deadline_op(0), sl)   -- in the past: at once
      return { i1, i2, i3, i4, t1 - t0, t2 - t1, t3 - t2 }
    end)
    assert.are.same({ 2, 2, 1, 1 }, { r[1], r[2], r[3], r[4] })
    assert.is_true(r[5] >= 0.03 - 1e-3 and r[5] < 0.03 + H.LATE)
    assert.is_true(r[6] >= 0.03 - 1e-3 and r[6] < 0.03 + H.LATE)
    assert.is_true(r[7] >= 0.02 - 1e-3 and r[7] < 0.02 + H.LATE)
  end)

  it("reuses its ops: 20,000 selects in a loop allocate nothing per call", function()
    local r = run(function()
      local tx, rx = nexus.channel(1)
      local keep_idle, idle = nexus.channel(1)   -- the sender kept: collected, it would close the channel
      local a, b = rx:recv_op(), idle:recv_op()
      local s = 0
      local function go(n)
        for i = 1, n do
          tx:send(i)
          local _, v = nexus.select(b, a)
          s = s + v
        end
      end
      go(2000)                           -- warm up (JIT, tables)
      collectgarbage("collect")
      collectgarbage("stop")
      local before = collectgarbage("count")
      go(20000)
      local grew = collectgarbage("count") - before
      collectgarbage("restart")
      return { s = s, grew = grew }
    end)
    assert.are.equal(2000 * 2001 / 2 + (20000 * 20001 / 2), r.s)
    assert.is_true(r.grew < 64, "grew by " .. r.grew .. " kB")
  end)

  it("join_op gives true, results | false, err, traceback and never raises", function()
    local r = run(function()
      local ok = nexus.spawn(function()
        nexus.sleep(0.01)
        return 7, 8
      end)
      local bad = nexus.spawn(function() error("boom") end)
      local keep_idle, idle = nexus.channel(1)   -- the sender kept: collected, it would close the channel
      local b = pack(nexus.select(bad:join_op()))   -- joined before it fails
      local a = pack(nexus.select(idle:recv_op(), ok:join_op()))
      return { a = a, b = b }
    end)
    assert.are.same({ n = 4, 2, true, 7, 8 }, r.a)
    assert.are.equal(1, r.b[1])
    assert.is_false(r.b[2])
    assert.matches("boom", r.b[3])
    assert.matches("stack traceback", r.b[4])
  end)

  it("a losing join leaves the task joinable (its error is still observed)", function()
    local r = run(function()
      local h = nexus.spawn(function()
        nexus.sleep(0.05)
        return "done"
      end)
      local i = nexus.select(h:join_op(), nexus.sleep_op(0.01))
      return { i = i, v = h:join() }
    end)
    assert.are.same({ i = 2, v = "done" }, r)
  end)

  it("cancelled_op completes when the token (or its parent) is cancelled", function()
    local r = run(function()
      local root = nexus.cancel_token()
      local child = root:child()
      nexus.spawn(function()
        nexus.sleep(0.01)
        root:cancel()
      end)
      local keep_idle, idle = nexus.channel(1)   -- the sender kept: collected, it would close the channel
      return pack(nexus.select(idle:recv_op(), child:cancelled_op()))
    end)
    assert.are.same({ n = 2, 2, true }, r)
  end)

  it("an aborted selecting task withdraws every op", function()
    local r = run(function()
      local tx, rx = nexus.channel(1)
      local tx2, rx2 = nexus.channel(1)
      tx2:send("full")
      local h = nexus.spawn(function()
        nexus.select(rx:recv_op(), tx2:send_op("never"), nexus.sleep_op(10))
      end)
      nexus.yield()
      h:abort()
      -- the receiver is free for another task, the send went nowhere
      local g = nexus.spawn(function() return rx:recv() end)
      nexus.yield()
      tx:send("v")
      return { g = g:join(), a = rx2:recv(), b = pack(rx2:try_recv()), stats = nexus.now() }
    end)
    assert.are.equal("v", r.g)
    assert.are.equal("full", r.a)
    assert.are.same({ n = 2, nil, "empty" }, r.b)
  end)

  it("nexus.timeout around a select gives nil, \"timeout\" and withdraws the ops", function()
    local r = run(function()
      local tx, rx = nexus.channel(1)
      local op = rx:recv_op()
      local t = pack(nexus.timeout(0.02, nexus.select, op))
      tx:send("after")
      return { t = t, again = pack(nexus.select(op)), plain = pack(rx:try_recv()) }
    end)
    assert.are.same({ n = 2, nil, "timeout" }, r.t)
    assert.are.same({ n = 2, 1, "after" }, r.again)
    assert.are.same({ n = 2, nil, "empty" }, r.plain)
  end)

  it("try_select returns nil when no op is ready and registers nothing", function()
    local r = run(function()
      local tx, rx = nexus.channel(1)
      local op = rx:recv_op()
      local none = pack(nexus.try_select(op, nexus.sleep_op(1)))
      local g = nexus.spawn(function() return rx:recv() end)   -- not BUSY
      nexus.yield()
      tx:send(5)
      local v = g:join()
      tx:send(6)
      return { none = none, v = v, ready = pack(nexus.try_select(op)) }
    end)
    assert.are.same({ n = 1, nil }, r.none)
    assert.are.equal(5, r.v)
    assert.are.same({ n = 2, 1, 6 }, r.ready)
  end)

  it("many tasks selecting over shared ops each get one value, none lost", function()
    local r = run(function()
      local tx, rx = nexus.channel(4)
      local out_tx, out_rx = nexus.channel(1000)
      local stop = nexus.cancel_token()
      local h = nexus.spawn(function()
        local a, b = rx:recv_op(), stop:cancelled_op()
        while true do
          local i, v = nexus.select(a, b)
          if i == 2 then return end
          out_tx:send(v)
        end
      end)
      for i = 1, 500 do tx:send(i) end
      while out_rx:len() < 500 do nexus.sleep(0.001) end
      stop:cancel()
      h:join()
      local s = 0
      for _ = 1, 500 do s = s + out_rx:recv() end
      return s
    end)
    assert.are.equal(500 * 501 / 2, r)
  end)

  it("ops made and dropped by the thousand are collected and reused safely", function()
    local r = nexus.run(function()
      local tx, rx = nexus.channel(1)
      local keep_idle, idle = nexus.channel(1)   -- the sender kept: collected, it would close the channel
      local s = 0
      for i = 1, 5000 do
        -- new ops each time: the last select's losers were registered
        -- on idle's channel, and go stale when their op is collected
        tx:send(i)
        local _, v = nexus.select(idle:recv_op(), rx:recv_op(), nexus.sleep_op(1))
        s = s + v
        if i % 500 == 0 then collectgarbage() end
      end
      -- a select parked on ops that are then dropped by an abort
      local h = nexus.spawn(function() nexus.select(idle:recv_op(), nexus.sleep_op(10)) end)
      nexus.yield()
      h:abort()
      collectgarbage()
      collectgarbage()
      keep_idle:send("after")
      return { s = s, after = idle:recv() }
    end)
    assert.are.equal(5000 * 5001 / 2, r.s)
    assert.are.equal("after", r.after)
  end)

  describe("bad input", function()
    it("raises on no ops, on a non-op, and on an op passed twice", function()
      run(function()
        assert.has_error(function() nexus.select() end, "nexus.select: expected at least one op")
        assert.has_error(function() nexus.try_select() end, "nexus.try_select: expected at least one op")
        local ok, err = pcall(nexus.select, 42)
        assert.is_false(ok)
        assert.matches("nexus.select: argument 1 is not an op %(got number", err)
        ok, err = pcall(nexus.select, nexus.sleep_op(0), {})
        assert.is_true(ok)              -- the first op completes before the second is looked at
        local keep_rx, rx = nexus.channel(1)   -- the sender kept: collected, it would close the channel
        ok, err = pcall(nexus.select, rx:recv_op(), {})
        assert.is_false(ok)
        assert.matches("argument 2 is not an op", err)
        local s = nexus.sleep_op(1)
        ok, err = pcall(nexus.select, s, s)
        assert.is_false(ok)
        assert.matches("nexus.select: op 2 %(sleep%) is passed twice", err)
        -- after each fault the ops are free again
        assert.are.equal(1, (nexus.select(nexus.sleep_op(0), rx:recv_op())))
      end)
    end)

    it("raises on an op in use by another task's select", function()
      run(function()
        local keep_rx, rx = nexus.channel(1)   -- the sender kept: collected, it would close the channel
        local op = rx:recv_op()
        local h = nexus.spawn(function() nexus.select(op) end)
        nexus.yield()
        local ok, err = pcall(nexus.select, op)
        assert.is_false(ok)
        assert.matches("nexus.select: op 1 %(channel recv%) is in use by another task's select", err)
        h:abort()
        assert.is_nil((nexus.try_select(op)))   -- free again after the abort
      end)
    end)

    it("raises outside a task, on a negative sleep, on send_op(nil), on a self-join", function()
      local s = nexus.sleep_op(0)
      assert.has_error(function() nexus.select(s) end, "nexus.select: not inside a nexus task")
      assert.has_error(function() nexus.sleep_op(-1) end, "nexus.sleep_op: negative duration (-1)")
      assert.has_error(function() nexus.sleep_op("x") end)
      assert.has_error(function() nexus.deadline_op(0 / 0) end)
      local tx = nexus.channel(1)
      assert.has_error(function() tx:send_op(nil) end, "tx:send_op: cannot send nil")
      run(function()
        local ok, err = pcall(nexus.select, nexus.current():join_op())
        assert.is_false(ok)
        assert.matches("nexus.select: op 1 %(join%): a task cannot join itself", err)
      end)
    end)

    it("raises on an op whose channel has waiters in another runtime", function()
      local tx, rx = nexus.channel(1)
      local rt1 = nexus.runtime.new()
      rt1:block_on(function()
        nexus.spawn(function() tx:send(1); tx:send(2) end)   -- the second send waits in rt1
        nexus.yield()
      end)
      local rt2 = nexus.runtime.new()
      local ok, err = pcall(rt2.block_on, rt2, function() return nexus.select(tx:send_op(3)) end)
      assert.is_false(ok)
      assert.matches("nexus.select: op 1 %(channel send%): the channel is in use by another runtime", err)
      rt1:close()
      rt2:close()
      assert(rx)
    end)

    it("a channel receiver busy in another task makes the op fail, not hang", function()
      run(function()
        local keep_rx, rx = nexus.channel(1)   -- the sender kept: collected, it would close the channel
        local h = nexus.spawn(function() rx:recv() end)
        nexus.yield()
        local ok, err = pcall(nexus.select, rx:recv_op())
        assert.is_false(ok)
        assert.matches("another task is already receiving", err)
        h:abort()
      end)
    end)
  end)
end)

-- Cross-thread channel (nexus.channel.mpsc): values copied, bounded with
-- backpressure, FIFO service of waiting senders, close rules, senders on
-- other OS threads (a libuv thread-pool job through the C API, and
-- another Lua state on a luv thread), waking the receiver through the
-- loop, aborted and timed-out waits, the C API's codes, and bad input.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local nexus = require "nexus"
local mpsc = require "nexus.mpsc"

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

-- Runs fn in a coroutine of its own, then collects garbage: what fn
-- dropped is gone. (Locals of the running function can linger in stale
-- stack slots, and compiled traces can keep a dropped object reachable:
-- hence the coroutine and jit.flush.)
local function dropped_in(fn)
  local r = coroutine.wrap(fn)()
  jit.flush()
  collectgarbage(); collectgarbage()
  return r
end

-- Receives everything until "closed".
local function drain(rx)
  local got = {}
  for v in rx:iter() do got[#got + 1] = v end
  return got
end

describe("mpsc channel", function()
  after_each(H.cleanup)

  describe("values", function()
    it("copies booleans, numbers, strings and nested tables, in order", function()
      local vals = {
        true, false, 0, -1.5, 1 / 0, -1 / 0, 2 ^ 53, 1e-300, "", "with\0zero", string.rep("z", 1000000),
        {}, { 1, 2, 3 }, { a = { b = { c = "deep" } } },
        { [1] = "a", [2.5] = "b", [true] = "t", [false] = 0, x = false, [""] = "empty key" },
      }
      local got = nexus.run(function()
        local tx, rx = nexus.channel.mpsc(4)
        nexus.spawn(function()
          for _, v in ipairs(vals) do assert(tx:send(v)) end
          assert(tx:send(0 / 0))
          assert(tx:send(-0.0))
          tx:close()
        end)
        return drain(rx)
      end)
      assert.are.equal(#vals + 2, #got)
      for i, v in ipairs(vals) do assert.are.same(v, got[i]) end
      local nan, negz = got[#vals + 1], got[#vals + 2]
      assert.is_true(nan ~= nan)
      assert.are.equal(-1 / 0, 1 / negz)
    end)

    it("the receiver gets a copy: later changes to the sent table do not show", function()
      nexus.run(function()
        local tx, rx = nexus.channel.mpsc(2)
        local t = { x = 1, inner = { y = 2 } }
        assert(tx:send(t))
        t.x, t.inner.y = 10, 20
        local r = rx:recv()
        assert.are_not.equal(t, r)
        assert.are.same({ x = 1, inner = { y = 2 } }, r)
      end)
    end)

    it("a table reached twice (not a cycle) is copied twice", function()
      nexus.run(function()
        local tx, rx = nexus.channel.mpsc(1)
        local shared = { 1 }
        assert(tx:send({ a = shared, b = shared }))
        local r = rx:recv()
        assert.are.same({ 1 }, r.a)
        assert.are.same({ 1 }, r.b)
      end)
    end)
  end)

  describe("backpressure", function()
    it("try_send reports full at the capacity, send waits, len counts", function()
      nexus.run(function()
        local tx, rx = nexus.channel.mpsc(3)
        for i = 1, 3 do assert(tx:try_send(i)) end
        assert.are.equal(3, rx:len())
        assert.are.equal(3, tx:capacity())
        assert.are.same({ nil, "full" }, { tx:try_send(4) })
        local done = false
        local h = nexus.spawn(function() assert(tx:send(4)); done = true end)
        nexus.sleep(0.01)
        assert.is_false(done)
        assert.are.equal(1, rx:recv())
        h:join()
        assert.is_true(done)
        for i = 2, 4 do assert.are.equal(i, rx:try_recv()) end
        assert.are.same({ nil, "empty" }, { rx:try_recv() })
      end)
    end)

    it("waiting senders are served first in, first out", function()
      local got = nexus.run(function()
        local tx, rx = nexus.channel.mpsc(1)
        assert(tx:send("first"))
        for _, name in ipairs({ "A", "B", "C", "D" }) do
          local mine = tx:clone()
          nexus.spawn(function() assert(mine:send(name)); mine:close() end)
        end
        nexus.yield()
        tx:close()
        return drain(rx)
      end)
      assert.are.same({ "first", "A", "B", "C", "D" }, got)
    end)

    it("sends waiting on a sender that gets closed give up with closed, in turn", function()
      nexus.run(function()
        local tx, rx = nexus.channel.mpsc(1)
        local other = tx:clone()
        assert(tx:send("queued"))
        local w1 = nexus.spawn(function() return { tx:send("w1") } end)
        local w2 = nexus.spawn(function() return { other:send("w2") } end)
        nexus.yield()
        tx:close()
        assert.are.equal("queued", rx:recv())
        assert.are.same({ nil, "closed" }, w1:join())   -- its turn: gives up, passes it on
        assert.are.same({ true }, w2:join())
        other:close()
        assert.are.same({ "w2" }, drain(rx))
      end)
    end)

    it("the producer is never more than the capacity ahead", function()
      local worst = nexus.run(function()
        local tx, rx = nexus.channel.mpsc(5)
        local sent, received, worst = 0, 0, 0
        nexus.spawn(function()
          for i = 1, 300 do
            assert(tx:send(i))
            sent = sent + 1
            if sent - received > worst then worst = sent - received end
          end
          tx:close()
        end)
        for v in rx:iter() do
          received = received + 1
          assert.are.equal(received, v)
          if received % 7 == 0 then nexus.sleep(0.001) end
        end
        return worst
      end)
      assert.is_true(worst <= 6, "worst lead " .. worst)   -- 5 queued + the one just received
      assert.is_true(worst >= 5)
    end)
  end)

  describe("other threads", function()
    it("a libuv thread-pool job sends from its worker thread; the receiver is woken through the loop", function()
      local n = 5000
      local got = nexus.run(function()
        local tx, rx = nexus.channel.mpsc(4)
        mpsc._pool_send(tx:handle(), "p", n)
        tx:close()
        return drain(rx)
      end)
      assert.are.equal(n + 1, #got)
      assert.is_true(got[1], "the job did not run on another thread")
      for i = 1, n do assert(got[i + 1] == "p" .. i, "message " .. i .. ": " .. tostring(got[i + 1])) end
    end)

    it("two pool jobs and a local task send at once; each one's order is kept", function()
      local got = nexus.run(function()
        local tx, rx = nexus.channel.mpsc(8)
        mpsc._pool_send(tx:handle(), "a", 2000)
        mpsc._pool_send(tx:handle(), "b", 2000)
        nexus.spawn(function()
          for i = 1, 2000 do assert(tx:send("l" .. i)) end
          tx:close()
        end)
        return drain(rx)
      end)
      local last, trues = { a = 0, b = 0, l = 0 }, 0
      for _, v in ipairs(got) do
        if v == true then
          trues = trues + 1
        else
          local who, i = v:match("^(%a)(%d+)$")
          i = tonumber(i)
          assert.are.equal(last[who] + 1, i)
          last[who] = i
        end
      end
      assert.are.equal(2, trues)
      assert.are.same({ a = 2000, b = 2000, l = 2000 }, last)
    end)

    it("another Lua state on another thread sends through a handle (luv thread)", function()
      local uv = require "luv"
      local got = nexus.run(function()
        local tx, rx = nexus.channel.mpsc(3)
        local th = uv.new_thread(function(addr, n)
          local mpsc = require "nexus.mpsc"
          local tx = mpsc.sender(addr)
          for i = 1, n do assert(tx:send({ i = i, s = "x" .. i })) end
          tx:close()
        end, mpsc.address(tx:handle()), 1000)
        tx:close()
        local got = drain(rx)
        th:join()
        return got
      end)
      assert.are.equal(1000, #got)
      for i = 1, 1000 do assert.are.same({ i = i, s = "x" .. i }, got[i]) end
    end)

    it("rt:close() while a worker is blocked on a full channel unblocks it", function()
      local rt = nexus.runtime.new()
      local rx = rt:block_on(function()
        local tx, rx = nexus.channel.mpsc(1)
        mpsc._pool_send(tx:handle(), "p", 100)
        tx:close()
        assert.is_true(rx:recv())   -- the worker runs; it blocks on the next sends
        return rx
      end)
      local t0 = nexus.now()
      rt:close()                    -- waits for the job: it must see "closed"
      assert.is_true(nexus.now() - t0 < 5)
      assert.are.same({ nil, "closed" }, { rx:try_recv() })
    end)

    it("closing the receiver unblocks a worker blocked on a full channel", function()
      local t0 = nexus.now()
      nexus.run(function()
        local tx, rx = nexus.channel.mpsc(1)
        local h = tx:handle()
        mpsc._pool_send(h, "p", 1000)
        tx:close()
        assert.is_true(rx:recv())
        nexus.sleep(0.02)
        rx:close()
        -- nexus.run returns once the job is done (it keeps the loop alive)
      end)
      assert.is_true(nexus.now() - t0 < 5)
    end)
  end)

  describe("closing", function()
    it("the receiver drains, then sees closed once every sender (handles too) closed", function()
      nexus.run(function()
        local tx, rx = nexus.channel.mpsc(4)
        local tx2 = tx:clone()
        local h = tx:handle()
        assert(tx:send(1)); assert(tx2:send(2))
        tx:close(); tx2:close()
        assert.is_true(tx:is_closed())
        assert.are.equal(1, rx:recv())
        assert.are.equal(2, rx:recv())
        assert.is_false(rx:is_closed())
        assert.are.same({ nil, "empty" }, { rx:try_recv() })
        assert.are.equal(0, mpsc.c_api.send_number(h, 3, 0))
        mpsc.c_api.sender_close(h)
        assert.are.equal(3, rx:recv())
        assert.are.same({ nil, "closed" }, { rx:recv() })
        assert.is_true(rx:is_closed())
      end)
    end)

    it("a sender made from a handle in the same state behaves as a local one", function()
      local got = nexus.run(function()
        local tx, rx = nexus.channel.mpsc(1)
        local s = mpsc.sender(tx:handle())
        tx:close()
        nexus.spawn(function()
          for i = 1, 10 do assert(s:send(i)) end   -- suspends while full
          s:close()
        end)
        return drain(rx)
      end)
      assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, got)
    end)

    it("a waiting receiver is woken when the last sender closes", function()
      nexus.run(function()
        local tx, rx = nexus.channel.mpsc(1)
        local r = nexus.spawn(function() return { rx:recv() } end)
        nexus.yield()
        tx:close()
        assert.are.same({ nil, "closed" }, r:join())
      end)
    end)

    it("a collected sender counts as closed", function()
      nexus.run(function()
        local tx, rx = nexus.channel.mpsc(2)
        dropped_in(function() assert(tx:clone():send("from a dropped clone")) end)
        tx:close()
        assert.are.equal("from a dropped clone", rx:recv())
        assert.are.same({ nil, "closed" }, { rx:recv() })
      end)
    end)

    it("closing the receiver: senders get closed (waiting ones too), queued values are dropped", function()
      nexus.run(function()
        local tx, rx = nexus.channel.mpsc(1)
        assert(tx:send("queued"))
        local w = nexus.spawn(function() return { tx:send("waiting") } end)
        nexus.yield()
        rx:close()
        assert.are.same({ nil, "closed" }, w:join())
        assert.are.equal(0, rx:len())
        assert.is_true(tx:is_closed())
        assert.is_true(rx:is_closed())
        assert.are.same({ nil, "closed" }, { tx:send(1) })
        assert.are.same({ nil, "closed" }, { tx:try_send(1) })
        assert.are.same({ nil, "closed" }, { rx:recv() })
      end)
    end)

    it("a collected receiver closes the channel", function()
      nexus.run(function()
        local tx = dropped_in(function() return (nexus.channel.mpsc(1)) end)
        assert.are.same({ nil, "closed" }, { tx:send(1) })
      end)
    end)
  end)

  describe("aborted and timed-out waits", function()
    it("a receiver timed out while waiting can receive later, from another thread too", function()
      nexus.run(function()
        local tx, rx = nexus.channel.mpsc(2)
        local ok, err = nexus.timeout(0.02, rx.recv, rx)
        assert.is_nil(ok); assert.are.equal("timeout", err)
        mpsc._pool_send(tx:handle(), "t", 3)
        tx:close()
        assert.are.same({ true, "t1", "t2", "t3" }, drain(rx))
      end)
    end)

    it("a receiver aborted while waiting leaves no stale receiver", function()
      nexus.run(function()
        local tx, rx = nexus.channel.mpsc(2)
        local r = nexus.spawn(function() rx:recv(); error("never") end)
        nexus.yield()
        r:abort()
        assert(tx:send("after"))
        assert.are.equal("after", rx:recv())
      end)
    end)

    it("senders aborted or timed out while waiting drop out; nothing is lost", function()
      local got = nexus.run(function()
        local tx, rx = nexus.channel.mpsc(1)
        assert(tx:send(1))
        local a = nexus.spawn(function() tx:send("aborted"); error("never") end)
        local ok, err = nexus.timeout(0.02, tx.send, tx, "timed out")
        assert.is_nil(ok); assert.are.equal("timeout", err)
        local b = nexus.spawn(function() assert(tx:send(2)) end)
        nexus.yield()
        a:abort()
        assert.are.equal(1, rx:recv())
        b:join()
        tx:close()
        return drain(rx)
      end)
      assert.are.same({ 2 }, got)
    end)

    it("a sender woken for room but aborted before it ran passes its turn on", function()
      local got = nexus.run(function()
        local tx, rx = nexus.channel.mpsc(1)
        assert(tx:send(1))
        local a = nexus.spawn(function() tx:send("a"); error("never") end)
        local b = nexus.spawn(function() assert(tx:send("b")) end)
        nexus.yield()
        assert.are.equal(1, rx:recv())   -- a is woken (its turn)
        a:abort()                        -- before it runs: b gets the turn
        b:join()
        tx:close()
        return drain(rx)
      end)
      assert.are.same({ "b" }, got)
    end)

    it("a receiver waiting with no sender on another thread is a deadlock, not a hang", function()
      local err = H.errof(nexus.run, function()
        local tx, rx = nexus.channel.mpsc(1)
        return rx:recv(), tx
      end)
      assert.is_truthy(err and err:find("deadlock", 1, true), tostring(err))
    end)
  end)

  describe("C API", function()
    local api = mpsc.c_api
    local EAGAIN, EINVAL, EPIPE, EDEADLK = -11, -22, -32, -35

    it("sends bytes, numbers and booleans; full, deadlock and closed codes", function()
      nexus.run(function()
        local tx, rx = nexus.channel.mpsc(3)
        local h = tx:handle()
        assert.are.equal(0, api.send_bytes(h, "raw\0bytes", 9, 0))
        assert.are.equal(0, api.send_number(h, 2.5, 0))
        assert.are.equal(0, api.send_boolean(h, 0, 0))
        assert.are.equal(EAGAIN, api.send_number(h, 1, 0))
        assert.are.equal(EDEADLK, api.send_number(h, 1, 1))   -- blocking on the receiver's thread
        assert.are.equal("raw\0bytes", rx:recv())
        assert.are.equal(2.5, rx:recv())
        assert.are.equal(false, rx:recv())
        local h2 = api.sender_clone(h)
        assert.are.equal(h, h2)
        api.sender_close(h2)
        rx:close()
        assert.are.equal(EPIPE, api.send_number(h, 1, 0))
        api.sender_close(h)
        assert.are.equal(EINVAL, api.send_number(nil, 1, 0))
      end)
    end)
  end)

  describe("bad input", function()
    it("capacity 0, negative, non-integer, non-number or too large raises", function()
      for _, v in ipairs({ 0, -1, 1.5, 0 / 0, "4", false, {} }) do
        raises({ "nexus.channel.mpsc", "capacity" }, nexus.channel.mpsc, v)
      end
      raises({ "nexus.channel.mpsc", "capacity" }, nexus.channel.mpsc)
      raises({ "nexus.channel.mpsc", "too large" }, nexus.channel.mpsc, 2 ^ 25)
    end)

    it("sending nil or an unsupported value raises naming the fault", function()
      local tx, rx = nexus.channel.mpsc(4)
      raises({ "tx:send", "cannot send nil" }, tx.send, tx, nil)
      raises({ "tx:send", "cannot send nil" }, tx.send, tx)
      raises({ "tx:try_send", "cannot send nil" }, tx.try_send, tx, nil)
      raises({ "tx:send", "cannot send a function" }, tx.send, tx, print)
      raises({ "tx:send", "cannot send a userdata" }, tx.send, tx, io.stdout)
      raises({ "tx:send", "cannot send a thread" }, tx.send, tx, coroutine.create(print))
      raises({ "tx:send", "cannot send a cdata" }, tx.send, tx, require("ffi").new("int", 1))
      raises({ "tx:send", "cannot send a function", '["a"][2]' }, tx.send, tx, { a = { 1, print } })
      local cyc = {}
      cyc.self = cyc
      raises({ "tx:send", "contains itself" }, tx.send, tx, cyc)
      raises({ "tx:send", "table as a table key" }, tx.send, tx, { [{}] = 1 })
      local deep = {}
      for _ = 1, 100 do deep = { deep } end
      raises({ "tx:send", "deeper than 64" }, tx.send, tx, deep)
      assert.are.equal(0, rx:len())    -- nothing half-sent
      assert(tx:send("still works"))
      assert.are.equal("still works", rx:try_recv())
    end)

    it("receiving from two tasks at once raises", function()
      nexus.run(function()
        local tx, rx = nexus.channel.mpsc(1)
        local first = nexus.spawn(function() return rx:recv() end)
        nexus.yield()
        raises({ "rx:recv", "another task is already receiving" }, rx.recv, rx)
        raises({ "rx:try_recv", "another task is already receiving" }, rx.try_recv, rx)
        assert(tx:send("one"))
        assert.are.equal("one", first:join())
      end)
    end)

    it("a suspending call outside a task raises; one that need not suspend works", function()
      local tx, rx = nexus.channel.mpsc(1)
      raises({ "rx:recv", "not inside a nexus task" }, rx.recv, rx)
      assert(tx:send(1))
      raises({ "tx:send", "not inside a nexus task" }, tx.send, tx, 2)
      assert.are.equal(1, rx:recv())
    end)

    it("suspending where Lua cannot yield raises a nexus error", function()
      nexus.run(function()
        local tx, rx = nexus.channel.mpsc(1)
        raises({ "rx:recv", "cannot suspend here" }, function()
          table.sort({ 1, 2 }, function(a, b) rx:recv(); return a < b end)
        end)
        assert(tx:send("ok"))
        assert.are.equal("ok", rx:recv())
      end)
    end)

    it("using a channel of one runtime in another one's task raises", function()
      local a, b = nexus.runtime.new(), nexus.runtime.new()
      local tx, rx = a:block_on(function() return nexus.channel.mpsc(1) end)
      raises({ "tx:send", "belongs to another runtime" }, b.block_on, b, function() return tx:send(1) end)
      raises({ "rx:recv", "belongs to another runtime" }, b.block_on, b, function() return rx:recv() end)
      a:close()
      b:close()
    end)

    it("clone or handle of a closed sender, and a bad handle, raise", function()
      local tx = nexus.channel.mpsc(1)
      tx:close()
      raises({ "tx:clone", "closed" }, tx.clone, tx)
      raises({ "tx:handle", "closed" }, tx.handle, tx)
      raises({ "mpsc.sender", "expected a channel handle" }, mpsc.sender, "x")
      raises({ "mpsc.sender", "not a live channel handle" }, mpsc.sender, 0)
      assert.are.same({ nil, "closed" }, { tx:send(1) })
      raises({ "tx:send", "cannot send nil" }, tx.send, tx, nil)   -- checked even when closed
    end)

    it("handles print usefully", function()
      local tx, rx = nexus.channel.mpsc(2)
      assert(tx:try_send(1))
      assert.are.equal("nexus.channel.mpsc.sender(len=1, capacity=2)", tostring(tx))
      assert.are.equal("nexus.channel.mpsc.receiver(len=1, capacity=2)", tostring(rx))
    end)
  end)
end)

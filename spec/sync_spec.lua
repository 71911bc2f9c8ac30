-- nexus.semaphore, nexus.oneshot, nexus.watch, nexus.broadcast,
-- nexus.event: ordering, wake-ups, closing, abort and timeout of waiters,
-- permits given back at a holder's end, select ops, ends left to the
-- collector, and bad input.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local nexus = require "nexus"
local pack, errof = H.pack, H.errof
local run = nexus.run

local function gc()
  collectgarbage("collect")
  collectgarbage("collect")
end

---------------------------------------------------------------- semaphore

describe("nexus.semaphore", function()
  it("acquire, try_acquire, release, available, held", function()
    local r = run(function()
      local sem = nexus.semaphore(3)
      local t = {}
      t[1] = sem:acquire()
      t[2] = sem:acquire(2)
      t[3] = sem:available()
      t[4] = sem:try_acquire()
      t[5] = sem:held()
      sem:release(2)
      t[6] = sem:try_acquire(2)
      t[7] = sem:available()
      sem:release(3)
      t[8] = sem:available()
      t[9] = sem:held()
      t[10] = sem:acquire(0)          -- 0 permits: at once, holds nothing
      t[11] = sem:held()
      return t
    end)
    assert.are.same({ true, true, 0, false, 3, true, 0, 3, 0, true, 0 }, r)
  end)

  it("serves waiters first in, first out", function()
    local r = run(function()
      local sem = nexus.semaphore(1)
      local order = {}
      sem:acquire()
      local hs = {}
      for i = 1, 4 do
        hs[i] = nexus.spawn(function()
          sem:acquire()
          order[#order + 1] = i
          nexus.yield()
          sem:release()
        end)
      end
      nexus.yield()                       -- all four queue, in spawn order
      sem:release()
      for i = 1, 4 do hs[i]:join() end
      return { order = order, avail = sem:available() }
    end)
    assert.are.same({ order = { 1, 2, 3, 4 }, avail = 1 }, r)
  end)

  it("a big request at the head holds back smaller ones behind it", function()
    local r = run(function()
      local sem = nexus.semaphore(3)
      local got = {}
      sem:acquire(3)
      local a = nexus.spawn(function()
        sem:acquire(3)
        got[#got + 1] = "a"
        sem:release(3)
      end)
      local b = nexus.spawn(function()
        sem:acquire(1)
        got[#got + 1] = "b"
        sem:release(1)
      end)
      nexus.yield()
      sem:release(1)                      -- 1 free: a (3) does not fit; b must not pass it
      nexus.yield()
      nexus.yield()
      local mid = { got = #got, avail = sem:available(), try = sem:try_acquire(1) }
      sem:release(2)                      -- now a fits, then b
      a:join()
      b:join()
      return { mid = mid, got = got, avail = sem:available() }
    end)
    assert.are.same({ got = 0, avail = 1, try = false }, r.mid)
    assert.are.same({ "a", "b" }, r.got)
    assert.are.equal(3, r.avail)
  end)

  it("try_acquire never overtakes a waiter", function()
    local r = run(function()
      local sem = nexus.semaphore(1)
      sem:acquire()
      local h = nexus.spawn(function() return sem:acquire() end)
      nexus.yield()
      sem:release()                       -- granted to h, which has not run yet
      local t = sem:try_acquire()
      return { t = t, h = h:join(), avail = sem:available() }
    end)
    assert.are.same({ t = false, h = true, avail = 1 }, r)   -- h ended holding it: given back
  end)

  it("close wakes the waiters with nil, \"closed\"; later acquires get it too", function()
    local r = run(function()
      local sem = nexus.semaphore(1)
      sem:acquire()
      local a = nexus.spawn(function() return pack(sem:acquire()) end)
      local b = nexus.spawn(function() return pack(sem:acquire(1)) end)
      nexus.yield()
      sem:close()
      local later = pack(sem:acquire())
      sem:release()                       -- releasing still works
      return { a = a:join(), b = b:join(), later = later, try = sem:try_acquire(),
               closed = sem:is_closed(), avail = sem:available() }
    end)
    assert.are.same({ n = 2, nil, "closed" }, r.a)
    assert.are.same({ n = 2, nil, "closed" }, r.b)
    assert.are.same({ n = 2, nil, "closed" }, r.later)
    assert.is_false(r.try)
    assert.is_true(r.closed)
    assert.are.equal(1, r.avail)
  end)

  it("add_permits grows the total and serves waiters", function()
    local r = run(function()
      local sem = nexus.semaphore(1)
      sem:acquire()
      local h = nexus.spawn(function() return sem:acquire(1), sem:available() end)
      nexus.yield()
      sem:add_permits(1)
      local ok, avail = h:join()
      return { ok = ok, avail = avail, total = sem:total() }
    end)
    assert.are.same({ ok = true, avail = 0, total = 2 }, r)
  end)

  it("with runs fn holding a permit and releases it after, even on error", function()
    local r = run(function()
      local sem = nexus.semaphore(1)
      local inside
      local a, b = sem:with(function(x, y)
        inside = sem:available()
        nexus.yield()
        return x + y, "ok"
      end, 1, 2)
      local after1 = sem:available()
      local err = errof(sem.with, sem, function() error("boom") end)
      local after2 = sem:available()
      local tbl = {}
      local ok, e = pcall(sem.with, sem, function() error(tbl) end)
      sem:close()
      return { a = a, b = b, inside = inside, after1 = after1, err = err, after2 = after2,
               same = (not ok) and e == tbl, closed = pack(sem:with(function() return 1 end)),
               avail = sem:available() }
    end)
    assert.are.equal(3, r.a)
    assert.are.equal("ok", r.b)
    assert.are.equal(0, r.inside)
    assert.are.equal(1, r.after1)
    assert.matches("boom", r.err)
    assert.are.equal(1, r.after2)
    assert.is_true(r.same)                -- the error value raised again as it was
    assert.are.same({ n = 2, nil, "closed" }, r.closed)
    assert.are.equal(1, r.avail)
  end)

  it("a holder that ends (returns) holding permits gives them back", function()
    local r = run(function()
      local sem = nexus.semaphore(3)
      local h = nexus.spawn(function() sem:acquire(2) end)
      h:join()
      local avail = sem:available()
      return { avail = avail, all = sem:try_acquire(3) }
    end)
    assert.are.same({ avail = 3, all = true }, r)
  end)

  it("permits of a holder that errors go to the task waiting for them", function()
    local r = run(function()
      local sem = nexus.semaphore(2)
      local h = nexus.spawn(function()
        sem:acquire(2)
        nexus.sleep(0.01)
        error("boom")
      end)
      nexus.yield()
      local w = nexus.spawn(function() return sem:acquire(2), sem:held() end)
      local res = pack(h:result())        -- waiting for h: its error is observed
      local a, held = w:join()
      return { ok = res[1], err = res[2], a = a, held = held, avail = sem:available() }
    end)
    assert.is_false(r.ok)
    assert.matches("boom", r.err)
    assert.is_true(r.a)
    assert.are.equal(2, r.held)
    assert.are.equal(2, r.avail)          -- w ended holding 2: given back too
  end)

  it("permits of an aborted holder go to the tasks waiting, in order", function()
    local r = run(function()
      local sem = nexus.semaphore(3)
      local got = {}
      local h = nexus.spawn(function()
        sem:acquire(3)
        nexus.sleep(10)
      end)
      nexus.yield()
      local ws = {}
      for i = 1, 3 do
        ws[i] = nexus.spawn(function()
          sem:acquire(1)
          got[#got + 1] = i
          nexus.sleep(0.01)
          sem:release(1)
        end)
      end
      nexus.yield()
      local before = sem:available()
      h:abort()
      for i = 1, 3 do ws[i]:join() end
      return { before = before, got = got, avail = sem:available() }
    end)
    assert.are.equal(0, r.before)
    assert.are.same({ 1, 2, 3 }, r.got)
    assert.are.equal(3, r.avail)
  end)

  it("an aborted holder's permits come back with nobody waiting (lazily, exactly)", function()
    local r = run(function()
      local a, b = nexus.semaphore(5), nexus.semaphore(1)
      local h = nexus.spawn(function()
        a:acquire(2)
        a:acquire(1)
        b:acquire()
        nexus.sleep(10)
      end)
      nexus.yield()
      local mid = { a:available(), b:available() }
      h:abort()
      return { mid = mid, after = { a:available(), b:available() } }
    end)
    assert.are.same({ mid = { 2, 0 }, after = { 5, 1 } }, r)
  end)

  it("with gives its permit back when the task is aborted inside fn", function()
    local r = run(function()
      local sem = nexus.semaphore(1)
      local h = nexus.spawn(function()
        sem:with(function() nexus.sleep(10) end)
      end)
      nexus.yield()
      local w = nexus.spawn(function() return sem:acquire() end)
      nexus.yield()
      h:abort()
      return { w = w:join(), avail = sem:available() }
    end)
    assert.are.same({ w = true, avail = 1 }, r)
  end)

  it("a with abandoned by nexus.timeout leaves the permit with the task (documented)", function()
    local r = run(function()
      local sem = nexus.semaphore(1)
      local t = pack(nexus.timeout(0.01, sem.with, sem, function() nexus.sleep(10) end))
      local held = sem:held()
      sem:release(held)                   -- the task gives it back itself
      local h = nexus.spawn(function()
        nexus.timeout(0.01, sem.with, sem, function() nexus.sleep(10) end)
      end)
      h:join()                            -- or its end does
      return { t = t, held = held, avail = sem:available() }
    end)
    assert.are.same({ n = 2, nil, "timeout" }, r.t)
    assert.are.equal(1, r.held)
    assert.are.equal(1, r.avail)
  end)

  it("a waiter that times out leaves the queue; the next one is served", function()
    local r = run(function()
      local sem = nexus.semaphore(1)
      sem:acquire()
      local a = nexus.spawn(function() return pack(nexus.timeout(0.01, sem.acquire, sem)) end)
      local b = nexus.spawn(function() return sem:acquire() end)
      local ra = a:join()
      sem:release()
      local rb = b:join()
      return { ra = ra, rb = rb, avail = sem:available() }
    end)
    assert.are.same({ n = 2, nil, "timeout" }, r.ra)
    assert.is_true(r.rb)
    assert.are.equal(1, r.avail)
  end)

  it("a big head request that times out lets the smaller ones behind it through", function()
    local r = run(function()
      local sem = nexus.semaphore(3)
      sem:acquire(2)                      -- 1 free
      local a = nexus.spawn(function() return pack(nexus.timeout(0.02, sem.acquire, sem, 3)) end)
      local b = nexus.spawn(function()
        local ok = sem:acquire(1)
        return ok, nexus.now()
      end)
      local t0 = nexus.now()
      local ra = a:join()
      local ok, tb = b:join()
      return { ra = ra, ok = ok, waited = tb - t0 }
    end)
    assert.are.same({ n = 2, nil, "timeout" }, r.ra)
    assert.is_true(r.ok)
    assert.is_true(r.waited >= 0.015)     -- b got in when a gave up, not before
  end)

  it("a waiter aborted after being granted passes its permits on", function()
    local r = run(function()
      local sem = nexus.semaphore(1)
      sem:acquire()
      local a = nexus.spawn(function() sem:acquire(); return "a" end)
      local b = nexus.spawn(function() sem:acquire(); return "b", sem:held() end)
      nexus.yield()
      sem:release()                       -- granted to a, which has not run
      a:abort()
      local rb, held = b:join()
      return { rb = rb, held = held, avail = sem:available() }
    end)
    assert.are.same({ rb = "b", held = 1, avail = 1 }, r)
  end)

  it("a waiter aborted while queued holds nothing and blocks nobody", function()
    local r = run(function()
      local sem = nexus.semaphore(2)
      sem:acquire(2)
      local a = nexus.spawn(function() sem:acquire(2) end)
      local b = nexus.spawn(function() return sem:acquire(1) end)
      nexus.yield()
      sem:release(1)                      -- a (2) does not fit: b waits behind it
      nexus.yield()
      a:abort()                           -- b is now first and fits
      local rb = b:join()
      return { b = rb, avail = sem:available(), held = sem:held() }
    end)
    assert.are.same({ b = true, avail = 1, held = 1 }, r)
  end)

  it("acquire_op wins a select and the permit is the task's", function()
    local r = run(function()
      local sem = nexus.semaphore(1)
      local keep, idle = nexus.channel(1)
      local i, ok = nexus.select(idle:recv_op(), sem:acquire_op())
      return { i = i, ok = ok, held = sem:held(), avail = sem:available() }
    end)
    assert.are.same({ i = 2, ok = true, held = 1, avail = 0 }, r)
  end)

  it("a losing acquire_op holds nothing", function()
    local r = run(function()
      local sem = nexus.semaphore(1)
      local tx, rx = nexus.channel(1)
      tx:send("x")
      local first = pack(nexus.select(rx:recv_op(), sem:acquire_op()))
      -- and a waiting one that loses to a later event
      sem:acquire()
      local h = nexus.spawn(function()
        return pack(nexus.select(sem:acquire_op(), nexus.sleep_op(0.01)))
      end)
      local second = h:join()
      return { first = first, held = sem:held(), avail = sem:available(), second = second }
    end)
    assert.are.same({ n = 2, 1, "x" }, r.first)
    assert.are.equal(1, r.held)           -- the acquire() after it
    assert.are.equal(0, r.avail)
    assert.are.same({ n = 2, 2, true }, r.second)
  end)

  it("a granted acquire_op that loses passes the permit to the next waiter", function()
    local r = run(function()
      local sem = nexus.semaphore(1)
      local xtx, xrx = nexus.channel(1)
      sem:acquire()
      local a = nexus.spawn(function()
        local res = pack(nexus.select(xrx:recv_op(), sem:acquire_op()))
        return res, sem:held()
      end)
      local b = nexus.spawn(function() return sem:acquire(), sem:held() end)
      nexus.yield()                       -- a's op is first in line, then b
      sem:release()                       -- granted to a's op
      xtx:send("x")                       -- and a's recv op (first in order) is ready
      local ra, held_a = a:join()
      local rb, held_b = b:join()
      return { ra = ra, held_a = held_a, rb = rb, held_b = held_b, avail = sem:available() }
    end)
    assert.are.same({ n = 2, 1, "x" }, r.ra)
    assert.are.equal(0, r.held_a)
    assert.is_true(r.rb)
    assert.are.equal(1, r.held_b)
    assert.are.equal(1, r.avail)          -- b ended holding it: given back
  end)

  it("an acquire_op is reusable across selects and allocates nothing per select", function()
    local r = run(function()
      local sem = nexus.semaphore(1)
      local keep, idle = nexus.channel(1)
      local op, iop = sem:acquire_op(), idle:recv_op()
      local n = 0
      local function go(k)
        for _ = 1, k do
          local i = nexus.select(iop, op)
          if i == 2 then n = n + 1 end
          sem:release()
        end
      end
      go(2000)
      collectgarbage("collect")
      collectgarbage("stop")
      local before = collectgarbage("count")
      go(20000)
      local grew = collectgarbage("count") - before
      collectgarbage("restart")
      return { n = n, grew = grew, avail = sem:available() }
    end)
    assert.are.equal(22000, r.n)
    assert.are.equal(1, r.avail)
    assert.is_true(r.grew < 64, "grew by " .. r.grew .. " kB")
  end)

  it("a waiting acquire_op is served when a holder ends", function()
    local r = run(function()
      local sem = nexus.semaphore(1)
      local h = nexus.spawn(function()
        sem:acquire()
        nexus.sleep(10)
      end)
      nexus.yield()
      local w = nexus.spawn(function()
        local keep, idle = nexus.channel(1)
        return pack(nexus.select(idle:recv_op(), sem:acquire_op())), sem:held()
      end)
      nexus.yield()
      h:abort()
      local rw, held = w:join()
      return { rw = rw, held = held }
    end)
    assert.are.same({ rw = { n = 2, 2, true }, held = 1 }, r)
  end)

  it("a semaphore collected while a task holds permits leaves the task alone", function()
    local r = run(function()
      local h = nexus.spawn(function()
        local sem = nexus.semaphore(2)
        sem:acquire(2)
        sem = nil
        gc()
        nexus.yield()
        gc()
        return "ok"
      end)
      return h:join()
    end)
    assert.are.equal("ok", r)
  end)

  it("raises on bad input, naming the function", function()
    local r = run(function()
      local sem = nexus.semaphore(3)
      local e = {}
      e.neg = errof(nexus.semaphore, -1)
      e.frac = errof(nexus.semaphore, 1.5)
      e.str = errof(nexus.semaphore, "3")
      e.none = errof(nexus.semaphore)
      e.nan = errof(nexus.semaphore, 0 / 0)
      e.acq_neg = errof(sem.acquire, sem, -1)
      e.acq_frac = errof(sem.acquire, sem, 0.5)
      e.acq_str = errof(sem.acquire, sem, "1")
      e.acq_big = errof(sem.acquire, sem, 5)
      e.try_big = errof(sem.try_acquire, sem, 4)
      e.op_big = errof(sem.acquire_op, sem, 4)
      e.rel_neg = errof(sem.release, sem, -2)
      e.rel_more = errof(sem.release, sem, 1)
      sem:acquire(1)
      e.rel_more2 = errof(sem.release, sem, 2)
      e.add = errof(sem.add_permits, sem, "x")
      e.self = errof(sem.acquire, {}, 1)
      e.with = errof(sem.with, sem, 42)
      e.try_str = errof(sem.try_acquire, sem, "x")
      e.op_neg = errof(sem.acquire_op, sem, -1)
      e.add_neg = errof(sem.add_permits, sem, -1)
      e.rel_self = errof(sem.release, 42)
      return e
    end)
    assert.matches("^.-nexus%.semaphore: permits must be a non%-negative integer, got %-1", r.neg)
    assert.matches("nexus%.semaphore: permits must be a non%-negative integer, got 1%.5", r.frac)
    assert.matches("nexus%.semaphore: permits must be a non%-negative integer, got string", r.str)
    assert.matches("nexus%.semaphore: permits must be a non%-negative integer, got nil", r.none)
    assert.matches("nexus%.semaphore: permits must be", r.nan)
    assert.matches("sem:acquire: permits must be a non%-negative integer, got %-1", r.acq_neg)
    assert.matches("sem:acquire: permits must be a non%-negative integer, got 0%.5", r.acq_frac)
    assert.matches("sem:acquire: permits must be a non%-negative integer, got string", r.acq_str)
    assert.matches("sem:acquire: 5 permits asked of a semaphore of 3", r.acq_big)
    assert.matches("sem:try_acquire: 4 permits asked of a semaphore of 3", r.try_big)
    assert.matches("sem:acquire_op: 4 permits asked of a semaphore of 3", r.op_big)
    assert.matches("sem:release: permits must be a non%-negative integer, got %-2", r.rel_neg)
    assert.matches("sem:release: 1 permits released by a task that holds 0", r.rel_more)
    assert.matches("sem:release: 2 permits released by a task that holds 1", r.rel_more2)
    assert.matches("sem:add_permits: permits must be a non%-negative integer, got string", r.add)
    assert.matches("sem:acquire: expected a semaphore, got table", r.self)
    assert.matches("sem:with: expected a function, got number", r.with)
    assert.matches("sem:try_acquire: permits must be a non%-negative integer, got string", r.try_str)
    assert.matches("sem:acquire_op: permits must be a non%-negative integer, got %-1", r.op_neg)
    assert.matches("sem:add_permits: permits must be a non%-negative integer, got %-1", r.add_neg)
    assert.matches("sem:release: expected a semaphore, got number", r.rel_self)
  end)

  it("acquire outside a task raises", function()
    local sem = nexus.semaphore(1)
    assert.matches("sem:acquire: not inside a nexus task", errof(sem.acquire, sem))
    assert.matches("sem:release: not inside a nexus task", errof(sem.release, sem))
    assert.matches("sem:try_acquire: not inside a nexus task", errof(sem.try_acquire, sem))
    assert.matches("sem:held: not inside a nexus task", errof(sem.held, sem))
    assert.are.equal(1, sem:available())
  end)

  it("tostring", function()
    local sem = nexus.semaphore(2)
    assert.are.equal("nexus.semaphore(2/2 available)", tostring(sem))
  end)
end)

---------------------------------------------------------------- oneshot

describe("nexus.oneshot", function()
  it("delivers one value, keeping its identity, to a waiting receiver", function()
    local r = run(function()
      local tx, rx = nexus.oneshot()
      local v = {}
      local h = nexus.spawn(function() return rx:recv() end)
      nexus.yield()
      local sent = tx:send(v)
      return { same = h:join() == v, sent = sent, again = pack(rx:recv()) }
    end)
    assert.is_true(r.same)
    assert.is_true(r.sent)
    assert.are.same({ n = 2, nil, "closed" }, r.again)   -- received once
  end)

  it("a value sent before recv waits for it; try_recv", function()
    local r = run(function()
      local tx, rx = nexus.oneshot()
      local e = pack(rx:try_recv())
      tx:send(42)
      return { e = e, v = rx:try_recv(), after = pack(rx:try_recv()), closed = rx:is_closed() }
    end)
    assert.are.same({ n = 2, nil, "empty" }, r.e)
    assert.are.equal(42, r.v)
    assert.are.same({ n = 2, nil, "closed" }, r.after)
    assert.is_true(r.closed)
  end)

  it("tx:close or a sender collected without sending: nil, \"closed\"", function()
    local r = run(function()
      local tx, rx = nexus.oneshot()
      local h = nexus.spawn(function() return pack(rx:recv()) end)
      nexus.yield()
      tx:close()
      local a = h:join()
      local function make()               -- the sender lives only in here
        local tx2, rx2 = nexus.oneshot()
        return rx2
      end
      local rx2 = make()
      local h2 = nexus.spawn(function() return pack(rx2:recv()) end)
      nexus.yield()
      gc()
      return { a = a, b = h2:join() }
    end)
    assert.are.same({ n = 2, nil, "closed" }, r.a)
    assert.are.same({ n = 2, nil, "closed" }, r.b)
  end)

  it("a value sent and then the sender collected is still received", function()
    local r = run(function()
      local tx, rx = nexus.oneshot()
      tx:send("v")
      tx = nil
      gc()
      return rx:recv()
    end)
    assert.are.equal("v", r)
  end)

  it("rx:close or a receiver collected: the send returns nil, \"closed\"", function()
    local r = run(function()
      local tx, rx = nexus.oneshot()
      rx:close()
      local a = pack(tx:send(1))
      local closed = tx:is_closed()
      local function make()               -- the receiver lives only in here
        local tx2, rx2 = nexus.oneshot()
        return tx2
      end
      local tx2 = make()
      nexus.yield()
      gc()
      return { a = a, closed = closed, b = pack(tx2:send(2)), c2 = tx2:is_closed() }
    end)
    assert.are.same({ n = 2, nil, "closed" }, r.a)
    assert.is_true(r.closed)
    assert.are.same({ n = 2, nil, "closed" }, r.b)
    assert.is_true(r.c2)
  end)

  it("a value sent and never received is dropped with the receiver", function()
    local weak = setmetatable({}, { __mode = "v" })
    local keep
    run(function()
      local function make()
        local tx, rx = nexus.oneshot()
        local v = {}
        weak[1] = v
        tx:send(v)
        return tx
      end
      keep = make()
    end)
    gc()
    assert.is_nil(weak[1])
  end)

  it("a second send, or a send of nil, raises", function()
    local r = run(function()
      local tx, rx = nexus.oneshot()
      local e = {}
      e.nilv = errof(tx.send, tx, nil)
      tx:send(1)
      e.twice = errof(tx.send, tx, 2)
      local tx2 = nexus.oneshot()
      tx2:close()
      e.closed = errof(tx2.send, tx2, 1)
      e.self = errof(rx.recv, tx)
      e.try_self = errof(rx.try_recv, {})
      e.op_self = errof(rx.recv_op, tx)
      e.send_self = errof(tx.send, rx, 1)
      return e
    end)
    assert.matches("tx:send: cannot send nil", r.nilv)
    assert.matches("tx:send: this oneshot has sent its value already", r.twice)
    assert.matches("tx:send: this oneshot sender is closed", r.closed)
    assert.matches("rx:recv: expected a oneshot receiver, got table", r.self)
    assert.matches("rx:try_recv: expected a oneshot receiver, got table", r.try_self)
    assert.matches("rx:recv_op: expected a oneshot receiver, got table", r.op_self)
    assert.matches("tx:send: expected a oneshot sender, got table", r.send_self)
  end)

  it("a second task receiving at once raises", function()
    local r = run(function()
      local tx, rx = nexus.oneshot()
      local h = nexus.spawn(function() return rx:recv() end)
      nexus.yield()
      local e = errof(rx.recv, rx)
      tx:send("x")
      return { e = e, v = h:join() }
    end)
    assert.matches("rx:recv: another task is already receiving on this oneshot", r.e)
    assert.are.equal("x", r.v)
  end)

  it("a recv that times out or is aborted leaves the value for a later recv", function()
    local r = run(function()
      local tx, rx = nexus.oneshot()
      local t = pack(nexus.timeout(0.01, rx.recv, rx))
      local h = nexus.spawn(function() return rx:recv() end)
      nexus.yield()
      h:abort()
      tx:send("late")
      return { t = t, v = rx:recv() }
    end)
    assert.are.same({ n = 2, nil, "timeout" }, r.t)
    assert.are.equal("late", r.v)
  end)

  it("recv_op: wins with the value; a losing one takes nothing", function()
    local r = run(function()
      local tx, rx = nexus.oneshot()
      local op = rx:recv_op()
      local lost = pack(nexus.select(nexus.sleep_op(0), op))
      nexus.spawn(function() nexus.sleep(0.01); tx:send("v") end)
      local won = pack(nexus.select(nexus.sleep_op(1), op))
      local closed = pack(nexus.select(op))
      return { lost = lost, won = won, closed = closed }
    end)
    assert.are.same({ n = 2, 1, true }, r.lost)
    assert.are.same({ n = 2, 2, "v" }, r.won)
    assert.are.same({ n = 3, 1, nil, "closed" }, r.closed)
  end)

  it("recv outside a task raises", function()
    local tx, rx = nexus.oneshot()
    assert.matches("rx:recv: not inside a nexus task", errof(rx.recv, rx))
  end)
end)

---------------------------------------------------------------- watch

describe("nexus.watch", function()
  it("get returns the value and its version; set bumps it", function()
    local w = nexus.watch("a")
    local v, n = w:get()
    assert.are.same({ "a", 0 }, { v, n })
    assert.are.equal(1, w:set("b"))
    v, n = w:get()
    assert.are.same({ "b", 1 }, { v, n })
  end)

  it("changed waits for a newer version and wakes every watcher", function()
    local r = run(function()
      local w = nexus.watch(0)
      local hs = {}
      for i = 1, 3 do hs[i] = nexus.spawn(function() return pack(w:changed(0)) end) end
      nexus.yield()
      local t = {}
      w:set(10)
      for i = 1, 3 do t[i] = hs[i]:join() end
      t.now = pack(w:changed(0))          -- newer already: at once
      return t
    end)
    for i = 1, 3 do assert.are.same({ n = 2, 10, 1 }, r[i]) end
    assert.are.same({ n = 2, 10, 1 }, r.now)
  end)

  it("changed() with no version waits for the next set; a watcher sees the latest", function()
    local r = run(function()
      local w = nexus.watch("x")
      w:set("y")
      local h = nexus.spawn(function() return pack(w:changed()) end)
      nexus.yield()
      w:set("p")
      w:set("q")                           -- before h runs: it sees q, version 3
      return h:join()
    end)
    assert.are.same({ n = 2, "q", 3 }, r)
  end)

  it("a changed that times out or is aborted leaves no watcher behind", function()
    local r = run(function()
      local w = nexus.watch(1)
      local t = pack(nexus.timeout(0.01, w.changed, w, 0))
      local h = nexus.spawn(function() return w:changed(0) end)
      nexus.yield()
      h:abort()
      w:set(2)
      return { t = t, v = pack(w:changed(0)) }
    end)
    assert.are.same({ n = 2, nil, "timeout" }, r.t)
    assert.are.same({ n = 2, 2, 1 }, r.v)
  end)

  it("close: watchers get nil, \"closed\" after any newer value; set raises", function()
    local r = run(function()
      local w = nexus.watch(1)
      local h = nexus.spawn(function() return pack(w:changed()) end)
      nexus.yield()
      w:close()
      return { h = h:join(), newer = pack(w:changed(-1)), none = pack(w:changed()),
               e = errof(w.set, w, 2), closed = w:is_closed() }
    end)
    assert.are.same({ n = 2, nil, "closed" }, r.h)
    assert.are.same({ n = 2, 1, 0 }, r.newer)
    assert.are.same({ n = 2, nil, "closed" }, r.none)
    assert.matches("w:set: the watch is closed", r.e)
    assert.is_true(r.closed)
  end)

  it("changed_op: each win moves its seen version on; set_seen resets it", function()
    local r = run(function()
      local w = nexus.watch("v0")
      local op = w:changed_op()
      local seen = {}
      local h = nexus.spawn(function()
        for i = 1, 3 do
          nexus.sleep(0.005)
          w:set("v" .. i)
        end
      end)
      for _ = 1, 3 do
        local _, v, n = nexus.select(op, nexus.sleep_op(1))
        seen[#seen + 1] = v .. "@" .. n
      end
      h:join()
      local lost = nexus.select(op, nexus.sleep_op(0))   -- nothing newer than 3
      op:set_seen(1)
      local again = pack(nexus.select(op))
      return { seen = seen, lost = lost, again = again }
    end)
    assert.are.same({ "v1@1", "v2@2", "v3@3" }, r.seen)
    assert.are.equal(2, r.lost)
    assert.are.same({ n = 3, 1, "v3", 3 }, r.again)
  end)

  it("raises on bad input", function()
    local w = nexus.watch(1)
    assert.matches("nexus%.watch: the initial value cannot be nil", errof(nexus.watch))
    assert.matches("w:set: cannot set nil", errof(w.set, w, nil))
    assert.matches("w:changed: seen version must be a number, got string", errof(w.changed, w, "1"))
    assert.matches("w:changed: seen version must be a number, got NaN", errof(w.changed, w, 0 / 0))
    assert.matches("w:changed_op: seen version must be a number, got table", errof(w.changed_op, w, {}))
    assert.matches("w:get: expected a watch, got string", errof(w.get, "x"))
    assert.matches("w:changed: not inside a nexus task", errof(w.changed, w))
    local op = w:changed_op()
    assert.matches("op:set_seen: seen version must be a number, got string", errof(op.set_seen, op, "x"))
  end)
end)

---------------------------------------------------------------- broadcast

describe("nexus.broadcast", function()
  it("every subscriber sees every value in order; send returns the subscriber count", function()
    local r = run(function()
      local bc = nexus.broadcast(8)
      local none = bc:send("lost")         -- nobody subscribed: nobody sees it
      local s1, s2 = bc:subscribe(), bc:subscribe()
      local t = {}
      local function reader(s, k)
        return nexus.spawn(function()
          local got = {}
          for _ = 1, k do got[#got + 1] = s:recv() end
          return got
        end)
      end
      local h1, h2 = reader(s1, 3), reader(s2, 3)
      nexus.yield()
      t.counts = { bc:send(1), bc:send(2) }
      local late = bc:subscribe()         -- sees only what comes after
      t.counts[3] = bc:send(3)
      t.a, t.b = h1:join(), h2:join()
      t.late = pack(late:try_recv())
      t.late2 = pack(late:try_recv())
      t.none = none
      return t
    end)
    assert.are.equal(0, r.none)
    assert.are.same({ 2, 2, 3 }, r.counts)
    assert.are.same({ 1, 2, 3 }, r.a)
    assert.are.same({ 1, 2, 3 }, r.b)
    assert.are.same({ n = 1, 3 }, r.late)
    assert.are.same({ n = 2, nil, "empty" }, r.late2)
  end)

  it("a subscriber more than capacity behind gets lagged with the exact count", function()
    local r = run(function()
      local bc = nexus.broadcast(3)
      local s = bc:subscribe()
      for i = 1, 10 do bc:send(i) end
      local t = { len = s:len() }
      t[1] = pack(s:recv())
      for i = 2, 4 do t[i] = s:recv() end
      t.empty = pack(s:try_recv())
      for i = 11, 15 do bc:send(i) end
      t.again = pack(s:try_recv())
      t.next = s:try_recv()
      return t
    end)
    assert.are.equal(3, r.len)
    assert.are.same({ n = 3, nil, "lagged", 7 }, r[1])
    assert.are.same({ 8, 9, 10 }, { r[2], r[3], r[4] })
    assert.are.same({ n = 2, nil, "empty" }, r.empty)
    assert.are.same({ n = 3, nil, "lagged", 2 }, r.again)
    assert.are.equal(13, r.next)
  end)

  it("close: subscribers drain, then get nil, \"closed\"; waiters wake; sends fail", function()
    local r = run(function()
      local bc = nexus.broadcast(4)
      local s, w = bc:subscribe(), bc:subscribe()
      bc:send(1)
      bc:send(2)
      w:recv()
      w:recv()
      local h = nexus.spawn(function() return pack(w:recv()) end)
      nexus.yield()
      bc:close()
      return { h = h:join(), a = s:recv(), b = s:recv(), c = pack(s:recv()),
               send = pack(bc:send(3)), late = pack(bc:subscribe():recv()), closed = bc:is_closed() }
    end)
    assert.are.same({ n = 2, nil, "closed" }, r.h)
    assert.are.same({ 1, 2 }, { r.a, r.b })
    assert.are.same({ n = 2, nil, "closed" }, r.c)
    assert.are.same({ n = 2, nil, "closed" }, r.send)
    assert.are.same({ n = 2, nil, "closed" }, r.late)
    assert.is_true(r.closed)
  end)

  it("values are dropped once every subscriber has read them", function()
    local weak = setmetatable({}, { __mode = "v" })
    local r = run(function()
      local bc = nexus.broadcast(4)
      local a, b = bc:subscribe(), bc:subscribe()
      weak[1], weak[2] = {}, {}
      bc:send(weak[1])
      bc:send(weak[2])
      local x = a:recv()
      local y = b:recv()
      local same = x == y
      x, y = nil, nil
      gc()
      local first_gone = weak[1] == nil
      local second_kept = weak[2] ~= nil
      b:close()                             -- b leaves without reading the second
      a:recv()
      gc()
      return { same = same, first_gone = first_gone, second_kept = second_kept,
               second_gone = weak[2] == nil, keep = bc }
    end)
    assert.is_true(r.same)
    assert.is_true(r.first_gone)
    assert.is_true(r.second_kept)
    assert.is_true(r.second_gone)
  end)

  it("a subscriber collected no longer counts; a collected broadcast closes", function()
    local r = run(function()
      local function make()               -- bc and a second subscriber live only in here
        local bc = nexus.broadcast(2)
        local a = bc:subscribe()
        bc:subscribe()
        return a, bc
      end
      local a, bc = make()
      nexus.yield()
      gc()
      local n = bc:send("x")
      local h = nexus.spawn(function()
        local got = { a:recv() }
        got[2] = pack(a:recv())
        return got
      end)
      local function drop() bc = nil end
      drop()
      nexus.yield()
      gc()
      return { n = n, got = h:join() }
    end)
    assert.are.equal(1, r.n)
    assert.are.equal("x", r.got[1])
    assert.are.same({ n = 2, nil, "closed" }, r.got[2])
  end)

  it("a recv that times out or is aborted, or a second receiver", function()
    local r = run(function()
      local bc = nexus.broadcast(2)
      local s = bc:subscribe()
      local t = pack(nexus.timeout(0.01, s.recv, s))
      local h = nexus.spawn(function() return s:recv() end)
      nexus.yield()
      local e = errof(s.recv, s)
      h:abort()
      bc:send("v")
      return { t = t, e = e, v = s:recv() }
    end)
    assert.are.same({ n = 2, nil, "timeout" }, r.t)
    assert.matches("sub:recv: another task is already receiving on this subscriber", r.e)
    assert.are.equal("v", r.v)
  end)

  it("recv_op: a value, lagged, closed; a losing one takes nothing", function()
    local r = run(function()
      local bc = nexus.broadcast(1)
      local s = bc:subscribe()
      local op = s:recv_op()
      local t = {}
      t.lost = nexus.select(nexus.sleep_op(0), op)
      nexus.spawn(function() nexus.sleep(0.01); bc:send("a") end)
      t.a = pack(nexus.select(op))
      bc:send("b")
      bc:send("c")
      t.b = pack(nexus.select(nexus.sleep_op(0), op))   -- ready ops: first in order wins
      t.lag = pack(nexus.select(op, nexus.sleep_op(0)))
      t.c = pack(nexus.select(op))
      bc:close()
      t.closed = pack(nexus.select(op))
      return t
    end)
    assert.are.equal(1, r.lost)
    assert.are.same({ n = 2, 1, "a" }, r.a)
    assert.are.same({ n = 2, 1, true }, r.b)
    assert.are.same({ n = 4, 1, nil, "lagged", 1 }, r.lag)
    assert.are.same({ n = 2, 1, "c" }, r.c)
    assert.are.same({ n = 3, 1, nil, "closed" }, r.closed)
  end)

  it("raises on bad input", function()
    assert.matches("nexus%.broadcast: capacity must be a positive integer, got 0", errof(nexus.broadcast, 0))
    assert.matches("nexus%.broadcast: capacity must be a positive integer, got 1%.5", errof(nexus.broadcast, 1.5))
    assert.matches("nexus%.broadcast: capacity must be a positive integer, got nil", errof(nexus.broadcast))
    local bc = nexus.broadcast(1)
    assert.matches("bc:send: cannot send nil", errof(bc.send, bc, nil))
    assert.matches("bc:subscribe: expected a broadcast, got nil", errof(bc.subscribe))
    local s = bc:subscribe()
    assert.matches("sub:recv: not inside a nexus task", errof(s.recv, s))
    assert.matches("sub:recv_op: expected a broadcast subscriber, got table", errof(s.recv_op, bc))
    assert.matches("nexus%.broadcast: capacity must be a positive integer, got 2147483648",
      errof(nexus.broadcast, 2 ^ 31))
  end)
end)

---------------------------------------------------------------- event

describe("nexus.event", function()
  it("wait returns at once when set, else waits; every waiter wakes", function()
    local r = run(function()
      local ev = nexus.event()
      local t = { set0 = ev:is_set() }
      local hs = {}
      for i = 1, 3 do hs[i] = nexus.spawn(function() return ev:wait() end) end
      nexus.yield()
      ev:set()
      for i = 1, 3 do t[i] = hs[i]:join() end
      t.now = ev:wait()
      t.set1 = ev:is_set()
      ev:clear()
      t.set2 = ev:is_set()
      return t
    end)
    assert.are.same({ set0 = false, true, true, true, now = true, set1 = true, set2 = false }, r)
  end)

  it("a set cleared before the waiters run still releases them", function()
    local r = run(function()
      local ev = nexus.event()
      local h = nexus.spawn(function() return ev:wait() end)
      nexus.yield()
      ev:set()
      ev:clear()
      return h:join()
    end)
    assert.is_true(r)
  end)

  it("a wait that times out or is aborted leaves no waiter behind", function()
    local r = run(function()
      local ev = nexus.event()
      local t = pack(nexus.timeout(0.01, ev.wait, ev))
      local h = nexus.spawn(function() return ev:wait() end)
      nexus.yield()
      h:abort()
      ev:set()
      return { t = t, v = ev:wait() }
    end)
    assert.are.same({ n = 2, nil, "timeout" }, r.t)
    assert.is_true(r.v)
  end)

  it("wait_op", function()
    local r = run(function()
      local ev = nexus.event()
      local op = ev:wait_op()
      local lost = nexus.select(nexus.sleep_op(0), op)
      nexus.spawn(function() nexus.sleep(0.01); ev:set(); ev:clear() end)
      local won = pack(nexus.select(nexus.sleep_op(1), op))
      return { lost = lost, won = won }
    end)
    assert.are.equal(1, r.lost)
    assert.are.same({ n = 2, 2, true }, r.won)
  end)

  it("raises on bad input", function()
    local ev = nexus.event()
    assert.matches("ev:set: expected an? event, got nil", errof(ev.set))
    assert.matches("ev:wait: not inside a nexus task", errof(ev.wait, ev))
    assert.matches("ev:wait_op: expected an event, got table", errof(ev.wait_op, {}))
  end)
end)

---------------------------------------------------------------- all of them

describe("nexus.sync waits", function()
  it("are named in nexus.tasks()", function()
    local r = run(function()
      local sem = nexus.semaphore(1)
      sem:acquire()
      local tx, rx = nexus.oneshot()
      local w = nexus.watch(1)
      local bc = nexus.broadcast(1)
      local sub = bc:subscribe()
      local ev = nexus.event()
      local hs = {
        nexus.spawn(function() sem:acquire() end),
        nexus.spawn(function() rx:recv() end),
        nexus.spawn(function() w:changed() end),
        nexus.spawn(function() sub:recv() end),
        nexus.spawn(function() ev:wait() end),
      }
      nexus.yield()
      local by_id = {}
      for _, t in ipairs(nexus.tasks()) do by_id[t.id] = t.wait end
      local waits = {}
      for i, h in ipairs(hs) do
        waits[i] = by_id[h:id()]
        h:abort()
      end
      return { waits = waits, keep = { tx } }
    end)
    assert.are.same({ "semaphore acquire", "oneshot recv", "watch changed", "broadcast recv", "event wait" },
      r.waits)
  end)

  it("select ops are reusable and allocate nothing per select", function()
    local r = run(function()
      local bc = nexus.broadcast(4)
      local sub = bc:subscribe()
      local w = nexus.watch(0)
      local ev = nexus.event()
      ev:set()
      local sop, wop, eop = sub:recv_op(), w:changed_op(), ev:wait_op()
      local sum = 0
      local function go(n)
        for i = 1, n do
          bc:send(i)
          local _, v = nexus.select(sop)
          w:set(i)
          local _, x = nexus.select(wop)
          local k = nexus.select(eop)
          sum = sum + v + x + k
        end
      end
      go(2000)
      collectgarbage("collect")
      collectgarbage("stop")
      local before = collectgarbage("count")
      go(20000)
      local grew = collectgarbage("count") - before
      collectgarbage("restart")
      return { sum = sum, grew = grew }
    end)
    assert.are.equal(2 * (2000 * 2001 / 2 + 20000 * 20001 / 2) + 22000, r.sum)
    assert.is_true(r.grew < 64, "grew by " .. r.grew .. " kB")
  end)

  it("spend the cooperative budget when they complete at once", function()
    local r = run(function()
      local sem = nexus.semaphore(1)
      local ev = nexus.event()
      ev:set()
      local other = 0
      local b = nexus.spawn(function() other = other + 1 end)
      local seen
      for i = 1, 1000 do
        sem:acquire()
        sem:release()
        ev:wait()
        if other > 0 and not seen then seen = i end
      end
      b:join()
      return seen
    end)
    assert.is_truthy(r)
    assert.is_true(r < 1000, "the other task ran only after the loop")
  end)

  it("stress: random acquires, releases, time-outs, selects, aborts and ends keep the count exact", function()
    local r = run(function()
      math.randomseed(7)
      local random = math.random
      local TOTAL = 6
      local sem = nexus.semaphore(TOTAL)
      local g = nexus.group()
      local held = {}            -- task handle -> permits it believes it holds
      local worst = 0
      local errors = 0
      local function check()
        local sum = 0
        for h, n in pairs(held) do
          if not h:is_finished() then sum = sum + n end
        end
        if sum > TOTAL then worst = math.huge end
        if sum + sem:available() > TOTAL then worst = math.max(worst, sum + sem:available()) end
      end
      local function worker(id)
        local keep, idle = nexus.channel(1)   -- one receiver per channel: one each
        local me = nexus.current()
        held[me] = 0
        local acq_op = sem:acquire_op(1)
        for _ = 1, 40 do
          local n = random(1, 3)
          local mode = random(1, 5)
          local ok
          if mode == 1 then
            ok = sem:acquire(n)
          elseif mode == 2 then
            ok = nexus.timeout(random() * 0.002, sem.acquire, sem, n)
          elseif mode == 3 then
            ok = sem:try_acquire(n)
          elseif mode == 4 then
            n = 1
            ok = nexus.select(idle:recv_op(), acq_op, nexus.sleep_op(random() * 0.002)) == 2
          else
            ok = nexus.select(sem:acquire_op(n), nexus.sleep_op(0)) == 1
          end
          if ok then
            held[me] = held[me] + n
            if sem:held() ~= held[me] then worst = -1 end
            check()
            local k = random(1, 60)
            if k <= 3 then nexus.yield() elseif k == 4 then nexus.sleep(random() * 0.001) end
            if k == 5 then held[me] = nil; return "ended holding" end
            if k == 6 then held[me] = nil; error("boom " .. id) end
            sem:release(n)
            held[me] = held[me] - n
          end
          if random(1, 4) == 1 then nexus.yield() end
        end
        held[me] = nil
      end
      local hs = {}
      for id = 1, 60 do hs[id] = g:spawn(worker, id) end
      local aborted = 0
      for _ = 1, 30 do                    -- abort members at random moments
        if random(1, 2) == 1 then nexus.yield() else nexus.sleep(random() * 0.0005) end
        if hs[random(1, 60)]:abort() then aborted = aborted + 1 end
        check()
      end
      local ended = 0
      while true do
        local h, ok = g:next()
        if not h then break end
        ended = ended + 1
        if not ok then errors = errors + 1 end
      end
      return { avail = sem:available(), worst = worst, ended = ended, errors = errors, aborted = aborted }
    end)
    assert.is_true(r.aborted > 0)
    assert.are.equal(6, r.avail)
    assert.are.equal(0, r.worst)
    assert.are.equal(60, r.ended)
    assert.is_true(r.errors > 0)
  end)
end)

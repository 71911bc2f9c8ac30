-- TCP ops for nexus.select: s:read_op, s:read_line_op, s:read_until_op,
-- s:read_exactly_op and ln:accept_op. Each wins when its data (or
-- connection) is there, loses with no effect (the bytes stay buffered,
-- the connection waits for the next accept), waits for a peer, registers
-- as the stream's one reader while it waits and leaves no reader behind,
-- is woken by close(), is withdrawn by abort and nexus.timeout, ignores
-- the stream's read time-out, is reusable without allocation, and checks
-- its arguments when it is made.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(dir .. "helpers.lua")
local N = dofile(dir .. "net_helpers.lua")
local nexus = require "nexus"
local pair, pack, LATE = N.pair, H.pack, H.LATE
local run = nexus.run

-- Sends data from c to s and waits until s holds all of it unread. A
-- stream reads from its socket only from its first read on: a marker
-- byte read here starts it.
local function deliver(c, s, data)
  c:write("#" .. data)
  assert(s:read_exactly(1) == "#")
  local t0 = nexus.now()
  while s:buffered() < #data do
    assert(nexus.now() - t0 < 5, "data did not arrive")
    nexus.sleep(0.001)
  end
end

-- Closes whatever it is given.
local function close(...)
  for i = 1, select("#", ...) do
    local x = select(i, ...)
    if x then x:close() end
  end
end

describe("tcp select ops", function()
  describe("win when the data is buffered", function()
    it("read_op, read_line_op, read_until_op, read_exactly_op give what the calls give", function()
      local r = run(function()
        local c, s, ln = pair()
        deliver(c, s, "line one\r\nabc|defgh0123456789rest")
        local never = nexus.sleep_op(5)
        local r = {
          line = pack(nexus.select(s:read_line_op(), never)),
          upto = pack(nexus.select(never, s:read_until_op("|"))),
          exact = pack(nexus.select(s:read_exactly_op(5), never)),
          zero = pack(nexus.select(s:read_exactly_op(0))),
          some = pack(nexus.select(s:read_op(4), never)),
          all = pack(nexus.select(s:read_op(), never)),
        }
        close(c, s, ln)
        return r
      end)
      assert.are.same({ n = 2, 1, "line one" }, r.line)
      assert.are.same({ n = 2, 2, "abc" }, r.upto)
      assert.are.same({ n = 2, 1, "defgh" }, r.exact)
      assert.are.same({ n = 2, 1, "" }, r.zero)
      assert.are.same({ n = 2, 1, "0123" }, r.some)
      assert.are.same({ n = 2, 1, "456789rest" }, r.all)
    end)

    it("a buffered read op first in argument order beats a ready channel", function()
      local r = run(function()
        local c, s, ln = pair()
        local tx, rx = nexus.channel(1)
        tx:send("v")
        deliver(c, s, "data")
        local r = { a = pack(nexus.select(s:read_op(), rx:recv_op())), v = rx:try_recv() }
        close(c, s, ln)
        return r
      end)
      assert.are.same({ n = 2, 1, "data" }, r.a)
      assert.are.equal("v", r.v)
    end)

    it("end of stream and errors: nil, \"eof\" | nil, \"eof\", partial | nil, \"too long\"", function()
      local r = run(function()
        local c, s, ln = pair()
        deliver(c, s, ("x"):rep(20) .. "\npart")
        c:shutdown()
        local r = {}
        r.long = pack(nexus.select(s:read_line_op(10)))          -- stays buffered
        r.line = pack(nexus.select(s:read_line_op(), nexus.sleep_op(5)))
        r.exact = pack(nexus.select(s:read_exactly_op(10), nexus.sleep_op(5)))
        r.eof = pack(nexus.select(s:read_op(), nexus.sleep_op(5)))
        r.eof_line = pack(nexus.select(s:read_line_op(), nexus.sleep_op(5)))
        close(c, s, ln)
        return r
      end)
      assert.are.same({ n = 3, 1, nil, "too long" }, r.long)
      assert.are.same({ n = 2, 1, ("x"):rep(20) }, r.line)
      assert.are.same({ n = 4, 1, nil, "eof", "part" }, r.exact)
      assert.are.same({ n = 3, 1, nil, "eof" }, r.eof)
      assert.are.same({ n = 4, 1, nil, "eof", "" }, r.eof_line)
    end)
  end)

  describe("lose with no effect", function()
    it("a read op that loses to an earlier ready op leaves its bytes for a plain read", function()
      local r = run(function()
        local c, s, ln = pair()
        deliver(c, s, "keep\nme")
        local now = nexus.sleep_op(0)
        local r = {
          i1 = nexus.select(now, s:read_line_op()),
          i2 = nexus.select(now, s:read_op()),
          i3 = nexus.select(now, s:read_until_op("m")),
          i4 = nexus.select(now, s:read_exactly_op(7)),
          -- not enough for it: registers, then loses to the sleep
          i5 = nexus.select(s:read_exactly_op(100), nexus.sleep_op(0.01)),
          i6 = nexus.select(s:read_until_op("zz"), nexus.sleep_op(0.01)),
        }
        r.all = s:read_exactly(7)
        close(c, s, ln)
        return r
      end)
      assert.are.same({ 1, 1, 1, 1, 2, 2 }, { r.i1, r.i2, r.i3, r.i4, r.i5, r.i6 })
      assert.are.equal("keep\nme", r.all)
    end)

    it("a waiting read op that loses to a token leaves the data that comes later", function()
      local r = run(function()
        local c, s, ln = pair()
        local tok = nexus.cancel_token()
        local h = nexus.spawn(function()
          return pack(nexus.select(tok:cancelled_op(), s:read_line_op()))
        end)
        nexus.yield()                           -- h waits, its read registered
        c:write("after\n")
        tok:cancel()
        local a = h:join()
        return { a = a, line = s:read_line(), close(c, s, ln) }
      end)
      assert.are.equal(1, r.a[1])
      assert.are.equal("after", r.line)
    end)

    it("a losing accept leaves the connection for the next accept", function()
      local r = run(function()
        local ln = assert(nexus.tcp.listen("127.0.0.1", 0))
        local _, _, port = ln:local_addr()
        local c = assert(nexus.tcp.connect("127.0.0.1", port))
        nexus.sleep(0.02)                       -- the connection is pending
        local tok = nexus.cancel_token()
        tok:cancel()
        local i = nexus.select(tok:cancelled_op(), ln:accept_op())
        local s, peer = ln:accept()
        local r = { i = i, ok = s ~= nil, peer = peer, c_local = c:local_addr() }
        close(c, s, ln)
        return r
      end)
      assert.are.equal(1, r.i)
      assert.is_true(r.ok)
      assert.are.equal(r.c_local, r.peer)
    end)
  end)

  describe("wait for a peer", function()
    it("each read op waits for its record, arriving in pieces", function()
      local r = run(function()
        local c, s, ln = pair()
        nexus.spawn(function()
          for _, piece in ipairs({ "he", "llo\r", "\nab", "c;12", "345", "tail" }) do
            nexus.sleep(0.005)
            c:write(piece)
          end
        end)
        local never = nexus.sleep_op(5)
        local r = {
          line = pack(nexus.select(never, s:read_line_op())),
          upto = pack(nexus.select(s:read_until_op(";"), never)),
          exact = pack(nexus.select(s:read_exactly_op(5), never)),
          any = pack(nexus.select(s:read_op(), never)),
        }
        close(c, s, ln)
        return r
      end)
      assert.are.same({ n = 2, 2, "hello" }, r.line)
      assert.are.same({ n = 2, 1, "abc" }, r.upto)
      assert.are.same({ n = 2, 1, "12345" }, r.exact)
      assert.are.same({ n = 2, 1, "tail" }, r.any)
    end)

    it("accept_op waits for a connection and gives stream, peer", function()
      local r = run(function()
        local ln = assert(nexus.tcp.listen("127.0.0.1", 0))
        local _, _, port = ln:local_addr()
        local h = nexus.spawn(function()
          nexus.sleep(0.01)
          local c = assert(nexus.tcp.connect("127.0.0.1", port))
          c:write("hi\n")
          return c
        end)
        local i, s, peer = nexus.select(nexus.sleep_op(5), ln:accept_op())
        local c = h:join()
        local r = { i = i, peer = peer, c_local = c:local_addr(), line = s:read_line() }
        close(c, s, ln)
        return r
      end)
      assert.are.equal(2, r.i)
      assert.are.equal(r.c_local, r.peer)
      assert.are.equal("hi", r.line)
    end)

    it("a select of read_line_op and sleep_op is an idle time-out in a loop", function()
      local r = run(function()
        local c, s, ln = pair()
        nexus.spawn(function()
          for i = 1, 5 do
            nexus.sleep(0.01)
            c:write("line " .. i .. "\n")
          end                                   -- then silence
        end)
        local lines, idle = {}, false
        local rl, quiet = s:read_line_op(), nexus.sleep_op(0.1)
        local t0
        while true do
          local i, line, err = nexus.select(rl, quiet)
          if i == 2 then
            idle = nexus.now() - t0
            break
          end
          assert(line, err)
          lines[#lines + 1] = line
          t0 = nexus.now()
        end
        close(c, s, ln)
        return { lines = lines, idle = idle }
      end)
      assert.are.same({ "line 1", "line 2", "line 3", "line 4", "line 5" }, r.lines)
      assert.is_true(r.idle >= 0.1 - 1e-3 and r.idle < 0.1 + LATE, "idle " .. r.idle)
    end)

    it("a session's read is cancellable by a token without a watcher task (chat-server pattern)", function()
      local r = run(function()
        local c, s, ln = pair()
        local stop = nexus.cancel_token()
        local session = nexus.spawn(function()
          local got = {}
          local rl, cancelled = s:read_line_op(), stop:cancelled_op()
          while true do
            local i, line, err = nexus.select(cancelled, rl)
            if i == 1 then return got, "stopped" end
            if not line then return got, err end
            got[#got + 1] = line
          end
        end)
        c:write("a\nb\n")
        nexus.sleep(0.02)
        stop:cancel()
        local got, why = session:join()
        c:write("c\n")                          -- nobody reads now: it stays
        local r = { got = got, why = why, left = s:read_line() }
        close(c, s, ln)
        return r
      end)
      assert.are.same({ "a", "b" }, r.got)
      assert.are.equal("stopped", r.why)
      assert.are.equal("c", r.left)
    end)

    it("an accept loop ends on a cancel op without a watcher task", function()
      local r = run(function()
        local ln = assert(nexus.tcp.listen("127.0.0.1", 0))
        local _, _, port = ln:local_addr()
        local stop = nexus.cancel_token()
        local server = nexus.spawn(function()
          local n = 0
          local acc, cancelled = ln:accept_op(), stop:cancelled_op()
          while true do
            local i, s = nexus.select(acc, cancelled)
            if i == 2 then return n end
            n = n + 1
            s:write("welcome\n")
            s:close()
          end
        end)
        local lines = {}
        for k = 1, 3 do
          local c = assert(nexus.tcp.connect("127.0.0.1", port))
          lines[k] = c:read_line()
          c:close()
        end
        stop:cancel()
        local n = server:join()
        -- the listener is free for a plain accept again
        local h = nexus.spawn(function() return ln:accept() end)
        local c = assert(nexus.tcp.connect("127.0.0.1", port))
        local s = h:join()
        close(c, s, ln)
        return { n = n, lines = lines, again = s ~= nil }
      end)
      assert.are.equal(3, r.n)
      assert.are.same({ "welcome", "welcome", "welcome" }, r.lines)
      assert.is_true(r.again)
    end)
  end)

  describe("the stream's reader", function()
    it("a waiting read op is the stream's reader; no reader is left once the select ends", function()
      local r = run(function()
        local c, s, ln = pair()
        local op = s:read_line_op()
        local h = nexus.spawn(function() return nexus.select(op, nexus.sleep_op(0.03)) end)
        nexus.yield()
        local ok, err = pcall(s.read, s)        -- while h waits
        local r = { ok = ok, err = err, lost = h:join() }
        -- lost: a plain read may wait now
        local g = nexus.spawn(function() return s:read_line() end)
        nexus.yield()
        c:write("one\n")
        r.plain = g:join()
        -- won: the same
        h = nexus.spawn(function() return nexus.select(op, nexus.sleep_op(5)) end)
        nexus.yield()
        c:write("two\n")
        r.won = pack(h:join())
        g = nexus.spawn(function() return s:read_line() end)
        nexus.yield()
        c:write("three\n")
        r.plain2 = g:join()
        close(c, s, ln)
        return r
      end)
      assert.is_false(r.ok)
      assert.matches("stream:read: another task is already reading", r.err)
      assert.are.equal(2, r.lost)
      assert.are.equal("one", r.plain)
      assert.are.same({ n = 2, 1, "two" }, r.won)
      assert.are.equal("three", r.plain2)
    end)

    it("a read op on a stream another task reads makes the select raise, naming the op", function()
      local r = run(function()
        local c, s, ln = pair()
        local h = nexus.spawn(function() return s:read() end)
        nexus.yield()
        local ok, err = pcall(nexus.select, nexus.sleep_op(1), s:read_op())
        local ok2, err2 = pcall(nexus.select, s:read_line_op(), nexus.sleep_op(1))
        c:write("x")
        local r = { ok = ok, err = err, ok2 = ok2, err2 = err2, h = h:join() }
        -- two read ops on one stream in one select: the second is a second reader
        local ok3, err3 = pcall(nexus.select, s:read_op(), s:read_line_op())
        r.ok3, r.err3 = ok3, err3
        close(c, s, ln)
        return r
      end)
      assert.is_false(r.ok)
      assert.matches("nexus.select: op 2 %(tcp read%): stream:read_op: another task is already reading", r.err)
      assert.is_false(r.ok2)
      assert.matches("nexus.select: op 1 %(tcp read_line%): stream:read_line_op: another task is already reading", r.err2)
      assert.are.equal("x", r.h)
      assert.is_false(r.ok3)
      assert.matches("op 2 %(tcp read_line%): stream:read_line_op: another task is already reading", r.err3)
    end)

    it("close() while a select waits on a read op gives nil, \"closed\"", function()
      local r = run(function()
        local c, s, ln = pair()
        local out = {}
        for k, mk in ipairs({
          function() return s:read_op() end,
          function() return s:read_line_op() end,
          function() return s:read_until_op("--") end,
          function() return s:read_exactly_op(3) end,
        }) do
          local cc, ss, l2 = pair()
          local op
          s, c, ln = ss, cc, l2
          op = mk()
          local h = nexus.spawn(function() return pack(nexus.select(nexus.sleep_op(5), op)) end)
          nexus.yield()
          ss:close()
          out[k] = h:join()
          close(cc, l2)
        end
        -- a closed listener wakes a waiting accept op the same way
        local l3 = assert(nexus.tcp.listen("127.0.0.1", 0))
        local h = nexus.spawn(function() return pack(nexus.select(l3:accept_op(), nexus.sleep_op(5))) end)
        nexus.yield()
        l3:close()
        out[5] = h:join()
        return out
      end)
      for k = 1, 4 do assert.are.same({ n = 3, 2, nil, "closed" }, r[k], "op " .. k) end
      assert.are.same({ n = 3, 1, nil, "closed" }, r[5])
    end)

    it("an aborted selecting task withdraws its read and accept ops", function()
      local r = run(function()
        local c, s, ln = pair()
        local h = nexus.spawn(function()
          nexus.select(s:read_line_op(), ln:accept_op(), nexus.sleep_op(10))
        end)
        nexus.yield()
        h:abort()
        local _, _, port = ln:local_addr()
        local g = nexus.spawn(function() return s:read_line() end)   -- no "already reading"
        local a = nexus.spawn(function() return ln:accept() end)     -- no "already accepting"
        nexus.yield()
        c:write("after abort\n")
        local c2 = assert(nexus.tcp.connect("127.0.0.1", port))
        local s2 = a:join()
        local r = { line = g:join(), accepted = s2 ~= nil }
        close(c, s, c2, s2, ln)
        return r
      end)
      assert.are.equal("after abort", r.line)
      assert.is_true(r.accepted)
    end)

    it("nexus.timeout around a select withdraws the read; the bytes stay", function()
      local r = run(function()
        local c, s, ln = pair()
        local op = s:read_exactly_op(6)
        c:write("abc")
        local t = pack(nexus.timeout(0.02, nexus.select, op))
        local g = nexus.spawn(function() return s:read_exactly(6) end)   -- no "already reading"
        nexus.yield()
        c:write("def")
        local r = { t = t, plain = g:join() }
        c:write("ghijkl")
        r.again = pack(nexus.select(op))
        close(c, s, ln)
        return r
      end)
      assert.are.same({ n = 2, nil, "timeout" }, r.t)
      assert.are.equal("abcdef", r.plain)
      assert.are.same({ n = 2, 1, "ghijkl" }, r.again)
    end)

    it("the stream's read time-out does not apply to ops (the select's sleep_op is the time-out)", function()
      local r = run(function()
        local c, s, ln = pair()
        s:set_timeouts({ read = 0.01 })
        local t0 = nexus.now()
        local i = nexus.select(s:read_line_op(), nexus.sleep_op(0.05))
        local dt = nexus.now() - t0
        nexus.spawn(function()
          nexus.sleep(0.03)
          c:write("late\n")
        end)
        local r = { i = i, dt = dt, late = pack(nexus.select(s:read_line_op())),
                    plain = pack(s:read_line()) }
        close(c, s, ln)
        return r
      end)
      assert.are.equal(2, r.i)
      assert.is_true(r.dt >= 0.05 - 1e-3, "dt " .. r.dt)
      assert.are.same({ n = 2, 1, "late" }, r.late)
      assert.are.same({ n = 3, nil, "timeout", "" }, r.plain)   -- plain reads still time out
    end)

    it("accept_op applies the listener's and its own stream time-outs", function()
      local r = run(function()
        local ln = assert(nexus.tcp.listen("127.0.0.1", 0, { read_timeout = 3 }))
        local _, _, port = ln:local_addr()
        local cs = {}
        nexus.spawn(function()
          for k = 1, 2 do cs[k] = assert(nexus.tcp.connect("127.0.0.1", port)) end
        end)
        local _, s1 = nexus.select(ln:accept_op())
        local _, s2 = nexus.select(ln:accept_op({ write_timeout = 2, read_timeout = false }))
        local r = { pack(s1:timeouts()), pack(s2:timeouts()) }
        close(s1, s2, cs[1], cs[2], ln)
        return r
      end)
      assert.are.same({ n = 2, 3, nil }, r[1])
      assert.are.same({ n = 2, nil, 2 }, r[2])
    end)
  end)

  describe("reuse", function()
    it("ops are reused across selects: buffered reads allocate nothing but their strings", function()
      local r = run(function()
        local c, s, ln = pair()
        local n = 20000
        deliver(c, s, ("x"):rep(n) .. ("y\n"):rep(n))
        local keep_idle, idle = nexus.channel(1)   -- the sender kept: collected, it would close the channel
        local rd, rl, quiet = s:read_op(1), s:read_line_op(), idle:recv_op()
        local function go(op, k)
          local got = 0
          for _ = 1, k do
            local i, v = nexus.select(quiet, op)
            if i == 2 and #v == 1 then got = got + 1 end
          end
          return got
        end
        -- n - 2000 selects, after 2000 to warm up (JIT, tables); kB grown
        local function measure(op)
          local got = go(op, 2000)
          collectgarbage("collect")
          collectgarbage("stop")
          local before = collectgarbage("count")
          got = got + go(op, n - 2000)
          local grew = collectgarbage("count") - before
          collectgarbage("restart")
          return got, grew
        end
        local got1, grew1 = measure(rd)          -- the x's, one byte each
        local got2, grew2 = measure(rl)          -- the "y" lines
        close(c, s, ln)
        return { got = got1 + got2, grew1 = grew1, grew2 = grew2 }
      end)
      assert.are.equal(40000, r.got)
      assert.is_true(r.grew1 < 64, "read_op: grew by " .. r.grew1 .. " kB")
      assert.is_true(r.grew2 < 64, "read_line_op: grew by " .. r.grew2 .. " kB")
    end)
  end)

  describe("bad input", function()
    it("raises when the op is made, naming the function", function()
      run(function()
        local c, s, ln = pair()
        local function err(pat, fn, ...)
          local ok, e = pcall(fn, ...)
          assert.is_false(ok)
          assert.matches(pat, e, 1, true)
        end
        err("stream:read_op: max must be a positive integer, got 0", s.read_op, s, 0)
        err("stream:read_op: max must be a positive integer, got 1.5", s.read_op, s, 1.5)
        err("stream:read_op: max must be a positive integer, got string", s.read_op, s, "8")
        err("stream:read_op: max must be a positive integer, got nan", s.read_op, s, 0 / 0)
        err("stream:read_op: expected a tcp stream, got table", s.read_op, {})
        err("stream:read_line_op: max must be a positive integer, got -1", s.read_line_op, s, -1)
        err("stream:read_line_op: expected a tcp stream, got number", s.read_line_op, 1)
        err("stream:read_until_op: delimiter must be a string, got nil", s.read_until_op, s)
        err("stream:read_until_op: empty delimiter", s.read_until_op, s, "")
        err("stream:read_until_op: max must be a positive integer, got 0", s.read_until_op, s, ";", 0)
        err("stream:read_exactly_op: n must be an integer, got nil", s.read_exactly_op, s)
        err("stream:read_exactly_op: n must be a non-negative integer, got -2", s.read_exactly_op, s, -2)
        err("stream:read_exactly_op: n must be a non-negative integer, got 2.5", s.read_exactly_op, s, 2.5)
        err("listener:accept_op: expected a tcp listener, got userdata", ln.accept_op, s)
        err("listener:accept_op: unknown option 'backlog'", ln.accept_op, ln, { backlog = 1 })
        err("listener:accept_op: options must be a table, got number", ln.accept_op, ln, 5)
        -- the error is the caller's (level): the message starts with this file
        local ok, e = pcall(function()
          local op = s:read_op(0)
          return op
        end)
        assert.is_false(ok)
        assert.matches("tcp_select_spec.lua:%d+: stream:read_op", e)
        close(c, s, ln)
      end)
    end)

    it("ops print as nexus.op(what)", function()
      run(function()
        local c, s, ln = pair()
        assert.are.equal("nexus.op(tcp read)", tostring(s:read_op()))
        assert.are.equal("nexus.op(tcp read_line)", tostring(s:read_line_op()))
        assert.are.equal("nexus.op(tcp read_until)", tostring(s:read_until_op("x")))
        assert.are.equal("nexus.op(tcp read_exactly)", tostring(s:read_exactly_op(1)))
        assert.are.equal("nexus.op(tcp accept)", tostring(ln:accept_op()))
        close(c, s, ln)
      end)
    end)
  end)
end)

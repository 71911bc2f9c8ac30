-- TCP stream time-outs: s:set_timeouts{ read =, write = }, the
-- read_timeout/write_timeout options of connect, listen and accept.
-- A read or write that waits longer than its time-out (counted from the
-- start of the call) returns nil, "timeout" (read_exactly, read_until,
-- read_line: nil, "timeout", partial, the partial not consumed); the
-- stream stays usable. Also: nesting inside nexus.timeout, aborts, errors
-- raised while a time-out level is pushed, bad input.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(dir .. "helpers.lua")
local N = dofile(dir .. "net_helpers.lua")
local nexus = require "nexus"
local pair, pack = N.pair, H.pack

-- Runs fn(rt) as the root task of a runtime of its own (for rt:stats()).
local function run(fn, rt)
  rt = rt or nexus.runtime.new()
  local r = H.pack(rt:block_on(fn, rt))
  rt:close()
  return unpack(r, 1, r.n)
end

-- Times fn(...): elapsed seconds, then fn's results packed.
local function timed(fn, ...)
  local t0 = nexus.now()
  local r = pack(fn(...))
  return nexus.now() - t0, r
end

-- "took at least lo and under hi seconds"
local function took(dt, lo, hi)
  assert(dt >= lo and dt < hi, ("took %.3f s, expected [%g, %g)"):format(dt, lo, hi))
end

describe("tcp stream time-outs", function()
  describe("reads", function()
    it("a read with nothing sent returns nil, 'timeout' after the read time-out; the stream stays usable", function()
      local r = run(function(rt)
        local c, s, ln = pair()
        assert.are.equal(s, s:set_timeouts { read = 0.05 })
        local r = {}
        r.dt, r.read = timed(s.read, s)
        r.timers = rt:stats().timers        -- the call's deadline level is gone
        c:write("late")
        r.after = s:read()
        r.timers2 = rt:stats().timers
        c:close(); s:close(); ln:close()
        return r
      end)
      took(r.dt, 0.04, 2)
      assert.are.same({ n = 2, nil, "timeout" }, r.read)
      assert.are.equal(0, r.timers)
      assert.are.equal("late", r.after)
      assert.are.equal(0, r.timers2)
    end)

    it("read_line keeps a partial line buffered: the time-out reports it, the next read_line returns the whole line", function()
      local r = run(function()
        local c, s, ln = pair()
        s:set_timeouts { read = 0.05 }
        c:write("half a ")
        local r = {}
        r.dt, r.first = timed(s.read_line, s)
        r.buffered = s:buffered()
        c:write("line\r\nnext")
        r.line = pack(s:read_line())
        r.second = pack(s:read_line())      -- "next" has no newline: partial again
        c:write("\n")
        r.next = s:read_line()
        c:close(); s:close(); ln:close()
        return r
      end)
      took(r.dt, 0.04, 2)
      assert.are.same({ n = 3, nil, "timeout", "half a " }, r.first)
      assert.are.equal(7, r.buffered)
      assert.are.same({ n = 1, "half a line" }, r.line)
      assert.are.same({ n = 3, nil, "timeout", "next" }, r.second)
      assert.are.equal("next", r.next)
    end)

    it("read_exactly and read_until keep their partial; nothing is consumed", function()
      local r = run(function()
        local c, s, ln = pair()
        s:set_timeouts { read = 0.05 }
        local r = {}
        r.empty = pack(s:read_exactly(4))   -- nothing at all: partial ""
        c:write("12345")
        r.dt, r.exactly = timed(s.read_exactly, s, 10)
        c:write("67890")
        r.ten = s:read_exactly(10)
        c:write("key=va")
        r.until_ = pack(s:read_until(";"))
        c:write("lue;")
        r.value = s:read_until(";")
        c:close(); s:close(); ln:close()
        return r
      end)
      assert.are.same({ n = 3, nil, "timeout", "" }, r.empty)
      took(r.dt, 0.04, 2)
      assert.are.same({ n = 3, nil, "timeout", "12345" }, r.exactly)
      assert.are.equal("1234567890", r.ten)
      assert.are.same({ n = 3, nil, "timeout", "key=va" }, r.until_)
      assert.are.equal("key=value", r.value)
    end)

    it("lines(): the iterator returns nil, 'timeout', partial; a for loop ends there and reading goes on", function()
      local r = run(function()
        local c, s, ln = pair()
        s:set_timeouts { read = 0.05 }
        c:write("a\nb\nc")
        local got = {}
        for l in s:lines() do got[#got + 1] = l end
        local it = s:lines()
        local r = { got = got, direct = pack(it()) }
        c:write("\n")
        r.c = it()
        c:close(); s:close(); ln:close()
        return r
      end)
      assert.are.same({ "a", "b" }, r.got)
      assert.are.same({ n = 3, nil, "timeout", "c" }, r.direct)
      assert.are.equal("c", r.c)
    end)

    it("the time-out counts from the start of the call, not from the last byte", function()
      local r = run(function()
        local c, s, ln = pair()
        s:set_timeouts { read = 0.1 }
        local sender = nexus.spawn(function()   -- a line trickling in 10 pieces, 0.3 s in all
          for i = 1, 10 do
            nexus.sleep(0.03)
            c:write(i < 10 and "x" or "x\n")
          end
        end)
        local r = {}
        r.dt, r.first = timed(s.read_line, s)
        sender:join()
        r.line = s:read_line()
        c:close(); s:close(); ln:close()
        return r
      end)
      took(r.dt, 0.09, 2)
      assert.are.equal(3, r.first.n)
      assert.is_nil(r.first[1])
      assert.are.equal("timeout", r.first[2])
      assert.truthy(r.first[3]:match("^x+$"), r.first[3])
      assert.are.equal(("x"):rep(10), r.line)
    end)

    it("data that is already buffered is returned whatever the time-out, even 0", function()
      local r = run(function()
        local c, s, ln = pair()
        c:write("0")
        assert(s:read() == "0")               -- the stream reads from now on
        c:write("abc\n")
        nexus.sleep(0.02)
        s:set_timeouts { read = 0 }
        local r = { s:read(1), s:read_exactly(1), s:read_line() }
        r[4] = pack(s:read())                 -- nothing left: times out at once
        c:write("z")
        nexus.sleep(0.02)
        r[5] = s:read()
        c:close(); s:close(); ln:close()
        return r
      end)
      assert.are.equal("a", r[1])
      assert.are.equal("b", r[2])
      assert.are.equal("c", r[3])
      assert.are.same({ n = 2, nil, "timeout" }, r[4])
      assert.are.equal("z", r[5])
    end)

    it("eof and close still win over the time-out", function()
      local r = run(function()
        local c, s, ln = pair()
        s:set_timeouts { read = 5 }
        c:write("tail")
        c:shutdown()
        local r = { pack(s:read_line()) }
        local h = nexus.spawn(function() return pack(c:read()) end)
        c:set_timeouts { read = 5 }
        nexus.sleep(0.02)
        c:close()
        r[2] = h:join()
        s:close(); ln:close()
        return r
      end)
      assert.are.same({ n = 3, nil, "eof", "tail" }, r[1])
      assert.are.same({ n = 2, nil, "closed" }, r[2])
    end)
  end)

  describe("writes", function()
    it("a write waiting under backpressure longer than the write time-out returns nil, 'timeout'; the stream stays usable", function()
      local r = run(function(rt)
        local c, s, ln = pair(nil, { write_high_water = 1024, write_timeout = 0.05 })
        local blob = N.blob(16 * 1024 * 1024)
        local r = {}
        r.small = c:write("x")              -- the socket takes it: no wait
        r.dt, r.big = timed(c.write, c, blob)
        r.timers = rt:stats().timers
        r.queued = c:write_queued()
        local reader = nexus.spawn(function()  -- now drain it all
          local n = 0
          while true do
            local d = s:read(1048576)
            if not d then return n end
            n = n + #d
          end
        end)
        r.tail = c:write("tail")
        c:close()
        r.total = reader:join()
        s:close(); ln:close()
        return r
      end)
      assert.is_true(r.small)
      took(r.dt, 0.04, 2)
      assert.are.same({ n = 2, nil, "timeout" }, r.big)
      assert.are.equal(0, r.timers)
      assert.is_true(r.queued > 1024)
      assert.is_true(r.tail)
      -- what the timed-out write had queued was still sent
      assert.are.equal(1 + 16 * 1024 * 1024 + 4, r.total)
    end)
  end)

  describe("where time-outs come from", function()
    it("connect options read_timeout and write_timeout", function()
      local r = run(function()
        local ln = assert(nexus.tcp.listen("127.0.0.1", 0))
        local _, _, port = ln:local_addr()
        local h = nexus.spawn(function() return ln:accept() end)
        local c = assert(nexus.tcp.connect("127.0.0.1", port, { read_timeout = 0.05, write_timeout = 3, timeout = 5 }))
        local s = h:join()
        local r = { timeouts = { c:timeouts() }, server = { s:timeouts() } }
        r.dt, r.read = timed(c.read, c)
        local c2 = assert(nexus.tcp.connect("127.0.0.1", port, { read_timeout = false, write_timeout = math.huge }))
        r.off = pack(c2:timeouts())
        c:close(); c2:close(); s:close(); ln:close()
        return r
      end)
      assert.are.same({ 0.05, 3 }, r.timeouts)
      assert.are.same({}, r.server)
      took(r.dt, 0.04, 2)
      assert.are.same({ n = 2, nil, "timeout" }, r.read)
      assert.is_nil(r.off[1])
      assert.is_nil(r.off[2])
    end)

    it("listen options apply to every accepted stream; accept options override them", function()
      local r = run(function()
        local ln = assert(nexus.tcp.listen("127.0.0.1", 0, { read_timeout = 0.05, write_timeout = 2 }))
        local _, _, port = ln:local_addr()
        local acc = nexus.spawn(function()
          local a = { ln:accept() }
          local b = { ln:accept { read_timeout = 0.3 } }
          local d = { ln:accept { read_timeout = false } }
          return a[1], b[1], d[1]
        end)
        local cs = {}
        for i = 1, 3 do cs[i] = assert(nexus.tcp.connect("127.0.0.1", port)) end
        local a, b, d = acc:join()
        local r = { a = { a:timeouts() }, b = { b:timeouts() }, d = pack(d:timeouts()) }
        r.dt, r.read = timed(a.read_line, a)
        for i = 1, 3 do cs[i]:close() end
        a:close(); b:close(); d:close(); ln:close()
        return r
      end)
      assert.are.same({ 0.05, 2 }, r.a)
      assert.are.same({ 0.3, 2 }, r.b)
      assert.is_nil(r.d[1])
      assert.are.equal(2, r.d[2])
      took(r.dt, 0.04, 2)
      assert.are.same({ n = 3, nil, "timeout", "" }, r.read)
    end)

    it("set_timeouts applies to the next call: a missing key is left as it is, false and math.huge turn it off", function()
      local r = run(function()
        local c, s, ln = pair()
        local r = {}
        s:set_timeouts { read = 0.05, write = 1 }
        r.t1 = { s:timeouts() }
        r.dt1, r.read1 = timed(s.read, s)
        s:set_timeouts { read = false }
        r.t2 = pack(s:timeouts())
        nexus.spawn(function() nexus.sleep(0.15); c:write("slow") end)
        r.dt2, r.read2 = timed(s.read, s)   -- no time-out now: waits for the data
        s:set_timeouts { write = math.huge }
        r.t3 = pack(s:timeouts())
        s:set_timeouts {}
        r.t4 = pack(s:timeouts())
        -- a change while a read waits is for the next call
        s:set_timeouts { read = 0.05 }
        local h = nexus.spawn(function() return timed(s.read, s) end)
        nexus.sleep(0.01)
        s:set_timeouts { read = false }
        r.dt3, r.read3 = h:join()
        c:close(); s:close(); ln:close()
        return r
      end)
      assert.are.same({ 0.05, 1 }, r.t1)
      took(r.dt1, 0.04, 2)
      assert.are.same({ n = 2, nil, "timeout" }, r.read1)
      assert.are.same({ n = 2, nil, 1 }, r.t2)
      took(r.dt2, 0.14, 2)
      assert.are.same({ n = 1, "slow" }, r.read2)
      assert.are.same({ n = 2, nil, nil }, r.t3)
      assert.are.same({ n = 2, nil, nil }, r.t4)
      took(r.dt3, 0.04, 2)
      assert.are.same({ n = 2, nil, "timeout" }, r.read3)
    end)
  end)

  describe("with nexus.timeout, aborts and errors", function()
    it("an enclosing nexus.timeout shorter than the read time-out fires first", function()
      local r = run(function(rt)
        local c, s, ln = pair()
        s:set_timeouts { read = 1 }
        c:write("part")
        local r = {}
        r.dt, r.res = timed(nexus.timeout, 0.05, s.read_line, s)
        r.timers = rt:stats().timers
        c:write("ial\n")
        r.line = s:read_line()
        c:close(); s:close(); ln:close()
        return r
      end)
      took(r.dt, 0.04, 0.9)
      assert.are.same({ n = 2, nil, "timeout" }, r.res)
      assert.are.equal(0, r.timers)
      assert.are.equal("partial", r.line)
    end)

    it("an enclosing nexus.timeout longer than the read time-out: the read returns, the function goes on", function()
      local r = run(function(rt)
        local c, s, ln = pair()
        s:set_timeouts { read = 0.05 }
        c:write("part")
        local r = {}
        r.dt, r.res = timed(nexus.timeout, 1, function()
          local a, b, p = s:read_line()
          local timers = rt:stats().timers     -- only the enclosing level's
          nexus.sleep(0.02)                    -- still inside: waits go on
          return a, b, p, timers
        end)
        r.timers = rt:stats().timers
        c:write("ial\n")
        r.line = s:read_line()
        c:close(); s:close(); ln:close()
        return r
      end)
      took(r.dt, 0.06, 0.9)
      assert.are.same({ n = 5, true, nil, "timeout", "part", 1 }, r.res)
      assert.are.equal(0, r.timers)
      assert.are.equal("partial", r.line)
    end)

    it("an enclosing nexus.timeout with the same deadline: one of them says timeout, nothing is left behind", function()
      local r = run(function(rt)
        local c, s, ln = pair()
        s:set_timeouts { read = 0.05 }
        c:write("x")
        local r = {}
        for i = 1, 5 do
          local res = pack(nexus.timeout(0.05, s.read_line, s))
          r[i] = (res[1] == nil and res[2]) or (res[1] == true and res[3]) or "?"
        end
        r.timers = rt:stats().timers
        c:write("y\n")
        r.line = s:read_line()
        c:close(); s:close(); ln:close()
        return r
      end)
      for i = 1, 5 do assert.are.equal("timeout", r[i]) end
      assert.are.equal(0, r.timers)
      assert.are.equal("xy", r.line)
    end)

    it("a task aborted in a timed read releases the stream and its deadline level", function()
      local r = run(function(rt)
        local c, s, ln = pair()
        s:set_timeouts { read = 0.2 }
        local h = nexus.spawn(function() return s:read_exactly(10) end)
        nexus.sleep(0.01)
        c:write("12345")
        nexus.sleep(0.01)
        local r = { timers_waiting = rt:stats().timers }
        r.aborted = h:abort()
        r.timers = rt:stats().timers
        nexus.sleep(0.3)                        -- past the dead call's deadline
        c:write("67890")
        r.got = s:read_exactly(10)
        c:close(); s:close(); ln:close()
        return r
      end)
      assert.are.equal(1, r.timers_waiting)
      assert.is_true(r.aborted)
      assert.are.equal(0, r.timers)
      assert.are.equal("1234567890", r.got)
    end)

    it("an error raised while a time-out level is pushed pops it (a pcall around the read goes on cleanly)", function()
      -- One task per cycle and a poll after each, so the order is fixed:
      -- the data wakes A; B, ahead of A in the queue, starts a read of its
      -- own; A, resumed, finds B reading and raises.
      local rt = nexus.runtime.builder():tasks_per_cycle(1):event_interval(1):build()
      local r = run(function()
        local c, s, ln = pair()
        s:set_timeouts { read = 0.3 }
        local a = nexus.spawn(function()
          local ok, err = pcall(s.read_exactly, s, 10)
          local timers = rt:stats().timers     -- B's level only
          -- a level left behind would fire during this sleep and cut it short
          local t0 = nexus.now()
          nexus.sleep(0.5)
          return ok, err, timers, nexus.now() - t0
        end)
        nexus.sleep(0.02)
        local r = { timers_a = rt:stats().timers }
        c:write("0123456789")
        local b = nexus.spawn(function() return s:read_exactly(20) end)
        nexus.yield()
        r.a = pack(a:join())
        r.b = pack(b:join())
        r.timers_end = rt:stats().timers
        c:close(); s:close(); ln:close()
        return r
      end, rt)
      assert.are.equal(1, r.timers_a)
      assert.is_false(r.a[1])
      assert.truthy(tostring(r.a[2]):find("stream:read_exactly: another task is already reading", 1, true), r.a[2])
      assert.are.equal(1, r.a[3])
      took(r.a[4], 0.5, 2)
      -- B timed out on its own, with A's ten bytes kept as its partial
      assert.are.same({ n = 3, nil, "timeout", "0123456789" }, r.b)
      assert.are.equal(0, r.timers_end)
    end)

    it("a reader woken by data that another task takes before it runs, past its deadline, times out", function()
      -- One task per cycle, a poll after each: the data wakes A; C, ahead
      -- of A, spins past A's deadline (which then finds A ready: expired,
      -- not cancelled) and takes the data; A, resumed, must wait again but
      -- its deadline has passed.
      local rt = nexus.runtime.builder():tasks_per_cycle(1):event_interval(1):build()
      local r = run(function()
        local c, s, ln = pair()
        s:set_timeouts { read = 0.05 }
        local a = nexus.spawn(function() return timed(s.read, s) end)
        nexus.sleep(0.02)
        c:write("data")
        local taker = nexus.spawn(function()
          H.busy_wait(nexus, 0.06)
          return s:read()
        end)
        nexus.yield()
        local r = { a = pack(nexus.timeout(1, a.join, a)), taken = taker:join() }
        r.timers = rt:stats().timers
        c:close(); s:close(); ln:close()
        return r
      end, rt)
      assert.are.equal("data", r.taken)
      assert.is_true(r.a[1], "the reader hung")
      took(r.a[2], 0.04, 0.9)
      assert.are.same({ n = 2, nil, "timeout" }, r.a[3])
      assert.are.equal(0, r.timers)
    end)

    it("a timed read where the task cannot suspend raises the nexus error and leaves nothing behind", function()
      local r = run(function(rt)
        local c, s, ln = pair()
        s:set_timeouts { read = 0.05 }
        local r = {}
        r.ok, r.err = pcall(table.sort, { 3, 1, 2 }, function(x, y) s:read(); return x < y end)
        r.timers = rt:stats().timers
        c:write("fine")
        r.after = s:read()
        c:close(); s:close(); ln:close()
        return r
      end)
      assert.is_false(r.ok)
      assert.truthy(r.err:find("stream:read: cannot suspend here", 1, true), r.err)
      assert.are.equal(0, r.timers)
      assert.are.equal("fine", r.after)
    end)
  end)

  describe("bad input", function()
    local function errof_in_task(fn)
      return nexus.run(function()
        local c, s, ln = pair()
        local e = H.errof(fn, c, ln)
        c:close(); s:close(); ln:close()
        return e
      end)
    end

    local cases = {
      { "stream:set_timeouts: read must be a non-negative number of seconds, got -1",
        function(c) c:set_timeouts { read = -1 } end },
      { "stream:set_timeouts: write must be a non-negative number of seconds, got NaN",
        function(c) c:set_timeouts { write = 0 / 0 } end },
      { "stream:set_timeouts: read must be a number of seconds or false, got string",
        function(c) c:set_timeouts { read = "1" } end },
      { "stream:set_timeouts: write must be a number of seconds or false, got boolean",
        function(c) c:set_timeouts { write = true } end },
      { "stream:set_timeouts: unknown key 'reed' (expected read or write)",
        function(c) c:set_timeouts { reed = 1 } end },
      { "stream:set_timeouts: unknown key '1' (expected read or write)",
        function(c) c:set_timeouts { 1 } end },
      { "stream:set_timeouts: expected a table { read = secs, write = secs }, got number",
        function(c) c:set_timeouts(5) end },
      { "stream:set_timeouts: expected a table { read = secs, write = secs }, got nil",
        function(c) c:set_timeouts() end },
      { "stream:set_timeouts: expected a tcp stream, got table",
        function(c) c.set_timeouts({}, { read = 1 }) end },
      { "stream:timeouts: expected a tcp stream, got nil", function(c) c.timeouts() end },
      { "nexus.tcp.connect: read_timeout must be a number or false, got string",
        function() nexus.tcp.connect("127.0.0.1", 80, { read_timeout = "1" }) end },
      { "nexus.tcp.connect: negative write_timeout (-0.5)",
        function() nexus.tcp.connect("127.0.0.1", 80, { write_timeout = -0.5 }) end },
      { "nexus.tcp.connect: read_timeout must be a number or false, got NaN",
        function() nexus.tcp.connect("127.0.0.1", 80, { read_timeout = 0 / 0 }) end },
      { "nexus.tcp.listen: write_timeout must be a number or false, got boolean",
        function() nexus.tcp.listen("127.0.0.1", 0, { write_timeout = true }) end },
      { "nexus.tcp.listen: negative read_timeout (-1)",
        function() nexus.tcp.listen("127.0.0.1", 0, { read_timeout = -1 }) end },
      { "listener:accept: unknown option 'timeout'", function(_, ln) ln:accept { timeout = 1 } end },
      { "listener:accept: negative read_timeout (-1)", function(_, ln) ln:accept { read_timeout = -1 } end },
      { "listener:accept: options must be a table, got number", function(_, ln) ln:accept(5) end },
    }
    for _, case in ipairs(cases) do
      it("raises " .. case[1], function()
        local e = errof_in_task(case[2])
        assert.is_string(e, "did not raise")
        assert.truthy(e:find(case[1], 1, true), e)
      end)
    end

    it("a rejected set_timeouts changes nothing (checked before any change)", function()
      local r = nexus.run(function()
        local c, s, ln = pair()
        c:set_timeouts { read = 1, write = 2 }
        local e = H.errof(c.set_timeouts, c, { read = 3, write = -1 })
        local r = { e = e, t = { c:timeouts() } }
        c:close(); s:close(); ln:close()
        return r
      end)
      assert.is_string(r.e)
      assert.are.same({ 1, 2 }, r.t)
    end)

    it("messages carry the caller's position", function()
      local e = errof_in_task(function(c) c:set_timeouts { read = -1 } end)
      assert.truthy(e:find("tcp_timeouts_spec.lua:%d+: stream:set_timeouts"), e)
      e = errof_in_task(function() nexus.tcp.connect("127.0.0.1", 80, { read_timeout = -1 }) end)
      assert.truthy(e:find("tcp_timeouts_spec.lua:%d+: nexus.tcp.connect"), e)
      e = errof_in_task(function(_, ln) ln:accept { read_timeout = -1 } end)
      assert.truthy(e:find("tcp_timeouts_spec.lua:%d+: listener:accept"), e)
    end)
  end)
end)

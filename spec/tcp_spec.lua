-- TCP: listen, accept, connect, buffered reads (read, read_exactly,
-- read_line, read_until), writes with backpressure, close, timeouts and
-- aborts around reads and writes, one reader and one writer per stream,
-- IPv6, reuseport across processes, bad input.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(dir .. "helpers.lua")
local N = dofile(dir .. "net_helpers.lua")
local nexus = require "nexus"
local pair, LATE = N.pair, H.LATE

describe("tcp", function()
  describe("listen and connect", function()
    it("a listener on port 0 gets a free port; accept names the peer the client sees itself as", function()
      local r = nexus.run(function()
        local ln = assert(nexus.tcp.listen("127.0.0.1", 0))
        local full, ip, port = ln:local_addr()
        local h = nexus.spawn(function() return ln:accept() end)
        local c = assert(nexus.tcp.connect("127.0.0.1", port))
        local s, peer = h:join()
        local r = { full = full, ip = ip, port = port, peer = peer,
                    c_local = c:local_addr(), c_peer = c:peer_addr(),
                    s_local = s:local_addr(), s_peer = s:peer_addr(),
                    ln_str = tostring(ln), c_str = tostring(c) }
        c:close(); s:close(); ln:close()
        r.closed_str = tostring(c)
        return r
      end)
      assert.are.equal("127.0.0.1", r.ip)
      assert.is_true(r.port > 0 and r.port < 65536)
      assert.are.equal("127.0.0.1:" .. r.port, r.full)
      assert.are.equal(r.c_local, r.peer)
      assert.are.equal(r.c_local, r.s_peer)
      assert.are.equal(r.full, r.c_peer)
      assert.are.equal(r.full, r.s_local)
      assert.are.equal("nexus.tcp.listener(" .. r.full .. ")", r.ln_str)
      assert.are.equal("nexus.tcp.stream(" .. r.c_local .. " -> " .. r.full .. ")", r.c_str)
      assert.are.equal("nexus.tcp.stream(closed)", r.closed_str)
    end)

    it("works over IPv6 (::1), with bracketed addresses", function()
      local got, peer, full, ip = nexus.run(function()
        local c, s, ln, peer = pair(nil, nil, "::1")
        c:write("six\n")
        local line = s:read_line()
        local full, ip = ln:local_addr()
        c:close(); s:close(); ln:close()
        return line, peer, full, ip
      end)
      assert.are.equal("six", got)
      assert.truthy(peer:match("^%[::1%]:%d+$"), peer)
      assert.truthy(full:match("^%[::1%]:%d+$"), full)
      assert.are.equal("::1", ip)
    end)

    it("connect resolves names (localhost) and accepts the port as a numeric string", function()
      local line = nexus.run(function()
        local ln = assert(nexus.tcp.listen("localhost", 0))
        local _, _, port = ln:local_addr()
        nexus.spawn(function()
          local s = ln:accept()
          s:write("hi there\r\n")
          s:close()
        end)
        local c = assert(nexus.tcp.connect("localhost", tostring(port), { timeout = 5 }))
        local line = c:read_line()
        c:close(); ln:close()
        return line
      end)
      assert.are.equal("hi there", line)
    end)

    it("accepts many connections in turn from one acceptor", function()
      local n = nexus.run(function()
        local ln = assert(nexus.tcp.listen("127.0.0.1", 0))
        local _, _, port = ln:local_addr()
        local served = 0
        nexus.spawn(function()
          while true do
            local s = ln:accept()
            if not s then break end
            nexus.spawn(function()
              local l = s:read_line()
              s:write(l .. "!\n")
              s:close()
              served = served + 1
            end)
          end
        end)
        local hs = {}
        for i = 1, 50 do
          hs[i] = nexus.spawn(function()
            local c = assert(nexus.tcp.connect("127.0.0.1", port))
            c:write(i .. "\n")
            local r = c:read_line()
            c:close()
            return r
          end)
        end
        for i = 1, 50 do assert.are.equal(i .. "!", hs[i]:join()) end
        ln:close()
        return served
      end)
      assert.are.equal(50, n)
    end)

    it("nodelay is on by default and can be switched; keepalive can be set", function()
      local r = nexus.run(function()
        local c, s, ln = pair()
        local r = { c:set_nodelay(false), c:set_nodelay(true), s:set_keepalive(true, 30),
                    s:set_keepalive(false) }
        c:close()
        r[5], r[6] = c:set_nodelay(true)
        s:close(); ln:close()
        return r
      end)
      assert.are.same({ true, true, true, true, nil, "closed" }, { r[1], r[2], r[3], r[4], r[5], r[6] })
    end)
  end)

  describe("reads", function()
    it("read(max) returns what is buffered, at most max bytes; read() all of it", function()
      local r = nexus.run(function()
        local c, s, ln = pair()
        c:write("0123456789")
        nexus.sleep(0.05)
        local r = { s:read(4), s:read(4), s:read(100) }
        c:write("abc")
        r[4] = s:read()
        c:close(); s:close(); ln:close()
        return r
      end)
      assert.are.same({ "0123", "4567", "89", "abc" }, r)
    end)

    it("read suspends until data arrives, then returns it", function()
      local data, waited = nexus.run(function()
        local c, s, ln = pair()
        nexus.spawn(function() nexus.sleep(0.05); c:write("late") end)
        local t0 = nexus.now()
        local data = s:read()
        local waited = nexus.now() - t0
        c:close(); s:close(); ln:close()
        return data, waited
      end)
      assert.are.equal("late", data)
      assert.is_true(waited >= 0.04 and waited < 0.05 + LATE, waited)
    end)

    it("read_exactly gathers n bytes across writes and leaves the rest buffered", function()
      local r = nexus.run(function()
        local c, s, ln = pair()
        nexus.spawn(function()
          for _, piece in ipairs({ "ab", "cde", "f", "ghij" }) do
            c:write(piece)
            nexus.sleep(0.01)
          end
        end)
        local r = { s:read_exactly(7), s:read_exactly(0), s:read_exactly(3) }
        c:close(); s:close(); ln:close()
        return r
      end)
      assert.are.same({ "abcdefg", "", "hij" }, r)
    end)

    it("read_line strips \\n and \\r\\n, splits many lines of one write, joins a line split across writes", function()
      local r = nexus.run(function()
        local c, s, ln = pair()
        c:write("one\ntwo\r\n\nthree")
        nexus.spawn(function() nexus.sleep(0.02); c:write(" and"); nexus.sleep(0.02); c:write(" four\r") ; c:write("\nrest") end)
        local r = {}
        for i = 1, 4 do r[i] = s:read_line() end
        r[5] = s:read(100)
        c:close(); s:close(); ln:close()
        return r
      end)
      assert.are.same({ "one", "two", "", "three and four", "rest" }, r)
    end)

    it("a line arriving in 20 pieces wakes its reader once, not per piece", function()
      local rt = nexus.runtime.new()
      local line, resumes = rt:block_on(function()
        local c, s, ln = pair()
        local h = nexus.spawn(function() return s:read_line() end)
        nexus.sleep(0.01)
        local r0 = rt:stats().resumes
        for _ = 1, 20 do c:write("x"); nexus.sleep(0.002) end
        c:write("\n")
        local line = h:join()
        local resumes = rt:stats().resumes - r0
        c:close(); s:close(); ln:close()
        return line, resumes
      end)
      rt:close()
      assert.are.equal(("x"):rep(20), line)
      -- this task: 20 sleeps and the join; the reader: once, with the line
      -- (a wake per piece would add 20)
      assert.is_true(resumes <= 24, "resumes " .. resumes)
    end)

    it("read_until splits on a multi-byte delimiter, also one split across writes", function()
      local r = nexus.run(function()
        local c, s, ln = pair()
        nexus.spawn(function()
          c:write("part1--BOUND")
          nexus.sleep(0.02)
          c:write("ARY--part2--BOUNDARY--tail")
        end)
        local r = { s:read_until("--BOUNDARY--"), s:read_until("--BOUNDARY--"), s:read(100) }
        c:close(); s:close(); ln:close()
        return r
      end)
      assert.are.same({ "part1", "part2", "tail" }, r)
    end)

    it("at eof: buffered data first, then nil, 'eof' (with the partial record for framed reads)", function()
      local r = nexus.run(function()
        local r = {}
        local c, s, ln = pair()
        c:write("abc")
        c:close()
        r.exactly = H.pack(s:read_exactly(10))
        r.after = H.pack(s:read())
        s:close()
        c, s = pair()
        c:write("full\npartial")
        c:shutdown()
        r.line1 = H.pack(s:read_line())
        r.line2 = H.pack(s:read_line())
        r.line3 = H.pack(s:read_line())
        c:close(); s:close()
        c, s = pair()
        c:write("xy")
        c:close()
        r.read1 = H.pack(s:read(1))
        r.read2 = H.pack(s:read())
        r.read3 = H.pack(s:read())
        r.until1 = H.pack(s:read_until("z"))
        s:close(); ln:close()
        return r
      end)
      assert.are.same({ n = 3, nil, "eof", "abc" }, r.exactly)
      assert.are.same({ n = 2, nil, "eof" }, r.after)
      assert.are.same({ n = 1, "full" }, r.line1)
      assert.are.same({ n = 3, nil, "eof", "partial" }, r.line2)
      assert.are.same({ n = 3, nil, "eof", "" }, r.line3)
      assert.are.same({ n = 1, "x" }, r.read1)
      assert.are.same({ n = 1, "y" }, r.read2)
      assert.are.same({ n = 2, nil, "eof" }, r.read3)
      assert.are.same({ n = 3, nil, "eof", "" }, r.until1)
    end)

    it("read_line(max) gives nil, 'too long' and leaves the data buffered", function()
      local r = nexus.run(function()
        local c, s, ln = pair()
        c:write(("a"):rep(100) .. "\nshort\n")
        nexus.sleep(0.02)
        local r = { H.pack(s:read_line(10)), s:read_line(200), s:read_line(10) }
        nexus.spawn(function() nexus.sleep(0.02); c:write(("b"):rep(50)) end)
        r[4] = H.pack(s:read_line(20))          -- waits, then fails once 20 bytes hold no "\n"
        r[5] = #s:read()
        c:close(); s:close(); ln:close()
        return r
      end)
      assert.are.same({ n = 2, nil, "too long" }, r[1])
      assert.are.equal(("a"):rep(100), r[2])
      assert.are.equal("short", r[3])
      assert.are.same({ n = 2, nil, "too long" }, r[4])
      assert.are.equal(50, r[5])
    end)

    it("lines() iterates until eof", function()
      local got = nexus.run(function()
        local c, s, ln = pair()
        c:write("a\nb\nc\n")
        c:close()
        local got = {}
        for l in s:lines() do got[#got + 1] = l end
        s:close(); ln:close()
        return got
      end)
      assert.are.same({ "a", "b", "c" }, got)
    end)

    it("input backpressure: unread data stops being read near read_high_water, and none is lost", function()
      local r = nexus.run(function()
        local c, s, ln = pair({ read_high_water = 16384 })
        local blob = N.blob(4 * 1024 * 1024)
        local w = nexus.spawn(function() return c:write(blob) end)
        s:read(1)                                -- starts reading
        nexus.sleep(0.2)
        local buffered = s:buffered()
        local got, n = { blob:sub(1, 1) }, 1
        while n < #blob do
          local d = assert(s:read(65536))
          got[#got + 1] = d
          n = n + #d
        end
        local ok = w:join()
        c:close(); s:close(); ln:close()
        return { buffered = buffered, same = table.concat(got) == blob, ok = ok }
      end)
      assert.is_true(r.ok)
      assert.is_true(r.same)
      assert.is_true(r.buffered >= 1, "nothing was buffered")
      -- the mark, plus at most one read's worth above it
      assert.is_true(r.buffered <= 16384 + 65536, "buffered " .. r.buffered)
    end)
  end)

  describe("writes", function()
    it("a big write to a peer that does not read suspends the writer, then completes intact", function()
      local r = nexus.run(function()
        local c, s, ln = pair(nil, { write_high_water = 65536 })
        local blob = N.blob(32 * 1024 * 1024)
        local done_at
        local w = nexus.spawn(function()
          local ok, err = c:write(blob)
          done_at = nexus.now()
          return ok, err
        end)
        nexus.sleep(0.3)
        local suspended = done_at == nil
        local queued = c:write_queued()
        local t_read = nexus.now()
        local parts, n = {}, 0
        while n < #blob do
          local d = assert(s:read(1048576))
          parts[#parts + 1] = d
          n = n + #d
        end
        local ok, err = w:join()
        c:close(); s:close(); ln:close()
        return { suspended = suspended, queued = queued, ok = ok, err = err,
                 same = table.concat(parts) == blob, after_read = done_at >= t_read }
      end)
      assert.is_true(r.ok, r.err)
      assert.is_true(r.same)
      assert.is_true(r.suspended, "write returned while the peer read nothing")
      assert.is_true(r.after_read)
      assert.is_true(r.queued > 65536, "queued " .. r.queued)
    end)

    it("small writes return at once, in order", function()
      local got = nexus.run(function()
        local c, s, ln = pair()
        for i = 1, 1000 do assert(c:write(i .. ",")) end
        c:close()
        local parts = {}
        while true do
          local d = s:read()
          if not d then break end
          parts[#parts + 1] = d
        end
        s:close(); ln:close()
        return table.concat(parts)
      end)
      local want = {}
      for i = 1, 1000 do want[i] = i .. "," end
      assert.are.equal(table.concat(want), got)
    end)

    it("close() still sends what write accepted", function()
      local n = nexus.run(function()
        local c, s, ln = pair(nil, { write_high_water = 2 ^ 30 })
        local blob = N.blob(32 * 1024 * 1024)
        assert(c:write(blob))
        assert.is_true(c:write_queued() > 0, "the kernel took it all: nothing to show")
        c:close()
        local parts = {}
        while true do
          local d = s:read()
          if not d then break end
          parts[#parts + 1] = d
        end
        s:close(); ln:close()
        return table.concat(parts) == blob
      end)
      assert.is_true(n)
    end)

    it("write('') is true; write after shutdown is nil, 'shut down'", function()
      local r = nexus.run(function()
        local c, s, ln = pair()
        local r = H.pack(c:write(""))
        c:shutdown()
        local r2 = H.pack(c:write("x"))
        local r3 = H.pack(c:shutdown())
        c:close(); s:close(); ln:close()
        return { r, r2, r3 }
      end)
      assert.are.same({ { n = 1, true }, { n = 2, nil, "shut down" }, { n = 1, true } }, r)
    end)
  end)

  describe("one reader and one writer", function()
    it("a reader and a writer task share a stream (split tasks)", function()
      local got = nexus.run(function()
        local c, s, ln = pair()
        local tx = nexus.spawn(function()
          for i = 1, 200 do c:write(("msg %d\n"):format(i)) end
          c:shutdown()
        end)
        local echo = nexus.spawn(function()   -- server: echo lines back
          for l in s:lines() do s:write(l .. "\n") end
          s:close()
        end)
        local got = {}
        for l in c:lines() do got[#got + 1] = l end
        tx:join(); echo:join()
        c:close(); ln:close()
        return got
      end)
      assert.are.equal(200, #got)
      assert.are.equal("msg 1", got[1])
      assert.are.equal("msg 200", got[200])
    end)

    it("a second concurrent reader raises, naming the method", function()
      local e1, e2, e3, data = nexus.run(function()
        local c, s, ln = pair()
        local h = nexus.spawn(function() return s:read() end)
        nexus.sleep(0.01)
        local e1 = H.errof(s.read, s)
        local e2 = H.errof(s.read_line, s)
        local e3 = H.errof(s.read_exactly, s, 1)
        c:write("x")
        local data = h:join()
        c:close(); s:close(); ln:close()
        return e1, e2, e3, data
      end)
      assert.are.equal("stream:read: another task is already reading", e1)
      assert.are.equal("stream:read_line: another task is already reading", e2)
      assert.are.equal("stream:read_exactly: another task is already reading", e3)
      assert.are.equal("x", data)
    end)

    it("a second concurrent writer raises; so does a second acceptor", function()
      local e1, e2 = nexus.run(function()
        local c, s, ln = pair(nil, { write_high_water = 1024 })
        local w = nexus.spawn(function() return c:write(N.blob(16 * 1024 * 1024)) end)
        nexus.sleep(0.05)
        assert(not w:is_finished(), "the writer did not suspend")
        local e1 = H.errof(c.write, c, "more")
        local a = nexus.spawn(function() return ln:accept() end)
        nexus.sleep(0.01)
        local e2 = H.errof(ln.accept, ln)
        a:abort(); w:abort()
        c:close(); s:close(); ln:close()
        return e1, e2
      end)
      assert.are.equal("stream:write: another task is already writing", e1)
      assert.are.equal("listener:accept: another task is already accepting", e2)
    end)
  end)

  describe("close, timeouts and aborts", function()
    it("close wakes a waiting reader, writer and acceptor with nil, 'closed'", function()
      local r = nexus.run(function()
        local c, s, ln = pair(nil, { write_high_water = 1024 })
        -- c's reader gets nothing (s never writes); s never reads, so
        -- c's writer stays suspended
        local rd = nexus.spawn(function() return H.pack(c:read()) end)
        local wr = nexus.spawn(function() return H.pack(c:write(N.blob(16 * 1024 * 1024))) end)
        local ac = nexus.spawn(function() return H.pack(ln:accept()) end)
        nexus.sleep(0.05)
        assert(not rd:is_finished() and not wr:is_finished() and not ac:is_finished())
        c:close(); ln:close(); s:close()
        return { rd:join(), wr:join(), ac:join() }
      end)
      for i = 1, 3 do assert.are.same({ n = 2, nil, "closed" }, r[i]) end
    end)

    it("after close every call says nil, 'closed'", function()
      local r = nexus.run(function()
        local c, s, ln = pair()
        c:write("buffered\n")
        nexus.sleep(0.02)
        s:read(1)
        s:close()
        ln:close()
        local r = { H.pack(s:read()), H.pack(s:read_line()), H.pack(s:read_exactly(2)),
                    H.pack(s:read_until("x")), H.pack(s:write("x")), H.pack(s:shutdown()),
                    H.pack(s:peer_addr()), H.pack(ln:accept()), H.pack(ln:local_addr()),
                    s:is_closed(), ln:is_closed() }
        s:close()   -- again: harmless
        c:close()
        return r
      end)
      for i = 1, 9 do assert.are.same({ n = 2, nil, "closed" }, r[i], "call " .. i) end
      assert.is_true(r[10])
      assert.is_true(r[11])
    end)

    it("a read timed out by nexus.timeout leaves the stream usable, partial line kept", function()
      local r = nexus.run(function()
        local c, s, ln = pair()
        c:write("half a ")
        local r = { H.pack(nexus.timeout(0.05, s.read_line, s)) }
        c:write("line\n")
        r[2] = s:read_line()
        r[3] = H.pack(nexus.timeout(0.05, s.read, s))
        c:write("more")
        r[4] = s:read()
        c:close(); s:close(); ln:close()
        return r
      end)
      assert.are.same({ n = 2, nil, "timeout" }, r[1])
      assert.are.equal("half a line", r[2])
      assert.are.same({ n = 2, nil, "timeout" }, r[3])
      assert.are.equal("more", r[4])
    end)

    it("a task aborted mid-read releases the stream to another reader", function()
      local got = nexus.run(function()
        local c, s, ln = pair()
        local h = nexus.spawn(function() return s:read_exactly(10) end)
        nexus.sleep(0.01)
        c:write("12345")
        nexus.sleep(0.01)
        assert.is_true(h:abort())
        c:write("67890")
        local got = s:read_exactly(10)
        c:close(); s:close(); ln:close()
        return got
      end)
      assert.are.equal("1234567890", got)
    end)

    it("a write timed out while suspended leaves the stream usable", function()
      local r = nexus.run(function()
        local c, s, ln = pair(nil, { write_high_water = 1024 })
        local blob = N.blob(16 * 1024 * 1024)
        local r = { H.pack(nexus.timeout(0.1, c.write, c, blob)) }
        -- drain everything the first write queued, then write again
        local reader = nexus.spawn(function()
          local n = 0
          while true do
            local d = s:read(1048576)
            if not d then return n end
            n = n + #d
          end
        end)
        r[2] = c:write("tail")
        c:close()
        r[3] = reader:join()
        s:close(); ln:close()
        return r
      end)
      assert.are.same({ n = 2, nil, "timeout" }, r[1])
      assert.is_true(r[2])
      assert.are.equal(16 * 1024 * 1024 + 4, r[3])
    end)

    it("connect gives up at its timeout (a listener whose backlog is full)", function()
      local r = nexus.run(function()
        local ln = assert(nexus.tcp.listen("127.0.0.1", 0, { backlog = 1 }))
        local _, _, port = ln:local_addr()
        local held, r = {}, nil
        for _ = 1, 64 do    -- never accepted: the queue fills, then SYNs go unanswered
          local t0 = nexus.now()
          local s, err = nexus.tcp.connect("127.0.0.1", port, { timeout = 0.2 })
          if not s then
            r = { err = err, dt = nexus.now() - t0 }
            break
          end
          held[#held + 1] = s
        end
        for _, s in ipairs(held) do s:close() end
        ln:close()
        return r
      end)
      assert.is_not_nil(r, "every connect went through")
      assert.are.equal("timeout", r.err)
      assert.is_true(r.dt >= 0.2 and r.dt < 0.2 + LATE, r.dt)
    end)

    it("rt:close() closes the listeners and streams it owns", function()
      local rt = nexus.runtime.new()
      local c, s, ln = rt:block_on(function() return pair() end)
      assert.is_false(c:is_closed())
      rt:close()
      assert.is_true(c:is_closed())
      assert.is_true(s:is_closed())
      assert.is_true(ln:is_closed())
      assert.are.equal("nexus.tcp.stream(closed)", tostring(c))
    end)

    it("streams and listeners left to the garbage collector give their descriptors back", function()
      local before, after = nexus.run(function()
        local c, s, ln = pair()     -- libuv's loop keeps a spare fd from the first listen
        c:close(); s:close(); ln:close()
        collectgarbage()
        nexus.sleep(0.01)
        local before = N.fds()
        for _ = 1, 20 do pair() end       -- dropped unclosed
        collectgarbage()
        collectgarbage()
        nexus.sleep(0.05)
        return before, N.fds()
      end)
      assert.are.equal(before, after)
    end)
  end)

  describe("runtimes and tasks", function()
    it("a stream of one runtime used while another is driven raises", function()
      local rt = nexus.runtime.new()
      local c, s, ln = rt:block_on(function() return pair() end)
      local e = nexus.run(function()
        return { H.errof(c.read, c), H.errof(c.write, c, "x"), H.errof(ln.accept, ln), H.errof(c.close, c) }
      end)
      assert.are.same({
        "stream:read: belongs to another runtime",
        "stream:write: belongs to another runtime",
        "listener:accept: belongs to another runtime",
        "stream:close: belongs to another runtime",
      }, e)
      rt:close()
      local _ = s
    end)

    it("suspending calls outside a task raise; close does not", function()
      local rt = nexus.runtime.new()
      local c, s, ln = rt:block_on(function() return pair() end)
      assert.are.equal("stream:read: not inside a nexus task", H.errof(c.read, c))
      assert.are.equal("stream:read_line: not inside a nexus task", H.errof(c.read_line, c))
      assert.are.equal("stream:write: not inside a nexus task", H.errof(c.write, c, "x"))
      assert.are.equal("listener:accept: not inside a nexus task", H.errof(ln.accept, ln))
      local e = H.errof(nexus.tcp.connect, "127.0.0.1", 1)
      assert.truthy(e:find("nexus.tcp.connect: not inside a nexus task", 1, true), e)
      e = H.errof(nexus.tcp.listen, "127.0.0.1", 0)
      assert.truthy(e:find("nexus.tcp.listen: not inside a nexus task", 1, true), e)
      c:close(); s:close(); ln:close()
      rt:close()
    end)

    it("a read where Lua cannot yield raises a nexus error and leaves the stream usable", function()
      local e, data = nexus.run(function()
        local c, s, ln = pair()
        local e
        table.sort({ 1, 2 }, function(a, b)
          e = e or H.errof(s.read, s)
          return a < b
        end)
        c:write("ok")
        local data = s:read()
        c:close(); s:close(); ln:close()
        return e, data
      end)
      assert.truthy(e:find("stream:read: cannot suspend here", 1, true), e)
      assert.are.equal("ok", data)
    end)

    it("a nexus script's top level may listen and accept (the command adopts it)", function()
      local r = H.nexus_script([[
        local nexus = require "nexus"
        local ln = assert(nexus.tcp.listen("127.0.0.1", 0))
        local _, _, port = ln:local_addr()
        nexus.spawn(function()
          local c = assert(nexus.tcp.connect("127.0.0.1", port))
          c:write("from the client\n")
          c:close()
        end)
        local s = ln:accept()
        print(s:read_line())
        s:close(); ln:close()
      ]])
      assert.are.equal(0, r.rc, r.err)
      assert.are.equal("from the client\n", r.out)
    end)
  end)

  describe("reuseport", function()
    it("two nexus processes listen on the same port and both get connections", function()
      local port = nexus.run(function()
        local ln = assert(nexus.tcp.listen("127.0.0.1", 0))
        local _, _, port = ln:local_addr()
        ln:close()
        return port
      end)
      local script = H.tmpfile([[
        local nexus = require "nexus"
        local ln = assert(nexus.tcp.listen("127.0.0.1", tonumber(arg[1]), { reuseport = true }))
        print("listening") io.stdout:flush()
        while true do
          local s = ln:accept()
          s:write(arg[2] .. "\n")
          s:close()
        end
      ]])
      local a = N.spawn(N.nexus(H.q(script) .. " " .. port .. " A"))
      local b = N.spawn(N.nexus(H.q(script) .. " " .. port .. " B"))
      assert.are.equal("listening", N.expect(a, "^(listening)$"))
      assert.are.equal("listening", N.expect(b, "^(listening)$"))
      local seen = nexus.run(function()
        local seen = {}
        for _ = 1, 64 do
          local c = assert(nexus.tcp.connect("127.0.0.1", port, { timeout = 5 }))
          local who = c:read_line()
          seen[who] = (seen[who] or 0) + 1
          c:close()
        end
        return seen
      end)
      N.kill(a); N.kill(b)
      N.finish(a); N.finish(b)
      assert.is_true((seen.A or 0) > 0 and (seen.B or 0) > 0,
        ("A %d, B %d"):format(seen.A or 0, seen.B or 0))
      assert.are.equal(64, seen.A + seen.B)
    end)

    it("without reuseport the second listen is nil, 'address already in use'", function()
      local ok, err = nexus.run(function()
        local ln = assert(nexus.tcp.listen("127.0.0.1", 0, { reuseport = true }))
        local _, _, port = ln:local_addr()
        local r = H.pack(nexus.tcp.listen("127.0.0.1", port))
        ln:close()
        return r[1], r[2]
      end)
      assert.is_nil(ok)
      assert.are.equal("address already in use", err)
    end)
  end)

  describe("bad input", function()
    local function in_task(fn, ...)
      return nexus.run(function(...)
        local c, s, ln = pair()
        local e = H.errof(fn, c, ln, ...)
        c:close(); s:close(); ln:close()
        return e
      end, ...)
    end

    local cases = {
      { "stream:read: max must be an integer, got string", function(c) c:read("x") end },
      { "stream:read: max must be an integer in 1..", function(c) c:read(0) end },
      { "stream:read: max must be an integer in 1..", function(c) c:read(1.5) end },
      { "stream:read_exactly: n must be an integer, got nil", function(c) c:read_exactly() end },
      { "stream:read_exactly: n must be an integer in 0..", function(c) c:read_exactly(-1) end },
      { "stream:read_until: delimiter must be a string, got nil", function(c) c:read_until() end },
      { "stream:read_until: empty delimiter", function(c) c:read_until("") end },
      { "stream:read_line: max must be an integer in 1..", function(c) c:read_line(0) end },
      { "stream:write: expected a string, got table", function(c) c:write({}) end },
      { "stream:write: expected a string, got nil", function(c) c:write() end },
      { "stream:read: expected a tcp stream, got table", function(c) c.read({}) end },
      { "stream:close: expected a tcp stream, got nil", function(c) c.close() end },
      { "listener:accept: expected a tcp listener, got userdata", function(c, ln) ln.accept(c) end },
      { "stream:set_keepalive: delay must be an integer in 1..", function(c) c:set_keepalive(true, -5) end },
      { "nexus.tcp.listen: host must be a string, got number", function() nexus.tcp.listen(1, 0) end },
      { "nexus.tcp.listen: host must be an IP address, \"*\" or \"localhost\", got 'example.com'",
        function() nexus.tcp.listen("example.com", 0) end },
      { "nexus.tcp.listen: port must be an integer in 0..65535, got 70000", function() nexus.tcp.listen("127.0.0.1", 70000) end },
      { "nexus.tcp.listen: port must be an integer in 0..65535, got nil", function() nexus.tcp.listen("127.0.0.1") end },
      { "nexus.tcp.listen: unknown option 'backlg'", function() nexus.tcp.listen("127.0.0.1", 0, { backlg = 1 }) end },
      { "nexus.tcp.listen: reuseport must be a boolean, got number", function() nexus.tcp.listen("127.0.0.1", 0, { reuseport = 1 }) end },
      { "nexus.tcp.listen: backlog must be a positive integer, got 0", function() nexus.tcp.listen("127.0.0.1", 0, { backlog = 0 }) end },
      { "nexus.tcp.listen: options must be a table, got string", function() nexus.tcp.listen("127.0.0.1", 0, "x") end },
      { "nexus.tcp.connect: port must be an integer in 1..65535, got 0", function() nexus.tcp.connect("127.0.0.1", 0) end },
      { "nexus.tcp.connect: port must be an integer in 1..65535, got x", function() nexus.tcp.connect("127.0.0.1", "x") end },
      { "nexus.tcp.connect: empty host", function() nexus.tcp.connect("", 80) end },
      { "nexus.tcp.connect: timeout must be a number, got string", function() nexus.tcp.connect("127.0.0.1", 80, { timeout = "1" }) end },
      { "nexus.tcp.connect: negative timeout (-1)", function() nexus.tcp.connect("127.0.0.1", 80, { timeout = -1 }) end },
    }
    for _, case in ipairs(cases) do
      it("raises " .. case[1], function()
        local e = in_task(case[2])
        assert.is_string(e, "did not raise")
        assert.truthy(e:find(case[1], 1, true), e)
      end)
    end

    it("messages carry the caller's position for Lua-side checks, none from C", function()
      local e1 = in_task(function() nexus.tcp.listen(1, 0) end)
      local e2 = in_task(function(c) c:read("x") end)
      assert.truthy(e1:find("tcp_spec.lua:%d+: nexus.tcp.listen"), e1)
      assert.are.equal("stream:read: max must be an integer, got string", e2)
    end)
  end)
end)

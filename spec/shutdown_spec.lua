-- Shutdown: the shutdown signal (single waiter), shutdown handles,
-- rt:shutdown_quiesce, rt:shutdown_stats, and real SIGINT/SIGTERM sent to
-- child processes (the nexus command and plain luajit): exit statuses, a
-- signal nobody waits for, a second signal during a slow shutdown.
local dir = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
local H = dofile(dir .. "helpers.lua")
local P = dofile(dir .. "proc.lua")
local nexus = require "nexus"
local LATE = H.LATE

-- Generous: the machine is shared and a child starts a whole LuaJIT.
local START, END = 30, 30

describe("shutdown", function()
  after_each(P.cleanup)

  describe("the shutdown signal", function()
    it("sh:trigger() wakes the one waiter; is_shutdown follows", function()
      local rt = nexus.runtime.new()
      local sh = rt:shutdown_handle()
      local log = {}
      rt:block_on(function()
        local sig = nexus.shutdown_signal()
        assert.is_false(sig:is_shutdown())
        local w = nexus.spawn(function()
          sig:wait()
          log[#log + 1] = "woke"
          return "done"
        end)
        nexus.sleep(0.02)
        assert.are.same({}, log, "waits until triggered")
        assert.is_false(sh:is_shutdown())
        sh:trigger()
        log[#log + 1] = "triggered"
        assert.is_true(sh:is_shutdown())
        assert.is_true(sig:is_shutdown())
        assert.is_nil(sig:signo(), "no signal involved")
        assert.are.equal("done", w:join())
      end)
      assert.are.same({ "triggered", "woke" }, log)
      rt:close()
    end)

    it("nexus.shutdown_signal() and nexus.shutdown_handle() in a task are those of its runtime", function()
      local rt = nexus.runtime.new()
      rt:block_on(function()
        local sig = nexus.shutdown_signal()
        nexus.spawn(function() nexus.sleep(0.01); nexus.shutdown_handle():trigger() end)
        sig:wait()
      end)
      assert.is_true(rt:shutdown_handle():is_shutdown())
      rt:close()
    end)

    it("wait() returns at once once shut down, in any task and any number of times", function()
      local rt = nexus.runtime.new()
      rt:shutdown_handle():trigger()
      local n = rt:block_on(function()
        local sig = nexus.shutdown_signal()
        local hs = {}
        for i = 1, 5 do hs[i] = nexus.spawn(function() sig:wait(); sig:wait(); return 1 end) end
        local n = 0
        for i = 1, 5 do n = n + hs[i]:join() end
        local t0 = nexus.now()
        sig:wait()
        assert.is_true(nexus.now() - t0 < LATE)
        return n
      end)
      assert.are.equal(5, n)
      rt:close()
    end)

    it("a second concurrent waiter raises, pointing to cancel tokens; the first still wakes", function()
      local rt = nexus.runtime.new()
      local e, first = rt:block_on(function()
        local sig = nexus.shutdown_signal()
        local w = nexus.spawn(function() sig:wait(); return "first woke" end)
        nexus.yield()
        local e = H.errof(sig.wait, sig)
        -- Another signal object of the same runtime is the same signal.
        local e2 = H.errof(function() rt:shutdown_handle():signal():wait() end)
        assert.are.equal(e, e2)
        rt:shutdown_handle():trigger()
        return e, w:join()
      end)
      assert.are.equal("shutdown_signal:wait: another task is already waiting on the shutdown "
        .. "signal (it has a single waiter: fan out to several tasks with a cancel token)", e)
      assert.are.equal("first woke", first)
      rt:close()
    end)

    it("a waiter aborted or timed out frees the place for another", function()
      local rt = nexus.runtime.new()
      local r = rt:block_on(function()
        local sig = nexus.shutdown_signal()
        local w = nexus.spawn(function() sig:wait() end)
        nexus.yield()
        assert.is_true(w:abort())
        local to = H.pack(nexus.timeout(0.01, function() sig:wait() return "woke" end))
        assert.are.same({ n = 2, nil, "timeout" }, to)
        local last = nexus.spawn(function() sig:wait(); return "last woke" end)
        nexus.yield()
        rt:shutdown_handle():trigger()
        return last:join()
      end)
      assert.are.equal("last woke", r)
      rt:close()
    end)

    it("rt:shutdown_handle():signal() is waitable; the trigger may come from outside block_on", function()
      local rt = nexus.runtime.new()
      local sh = rt:shutdown_handle()
      local sig = sh:signal()
      local h
      rt:block_on(function()
        h = nexus.spawn(function() sig:wait(); return "woke" end)
        nexus.yield()
      end)
      assert.is_false(h:is_finished())
      sh:trigger()
      assert.are.equal("woke", rt:block_on(function() return h:join() end))
      rt:close()
    end)

    it("waiting on the signal of another runtime raises", function()
      local a, b = nexus.runtime.new(), nexus.runtime.new()
      local sig = a:shutdown_handle():signal()
      local e = b:block_on(function() return H.errof(sig.wait, sig) end)
      assert.are.equal("shutdown_signal:wait: the signal belongs to another runtime", e)
      a:close()
      b:close()
    end)

    it("waiting outside a task, or where Lua cannot yield, raises", function()
      local rt = nexus.runtime.new()
      local sig = rt:shutdown_handle():signal()
      assert.are.equal("shutdown_signal:wait: not inside a nexus task", H.errof(sig.wait, sig))
      local e1, e2 = rt:block_on(function()
        local e1 = H.errof(table.sort, { 1, 2, 3 }, function(x, y) sig:wait(); return x < y end)
        local e2 = H.errof(coroutine.wrap(function() sig:wait() end))
        return e1, e2
      end)
      assert.matches("shutdown_signal:wait: cannot suspend here", e1)
      assert.matches("shutdown_signal:wait: cannot suspend inside a coroutine of your own", e2)
      -- Neither left a waiter behind: a task can still wait, and wakes.
      local r = rt:block_on(function()
        local w = nexus.spawn(function() sig:wait(); return "ok" end)
        nexus.yield()
        rt:shutdown_handle():trigger()
        return w:join()
      end)
      assert.are.equal("ok", r)
      rt:close()
    end)

    it("trigger on a closed runtime marks it shut down", function()
      local rt = nexus.runtime.new()
      rt:close()
      local sh = rt:shutdown_handle()
      sh:trigger()
      assert.is_true(sh:is_shutdown())
    end)

    it("prints usefully", function()
      local rt = nexus.runtime.new()
      local sh = rt:shutdown_handle()
      assert.are.equal("nexus.shutdown_handle(running)", tostring(sh))
      assert.are.equal("nexus.shutdown_signal(running)", tostring(sh:signal()))
      sh:trigger()
      assert.are.equal("nexus.shutdown_handle(shut down)", tostring(sh))
      assert.are.equal("nexus.shutdown_signal(shut down)", tostring(sh:signal()))
      rt:close()
    end)

    it("without signal handlers (plain luajit's default) a lone waiter is a deadlock, and the error says why", function()
      local rt = nexus.runtime.new()
      assert.is_false(rt:shutdown_stats().signal_handlers)
      local e = H.errof(rt.block_on, rt, function() nexus.shutdown_signal():wait() end)
      assert.are.equal("rt:block_on: deadlock: 1 task(s) wait on something nothing can complete "
        .. "(one waits on the shutdown signal, but the runtime has no signal handlers: build it with "
        .. ":signal_handlers(true), or trigger a shutdown handle):\n  task ", e:match("^.-\n  task "))
      assert.matches("waits on shutdown signal at [^\n]*shutdown_spec.lua:%d+$", e)
      rt:close()
      e = H.errof(nexus.run, function() nexus.cancel_token():cancelled() end)
      assert.matches("^nexus.run: deadlock: 1 task%(s%) wait on something nothing can complete:\n"
        .. "  task %d+ waits on token cancelled at [^\n]*shutdown_spec.lua:%d+$", e)
    end)
  end)

  describe("rt:shutdown_stats", function()
    it("reports shutdown, signal, aborted_tasks, tasks_alive, open_handles, signal_handlers", function()
      local rt = nexus.runtime.new()
      local st = rt:shutdown_stats()
      assert.are.same({ shutdown = false, aborted_tasks = 0, tasks_alive = 0, open_handles = 0,
        signal_handlers = false }, st)
      rt:close()

      rt = nexus.runtime.builder():signal_handlers(true):build()
      assert.are.same({ shutdown = false, aborted_tasks = 0, tasks_alive = 0, open_handles = 0,
        signal_handlers = true }, rt:shutdown_stats())
      rt:block_on(function()
        for _ = 1, 3 do nexus.spawn(function() nexus.sleep(100) end) end
        local h = nexus.spawn(function() nexus.sleep(100) end)
        nexus.yield()
        h:abort()   -- an abort by hand is not a shutdown's
      end)
      rt:shutdown_handle():trigger()
      assert.are.same({ shutdown = true, aborted_tasks = 0, tasks_alive = 3, open_handles = 0,
        signal_handlers = true }, rt:shutdown_stats())
      rt:close()
      assert.are.same({ shutdown = true, aborted_tasks = 3, tasks_alive = 0, open_handles = 0,
        signal_handlers = false }, rt:shutdown_stats())
    end)

    it("a runtime with signal handlers closes cleanly, by rt:close() or when collected", function()
      -- (SANITIZE=address showed a use after free in the handles' close callbacks.)
      for _ = 1, 3 do
        local rt = nexus.runtime.builder():signal_handlers(true):build()
        assert.is_true(rt:shutdown_stats().signal_handlers)
        rt:block_on(function() nexus.sleep(0.001) end)
        rt:close()
        assert.is_false(rt:shutdown_stats().signal_handlers)
        nexus.runtime.builder():signal_handlers(true):build()
        collectgarbage()
        collectgarbage()
      end
    end)

    it("raises on something else than a runtime", function()
      assert.are.equal("rt:shutdown_stats: expected a nexus runtime, got number",
        H.errof(nexus.runtime.new().shutdown_stats, 5))
    end)
  end)

  describe("real signals (child processes)", function()
    -- Under the nexus command: a task waits on the shutdown signal; the
    -- handlers are installed once the implicit runtime exists, which
    -- nexus.shutdown_signal() makes, so "ready" is printed after it.
    local WAITER = [[
      io.stdout:setvbuf("no")
      local nexus = require "nexus"
      local sig = nexus.shutdown_signal()
      local worker = nexus.spawn(function()
        local ticks = 0
        while true do nexus.sleep(0.01); ticks = ticks + 1 end
      end)
      print("ready")
      sig:wait()
      print("shut down by signal " .. tostring(sig:signo()) .. ", worker aborted: "
        .. tostring(worker:abort()))
    ]]

    for _, c in ipairs({ { "TERM", 15 }, { "INT", 2 } }) do
      local name, signo = c[1], c[2]

      it("nexus command: SIG" .. name .. " wakes the task waiting on the shutdown signal; exit 0", function()
        local p = P.nexus(WAITER)
        assert.is_true(p:wait_for("ready\n", START), p:show())
        p:signal(name)
        assert.is_truthy(p:wait(END), p:show())
        assert.are.same({ exited = true, code = 0 }, p.status, p:show())
        assert.are.equal("ready\nshut down by signal " .. signo .. ", worker aborted: true\n", p:out())
        assert.are.equal("", p:err())
      end)

      it("nexus command: SIG" .. name .. " with no waiter aborts every task and exits 128+" .. signo, function()
        local p = P.nexus([[
          io.stdout:setvbuf("no")
          local nexus = require "nexus"
          for i = 1, 3 do
            nexus.spawn(function() while true do nexus.sleep(0.01) end end)
          end
          nexus.spawn(function() nexus.sleep(60); print("never (task)") end)
          print("ready")
          nexus.sleep(60)
          print("never (main)")
        ]])
        assert.is_true(p:wait_for("ready\n", START), p:show())
        p:signal(name)
        assert.is_truthy(p:wait(END), p:show())
        assert.are.same({ exited = true, code = 128 + signo }, p.status, p:show())
        assert.are.equal("ready\n", p:out())
        assert.are.equal("", p:err())
      end)

      it("nexus command: a second signal during a slow shutdown exits at once with 128+signal (SIG"
        .. name .. " second)", function()
        local p = P.nexus([[
          io.stdout:setvbuf("no")
          local nexus = require "nexus"
          local sig = nexus.shutdown_signal()
          print("ready")
          sig:wait()
          print("shutting down slowly")
          nexus.sleep(60)
          print("never")
        ]])
        assert.is_true(p:wait_for("ready\n", START), p:show())
        p:signal("TERM")
        assert.is_true(p:wait_for("shutting down slowly\n", END), p:show())
        local t0 = nexus.now()
        p:signal(name)
        assert.is_truthy(p:wait(END), p:show())
        assert.is_true(nexus.now() - t0 < 20, "exited at once, not after the slow shutdown")
        assert.are.same({ exited = true, code = 128 + signo }, p.status, p:show())
        assert.are.equal("ready\nshutting down slowly\n", p:out())
      end)

      it("plain luajit, explicit runtime with :signal_handlers(true): SIG" .. name .. " wakes the waiter; exit 0", function()
        local p = P.luajit([[
          io.stdout:setvbuf("no")
          local nexus = require "nexus"
          local rt = nexus.runtime.builder():signal_handlers(true):build()
          rt:block_on(function()
            local worker = nexus.spawn(function() while true do nexus.sleep(0.01) end end)
            print("ready")
            nexus.shutdown_signal():wait()
            print("shut down by signal " .. tostring(nexus.shutdown_signal():signo())
              .. ", worker aborted: " .. tostring(worker:abort()))
          end)
          rt:close()
        ]])
        assert.is_true(p:wait_for("ready\n", START), p:show())
        p:signal(name)
        assert.is_truthy(p:wait(END), p:show())
        assert.are.same({ exited = true, code = 0 }, p.status, p:show())
        assert.are.equal("ready\nshut down by signal " .. signo .. ", worker aborted: true\n", p:out())
        assert.are.equal("", p:err())
      end)
    end

    it("plain luajit: a signal nobody waits for makes block_on raise; tasks aborted, stats tell", function()
      local p = P.luajit([[
        io.stdout:setvbuf("no")
        local nexus = require "nexus"
        local rt = nexus.runtime.builder():signal_handlers(true):build()
        local tok = nexus.cancel_token()
        local ok, e = pcall(rt.block_on, rt, function()
          for i = 1, 4 do
            nexus.spawn(function() tok:drop_guard(); nexus.sleep(60) end)
          end
          print("ready")
          nexus.sleep(60)
        end)
        print(ok, e)
        local st = rt:shutdown_stats()
        print("aborted=" .. st.aborted_tasks, "signal=" .. tostring(st.signal),
          "shutdown=" .. tostring(st.shutdown), "alive=" .. st.tasks_alive,
          "guards fired=" .. tostring(tok:is_cancelled()))
        rt:close()
      ]])
      assert.is_true(p:wait_for("ready\n", START), p:show())
      p:signal("TERM")
      assert.is_truthy(p:wait(END), p:show())
      assert.are.same({ exited = true, code = 0 }, p.status, p:show())
      assert.are.equal("ready\nfalse\trt:block_on: interrupted by SIGTERM (signal 15): no task was "
        .. "waiting on the shutdown signal\naborted=5\tsignal=15\tshutdown=true\talive=0\t"
        .. "guards fired=true\n", p:out())
    end)

    it("plain luajit: a signal nobody waits for during shutdown_quiesce aborts the rest; it raises", function()
      local p = P.luajit([[
        io.stdout:setvbuf("no")
        local nexus = require "nexus"
        local rt = nexus.runtime.builder():signal_handlers(true):build()
        rt:block_on(function()
          for i = 1, 3 do nexus.spawn(function() nexus.sleep(60) end) end
        end)
        print("ready")
        print(pcall(rt.shutdown_quiesce, rt, 60))
        local st = rt:shutdown_stats()
        print("aborted=" .. st.aborted_tasks, "alive=" .. st.tasks_alive)
        rt:close()
      ]])
      assert.is_true(p:wait_for("ready\n", START), p:show())
      p:signal("INT")
      assert.is_truthy(p:wait(END), p:show())
      assert.are.same({ exited = true, code = 0 }, p.status, p:show())
      assert.are.equal("ready\nfalse\trt:shutdown_quiesce: interrupted by SIGINT (signal 2): no task was "
        .. "waiting on the shutdown signal\naborted=3\talive=0\n", p:out())
    end)

    it("plain luajit without signal handlers: SIGTERM kills it (default disposition)", function()
      local p = P.luajit([[
        io.stdout:setvbuf("no")
        local nexus = require "nexus"
        nexus.run(function() print("ready"); nexus.sleep(60) end)
      ]])
      assert.is_true(p:wait_for("ready\n", START), p:show())
      p:signal("TERM")
      assert.is_truthy(p:wait(END), p:show())
      assert.are.same({ signaled = true, signo = 15 }, p.status, p:show())
    end)

    it("rt:close() removes the handlers: SIGTERM kills the process again", function()
      local p = P.luajit([[
        io.stdout:setvbuf("no")
        local ffi = require "ffi"
        ffi.cdef "int poll(void *, unsigned long, int);"
        local nexus = require "nexus"
        local rt = nexus.runtime.builder():signal_handlers(true):build()
        rt:block_on(function() nexus.sleep(0.01) end)
        rt:close()
        print("ready")
        ffi.C.poll(nil, 0, 60000)
        print("never")
      ]])
      assert.is_true(p:wait_for("ready\n", START), p:show())
      p:signal("TERM")
      assert.is_truthy(p:wait(END), p:show())
      assert.are.same({ signaled = true, signo = 15 }, p.status, p:show())
    end)

    it("nexus command, explicit-style script, no waiter: exits 128+signal as well", function()
      local p = P.nexus([[
        io.stdout:setvbuf("no")
        local nexus = require "nexus"
        local rt = nexus.runtime.new()   -- handlers on by default under the command
        rt:block_on(function() print("ready"); nexus.sleep(60) end)
        print("never")
      ]])
      assert.is_true(p:wait_for("ready\n", START), p:show())
      p:signal("INT")
      assert.is_truthy(p:wait(END), p:show())
      assert.are.same({ exited = true, code = 130 }, p.status, p:show())
      assert.are.equal("ready\n", p:out())
    end)

    it("nexus command: a signal after a shutdown was triggered by hand exits at once", function()
      local p = P.nexus([[
        io.stdout:setvbuf("no")
        local nexus = require "nexus"
        nexus.shutdown_handle():trigger()
        print("ready")
        nexus.sleep(60)
        print("never")
      ]])
      assert.is_true(p:wait_for("ready\n", START), p:show())
      p:signal("TERM")
      assert.is_truthy(p:wait(END), p:show())
      assert.are.same({ exited = true, code = 143 }, p.status, p:show())
    end)
  end)

  describe("rt:shutdown_quiesce", function()
    it("returns true at once when no task is left", function()
      local rt = nexus.runtime.new()
      assert.are.same({ true }, { rt:shutdown_quiesce(1) })
      rt:block_on(function() end)
      assert.are.same({ true }, { rt:shutdown_quiesce(1) })
      rt:close()
    end)

    it("drives the tasks block_on left behind to their end: true", function()
      local rt = nexus.runtime.new()
      local done = 0
      rt:block_on(function()
        for _ = 1, 10 do
          nexus.spawn(function() nexus.sleep(0.02); done = done + 1 end)
        end
      end)
      assert.are.equal(0, done)
      assert.are.equal(10, rt:shutdown_stats().tasks_alive)
      local t0 = nexus.now()
      assert.are.same({ true }, { rt:shutdown_quiesce(5) })
      assert.is_true(nexus.now() - t0 < 1, "returned when idle, not at the deadline")
      assert.are.equal(10, done)
      assert.are.equal(0, rt:shutdown_stats().tasks_alive)
      rt:close()
    end)

    it("returns nil, \"timeout\" when the tasks do not finish in time, and they stay", function()
      local rt = nexus.runtime.new()
      local ticks = 0
      local h
      rt:block_on(function()
        h = nexus.spawn(function() while true do nexus.sleep(0.01); ticks = ticks + 1 end end)
      end)
      local t0 = nexus.now()
      local r = H.pack(rt:shutdown_quiesce(0.1))
      local dt = nexus.now() - t0
      assert.are.same({ n = 2, nil, "timeout" }, r)
      assert.is_true(dt >= 0.1 and dt < 0.1 + LATE, "took " .. dt)
      assert.is_true(ticks > 0, "the task ran during quiesce")
      assert.is_false(h:is_finished())
      rt:close()
      assert.is_true(h:is_finished())
    end)

    it("quiesce(0) runs what is ready once and reports a timeout if tasks remain", function()
      local rt = nexus.runtime.new()
      rt:block_on(function() nexus.spawn(function() nexus.sleep(10) end) end)
      assert.are.same({ n = 2, nil, "timeout" }, H.pack(rt:shutdown_quiesce(0)))
      rt:close()
    end)

    it("returns nil, \"deadlock\" when what is left waits on what nothing can complete", function()
      local rt = nexus.runtime.new()
      local tok = nexus.cancel_token()
      local woke = false
      rt:block_on(function() nexus.spawn(function() tok:cancelled(); woke = true end) end)
      assert.are.same({ n = 2, nil, "deadlock" }, H.pack(rt:shutdown_quiesce(math.huge)))
      -- Within a finite time it cannot know: it waits, then times out.
      assert.are.same({ n = 2, nil, "timeout" }, H.pack(rt:shutdown_quiesce(0.02)))
      tok:cancel()
      assert.are.same({ true }, { rt:shutdown_quiesce(1) })
      assert.is_true(woke)
      rt:close()
    end)

    it("raises an error escaping a leftover task, as block_on does", function()
      local rt = nexus.runtime.new()
      rt:block_on(function()
        nexus.spawn(function() nexus.sleep(0.01); error("late failure") end)
      end)
      local e = H.errof(rt.shutdown_quiesce, rt, 5)
      assert.is_truthy(e and e:find("late failure", 1, true), tostring(e))
      assert.are.same({ true }, { rt:shutdown_quiesce(1) })
      rt:close()
    end)

    it("raises on bad input, naming itself", function()
      local rt = nexus.runtime.new()
      local function err(...) return H.errof(rt.shutdown_quiesce, ...) end
      assert.matches("^rt:shutdown_quiesce: expected a nexus runtime, got number", err(5, 1))
      assert.matches("^rt:shutdown_quiesce: secs must be a number, got string", err(rt, "1"))
      assert.matches("^rt:shutdown_quiesce: secs must be a number, got nil", err(rt))
      assert.matches("^rt:shutdown_quiesce: secs must be a non%-negative number", err(rt, -1))
      assert.matches("^rt:shutdown_quiesce: secs must be a non%-negative number", err(rt, 0 / 0))
      local inner = rt:block_on(function() return H.errof(rt.shutdown_quiesce, rt, 1) end)
      assert.matches("^rt:shutdown_quiesce: called from inside a running task", inner)
      rt:close()
      assert.matches("^rt:shutdown_quiesce: the runtime is closed", err(rt, 1))
    end)
  end)

  describe("bad input", function()
    it("signal and handle methods called with something else raise, naming the method", function()
      local rt = nexus.runtime.new()
      local sh = rt:shutdown_handle()
      local sig = sh:signal()
      for _, m in ipairs({ "wait", "is_shutdown", "signo" }) do
        for _, bad in ipairs({ 5, {}, sh }) do
          assert.are.equal("shutdown_signal:" .. m .. ": expected a shutdown signal, got " .. type(bad),
            H.errof(sig[m], bad))
        end
      end
      for _, m in ipairs({ "trigger", "is_shutdown", "signal" }) do
        for _, bad in ipairs({ 5, {}, sig }) do
          assert.are.equal("shutdown_handle:" .. m .. ": expected a shutdown handle, got " .. type(bad),
            H.errof(sh[m], bad))
        end
      end
      assert.is_false(sh:is_shutdown(), "no bad call triggered it")
      rt:close()
    end)

    it("rt:shutdown_handle on something else than a runtime raises", function()
      local rt = nexus.runtime.new()
      for _, bad in ipairs({ 5, {}, "rt" }) do
        assert.are.equal("rt:shutdown_handle: expected a nexus runtime, got " .. type(bad),
          H.errof(rt.shutdown_handle, bad))
      end
      rt:close()
    end)

    it("nexus.shutdown_signal and nexus.shutdown_handle outside a task raise at the caller", function()
      for _, f in ipairs({ "shutdown_signal", "shutdown_handle" }) do
        local ok, e = pcall(function() local s = nexus[f](); return s end)
        assert.is_false(ok)
        assert.matches("^[^:]*shutdown_spec%.lua:%d+: nexus%." .. f .. ": not inside a nexus task$", e)
      end
    end)
  end)
end)

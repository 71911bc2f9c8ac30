-- Shutdown: the shutdown signal (single waiter), shutdown handles,
-- rt:shutdown_quiesce, rt:shutdown_stats.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local nexus = require "nexus"
local LATE = H.LATE

describe("shutdown", function()
  describe("the shutdown signal", function()
    it("without signal handlers (plain luajit's default) a lone waiter is a deadlock, and the error says why", function()
      local rt = nexus.runtime.new()
      assert.is_false(rt:shutdown_stats().signal_handlers)
      local e = H.errof(rt.block_on, rt, function() nexus.shutdown_signal():wait() end)
      assert.are.equal("rt:block_on: deadlock: 1 task(s) wait on something nothing can complete "
        .. "(one waits on the shutdown signal, but the runtime has no signal handlers: build it with "
        .. ":signal_handlers(true), or trigger a shutdown handle)", e)
      rt:close()
      e = H.errof(nexus.run, function() nexus.cancel_token():cancelled() end)
      assert.are.equal("nexus.run: deadlock: 1 task(s) wait on something nothing can complete", e)
    end)
  end)

  describe("signal handlers", function()
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

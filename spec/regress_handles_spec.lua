-- Regressions of task handles and runtimes:
-- * tostring(h) said "aborted" for a task that returned once its runtime
--   was collected, and for a pooled task that returned normally;
-- * h:abort() of the running task inside its own coroutine.wrap did not
--   end it (the yield that ends it went to the wrap's caller);
-- * rt.block_on({}, fn) gave "attempt to call a nil value", naming nothing;
-- * resuming a task's coroutine by hand went undetected;
-- * every runtime ever created left an entry in the serial -> runtime
--   table (about 8 bytes, 7 MB per million runtimes).
local nexus = require "nexus"
local core = require "nexus.core"

describe("regress: task handles and runtimes", function()
  it("tostring of a finished task's handle after its runtime was collected", function()
    -- "report": the failing task is printed, and does not stop the runtime
    local rt = nexus.runtime.builder():on_task_error("report"):build()
    local ok_h, err_h, ab_h
    rt:block_on(function()
      ok_h = nexus.spawn(function() return 1 end)
      err_h = nexus.spawn(function() error("x") end)
      ab_h = nexus.spawn(function() nexus.sleep(60) end)
      nexus.sleep(0.001)
    end)
    rt = nil
    collectgarbage()
    collectgarbage()
    assert.matches("finished", tostring(ok_h), 1, true)
    assert.matches("failed", tostring(err_h), 1, true)
    assert.matches("aborted", tostring(ab_h), 1, true)   -- closed with its runtime
    assert.has_error(function() ok_h:join() end, "handle:join: the runtime of task " .. ok_h:id() .. " is gone")
  end)

  it("tostring of a pooled task's handle after it returned normally", function()
    local rt = nexus.runtime.builder():task_pool(2):build()
    local ph
    rt:block_on(function()
      nexus.spawn_pooled(function() ph = nexus.current() end)
      nexus.sleep(0.001)
    end)
    assert.matches("finished", tostring(ph), 1, true)
    -- once its record runs another task, nothing tells how it ended
    rt:block_on(function()
      nexus.spawn_pooled(function() end)
      nexus.spawn_pooled(function() end)
      nexus.sleep(0.001)
    end)
    assert.not_matches("aborted", tostring(ph), 1, true)
    rt:close()
  end)

  it("h:abort() of the running task inside its own coroutine.wrap ends it", function()
    local reached = {}
    local h
    nexus.run(function()
      h = nexus.spawn(function()
        coroutine.wrap(function()
          nexus.current():abort()
          reached.wrap = true
        end)()
        reached.body = true
      end)
      nexus.sleep(0.005)
    end)
    assert.is_nil(reached.wrap)
    assert.is_nil(reached.body)
    assert.matches("aborted", tostring(h), 1, true)
  end)

  it("a self-abort caught inside the wrap still ends the task at its next suspension", function()
    local reached
    local h
    nexus.run(function()
      h = nexus.spawn(function()
        local ok, err = pcall(coroutine.wrap(function() nexus.current():abort() end))
        assert(not ok and err:find("aborted itself", 1, true))
        nexus.yield()
        reached = true
      end)
      nexus.sleep(0.005)
    end)
    assert.is_nil(reached)
    assert.matches("aborted", tostring(h), 1, true)
  end)

  it("block_on, block_on_busy and shutdown_quiesce name themselves when self is not a runtime", function()
    local rt = nexus.runtime.new()
    assert.has_error(function() rt.block_on({}, function() end) end,
      "rt:block_on: expected a nexus runtime, got table (call it as rt:block_on(...))")
    assert.has_error(function() rt.block_on_busy(nil, function() end) end,
      "rt:block_on_busy: expected a nexus runtime, got nil (call it as rt:block_on_busy(...))")
    assert.has_error(function() rt.shutdown_quiesce(1, 1) end,
      "rt:shutdown_quiesce: expected a nexus runtime, got number (call it as rt:shutdown_quiesce(...))")
    rt:close()
  end)

  it("a task whose coroutine was resumed by hand ends with an error saying so", function()
    local ok, err, hand
    nexus.run(function()
      local co
      local victim = nexus.spawn(function()
        co = coroutine.running()
        nexus.sleep(0.02)
        return "normal"
      end)
      nexus.sleep(0.005)
      hand = { coroutine.resume(co) }
      ok, err = victim:result()
    end)
    assert.is_true(hand[1])
    assert.is_false(ok)
    assert.matches("was resumed outside the runtime", err, 1, true)
  end)

  it("runtimes created and closed one after another reuse one serial-table entry", function()
    collectgarbage()
    collectgarbage()
    local before = core._runtime_slots()
    for i = 1, 5000 do
      local rt = nexus.runtime.new()
      rt:close()
      if i % 100 == 0 then collectgarbage() end
    end
    collectgarbage()
    collectgarbage()
    assert.is_true(core._runtime_slots() <= before + 128,
      ("table grew from %d to %d"):format(before, core._runtime_slots()))
  end)

  it("a handle of a collected runtime never finds a new runtime that reuses its entry", function()
    local rt = nexus.runtime.new()
    local h = rt:block_on(function() return nexus.current() end)
    rt:close()
    rt = nil
    collectgarbage()
    collectgarbage()
    local rt2 = nexus.runtime.new()
    rt2:block_on(function()
      nexus.spawn(function() nexus.sleep(0.01) end)   -- a task in the same slot
      assert.is_false(h:abort())
      assert.is_true(h:is_finished())
    end)
    rt2:close()
  end)
end)

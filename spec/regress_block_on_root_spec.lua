-- Regression: a block_on that raised (deadlock, or stopped by a task
-- error) left its root parked in the runtime. In a later block_on that
-- root consumed a value, which was lost (rx:try_recv() after
-- tx:send("hello") gave nil), and it kept single-waiter slots (the
-- shutdown signal: "another task is already waiting"). A block_on that
-- raises leaves no root of its own behind.
local nexus = require "nexus"

describe("regress: a block_on that raises leaves no root behind", function()
  it("after a deadlock, a later block_on receives the value sent", function()
    local rt = nexus.runtime.new()
    local tx, rx = nexus.channel(4)
    local ok, err = pcall(rt.block_on, rt, function() return rx:recv() end)
    assert.is_false(ok)
    assert.matches("deadlock", err, 1, true)
    assert.are.equal(0, rt:stats().tasks_alive)
    assert.are.equal("hello", rt:block_on(function() tx:send("hello"); return rx:try_recv() end))
    rt:close()
  end)

  it("after a deadlock on the shutdown signal, a later block_on may wait on it", function()
    local rt = nexus.runtime.new()
    local ok, err = pcall(rt.block_on, rt, function() nexus.shutdown_signal():wait() end)
    assert.is_false(ok)
    assert.matches("deadlock", err, 1, true)
    local got = rt:block_on(function()
      nexus.spawn(function() nexus.shutdown_handle():trigger() end)
      nexus.shutdown_signal():wait()
      return "woke"
    end)
    assert.are.equal("woke", got)
    rt:close()
  end)

  it("after a task error stopped it, the root is gone and other tasks stay parked", function()
    local rt = nexus.runtime.new()
    local tx, rx = nexus.channel(4)
    local otx, orx = nexus.channel(4)
    local other_got
    local ok, err = pcall(rt.block_on, rt, function()
      nexus.spawn(function() other_got = orx:recv() end)  -- parked, stays
      nexus.spawn(function() error("child failed") end)
      return rx:recv()                                    -- the root, parked
    end)
    assert.is_false(ok)
    assert.matches("child failed", err, 1, true)
    assert.are.equal(1, rt:stats().tasks_alive)
    rt:block_on(function() otx:send("one"); nexus.yield() end)
    assert.are.equal("one", other_got)
    -- the old root no longer takes what is sent on its channel
    assert.are.equal("two", rt:block_on(function() tx:send("two"); return rx:try_recv() end))
    assert.are.equal(0, rt:stats().tasks_alive)
    rt:close()
  end)

  it("the aborted root's handle (nexus.current) reads aborted", function()
    local rt = nexus.runtime.new()
    local h
    pcall(rt.block_on, rt, function()
      h = nexus.current()
      local _, rx = nexus.channel(1)
      rx:recv()
    end)
    assert.matches("aborted", tostring(h), 1, true)
    rt:close()
  end)
end)

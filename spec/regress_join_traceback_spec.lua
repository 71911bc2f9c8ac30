-- Regression: h:join() re-raised a string error without the failed task's
-- traceback, so once the joiner failed too, the failed task's stack was
-- lost. A string error is now re-raised as "msg\nstack traceback:\n..."
-- with the failed task's frames (shared/API.md, Composing tasks); any
-- other error value is raised as it is.
local nexus = require "nexus"

describe("regress: join keeps the failed task's traceback", function()
  local function deep_failure() error("deep failure") end
  local function failing_task() deep_failure() end

  it("a string error is re-raised with the failed task's traceback appended", function()
    local err = nexus.run(function()
      local h = nexus.spawn(failing_task)
      local ok, e = pcall(h.join, h)
      assert.is_false(ok)
      return e
    end)
    assert.matches("deep failure\nstack traceback:\n", err, 1, true)
    assert.matches("in function 'deep_failure'", err, 1, true)
  end)

  it("the joiner's own failure, raised from nexus.run, still shows the failed task's stack", function()
    local ok, err = pcall(nexus.run, function()
      local h = nexus.spawn(failing_task)
      h:join()
    end)
    assert.is_false(ok)
    assert.matches("deep failure", err, 1, true)
    assert.matches("in function 'deep_failure'", err, 1, true)
  end)

  it("a table error is re-raised as the same table", function()
    local obj = { code = 42 }
    local got = nexus.run(function()
      local h = nexus.spawn(function() error(obj) end)
      return select(2, pcall(h.join, h))
    end)
    assert.are.equal(obj, got)
  end)

  it("result() still gives false, the error value and the traceback apart", function()
    local ok, e, tb = nexus.run(function()
      return nexus.spawn(failing_task):result()
    end)
    assert.is_false(ok)
    assert.matches("deep failure$", e)
    assert.matches("stack traceback:", tb, 1, true)
  end)
end)

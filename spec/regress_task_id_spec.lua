-- Task ids past 2^31 (the root takes 2^32 + 5, the task + 6) print in full in tostring(h) and in error messages
-- (they were formatted with %d: a wrapped, negative number).
local nexus = require "nexus"

describe("task ids past 2^31", function()
  it("print in full in tostring and in join's errors", function()
    local rt = nexus.runtime.new()
    rt:_next_id(2 ^ 32 + 5)
    local r = rt:block_on(function()
      local h = nexus.spawn(function() return 1 end)
      local s = tostring(h)
      h:join()
      local ok, err = pcall(h.join, h)
      return { s = s, id = h:id(), err = err, ok = ok }
    end)
    rt:close()
    assert.are.equal(4294967302, r.id)
    assert.are.equal("nexus.task(4294967302, ready)", r.s)
    assert.is_false(r.ok)
    assert.matches("handle:join: task 4294967302 was already joined", r.err)
  end)
end)

-- Cancellation tokens: the tree (child cancelled with its parent, never
-- the reverse), waiters (any number, aborted, timed out), cancelling a
-- tree of 10,000 descendants, drop guards, garbage collection, bad input.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local nexus = require "nexus"

-- Spawns n tasks waiting on tok:cancelled(); each adds 1 to box.woke.
local function waiters(tok, n, box)
  local hs = {}
  for i = 1, n do
    hs[i] = nexus.spawn(function() tok:cancelled(); box.woke = box.woke + 1 end)
  end
  return hs
end

describe("cancel tokens", function()
  describe("a token outliving the runtime of its waiters", function()
    -- The waiters' queue keeps entries of aborted waiters until they are
    -- popped; they point at the old runtime's task records, which must
    -- not be freed under them (SANITIZE=address shows a use after free).
    local function waited_in_closed_runtime(tok, n)
      local a = nexus.runtime.new()
      a:block_on(function()
        for _ = 1, n do nexus.spawn(function() tok:cancelled() end) end
      end)
      a:close()
    end

    it("then cancelled in another runtime after the first was collected", function()
      local tok = nexus.cancel_token()
      waited_in_closed_runtime(tok, 3)
      collectgarbage()
      collectgarbage()
      local box = { woke = 0 }
      nexus.run(function()
        nexus.spawn(function() nexus.sleep(0.05) end)   -- reuses the freed records, if freed
        waiters(tok, 2, box)
        nexus.yield()
        tok:cancel()
      end)
      assert.are.equal(2, box.woke)
    end)

    it("then cancelled outside any runtime after the first was collected", function()
      local tok = nexus.cancel_token()
      waited_in_closed_runtime(tok, 20)
      collectgarbage()
      collectgarbage()
      tok:cancel()
      assert.is_true(tok:is_cancelled())
    end)

    it("then waited on again in another runtime, many times over", function()
      local tok = nexus.cancel_token()
      for _ = 1, 20 do
        waited_in_closed_runtime(tok, 5)
        collectgarbage()
      end
      local box = { woke = 0 }
      nexus.run(function()
        waiters(tok, 5, box)
        nexus.yield()
        tok:cancel()
      end)
      assert.are.equal(5, box.woke)
    end)
  end)

  describe("bad input", function()
    local tok = nexus.cancel_token()

    it("token methods called with something else than a token raise, naming the method", function()
      for _, m in ipairs({ "child", "cancel", "is_cancelled", "cancelled", "drop_guard" }) do
        for _, bad in ipairs({ 5, "x", {}, true }) do
          local e = H.errof(tok[m], bad)
          assert.are.equal("token:" .. m .. ": expected a cancel token, got " .. type(bad), e)
        end
        assert.are.equal("token:" .. m .. ": expected a cancel token, got nil", H.errof(tok[m]))
      end
    end)

    it("guard methods called with something else than a guard raise, naming the method", function()
      local g = nexus.run(function() return tok:child():drop_guard() end)
      for _, m in ipairs({ "disarm", "is_armed" }) do
        for _, bad in ipairs({ 5, "x", {}, tok }) do
          local e = H.errof(g[m], bad)
          assert.are.equal("guard:" .. m .. ": expected a drop guard, got " .. type(bad), e)
        end
      end
    end)
  end)
end)

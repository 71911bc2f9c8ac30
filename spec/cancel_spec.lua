-- Cancellation tokens: the tree (child cancelled with its parent, never
-- the reverse), waiters (any number, aborted, timed out), cancelling a
-- tree of 10,000 descendants, drop guards, garbage collection, bad input.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local nexus = require "nexus"

describe("cancel tokens", function()
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

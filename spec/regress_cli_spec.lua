-- Regressions of the nexus command:
-- * a bare coroutine.yield() at the top level, before any nexus call,
--   silently ended the script with exit 0 (everything after it skipped);
--   the docs say it acts as nexus.yield();
-- * an error object whose __tostring raises hid the real error behind
--   that __tostring's failure.
local dir = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
local H = dofile(dir .. "helpers.lua")

describe("regress: the nexus command", function()
  after_each(H.cleanup)

  it("a bare coroutine.yield() at top level acts as nexus.yield()", function()
    local r = H.nexus_script([[
      print("before")
      coroutine.yield()
      print("after")
      local nexus = require "nexus"
      local h = nexus.spawn(function() return "child" end)
      coroutine.yield("ignored", 2)
      print(h:is_finished(), h:join())
    ]])
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal("before\nafter\ntrue\tchild\n", r.out)
    assert.are.equal("", r.err)
  end)

  it("a bare yield through pcall at top level returns true and goes on", function()
    local r = H.nexus_script([[
      print(pcall(coroutine.yield))
      print("main")
    ]])
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal("true\nmain\n", r.out)
  end)

  it("an error after a bare yield is reported with exit 1", function()
    local r = H.nexus_script([[
      coroutine.yield()
      error("after the yield")
    ]])
    assert.are.equal(1, r.rc)
    assert.matches("after the yield", r.err, 1, true)
  end)

  it("an error object whose __tostring raises is shown by its type and that failure", function()
    local r = H.nexus_script([[
      local nexus = require "nexus"
      nexus.sleep(0.001)
      error(setmetatable({}, { __tostring = function() error("bad tostring") end }))
    ]])
    assert.are.equal(1, r.rc)
    assert.matches("nexus: (error object is a table value; its __tostring failed: ", r.err, 1, true)
    assert.matches("bad tostring", r.err, 1, true)
    assert.not_matches("in function 'errmsg'", r.err, 1, true)
  end)

  it("an error object whose __tostring returns a non-string, before any nexus call", function()
    local r = H.nexus_script([[
      error(setmetatable({}, { __tostring = function() return {} end }))
    ]])
    assert.are.equal(1, r.rc)
    assert.are.equal("nexus: (error object is a table value; its __tostring failed: it returned a table)\n", r.err)
  end)
end)

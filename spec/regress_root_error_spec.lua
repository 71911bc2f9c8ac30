-- Regression: the root task's error was held back until every other task
-- ended, then lost. nexus.run reported "deadlock" when a child stayed
-- parked on a channel; with a child that loops forever (a heartbeat) the
-- error was never shown and the process ran on. An error escaping the
-- root now stops the runtime at once, with its traceback.
local dir = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
local H = dofile(dir .. "helpers.lua")
local nexus = require "nexus"

describe("regress: an error escaping the root task", function()
  after_each(H.cleanup)

  it("nexus.run raises it while a child is parked on a channel (not 'deadlock')", function()
    local parked
    local ok, err = pcall(nexus.run, function()
      local _, rx = nexus.channel(1)
      parked = nexus.spawn(function() rx:recv() end)
      nexus.sleep(0.005)
      error("root failed")
    end)
    assert.is_false(ok)
    assert.matches("root failed\nstack traceback:", err, 1, true)
    assert.not_matches("deadlock", err, 1, true)
    assert.matches("aborted", tostring(parked), 1, true)   -- closed with its runtime
  end)

  it("nexus.run raises it at once while a heartbeat task runs forever", function()
    local beats = 0
    local t0 = nexus.now()
    local ok, err = pcall(nexus.run, function()
      nexus.spawn(function() while true do beats = beats + 1; nexus.sleep(0.001) end end)
      nexus.sleep(0.02)
      error({ code = 7 })
    end)
    assert.is_false(ok)
    assert.are.same({ code = 7 }, err)
    assert.is_true(beats > 0)
    assert.is_true(nexus.now() - t0 < 5)
  end)

  it("block_on of a runtime whose tasks stay parked raises it too; the tasks stay for later", function()
    local rt = nexus.runtime.new()
    local tx, rx = nexus.channel(1)
    local got
    local child
    local ok, err = pcall(rt.block_on, rt, function()
      child = nexus.spawn(function() got = rx:recv() end)
      error("root failed")
    end)
    assert.is_false(ok)
    assert.matches("root failed", err, 1, true)
    rt:block_on(function() tx:send("later") child:join() end)
    assert.are.equal("later", got)
    rt:close()
  end)

  it("nexus command: an error in the main chunk is printed and exits 1 while a heartbeat runs", function()
    local r = H.sh("timeout 60 " .. H.q(H.nexus_bin()) .. " " .. H.q(H.tmpfile([[
      local nexus = require "nexus"
      nexus.spawn(function() while true do nexus.sleep(0.005) end end)
      nexus.sleep(0.02)
      error("main failed")
    ]])))
    assert.are.equal(1, r.rc, r.err)
    assert.matches("main failed\nstack traceback:", r.err, 1, true)
  end)

  it("nexus command: an error in the main chunk while a child is parked is not reported as a deadlock", function()
    local r = H.sh("timeout 60 " .. H.q(H.nexus_bin()) .. " " .. H.q(H.tmpfile([[
      local nexus = require "nexus"
      local _, rx = nexus.channel(1)
      nexus.spawn(function() rx:recv() end)
      nexus.sleep(0.01)
      error("main failed")
    ]])))
    assert.are.equal(1, r.rc, r.err)
    assert.matches("main failed", r.err, 1, true)
    assert.not_matches("deadlock", r.err, 1, true)
  end)
end)

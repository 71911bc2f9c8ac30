-- The local channel, nexus.channel(capacity): return values, FIFO service,
-- the close rules, identity of values, aborts and timeouts of waiters,
-- runtime close, several block_on calls, and bad input.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local nexus = require "nexus"
local pack = H.pack

local function gc()
  collectgarbage("collect")
  collectgarbage("collect")
end

-- Runs fn as the root task of a fresh runtime and returns its results;
-- a deadlock (a waiter nobody wakes) fails the spec instead of hanging.
local run = nexus.run

describe("channel", function()
  describe("rx:close with a task waiting in rx:recv", function()
    it("wakes the waiting receiver with nil, \"closed\"", function()
      local r = run(function()
        local _, rx = nexus.channel(1)
        local h = nexus.spawn(function() return pack(rx:recv()) end)
        nexus.yield()                    -- h waits in recv
        rx:close()                       -- from another task
        return h:join()
      end)
      assert.are.same({ n = 2, nil, "closed" }, r)
    end)
  end)
  describe("a granted sender aborted after every sender closed", function()
    it("wakes the waiting receiver with nil, \"closed\" (no hang)", function()
      local r = run(function()
        local tx, rx = nexus.channel(1)
        tx:send(1)
        local s2 = nexus.spawn(function() tx:send(2) end)
        nexus.yield()                    -- s2 waits for room
        tx:close()                       -- the only sender object
        local h = nexus.spawn(function()
          local a = rx:recv()            -- takes 1: s2 is granted the room
          return pack(a, rx:recv())      -- waits for s2's value
        end)
        nexus.yield()                    -- h ran; s2 is queued after us
        assert(s2:abort())               -- s2 never used its grant
        return h:join()
      end)
      assert.are.same({ n = 3, 1, nil, "closed" }, r)
    end)
  end)
end)

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
  describe("a channel whose waiters a closed runtime aborted", function()
    -- The runtime's task records are freed with it: the channel must not
    -- keep entries pointing at them (SANITIZE=address catches a read).
    it("serves waiters of another runtime afterwards, in order", function()
      local tx, rx = nexus.channel(1)
      do
        local rt = nexus.runtime.new()
        rt:block_on(function()
          tx:send(0)
          for i = 1, 20 do nexus.spawn(function() tx:send(i) end) end
          nexus.yield()                  -- 20 senders wait for room
        end)
        rt:close()                       -- aborts them
      end
      gc()                               -- the first runtime is freed
      local rt2 = nexus.runtime.new()
      local got = rt2:block_on(function()
        for i = 1, 20 do nexus.spawn(function() tx:send(100 + i) end) end
        local got = {}
        for i = 1, 21 do got[i] = rx:recv() end
        return got
      end)
      rt2:close()
      local want = { 0 }
      for i = 1, 20 do want[i + 1] = 100 + i end
      assert.are.same(want, got)
    end)
  end)
  describe("a receiver that is garbage-collected", function()
    it("drops the queued values, though senders live on", function()
      local tx, rx = nexus.channel(4)
      local alive = setmetatable({}, { __mode = "k" })
      for _ = 1, 3 do
        local v = {}
        alive[v] = true
        assert.is_true(tx:try_send(v))
      end
      rx = nil
      gc()
      assert.is_nil(next(alive), "queued values outlived the receiver")
      assert.are.same({ n = 2, nil, "closed" }, pack(tx:try_send(1)))
    end)
  end)
end)

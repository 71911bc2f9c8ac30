-- The hand-off of src/chan.h: a send that wakes a receiver waiting on an
-- empty channel takes the value off the ring for it. Until the receiver
-- runs, the value is still the channel's first for everyone: len() counts
-- it, it fills the capacity, another recv takes it, an aborted receiver
-- leaves it to the next one, a sender that must wait puts it back, and
-- rx:close drops it.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local nexus = require "nexus"
local pack = H.pack
local run = nexus.run

describe("channel hand-off", function()
  it("the handed value counts in len() and against the capacity until taken", function()
    local r = pack(run(function()
      local tx, rx = nexus.channel(1)
      local h = nexus.spawn(function() return rx:recv() end)
      nexus.yield()                        -- h waits in recv
      assert(tx:try_send("a"))             -- handed to h, h is ready
      local len, full = tx:len(), pack(tx:try_send("b"))
      local s = tostring(rx)
      return h:join(), len, full, s, rx:len()
    end))
    assert.are.same({ "a", 1, { n = 2, nil, "full" }, "nexus.channel.rx(1/1)", 0 }, { r[1], r[2], r[3], r[4], r[5] })
  end)

  it("another task's try_recv takes the handed value first; the woken receiver gets the next", function()
    local r = pack(run(function()
      local tx, rx = nexus.channel(2)
      local h = nexus.spawn(function() return rx:recv() end)
      nexus.yield()
      tx:send(1)                           -- handed to h
      tx:send(2)                           -- queued behind it
      local stolen = rx:try_recv()
      return stolen, h:join(), rx:len()
    end))
    assert.are.same({ n = 3, 1, 2, 0 }, r)
  end)

  it("a receiver aborted before it runs leaves the value to the next recv, in order", function()
    local r = pack(run(function()
      local tx, rx = nexus.channel(2)
      local h = nexus.spawn(function() return rx:recv() end)
      nexus.yield()
      tx:send(1)
      tx:send(2)
      h:abort()
      local a, b = rx:recv(), rx:recv()
      return a, b, rx:len()
    end))
    assert.are.same({ n = 3, 1, 2, 0 }, r)
  end)

  it("a sender that must wait puts the value back; it is granted room when the value is taken", function()
    local r = pack(run(function()
      local tx, rx = nexus.channel(1)
      local got = {}
      local h = nexus.spawn(function()
        got[#got + 1] = rx:recv()
        got[#got + 1] = rx:recv()
      end)
      nexus.yield()                        -- h waits
      local s = nexus.spawn(function()
        tx:send(1)                         -- handed to h
        tx:send(2)                         -- no room: waits
        return "sent"
      end)
      local done = s:join()
      h:join()
      return done, got[1], got[2]
    end))
    assert.are.same({ n = 3, "sent", 1, 2 }, r)
  end)

  it("rx:close drops a handed value that was not taken; senders see closed", function()
    local r = pack(run(function()
      local tx, rx = nexus.channel(1)
      local h = nexus.spawn(function() return pack(rx:recv()) end)
      nexus.yield()
      tx:send("x")                         -- handed to h
      h:abort()
      rx:close()
      return pack(tx:send("y")), rx:len(), pack(rx:try_recv())
    end))
    assert.are.same({ n = 3, { n = 2, nil, "closed" }, 0, { n = 2, nil, "closed" } }, r)
  end)

  it("a receiver in a select is not handed to: its recv op takes the value when it wins", function()
    local r = pack(run(function()
      local tx, rx = nexus.channel(1)
      local h = nexus.spawn(function()
        return pack(nexus.select(rx:recv_op(), nexus.sleep_op(10)))
      end)
      nexus.yield()
      tx:send(7)
      return h:join()
    end))
    assert.are.same({ n = 2, 1, 7 }, r[1])
  end)

  it("ping-pong over two capacity-1 channels keeps every value, in order", function()
    local n = 10000
    local r = pack(run(function()
      local ab_tx, ab_rx = nexus.channel(1)
      local ba_tx, ba_rx = nexus.channel(1)
      local b = nexus.spawn(function()
        for _ = 1, n do ba_tx:send(ab_rx:recv()) end
      end)
      local ok = true
      for i = 1, n do
        ab_tx:send(i)
        if ba_rx:recv() ~= i then ok = false end
      end
      b:join()
      return ok, ab_rx:len(), ba_rx:len()
    end))
    assert.are.same({ n = 3, true, 0, 0 }, r)
  end)
end)

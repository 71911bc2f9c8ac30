-- Regression: a send on the local channel (nexus.channel) waiting for room
-- through a sender that another task then closed did not give up: it
-- waited until the receiver made room, or forever (with no other sender,
-- a deadlock). The byte and cross-thread channels had the same defect and
-- were fixed before (regress_bytes_claims_spec, regress_mpsc_closed_sender_spec);
-- now all three give nil, "closed" at once, and the waits through other
-- senders keep their places. Also through a select's send op.
local nexus = require "nexus"

-- join, bounded: a wait that never ends fails the test instead of hanging
local function join_within(h, secs)
  local ok, r = nexus.timeout(secs, h.join, h)
  assert(ok, "the waiting send did not give up within " .. secs .. " s")
  return r
end

describe("regress: local channel sends waiting through a sender that is closed", function()
  it("give up with nil, closed while another sender keeps the channel open", function()
    nexus.run(function()
      local tx, rx = nexus.channel(1)
      local other = tx:clone()
      assert(tx:send("first"))                             -- full
      local w = nexus.spawn(function() return { tx:send("never") } end)
      local w2 = nexus.spawn(function() return { other:send("second") } end)
      nexus.yield()
      tx:close()
      assert.are.same({ nil, "closed" }, join_within(w, 1))
      assert.are.equal("first", rx:recv())                -- room for w2: it kept its place
      assert.are.same({ true }, join_within(w2, 1))
      other:close()
      assert.are.equal("second", rx:recv())
      assert.are.same({ nil, "closed" }, { rx:recv() })
    end)
  end)

  it("give up when that was the only sender (no deadlock), several at once", function()
    nexus.run(function()
      local tx, rx = nexus.channel(1)
      assert(tx:send(1))
      local ws = {}
      for i = 1, 4 do ws[i] = nexus.spawn(function() return { tx:send(i + 1) } end) end
      nexus.yield()
      tx:close()
      for i = 1, 4 do assert.are.same({ nil, "closed" }, join_within(ws[i], 1)) end
      assert.are.equal(1, rx:recv())
      assert.are.same({ nil, "closed" }, { rx:recv() })
    end)
  end)

  it("one granted the turn, whose sender is closed before it runs, passes the turn on", function()
    nexus.run(function()
      local tx, rx = nexus.channel(1)
      local other = tx:clone()
      assert(tx:send("a"))
      local w = nexus.spawn(function() return { tx:send("dropped") } end)
      local w2 = nexus.spawn(function() return { other:send("b") } end)
      nexus.yield()
      assert.are.equal("a", rx:recv())                    -- grants w the turn; w has not run
      tx:close()
      assert.are.same({ nil, "closed" }, join_within(w, 1))
      assert.are.same({ true }, join_within(w2, 1))
      other:close()
      assert.are.equal("b", rx:recv())
      assert.are.same({ nil, "closed" }, { rx:recv() })
    end)
  end)

  it("a send inside nexus.timeout gives up with closed, not timeout", function()
    nexus.run(function()
      local tx, rx = nexus.channel(1)
      assert(tx:send(1))
      local w = nexus.spawn(function() return { nexus.timeout(5, tx.send, tx, 2) } end)
      nexus.yield()
      tx:close()
      assert.are.same({ true, nil, "closed" }, join_within(w, 1))
      rx:close()
    end)
  end)
  it("a select's send op waiting through a sender that is closed completes with closed", function()
    nexus.run(function()
      local tx, rx = nexus.channel(1)
      local keep_idle, idle = nexus.channel(1)   -- the sender kept: collected, it would close the channel
      assert(tx:send(1))
      local w = nexus.spawn(function() return { nexus.select(idle:recv_op(), tx:send_op(2)) } end)
      nexus.yield()
      tx:close()
      assert.are.same({ 2, nil, "closed" }, join_within(w, 1))
      assert.are.equal(1, rx:recv())
      assert.are.same({ nil, "closed" }, { rx:recv() })
      assert(keep_idle)
    end)
  end)
end)

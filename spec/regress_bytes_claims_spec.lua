-- Regressions of the byte channel:
-- * a send (or claim) waiting for room through a sender did not give up
--   when that sender was closed: it waited forever, or the run ended in a
--   deadlock, where channels-bytes.md promises nil, "closed";
-- * aborting a task that held an uncommitted claim stalled the channel
--   until the next GC (the deadlock detector then reported a deadlock a
--   GC would have cleared). The room now comes back at once.
local nexus = require "nexus"

describe("regress: byte channel claims and closed senders", function()
  it("a send waiting for room gives up with closed when its sender is closed", function()
    nexus.run(function()
      local tx, rx = nexus.channel.bytes(8)
      assert(tx:send("12345678"))                        -- full
      local w = nexus.spawn(function() return { tx:send("x") } end)
      nexus.yield()
      tx:close()
      assert.are.same({ nil, "closed" }, w:join())
      local m = rx:recv()
      assert.are.equal("12345678", m:string())
      m:release()
      assert.are.same({ nil, "closed" }, { rx:recv() })  -- nothing else came
    end)
  end)

  it("a claim waiting behind another sender's wait: only the closed sender's gives up", function()
    nexus.run(function()
      local tx, rx = nexus.channel.bytes(8)
      local other = tx:clone()
      assert(tx:send("12345678"))
      local w1 = nexus.spawn(function() return { tx:claim(4) } end)
      local w2 = nexus.spawn(function() local c = other:claim(4); return { c and c:commit() } end)
      nexus.yield()
      tx:close()
      assert.are.same({ nil, "closed" }, w1:join())
      local m = rx:recv()
      m:release()                                        -- room for w2 now
      assert.are.same({ true }, w2:join())
      other:close()
      local got = {}
      for msg in rx:iter() do got[#got + 1] = #msg end
      assert.are.same({ 4 }, got)
    end)
  end)

  it("several tasks waiting through one sender all give up when it closes", function()
    nexus.run(function()
      local tx, rx = nexus.channel.bytes(4)
      assert(tx:send("1234"))
      local ws = {}
      for i = 1, 5 do ws[i] = nexus.spawn(function() return { tx:send("ab") } end) end
      nexus.yield()
      tx:close()
      for i = 1, 5 do assert.are.same({ nil, "closed" }, ws[i]:join()) end
      rx:close()
    end)
  end)

  it("a granted claim whose sender was closed before the task ran gives its room back", function()
    nexus.run(function()
      local tx, rx = nexus.channel.bytes(8)
      local keep = tx:clone()
      assert(tx:send("12345678"))
      local w = nexus.spawn(function() return { tx:send("abcd") } end)
      nexus.yield()
      local m = rx:recv()
      m:release()            -- grants w's room; w has not run yet
      tx:close()
      assert.are.same({ nil, "closed" }, w:join())
      assert(keep:try_send("12345678"))                 -- all the room is free again
      keep:close()
    end)
  end)

  it("aborting a task that holds an uncommitted claim gives the room back at once", function()
    nexus.run(function()
      collectgarbage("stop")                             -- no GC may hide the stall
      local tx, rx = nexus.channel.bytes(8)
      local holder = nexus.spawn(function()
        local c = tx:claim(8)
        nexus.sleep(60)                                  -- holds it, uncommitted
        c:commit()
      end)
      nexus.yield()
      assert.are.same({ nil, "full" }, { tx:try_send("x") })
      holder:abort()
      assert.is_true(tx:try_send("12345678"))            -- the room is back
      local m = rx:recv()
      assert.are.equal("12345678", m:string())
      m:release()
      collectgarbage("restart")
    end)
  end)

  it("a claim held by a task that fails is given back; one kept after a normal return is not", function()
    local rt = nexus.runtime.builder():on_task_error("report"):build()
    rt:block_on(function()
      collectgarbage("stop")
      local tx, rx = nexus.channel.bytes(8)
      local kept
      nexus.spawn(function() local c = tx:claim(4); error("fails holding a claim") end)
      nexus.yield()
      nexus.yield()
      assert.is_true(tx:try_send("12345678"))            -- the failed task's room came back
      local m = rx:recv(); m:release()
      local h = nexus.spawn(function() kept = tx:claim(4) end)
      h:join()
      assert.is_truthy(kept)                             -- handed over: still claimed
      assert.is_true(kept:commit())
      m = rx:recv()
      assert.are.equal(4, #m)
      m:release()
      collectgarbage("restart")
    end)
    rt:close()
  end)

  it("a task waiting for room after a stalled claim's holder was aborted is not a deadlock", function()
    nexus.run(function()
      collectgarbage("stop")
      local tx, rx = nexus.channel.bytes(8)
      local holder = nexus.spawn(function() local c = tx:claim(8); nexus.sleep(60) end)
      nexus.yield()
      local w = nexus.spawn(function() return { tx:send("late") } end)
      nexus.yield()
      holder:abort()
      local m = rx:recv()
      assert.are.equal("late", m:string())
      m:release()
      assert.are.same({ true }, w:join())
      collectgarbage("restart")
    end)
  end)
end)

-- Pooled tasks (spawn_slab): builder:task_pool, nexus.spawn_pooled,
-- nexus.try_claim, claim:spawn, claim:release; and the zombie sweep that
-- keeps plain detached spawning linear.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local nexus = require "nexus"

local function pooled_rt(n, bounded)
  return nexus.runtime.builder():task_pool(n, { bounded = bounded }):build()
end

describe("pooled tasks", function()
  after_each(H.cleanup)

  it("spawn_pooled runs fn with its arguments, in spawn order, and returns nothing", function()
    local rt = pooled_rt(4, true)
    local seen, nret = {}, nil
    rt:block_on(function()
      nret = select("#", nexus.spawn_pooled(function(a, b) seen[#seen + 1] = a .. b end, "x", 1))
      nexus.spawn_pooled(function(a) seen[#seen + 1] = a end, "y")
      nexus.yield()
    end)
    rt:close()
    assert.are.equal(0, nret)
    assert.are.same({ "x1", "y" }, seen)
  end)

  it("reuses the same records: the pool never grows past its size when bounded", function()
    local rt = pooled_rt(8, true)
    local done = 0
    local st = rt:block_on(function()
      for _ = 1, 100 do
        for _ = 1, 8 do nexus.spawn_pooled(function() done = done + 1 end) end
        nexus.yield()
      end
      return rt:stats()
    end)
    rt:close()
    assert.are.equal(800, done)
    assert.are.equal(8, st.pool_size)
    assert.are.equal(8, st.pool_free)
  end)

  it("allocates nothing on the Lua heap per pooled spawn once warm", function()
    local rt = pooled_rt(64, true)
    local growth = rt:block_on(function()
      local function task() end
      for _ = 1, 64 do nexus.spawn_pooled(task) end
      nexus.yield()
      collectgarbage("collect")
      collectgarbage("stop")
      local before = collectgarbage("count")
      for _ = 1, 500 do
        for _ = 1, 64 do nexus.spawn_pooled(task) end
        nexus.yield()
      end
      local after = collectgarbage("count")
      collectgarbage("restart")
      return (after - before) * 1024
    end)
    rt:close()
    -- 32,000 spawns; a coroutine alone is ~1 KB, a handle ~100 bytes.
    assert.is_true(growth < 32000 * 8, "heap grew by " .. growth .. " bytes")
  end)

  it("a full bounded pool makes spawn_pooled raise and try_claim return nil", function()
    local rt = pooled_rt(2, true)
    local ok, err, claim = rt:block_on(function()
      nexus.spawn_pooled(nexus.sleep, 0.01)
      nexus.spawn_pooled(nexus.sleep, 0.01)
      local ok, err = pcall(nexus.spawn_pooled, function() end)
      return ok, err, nexus.try_claim()
    end)
    rt:close()
    assert.is_false(ok)
    assert.matches("nexus.spawn_pooled: the bounded task pool is full %(2 tasks%)", err)
    assert.is_nil(claim)
  end)

  it("an unbounded pool grows when it runs out", function()
    local rt = pooled_rt(2, false)
    local n = rt:block_on(function()
      for _ = 1, 5 do nexus.spawn_pooled(nexus.sleep, 0.01) end
      return rt:stats().pool_size
    end)
    rt:close()
    assert.are.equal(5, n)
  end)

  it("spawn_pooled without a pool raises", function()
    local ok, err = pcall(nexus.run, function() nexus.spawn_pooled(function() end) end)
    assert.is_false(ok)
    assert.matches("nexus.spawn_pooled: this runtime has no task pool (configure one with builder:task_pool(n))",
      err, 1, true)
  end)

  it("spawn_pooled checks its function and needs a task", function()
    local rt = pooled_rt(2, true)
    local ok, err = rt:block_on(function() return pcall(nexus.spawn_pooled, 42) end)
    assert.is_false(ok)
    assert.matches("nexus.spawn_pooled: expected a function, got number", err, 1, true)
    assert.has_error(function() nexus.spawn_pooled(function() end) end,
      "nexus.spawn_pooled: not inside a nexus task")
    rt:close()
  end)

  it("a claim holds a slot until spawn or release; used twice raises", function()
    local rt = pooled_rt(1, true)
    local r = rt:block_on(function()
      local c = nexus.try_claim()
      local none = nexus.try_claim()            -- the one slot is held
      local got
      c:spawn(function(v) got = v end, 7)
      local ok, err = pcall(c.spawn, c, function() end)
      nexus.yield()
      local c2 = nexus.try_claim()
      c2:release()
      c2:release()                                -- idempotent
      local c3 = nexus.try_claim()
      return { none = none, got = got, ok = ok, err = err, c3 = c3 ~= nil, s = tostring(c) }
    end)
    rt:close()
    assert.is_nil(r.none)
    assert.are.equal(7, r.got)
    assert.is_false(r.ok)
    assert.matches("claim:spawn: the claim was already used or released", r.err, 1, true)
    assert.is_true(r.c3)
    assert.are.equal("nexus.claim(used)", r.s)
  end)

  it("a dropped claim gives its slot back when collected", function()
    local rt = pooled_rt(1, true)
    local again = rt:block_on(function()
      do local _ = nexus.try_claim() end
      collectgarbage("collect")
      collectgarbage("collect")
      return nexus.try_claim() ~= nil
    end)
    rt:close()
    assert.is_true(again)
  end)

  it("a pooled task that fails stops the runtime (nobody can observe it) and its slot is renewed", function()
    local rt = pooled_rt(1, true)
    assert.has_error(function()
      rt:block_on(function()
        nexus.spawn_pooled(function() error("pooled boom") end)
        nexus.sleep(0.05)
      end)
    end)
    -- the slot came back with a fresh coroutine: the pool works again
    local ran = rt:block_on(function()
      local ran = false
      nexus.spawn_pooled(function() ran = true end)
      nexus.yield()
      return ran
    end)
    rt:close()
    assert.is_true(ran)
  end)

  it("an aborted pooled task never runs again and its slot is reused", function()
    local rt = pooled_rt(1, true)
    local r = rt:block_on(function()
      local after = false
      nexus.spawn_pooled(function()
        local me = nexus.current()
        nexus.spawn(function() me:abort() end)
        nexus.sleep(10)
        after = true
      end)
      nexus.sleep(0.02)
      local ok = pcall(nexus.spawn_pooled, function() end)
      nexus.yield()
      return { after = after, ok = ok }
    end)
    rt:close()
    assert.is_false(r.after)
    assert.is_true(r.ok)
  end)

  it("the handle of a pooled task (nexus.current) cannot be joined", function()
    local rt = pooled_rt(1, true)
    local err, fin = rt:block_on(function()
      local h
      nexus.spawn_pooled(function() h = nexus.current() end)
      nexus.yield()
      return select(2, pcall(h.join, h)), h:is_finished()
    end)
    rt:close()
    assert.matches("is a pooled task", err, 1, true)
    assert.is_true(fin)
  end)

  it("builder:task_pool rejects bad arguments", function()
    local b = nexus.runtime.builder()
    assert.has_error(function() b:task_pool(0) end)
    assert.has_error(function() b:task_pool(1.5) end)
    assert.has_error(function() b:task_pool(4, { bounded = "yes" }) end,
      "builder:task_pool: bounded must be a boolean, got string")
    assert.has_error(function() b:task_pool(4, { size = 3 }) end,
      "builder:task_pool: unknown option 'size'")
  end)
end)

describe("detached spawns", function()
  it("sweeping ended tasks stays linear: sweeps happen when zombies double", function()
    local rt = nexus.runtime.new()
    local s = rt:block_on(function()
      local function task() end
      for _ = 1, 50000 / 64 do
        for _ = 1, 64 do nexus.spawn(task) end
        nexus.yield()
      end
      return rt:stats()
    end)
    rt:close()
    assert.is_true(s.sweeps < 200, "sweeps: " .. s.sweeps)
    assert.is_true(s.task_slots < 50000, "slots: " .. s.task_slots)
  end)
end)

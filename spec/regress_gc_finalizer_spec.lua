-- Regression: a __gc finalizer that called nexus.spawn or nexus.current
-- segfaulted. spawn made the coroutine on the runtime's control thread,
-- whose stack holds the runtime's tables at fixed indices; the GC step of
-- that allocation ran the finalizer on the control thread, and the
-- finalizer's own spawn then read and wrote the wrong stack slots.
-- A finalizer may run anywhere: nexus calls made there must work or raise
-- a clear error. Each case runs in a child process, so a crash fails it.
local dir = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
local H = dofile(dir .. "helpers.lua")

local run = H.luajit_show

describe("regress: nexus calls inside __gc finalizers", function()
  after_each(H.cleanup)

  it("spawn and current from finalizers that run during 100,000 spawns", function()
    local r, show = run([[
      local nexus = require "nexus"
      local ran, fins, cur = 0, 0, 0
      nexus.run(function()
        for i = 1, 100000 do
          local p = newproxy(true)
          getmetatable(p).__gc = function()
            fins = fins + 1
            nexus.spawn(function() ran = ran + 1 end)
            -- a handle inside a task; nil when the step ran in the driver
            local h = nexus.current()
            if h then cur = cur + 1 end
          end
          nexus.spawn(function() end)
        end
      end)
      -- The finalizers that ran inside the runtime spawned tasks that ran.
      print(fins > 1000, cur > 0, ran > 1000)
    ]])
    assert.are.equal(0, r.rc, show)
    assert.are.equal("true\ttrue\ttrue\n", r.out, show)
  end)

  it("finalizers that spawn while deferred tasks start (a long ready queue)", function()
    local r, show = run([[
      local nexus = require "nexus"
      local ran, total = 0, 0
      nexus.run(function()
        for round = 1, 20 do
          local hs = {}
          for i = 1, 2000 do
            -- behind 256 ready tasks a spawn defers its coroutine, made
            -- when the task first runs: a GC step there runs finalizers too
            hs[i] = nexus.spawn(function(x) total = total + 1; return x end, i)
            local p = newproxy(true)
            getmetatable(p).__gc = function() nexus.spawn(function() ran = ran + 1 end) end
          end
          for i = 1, #hs do assert(hs[i]:join() == i) end
        end
      end)
      print(total, ran > 0)
    ]])
    assert.are.equal(0, r.rc, show)
    assert.are.equal("40000\ttrue\n", r.out, show)
  end)

  it("a finalizer that aborts a task about to start leaves it aborted, not run", function()
    local r, show = run([[
      local nexus = require "nexus"
      local started, victims = 0, {}
      nexus.run(function()
        for i = 1, 300 do nexus.spawn(function() end) end  -- a backlog: defer
        for i = 1, 3000 do
          victims[i] = nexus.spawn(function() started = started + 1 end)
          local h = victims[i]
          local p = newproxy(true)
          getmetatable(p).__gc = function() h:abort() end
        end
        collectgarbage()
        for i = 1, #victims do victims[i]:result() end
      end)
      local aborted = 0
      for i = 1, #victims do
        if tostring(victims[i]):find("aborted") then aborted = aborted + 1 end
      end
      print(started + aborted >= 3000 and aborted > 0)
    ]])
    assert.are.equal(0, r.rc, show)
    assert.are.equal("true\n", r.out, show)
  end)

  it("a suspending call in a finalizer raises a clear error there", function()
    local r, show = run([[
      local nexus = require "nexus"
      local msg
      nexus.run(function()
        local p = newproxy(true)
        getmetatable(p).__gc = function() msg = select(2, pcall(nexus.sleep, 0.01)) end
        p = nil
        collectgarbage()
        collectgarbage()
        nexus.sleep(0.001)
      end)
      print(msg)
    ]])
    assert.are.equal(0, r.rc, show)
    assert.matches("^nexus.sleep: cannot suspend here", r.out)
  end)

  it("a finalizer that raises inside the executor stops the drive, loses no task and leaves the runtime usable", function()
    local r, show = run([[
      local nexus = require "nexus"
      local rt = nexus.runtime.new()
      local ran, spawned, raised = 0, 0, 0
      local live = true   -- the finalizers raise until the end
      local function arm(k)
        for i = 1, k do
          local p = newproxy(true)
          getmetatable(p).__gc = function() if live then error("finalizer boom") end end
        end
      end
      local ok, err = pcall(rt.block_on, rt, function()
        for i = 1, 20000 do    -- behind a backlog: coroutines made by the executor
          if pcall(nexus.spawn, function() ran = ran + 1 end) then spawned = spawned + 1 end
          if i % 50 == 0 then pcall(arm, 1) end
        end
      end)
      if not ok then raised = raised + 1; assert(err:find("finalizer boom"), err) end
      -- drive what is left; each drive may raise a finalizer's error again
      for i = 1, 1000 do
        pcall(arm, 3)
        local ok, done = pcall(rt.shutdown_quiesce, rt, 10)
        if ok and done then break end
        if not ok then raised = raised + 1; assert(done:find("finalizer boom"), done) end
      end
      live = false
      print(ran == spawned, spawned > 0, raised > 0, rt:stats().tasks_alive)
      print(rt:block_on(function() nexus.sleep(0.001) return "usable" end))
    ]])
    assert.are.equal(0, r.rc, show)
    assert.are.equal("true\ttrue\ttrue\t0\nusable\n", r.out, show)
  end)
end)

-- Runtimes: nexus.runtime.new / builder, block_on, block_on_busy, close,
-- stats, nexus.run, and deadlock detection.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local nexus = require "nexus"
local pack, LATE = H.pack, H.LATE

-- Runs a Lua script in a fresh luajit under `timeout`, so that a hang
-- fails the one test instead of the whole file.
local function isolated(src)
  local file = H.tmpfile(src)
  return H.sh("timeout -k 2 10 luajit " .. H.q(file))
end

describe("runtime", function()
  after_each(H.cleanup)

  describe("block_on", function()
    it("nexus.runtime.new() builds a runtime whose block_on returns fn's values", function()
      local rt = nexus.runtime.new()
      local r = pack(rt:block_on(function(a, b)
        nexus.sleep(0.01)
        return a, nil, b, nil
      end, "first", "second"))
      rt:close()
      assert.are.equal(4, r.n)
      assert.are.same({ "first", nil, "second" }, { r[1], r[2], r[3] })
    end)

    it("raises the error of its function", function()
      -- Each rt:close() comes right after the failed block_on: see the
      -- "JIT-compiled code" case below for what happens otherwise.
      local rt = nexus.runtime.new()
      local ok, err = pcall(rt.block_on, rt, function()
        nexus.sleep(0.01)
        error("root-fn-error")
      end)
      rt:close()
      local obj = {}
      local rt2 = nexus.runtime.new()
      local ok2, err2 = pcall(rt2.block_on, rt2, function() error(obj) end)
      rt2:close()
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("root-fn-error", 1, true))
      assert.is_false(ok2)
      assert.are.equal(obj, err2)
    end)

    it("the builder chains and builds a working runtime", function()
      local b = nexus.runtime.builder()
      assert.are.equal(b, b:tasks_per_cycle(1))
      assert.are.equal(b, b:event_interval(1))
      local rt = b:build()
      local v = rt:block_on(function()
        local hs = {}
        for i = 1, 10 do hs[i] = nexus.spawn(function() nexus.yield(); return i end) end
        local s = 0
        for i = 1, 10 do s = s + hs[i]:join() end
        return s
      end)
      rt:close()
      assert.are.equal(55, v)
    end)

    it("tasks_per_cycle bounds how many tasks run in one loop cycle", function()
      -- event_time() is cached per cycle: with one task per cycle every
      -- resume sees a fresh one, with 64 a batch of resumes shares it.
      local function distinct_times(n)
        local rt = nexus.runtime.builder():tasks_per_cycle(n):build()
        local seen = rt:block_on(function()
          local seen, count = {}, 0
          local hs = {}
          for i = 1, 4 do
            hs[i] = nexus.spawn(function()
              for _ = 1, 4 do
                H.busy_wait(nexus, 0.001)
                local t = nexus.event_time()
                if not seen[t] then seen[t] = true; count = count + 1 end
                nexus.yield()
              end
            end)
          end
          for i = 1, 4 do hs[i]:join() end
          return count
        end)
        rt:close()
        return seen
      end
      local one, many = distinct_times(1), distinct_times(64)
      assert.is_true(one >= 12, "distinct event times with 1 task per cycle: " .. one)
      assert.is_true(many <= 4, "distinct event times with 64 tasks per cycle: " .. many)
    end)

    it("tasks still alive after block_on continue in a later block_on", function()
      local rt = nexus.runtime.new()
      local log = {}
      local h = rt:block_on(function()
        return nexus.spawn(function()
          for i = 1, 5 do
            nexus.sleep(0.01)
            log[#log + 1] = i
          end
          return "bg-done"
        end)
      end)
      local n_after_first = #log
      H.busy_wait(nexus, 0.06)                 -- no runtime is driven meanwhile
      local n_between = #log
      local v = rt:block_on(function() return h:join() end)
      rt:close()
      assert.is_true(n_after_first < 5)
      assert.are.equal(n_after_first, n_between)
      assert.are.equal(5, #log)
      assert.are.equal("bg-done", v)
    end)

    it("rt:close() aborts the remaining tasks; their handles report aborted", function()
      local rt = nexus.runtime.new()
      local ran_on = false
      local h = rt:block_on(function()
        return nexus.spawn(function()
          nexus.sleep(0.02)
          ran_on = true
        end)
      end)
      assert.is_false(h:is_finished())
      rt:close()
      assert.is_true(h:is_finished())
      assert.is_truthy(tostring(h):find("abort", 1, true), tostring(h))
      assert.is_false(h:abort())
      local ok, err = h:result()
      assert.is_false(ok)
      assert.are.equal("aborted", err)
      assert.is_false(ran_on)
      -- and nothing of it runs later, in another runtime
      nexus.run(function() nexus.sleep(0.05) end)
      assert.is_false(ran_on)
    end)

    it("a closed runtime refuses block_on; close is idempotent", function()
      local rt = nexus.runtime.new()
      rt:close()
      assert.has_no.errors(function() rt:close() end)
      local err = H.errof(rt.block_on, rt, function() end)
      assert.is_string(err)
      assert.is_truthy(err:find("closed", 1, true), err)
    end)

    it("block_on_busy runs fn to the end and returns its values", function()
      local rt = nexus.runtime.new()
      local t0 = nexus.now()
      local r = pack(rt:block_on_busy(function(x)
        local h = nexus.spawn(function() nexus.sleep(0.03); return "child" end)
        nexus.sleep(0.02)
        return x, h:join()
      end, "busy"))
      local dt = nexus.now() - t0
      rt:close()
      assert.are.equal(2, r.n)
      assert.are.equal("busy", r[1])
      assert.are.equal("child", r[2])
      assert.is_true(dt >= 0.03 and dt < 0.03 + LATE, "took " .. dt)
    end)

    it("the caller's JIT-compiled code keeps running after block_on raised a task's error", function()
      -- A hot function with side exits (like busted's spec environment)
      -- runs between the failed block_on and anything else: its trace
      -- exits must find the caller's state, not the dead task's.
      local r = isolated([[
        local nexus = require "nexus"
        local function lookup(t, key)
          if not t then return nil end
          return t.env and t.env[key] or lookup(t.parent, key) or _G[key]
        end
        local ctx = { env = {}, parent = { env = {}, parent = {} } }
        local env = setmetatable({}, { __index = function(_, k) return lookup(ctx, k) end })
        local hot = setfenv(function(n)
          local s = 0
          for i = 1, n do if type(i) == "number" then s = s + 1 end end
          return s
        end, env)
        hot(1000)
        local body = setfenv(function()
          for round = 1, 20 do
            local rt = nexus.runtime.new()
            pcall(rt.block_on, rt, function() error("root error") end)
            hot(300)
            rt:close()
          end
        end, env)
        body()
        print("survived")
      ]])
      assert.are.equal(0, r.rc, "exit " .. tostring(r.rc) .. " (139 = SIGSEGV): " .. r.err)
      assert.are.equal("survived\n", r.out)
    end)
  end)

  describe("stats", function()
    it("counts alive tasks, spawns, resumes and timers", function()
      local rt = nexus.runtime.new()
      local s0 = rt:stats()
      local s1, s2, s3 = rt:block_on(function()
        local s1 = rt:stats()
        local hs = {}
        for i = 1, 3 do hs[i] = nexus.spawn(function() nexus.sleep(0.05) end) end
        nexus.yield()                          -- let them start sleeping
        local s2 = rt:stats()
        for i = 1, 3 do hs[i]:join() end
        return s1, s2, rt:stats()
      end)
      local s4 = rt:stats()
      rt:close()
      for _, k in ipairs({ "tasks_alive", "spawned", "resumes", "timers" }) do
        assert.are.equal("number", type(s0[k]), k)
      end
      assert.are.equal(0, s0.tasks_alive)
      assert.are.equal(0, s0.timers)
      assert.are.equal(s1.spawned + 3, s2.spawned)
      assert.are.equal(s1.tasks_alive + 3, s2.tasks_alive)
      assert.are.equal(s1.timers + 3, s2.timers)
      assert.is_true(s2.resumes > s1.resumes)
      assert.are.equal(s1.tasks_alive, s3.tasks_alive)
      assert.are.equal(0, s3.timers)
      assert.are.equal(0, s4.tasks_alive)
    end)
  end)

  describe("nexus.run", function()
    it("returns the root's values and passes it the arguments", function()
      local r = pack(nexus.run(function(a, b) return b, nil, a end, 1, 2))
      assert.are.equal(3, r.n)
      assert.are.same({ 2, nil, 1 }, { r[1], r[2], r[3] })
    end)

    it("waits for every spawned task, also detached ones still sleeping", function()
      local done = false
      local t0 = nexus.now()
      local v = nexus.run(function()
        nexus.spawn(function()
          nexus.sleep(0.05)
          done = true
        end)
        return "root returned"
      end)
      local dt = nexus.now() - t0
      assert.are.equal("root returned", v)
      assert.is_true(done)
      assert.is_true(dt >= 0.05)
    end)

    it("raises the root's error with its message", function()
      local ok, err = pcall(nexus.run, function()
        nexus.sleep(0.01)
        error("run-root-error")
      end)
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("run-root-error", 1, true))
    end)

    it("raises when the root aborts itself", function()
      local ok, err = pcall(nexus.run, function()
        nexus.current():abort()
        return "not this"
      end)
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("abort", 1, true), tostring(err))
    end)

    it("can run again after a run that failed", function()
      pcall(nexus.run, function() error("first run fails") end)
      pcall(nexus.run, function()
        nexus.spawn(function() error("unjoined in second run") end)
        nexus.sleep(1)
      end)
      local v = nexus.run(function() nexus.sleep(0.01); return "third" end)
      assert.are.equal("third", v)
    end)
  end)

  describe("deadlock detection", function()
    it("the root and a task joining each other raise 'deadlock' (nexus.run)", function()
      local r = isolated([[
        local nexus = require "nexus"
        local ok, err = pcall(nexus.run, function()
          local root = nexus.current()
          local h = nexus.spawn(function() return root:join() end)
          nexus.yield()
          return h:join()
        end)
        print(ok, err)
      ]])
      assert.are.equal(0, r.rc, "exit " .. tostring(r.rc) .. " (124 = hung): " .. r.err)
      assert.is_truthy(r.out:find("^false"), r.out)
      assert.is_truthy(r.out:find("deadlock", 1, true), r.out)
    end)

    it("the same cycle raises 'deadlock' from rt:block_on", function()
      local r = isolated([[
        local nexus = require "nexus"
        local rt = nexus.runtime.new()
        local ok, err = pcall(rt.block_on, rt, function()
          local root = nexus.current()
          local h = nexus.spawn(function() return root:join() end)
          nexus.yield()
          return h:join()
        end)
        print(ok, err)
        rt:close()
      ]])
      assert.are.equal(0, r.rc, "exit " .. tostring(r.rc) .. " (124 = hung): " .. r.err)
      assert.is_truthy(r.out:find("^false"), r.out)
      assert.is_truthy(r.out:find("deadlock", 1, true), r.out)
    end)

    it("a three-task join cycle through the root raises 'deadlock'", function()
      local r = isolated([[
        local nexus = require "nexus"
        local ok, err = pcall(nexus.run, function()
          local root = nexus.current()
          local b = nexus.spawn(function() nexus.yield(); return root:join() end)
          local a = nexus.spawn(function() return b:join() end)
          return a:join()
        end)
        print(ok, err)
      ]])
      assert.are.equal(0, r.rc, "exit " .. tostring(r.rc) .. " (124 = hung): " .. r.err)
      assert.is_truthy(r.out:find("^false"), r.out)
      assert.is_truthy(r.out:find("deadlock", 1, true), r.out)
    end)

    it("two detached tasks joining each other after the root returned raise 'deadlock'", function()
      local r = isolated([[
        local nexus = require "nexus"
        local ok, err = pcall(nexus.run, function()
          local a, b
          a = nexus.spawn(function() nexus.yield(); return b:join() end)
          b = nexus.spawn(function() nexus.yield(); return a:join() end)
          return "root done"
        end)
        print(ok, err)
      ]])
      assert.are.equal(0, r.rc, "exit " .. tostring(r.rc) .. " (124 = hung): " .. r.err)
      assert.is_truthy(r.out:find("^false"), r.out)
      assert.is_truthy(r.out:find("deadlock", 1, true), r.out)
    end)

    it("is not reported while a timer can still wake a task", function()
      local r = isolated([[
        local nexus = require "nexus"
        print(pcall(nexus.run, function()
          local root = nexus.current()
          local h = nexus.spawn(function() nexus.sleep(0.05); return "slept" end)
          return h:join()
        end))
      ]])
      assert.are.equal(0, r.rc, r.err)
      assert.is_truthy(r.out:find("true\tslept", 1, true), r.out)
    end)
  end)
end)

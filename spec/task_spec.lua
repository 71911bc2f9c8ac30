-- Tasks: spawn, join, result, abort, current, yield, handles, and the
-- fail-fast rule for errors nobody observes.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local nexus = require "nexus"
local pack = H.pack

describe("tasks", function()
  after_each(H.cleanup)

  describe("spawn and join", function()
    it("spawn returns a handle whose join gives the task's value", function()
      local kind, v = nexus.run(function()
        local h = nexus.spawn(function() return 42 end)
        return type(h), h:join()
      end)
      assert.are.equal("userdata", kind)
      assert.are.equal(42, v)
    end)

    it("join returns every value, nils in the middle and at the end included", function()
      local r, r2 = nexus.run(function()
        local a = nexus.spawn(function() return 1, nil, 3 end)
        local b = nexus.spawn(function() return nil, "x", nil end)
        return pack(a:join()), pack(b:join())
      end)
      assert.are.equal(3, r.n)
      assert.are.same({ 1, nil, 3 }, { r[1], r[2], r[3] })
      assert.are.equal(3, r2.n)
      assert.is_nil(r2[1])
      assert.are.equal("x", r2[2])
    end)

    it("join of a task that returns nothing gives no values", function()
      local r = nexus.run(function()
        return pack(nexus.spawn(function() end):join())
      end)
      assert.are.equal(0, r.n)
    end)

    -- A task that ended with 0 or 1 value before join is taken through
    -- join's fast path (the value waits in the runtime's tasks table).
    it("join and result of tasks that already ended keep the count of values", function()
      local t = {}
      local r = nexus.run(function()
        local hs = {
          nexus.spawn(function() end), nexus.spawn(function() return nil end),
          nexus.spawn(function() return t end), nexus.spawn(function() return 1, 2 end),
          nexus.spawn(function() end), nexus.spawn(function() return nil end),
          nexus.spawn(function() return t end),
        }
        nexus.yield()                          -- every one has ended
        return { pack(hs[1]:join()), pack(hs[2]:join()), pack(hs[3]:join()), pack(hs[4]:join()),
                 pack(hs[5]:result()), pack(hs[6]:result()), pack(hs[7]:result()) }
      end)
      assert.are.equal(0, r[1].n)
      assert.are.equal(1, r[2].n)
      assert.is_nil(r[2][1])
      assert.are.equal(1, r[3].n)
      assert.is_true(rawequal(t, r[3][1]))
      assert.are.same({ n = 2, 1, 2 }, r[4])
      assert.are.same({ n = 1, true }, r[5])
      assert.are.same({ n = 2, true, nil }, r[6])
      assert.are.equal(2, r[7].n)
      assert.is_true(r[7][1])
      assert.is_true(rawequal(t, r[7][2]))
    end)

    it("a joined value is no longer held by the runtime", function()
      local weak = setmetatable({}, { __mode = "v" })
      local rt = nexus.runtime.new()
      rt:block_on(function()
        local h = nexus.spawn(function() return {} end)
        nexus.yield()
        weak[1] = h:join()
      end)
      collectgarbage()
      collectgarbage()
      local gone = weak[1] == nil
      rt:close()
      assert.is_true(gone)
    end)

    it("joins a finished task of another runtime, and refuses to join it twice", function()
      local rt1, rt2 = nexus.runtime.new(), nexus.runtime.new()
      local h = rt1:block_on(function()
        local h = nexus.spawn(function() return "from rt1" end)
        nexus.yield()
        return h
      end)
      local v, ok, err = rt2:block_on(function()
        local v = h:join()
        return v, pcall(h.join, h)
      end)
      rt1:close()
      rt2:close()
      assert.are.equal("from rt1", v)
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("already joined", 1, true), err)
    end)

    it("passes spawn's extra arguments to the function, nils included", function()
      local r = nexus.run(function()
        return nexus.spawn(function(...) return pack(...) end, "a", nil, "c", nil):join()
      end)
      assert.are.equal(4, r.n)
      assert.are.equal("a", r[1])
      assert.is_nil(r[2])
      assert.are.equal("c", r[3])
    end)

    it("keeps the count of 0 and 1 arguments, a nil argument included", function()
      local r = nexus.run(function()
        local count = function(...) return select("#", ...) end
        local a, b, c = nexus.spawn(count), nexus.spawn(count, nil), nexus.spawn(count, false)
        return { a:join(), b:join(), c:join() }
      end)
      assert.are.same({ 0, 1, 1 }, r)
    end)

    it("join waits for a task that suspends", function()
      local v, dt = nexus.run(function()
        local t0 = nexus.now()
        local h = nexus.spawn(function() nexus.sleep(0.05); return "late" end)
        local v = h:join()
        return v, nexus.now() - t0
      end)
      assert.are.equal("late", v)
      assert.is_true(dt >= 0.05 - H.EPS, "joined after " .. dt)
    end)

    it("result() is pcall-style: true and the values on success", function()
      local r = nexus.run(function()
        return pack(nexus.spawn(function() nexus.yield(); return "a", nil, "c" end):result())
      end)
      assert.are.equal(4, r.n)
      assert.are.same({ true, "a", nil, "c" }, { r[1], r[2], r[3], r[4] })
    end)

    it("result() gives false and the error of a failed task", function()
      local ok, err = nexus.run(function()
        local h = nexus.spawn(function() nexus.sleep(0.01); error("result-failure") end)
        return h:result()
      end)
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("result-failure", 1, true))
    end)
  end)

  describe("errors", function()
    it("join re-raises the task's error message", function()
      local ok, err = nexus.run(function()
        local h = nexus.spawn(function() nexus.yield(); error("join-reraise-msg") end)
        return pcall(h.join, h)
      end)
      assert.is_false(ok)
      assert.is_string(err)
      assert.is_truthy(err:find("join-reraise-msg", 1, true))
    end)

    it("join re-raises a table error as the same table", function()
      local obj = { code = 7 }
      local ok, err = nexus.run(function()
        local h = nexus.spawn(function() nexus.sleep(0.01); error(obj) end)
        return pcall(h.join, h)
      end)
      assert.is_false(ok)
      assert.are.equal(obj, err)       -- identity, not a copy
    end)

    it("result() gives back a table error by identity", function()
      local obj = setmetatable({}, { __tostring = function() return "custom" end })
      local ok, err = nexus.run(function()
        return nexus.spawn(function() error(obj) end):result()
      end)
      assert.is_false(ok)
      assert.are.equal(obj, err)
    end)

    it("an error with a nil value becomes a string mentioning nil", function()
      local ok1, e1, ok2, e2 = nexus.run(function()
        local a = nexus.spawn(function() nexus.yield(); error(nil) end)
        local b = nexus.spawn(function() nexus.sleep(0.03); error() end)
        local ok1, e1 = pcall(a.join, a)
        local ok2, e2 = b:result()
        return ok1, e1, ok2, e2
      end)
      assert.is_false(ok1)
      assert.is_string(e1)
      assert.is_truthy(e1:find("nil", 1, true))
      assert.is_false(ok2)
      assert.is_string(e2)
      assert.is_truthy(e2:find("nil", 1, true))
    end)

    it("result() gives the traceback of a failed task as its third value", function()
      local ok, err, tb = nexus.run(function()
        local function explode_for_traceback() error("h-traceback-marker") end
        local h = nexus.spawn(function() nexus.sleep(0.01); explode_for_traceback() end)
        return h:result()
      end)
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("h-traceback-marker", 1, true))
      assert.is_string(tb)
      assert.is_truthy(tb:find("h-traceback-marker", 1, true))
      assert.is_truthy(tb:find("stack traceback", 1, true))
      assert.is_truthy(tb:find("explode_for_traceback", 1, true), tb)
    end)

    it("a stack overflow in a task is an ordinary error for its joiner", function()
      local ok, err, after = nexus.run(function()
        local function deeper(n) return deeper(n + 1) + 1 end
        local h = nexus.spawn(function() return deeper(1) end)
        local ok, err = h:result()
        nexus.sleep(0.001)
        return ok, err, "runtime still fine"
      end)
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("stack overflow", 1, true), tostring(err))
      assert.are.equal("runtime still fine", after)
    end)
  end)

  describe("many values", function()
    it("join returns thousands of results and spawn passes hundreds of arguments", function()
      local nres, nargs, last = nexus.run(function()
        local t = {}
        for i = 1, 5000 do t[i] = i end
        local h = nexus.spawn(function() nexus.yield(); return unpack(t) end)
        local r = H.pack(h:join())
        local a = nexus.spawn(function(...) return select("#", ...), (select(250, ...)) end, unpack(t, 1, 250))
        local n, lastarg = a:join()
        return r.n, n, r[5000] + lastarg
      end)
      assert.are.equal(5000, nres)
      assert.are.equal(250, nargs)
      assert.are.equal(5250, last)
    end)
  end)

  describe("abort", function()
    it("returns true the first time and false after", function()
      local a, b, c = nexus.run(function()
        local h = nexus.spawn(function() nexus.sleep(10) end)
        nexus.yield()
        local a = h:abort()
        return a, h:abort(), h:abort()
      end)
      assert.is_true(a)
      assert.is_false(b)
      assert.is_false(c)
    end)

    it("returns false for a task that already finished", function()
      local r = nexus.run(function()
        local h = nexus.spawn(function() return 1 end)
        nexus.sleep(0.01)
        return h:abort()
      end)
      assert.is_false(r)
    end)

    it("joining an aborted task raises 'aborted'; result() gives false, 'aborted'", function()
      local ok1, e1, ok2, e2 = nexus.run(function()
        local a = nexus.spawn(function() nexus.sleep(10) end)
        local b = nexus.spawn(function() nexus.sleep(10) end)
        nexus.yield()
        a:abort()
        b:abort()
        local ok1, e1 = pcall(a.join, a)
        local ok2, e2 = b:result()
        return ok1, e1, ok2, e2
      end)
      assert.is_false(ok1)
      assert.is_truthy(tostring(e1):find("aborted", 1, true))
      assert.is_false(ok2)
      assert.are.equal("aborted", e2)
    end)

    it("wakes a task that was joining the aborted one, with 'aborted'", function()
      local ok, err = nexus.run(function()
        local victim = nexus.spawn(function() nexus.sleep(10) end)
        local waiter = nexus.spawn(function() return victim:result() end)
        nexus.yield()
        victim:abort()
        return waiter:join()
      end)
      assert.is_false(ok)
      assert.are.equal("aborted", err)
    end)

    it("releases a sleeping task's timer and the task never runs again", function()
      local rt = nexus.runtime.new()
      local ran_after_sleep = false
      local before, after, finished = rt:block_on(function()
        local h = nexus.spawn(function()
          nexus.sleep(0.05)
          ran_after_sleep = true
        end)
        nexus.yield()                         -- h starts and sleeps
        local before = rt:stats().timers
        h:abort()
        local after = rt:stats().timers
        nexus.sleep(0.15)                     -- well past h's wake-up time
        return before, after, h:is_finished()
      end)
      rt:close()
      assert.are.equal(before - 1, after)
      assert.is_true(finished)
      assert.is_false(ran_after_sleep)
    end)

    it("a task aborted before it first runs never runs", function()
      local ran = false
      local r = nexus.run(function()
        local h = nexus.spawn(function() ran = true end)
        local a = h:abort()
        nexus.sleep(0.01)
        return a
      end)
      assert.is_true(r)
      assert.is_false(ran)
    end)

    it("self-abort ends the task at once", function()
      local after_abort = false
      local ok, err, fin = nexus.run(function()
        local h = nexus.spawn(function()
          nexus.current():abort()
          after_abort = true
          nexus.sleep(0.01)
          after_abort = true
        end)
        nexus.sleep(0.05)
        local fin = h:is_finished()
        local ok, err = h:result()
        return ok, err, fin
      end)
      assert.is_false(after_abort)
      assert.is_true(fin)
      assert.is_false(ok)
      assert.are.equal("aborted", err)
    end)

    it("self-abort inside a timeout or a pcall still ends the whole task", function()
      local ran = {}
      local r1, r2 = nexus.run(function()
        local a = nexus.spawn(function()
          nexus.timeout(1, function() nexus.current():abort(); ran.in_timeout = true end)
          ran.after_timeout = true
        end)
        local b = nexus.spawn(function()
          pcall(function() nexus.current():abort(); ran.in_pcall = true end)
          ran.after_pcall = true
        end)
        nexus.sleep(0.02)
        return H.pack(a:result()), H.pack(b:result())
      end)
      assert.are.same({}, ran)
      assert.are.same({ false, "aborted" }, { r1[1], r1[2] })
      assert.are.same({ false, "aborted" }, { r2[1], r2[2] })
    end)

    it("aborting a joiner frees the target for another join", function()
      local v = nexus.run(function()
        local target = nexus.spawn(function() nexus.sleep(0.03); return "target-done" end)
        local joiner = nexus.spawn(function() return target:join() end)
        nexus.yield()                         -- joiner now waits on target
        joiner:abort()
        return target:join()                  -- must not say "already being joined"
      end)
      assert.are.equal("target-done", v)
    end)
  end)

  describe("handles", function()
    it("is_finished is false while running and true after the end", function()
      local a, b, c = nexus.run(function()
        local h = nexus.spawn(function() nexus.sleep(0.02) end)
        local a = h:is_finished()
        nexus.sleep(0.05)
        local b = h:is_finished()
        h:join()
        return a, b, h:is_finished()
      end)
      assert.is_false(a)
      assert.is_true(b)
      assert.is_true(c)
    end)

    it("ids are unique and increasing", function()
      local ids = nexus.run(function()
        local ids, hs = {}, {}
        for i = 1, 100 do hs[i] = nexus.spawn(function() nexus.yield() end) end
        for i = 1, 100 do ids[i] = hs[i]:id() end
        for i = 1, 100 do hs[i]:join() end
        return ids
      end)
      local seen = {}
      for i = 1, #ids do
        assert.are.equal("number", type(ids[i]))
        assert.are.equal(math.floor(ids[i]), ids[i])
        assert.is_nil(seen[ids[i]])
        seen[ids[i]] = true
        if i > 1 then assert.is_true(ids[i] > ids[i - 1]) end
      end
      assert.are.equal(100, #ids)
    end)

    it("nexus.current():id() inside the task equals the handle's id", function()
      local inside, outside = nexus.run(function()
        local h = nexus.spawn(function() return nexus.current():id() end)
        local outside = h:id()
        return h:join(), outside
      end)
      assert.are.equal(outside, inside)
    end)

    it("tostring(h) looks like nexus.task(N, state)", function()
      local s1, s2, s3, id = nexus.run(function()
        local h = nexus.spawn(function() nexus.sleep(0.02) end)
        nexus.yield()
        local s1 = tostring(h)
        nexus.sleep(0.05)
        local s2 = tostring(h)
        local a = nexus.spawn(function() nexus.sleep(1) end)
        a:abort()
        return s1, s2, tostring(a), h:id()
      end)
      local n, st = s1:match("^nexus%.task%((%d+), ([%w_ ]+)%)$")
      assert.is_truthy(n, s1)
      assert.are.equal(id, tonumber(n))
      local n2, st2 = s2:match("^nexus%.task%((%d+), ([%w_ ]+)%)$")
      assert.is_truthy(n2, s2)
      assert.are.equal(id, tonumber(n2))
      assert.are_not.equal(st, st2)           -- the state shows in the string
      assert.is_truthy(s3:find("abort", 1, true), s3)
    end)

    it("h == nexus.current() inside the task; other tasks' handles differ", function()
      local same, diff, self_eq = nexus.run(function()
        local cur
        local h = nexus.spawn(function() cur = nexus.current(); nexus.sleep(0.01) end)
        local other = nexus.spawn(function() nexus.sleep(0.01) end)
        nexus.yield()
        local same, diff = cur == h, cur == other
        local root_a, root_b = nexus.current(), nexus.current()
        h:join()
        other:join()
        return same, diff, root_a == root_b
      end)
      assert.is_true(same)
      assert.is_false(diff)
      assert.is_true(self_eq)
    end)

    it("handles of tasks in different runtimes are not equal", function()
      local rt1, rt2 = nexus.runtime.new(), nexus.runtime.new()
      local h1 = rt1:block_on(function() return nexus.spawn(function() nexus.sleep(10) end) end)
      local h2 = rt2:block_on(function() return nexus.spawn(function() nexus.sleep(10) end) end)
      local eq = h1 == h2
      rt1:close()
      rt2:close()
      assert.is_false(eq)
    end)

    it("finished detached tasks give their memory back", function()
      local rt = nexus.runtime.new()
      local kb = {}
      for round = 1, 4 do
        rt:block_on(function()
          for _ = 1, 20000 do nexus.spawn(function() nexus.yield() end) end
          nexus.yield()   -- behind every task's first run
          nexus.yield()   -- behind every task's end
        end)
        collectgarbage()
        collectgarbage()
        kb[round] = collectgarbage("count")
      end
      local alive = rt:stats().tasks_alive
      rt:close()
      assert.are.equal(0, alive)
      -- 20,000 leaked coroutines per round would be megabytes
      assert.is_true(kb[4] < kb[2] * 1.2 + 512, ("KB by round: %d %d %d %d"):format(kb[1], kb[2], kb[3], kb[4]))
    end)

    -- Behind a backlog of more than 256 ready tasks, a task with 0 or 1
    -- argument gets its coroutine when it first runs; until then the
    -- runtime holds its function and its argument (nx_task_defer).
    local function noop() end
    local function backlog()
      for _ = 1, 300 do nexus.spawn(noop) end
    end

    it("a task spawned behind a short queue gets its coroutine at once", function()
      local rt = nexus.runtime.new()
      rt:block_on(function()
        for _ = 1, 200 do nexus.spawn(noop) end
      end)
      local st = rt:stats()
      rt:close()
      assert.are.equal(0, st.deferred)
      assert.are.equal(201, st.spawned)
    end)

    it("a deferred task keeps its function and argument through a collection", function()
      local rt = nexus.runtime.new()
      local got = rt:block_on(function()
        backlog()
        local h = nexus.spawn(function(t) return t.v end, { v = "kept" })
        local h0 = nexus.spawn(function(...) return select("#", ...) end)
        collectgarbage()
        collectgarbage()
        return { h:join(), h0:join() }
      end)
      local st = rt:stats()
      rt:close()
      assert.are.same({ "kept", 0 }, got)
      assert.is_true(st.deferred >= 2, "deferred: " .. st.deferred)
    end)

    it("a task aborted before it first runs lets its function and argument go", function()
      local weak = setmetatable({}, { __mode = "v" })
      local rt = nexus.runtime.new()
      local res = rt:block_on(function()
        backlog()
        local fn = function(t) return t end
        local arg = {}
        weak.fn, weak.arg = fn, arg
        local h = nexus.spawn(fn, arg)
        fn, arg = nil, nil
        h:abort()
        collectgarbage()
        collectgarbage()
        return { weak.fn == nil, weak.arg == nil, select(2, h:result()) }
      end)
      local st = rt:stats()
      rt:close()
      assert.are.same({ true, true, "aborted" }, res)
      assert.is_true(st.deferred > 0)
    end)

    it("a deferred task that started no longer holds its argument through the runtime", function()
      local weak = setmetatable({}, { __mode = "v" })
      local rt = nexus.runtime.new()
      local gone = rt:block_on(function()
        backlog()
        local arg = {}
        weak[1] = arg
        local h = nexus.spawn(function(t) t = nil; nexus.sleep(0.05) return t end, arg)
        arg = nil
        nexus.yield()        -- h has started and sleeps; its argument was a local
        collectgarbage()
        collectgarbage()
        local g = weak[1] == nil
        h:join()
        return g
      end)
      local st = rt:stats()
      rt:close()
      assert.is_true(gone)
      assert.is_true(st.deferred > 0)
    end)

    it("closing a runtime with deferred tasks that never started releases them", function()
      local weak = setmetatable({}, { __mode = "v" })
      local rt = nexus.runtime.new()
      local h
      local ok = pcall(rt.block_on, rt, function()
        nexus.spawn(error, "stop")     -- runs first and stops the runtime
        backlog()
        local arg = {}
        weak[1] = arg
        h = nexus.spawn(function(t) return t end, arg)
        nexus.yield()
      end)
      local st = rt:stats()
      rt:close()
      collectgarbage()
      collectgarbage()
      assert.is_false(ok)
      assert.is_true(st.deferred > 0)
      assert.is_nil(weak[1])
      assert.are.same({ false, "aborted" }, { h:result() })
    end)

    it("a detached task (handle dropped and collected) still runs to completion", function()
      local done = {}
      nexus.run(function()
        for i = 1, 5 do
          nexus.spawn(function() nexus.sleep(0.02); done[i] = true end)
        end
        collectgarbage("collect")
        collectgarbage("collect")
        nexus.sleep(0.1)
      end)
      for i = 1, 5 do assert.is_true(done[i], "task " .. i) end
    end)
  end)

  describe("scheduling", function()
    it("nexus.yield interleaves ready tasks round-robin", function()
      local log = nexus.run(function()
        local log = {}
        local hs = {}
        for _, name in ipairs({ "a", "b", "c" }) do
          hs[#hs + 1] = nexus.spawn(function()
            for i = 1, 3 do
              log[#log + 1] = name .. i
              nexus.yield()
            end
          end)
        end
        for _, h in ipairs(hs) do h:join() end
        return log
      end)
      assert.are.same({ "a1", "b1", "c1", "a2", "b2", "c2", "a3", "b3", "c3" }, log)
    end)

    it("spawned tasks start in FIFO order", function()
      local log = nexus.run(function()
        local log, hs = {}, {}
        for i = 1, 20 do hs[i] = nexus.spawn(function() log[#log + 1] = i end) end
        for i = 20, 1, -1 do hs[i]:join() end
        return log
      end)
      local want = {}
      for i = 1, 20 do want[i] = i end
      assert.are.same(want, log)
    end)

    it("a spawned task does not run until the spawner suspends", function()
      local seen = nexus.run(function()
        local ran = false
        local h = nexus.spawn(function() ran = true end)
        local seen = ran
        h:join()
        return seen
      end)
      assert.is_false(seen)
    end)

    it("10,000 tasks spawn and join with the right sum", function()
      local sum, count = nexus.run(function()
        local hs = {}
        for i = 1, 10000 do
          hs[i] = nexus.spawn(function(x) nexus.yield(); return x * 2 end, i)
        end
        local s, c = 0, 0
        for i = 1, 10000 do
          s = s + hs[i]:join()
          c = c + 1
        end
        return s, c
      end)
      assert.are.equal(10000, count)
      assert.are.equal(10000 * 10001, sum)
    end)
  end)

  describe("fail-fast", function()
    it("an error in a task nobody joins makes nexus.run raise it", function()
      local reached = false
      local ok, err = pcall(nexus.run, function()
        nexus.spawn(function() nexus.sleep(0.01); error("unjoined-boom") end)
        nexus.sleep(0.2)
        reached = true
        return "finished"
      end)
      assert.is_false(ok)
      assert.is_string(err)
      assert.is_truthy(err:find("unjoined-boom", 1, true), err)
      assert.is_truthy(err:find("stack traceback", 1, true), err)
      assert.is_false(reached)
    end)

    it("an error in a task nobody joins makes rt:block_on raise it", function()
      local rt = nexus.runtime.new()
      local ok, err = pcall(rt.block_on, rt, function()
        nexus.spawn(function() error("block-on-unjoined") end)
        nexus.sleep(0.2)
        return "finished"
      end)
      rt:close()
      assert.is_false(ok)
      assert.is_string(err)
      assert.is_truthy(err:find("block-on-unjoined", 1, true), err)
      assert.is_truthy(err:find("stack traceback", 1, true), err)
    end)

    it("an error in a detached task after the root returned makes nexus.run raise", function()
      local ok, err = pcall(nexus.run, function()
        nexus.spawn(function() nexus.sleep(0.02); error("late-detached") end)
        return "root done"
      end)
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("late-detached", 1, true))
    end)

    it("an error in a task that is being joined does not stop the runtime", function()
      local r = pack(nexus.run(function()
        local a = nexus.spawn(function() nexus.sleep(0.01); error("observed-a") end)
        -- b fails later, while the root already waits in b:result()
        local b = nexus.spawn(function() nexus.sleep(0.05); error("observed-b") end)
        local ok1, e1 = pcall(a.join, a)
        local ok2, e2 = b:result()
        nexus.sleep(0.01)
        return ok1, e1, ok2, e2, "continued"
      end))
      assert.is_false(r[1])
      assert.is_truthy(tostring(r[2]):find("observed-a", 1, true))
      assert.is_false(r[3])
      assert.is_truthy(tostring(r[4]):find("observed-b", 1, true))
      assert.are.equal("continued", r[5])
    end)

    it("an error observed by a non-root joiner does not stop the runtime", function()
      local r = nexus.run(function()
        local failing = nexus.spawn(function() nexus.sleep(0.01); error("seen-by-joiner") end)
        local joiner = nexus.spawn(function()
          local ok, e = failing:result()
          return (not ok) and tostring(e):find("seen-by-joiner", 1, true) ~= nil
        end)
        return joiner:join()
      end)
      assert.is_true(r)
    end)

    it("with on_task_error('report') the error goes to stderr once and block_on returns", function()
      local r = H.luajit_script([[
        local nexus = require "nexus"
        local rt = nexus.runtime.builder():on_task_error("report"):build()
        local v = rt:block_on(function()
          nexus.spawn(function() nexus.sleep(0.01); error("reported-task-error") end)
          nexus.sleep(0.05)
          return "root-result"
        end)
        print("block_on returned " .. tostring(v))
        print("second " .. tostring(rt:block_on(function() nexus.sleep(0.01); return 2 end)))
        rt:close()
      ]])
      assert.are.equal(0, r.rc, r.err)
      assert.is_truthy(r.out:find("block_on returned root-result", 1, true), r.out)
      assert.is_truthy(r.out:find("second 2", 1, true), r.out)
      assert.is_truthy(r.err:find("reported-task-error", 1, true), r.err)
      assert.are.equal(1, H.count(r.err, "stack traceback"), r.err)
    end)

    it("without on_task_error('report') the same script fails", function()
      local r = H.luajit_script([[
        local nexus = require "nexus"
        local rt = nexus.runtime.new()
        local v = rt:block_on(function()
          nexus.spawn(function() nexus.sleep(0.01); error("default-abort-mode") end)
          nexus.sleep(0.05)
          return "root-result"
        end)
        print("block_on returned " .. tostring(v))
      ]])
      assert.are_not.equal(0, r.rc)
      assert.is_nil(r.out:find("block_on returned", 1, true))
      assert.is_truthy(r.err:find("default-abort-mode", 1, true), r.err)
    end)
  end)
end)

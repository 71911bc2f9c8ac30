-- Time: sleep, sleep_until, timeout, timeout_at, after, after_delay,
-- intervals (and missed-tick behaviours), now, event_time, backoff.
-- Margins: a wake-up is never early, and at most H.LATE late.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local nexus = require "nexus"
local pack, LATE, EPS = H.pack, H.LATE, H.EPS

describe("time", function()
  describe("sleep", function()
    it("1,000 concurrent random sleeps each wake at or after their deadline", function()
      local early, late, worst, woke = nexus.run(function()
        local early, late, worst, woke = 0, 0, 0, 0
        local hs = {}
        for i = 1, 1000 do
          hs[i] = nexus.spawn(function()
            local d = math.random() * 0.02
            local deadline = nexus.now() + d
            nexus.sleep(d)
            local now = nexus.now()
            woke = woke + 1
            if now < deadline then early = early + 1 end
            if now - deadline > worst then worst = now - deadline end
            if now > deadline + LATE then late = late + 1 end
          end)
        end
        for i = 1, 1000 do hs[i]:join() end
        return early, late, worst, woke
      end)
      assert.are.equal(1000, woke)
      assert.are.equal(0, early)
      assert.are.equal(0, late, "worst lateness " .. worst)
    end)

    -- A new coroutine has about 40 stack slots, and the C call that yields
    -- needs 20 free: each Lua frame nexus puts between the task's code and
    -- that call is room the task loses before its first wait must grow
    -- (reallocate) its stack. sleep adds none (tail calls down to C).
    it("a task with locals and a helper call before its first sleep keeps its first stack", function()
      local function parked_kb(task)
        local kb
        nexus.run(function()
          collectgarbage(); collectgarbage()
          local before = collectgarbage("count")
          local hs = {}
          for i = 1, 2000 do hs[i] = nexus.spawn(task, 5) end
          nexus.sleep(0.01)
          collectgarbage(); collectgarbage()
          kb = collectgarbage("count") - before
          for i = 1, #hs do hs[i]:abort() end
        end)
        return kb
      end
      local function helper(d) return nexus.sleep(d) end
      local plain = parked_kb(function(d) nexus.sleep(d) end)
      local busier = parked_kb(function(d)
        local a, b, c, e = d, d * 2, d * 3, d * 4
        helper(a + b + c + e - d * 9)
        return a, b, c, e
      end)
      -- a grown stack costs hundreds of bytes per task
      local extra = (busier - plain) * 1024 / 2000
      assert.is_true(extra < 40, ("%.1f bytes more per parked task"):format(extra))
    end)

    it("sleeps at least the requested time and not much more", function()
      local dt = nexus.run(function()
        local t0 = nexus.now()
        nexus.sleep(0.05)
        return nexus.now() - t0
      end)
      assert.is_true(dt >= 0.05, "slept " .. dt)
      assert.is_true(dt < 0.05 + LATE, "slept " .. dt)
    end)

    it("returns nothing", function()
      local r = nexus.run(function() return pack(nexus.sleep(0.001)) end)
      assert.are.equal(0, r.n)
    end)

    it("sleep(0) lets the other ready tasks run first", function()
      local seen, dt = nexus.run(function()
        local ran = false
        nexus.spawn(function() ran = true end)
        local t0 = nexus.now()
        nexus.sleep(0)
        return ran, nexus.now() - t0
      end)
      assert.is_true(seen)
      assert.is_true(dt < LATE)
    end)

    it("sleep_until wakes at or after the deadline", function()
      local deadline, woke = nexus.run(function()
        local deadline = nexus.now() + 0.04
        nexus.sleep_until(deadline)
        return deadline, nexus.now()
      end)
      assert.is_true(woke >= deadline)
      assert.is_true(woke < deadline + LATE)
    end)

    it("sleep_until a past deadline returns promptly after yielding", function()
      local ran, dt = nexus.run(function()
        local ran = false
        nexus.spawn(function() ran = true end)
        local t0 = nexus.now()
        nexus.sleep_until(t0 - 10)
        return ran, nexus.now() - t0
      end)
      assert.is_true(ran)
      assert.is_true(dt < LATE)
    end)

    it("the runtime parks while every task sleeps (sleep does not spin)", function()
      local rt = nexus.runtime.new()
      rt:block_on(function() nexus.sleep(0.1) end)
      local st = rt:stats()
      rt:close()
      assert.is_true(st.resumes <= 5, "resumes " .. st.resumes)
    end)
  end)

  describe("timeout", function()
    it("returns true and every value of fn when it finishes in time", function()
      local r = nexus.run(function()
        return pack(nexus.timeout(0.5, function(a, b)
          nexus.sleep(0.01)
          return a, nil, b
        end, "x", "y"))
      end)
      assert.are.equal(4, r.n)
      assert.are.same({ true, "x", nil, "y" }, { r[1], r[2], r[3], r[4] })
    end)

    it("returns nil, 'timeout' when fn does not finish in time", function()
      local r, dt = nexus.run(function()
        local t0 = nexus.now()
        local r = pack(nexus.timeout(0.03, function() nexus.sleep(5); return "never" end))
        return r, nexus.now() - t0
      end)
      assert.are.equal(2, r.n)
      assert.is_nil(r[1])
      assert.are.equal("timeout", r[2])
      assert.is_true(dt >= 0.03, "timed out after " .. dt)
      assert.is_true(dt < 0.03 + LATE, "timed out after " .. dt)
    end)

    it("after a timeout, fn never continues", function()
      local continued = false
      local r = nexus.run(function()
        local _, err = nexus.timeout(0.02, function()
          nexus.sleep(0.05)
          continued = true
        end)
        nexus.sleep(0.15)                       -- well past fn's wake-up time
        return err
      end)
      assert.are.equal("timeout", r)
      assert.is_false(continued)
    end)

    it("the task goes on normally after a timeout", function()
      local r = pack(nexus.run(function()
        local a, e = nexus.timeout(0.01, function() nexus.sleep(1) end)
        local t0 = nexus.now()
        nexus.sleep(0.02)
        local slept = nexus.now() - t0
        local v = nexus.spawn(function() nexus.yield(); return "child" end):join()
        local ok, w = nexus.timeout(0.5, function() nexus.sleep(0.01); return "second" end)
        return a, e, slept, v, ok, w
      end))
      assert.is_nil(r[1])
      assert.are.equal("timeout", r[2])
      assert.is_true(r[3] >= 0.02)
      assert.are.equal("child", r[4])
      assert.is_true(r[5])
      assert.are.equal("second", r[6])
    end)

    it("leaves no timer behind, whether fn finished or timed out", function()
      local rt = nexus.runtime.new()
      local after_ok, after_to = rt:block_on(function()
        nexus.timeout(1, function() nexus.sleep(0.01) end)
        local after_ok = rt:stats().timers
        nexus.timeout(0.01, function() nexus.sleep(1) end)
        return after_ok, rt:stats().timers
      end)
      rt:close()
      assert.are.equal(0, after_ok)
      assert.are.equal(0, after_to)
    end)

    it("nested, inner shorter: the inner one times out, the outer one succeeds", function()
      local r, dt = nexus.run(function()
        local t0 = nexus.now()
        local r = pack(nexus.timeout(0.5, function()
          return nexus.timeout(0.02, function() nexus.sleep(1) end)
        end))
        return r, nexus.now() - t0
      end)
      assert.are.equal(3, r.n)
      assert.are.same({ true, nil, "timeout" }, { r[1], r[2], r[3] })
      assert.is_true(dt >= 0.02 and dt < 0.02 + LATE, "took " .. dt)
    end)

    it("nested, outer shorter: the outer one times out at its own deadline", function()
      local inner_returned = false
      local r, dt = nexus.run(function()
        local t0 = nexus.now()
        local r = pack(nexus.timeout(0.02, function()
          local a, b = nexus.timeout(0.5, function() nexus.sleep(1) end)
          inner_returned = true
          return a, b
        end))
        nexus.sleep(0.05)
        return r, nexus.now() - t0
      end)
      assert.are.equal(2, r.n)
      assert.is_nil(r[1])
      assert.are.equal("timeout", r[2])
      assert.is_false(inner_returned)
      assert.is_true(dt < 0.5, "took " .. dt)
    end)

    it("around a join: the joined task keeps running and can be joined later", function()
      local r = pack(nexus.run(function()
        local t0 = nexus.now()
        local long = nexus.spawn(function() nexus.sleep(0.1); return "long-result" end)
        local a, e = nexus.timeout(0.02, function() return long:join() end)
        local mid_finished = long:is_finished()
        local v = long:join()
        return a, e, mid_finished, v, nexus.now() - t0
      end))
      assert.is_nil(r[1])
      assert.are.equal("timeout", r[2])
      assert.is_false(r[3])
      assert.are.equal("long-result", r[4])
      assert.is_true(r[5] >= 0.1)
    end)

    it("propagates fn's error, message and table identity", function()
      local obj = {}
      local ok1, e1, ok2, e2 = nexus.run(function()
        local ok1, e1 = pcall(nexus.timeout, 1, function() nexus.sleep(0.01); error("inside-timeout") end)
        local ok2, e2 = pcall(nexus.timeout, 1, function() error(obj) end)
        return ok1, e1, ok2, e2
      end)
      assert.is_false(ok1)
      assert.is_truthy(tostring(e1):find("inside-timeout", 1, true))
      assert.is_false(ok2)
      assert.are.equal(obj, e2)
    end)

    it("interrupts a fn that only ever yields", function()
      local r, dt = nexus.run(function()
        local t0 = nexus.now()
        local r = pack(nexus.timeout(0.03, function()
          while nexus.now() < t0 + 2 do nexus.yield() end
          return "spun to the end"
        end))
        return r, nexus.now() - t0
      end)
      assert.is_nil(r[1])
      assert.are.equal("timeout", r[2])
      assert.is_true(dt >= 0.03 and dt < 0.03 + LATE, "took " .. dt)
    end)

    it("a pcall inside fn does not catch the timeout", function()
      local after_pcall = false
      local r = pack(nexus.run(function()
        local a, b = nexus.timeout(0.02, function()
          pcall(nexus.sleep, 0.5)
          after_pcall = true
          return "finished"
        end)
        nexus.sleep(0.05)
        return a, b
      end))
      assert.is_nil(r[1])
      assert.are.equal("timeout", r[2])
      assert.is_false(after_pcall)
    end)

    it("aborting a task inside a timeout releases the timeout's timers", function()
      local rt = nexus.runtime.new()
      local during, after = rt:block_on(function()
        local h = nexus.spawn(function()
          nexus.timeout(5, function() nexus.timeout(4, function() nexus.sleep(3) end) end)
        end)
        nexus.yield()
        local during = rt:stats().timers
        h:abort()
        return during, rt:stats().timers
      end)
      rt:close()
      assert.is_true(during >= 1)
      assert.are.equal(0, after)
    end)

    it("timeout_at takes an absolute deadline", function()
      local r1, r2, dt = nexus.run(function()
        local r1 = pack(nexus.timeout_at(nexus.now() + 0.5, function(x) nexus.sleep(0.01); return x end, "in-time"))
        local t0 = nexus.now()
        local deadline = t0 + 0.03
        local r2 = pack(nexus.timeout_at(deadline, function() nexus.sleep(1) end))
        return r1, r2, nexus.now() - t0
      end)
      assert.are.same({ true, "in-time" }, { r1[1], r1[2] })
      assert.is_nil(r2[1])
      assert.are.equal("timeout", r2[2])
      assert.is_true(dt >= 0.03 and dt < 0.03 + LATE, "took " .. dt)
    end)
  end)

  describe("after / after_delay", function()
    it("after runs fn first, then waits for the deadline, and returns fn's results", function()
      local r = pack(nexus.run(function()
        local deadline = nexus.now() + 0.05
        local ran_at
        local a, b, c = nexus.after(deadline, function(x)
          ran_at = nexus.now()
          return x, nil, "z"
        end, "x")
        return a, b, c, ran_at, deadline, nexus.now()
      end))
      assert.are.equal("x", r[1])
      assert.is_nil(r[2])
      assert.are.equal("z", r[3])
      assert.is_true(r[4] < r[5])                -- fn ran before the deadline
      assert.is_true(r[6] >= r[5])               -- returned at or after it
      assert.is_true(r[6] < r[5] + LATE)
    end)

    it("after propagates fn's error without waiting for the deadline", function()
      local ok, err, dt = nexus.run(function()
        local t0 = nexus.now()
        local ok, err = pcall(nexus.after, t0 + 1, function() error("after-fn-error") end)
        return ok, err, nexus.now() - t0
      end)
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("after-fn-error", 1, true))
      assert.is_true(dt < LATE)
    end)

    it("after_delay counts the delay from the call, not from fn's end", function()
      local v, dt = nexus.run(function()
        local t0 = nexus.now()
        local v = nexus.after_delay(0.3, function() nexus.sleep(0.25); return "ad" end)
        return v, nexus.now() - t0
      end)
      assert.are.equal("ad", v)
      assert.is_true(dt >= 0.3, "took " .. dt)
      assert.is_true(dt < 0.3 + LATE, "took " .. dt)   -- 0.55 if counted from fn's end
    end)
  end)

  describe("interval", function()
    it("ticks the first time at once", function()
      local dt, sched, created = nexus.run(function()
        local t0 = nexus.now()
        local iv = nexus.interval(1)
        local s = iv:tick()
        return nexus.now() - t0, s, t0
      end)
      assert.is_true(dt < LATE, "first tick after " .. dt)
      assert.is_true(sched >= created - EPS and sched < created + LATE)
    end)

    it("later ticks come one period apart and tick() returns the scheduled time", function()
      local P = 0.05
      local scheds, fired = nexus.run(function()
        local iv = nexus.interval(P)
        local scheds, fired = {}, {}
        for i = 1, 5 do
          scheds[i] = iv:tick()
          fired[i] = nexus.now()
        end
        return scheds, fired
      end)
      for i = 2, 5 do
        assert.is_true(math.abs(scheds[i] - (scheds[1] + (i - 1) * P)) < 1e-6,
          "tick " .. i .. " scheduled at +" .. (scheds[i] - scheds[1]))
        assert.is_true(fired[i] >= scheds[i], "tick " .. i .. " early")
        assert.is_true(fired[i] < scheds[i] + LATE, "tick " .. i .. " late")
      end
    end)

    it("interval_at starts at the given time", function()
      local start, s1, f1, s2 = nexus.run(function()
        local start = nexus.now() + 0.05
        local iv = nexus.interval_at(start, 0.02)
        local s1 = iv:tick()
        local f1 = nexus.now()
        return start, s1, f1, iv:tick()
      end)
      assert.is_true(math.abs(s1 - start) < 1e-9)
      assert.is_true(f1 >= start and f1 < start + LATE)
      assert.is_true(math.abs(s2 - (start + 0.02)) < 1e-6)
    end)

    -- Blocks the task for 3.5 periods after the first tick, then returns
    -- the scheduled times of the next ticks and when each fired.
    local function late_ticks(behavior, P, n)
      return nexus.run(function()
        local iv = nexus.interval(P)
        if behavior then iv:set_missed_tick_behavior(behavior) end
        local t0 = iv:tick()
        H.busy_wait(nexus, 3.5 * P)
        local busy_end = nexus.now()
        local s, f = {}, {}
        for i = 1, n do
          s[i] = iv:tick()
          f[i] = nexus.now()
        end
        return t0, busy_end, s, f
      end)
    end

    local function on_grid(t, t0, P)
      local k = (t - t0) / P
      return math.abs(k - math.floor(k + 0.5)) < 1e-6
    end

    it("burst (the default): missed ticks fire back to back, on the grid", function()
      local P = 0.05
      local t0, busy_end, s, f = late_ticks(nil, P, 4)
      for i = 1, 4 do
        assert.is_true(math.abs(s[i] - (t0 + i * P)) < 1e-6,
          "tick " .. i .. " at +" .. (s[i] - t0))
        assert.is_true(f[i] >= s[i])
      end
      -- the three missed ones come at once, without waiting a period each
      assert.is_true(f[3] - busy_end < P, "missed ticks took " .. (f[3] - busy_end))
      assert.is_true(f[3] < t0 + 4 * P)
      assert.is_true(f[4] >= t0 + 4 * P)
    end)

    it("burst set explicitly behaves as the default", function()
      local P = 0.05
      local t0, _, s = late_ticks("burst", P, 3)
      for i = 1, 3 do assert.is_true(math.abs(s[i] - (t0 + i * P)) < 1e-6) end
    end)

    it("delay: the next tick comes one period after the late one", function()
      local P = 0.05
      local t0, busy_end, s, f = late_ticks("delay", P, 3)
      assert.is_true(math.abs(s[1] - (t0 + P)) < 1e-6)   -- the late tick itself
      assert.is_true(f[1] >= busy_end)
      assert.is_true(s[2] >= busy_end + P - EPS,
        "next scheduled " .. (s[2] - busy_end) .. " after the late tick")
      assert.is_true(s[2] <= f[1] + P + EPS)
      assert.is_true(math.abs((s[3] - s[2]) - P) < 1e-6)
      assert.is_true(f[2] >= s[2] and f[3] >= s[3])
    end)

    it("skip: fires once, then resumes the original grid beyond now", function()
      local P = 0.05
      local t0, busy_end, s, f = late_ticks("skip", P, 3)
      assert.is_true(math.abs(s[1] - (t0 + P)) < 1e-6)
      assert.is_true(on_grid(s[2], t0, P), "next at +" .. (s[2] - t0))
      assert.is_true(s[2] > f[1] - P * 0.1 and s[2] >= busy_end, "next at +" .. (s[2] - t0))
      assert.is_true(s[2] <= f[1] + P + EPS)
      assert.is_true(math.abs(s[2] - (t0 + 4 * P)) < 1e-6, "next at +" .. (s[2] - t0))
      assert.is_true(math.abs(s[3] - (t0 + 5 * P)) < 1e-6)
      assert.is_true(f[2] >= s[2])
    end)

    it("reset: the next tick is one period from the reset", function()
      local P = 0.05
      local before, after, s = nexus.run(function()
        local iv = nexus.interval(P)
        iv:tick()
        nexus.sleep(0.03)
        local before = nexus.now()
        iv:reset()
        local after = nexus.now()
        return before, after, iv:tick()
      end)
      assert.is_true(s >= before + P - EPS, "scheduled +" .. (s - before))
      assert.is_true(s <= after + P + EPS, "scheduled +" .. (s - before))
    end)
  end)

  describe("clocks", function()
    it("nexus.now() is monotonic and in seconds", function()
      local prev = nexus.now()
      for _ = 1, 10000 do
        local t = nexus.now()
        assert(t >= prev, "clock went back")
        prev = t
      end
      local dt = nexus.run(function()
        local t0 = nexus.now()
        nexus.sleep(0.05)
        return nexus.now() - t0
      end)
      assert.is_true(dt >= 0.05 and dt < 0.05 + LATE)
    end)

    it("event_time() is close to now inside a task, and cached within a cycle", function()
      local e1, n1, e2, e3 = nexus.run(function()
        nexus.sleep(0.01)
        local e1, n1 = nexus.event_time(), nexus.now()
        H.busy_wait(nexus, 0.03)
        local e2 = nexus.event_time()
        nexus.sleep(0.01)
        return e1, n1, e2, nexus.event_time()
      end)
      assert.is_true(e1 <= n1 + EPS)
      assert.is_true(n1 - e1 < LATE)
      assert.are.equal(e1, e2)                 -- no new cycle while the task runs
      assert.is_true(e3 >= e1 + 0.03)          -- a later cycle: a later time
    end)
  end)

  describe("backoff", function()
    it("delays double up to max_delay and retries counts the waits", function()
      local rows = nexus.run(function()
        local b = nexus.backoff { initial = 0.01, max_delay = 0.04 }
        local rows = {}
        for i = 1, 5 do
          local d = b:current_delay()
          local t0 = nexus.now()
          local ok = b:wait("e")
          rows[i] = { d = d, slept = nexus.now() - t0, ok = ok, n = b:retries() }
        end
        return rows
      end)
      local want = { 0.01, 0.02, 0.04, 0.04, 0.04 }
      for i = 1, 5 do
        local r = rows[i]
        assert.is_true(math.abs(r.d - want[i]) < 1e-9, "delay " .. i .. " = " .. r.d)
        assert.is_true(r.slept >= want[i], "wait " .. i .. " slept " .. r.slept)
        assert.is_true(r.slept < want[i] + LATE)
        assert.is_true(r.ok)
        assert.are.equal(i, r.n)
      end
    end)

    it("defaults: initial delay 0.25 and no retries yet", function()
      local b = nexus.backoff()
      assert.are.equal(0.25, b:current_delay())
      assert.are.equal(0, b:retries())
    end)

    it("max_retries exhausted returns nil, 'exhausted', err at once", function()
      local err = { "the error" }
      local r, dt, n = nexus.run(function()
        local b = nexus.backoff { initial = 0.01, max_delay = 1, max_retries = 2 }
        assert(b:wait(err))
        assert(b:wait(err))
        local t0 = nexus.now()
        local r = pack(b:wait(err))
        return r, nexus.now() - t0, b:retries()
      end)
      assert.are.equal(3, r.n)
      assert.is_nil(r[1])
      assert.are.equal("exhausted", r[2])
      assert.are.equal(err, r[3])
      assert.is_true(dt < 0.04, "took " .. dt)   -- the next delay would be 0.04
      assert.are.equal(2, n)
    end)

    it("max_retries = 0 is exhausted before any sleep", function()
      local ok, why, dt = nexus.run(function()
        local b = nexus.backoff { initial = 1, max_delay = 1, max_retries = 0 }
        local t0 = nexus.now()
        local ok, why = b:wait("x")
        return ok, why, nexus.now() - t0
      end)
      assert.is_nil(ok)
      assert.are.equal("exhausted", why)
      assert.is_true(dt < LATE)
    end)

    it("a deadline cuts the last sleep short and then exhausts", function()
      local r = nexus.run(function()
        local t0 = nexus.now()
        local deadline = t0 + 0.1
        local b = nexus.backoff { initial = 0.04, max_delay = 1, deadline = deadline }
        local waits, last_end = 0, t0
        while true do
          local ok, why, e = b:wait("dl-err")
          if not ok then
            return { waits = waits, why = why, e = e, last_end = last_end, deadline = deadline,
                     at = nexus.now() }
          end
          waits = waits + 1
          last_end = nexus.now()
          if waits > 10 then error("never exhausted") end
        end
      end)
      assert.are.equal("exhausted", r.why)
      assert.are.equal("dl-err", r.e)
      assert.are.equal(2, r.waits)             -- 0.04, then 0.08 cut to the deadline
      assert.is_true(r.last_end >= r.deadline)
      assert.is_true(r.last_end < r.deadline + LATE, "overslept the deadline")
      assert.is_true(r.at < r.deadline + LATE)
    end)

    it("reset goes back to the initial delay and zero retries", function()
      local d, n = nexus.run(function()
        local b = nexus.backoff { initial = 0.005, max_delay = 1 }
        b:wait()
        b:wait()
        b:reset()
        return b:current_delay(), b:retries()
      end)
      assert.are.equal(0.005, d)
      assert.are.equal(0, n)
    end)

    it("jitter shortens each sleep within [delay * (1 - jitter), delay]", function()
      local slept = nexus.run(function()
        local b = nexus.backoff { initial = 0.04, max_delay = 0.04, jitter = 0.5 }
        local slept = {}
        for i = 1, 6 do
          local t0 = nexus.now()
          b:wait()
          slept[i] = nexus.now() - t0
        end
        return slept
      end)
      for i = 1, #slept do
        assert.is_true(slept[i] >= 0.02, "slept " .. slept[i])
        assert.is_true(slept[i] < 0.04 + LATE, "slept " .. slept[i])
      end
    end)

    it("an unknown option raises, naming nexus.backoff and the option", function()
      local err = H.errof(nexus.backoff, { initial = 1, bogus_option = 2 })
      assert.is_string(err)
      assert.is_truthy(err:find("nexus.backoff", 1, true), err)
      assert.is_truthy(err:find("bogus_option", 1, true), err)
    end)

    it("bad option values raise", function()
      for _, opts in ipairs({ { initial = 0 }, { initial = "1" }, { jitter = 2 },
                              { max_delay = 0.1, initial = 1 }, { max_retries = -1 },
                              { initial = 0 / 0 } }) do
        local err = H.errof(nexus.backoff, opts)
        assert.is_string(err)
        assert.is_truthy(err:find("nexus.backoff", 1, true), err)
      end
    end)
  end)
end)

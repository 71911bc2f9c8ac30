-- Bad input and misuse: every programming error raises a clear Lua error
-- whose message names the function (never a crash, never a silent no-op),
-- and suspending where Lua cannot yield raises a nexus error, not LuaJIT's
-- "attempt to yield across C-call boundary".
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local nexus = require "nexus"

-- Asserts that fn(...) raises a string error containing every needle.
local function raises(needles, fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error containing '" .. needles[1] .. "', but the call succeeded")
  assert(type(err) == "string", "expected a string error, got " .. type(err) .. ": " .. tostring(err))
  for _, n in ipairs(needles) do
    assert(err:find(n, 1, true), "error '" .. err .. "' does not contain '" .. n .. "'")
  end
  assert(not err:find("C-call boundary", 1, true), "LuaJIT's own yield error leaked: " .. err)
  return err
end

-- Runs fn as the root task and re-raises an error it raised.
local function in_task(fn)
  return nexus.run(fn)
end

local NOT_IN_TASK = "not inside a nexus task"
local CANNOT_SUSPEND = "cannot suspend here"

describe("bad input", function()
  after_each(H.cleanup)

  describe("spawn", function()
    it("raises for a non-function, inside and outside a task", function()
      for _, v in ipairs({ 1, "f", {}, true }) do
        raises({ "nexus.spawn" }, nexus.spawn, v)
      end
      raises({ "nexus.spawn" }, nexus.spawn)
      in_task(function()
        for _, v in ipairs({ 1, "f", {}, false }) do
          raises({ "nexus.spawn" }, nexus.spawn, v)
        end
        raises({ "nexus.spawn" }, nexus.spawn, nil)
      end)
    end)

    it("outside any runtime raises instead of dropping the task", function()
      raises({ "nexus.spawn", NOT_IN_TASK }, nexus.spawn, function() end)
    end)

    -- nexus.spawn and the C suspend call back into nexus.util on their
    -- rare paths; without it (nexus.core loaded on its own) they say so
    it("a missing Lua side of nexus.core gives a clear error, not a crash", function()
      local reg = debug.getregistry()
      local saved_no_task, saved_refuse = reg["nexus.no_task"], reg["nexus.refuse"]
      reg["nexus.no_task"], reg["nexus.refuse"] = nil, nil
      local ok1, e1 = pcall(nexus.spawn, function() end)
      local ok2, e2 = pcall(require("nexus.core").suspend, "x:wait")   -- main thread: refuses
      reg["nexus.no_task"], reg["nexus.refuse"] = saved_no_task, saved_refuse
      assert.is_false(ok1)
      assert.truthy(tostring(e1):find("nexus.spawn: nexus.core is missing its Lua side", 1, true), e1)
      assert.is_false(ok2)
      assert.truthy(tostring(e2):find("x:wait: nexus.core is missing its Lua side", 1, true), e2)
      raises({ "nexus.spawn", NOT_IN_TASK }, nexus.spawn, function() end)   -- restored
    end)
  end)

  describe("durations and periods", function()
    it("sleep rejects negative, NaN and non-number durations", function()
      in_task(function()
        raises({ "nexus.sleep" }, nexus.sleep, -1)
        raises({ "nexus.sleep" }, nexus.sleep, -0.001)
        raises({ "nexus.sleep" }, nexus.sleep, 0 / 0)
        raises({ "nexus.sleep" }, nexus.sleep, "x")
        raises({ "nexus.sleep" }, nexus.sleep, "0.1")
        raises({ "nexus.sleep" }, nexus.sleep, nil)
        raises({ "nexus.sleep" }, nexus.sleep, {})
      end)
    end)

    it("a rejected sleep leaves no timer behind", function()
      local rt = nexus.runtime.new()
      local n = rt:block_on(function()
        pcall(nexus.sleep, -1)
        pcall(nexus.sleep, 0 / 0)
        return rt:stats().timers
      end)
      rt:close()
      assert.are.equal(0, n)
    end)

    it("sleep_until rejects NaN and non-numbers", function()
      in_task(function()
        raises({ "nexus.sleep_until" }, nexus.sleep_until, 0 / 0)
        raises({ "nexus.sleep_until" }, nexus.sleep_until, "x")
        raises({ "nexus.sleep_until" }, nexus.sleep_until, nil)
      end)
    end)

    it("interval rejects zero, negative, NaN, infinite and non-number periods", function()
      raises({ "nexus.interval" }, nexus.interval, 0)
      raises({ "nexus.interval" }, nexus.interval, -1)
      raises({ "nexus.interval" }, nexus.interval, 0 / 0)
      raises({ "nexus.interval" }, nexus.interval, math.huge)
      raises({ "nexus.interval" }, nexus.interval, "1")
      raises({ "nexus.interval" }, nexus.interval, nil)
      raises({ "nexus.interval_at" }, nexus.interval_at, nexus.now(), 0)
      raises({ "nexus.interval_at" }, nexus.interval_at, "now", 1)
    end)

    it("set_missed_tick_behavior rejects unknown behaviours", function()
      local iv = nexus.interval(1)
      local err = raises({ "set_missed_tick_behavior" }, iv.set_missed_tick_behavior, iv, "nope")
      assert.is_truthy(err:find("nope", 1, true))
      raises({ "set_missed_tick_behavior" }, iv.set_missed_tick_behavior, iv, nil)
      raises({ "set_missed_tick_behavior" }, iv.set_missed_tick_behavior, iv, "BURST")
    end)

    it("timeout and timeout_at reject a non-function and bad times", function()
      in_task(function()
        raises({ "nexus.timeout" }, nexus.timeout, 1, "not a function")
        raises({ "nexus.timeout" }, nexus.timeout, 1, nil)
        raises({ "nexus.timeout" }, nexus.timeout, 1)
        raises({ "nexus.timeout" }, nexus.timeout, -1, function() end)
        raises({ "nexus.timeout" }, nexus.timeout, 0 / 0, function() end)
        raises({ "nexus.timeout" }, nexus.timeout, "1", function() end)
        raises({ "nexus.timeout_at" }, nexus.timeout_at, nexus.now() + 1, {})
        raises({ "nexus.timeout_at" }, nexus.timeout_at, "soon", function() end)
      end)
    end)

    it("after and after_delay reject a non-function and bad times", function()
      in_task(function()
        raises({ "nexus.after" }, nexus.after, nexus.now(), 42)
        raises({ "nexus.after" }, nexus.after, "x", function() end)
        raises({ "nexus.after_delay" }, nexus.after_delay, 0.01, nil)
        raises({ "nexus.after_delay" }, nexus.after_delay, -1, function() end)
      end)
    end)
  end)

  describe("suspending outside a task", function()
    it("sleep, sleep_until, yield, timeout raise 'not inside a nexus task'", function()
      raises({ "nexus.sleep", NOT_IN_TASK }, nexus.sleep, 0.01)
      raises({ "nexus.sleep_until", NOT_IN_TASK }, nexus.sleep_until, nexus.now())
      raises({ "nexus.yield", NOT_IN_TASK }, nexus.yield)
      raises({ "nexus.timeout", NOT_IN_TASK }, nexus.timeout, 1, function() return 1 end)
    end)

    it("interval:tick and backoff:wait raise 'not inside a nexus task'", function()
      local iv = nexus.interval(1)
      raises({ "tick", NOT_IN_TASK }, iv.tick, iv)
      local b = nexus.backoff { initial = 0.01 }
      raises({ "wait", NOT_IN_TASK }, b.wait, b)
    end)

    it("join and result of an unfinished task raise 'not inside a nexus task'", function()
      local rt = nexus.runtime.new()
      local h = rt:block_on(function() return nexus.spawn(function() nexus.sleep(5) end) end)
      raises({ "join", NOT_IN_TASK }, h.join, h)
      raises({ "result", NOT_IN_TASK }, h.result, h)
      rt:close()
    end)

    it("after and after_delay raise before running fn", function()
      local ran = 0
      raises({ "nexus.after", NOT_IN_TASK }, nexus.after, nexus.now() + 1, function() ran = ran + 1 end)
      raises({ "nexus.after_delay", NOT_IN_TASK }, nexus.after_delay, 1, function() ran = ran + 1 end)
      assert.are.equal(0, ran)
    end)
  end)

  describe("joins", function()
    it("a task joining itself raises", function()
      local err = in_task(function()
        local h = nexus.spawn(function()
          local ok, e = pcall(function() return nexus.current():join() end)
          return e
        end)
        return h:join()
      end)
      assert.is_string(err)
      assert.is_truthy(err:find("join", 1, true), err)
      assert.is_truthy(err:find("itself", 1, true), err)
    end)

    it("the root joining itself raises too (result as well)", function()
      in_task(function()
        raises({ "join" }, function() return nexus.current():join() end)
        raises({ "result" }, function() return nexus.current():result() end)
      end)
    end)

    it("a second task joining the same unfinished task raises; the first join still works", function()
      local first, second_ok, second_err = in_task(function()
        local target = nexus.spawn(function() nexus.sleep(0.03); return "target" end)
        local j1 = nexus.spawn(function() return target:join() end)
        local j2 = nexus.spawn(function() return pcall(target.join, target) end)
        local ok, err = j2:join()
        return j1:join(), ok, err
      end)
      assert.are.equal("target", first)
      assert.is_false(second_ok)
      assert.is_string(second_err)
      assert.is_truthy(second_err:find("join", 1, true), second_err)
    end)

    it("join and result reject something that is not a handle", function()
      in_task(function()
        local h = nexus.spawn(function() end)
        raises({ "join" }, h.join, 5)
        raises({ "join" }, h.join, {})
        raises({ "result" }, h.result, "x")
        raises({ "abort" }, h.abort, nil)
        raises({ "id" }, h.id, {})
        -- other userdata: the runtime object, a file, a claim-sized proxy
        raises({ "join", "expected a task handle" }, h.join, nexus.runtime.new())
        raises({ "join", "expected a task handle" }, h.join, io.stdout)
        raises({ "is_finished", "expected a task handle" }, h.is_finished, newproxy(true))
        h:join()
      end)
    end)
  end)

  describe("running a runtime from inside a task", function()
    it("rt:block_on raises, for another runtime and for the running one", function()
      local other = nexus.runtime.new()
      local rt = nexus.runtime.new()
      rt:block_on(function()
        raises({ "block_on", "inside" }, other.block_on, other, function() end)
        raises({ "block_on", "inside" }, rt.block_on, rt, function() end)
        raises({ "block_on_busy" }, other.block_on_busy, other, function() end)
      end)
      rt:close()
      other:close()
    end)

    it("nexus.run raises", function()
      local inner_ran = false
      in_task(function()
        raises({ "nexus.run", "inside" }, nexus.run, function() inner_ran = true end)
      end)
      assert.is_false(inner_ran)
    end)

    it("rt:close() from inside the runtime's own task raises", function()
      local rt = nexus.runtime.new()
      local err = rt:block_on(function()
        local ok, e = pcall(rt.close, rt)
        return e
      end)
      local closed = rt:stats().closed
      rt:close()
      assert.is_string(err)
      assert.is_truthy(err:find("close", 1, true), err)
      assert.is_false(closed)
    end)

    it("joining a task of another runtime raises", function()
      local rt1, rt2 = nexus.runtime.new(), nexus.runtime.new()
      local h = rt1:block_on(function() return nexus.spawn(function() nexus.sleep(5) end) end)
      local ok, err = rt2:block_on(function() return pcall(h.join, h) end)
      rt2:close()
      rt1:close()
      assert.is_false(ok)
      assert.is_string(err)
      assert.is_truthy(err:find("join", 1, true), err)
    end)

    it("block_on rejects a non-function", function()
      local rt = nexus.runtime.new()
      raises({ "block_on" }, rt.block_on, rt, 42)
      raises({ "block_on" }, rt.block_on, rt)
      rt:close()
      raises({ "nexus.run" }, nexus.run, "not a function")
    end)
  end)

  describe("error values thrown in tasks", function()
    it("a table error comes back from join as the same table", function()
      local obj = { reason = "custom" }
      local ok, err = in_task(function()
        local h = nexus.spawn(function() nexus.yield(); error(obj) end)
        return pcall(h.join, h)
      end)
      assert.is_false(ok)
      assert.are.equal(obj, err)
    end)

    it("a nil error comes back from join as a string mentioning nil", function()
      local ok, err = in_task(function()
        local h = nexus.spawn(function() nexus.yield(); error(nil) end)
        return pcall(h.join, h)
      end)
      assert.is_false(ok)
      assert.is_string(err)
      assert.is_truthy(err:find("nil", 1, true), err)
    end)

    it("a false error comes back from result() as false, not as success", function()
      local r = in_task(function()
        local h = nexus.spawn(function() nexus.yield(); error(false) end)
        return H.pack(h:result())
      end)
      assert.is_false(r[1])
      assert.is_false(r[2])
    end)
  end)

  describe("builder options", function()
    it("reject bad values, naming the option", function()
      local B = nexus.runtime.builder
      raises({ "tasks_per_cycle" }, function() B():tasks_per_cycle(0) end)
      raises({ "tasks_per_cycle" }, function() B():tasks_per_cycle(-3) end)
      raises({ "tasks_per_cycle" }, function() B():tasks_per_cycle(1.5) end)
      raises({ "tasks_per_cycle" }, function() B():tasks_per_cycle("64") end)
      raises({ "tasks_per_cycle" }, function() B():tasks_per_cycle(0 / 0) end)
      raises({ "event_interval" }, function() B():event_interval(0) end)
      raises({ "event_interval" }, function() B():event_interval(nil) end)
      raises({ "on_task_error" }, function() B():on_task_error("x") end)
      raises({ "on_task_error" }, function() B():on_task_error(nil) end)
      raises({ "on_task_error" }, function() B():on_task_error("ABORT") end)
    end)

    it("accept the documented values", function()
      local rt = nexus.runtime.builder():tasks_per_cycle(1):event_interval(1)
        :on_task_error("abort"):on_task_error("report"):build()
      assert.are.equal(3, rt:block_on(function() return 3 end))
      rt:close()
    end)
  end)

  describe("suspending where Lua cannot yield", function()
    it("nexus.sleep inside table.sort's comparator raises 'cannot suspend here'", function()
      in_task(function()
        raises({ "nexus.sleep", CANNOT_SUSPEND }, table.sort, { 3, 1, 2 }, function(a, b)
          nexus.sleep(0.001)
          return a < b
        end)
      end)
    end)

    it("nexus.sleep inside a string.gsub callback raises 'cannot suspend here'", function()
      in_task(function()
        raises({ "nexus.sleep", CANNOT_SUSPEND }, string.gsub, "abc", "%w", function(c)
          nexus.sleep(0.001)
          return c
        end)
      end)
    end)

    it("yield, join, timeout, tick, backoff and sleep_until raise there too", function()
      in_task(function()
        local h = nexus.spawn(function() nexus.sleep(0.02); return "h" end)
        local iv = nexus.interval(1)
        iv:tick()
        local b = nexus.backoff { initial = 0.01 }
        local function in_sort(fn)
          return function() table.sort({ 3, 1, 2 }, function(x, y) fn(); return x < y end) end
        end
        raises({ "nexus.yield", CANNOT_SUSPEND }, in_sort(nexus.yield))
        raises({ "join", CANNOT_SUSPEND }, in_sort(function() h:join() end))
        raises({ "nexus.timeout", CANNOT_SUSPEND },
          in_sort(function() nexus.timeout(1, function() nexus.sleep(0.001) end) end))
        raises({ "tick", CANNOT_SUSPEND }, in_sort(function() iv:tick() end))
        raises({ "wait", CANNOT_SUSPEND }, in_sort(function() b:wait() end))
        raises({ "nexus.sleep_until", CANNOT_SUSPEND }, in_sort(function() nexus.sleep_until(0) end))
        assert(h:join() == "h")
      end)
    end)

    it("after the refusal the task is intact: no timer left, it can sleep and join", function()
      local rt = nexus.runtime.new()
      local timers, dt, v = rt:block_on(function()
        local h = nexus.spawn(function() nexus.sleep(0.02); return "joined later" end)
        nexus.yield()                           -- h starts its sleep
        pcall(table.sort, { 3, 1, 2 }, function(a, b) nexus.sleep(1); return a < b end)
        pcall(table.sort, { 3, 1, 2 }, function(a, b) h:join(); return a < b end)
        local timers = rt:stats().timers        -- only h's own sleep
        local t0 = nexus.now()
        nexus.sleep(0.01)
        return timers, nexus.now() - t0, h:join()
      end)
      rt:close()
      assert.are.equal(1, timers)
      assert.is_true(dt >= 0.01 and dt < 0.01 + H.LATE)
      assert.are.equal("joined later", v)
    end)

    it("suspending inside pcall and xpcall works", function()
      local r = in_task(function()
        local ok1, v1 = pcall(function() nexus.sleep(0.005); return "p" end)
        local ok2, v2 = xpcall(function() nexus.sleep(0.005); return "x" end, debug.traceback)
        local ok3, e3 = pcall(function() nexus.sleep(0.005); error("after-suspend") end)
        return { ok1, v1, ok2, v2, ok3, e3 }
      end)
      assert.is_true(r[1]); assert.are.equal("p", r[2])
      assert.is_true(r[3]); assert.are.equal("x", r[4])
      assert.is_false(r[5]); assert.is_truthy(tostring(r[6]):find("after-suspend", 1, true))
    end)

    it("suspending inside a plain coroutine in a task works or raises, and leaves the task usable", function()
      local r = in_task(function()
        local ok, v = pcall(function()
          local gen = coroutine.wrap(function() nexus.sleep(0.01); return "from generator" end)
          return gen()
        end)
        -- afterwards the task must still be a working task
        local ok2, e2 = pcall(nexus.sleep, 0.01)
        return { ok = ok, v = v, ok2 = ok2, e2 = e2 }
      end)
      if r.ok then
        assert.are.equal("from generator", r.v)
      else
        assert.is_truthy(tostring(r.v):find("nexus.sleep", 1, true), tostring(r.v))
      end
      assert.is_true(r.ok2, tostring(r.e2))
    end)

    it("the same holds for yield, join, timeout, tick and backoff inside a plain coroutine", function()
      local outcomes, final = in_task(function()
        local h = nexus.spawn(function() nexus.sleep(0.02); return "h-value" end)
        local iv = nexus.interval(0.01)
        local b = nexus.backoff { initial = 0.001 }
        local cases = {
          { "nexus.yield", function() nexus.yield(); return "done" end },
          { "join", function() return h:join() end },
          { "nexus.timeout", function() return select(2, nexus.timeout(1, function() nexus.sleep(0.001); return "done" end)) end },
          { "tick", function() iv:tick(); iv:tick(); return "done" end },
          { "wait", function() b:wait(); return "done" end },
        }
        local outcomes = {}
        for i, c in ipairs(cases) do
          local ok, v = pcall(function() return coroutine.wrap(c[2])() end)
          outcomes[i] = { name = c[1], ok = ok, v = v }
        end
        nexus.sleep(0.001)
        return outcomes, h:join()
      end)
      for _, o in ipairs(outcomes) do
        if o.ok then
          assert.is_truthy(o.v == "done" or o.v == "h-value", o.name .. " returned " .. tostring(o.v))
        else
          assert.is_truthy(tostring(o.v):find(o.name, 1, true), o.name .. ": " .. tostring(o.v))
          assert.is_nil(tostring(o.v):find("C-call boundary", 1, true))
        end
      end
      assert.are.equal("h-value", final)
    end)
  end)
end)

-- The cooperative budget (builder:coop_budget, default 128) and
-- builder:slow_resume_warning: a task whose operations keep completing
-- without suspending still lets its neighbours run.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local nexus = require "nexus"

-- A producer sends n values into a channel with room for all of them
-- (no send ever waits) while a neighbour counts its own turns: how many
-- turns did the neighbour get before the producer finished?
local function turns_before_end(rt, n)
  return rt:block_on(function()
    local tx, rx = nexus.channel(n)
    local turns, finished = 0, false
    local nb = nexus.spawn(function()
      while not finished do
        turns = turns + 1
        nexus.yield()
      end
    end)
    nexus.yield()                        -- the neighbour is running
    local at_end
    local p = nexus.spawn(function()
      local at_start = turns
      for i = 1, n do tx:send(i) end
      at_end = turns - at_start
      finished = true
    end)
    p:join()
    nb:join()
    local s = 0
    for _ = 1, n do s = s + rx:recv() end
    return at_end, s
  end)
end

describe("the cooperative budget", function()
  it("makes a task that never waits yield once every 128 operations (default)", function()
    local rt = nexus.runtime.new()
    local before = rt:stats().coop_yields
    local turns, s = turns_before_end(rt, 1000)
    local yields = rt:stats().coop_yields - before
    rt:close()
    assert.are.equal(1000 * 1001 / 2, s)
    assert.is_true(turns >= 5, "the neighbour ran " .. turns .. " times")
    assert.is_true(yields >= 7, "coop_yields " .. yields)
  end)

  it("follows builder:coop_budget(n), and 0 turns it off", function()
    local rt = nexus.runtime.builder():coop_budget(10):build()
    local turns10 = turns_before_end(rt, 1000)
    rt:close()
    rt = nexus.runtime.builder():coop_budget(0):build()
    local turns0 = turns_before_end(rt, 1000)
    local yields = rt:stats().coop_yields
    rt:close()
    assert.is_true(turns10 >= 50, "budget 10: the neighbour ran " .. turns10 .. " times")
    assert.are.equal(0, turns0)
    assert.are.equal(0, yields)
  end)

  it("counts receives too, and keeps every value in order", function()
    local got = nexus.run(function()
      local tx, rx = nexus.channel(600)
      for i = 1, 600 do tx:send(i) end
      local ran = false
      nexus.spawn(function() ran = true end)
      local out = {}
      for i = 1, 600 do
        out[i] = rx:recv()
        if i == 300 then out.ran_by_300 = ran end
      end
      return out
    end)
    assert.is_true(got.ran_by_300)
    for i = 1, 600 do assert.are.equal(i, got[i]) end
  end)

  it("never yields where the task cannot: inside a coroutine of the user's", function()
    local n = nexus.run(function()
      local tx, rx = nexus.channel(1000)
      local co = coroutine.wrap(function()
        for i = 1, 1000 do assert(tx:send(i)) end
        return "done"
      end)
      assert.are.equal("done", co())
      return rx:len()
    end)
    assert.are.equal(1000, n)
  end)

  it("leaves select's ops alone: a ready op always completes", function()
    local r = nexus.run(function()
      local tx, rx = nexus.channel(1000)
      for i = 1, 1000 do tx:send(i) end
      local op = rx:recv_op()
      local s = 0
      for _ = 1, 1000 do
        local i, v = nexus.select(op)
        assert.are.equal(1, i)
        s = s + v
      end
      return s
    end)
    assert.are.equal(1000 * 1001 / 2, r)
  end)

  it("makes a read_line loop over a buffered burst let its neighbours run (the chat-server case)", function()
    local function burst(rt)
      return rt:block_on(function()
        local ln = nexus.tcp.listen("127.0.0.1", 0)
        local port = tonumber(ln:local_addr():match(":(%d+)$"))
        local c = nexus.tcp.connect("127.0.0.1", port)
        local s = ln:accept()
        local lines = {}
        for i = 1, 1000 do lines[i] = "line " .. i end
        c:write(table.concat(lines, "\n") .. "\n")
        assert(s:read_line() == "line 1")  -- the stream reads now
        nexus.sleep(0.1)                    -- the rest arrives into its buffer
        local turns, done = 0, false
        local nb = nexus.spawn(function()
          while not done do
            turns = turns + 1
            nexus.yield()
          end
        end)
        nexus.yield()
        local start = turns
        for i = 2, 1000 do assert(s:read_line() == "line " .. i) end
        local during = turns - start
        done = true
        nb:join()
        c:close(); s:close(); ln:close()
        return during
      end)
    end
    local rt = nexus.runtime.new()
    local on = burst(rt)
    rt:close()
    rt = nexus.runtime.builder():coop_budget(0):build()
    local off = burst(rt)
    rt:close()
    assert.is_true(on >= 5, "with the budget the neighbour ran " .. on .. " times")
    assert.are.equal(0, off)
  end)

  it("raises on a bad budget or warning limit", function()
    local b = nexus.runtime.builder()
    assert.has_error(function() b:coop_budget(-1) end, "builder:coop_budget: expected a non-negative integer, got -1")
    assert.has_error(function() b:coop_budget(1.5) end, "builder:coop_budget: expected a non-negative integer, got 1.5")
    assert.has_error(function() b:coop_budget("x") end, "builder:coop_budget: expected a non-negative integer, got x")
    assert.has_error(function() b:slow_resume_warning(-1) end,
      "builder:slow_resume_warning: expected a non-negative number of seconds, got -1")
    assert.has_error(function() b:slow_resume_warning(0 / 0) end)
  end)
end)

describe("builder:slow_resume_warning", function()
  it("reports a resume that ran too long with the task's id, name and place", function()
    local r = H.luajit_script([[
      local nexus = require "nexus"
      local rt = nexus.runtime.builder():slow_resume_warning(0.02):build()
      rt:block_on(function()
        local h = nexus.spawn(function()
          local t = nexus.now()
          while nexus.now() - t < 0.06 do end
          nexus.sleep(0)
        end)
        h:name("spinner")
        h:join()
        nexus.sleep(0)               -- a quick resume: not reported
      end)
      print("slow", rt:stats().slow_resumes)
    ]])
    assert.are.equal(0, r.rc, r.err)
    assert.matches("slow\t1", r.out)
    assert.matches("nexus: slow resume: task %d+ %(spinner%) ran %d+%.%d ms without yielding %(limit 20%.0 ms%), now at [^\n]*:7", r.err)
  end)
end)

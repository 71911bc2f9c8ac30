-- nexus.group and nexus.scope: completion order, errors owned by the
-- group (with tracebacks), wait's abort-on-first-error, close and GC
-- aborting members, scopes' results, errors and token, next_op, bad input.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local nexus = require "nexus"
local pack = H.pack
local run = nexus.run

describe("nexus.group", function()
  it("next gives members in completion order, then nil", function()
    local r = run(function()
      local g = nexus.group()
      local order = {}
      for i = 1, 4 do
        g:spawn(function()
          nexus.sleep(0.01 * (5 - i))
          return i * 10
        end)
      end
      assert.are.equal(4, g:len())
      while true do
        local h, ok, v = g:next()
        if h == nil then break end
        assert.is_true(ok)
        order[#order + 1] = v
      end
      return { order = order, len = g:len(), again = pack(g:next()) }
    end)
    assert.are.same({ 40, 30, 20, 10 }, r.order)
    assert.are.equal(0, r.len)
    assert.are.same({ n = 1, nil }, r.again)
  end)

  it("keeps a member's error for the group: the runtime goes on", function()
    local r = run(function()
      local g = nexus.group()
      local bad = g:spawn(function() error("member failed") end)
      nexus.sleep(0.01)                  -- it fails with nobody waiting
      local h, ok, err, tb = g:next()
      return { same = h == bad, ok = ok, err = err, tb = tb }
    end)
    assert.is_true(r.same)
    assert.is_false(r.ok)
    assert.matches("member failed", r.err)
    assert.matches("stack traceback", r.tb)
  end)

  it("wait aborts the others at the first error and re-raises it with its traceback", function()
    local r = run(function()
      local g = nexus.group()
      local slow = g:spawn(nexus.sleep, 10)
      g:spawn(function()
        nexus.sleep(0.01)
        error("first")
      end)
      local t0 = nexus.now()
      local ok, err = pcall(g.wait, g)
      return { ok = ok, err = err, took = nexus.now() - t0, slow = slow:is_finished() }
    end)
    assert.is_false(r.ok)
    assert.matches("first\nstack traceback", r.err)
    assert.is_true(r.slow)
    assert.is_true(r.took < 5)
  end)

  it("wait returns once all end; aborted members are not errors", function()
    local r = run(function()
      local g = nexus.group()
      local n = 0
      for _ = 1, 10 do g:spawn(function() n = n + 1 end) end
      local h = g:spawn(nexus.sleep, 10)
      h:abort()
      g:wait()
      return { n = n, len = g:len() }
    end)
    assert.are.same({ n = 10, len = 0 }, r)
  end)

  it("abort ends every member; next then reports them as aborted", function()
    local r = run(function()
      local g = nexus.group()
      for _ = 1, 3 do g:spawn(nexus.sleep, 10) end
      g:abort()
      local seen = {}
      while true do
        local h, ok, err = g:next()
        if not h then break end
        seen[#seen + 1] = tostring(ok) .. ":" .. err
      end
      return seen
    end)
    assert.are.same({ "false:aborted", "false:aborted", "false:aborted" }, r)
  end)

  it("close aborts members at once; a collected group aborts them soon", function()
    local r = run(function()
      local g = nexus.group()
      local a = g:spawn(nexus.sleep, 10)
      g:close()
      g:close()                          -- idempotent
      local closed = a:is_finished()
      local g2 = nexus.group()
      local b = g2:spawn(nexus.sleep, 10)
      g2 = nil                           -- luacheck: ignore
      collectgarbage("collect")
      collectgarbage("collect")
      nexus.sleep(0.01)
      return { closed = closed, collected = b:is_finished() }
    end)
    assert.are.same({ closed = true, collected = true }, r)
  end)

  it("next_op works in a select and a losing one takes no member", function()
    local r = run(function()
      local g = nexus.group()
      local tx, rx = nexus.channel(1)
      g:spawn(function()
        nexus.sleep(0.02)
        return "member"
      end)
      tx:send("chan")
      local op, rop = g:next_op(), rx:recv_op()
      local a = pack(nexus.select(rop, op))          -- channel first: group loses
      local i, h, ok, v = nexus.select(rop, op)      -- then the member
      return { a = a, rest = { i = i, ok = ok, v = v, h = h ~= nil, len = g:len() } }
    end)
    assert.are.same({ n = 2, 1, "chan" }, r.a)
    assert.are.same({ i = 2, ok = true, v = "member", h = true, len = 0 }, r.rest)
  end)

  it("fans out 1,000 jobs with errors, no pcall per job", function()
    local r = run(function()
      local g = nexus.group()
      for i = 1, 1000 do
        g:spawn(function()
          nexus.sleep(0.001 * (i % 7))
          if i % 100 == 0 then error("job " .. i .. " failed") end
          return i
        end)
      end
      local sum, failed = 0, 0
      while true do
        local h, ok, v = g:next()
        if not h then break end
        if ok then sum = sum + v else failed = failed + 1 end
      end
      return { sum = sum, failed = failed }
    end)
    assert.are.equal(10, r.failed)
    assert.are.equal(1000 * 1001 / 2 - (100 + 200 + 300 + 400 + 500 + 600 + 700 + 800 + 900 + 1000), r.sum)
  end)

  describe("bad input", function()
    it("raises naming the function", function()
      run(function()
        local g = nexus.group()
        assert.has_error(function() g:spawn(42) end, "group:spawn: expected a function, got number")
        local h = g:spawn(nexus.sleep, 1)
        local ok, err = pcall(h.join, h)
        assert.is_false(ok)
        assert.matches("belongs to a group", err)
        assert.has_error(function() nexus.group().next({}) end, "group:next: expected a group")
        local w = nexus.spawn(function() g:next() end)
        nexus.yield()
        ok, err = pcall(g.next, g)
        assert.is_false(ok)
        assert.matches("group:next: another task is already waiting on this group", err)
        w:abort()
        g:close()
        ok, err = pcall(g.spawn, g, print)
        assert.is_false(ok)
        assert.matches("group:spawn: the group is closed", err)
      end)
    end)
  end)
end)

describe("nexus.scope", function()
  it("returns fn's results once fn and its children have ended", function()
    local r = run(function()
      local done = 0
      local t0 = nexus.now()
      local a, b = nexus.scope(function(s)
        for _ = 1, 3 do
          s:spawn(function()
            nexus.sleep(0.02)
            done = done + 1
          end)
        end
        return "a", "b"
      end)
      return { a = a, b = b, done = done, took = nexus.now() - t0 }
    end)
    assert.are.equal("a", r.a)
    assert.are.equal("b", r.b)
    assert.are.equal(3, r.done)
    assert.is_true(r.took >= 0.02 - 1e-3)
  end)

  it("a child's error aborts fn and the other children and is re-raised", function()
    local r = run(function()
      local sibling
      local t0 = nexus.now()
      local ok, err = pcall(nexus.scope, function(s)
        sibling = s:spawn(nexus.sleep, 10)
        s:spawn(function()
          nexus.sleep(0.01)
          error("child broke")
        end)
        nexus.sleep(10)                  -- fn is aborted, not waited for
      end)
      return { ok = ok, err = err, sib = sibling:is_finished(), took = nexus.now() - t0 }
    end)
    assert.is_false(r.ok)
    assert.matches("child broke\nstack traceback", r.err)
    assert.is_true(r.sib)
    assert.is_true(r.took < 5)
  end)

  it("an error in fn aborts the children", function()
    local r = run(function()
      local child
      local ok, err = pcall(nexus.scope, function(s)
        child = s:spawn(nexus.sleep, 10)
        error("fn broke")
      end)
      return { ok = ok, err = err, child = child:is_finished() }
    end)
    assert.is_false(r.ok)
    assert.matches("fn broke", r.err)
    assert.is_true(r.child)
  end)

  it("cancels s:token() when the scope ends", function()
    local r = run(function()
      local tok
      nexus.scope(function(s)
        tok = s:token()
        assert.is_false(tok:is_cancelled())
        s:spawn(function() nexus.sleep(0.01) end)
      end)
      return tok:is_cancelled()
    end)
    assert.is_true(r)
  end)

  it("aborting the task running the scope aborts its children at once and cancels its token", function()
    local r = run(function()
      local child, tok
      local started = false
      local owner = nexus.spawn(function()
        nexus.scope(function(s)
          tok = s:token()
          child = s:spawn(function()
            started = true
            nexus.sleep(10)
          end)
          nexus.sleep(10)
        end)
      end)
      nexus.sleep(0.01)
      local before = child:is_finished()
      owner:abort()
      return { started = started, before = before, after = child:is_finished(), tok = tok:is_cancelled() }
    end)
    assert.are.same({ started = true, before = false, after = true, tok = true }, r)
  end)

  it("cancelling s:token() does not abort the children: they may watch it and end", function()
    local r = run(function()
      return nexus.scope(function(s)
        local h = s:spawn(function()
          s:token():cancelled()
          return "clean exit"
        end)
        nexus.yield()
        s:token():cancel()
        nexus.yield()
        return h:is_finished()
      end)
    end)
    assert.is_true(r)
  end)

  it("raises on a non-function and on spawning after the end", function()
    run(function()
      assert.has_error(function() nexus.scope(1) end, "nexus.scope: expected a function, got number")
      local saved
      nexus.scope(function(s) saved = s end)
      assert.has_error(function() saved:spawn(print) end, "scope:spawn: the scope has ended")
    end)
  end)
end)

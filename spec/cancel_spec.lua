-- Cancellation tokens: the tree (child cancelled with its parent, never
-- the reverse), waiters (any number, aborted, timed out), cancelling a
-- tree of 10,000 descendants, drop guards, garbage collection, bad input.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local nexus = require "nexus"

-- Spawns n tasks waiting on tok:cancelled(); each adds 1 to box.woke.
local function waiters(tok, n, box)
  local hs = {}
  for i = 1, n do
    hs[i] = nexus.spawn(function() tok:cancelled(); box.woke = box.woke + 1 end)
  end
  return hs
end

describe("cancel tokens", function()
  after_each(H.cleanup)

  describe("the tree", function()
    it("a child is cancelled with its parent, and so are its own children", function()
      local root = nexus.cancel_token()
      local a, b = root:child(), root:child()
      local a1 = a:child()
      assert.is_false(root:is_cancelled() or a:is_cancelled() or b:is_cancelled() or a1:is_cancelled())
      root:cancel()
      assert.is_true(root:is_cancelled())
      assert.is_true(a:is_cancelled())
      assert.is_true(b:is_cancelled())
      assert.is_true(a1:is_cancelled())
    end)

    it("never the reverse: cancelling a child leaves its parent and siblings alone", function()
      local root = nexus.cancel_token()
      local a, b = root:child(), root:child()
      local a1, a2 = a:child(), a:child()
      a1:cancel()
      assert.is_true(a1:is_cancelled())
      assert.is_false(a:is_cancelled())
      assert.is_false(a2:is_cancelled())
      assert.is_false(root:is_cancelled())
      a:cancel()
      assert.is_true(a2:is_cancelled())
      assert.is_false(root:is_cancelled())
      assert.is_false(b:is_cancelled())
    end)

    it("cancel is idempotent: a second cancel changes nothing and wakes nobody twice", function()
      local box = { woke = 0 }
      nexus.run(function()
        local tok = nexus.cancel_token()
        local child = tok:child()
        waiters(tok, 3, box)
        waiters(child, 2, box)
        nexus.yield()
        tok:cancel()
        tok:cancel()
        child:cancel()
        nexus.yield()
        tok:cancel()
        assert.is_true(tok:is_cancelled())
        assert.is_true(child:is_cancelled())
      end)
      assert.are.equal(5, box.woke)
    end)

    it("a child of a cancelled token is born cancelled, down to its grandchildren", function()
      local tok = nexus.cancel_token()
      tok:cancel()
      local c = tok:child()
      assert.is_true(c:is_cancelled())
      assert.is_true(c:child():is_cancelled())
      local returned = nexus.run(function() c:cancelled(); return true end)
      assert.is_true(returned)
    end)

    it("a token made by nexus.cancel_token() is a new root", function()
      local a, b = nexus.cancel_token(), nexus.cancel_token()
      a:cancel()
      assert.is_false(b:is_cancelled())
    end)
  end)

  describe("cancelled()", function()
    it("any number of waiters: all wake, after the canceller goes on", function()
      local box = { woke = 0 }
      local order = {}
      nexus.run(function()
        local tok = nexus.cancel_token()
        local hs = waiters(tok, 1000, box)
        nexus.sleep(0.01)
        assert.are.equal(0, box.woke, "nobody wakes before the cancel")
        tok:cancel()
        order[#order + 1] = "canceller"
        assert.are.equal(0, box.woke, "waking does not switch tasks")
        for i = 1, #hs do hs[i]:join() end
        order[#order + 1] = "joined"
      end)
      assert.are.equal(1000, box.woke)
      assert.are.same({ "canceller", "joined" }, order)
    end)

    it("returns at once, without yielding, when already cancelled", function()
      local ran_between = nexus.run(function()
        local tok = nexus.cancel_token()
        tok:cancel()
        local ran = false
        nexus.spawn(function() ran = true end)
        tok:cancelled()
        tok:child():cancelled()
        return ran
      end)
      assert.is_false(ran_between)
    end)

    it("returns nothing", function()
      local r = nexus.run(function()
        local tok = nexus.cancel_token()
        nexus.spawn(function() tok:cancel() end)
        return H.pack(tok:cancelled())
      end)
      assert.are.equal(0, r.n)
    end)

    it("a waiter of a child wakes when an ancestor is cancelled", function()
      local box = { woke = 0 }
      nexus.run(function()
        local root = nexus.cancel_token()
        local leaf = root:child():child():child()
        waiters(leaf, 3, box)
        nexus.yield()
        root:cancel()
      end)
      assert.are.equal(3, box.woke)
    end)

    it("works inside pcall and inside nexus.timeout", function()
      local r = nexus.run(function()
        local tok = nexus.cancel_token()
        nexus.spawn(function() nexus.sleep(0.01); tok:cancel() end)
        local ok = pcall(tok.cancelled, tok)
        local t = H.pack(nexus.timeout(5, function() tok:cancelled(); return "in time" end))
        return { ok, t[1], t[2] }
      end)
      assert.are.same({ true, true, "in time" }, r)
    end)
  end)

  describe("10,000 descendants", function()
    it("a wide tree: one cancel of the parent wakes a waiter on every child", function()
      local box = { woke = 0 }
      local n = 10000
      local all = nexus.run(function()
        local root = nexus.cancel_token()
        local kids = {}
        for i = 1, n do kids[i] = root:child() end
        for i = 1, n do waiters(kids[i], 1, box) end
        nexus.yield()
        assert.are.equal(0, box.woke)
        root:cancel()
        nexus.sleep(0)
        nexus.yield()
        for i = 1, n do if not kids[i]:is_cancelled() then return false end end
        return true
      end)
      assert.is_true(all)
      assert.are.equal(n, box.woke)
    end)

    it("a deep chain: one cancel of the top wakes a waiter on every link, with no recursion", function()
      local box = { woke = 0 }
      local n = 10000
      local bottom_cancelled = nexus.run(function()
        local top = nexus.cancel_token()
        local cur = top
        for _ = 1, n do
          cur = cur:child()
          waiters(cur, 1, box)
        end
        nexus.yield()
        top:cancel()
        nexus.yield()
        return cur:is_cancelled()
      end)
      assert.is_true(bottom_cancelled)
      assert.are.equal(n, box.woke)
    end)

    it("a mixed tree with several waiters per node; cancelling a middle node wakes its subtree only", function()
      local res = nexus.run(function()
        local root = nexus.cancel_token()
        local nodes, parent = { root }, { 0 }
        math.randomseed(7)
        for i = 2, 10001 do
          local p = math.random(1, i - 1)
          nodes[i] = nodes[p]:child()
          parent[i] = p
        end
        local woke = {}
        for i = 2, 10001 do
          woke[i] = 0
          for _ = 1, (i % 3) do
            nexus.spawn(function() nodes[i]:cancelled(); woke[i] = woke[i] + 1 end)
          end
        end
        nexus.yield()
        -- Cancel node 2's subtree first: exactly its descendants wake.
        local function under(i, a)
          while i ~= 0 do
            if i == a then return true end
            i = parent[i]
          end
          return false
        end
        nodes[2]:cancel()
        nexus.yield()
        for i = 2, 10001 do
          local want = under(i, 2) and (i % 3) or 0
          if woke[i] ~= want or nodes[i]:is_cancelled() ~= under(i, 2) then
            return "node " .. i .. ": woke " .. woke[i] .. ", want " .. want
          end
        end
        root:cancel()
        nexus.yield()
        for i = 2, 10001 do
          if woke[i] ~= i % 3 or not nodes[i]:is_cancelled() then
            return "node " .. i .. " after root:cancel(): woke " .. woke[i]
          end
        end
        return "ok"
      end)
      assert.are.equal("ok", res)
    end)
  end)

  describe("waiters that leave", function()
    it("aborted and timed-out waiters leave the token consistent: the others wake, cancel works", function()
      local box = { woke = 0 }
      local res = nexus.run(function()
        local tok = nexus.cancel_token()
        local hs = waiters(tok, 100, box)
        local timed = {}
        for i = 1, 20 do
          timed[i] = nexus.spawn(function()
            return nexus.timeout(0.01, function() tok:cancelled(); return "cancelled" end)
          end)
        end
        nexus.yield()
        local aborted = 0
        for i = 1, 100, 2 do
          if hs[i]:abort() then aborted = aborted + 1 end
        end
        local timeouts = 0
        for i = 1, 20 do
          local r = H.pack(timed[i]:join())
          if r[1] == nil and r[2] == "timeout" then timeouts = timeouts + 1 end
        end
        assert.is_false(tok:is_cancelled())
        tok:cancel()
        for i = 2, 100, 2 do hs[i]:join() end
        -- And the token still takes new waiters (returning at once now).
        tok:cancelled()
        return { aborted = aborted, timeouts = timeouts }
      end)
      assert.are.same({ aborted = 50, timeouts = 20 }, res)
      assert.are.equal(50, box.woke)
    end)

    it("10,000 waiters that all time out, then new waiters: all wake on cancel", function()
      local box = { woke = 0 }
      nexus.run(function()
        local tok = nexus.cancel_token()
        for _ = 1, 10000 do
          nexus.spawn(function() nexus.timeout(0, function() tok:cancelled() end) end)
        end
        nexus.sleep(0.01)
        local hs = waiters(tok, 10, box)
        nexus.yield()
        tok:cancel()
        for i = 1, #hs do hs[i]:join() end
      end)
      assert.are.equal(10, box.woke)
    end)

    it("a waiter aborted by rt:close leaves the token usable by another runtime", function()
      local tok = nexus.cancel_token()
      local a = nexus.runtime.new()
      a:block_on(function() nexus.spawn(function() tok:cancelled() end) end)
      a:close()
      local box = { woke = 0 }
      nexus.run(function()
        waiters(tok, 2, box)
        nexus.yield()
        tok:cancel()
      end)
      assert.are.equal(2, box.woke)
    end)
  end)

  describe("a token outliving the runtime of its waiters", function()
    -- The waiters' queue keeps entries of aborted waiters until they are
    -- popped; they point at the old runtime's task records, which must
    -- not be freed under them (SANITIZE=address shows a use after free).
    local function waited_in_closed_runtime(tok, n)
      local a = nexus.runtime.new()
      a:block_on(function()
        for _ = 1, n do nexus.spawn(function() tok:cancelled() end) end
      end)
      a:close()
    end

    it("then cancelled in another runtime after the first was collected", function()
      local tok = nexus.cancel_token()
      waited_in_closed_runtime(tok, 3)
      collectgarbage()
      collectgarbage()
      local box = { woke = 0 }
      nexus.run(function()
        nexus.spawn(function() nexus.sleep(0.05) end)   -- reuses the freed records, if freed
        waiters(tok, 2, box)
        nexus.yield()
        tok:cancel()
      end)
      assert.are.equal(2, box.woke)
    end)

    it("then cancelled outside any runtime after the first was collected", function()
      local tok = nexus.cancel_token()
      waited_in_closed_runtime(tok, 20)
      collectgarbage()
      collectgarbage()
      tok:cancel()
      assert.is_true(tok:is_cancelled())
    end)

    it("then waited on again in another runtime, many times over", function()
      local tok = nexus.cancel_token()
      for _ = 1, 20 do
        waited_in_closed_runtime(tok, 5)
        collectgarbage()
      end
      local box = { woke = 0 }
      nexus.run(function()
        waiters(tok, 5, box)
        nexus.yield()
        tok:cancel()
      end)
      assert.are.equal(5, box.woke)
    end)
  end)

  describe("across runtimes and outside them", function()
    it("cancel() outside any runtime readies the waiters of a parked runtime", function()
      local rt = nexus.runtime.new()
      local tok = nexus.cancel_token()
      local h
      rt:block_on(function() h = nexus.spawn(function() tok:cancelled(); return "woke" end) end)
      assert.is_false(h:is_finished())
      tok:cancel()
      assert.are.equal("woke", rt:block_on(function() return h:join() end))
      rt:close()
    end)

    it("waiting on a token that has waiters in another runtime raises", function()
      local a, b = nexus.runtime.new(), nexus.runtime.new()
      local tok = nexus.cancel_token()
      a:block_on(function() nexus.spawn(function() tok:cancelled() end) end)
      local e = b:block_on(function() return H.errof(tok.cancelled, tok) end)
      assert.are.equal("token:cancelled: the token has waiters in another runtime", e)
      -- Cancelling from b's task wakes a's waiter.
      b:block_on(function() tok:cancel() end)
      assert.are.same({ true }, { a:shutdown_quiesce(5) })
      a:close()
      b:close()
    end)
  end)

  describe("drop guards", function()
    local function guarded(body)
      local tok = nexus.cancel_token()
      local child = tok:child()
      local h = nexus.spawn(function() tok:drop_guard(); return body() end)
      return tok, child, h
    end

    it("cancel the token (and its subtree) when the creating task returns", function()
      nexus.run(function()
        local tok, child, h = guarded(function() nexus.sleep(0.01); return "done" end)
        nexus.yield()
        assert.is_false(tok:is_cancelled(), "not while the task runs")
        assert.are.equal("done", h:join())
        assert.is_true(tok:is_cancelled())
        assert.is_true(child:is_cancelled())
      end)
    end)

    it("cancel when the creating task raises", function()
      local ok, e, tok = nexus.run(function()
        local tok, _, h = guarded(function() nexus.sleep(0.01); error("boom", 0) end)
        local ok, e = h:result()
        return ok, e, tok
      end)
      assert.is_false(ok)
      assert.matches("^boom", e)
      assert.is_true(tok:is_cancelled())
    end)

    it("cancel when the creating task is aborted, by another task or by itself", function()
      nexus.run(function()
        local tok, _, h = guarded(function() nexus.sleep(10) end)
        nexus.yield()
        assert.is_false(tok:is_cancelled())
        assert.is_true(h:abort())
        assert.is_true(tok:is_cancelled(), "at once, within abort()")

        local tok2, _, h2 = guarded(function()
          nexus.current():abort()
          nexus.yield()
          error("never runs")
        end)
        assert.are.same({ false, "aborted" }, { h2:result() })
        assert.is_true(tok2:is_cancelled())
      end)
    end)

    it("a guard's cancel wakes the waiters of the token", function()
      local box = { woke = 0 }
      nexus.run(function()
        local tok, child = guarded(function() nexus.sleep(0.01) end)
        waiters(tok, 5, box)
        waiters(child, 5, box)
      end)
      assert.are.equal(10, box.woke)
    end)

    it("a disarmed guard does not cancel; disarm returns the token", function()
      nexus.run(function()
        local tok = nexus.cancel_token()
        local got, armed_before, armed_after
        local h = nexus.spawn(function()
          local g = tok:drop_guard()
          armed_before = g:is_armed()
          got = g:disarm()
          armed_after = g:is_armed()
          assert.are.equal(tok, g:disarm(), "twice is fine")
        end)
        h:join()
        assert.are.equal(tok, got)
        assert.is_true(armed_before)
        assert.is_false(armed_after)
        assert.is_false(tok:is_cancelled())
      end)
    end)

    it("a guard disarmed by another task before its creator ends does not cancel", function()
      nexus.run(function()
        local tok = nexus.cancel_token()
        local g
        local h = nexus.spawn(function() g = tok:drop_guard(); nexus.sleep(0.02) end)
        nexus.yield()
        assert.are.equal(tok, g:disarm())
        h:join()
        assert.is_false(tok:is_cancelled())
      end)
    end)

    it("a guard that already fired is disarmed; disarm still returns the token", function()
      nexus.run(function()
        local tok = nexus.cancel_token()
        local g = nexus.spawn(function() return tok:drop_guard() end):join()
        assert.is_true(tok:is_cancelled())
        assert.is_false(g:is_armed())
        assert.are.equal(tok, g:disarm())
      end)
    end)

    it("several guards of one task all fire; a guard of the root fires when block_on's root ends", function()
      local rt = nexus.runtime.new()
      local a, b, c = nexus.cancel_token(), nexus.cancel_token(), nexus.cancel_token()
      rt:block_on(function()
        a:drop_guard()
        b:drop_guard()
        c:drop_guard():disarm()
      end)
      assert.is_true(a:is_cancelled())
      assert.is_true(b:is_cancelled())
      assert.is_false(c:is_cancelled())
      rt:close()
    end)

    it("the guard object may be dropped: it is tied to the task, not to the object", function()
      nexus.run(function()
        local tok = nexus.cancel_token()
        local h = nexus.spawn(function()
          tok:drop_guard()     -- result not kept
          collectgarbage()
          collectgarbage()
          nexus.sleep(0.01)
        end)
        nexus.yield()
        collectgarbage()
        assert.is_false(tok:is_cancelled())
        h:join()
        assert.is_true(tok:is_cancelled())
      end)
    end)

    it("fires when rt:close() aborts the task that made it", function()
      local rt = nexus.runtime.new()
      local tok = nexus.cancel_token()
      rt:block_on(function() nexus.spawn(function() tok:drop_guard(); nexus.sleep(100) end) end)
      assert.is_false(tok:is_cancelled())
      rt:close()
      assert.is_true(tok:is_cancelled())
    end)

    it("under the nexus command, a guard made by the main chunk fires when it ends", function()
      local r = H.nexus_script([[
        local nexus = require "nexus"
        local tok = nexus.cancel_token()
        nexus.spawn(function() tok:cancelled(); print("worker saw the cancel") end)
        tok:drop_guard()
        nexus.sleep(0.01)
        print("main ends")
      ]])
      assert.are.equal(0, r.rc, r.err)
      assert.are.equal("main ends\nworker saw the cancel\n", r.out)
    end)
  end)

  describe("garbage collection", function()
    it("children keep working after their parent's object is collected", function()
      local box = { woke = 0 }
      nexus.run(function()
        local parent = nexus.cancel_token()
        local kids = {}
        for i = 1, 10 do kids[i] = parent:child() end
        parent = nil
        collectgarbage()
        collectgarbage()
        local grandkid = kids[1]:child()
        waiters(kids[2], 3, box)
        waiters(grandkid, 3, box)
        nexus.yield()
        kids[1]:cancel()
        assert.is_true(grandkid:is_cancelled())
        assert.is_false(kids[2]:is_cancelled())
        kids[2]:cancel()
      end)
      assert.are.equal(6, box.woke)
    end)

    it("a cancel goes through collected middle links down to live leaves", function()
      local box = { woke = 0 }
      nexus.run(function()
        local top = nexus.cancel_token()
        local leaves = {}
        for i = 1, 50 do
          local cur = top
          for _ = 1, 20 do cur = cur:child() end   -- middles dropped at once
          leaves[i] = cur
        end
        collectgarbage()
        collectgarbage()
        for i = 1, 50 do waiters(leaves[i], 1, box) end
        nexus.yield()
        top:cancel()
        for i = 1, 50 do assert.is_true(leaves[i]:is_cancelled()) end
      end)
      assert.are.equal(50, box.woke)
    end)

    it("dropping whole trees, parents first or leaves first, frees them without trouble", function()
      for _ = 1, 3 do
        local top = nexus.cancel_token()
        local cur = top
        for _ = 1, 100000 do cur = cur:child() end
        top = nil
        collectgarbage()
        assert.is_false(cur:is_cancelled())
        cur = nil
        collectgarbage()
      end
      collectgarbage()
    end)
  end)

  describe("printing", function()
    it("tostring tells active from cancelled, armed from disarmed", function()
      local tok = nexus.cancel_token()
      assert.are.equal("nexus.cancel_token(active)", tostring(tok))
      local g = nexus.run(function() return nexus.cancel_token():drop_guard() end)
      assert.are.equal("nexus.drop_guard(disarmed)", tostring(g))
      nexus.run(function()
        local g2 = tok:drop_guard()
        assert.are.equal("nexus.drop_guard(armed)", tostring(g2))
        g2:disarm()
        assert.are.equal("nexus.drop_guard(disarmed)", tostring(g2))
      end)
      tok:cancel()
      assert.are.equal("nexus.cancel_token(cancelled)", tostring(tok))
    end)
  end)

  describe("bad input", function()
    local tok = nexus.cancel_token()

    it("token methods called with something else than a token raise, naming the method", function()
      for _, m in ipairs({ "child", "cancel", "is_cancelled", "cancelled", "drop_guard" }) do
        for _, bad in ipairs({ 5, "x", {}, true }) do
          local e = H.errof(tok[m], bad)
          assert.are.equal("token:" .. m .. ": expected a cancel token, got " .. type(bad), e)
        end
        assert.are.equal("token:" .. m .. ": expected a cancel token, got nil", H.errof(tok[m]))
      end
    end)

    it("guard methods called with something else than a guard raise, naming the method", function()
      local g = nexus.run(function() return tok:child():drop_guard() end)
      for _, m in ipairs({ "disarm", "is_armed" }) do
        for _, bad in ipairs({ 5, "x", {}, tok }) do
          local e = H.errof(g[m], bad)
          assert.are.equal("guard:" .. m .. ": expected a drop guard, got " .. type(bad), e)
        end
      end
    end)

    it("cancelled() and drop_guard() outside a task raise", function()
      assert.are.equal("token:cancelled: not inside a nexus task", H.errof(tok.cancelled, tok))
      assert.are.equal("token:drop_guard: not inside a nexus task", H.errof(tok.drop_guard, tok))
    end)

    it("cancelled() where Lua cannot yield or in a coroutine of one's own raises; the token stays sound", function()
      local t = nexus.cancel_token()
      local box = { woke = 0 }
      local e1, e2, e3 = nexus.run(function()
        local e1 = H.errof(table.sort, { 3, 1, 2 }, function(x, y) t:cancelled(); return x < y end)
        local e2 = H.errof(coroutine.wrap(function() t:cancelled() end))
        local co = coroutine.create(function() t:cancelled() end)
        local _, e3 = coroutine.resume(co)
        waiters(t, 3, box)
        nexus.yield()
        t:cancel()
        return e1, e2, e3
      end)
      assert.matches("token:cancelled: cannot suspend here %(called through a C function", e1)
      assert.matches("token:cancelled: cannot suspend inside a coroutine of your own", e2)
      assert.matches("token:cancelled: cannot suspend inside a coroutine of your own", e3)
      assert.are.equal(3, box.woke)
    end)

    it("cancelled() in a coroutine of one's own returns at once when already cancelled", function()
      local t = nexus.cancel_token()
      t:cancel()
      local ok = nexus.run(function()
        return coroutine.wrap(function() t:cancelled(); return true end)()
      end)
      assert.is_true(ok)
    end)
  end)
end)

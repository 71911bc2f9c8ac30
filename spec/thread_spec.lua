-- nexus.thread.run: a function run in a fresh Lua state on libuv's thread
-- pool while the calling task waits and the loop goes on; copied arguments
-- and results; errors; abandoned jobs (timeout, abort, close).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(dir .. "helpers.lua")
local nexus = require "nexus"

-- Blocks its thread for ms milliseconds without using the CPU. No
-- upvalues: it runs in the job's own Lua state.
local function block_ms(ms, ...)
  local ffi = require "ffi"
  ffi.cdef "int poll(void *fds, unsigned long n, int timeout);"
  ffi.C.poll(nil, 0, ms)
  return ...
end

describe("nexus.thread.run", function()
  after_each(H.cleanup)

  it("returns true and the function's results, copied; nils and the count kept", function()
    local r = nexus.run(function()
      return H.pack(nexus.thread.run(function(a, t, s)
        return a * 2, nil, { n = t.n + 1, list = { t[1], t[2] } }, s:upper(), nil
      end, 21, { 10, 20, n = 1 }, "abc"))
    end)
    assert.are.equal(6, r.n)
    assert.is_true(r[1])
    assert.are.equal(42, r[2])
    assert.is_nil(r[3])
    assert.are.same({ n = 2, list = { 10, 20 } }, r[4])
    assert.are.equal("ABC", r[5])
    assert.is_nil(r[6])
  end)

  it("passes nil arguments in place", function()
    local n, b = nexus.run(function()
      local _, n, b = nexus.thread.run(function(...) return select("#", ...), (select(2, ...)) end,
        nil, "b", nil)
      return n, b
    end)
    assert.are.equal(3, n)
    assert.are.equal("b", b)
  end)

  it("the loop and other tasks run while the job blocks its thread", function()
    local ticks, ok, v = nexus.run(function()
      local ticks = 0
      local ticker = nexus.spawn(function()
        for _ = 1, 4 do nexus.sleep(0.02); ticks = ticks + 1 end
      end)
      local ok, v = nexus.thread.run(block_ms, 300, "done")
      local seen = ticks
      ticker:join()
      return seen, ok, v
    end)
    assert.is_true(ok)
    assert.are.equal("done", v)
    assert.are.equal(4, ticks)
  end)

  it("runs jobs of several tasks at once on the pool", function()
    local t0, sums
    nexus.run(function()
      t0 = nexus.now()
      local hs = {}
      for i = 1, 4 do
        hs[i] = nexus.spawn(function() return select(2, nexus.thread.run(block_ms, 200, i * i)) end)
      end
      sums = {}
      for i = 1, 4 do sums[i] = hs[i]:join() end
      t0 = nexus.now() - t0
    end)
    assert.are.same({ 1, 4, 9, 16 }, sums)
    -- libuv's pool has 4 threads: one after another would take 800 ms
    assert.is_true(t0 < 0.7, ("4 jobs of 200 ms took %.0f ms"):format(t0 * 1000))
  end)

  it("an error gives false, the error value and a traceback", function()
    local r = nexus.run(function()
      return { nexus.thread.run(function(x) error("boom " .. x) end, 7) }
    end)
    assert.is_false(r[1])
    assert.truthy(r[2]:find("boom 7", 1, true), r[2])
    assert.truthy(r[3]:find("stack traceback", 1, true), r[3])
  end)

  it("a table error value comes back as a copy", function()
    local ok, err = nexus.run(function()
      return nexus.thread.run(function() error({ code = 7, why = "x" }) end)
    end)
    assert.is_false(ok)
    assert.are.same({ code = 7, why = "x" }, err)
  end)

  it("the job's state has the standard libraries and its own globals", function()
    _G.nexus_thread_spec_global = "main"
    local ok, a, b = nexus.run(function()
      return nexus.thread.run(function()
        return string.rep("x", 3) .. table.concat({ 1, 2 }), tostring(nexus_thread_spec_global)
      end)
    end)
    _G.nexus_thread_spec_global = nil
    assert.is_true(ok)
    assert.are.equal("xxx12", a)
    assert.are.equal("nil", b)
  end)

  describe("bad input", function()
    local function err_of(...)
      local args = H.pack(...)
      return nexus.run(function()
        local ok, e = pcall(nexus.thread.run, unpack(args, 1, args.n))
        assert.is_false(ok)
        return e
      end)
    end

    it("rejects a value that is not a function", function()
      assert.truthy(err_of(42):find("nexus.thread.run: expected a function, got number", 1, true))
      assert.truthy(err_of(nil):find("nexus.thread.run: expected a function, got nil", 1, true))
    end)

    it("rejects a C function", function()
      assert.truthy(err_of(print):find("nexus.thread.run: expected a Lua function, got a C function", 1, true))
    end)

    it("rejects a function with upvalues, naming the fix", function()
      local up = 1
      local e = err_of(function() return up end)
      assert.truthy(e:find("nexus.thread.run: the function has 1 upvalue(s)", 1, true), e)
      assert.truthy(e:find("pass what it needs as arguments", 1, true), e)
    end)

    it("rejects arguments that cannot be copied", function()
      local f = function() end
      assert.truthy(err_of(f, print):find("nexus.thread.run: cannot pass a function", 1, true))
      assert.truthy(err_of(f, coroutine.create(f)):find("nexus.thread.run: cannot pass a thread", 1, true))
      local t = {}
      t.self = t
      assert.truthy(err_of(f, t):find("cannot pass a table that contains itself", 1, true))
      assert.truthy(err_of(f, { k = { io.stdout } }):find('cannot pass a userdata (at ["k"][1]', 1, true))
    end)

    it("a result that cannot be copied gives false and says so", function()
      local ok, e = nexus.run(function() return nexus.thread.run(function() return print end) end)
      assert.is_false(ok)
      assert.truthy(e:find("nexus.thread.run: cannot return a function", 1, true), e)
    end)

    it("outside a task (plain luajit) says so", function()
      local ok, e = pcall(nexus.thread.run, function() end)
      assert.is_false(ok)
      assert.truthy(tostring(e):find("nexus.thread.run: not inside a nexus task", 1, true), e)
    end)
  end)

  describe("abandoned jobs", function()
    it("a timeout abandons the job; the runtime goes on and later jobs work", function()
      local r1, r2, ok, v = nexus.run(function()
        local r1, r2 = nexus.timeout(0.05, nexus.thread.run, block_ms, 300, "late")
        local ok, v = nexus.thread.run(function(x) return x + 1 end, 1)
        return r1, r2, ok, v
      end)
      assert.is_nil(r1)
      assert.are.equal("timeout", r2)
      assert.is_true(ok)
      assert.are.equal(2, v)
    end)

    it("aborting a task that waits on a job ends it at once", function()
      local was, res, waited = nexus.run(function()
        local h = nexus.spawn(function() return nexus.thread.run(block_ms, 300, "x") end)
        nexus.sleep(0.02)
        local t0 = nexus.now()
        local was = h:abort()
        local res = { h:result() }
        return was, res, nexus.now() - t0
      end)
      assert.is_true(was)
      assert.are.same({ false, "aborted" }, res)
      assert.is_true(waited < 0.2, "abort waited " .. waited)
    end)

    it("jobs abandoned in numbers are all released, queued ones never run", function()
      local rt = nexus.runtime.new()
      local ran = rt:block_on(function()
        for _ = 1, 32 do
          nexus.timeout(0.001, nexus.thread.run, block_ms, 20)
        end
        collectgarbage()
        collectgarbage()
        local ok, v = nexus.thread.run(function() return "after" end)
        return ok and v
      end)
      rt:close()
      collectgarbage()
      assert.are.equal("after", ran)
    end)

    it("closing a runtime waits for a running job, then closes", function()
      local rt = nexus.runtime.new()
      local h = rt:block_on(function()
        local h = nexus.spawn(function() return nexus.thread.run(block_ms, 100, 1) end)
        nexus.sleep(0.02)
        return h
      end)
      rt:close()
      assert.is_true(h:is_finished())
      assert.are.same({ false, "aborted" }, { h:result() })
    end)
  end)
end)

-- Task names, nexus.tasks(), nexus.dump(), the deadlock error's listing,
-- and SIGQUIT under the nexus command.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local nexus = require "nexus"

describe("introspection", function()
  it("h:name(s) names a task and returns h; h:name() reads it", function()
    local r = nexus.run(function()
      local h = nexus.spawn(nexus.sleep, 0.01)
      local same = h:name("worker 1") == h
      local before = nexus.spawn(function() end):name()
      local name = h:name()
      h:join()
      return { same = same, name = name, before = before, after = h:name() }
    end)
    assert.are.same({ same = true, name = "worker 1", after = "worker 1" }, r)
  end)

  it("h:name raises on a name that is not a string", function()
    nexus.run(function()
      local h = nexus.spawn(function() end)
      assert.has_error(function() h:name(42) end, "handle:name: expected a string, got number")
      assert.has_error(function() h:name({}) end, "handle:name: expected a string, got table")
    end)
  end)

  it("nexus.tasks() gives each task's state, wait, time in state and place", function()
    local r = nexus.run(function()
      local keep, rx = nexus.channel(1)
      local tok = nexus.cancel_token()
      local a = nexus.spawn(function() rx:recv() end):name("reader")
      local b = nexus.spawn(function() tok:cancelled() end)
      local c = nexus.spawn(function() nexus.select(tok:cancelled_op(), nexus.sleep_op(5)) end)
      local d = nexus.spawn(function() nexus.sleep(5) end)
      nexus.sleep(0.05)
      local by = {}
      for _, t in ipairs(nexus.tasks()) do by[t.id] = t end
      local me = by[nexus.current():id()]
      local out = { a = by[a:id()], b = by[b:id()], c = by[c:id()], d = by[d:id()], me = me, n = #nexus.tasks() }
      tok:cancel()
      a:abort(); d:abort()
      assert(keep)
      return out
    end)
    assert.are.equal(5, r.n)
    assert.are.equal("reader", r.a.name)
    assert.are.equal("waiting", r.a.state)
    assert.are.equal("channel recv", r.a.wait)
    assert.matches("introspect_spec.lua:%d+$", r.a.where)
    assert.is_true(r.a.since >= 0.03 and r.a.since < 5)
    assert.are.equal("token cancelled", r.b.wait)
    assert.are.equal("select: token cancelled | sleep", r.c.wait)
    assert.are.equal("sleep", r.d.wait)
    assert.are.equal("running", r.me.state)
  end)

  it("names a tcp read with its peer", function()
    local wait = nexus.run(function()
      local ln = nexus.tcp.listen("127.0.0.1", 0)
      local port = tonumber(ln:local_addr():match(":(%d+)$"))
      local c = nexus.tcp.connect("127.0.0.1", port)
      local s = ln:accept()
      local h = nexus.spawn(function() s:read_line() end)
      nexus.sleep(0.01)
      local w
      for _, t in ipairs(nexus.tasks()) do
        if t.id == h:id() then w = t.wait end
      end
      h:abort()
      local peer = c:local_addr()
      c:close(); s:close(); ln:close()
      return { w = w, peer = peer }
    end)
    assert.are.equal("tcp read " .. wait.peer, wait.w)
  end)

  it("nexus.dump() shows every task with its traceback", function()
    local text = nexus.run(function()
      local h = nexus.spawn(function() nexus.sleep(5) end):name("sleeper")
      nexus.yield()
      local d = nexus.dump()
      h:abort()
      return d
    end)
    assert.matches("nexus: 2 task%(s%)", text)
    assert.matches('task %d+ "sleeper": waiting on sleep for [%d.]+ s at [^\n]*introspect_spec.lua:%d+', text)
    assert.matches("stack traceback:", text)
  end)

  it("the deadlock error lists the waiting tasks: id, name, wait, place", function()
    local ok, err = pcall(nexus.run, function()
      local keep, rx = nexus.channel(1)
      nexus.spawn(function() rx:recv() end):name("stuck reader")
      nexus.cancel_token():cancelled()
      assert(keep)
    end)
    assert.is_false(ok)
    assert.matches("deadlock: 2 task%(s%) wait on something nothing can complete:", err)
    assert.matches('task %d+ "stuck reader" waits on channel recv at [^\n]*introspect_spec.lua:%d+', err)
    assert.matches("task %d+ waits on token cancelled at [^\n]*introspect_spec.lua:%d+", err)
  end)

  it("SIGQUIT under the nexus command prints the dump and the program goes on", function()
    local file = H.tmpfile([[
      local nexus = require "nexus"
      nexus.spawn(function() nexus.sleep(30) end):name("napper")
      io.stdout:write("ready\n"); io.stdout:flush()
      nexus.sleep(1.5)
      print("went on")
      os.exit(0)
    ]])
    local r = H.sh(H.q(H.nexus_bin()) .. " " .. H.q(file) .. " & pid=$!; sleep 0.5; kill -QUIT $pid; wait $pid")
    assert.are.equal(0, r.rc, r.err)
    assert.matches("went on", r.out)
    assert.matches('task %d+ "napper": waiting on sleep', r.err)
    assert.matches("stack traceback", r.err)
  end)
end)

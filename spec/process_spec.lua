-- nexus.process.spawn: pipes as nexus streams (read_line, write, close),
-- exit codes and signals, env and cwd, a command that cannot start, no
-- zombie after wait, no nexus descriptor in the child, children killed
-- and reaped when the runtime closes, wait aborted, bad input.
local nexus = require "nexus"

local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local st = f:read("*a"):match("^%d+ %b() (%a)")
  f:close()
  return st ~= nil and st ~= "Z"
end

local function exists(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if f then f:close() end
  return f ~= nil
end

describe("nexus.process.spawn", function()
  it("gives the child's stdout as a stream and its exit code", function()
    local r = nexus.run(function()
      local p = assert(nexus.process.spawn("sh", { "-c", "echo one; echo two; exit 7" }))
      local a, b, c = p.stdout:read_line(), p.stdout:read_line(), { p.stdout:read_line() }
      return { a = a, b = b, c = c, code = p:wait(), pid = p:pid() }
    end)
    assert.are.same({ "one", "two" }, { r.a, r.b })
    assert.are.same({ nil, "eof" }, { r.c[1], r.c[2] })
    assert.are.equal(7, r.code)
    assert.is_false(exists(r.pid))      -- reaped: no zombie
  end)

  it("writes to stdin with backpressure; closing stdin ends the child's input", function()
    local r = nexus.run(function()
      local p = assert(nexus.process.spawn("cat"))
      local big = ("0123456789abcdef"):rep(64 * 1024)        -- 1 MiB: more than the pipe holds
      local w = nexus.spawn(function()
        assert(p.stdin:write(big))
        p.stdin:close()
      end)
      local got = assert(p.stdout:read_exactly(#big))
      w:join()
      return { same = got == big, tail = { p.stdout:read(10) }, code = p:wait() }
    end)
    assert.is_true(r.same)
    assert.are.same({ nil, "eof" }, { r.tail[1], r.tail[2] })
    assert.are.equal(0, r.code)
  end)

  it("reports a child killed by a signal, and kill after the exit", function()
    local r = nexus.run(function()
      local p = assert(nexus.process.spawn("sleep", { "30" }))
      local k = p:kill("KILL")
      local a, b, c = p:wait()
      return { k = k, a = a, b = b, c = c, again = p:kill() }
    end)
    assert.are.same({ k = true, b = "signal", c = "SIGKILL", again = false }, r)
  end)

  it("takes env and cwd, and stdio modes", function()
    local r = nexus.run(function()
      local p = assert(nexus.process.spawn("sh", { "-c", "echo $FOO:$HOME; pwd; echo err >&2" },
        { env = { FOO = "bar", PATH = os.getenv("PATH") }, cwd = "/tmp", stdin = "ignore" }))
      return { p.stdout:read_line(), p.stdout:read_line(), p.stderr:read_line(), p.stdin, p:wait() }
    end)
    assert.are.same({ "bar:", "/tmp", "err", nil, 0 }, { r[1], r[2], r[3], r[4], r[5] })
  end)

  it("returns nil, err for a command that cannot start", function()
    local r = { nexus.run(function() return nexus.process.spawn("no-such-command-for-nexus") end) }
    assert.are.same({ nil, "no such file or directory" }, r)
  end)

  it("gives the child none of nexus's descriptors (only stdio)", function()
    local out = nexus.run(function()
      local p = assert(nexus.process.spawn("sh", { "-c", "ls -l /proc/$$/fd" }))
      local t = {}
      while true do
        local l = p.stdout:read_line()
        if not l then break end
        t[#t + 1] = l
      end
      p:wait()
      return table.concat(t, "\n")
    end)
    assert.is_nil(out:match("anon_inode"), out)             -- no epoll, eventfd, signalfd
    for fd, target in out:gmatch(" (%d+) %-> ([^\n]+)") do
      if target:find("socket:", 1, true) then assert.is_true(tonumber(fd) <= 2, out) end
    end
  end)

  it("kills and reaps children still running when the runtime closes", function()
    local rt = nexus.runtime.new()
    local pid = rt:block_on(function()
      local p = assert(nexus.process.spawn("sleep", { "30" }))
      return p:pid()
    end)
    assert.is_true(alive(pid))
    rt:close()
    assert.is_false(exists(pid))
  end)

  it("a wait aborted or timed out leaves the child running; a later wait gets its code", function()
    local r = nexus.run(function()
      local p = assert(nexus.process.spawn("sh", { "-c", "sleep 0.2; exit 4" }))
      local t = { nexus.timeout(0.05, p.wait, p) }
      return { t = t, code = p:wait() }
    end)
    assert.are.same({ nil, "timeout" }, r.t)
    assert.are.equal(4, r.code)
  end)

  it("raises on bad input, naming the function", function()
    nexus.run(function()
      assert.has_error(function() nexus.process.spawn(42) end, "nexus.process.spawn: expected a command string, got number")
      assert.has_error(function() nexus.process.spawn("echo", "x") end, "nexus.process.spawn: args must be a table of strings, got string")
      assert.has_error(function() nexus.process.spawn("echo", { {} }) end, "nexus.process.spawn: args[1] must be a string, got table")
      assert.has_error(function() nexus.process.spawn("echo", {}, { bogus = 1 }) end, "nexus.process.spawn: unknown option 'bogus'")
      assert.has_error(function() nexus.process.spawn("echo", {}, { env = { ["A=B"] = "x" } }) end, "nexus.process.spawn: bad environment variable name A=B")
      assert.has_error(function() nexus.process.spawn("echo", {}, { stdout = "file" }) end)
      local p = assert(nexus.process.spawn("true"))
      assert.has_error(function() p:kill("NOPE") end, "process:kill: unknown signal NOPE")
      assert.has_error(function() p.stdout:set_nodelay(true) end, "stream:set_nodelay: not a tcp stream (a process's pipe)")
      p:wait()
    end)
    assert.has_error(function() nexus.process.spawn("true") end, "nexus.process.spawn: not inside a nexus task")
  end)
end)

-- The nexus command ($NEXUS_BIN): scripts run as the root task, arg and
-- `...`, explicit-style scripts, exit status and error reports, -e, -,
-- -v, -h and bad options.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")

local function nexus_script(src, ...)
  return H.nexus_script(src, ...)
end

-- The exit status, stdout and stderr, for assertion messages.
local function show(r)
  return ("rc=%s\n--- stdout\n%s--- stderr\n%s"):format(tostring(r.rc), r.out, r.err)
end

describe("nexus command", function()
  after_each(H.cleanup)

  it("exists and is executable", function()
    local r = H.sh("test -x " .. H.q(H.nexus_bin()))
    assert.are.equal(0, r.rc, "no executable at " .. H.nexus_bin())
  end)

  describe("scripts", function()
    it("sets arg[0], arg[1], arg[2] and ... as luajit does", function()
      local src = [[
        print("arg0=" .. tostring(arg[0]))
        print("arg1=" .. tostring(arg[1]))
        print("arg2=" .. tostring(arg[2]))
        print("arg3=" .. tostring(arg[3]))
        print("argn=" .. #arg)
        print("varargs=" .. select("#", ...) .. ":" .. table.concat({ ... }, ","))
        print("argm1=" .. tostring(arg[-1]))
      ]]
      local r, file = nexus_script(src, "first", "second arg")
      assert.are.equal(0, r.rc, show(r))
      assert.is_truthy(r.out:find("arg0=" .. file .. "\n", 1, true), show(r))
      assert.is_truthy(r.out:find("arg1=first\n", 1, true), show(r))
      assert.is_truthy(r.out:find("arg2=second arg\n", 1, true), show(r))
      assert.is_truthy(r.out:find("arg3=nil\n", 1, true), show(r))
      assert.is_truthy(r.out:find("argn=2\n", 1, true), show(r))
      assert.is_truthy(r.out:find("varargs=2:first,second arg\n", 1, true), show(r))
      assert.is_truthy(r.out:find("argm1=" .. H.nexus_bin() .. "\n", 1, true), show(r))
    end)

    it("runs top-level nexus.sleep and nexus.spawn", function()
      local r = nexus_script([[
        local nexus = require "nexus"
        local t0 = nexus.now()
        nexus.sleep(0.05)
        print(string.format("slept=%s", tostring(nexus.now() - t0 >= 0.05)))
        local h = nexus.spawn(function(x) nexus.sleep(0.01); return x * 2 end, 21)
        print("joined=" .. h:join())
      ]])
      assert.are.equal(0, r.rc, show(r))
      assert.is_truthy(r.out:find("slept=true\n", 1, true), show(r))
      assert.is_truthy(r.out:find("joined=42\n", 1, true), show(r))
    end)

    it("top-level join and result take the value of a task that already ended", function()
      local r = nexus_script([[
        local nexus = require "nexus"
        local t = {}
        local a = nexus.spawn(function() return t end)
        local b = nexus.spawn(function() return "b" end)
        local c = nexus.spawn(function() end)
        nexus.sleep(0.01)                      -- all three have ended
        local ok, v = b:result()
        print("same=" .. tostring(rawequal(a:join(), t)), "b=" .. tostring(ok) .. v,
              "c=" .. select("#", c:join()))
      ]])
      assert.are.equal(0, r.rc, show(r))
      assert.is_truthy(r.out:find("same=true\tb=trueb\tc=0\n"), show(r))
    end)

    it("waits for spawned tasks before exiting", function()
      local r = nexus_script([[
        local nexus = require "nexus"
        nexus.spawn(function()
          nexus.sleep(0.05)
          print("detached task done")
        end)
        print("main chunk end")
      ]])
      assert.are.equal(0, r.rc, show(r))
      local a = r.out:find("main chunk end", 1, true)
      local b = r.out:find("detached task done", 1, true)
      assert.is_truthy(a, show(r))
      assert.is_truthy(b, show(r))
      assert.is_true(b > a)
    end)

    it("waits for tasks spawned after a top-level suspension too", function()
      local r = nexus_script([[
        local nexus = require "nexus"
        nexus.sleep(0.01)
        for i = 1, 3 do
          nexus.spawn(function() nexus.sleep(0.02 * i); print("task " .. i) end)
        end
      ]])
      assert.are.equal(0, r.rc, show(r))
      assert.are.equal("task 1\ntask 2\ntask 3\n", r.out)
    end)

    it("runs an explicit-style script (own runtime, block_on) as luajit does", function()
      local src = [[
        local nexus = require "nexus"
        local rt = nexus.runtime.new()
        local a, b = rt:block_on(function()
          local h = nexus.spawn(function() nexus.sleep(0.01); return "child" end)
          nexus.sleep(0.01)
          return h:join(), 2
        end)
        print("block_on:", a, b)
        print("again:", rt:block_on(function() return "second" end))
        rt:close()
        print("end")
      ]]
      local rn = nexus_script(src)
      local rl = H.luajit_script(src)
      assert.are.equal(0, rl.rc, show(rl))
      assert.are.equal(0, rn.rc, show(rn))
      assert.are.equal("block_on:\tchild\t2\nagain:\tsecond\nend\n", rl.out)
      assert.are.equal(rl.out, rn.out)
    end)

    it("runs nexus.run at top level", function()
      local src = [[
        local nexus = require "nexus"
        print("run:", nexus.run(function(x)
          nexus.sleep(0.01)
          return x, "b"
        end, "a"))
        print("second:", nexus.run(function() return 2 end))
      ]]
      local rn = nexus_script(src)
      local rl = H.luajit_script(src)
      assert.are.equal(0, rn.rc, show(rn))
      assert.are.equal("run:\ta\tb\nsecond:\t2\n", rn.out)
      assert.are.equal(rl.out, rn.out)
    end)

    it("nexus.run after a top-level nexus.sleep raises (the root is a running task)", function()
      local r = nexus_script([[
        local nexus = require "nexus"
        nexus.sleep(0.001)
        nexus.run(function() print("inner run ran") end)
        print("after run")
      ]])
      assert.are.equal(1, r.rc, show(r))
      assert.is_nil(r.out:find("inner run ran", 1, true), show(r))
      assert.is_nil(r.out:find("after run", 1, true), show(r))
      assert.is_truthy(r.err:find("nexus.run", 1, true), show(r))
    end)

    it("rt:block_on after a top-level nexus.spawn raises", function()
      local r = nexus_script([[
        local nexus = require "nexus"
        nexus.spawn(function() end)
        local rt = nexus.runtime.new()
        rt:block_on(function() print("inner block_on ran") end)
      ]])
      assert.are.equal(1, r.rc, show(r))
      assert.is_nil(r.out:find("inner block_on ran", 1, true), show(r))
      assert.is_truthy(r.err:find("block_on", 1, true), show(r))
    end)

    it("a deadlocked script exits 1 with 'deadlock' instead of hanging", function()
      local file = H.tmpfile([[
        local nexus = require "nexus"
        nexus.sleep(0)
        local root = nexus.current()
        local h = nexus.spawn(function() return root:join() end)
        nexus.yield()
        h:join()
      ]])
      local r = H.sh("timeout -k 2 10 " .. H.q(H.nexus_bin()) .. " " .. H.q(file))
      assert.are.equal(1, r.rc, show(r))
      assert.is_truthy(r.err:find("deadlock", 1, true), show(r))
    end)
  end)

  describe("exit status", function()
    it("is 0 when the script ends", function()
      local r = nexus_script([[
        local nexus = require "nexus"
        nexus.sleep(0.001)
        print("ok")
      ]])
      assert.are.equal(0, r.rc, show(r))
      assert.are.equal("ok\n", r.out)
      assert.are.equal("", r.err)
    end)

    it("is 1 with the message and a traceback on stderr for an error", function()
      local r = nexus_script([[
        print("before")
        error("top-level-failure")
      ]])
      assert.are.equal(1, r.rc, show(r))
      assert.are.equal("before\n", r.out)
      assert.is_truthy(r.err:find("top-level-failure", 1, true), show(r))
      assert.is_truthy(r.err:find("stack traceback", 1, true), show(r))
    end)

    it("is 1 for an error raised after the first suspension", function()
      local r = nexus_script([[
        local nexus = require "nexus"
        nexus.sleep(0.01)
        print("woke")
        error("after-suspension-failure")
      ]])
      assert.are.equal(1, r.rc, show(r))
      assert.are.equal("woke\n", r.out)
      assert.is_truthy(r.err:find("after-suspension-failure", 1, true), show(r))
      assert.is_truthy(r.err:find("stack traceback", 1, true), show(r))
    end)

    it("is 1 for an unobserved error in a spawned task", function()
      local r = nexus_script([[
        local nexus = require "nexus"
        nexus.spawn(function() nexus.sleep(0.01); error("spawned-task-failure") end)
        nexus.sleep(0.5)
        print("not reached")
      ]])
      assert.are.equal(1, r.rc, show(r))
      assert.is_nil(r.out:find("not reached", 1, true), show(r))
      assert.is_truthy(r.err:find("spawned-task-failure", 1, true), show(r))
      assert.is_truthy(r.err:find("stack traceback", 1, true), show(r))
    end)

    it("is 1 for an error in a detached task after the main chunk ended", function()
      local r = nexus_script([[
        local nexus = require "nexus"
        nexus.spawn(function() nexus.sleep(0.02); error("detached-failure") end)
        print("main done")
      ]])
      assert.are.equal(1, r.rc, show(r))
      assert.is_truthy(r.err:find("detached-failure", 1, true), show(r))
    end)

    it("is 0 when a task's error is observed by join", function()
      local r = nexus_script([[
        local nexus = require "nexus"
        local h = nexus.spawn(function() nexus.sleep(0.01); error("joined-failure") end)
        local ok, err = pcall(h.join, h)
        print(ok, (tostring(err):find("joined-failure", 1, true)) ~= nil)
      ]])
      assert.are.equal(0, r.rc, show(r))
      assert.are.equal("false\ttrue\n", r.out)
    end)

    it("is 1 for a syntax error and for a missing script", function()
      local r = nexus_script("local x = = 1\n")
      assert.are.equal(1, r.rc, show(r))
      assert.is_truthy(r.err ~= "", show(r))
      local missing = os.tmpname()
      os.remove(missing)
      local r2 = H.run_nexus({ missing })
      assert.are.equal(1, r2.rc, show(r2))
      assert.is_truthy(r2.err:find(missing, 1, true), show(r2))
    end)

    it("os.exit(n) in a script exits with n", function()
      local r = nexus_script([[
        local nexus = require "nexus"
        nexus.sleep(0.001)
        io.write("bye")
        os.exit(3)
      ]])
      assert.are.equal(3, r.rc, show(r))
      assert.are.equal("bye", r.out)
    end)
  end)

  describe("options", function()
    it("-e runs a chunk", function()
      local r = H.run_nexus({ "-e", "local nexus = require 'nexus'; nexus.sleep(0.01); print('from -e', 1 + 1)" })
      assert.are.equal(0, r.rc, show(r))
      assert.are.equal("from -e\t2\n", r.out)
    end)

    it("-e with an error exits 1", function()
      local r = H.run_nexus({ "-e", "error('e-chunk-failure')" })
      assert.are.equal(1, r.rc, show(r))
      assert.is_truthy(r.err:find("e-chunk-failure", 1, true), show(r))
    end)

    it("-e runs before the script", function()
      local file = H.tmpfile("print('script sees', E_VALUE, ...)\n")
      local r = H.run_nexus({ "-e", "E_VALUE = 'set by -e'", file, "x" })
      assert.are.equal(0, r.rc, show(r))
      assert.are.equal("script sees\tset by -e\tx\n", r.out)
    end)

    it("- reads the script from stdin, with arguments", function()
      local r = H.run_nexus({ "-", "p", "q" }, [[
        local nexus = require "nexus"
        nexus.sleep(0.01)
        print("stdin script", select("#", ...), ...)
      ]])
      assert.are.equal(0, r.rc, show(r))
      assert.are.equal("stdin script\t2\tp\tq\n", r.out)
    end)

    it("-v prints nexus and its version and exits 0", function()
      local r = H.run_nexus({ "-v" })
      assert.are.equal(0, r.rc, show(r))
      local version = r.out:match("nexus%s+v?(%d+%.%d+[%w%.%-]*)")
      assert.is_truthy(version, show(r))
      -- the same version as the module reports
      local m = H.run_nexus({ "-e", "io.write(require('nexus').version)" })
      assert.are.equal(0, m.rc, show(m))
      assert.are.equal(version, m.out)
    end)

    it("-h prints the usage and exits 0", function()
      local r = H.run_nexus({ "-h" })
      assert.are.equal(0, r.rc, show(r))
      assert.is_truthy(r.out:lower():find("usage", 1, true), show(r))
      assert.is_truthy(r.out:find("-e", 1, true), show(r))
    end)

    it("an unknown option exits 1 with a message naming it", function()
      local r = H.run_nexus({ "--no-such-option" })
      assert.are.equal(1, r.rc, show(r))
      assert.is_truthy(r.err:find("--no-such-option", 1, true), show(r))
      local r2 = H.run_nexus({ "-Z", "script.lua" })
      assert.are.equal(1, r2.rc, show(r2))
    end)

    it("options after the script name are the script's arguments", function()
      local file = H.tmpfile("print(...)\n")
      local r = H.run_nexus({ file, "-v", "-h", "--bogus" })
      assert.are.equal(0, r.rc, show(r))
      assert.are.equal("-v\t-h\t--bogus\n", r.out)
    end)

    it("-- ends the options", function()
      local file = H.tmpfile("print('after --', ...)\n")
      local r = H.run_nexus({ "--", file, "a" })
      assert.are.equal(0, r.rc, show(r))
      assert.are.equal("after --\ta\n", r.out)
    end)
  end)
end)

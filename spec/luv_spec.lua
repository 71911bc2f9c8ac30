-- require "nexus.luv": luv on the runtime's own loop (one loop, one epoll
-- descriptor), nexus.luv.await, luv libraries (fs, spawn, a TCP server)
-- inside tasks, callback errors as runtime errors, uv.run refused while
-- nexus drives. Each case runs in a child process: luv binds once per
-- Lua state.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")

local function run(src, how)
  local r
  if how == "nexus" then r = H.nexus_script(src) else r = H.luajit_script(src) end
  return r, ("rc %s\n--- stdout\n%s--- stderr\n%s"):format(tostring(r.rc), r.out, r.err)
end

local EPOLLS = [[
  local function epolls()
    local n = 0
    local p = io.popen("ls -l /proc/" .. io.open("/proc/self/stat"):read("*n") .. "/fd 2>/dev/null")
    for l in p:lines() do if l:find("eventpoll", 1, true) then n = n + 1 end end
    p:close()
    return n
  end
]]

describe("nexus.luv", function()
  for _, how in ipairs({ "luajit", "nexus" }) do
    it("shares the runtime's loop: one epoll descriptor, luv timers and fs inside tasks (" .. how .. ")", function()
      local r, show = run(EPOLLS .. [[
        local nexus = require "nexus"
        nexus.run(function()
          local before = epolls()
          local uv = require "nexus.luv"
          assert(require("luv") == uv, "require 'luv' gives the bound module")
          local t = uv.new_timer()
          local t0 = nexus.now()
          local v = nexus.luv.await(function(cb) t:start(30, 0, function() cb("fired") end) end)
          t:close()
          local err, st = nexus.luv.await(function(cb) uv.fs_stat("/proc/self", cb) end)
          -- libuv counts a timer from the loop's cached time, which may be
          -- a little behind when a task starts it: not a full 30 ms here
          print(before, epolls(), v, nexus.now() - t0 >= 0.01, err, st.type)
        end)
      ]], how)
      assert.are.equal(0, r.rc, show)
      assert.are.equal("1\t1\tfired\ttrue\tnil\tdirectory\n", r.out, show)
    end)
  end

  it("runs a luv TCP server and uv.spawn inside tasks", function()
    local r, show = run([[
      local nexus = require "nexus"
      nexus.run(function()
        local uv = require "nexus.luv"
        local srv = uv.new_tcp()
        assert(srv:bind("127.0.0.1", 0))
        srv:listen(8, function()
          local c = uv.new_tcp()
          srv:accept(c)
          c:read_start(function(_, data)
            if data then c:write(data:upper()) else c:close() end
          end)
        end)
        local s = assert(nexus.tcp.connect("127.0.0.1", srv:getsockname().port))
        s:write("hello\n")
        print(s:read_line())
        s:close()
        srv:close()
        local out = uv.new_pipe(false)
        local got = {}
        local code = nexus.luv.await(function(cb)
          local child
          child = uv.spawn("echo", { args = { "from", "a", "child" }, stdio = { nil, out, nil } },
            function(c) child:close(); cb(c) end)
          out:read_start(function(_, data) if data then got[#got + 1] = data else out:close() end end)
        end)
        nexus.sleep(0.05)
        print(code, (table.concat(got):gsub("\n", "")))
      end)
    ]])
    assert.are.equal(0, r.rc, show)
    assert.are.equal("HELLO\n0\tfrom a child\n", r.out, show)
  end)

  it("raises an error of a luv callback from nexus.run (the process does not exit)", function()
    local r, show = run([[
      local nexus = require "nexus"
      local ok, err = pcall(nexus.run, function()
        local uv = require "nexus.luv"
        local t = uv.new_timer()
        t:start(10, 0, function() error("boom in a luv callback") end)
        nexus.sleep(5)
      end)
      print(ok, err:match("nexus.luv: error in a luv callback: [^\n]*boom in a luv callback") ~= nil)
    ]])
    assert.are.equal(0, r.rc, show)
    assert.are.equal("false\ttrue\n", r.out, show)
  end)

  it("reports it and goes on under on_task_error(\"report\")", function()
    local r, show = run([[
      local nexus = require "nexus"
      local rt = nexus.runtime.builder():on_task_error("report"):build()
      rt:block_on(function()
        local uv = require "nexus.luv"
        local t = uv.new_timer()
        t:start(10, 0, function() t:close(); error("reported") end)
        nexus.sleep(0.1)
        print("went on")
      end)
    ]])
    assert.are.equal(0, r.rc, show)
    assert.are.equal("went on\n", r.out, show)
    assert.matches("nexus.luv: error in a luv callback: [^\n]*reported", r.err)
  end)

  it("ignores a late callback after the awaiting task was aborted or timed out", function()
    local r, show = run([[
      local nexus = require "nexus"
      nexus.run(function()
        local uv = require "nexus.luv"
        local t = uv.new_timer()
        local ok, e = nexus.timeout(0.01, nexus.luv.await, function(cb) t:start(50, 0, function() cb(1) end) end)
        nexus.sleep(0.1)                 -- the callback comes, and is ignored
        t:close()
        print(ok, e)
      end)
    ]])
    assert.are.equal(0, r.rc, show)
    assert.are.equal("nil\ttimeout\n", r.out, show)
  end)

  it("refuses uv.run while nexus drives, another runtime, a luv loaded first, bad input", function()
    local r, show = run([[
      local nexus = require "nexus"
      nexus.run(function()
        local uv = require "nexus.luv"
        print(pcall(uv.run))
        print(pcall(nexus.luv.await, 42))
      end)
      local rt = nexus.runtime.new()
      local ok, err = pcall(rt.block_on, rt, function() package.loaded["nexus.luv"] = nil; return require "nexus.luv" end)
      print(ok, (err:match("nexus.luv: luv is bound to another runtime")))
    ]])
    assert.are.equal(0, r.rc, show)
    local lines = {}
    for l in r.out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal("false\tuv.run: refused while nexus drives the loop (luv's callbacks already run there)", lines[1], show)
    assert.are.equal("false\tnexus.luv.await: expected a function, got number", lines[2], show)
    assert.are.equal("false\tnexus.luv: luv is bound to another runtime", lines[3], show)
    r, show = run([[
      require "luv"
      local nexus = require "nexus"
      nexus.run(function() print(pcall(require, "nexus.luv")) end)
    ]])
    assert.are.equal(0, r.rc, show)
    assert.matches("false\t[^\n]*nexus.luv: luv was already loaded on a loop of its own", r.out, show)
  end)
end)

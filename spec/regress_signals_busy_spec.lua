-- Regression: SIGINT/SIGTERM were never acted on while a task stayed
-- ready. With tasks ready the driver polls with uv_run(NOWAIT), which
-- returns without polling when no referenced handle is active, and the
-- signal handles are unreferenced while nobody waits on the shutdown
-- signal. Only SIGKILL stopped a spinning task or a channel ping-pong.
local dir = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
local P = dofile(dir .. "proc.lua")
local nexus = require "nexus"

-- Generous: the machine is shared and a child starts a whole LuaJIT.
local START, END = 30, 30

local SPINNER = [[
  io.stdout:setvbuf("no")
  local nexus = require "nexus"
  nexus.spawn(function() while true do nexus.yield() end end)
  print("ready")
  nexus.sleep(60)
  print("never")
]]

local PINGPONG = [[
  io.stdout:setvbuf("no")
  local nexus = require "nexus"
  local atx, arx = nexus.channel(1)
  local btx, brx = nexus.channel(1)
  nexus.spawn(function() while true do btx:send(arx:recv()) end end)
  atx:send(1)
  print("ready")
  while true do atx:send(brx:recv()) end
]]

-- Signals p once it printed "ready"; returns the seconds it took to end.
local function signal_and_time(p, sig)
  assert.is_true(p:wait_for("ready\n", START), p:show())
  -- Let it spin for a while: the defect showed once the loop was running.
  P.sleep_ms(200)
  local t0 = nexus.now()
  p:signal(sig)
  assert.is_truthy(p:wait(END), p:show())
  return nexus.now() - t0
end

describe("regress: signals while tasks are always ready", function()
  after_each(P.cleanup)

  for _, c in ipairs({ { "TERM", 15 }, { "INT", 2 } }) do
    local name, signo = c[1], c[2]

    it("nexus command: a task spinning on nexus.yield; SIG" .. name .. " exits 128+" .. signo, function()
      local p = P.nexus(SPINNER)
      local took = signal_and_time(p, name)
      assert.are.same({ exited = true, code = 128 + signo }, p.status, p:show())
      assert.are.equal("ready\n", p:out())
      assert.are.equal("", p:err())
      -- The target is 100 ms (bench, not here): 5 s only catches a hang.
      assert.is_true(took < 5, ("took %.3f s"):format(took))
    end)
  end

  it("nexus command: two tasks in a channel ping-pong; SIGTERM exits 143", function()
    local p = P.nexus(PINGPONG)
    signal_and_time(p, "TERM")
    assert.are.same({ exited = true, code = 143 }, p.status, p:show())
    assert.are.equal("", p:err())
  end)

  it("luajit: an explicit runtime with signal_handlers(true) is interrupted while a task spins", function()
    local p = P.luajit([[
      io.stdout:setvbuf("no")
      local nexus = require "nexus"
      local rt = nexus.runtime.builder():signal_handlers(true):build()
      local ok, err = pcall(rt.block_on, rt, function()
        nexus.spawn(function() while true do nexus.yield() end end)
        print("ready")
        nexus.sleep(60)
      end)
      print(ok, err)
      os.exit(3)
    ]])
    signal_and_time(p, "TERM")
    assert.are.same({ exited = true, code = 3 }, p.status, p:show())
    assert.are.equal("ready\nfalse\trt:block_on: interrupted by SIGTERM (signal 15): "
      .. "no task was waiting on the shutdown signal\n", p:out())
  end)

  it("luajit: block_on_busy (never parks) is interrupted by SIGINT", function()
    local p = P.luajit([[
      io.stdout:setvbuf("no")
      local nexus = require "nexus"
      local rt = nexus.runtime.builder():signal_handlers(true):build()
      local ok, err = pcall(rt.block_on_busy, rt, function()
        print("ready")
        nexus.sleep(60)
      end)
      print(ok, err)
      os.exit(3)
    ]])
    signal_and_time(p, "INT")
    assert.are.same({ exited = true, code = 3 }, p.status, p:show())
    assert.matches("interrupted by SIGINT", p:out(), 1, true)
  end)

  it("nexus command: the waiter is woken while another task spins, and a second signal exits at once", function()
    local p = P.nexus([[
      io.stdout:setvbuf("no")
      local nexus = require "nexus"
      nexus.spawn(function() while true do nexus.yield() end end)
      print("ready")
      nexus.shutdown_signal():wait()
      print("shutting down slowly")
      nexus.sleep(60)
      print("never")
    ]])
    assert.is_true(p:wait_for("ready\n", START), p:show())
    P.sleep_ms(200)
    p:signal("TERM")
    assert.is_true(p:wait_for("shutting down slowly\n", END), p:show())
    p:signal("INT")
    assert.is_truthy(p:wait(END), p:show())
    assert.are.same({ exited = true, code = 130 }, p.status, p:show())
  end)

  it("nexus command: many slow tasks (3 ms per turn) still see SIGTERM within a cycle or two", function()
    -- 61 cycles of 64 tasks x 3 ms would be 12 s: polls are also timed
    local p = P.nexus([[
      io.stdout:setvbuf("no")
      local nexus = require "nexus"
      for i = 1, 100 do
        nexus.spawn(function()
          while true do
            local t = os.clock() + 0.003
            while os.clock() < t do end
            nexus.yield()
          end
        end)
      end
      print("ready")
      nexus.sleep(600)
    ]])
    local took = signal_and_time(p, "TERM")
    assert.are.same({ exited = true, code = 143 }, p.status, p:show())
    assert.is_true(took < 4, ("took %.3f s"):format(took))
  end)
end)

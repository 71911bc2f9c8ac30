-- bench/signal_exit.lua MODE: how long a busy nexus program takes to exit
-- after SIGTERM (the robustness issue's target: within 100 ms, status 143).
--
-- MODE is the program, started as a child process:
--   spinner   nexus command: a task spinning on nexus.yield, main asleep
--   pingpong  nexus command: two tasks in a channel ping-pong
--   runtime   plain luajit: an explicit runtime with signal_handlers(true)
--             and a spinning task (block_on returns "interrupted")
-- Each measurement starts the child, waits for its "ready" line and 200 ms
-- of spinning, sends SIGTERM and polls (every 0.2 ms) until it has exited.
-- BENCH_SIGNAL_N measurements (default 7); prints their median and max,
-- and fails if any exit status is not the expected one.
local dir = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
local P = dofile(dir .. "../spec/proc.lua")
local H = dofile(dir .. "harness.lua")
local now = require("nexus").now
local ffi = require "ffi"
ffi.cdef [[ int usleep(unsigned int usec); ]]

local mode = arg[1] or "spinner"
local N = H.size("BENCH_SIGNAL_N", 7)

local programs = {
  spinner = { run = P.nexus, expect = 143, src = [[
    io.stdout:setvbuf("no")
    local nexus = require "nexus"
    nexus.spawn(function() while true do nexus.yield() end end)
    print("ready")
    nexus.sleep(600)
  ]] },
  pingpong = { run = P.nexus, expect = 143, src = [[
    io.stdout:setvbuf("no")
    local nexus = require "nexus"
    local atx, arx = nexus.channel(1)
    local btx, brx = nexus.channel(1)
    nexus.spawn(function() while true do btx:send(arx:recv()) end end)
    atx:send(1)
    print("ready")
    while true do atx:send(brx:recv()) end
  ]] },
  runtime = { run = P.luajit, expect = 143, src = [[
    io.stdout:setvbuf("no")
    local nexus = require "nexus"
    local rt = nexus.runtime.builder():signal_handlers(true):build()
    local ok, err = pcall(rt.block_on, rt, function()
      nexus.spawn(function() while true do nexus.yield() end end)
      print("ready")
      nexus.sleep(600)
    end)
    os.exit(not ok and err:find("interrupted by SIGTERM", 1, true) and 143 or 1)
  ]] },
}
local prog = assert(programs[mode], "bench/signal_exit.lua: unknown mode " .. tostring(mode))

local times = {}
for i = 1, N do
  local p = prog.run(prog.src)
  assert(p:wait_for("ready\n", 30), "child did not start: " .. p:show())
  P.sleep_ms(200)
  local t0 = now()
  p:signal("TERM")
  while not p:poll() do
    if now() - t0 > 30 then error("no exit 30 s after SIGTERM: " .. p:show()) end
    ffi.C.usleep(200)
  end
  times[i] = (now() - t0) * 1000
  local st = p.status
  assert(st.exited and st.code == prog.expect,
    ("expected exit %d, got %s"):format(prog.expect, p:how()))
  P.cleanup()
end
table.sort(times)
H.report({ "exit_ms", "max_ms" }, { exit_ms = times[math.floor((N + 1) / 2)], max_ms = times[N] })

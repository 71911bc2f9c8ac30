-- bench/luv_bridge.lua MODE: the cost of nexus.luv.await(fn) against a
-- plain luv callback doing the same operation (issue 16), ns per call.
--   cb-stat     uv.fs_stat(path, cb), each callback starting the next
--               (a thread-pool round trip), on nexus's loop inside a task
--   await-stat  the same calls, each one nexus.luv.await(fn) in a task
--   cb-timer    a 0 ms uv timer restarted from its own callback
--   await-timer the same timer, each round nexus.luv.await(fn)
--   cb-idle     a uv idle handle's callback, N loop turns (one call per turn)
--   await-idle  each turn one nexus.luv.await(fn) on an idle callback
--               that stops itself: the same loop turn, through a task
--   luv-stat, luv-timer, luv-idle  the cb- chains under plain luajit on luv's own
--               loop (uv.run), no nexus (info)
-- BENCH_LUV_N calls (default 100000 for stat, 200000 for timer).
-- Note: libuv 1.44 runs a 0 ms timer restarted inside its callback again
-- in the same timers pass, so the cb-timer chain never leaves
-- uv__run_timers, while every await gives the loop a full turn (the task
-- runs between turns): await-timer - cb-timer is the whole price of
-- going through a task, loop turn included. The stat chains both take
-- a loop turn per call (the thread pool's completion is an async wake-up).
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "harness.lua")
local mode = assert(arg[1], "usage: luv_bridge.lua cb-stat|await-stat|cb-timer|await-timer|luv-stat|luv-timer")
local op = mode:match("%-(%a+)$")
local N = H.size("BENCH_LUV_N", op == "stat" and 100000 or 200000)
assert(op == "stat" or op == "timer" or op == "idle", "unknown mode " .. mode)
local PATH = "/proc/self"

-- a chain of n plain callbacks; calls done() after the last one
local function chain(uv, n, done)
  local left = n
  if op == "stat" then
    local function cb(err, st)
      assert(not err and st, err)
      left = left - 1
      if left == 0 then return done() end
      uv.fs_stat(PATH, cb)
    end
    uv.fs_stat(PATH, cb)
  elseif op == "idle" then
    local idle = uv.new_idle()
    idle:start(function()
      left = left - 1
      if left == 0 then idle:close(); return done() end
    end)
  else
    local t = uv.new_timer()
    local function cb()
      left = left - 1
      if left == 0 then t:close(); return done() end
      t:start(0, 0, cb)
    end
    t:start(0, 0, cb)
  end
end

local elapsed
if mode:match("^luv%-") then
  local uv = require "luv"
  chain(uv, 1000, function() end)        -- warm-up
  uv.run()
  local t0 = H.now()
  chain(uv, N, function() elapsed = H.now() - t0 end)
  uv.run()
else
  local nexus = require "nexus"
  nexus.run(function()
    local uv = require "nexus.luv"
    local await = nexus.luv.await
    local function run(n)
      if mode:match("^cb%-") then
        await(function(done) chain(uv, n, done) end)   -- one await for the whole chain
      elseif op == "stat" then
        for _ = 1, n do
          local err, st = await(function(cb) uv.fs_stat(PATH, cb) end)
          assert(not err and st, err)
        end
      elseif op == "idle" then
        local idle = uv.new_idle()
        for _ = 1, n do
          await(function(cb) idle:start(function() idle:stop(); cb() end) end)
        end
        idle:close()
      else
        local t = uv.new_timer()
        for _ = 1, n do await(function(cb) t:start(0, 0, cb) end) end
        t:close()
      end
    end
    run(1000)                               -- warm-up
    local t0 = H.now()
    run(N)
    elapsed = H.now() - t0
  end)
end
assert(elapsed, "the chain did not finish")
H.report({ "ns_per_call", "n" }, { ns_per_call = elapsed / N * 1e9, n = N })

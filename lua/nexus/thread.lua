-- nexus.thread: blocking work off the loop's thread. The function runs in
-- a fresh Lua state on libuv's thread pool (src/thread.c) while the
-- calling task waits; the loop and every other task go on meanwhile.
local core = require "nexus.core"
local api = require "nexus.api"
local util = require "nexus.util"

local type, dump, getinfo = type, string.dump, debug.getinfo
local c_run, c_result = core.thread_run, core.thread_result
local no_task, suspend, argerror = util.no_task, util.suspend, util.argerror
local api_in_task = api.in_task

local M = {}
local FNAME = "nexus.thread.run"

-- c_result gives nil while the job runs (the task waits on it again).
local function settle(job, ok, ...)
  if ok ~= nil then return ok, ... end
  suspend(FNAME)
  return settle(job, c_result(job))
end

-- (suspends) true, fn's results | false, err, traceback. fn must be a Lua
-- function without upvalues; arguments and results are copied (nil,
-- booleans, numbers, strings and tables of those). An abort or a timeout
-- abandons the job: if it has not started it never runs, else it runs to
-- its end unheard (a thread cannot be stopped from outside).
function M.run(fn, ...)
  if type(fn) ~= "function" then argerror(FNAME, "expected a function, got " .. type(fn)) end
  local info = getinfo(fn, "Su")
  if info.what == "C" then argerror(FNAME, "expected a Lua function, got a C function") end
  if info.nups > 0 then
    argerror(FNAME, ("the function has %d upvalue(s) (it runs in a fresh Lua state: "
      .. "pass what it needs as arguments, require modules inside it)"):format(info.nups))
  end
  if api_in_task() == 0 then no_task(FNAME, -1) end
  local job = c_run(dump(fn), ...)
  suspend(FNAME)
  return settle(job, c_result(job))
end

return M

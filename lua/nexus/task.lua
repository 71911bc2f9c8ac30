-- nexus.task: spawn, join, abort, current, yield.
local core = require "nexus.core"
local api = require "nexus.api"
local util = require "nexus.util"

local cspawn, join_begin, join_end, cabort = core.spawn, core.join_begin, core.join_end, core.abort
local yield, isyieldable = coroutine.yield, coroutine.isyieldable
local api_in_task = api.in_task
local no_task, check_yieldable = util.no_task, util.check_yieldable

local M = {}

function M.spawn(fn, ...)
  local h = cspawn(fn, ...)
  if h then return h end
  no_task("nexus.spawn", -1)    -- adopts the main chunk, or raises
  return cspawn(fn, ...)
end

local function wait_for(h, fname)
  if not join_begin(h, fname) then
    check_yieldable(fname)
    yield()
  end
end

local methods = core.task_mt.__index

-- (suspends) fn's results; re-raises fn's error.
function methods.join(h)
  wait_for(h, "handle:join")
  return join_end(h, false)
end

-- (suspends) true, ... | false, err
function methods.result(h)
  wait_for(h, "handle:result")
  return join_end(h, true)
end

-- true if the task had not finished; it never runs again.
function methods.abort(h)
  local was, self = cabort(h)
  if was and self and isyieldable() then yield() end   -- ends here
  return was
end

function M.current() return core.current() end

-- (suspends) let every other ready task run once.
function M.yield()
  if api_in_task() == 0 then no_task("nexus.yield", -1) end
  check_yieldable("nexus.yield")
  yield()
end

return M

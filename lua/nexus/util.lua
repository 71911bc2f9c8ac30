-- nexus.util: argument checks and the errors every suspending function shares.
local api = require "nexus.api"
local core = require "nexus.core"
local may_suspend, c_suspend = core.may_suspend, core.suspend

local type, error, tostring, select = type, error, tostring, select
local M = {}

-- Set by nexus.runtime: adopts a script's main chunk as a root task the
-- first time it suspends or spawns under the nexus command.
M.adopt = function() return false end

function M.pack(...) return { n = select("#", ...), ... } end

-- Raises "<fname>: <what>" naming the fault, never a bare C-level error.
function M.argerror(fname, what, level)
  error(fname .. ": " .. what, (level or 1) + 2)
end

local function check_number(fname, v, what, level)
  if type(v) ~= "number" then
    M.argerror(fname, what .. " must be a number, got " .. type(v), level + 1)
  elseif v ~= v then
    M.argerror(fname, what .. " is NaN", level + 1)
  end
end

-- A point on the nexus.now() clock: a non-NaN number.
function M.check_time(fname, v, what)
  check_number(fname, v, what or "deadline", 2)
end

-- A non-negative, non-NaN number of seconds (math.huge allowed: forever).
function M.check_secs(fname, v, what)
  what = what or "duration"
  check_number(fname, v, what, 2)
  if v < 0 then M.argerror(fname, "negative " .. what .. " (" .. tostring(v) .. ")", 2) end
end

function M.check_fn(fname, fn)
  if type(fn) ~= "function" then
    M.argerror(fname, "expected a function, got " .. type(fn), 2)
  end
end

-- Called when a suspending C entry point refused: adopt the script's main
-- chunk (nexus command) and tell the caller to retry, or raise.
function M.no_task(fname, rc)
  if rc == -1 and M.adopt() then return true end
  if rc == -2 then error(fname .. ": out of memory", 3) end
  error(fname .. ": not inside a nexus task", 3)
end

-- Before yielding with a wait registered: if this coroutine cannot yield
-- (a C function, an FFI callback, a metamethod called from C), or is a
-- coroutine of the user's own inside a task (its yield would go to the
-- user's code), release the wait and raise a nexus error instead.
local why_not = {
  "cannot suspend here (called through a C function or callback that cannot yield)",
  "cannot suspend inside a coroutine of your own (coroutine.wrap/create inside a task): "
    .. "its yield would go to your code, not to nexus; use nexus.spawn",
}

-- True while nexus.world has a World borrowed (with_world): then the
-- check asks M.cannot_suspend, which nexus.world extends. Off the hot path
-- otherwise: one field read.
M.borrowing = false

function M.check_yieldable(fname)
  local why = may_suspend()
  if why ~= 0 or M.borrowing then
    local msg = M.cannot_suspend()
    if msg then
      api.cancel_wait()
      error(fname .. ": " .. msg, 3)
    end
  end
end

-- Raises from M.suspend: the levels are refuse, suspend, the suspending
-- function, its caller (the one named in the error).
local function refuse(fname)
  local msg = M.cannot_suspend()
  if msg then
    api.cancel_wait()
    error(fname .. ": " .. msg, 4)
  end
end

-- With a wait registered: yield to the executor, or raise as
-- check_yieldable does if this coroutine cannot. The usual case is one C
-- call that checks and yields (core.suspend).
function M.suspend(fname)
  if M.borrowing then refuse(fname) end
  if c_suspend() then
    refuse(fname)
    error(fname .. ": cannot suspend here", 3)   -- refuse found no reason: should not happen
  end
end

-- nil when the running coroutine may yield to the executor, else why not.
function M.cannot_suspend()
  return why_not[may_suspend()]
end

return M

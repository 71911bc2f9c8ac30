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

-- An HTTP token (RFC 9110: header names, WebSocket subprotocols), as a
-- whole-string pattern: the HTTP client and server and nexus.websocket
-- check names with it.
M.TOKEN = "^[!#$%%&'*+%-.^_`|~%w]+$"

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
core.set_hook("no_task", M.no_task)   -- for C functions called directly (nexus.spawn)

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
-- checks ask M.borrow_reason, which nexus.world sets. Set through
-- M.set_borrowing, which tells core.suspend too. Off the hot path
-- otherwise: one field read here, one C flag there.
M.borrowing = false

function M.set_borrowing(on)
  M.borrowing = on
  api.set_borrowing(on and 1 or 0)
end

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

-- Called by core.suspend when it would not yield: raises, with the wait
-- released, or returns (a stale borrow hint) and core.suspend yields.
-- why is core.may_suspend()'s answer, taken in C before this call (here,
-- called from C, the coroutine could never yield).
local function refuse(fname, why, level)
  local msg = M.borrow_reason() or why_not[why]
  if msg then
    api.cancel_wait()
    error(fname .. ": " .. msg, level)
  end
end
core.set_hook("refuse", refuse)

-- M.suspend(fname [, level]): with a wait registered, yield to the
-- executor, or raise as check_yieldable does if this coroutine cannot.
-- It is the C function itself (no Lua frame between the suspending
-- function and the yield); see l_suspend in src/lmodule.c. A caller whose
-- wait is its last act tail-calls it with level 3: `return suspend(f, 3)`.
M.suspend = c_suspend

-- Why suspending is refused while nexus.world has the World borrowed,
-- or nil; nexus.world replaces it.
function M.borrow_reason() return nil end

-- nil when the running coroutine may yield to the executor, else why not.
function M.cannot_suspend()
  return M.borrow_reason() or why_not[may_suspend()]
end

return M

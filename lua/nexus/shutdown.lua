-- nexus.shutdown: the runtime's shutdown signal (SIGINT/SIGTERM or a
-- trigger) and handles on it. The state and the one waiter live in C
-- (src/shutdown.c); this is cold code, on the classic Lua C API.
local core = require "nexus.core"
local util = require "nexus.util"
local sel = require "nexus.select"

local setmetatable, getmetatable, error, type, pcall = setmetatable, getmetatable, error, type, pcall
local tostring = tostring
local current_runtime = core.current_runtime
local no_task = util.no_task
local suspend = util.suspend

local M = {}

local Signal = {}
Signal.__index = Signal
Signal.__tostring = function(s)
  return "nexus.shutdown_signal(" .. (s.rt:_sd_state() and "shut down" or "running") .. ")"
end

local Handle = {}
Handle.__index = Handle
Handle.__tostring = function(h)
  return "nexus.shutdown_handle(" .. (h.rt:_sd_state() and "shut down" or "running") .. ")"
end

function M.signal_of(rt) return setmetatable({ rt = rt }, Signal) end
function M.handle_of(rt) return setmetatable({ rt = rt }, Handle) end

-- The runtime running the current task (adopting the main chunk under the
-- nexus command), or raises at the caller of fname.
local function current(fname)
  local rt = current_runtime()
  if rt == nil then
    if not util.adopt() then error(fname .. ": not inside a nexus task", 3) end
    rt = current_runtime()
  end
  return rt
end

local function check(self, mt, fname, what)
  if getmetatable(self) ~= mt then
    util.argerror(fname, "expected a " .. what .. ", got " .. type(self), 2)
  end
  return self.rt
end

-- ShutdownSignal::current()
function M.signal() return M.signal_of(current("nexus.shutdown_signal")) end
function M.handle() return M.handle_of(current("nexus.shutdown_handle")) end

-- What shut rt down: "SIGINT", "SIGTERM" (or "signal N"), else "trigger".
local SIGNAMES = { [2] = "SIGINT", [15] = "SIGTERM" }
local function cause(rt)
  local _, signo = rt:_sd_state()
  if signo == 0 then return "trigger" end
  return SIGNAMES[signo] or ("signal " .. tostring(signo))
end

-- (suspends) until SIGINT/SIGTERM or a trigger; returns what did it
-- ("SIGINT", "SIGTERM" or "trigger"). One waiter at a time.
function Signal:wait()
  local rt = check(self, Signal, "shutdown_signal:wait", "shutdown signal")
  local rc = rt:_sd_wait("shutdown_signal:wait")
  while rc ~= 0 do
    if rc == 1 then
      suspend("shutdown_signal:wait")
    elseif rc == -1 then
      no_task("shutdown_signal:wait", rc)
    else
      error("shutdown_signal:wait: out of memory", 2)
    end
    rc = rt:_sd_wait("shutdown_signal:wait")
  end
  return cause(rt)
end

-- The op of sig:wait_op(). Its poll registers the op's proxy as the one
-- waiter (rt->sd_waiter); withdrawn, the proxy frees the place. The state
-- stays set once shut down, so a losing op consumes nothing: the next
-- wait (or wait_op) returns at once. The C entry point raises when another
-- task waits, or for another runtime's signal: a poll must not raise, so
-- it runs under pcall and the raise is the op's fault.
local FNAME_OP = "shutdown_signal:wait_op"
local WaitOp = sel.class("shutdown wait")
function WaitOp.poll(op)
  local rt = op.rt
  local ok, rc = pcall(rt._sd_wait, rt, FNAME_OP)
  if not ok then
    rc = tostring(rc)
    if rc:sub(1, #FNAME_OP + 2) == FNAME_OP .. ": " then rc = rc:sub(#FNAME_OP + 3) end
    return nil, rc
  end
  if rc == 0 then return true end
  if rc == 1 then return false end
  if rc == -1 then return nil, "not inside a task of the signal's runtime" end
  return nil, "out of memory"
end
function WaitOp.take(op) return cause(op.rt) end

-- An op for nexus.select: the signal name ("SIGINT", "SIGTERM") or
-- "trigger", as wait() returns; a losing wait_op consumes nothing.
function Signal:wait_op()
  local rt = check(self, Signal, FNAME_OP, "shutdown signal")
  return sel.op(WaitOp, { rt = rt }, FNAME_OP)
end

function Signal:is_shutdown()
  return (check(self, Signal, "shutdown_signal:is_shutdown", "shutdown signal"):_sd_state())
end

-- The signal that shut the runtime down (2, 15), or nil.
function Signal:signo()
  local _, signo = check(self, Signal, "shutdown_signal:signo", "shutdown signal"):_sd_state()
  return signo ~= 0 and signo or nil
end

function Handle:trigger() check(self, Handle, "shutdown_handle:trigger", "shutdown handle"):_trigger() end
function Handle:is_shutdown()
  return (check(self, Handle, "shutdown_handle:is_shutdown", "shutdown handle"):_sd_state())
end
function Handle:signal()
  return M.signal_of(check(self, Handle, "shutdown_handle:signal", "shutdown handle"))
end

return M

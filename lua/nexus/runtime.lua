-- nexus.runtime: the builder, block_on, nexus.run, and the implicit
-- runtime of the nexus command.
local core = require "nexus.core"
local api = require "nexus.api"
local util = require "nexus.util"
local shutdown = require "nexus.shutdown"

local type, error, setmetatable, getmetatable, pcall, tostring, pairs =
  type, error, setmetatable, getmetatable, pcall, tostring, pairs
local floor = math.floor
local corunning = coroutine.running

local M = {}
local rt_methods = core.runtime_mt.__index
local worlds = setmetatable({}, { __mode = "k" })   -- runtime -> World

local Builder = {}
Builder.__index = Builder

local function check_count(fname, n)
  if type(n) ~= "number" or n ~= n or n < 1 or n ~= floor(n) or n > 2 ^ 31 then
    error(fname .. ": expected a positive integer, got " .. tostring(n), 3)
  end
end

-- Set by nexus.world: whether v is a World.
M._is_world = function(v) return type(v) == "table" or type(v) == "userdata" end

function M.builder(world)
  if world ~= nil and not M._is_world(world) then
    error("nexus.runtime.builder: world must be a World (nexus.world.builder():build()), got "
      .. (type(world) == "table" and tostring(world) or type(world)), 2)
  end
  return setmetatable({ world = world, tpc = 64, ei = 61, report = false, signals = M._command }, Builder)
end

-- SIGINT/SIGTERM trigger the shutdown signal (default: on under the
-- nexus command, off under plain luajit).
function Builder:signal_handlers(on)
  if type(on) ~= "boolean" then
    error("builder:signal_handlers: expected a boolean, got " .. type(on), 2)
  end
  self.signals = on
  return self
end

function Builder:tasks_per_cycle(n)
  check_count("builder:tasks_per_cycle", n)
  self.tpc = n
  return self
end

-- The cooperative budget: a task whose last n operations all completed
-- without suspending yields once at the next one. 0 turns it off.
function Builder:coop_budget(n)
  if type(n) ~= "number" or n ~= math.floor(n) or n < 0 or n > 2 ^ 31 then
    error("builder:coop_budget: expected a non-negative integer, got " .. tostring(n), 2)
  end
  self.coop = n
  return self
end

-- A resume that runs longer than secs without yielding is reported on
-- stderr (task id, name, where it stopped). 0 turns it off.
function Builder:slow_resume_warning(secs)
  if type(secs) ~= "number" or secs ~= secs or secs < 0 then
    error("builder:slow_resume_warning: expected a non-negative number of seconds, got " .. tostring(secs), 2)
  end
  self.slow = secs
  return self
end

function Builder:event_interval(n)
  check_count("builder:event_interval", n)
  self.ei = n
  return self
end

-- n pre-created pooled tasks (spawn_pooled, try_claim); bounded: never more.
function Builder:task_pool(n, opts)
  check_count("builder:task_pool", n)
  if opts ~= nil and type(opts) ~= "table" then
    error("builder:task_pool: options must be a table, got " .. type(opts), 2)
  end
  local bounded = false
  for k, v in pairs(opts or {}) do
    if k ~= "bounded" then error("builder:task_pool: unknown option '" .. tostring(k) .. "'", 2) end
    if type(v) ~= "boolean" then error("builder:task_pool: bounded must be a boolean, got " .. type(v), 2) end
    bounded = v
  end
  self.pool, self.pool_bounded = n, bounded
  return self
end

function Builder:on_task_error(mode)
  if mode ~= "abort" and mode ~= "report" then
    error("builder:on_task_error: expected \"abort\" or \"report\", got " .. tostring(mode), 2)
  end
  self.report = mode == "report"
  return self
end

function Builder:build()
  local rt = core.runtime_new()
  rt:_config(self.tpc, self.ei, self.report, self.coop or 128, self.slow or 0)
  if self.signals then rt:_signals() end
  if M._command then rt:_sigquit() end      -- SIGQUIT prints nexus.dump()
  if self.pool then rt:_pool(self.pool, self.pool_bounded) end
  worlds[rt] = self.world
  return rt
end

function M.new(world) return M.builder(world):build() end

-- The C driver returns true, results | false, err and leaves raising to
-- Lua: no error unwinds through the C frame that drove lua_resume.
local function outcome(ok, ...)
  if ok then return ... end
  error((...), 0)
end

-- The runtime being driven (block_on, nexus.run, the command's adopted
-- drive), for nexus.world_ctx(). Each drive restores the previous value
-- on the way out, errors included.
local current

function M.current() return current end

local function restore(prev, ok, ...)
  current = prev
  if not ok then error((...), 0) end
  return ...
end

local function check_rt(rt, fname)
  if getmetatable(rt) ~= core.runtime_mt then
    error(fname .. ": expected a nexus runtime, got " .. type(rt)
      .. " (call it as rt:" .. fname:match("[%w_]+$") .. "(...))", 3)
  end
end

-- (parks) runs fn as the root task; returns its results. Tasks still alive
-- stay parked in the runtime for a later block_on, until rt:close().
function rt_methods.block_on(rt, fn, ...)
  check_rt(rt, "rt:block_on")
  local prev = current
  current = rt
  return outcome(restore(prev, pcall(rt._block_on, rt, false, false, "rt:block_on", fn, ...)))
end

-- Same, but never parks: spins on non-blocking polls when idle.
function rt_methods.block_on_busy(rt, fn, ...)
  check_rt(rt, "rt:block_on_busy")
  local prev = current
  current = rt
  return outcome(restore(prev, pcall(rt._block_on, rt, false, true, "rt:block_on_busy", fn, ...)))
end

-- After block_on: drives the tasks still alive until none is left (true),
-- or secs pass (nil, "timeout"), or every one left waits on something
-- nothing can complete (nil, "deadlock"). A task error or a signal that
-- stops the runtime raises, as in block_on.
local c_quiesce = rt_methods._quiesce
local function quiesced(ok, ...)
  if ok == false then error((...), 0) end
  return ok, ...
end
function rt_methods.shutdown_quiesce(rt, secs)
  check_rt(rt, "rt:shutdown_quiesce")
  return quiesced(c_quiesce(rt, secs))
end

function rt_methods.world(rt)
  check_rt(rt, "rt:world")
  return worlds[rt]
end
function rt_methods.shutdown_handle(rt)
  if getmetatable(rt) ~= core.runtime_mt then
    error("rt:shutdown_handle: expected a nexus runtime, got " .. type(rt), 2)
  end
  return shutdown.handle_of(rt)
end

local function close_and_return(rt, ok, ...)
  rt:close()
  if not ok then error((...), 0) end
  return outcome(...)
end

-- Runs fn as the root task of a fresh runtime; returns when fn and every
-- task it spawned have finished, with fn's results.
function M.run(fn, ...)
  if api.in_task() ~= 0 then
    error("nexus.run: called from inside a running task (it would block the runtime)", 2)
  end
  local rt = M.new()
  local prev = current
  current = rt
  return close_and_return(rt, restore(prev, true, pcall(rt._block_on, rt, true, false, "nexus.run", fn, ...)))
end

---------------------------------------------------------------- the command

-- Under `nexus script.lua` the main chunk runs in a coroutine that is not
-- yet a task: a script that builds its own runtime behaves as under plain
-- luajit. The first time it suspends or spawns, it is adopted as the root
-- task of an implicit runtime that the command then drives to the end.
local pending, implicit
M._command = false     -- set by the nexus command: signal handlers default on

function M._set_pending(co) pending, implicit = co, nil end
function M._implicit() return implicit end

util.adopt = function()
  if pending == nil or corunning() ~= pending or api.in_task() ~= 0 then return false end
  local rt = M.new()
  implicit = { rt = rt, root = rt:_adopt() }
  pending = nil
  current = rt
  return true
end

-- The main chunk yielded with a bare coroutine.yield before anything
-- adopted it: it becomes the root task now, as if that yield had been
-- nexus.yield() (the command then drives it).
function M._adopt_yielded(co)
  local rt = M.new()
  implicit = { rt = rt, root = rt:_adopt(co) }
  pending = nil
  return implicit
end

-- The command drives the adopted main chunk through this (lua/nexus/cli.lua).
local adopted_drive = rt_methods._adopted_drive
function rt_methods._adopted_drive(rt, root, finished)
  current = rt
  return restore(nil, pcall(adopted_drive, rt, root, finished))
end

return M

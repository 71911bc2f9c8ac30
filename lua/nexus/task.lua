-- nexus.task: spawn, join, abort, current, yield.
local core = require "nexus.core"
local api = require "nexus.api"
local util = require "nexus.util"
local sel = require "nexus.select"

local cspawn, cjoin, cabort, WAIT = core.spawn, core.join, core.abort, core.WAIT
local cspawn_pooled, ctry_claim = core.spawn_pooled, core.try_claim
local yield = coroutine.yield
local may_suspend = core.may_suspend
local api_in_task, join_take = api.in_task, api.join_take
local getmetatable = getmetatable
local cur = core.cur          -- cur.tasks: the running runtime's tasks table
local no_task = util.no_task
local suspend = util.suspend

local M = {}

-- nexus.spawn(fn, ...) -> handle: the C function itself, no Lua frame
-- (without a runtime it calls util.no_task: adopts the main chunk under
-- the nexus command, or raises).
M.spawn = cspawn

-- A task from the runtime's pool (builder:task_pool): its coroutine and
-- record are reused, so this allocates nothing. Pooled tasks are detached:
-- nothing is returned, their outcome is not kept (an error follows
-- on_task_error like any error nobody waits for).
function M.spawn_pooled(fn, ...)
  if cspawn_pooled(fn, ...) then return end
  no_task("nexus.spawn_pooled", -1)
  cspawn_pooled(fn, ...)
end

-- A claim on a pool slot, or nil when the bounded pool is full.
function M.try_claim()
  local c = ctry_claim()
  if c == nil then
    no_task("nexus.try_claim", -1)
    c = ctry_claim()
  end
  return c or nil
end

local methods = core.task_mt.__index

-- core.join hands over a finished task's outcome in one call, or makes
-- the current task its waiter and returns WAIT: then yield and ask again.
local function join_slow(h, fname, pcall_style, a, ...)
  if a ~= WAIT then return a, ... end
  suspend(fname)
  return cjoin(h, pcall_style)
end

-- A task that ended with 0 or 1 result left it in its slot of the
-- runtime's tasks table; join_take (an FFI call, compiled with the rest of
-- the caller's loop) consumes the handle and gives the slot, or 0 when
-- core.join must decide (another runtime, an error, more results, not
-- finished). The metatable check makes sure the FFI gets a handle.
local HANDLE = core.task_mt

-- join_take's answer for a handle; 0 for any other value.
local function take(h)
  if getmetatable(h) ~= HANDLE then return 0 end
  return join_take(h)
end

-- The kept value at cur.tasks[k], taken out (the runtime holds it no more).
local function kept(k)
  local tasks = cur.tasks
  local v = tasks[k]
  tasks[k] = nil
  return v
end

-- (suspends) fn's results; re-raises fn's error. Consumes the handle.
function methods.join(h)
  local k = take(h)
  if k > 0 then return kept(k) end
  if k < 0 then return end
  return join_slow(h, "handle:join", false, cjoin(h, false))
end

-- (suspends) true, ... | false, err, traceback. Consumes the handle.
function methods.result(h)
  local k = take(h)
  if k > 0 then return true, kept(k) end
  if k < 0 then return true end
  return join_slow(h, "handle:result", true, cjoin(h, true))
end

-- true if the task had not finished; it never runs again. A task that
-- aborts itself ends here: it yields to the executor, which ends it. Inside
-- a coroutine of its own (coroutine.wrap in the task) that yield would go
-- to the task's code instead, so an error unwinds that coroutine (through
-- wrap, into the task, which the executor ends as aborted at its next
-- suspension or return). Where Lua cannot yield at all, at its next
-- suspension.
function methods.abort(h)
  local was, self = cabort(h)
  if was and self then
    local why = may_suspend()
    if why == 0 then yield() end   -- ends here
    if why == 2 then error("handle:abort: task " .. h:id() .. " aborted itself", 2) end
  end
  return was
end

local ccurrent, pcall = core.current, pcall

local JoinOp = sel.class("join")
local pack, unpack = util.pack, unpack

-- A finished task's outcome is taken here (a join that cannot complete
-- must fail inside the select, naming the op): one table per join.
local function join_done(op, ok, ...)
  if not ok then return nil, (...) end
  op.r = pack(...)
  return true
end

function JoinOp.poll(op)
  local h = op.h
  if h:is_finished() then return join_done(op, pcall(cjoin, h, true)) end
  if h == ccurrent() then return nil, "a task cannot join itself" end
  local ok, r = pcall(cjoin, h, true)      -- registers the op as h's joiner
  if not ok then return nil, r end
  if r == WAIT then return false end
  return nil, "the task ended while being joined"
end
function JoinOp.take(op)
  local r = op.r
  op.r = nil
  return unpack(r, 1, r.n)
end

-- An op for nexus.select: true, ... | false, err, traceback (as
-- h:result(), never raises); a losing join consumes nothing.
function methods.join_op(h)
  if getmetatable(h) ~= HANDLE then util.argerror("handle:join_op", "expected a task handle", 1) end
  return sel.op(JoinOp, { h = h }, "handle:join_op")
end

function M.current() return ccurrent() end

-- (suspends) let every other ready task run once.
function M.yield()
  if api_in_task() == 0 then no_task("nexus.yield", -1) end
  return suspend("nexus.yield", 3)   -- a tail call: see util.suspend
end

return M

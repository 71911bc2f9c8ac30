-- nexus.select: wait for the first of several operations (Go's select,
-- tokio's select! with biased;). The machinery is C (src/select.c): each
-- op carries a stand-in task record, its proxy, that the component (a
-- channel, a token, a timer...) registers as a waiter while the op is
-- polled; the first proxy woken readies the task, and the others are
-- withdrawn through their components' own cancel callbacks, so a losing
-- op has no effect.
--
-- An op is a table whose class has:
--   poll(op, ser)  with the op's proxy as the current task, try the
--                  operation and, when it cannot complete now, register
--                  its wait: true (completed; its results are kept for
--                  take) | false (registered) | nil, msg (a fault: select
--                  raises it). It must not raise, nor suspend.
--   take(op)       the completed operation's results (after the select
--                  closed: the task is itself again).
-- ser identifies one select call (a sleep op's deadline counts from the
-- start of the call, however many rounds it takes).
local ffi = require "ffi"
local core = require "nexus.core"
local api = require "nexus.api"
local util = require "nexus.util"

ffi.cdef [[
typedef struct nx_selop nx_selop;
typedef struct nx_sel_api {
  nx_selop *(*op_new)(void);
  void (*op_free)(nx_selop *);
  int (*begin)(int);
  int (*enter)(nx_selop *, uint32_t);
  void (*leave)(nx_selop *);
  int (*park)(void);
  void (*reset)(void);
  void (*finish)(void);
  int (*cpoll)(nx_selop *, uint32_t);
  int (*resume)(void);
  void (*bind)(nx_selop *, int32_t (*)(void *), void *);
  int32_t *(*resp)(nx_selop *);
} nx_sel_api;
]]

local C = ffi.cast("const nx_sel_api *", core.sel_api)
local c_op_new, c_op_free, c_begin, c_enter, c_leave = C.op_new, C.op_free, C.begin, C.enter, C.leave
local c_park, c_reset, c_finish = C.park, C.reset, C.finish
local c_cpoll, c_resume, c_bind, c_resp = C.cpoll, C.resume, C.bind, C.resp
local SEL_FAULT_MAX = -2000
local ffi_gc = ffi.gc
local type, error, setmetatable, select, tostring = type, error, setmetatable, select, tostring
local argerror, no_task, suspend = util.argerror, util.no_task, util.suspend
local check_secs, check_time = util.check_secs, util.check_time
local api_now, api_sleep_until = api.now, api.sleep_until

local E_NOTASK, E_NOMEM = -1, -2
local E_STATE, E_INUSE, E_TWICE, E_BUSY, COOP = -20, -21, -22, -23, -24

local M = {}

-- A new op of `class` (a table with poll, take and what), with `fields`.
function M.op(class, fields, fname)
  local px = c_op_new()
  if px == nil then error(fname .. ": out of memory", 3) end
  fields.px = ffi_gc(px, c_op_free)
  return setmetatable(fields, class)
end

-- A C op (src/select.h): polled by one call to fn(obj) in C, with no Lua
-- poll; op.res[0] holds the result for take, class.fault(code) names a
-- fault. fields must keep obj alive.
function M.cop(class, fields, fname, fn, obj)
  local op = M.op(class, fields, fname)
  c_bind(op.px, fn, obj)
  op.res = c_resp(op.px)
  op.cop = true
  return op
end

-- A class of ops: `what` names the wait (for errors and nexus.tasks()).
function M.class(what)
  local cls = { nx_op = true, what = what }
  cls.__index = cls
  cls.__tostring = function() return "nexus.op(" .. what .. ")" end
  return cls
end

-- take of a send op whose poll left op.ok: true | nil, "closed".
function M.take_sent(op)
  if op.ok then return true end
  return nil, "closed"
end

local serial = 0

-- A fault found while polling is kept here and raised by select itself
-- (at its caller's level), after the select is closed.
local fault

local function enter_fault(rc, i, op)
  if rc == E_INUSE then return "op " .. i .. " (" .. op.what .. ") is in use by another task's select" end
  if rc == E_TWICE then return "op " .. i .. " (" .. op.what .. ") is passed twice" end
  return "op " .. i .. ": the select is not open (status " .. tostring(rc) .. ")"
end

local function not_op(i, op)
  return "argument " .. i .. " is not an op (got " .. (type(op) == "table" and "a table" or type(op))
    .. "; ops are made by rx:recv_op(), tx:send_op(v), nexus.sleep_op(secs), ...)"
end

-- Polls op i: true when it completed, false when it registered its wait,
-- nil after a fault (in `fault`).
local function poll(i, op, ser)
  if type(op) ~= "table" or op.nx_op ~= true then
    fault = not_op(i, op)
    return nil
  end
  local px = op.px
  if op.cop then
    local rc = c_cpoll(px, i)
    if rc >= 0 then return rc == 1 end
    if rc > SEL_FAULT_MAX then
      fault = enter_fault(rc, i, op)
    else
      local _, msg = op.fault(rc - SEL_FAULT_MAX)
      fault = "op " .. i .. " (" .. op.what .. "): " .. tostring(msg)
    end
    return nil
  end
  local rc = c_enter(px, i)
  if rc ~= 0 then
    fault = enter_fault(rc, i, op)
    return nil
  end
  local done, msg = op:poll(ser)
  c_leave(px)
  if done == nil then fault = "op " .. i .. " (" .. op.what .. "): " .. tostring(msg) end
  return done
end

-- coop: 1 for select (one operation of the cooperative budget), 0 for
-- try_select (which never suspends).
local function begin(fname, coop)
  local rc = c_begin(coop)
  if rc == 0 then return end
  if rc == COOP then              -- the budget is spent: yield once first
    suspend(fname)
    rc = c_begin(coop)
    if rc == 0 then return end
  end
  if rc == E_BUSY then error(fname .. ": the task is already waiting", 3) end
  if rc == E_NOTASK and no_task(fname, rc) then
    rc = c_begin(coop)
    if rc == 0 then return end
  end
  no_task(fname, rc)
end

-- Raises the fault a poll found, the select closed.
local function raise(fname)
  c_finish()
  local msg = fault
  fault = nil
  error(fname .. ": " .. msg, 3)
end

-- One round: polls the ops in order until one completes; its index, or
-- 0 with every op registered. Unrolled for up to four ops: a short loop
-- inside the caller's hot loop would abort its trace.
-- A fault gives -1.
local function round(ser, n, a, b, c, d, ...)
  local done = poll(1, a, ser)
  if done then return 1 elseif done == nil then return -1 end
  if n == 1 then return 0 end
  done = poll(2, b, ser)
  if done then return 2 elseif done == nil then return -1 end
  if n == 2 then return 0 end
  done = poll(3, c, ser)
  if done then return 3 elseif done == nil then return -1 end
  if n == 3 then return 0 end
  done = poll(4, d, ser)
  if done then return 4 elseif done == nil then return -1 end
  for i = 5, n do
    done = poll(i, (select(i - 4, ...)), ser)
    if done then return i elseif done == nil then return -1 end
  end
  return 0
end

local function check_n(fname, n)
  if n == 0 then argerror(fname, "expected at least one op", 2) end
end

-- Every op registered: parks the task until one fires, then polls that
-- one again; its index, or 0 (a spurious wake: the ops were withdrawn).
-- No loop here: a loop entered inside the caller's hot loop would abort
-- its trace; rounds after the first are wait_more's.
-- The second result is true when C closed the select already.
local function wait_once(ser, ...)
  local k = c_park()
  if k == 0 then
    suspend("nexus.select")
    k = c_resume()                 -- a fired C op is polled, and wins, in C
    if k > 0 then return k, true end
    if k == 0 then return 0 end
    k = -k                         -- a Lua op fired: poll it here
  end
  local done = poll(k, (select(k, ...)), ser)
  if done then return k end
  if done == nil then return -1 end
  c_reset()
  return 0
end

local function wait_more(ser, n, ...)
  local k, closed = 0, false
  while k == 0 do
    k = round(ser, n, ...)
    if k == 0 then k, closed = wait_once(ser, ...) end
  end
  return k, closed
end

-- A fired op k that C did not complete (k < 0: a Lua op, or a C op's
-- fault) or none (0): poll it here, then go on with more rounds.
local function after_resume(k, ser, n, ...)
  if k < 0 then
    k = -k
    local done = poll(k, (select(k, ...)), ser)
    if done then return k end
    if done == nil then return -1 end
    c_reset()
  end
  return wait_more(ser, n, ...)
end

-- (suspends) i, results of the op that completed first. The common path
-- (every op registered, then a C op wins in c_resume) is inline, with
-- the suspension in this frame: the trace that resumes after the yield
-- then runs on to the caller (through a helper's frame it would stop at
-- the helper's return, and the rest would be interpreted).
function M.select(...)
  local n = select("#", ...)
  check_n("nexus.select", n)
  begin("nexus.select", 1)
  local ser = serial + 1
  serial = ser
  local k = round(ser, n, ...)
  if k == 0 then
    k = c_park()
    if k == 0 then
      suspend("nexus.select")
      k = c_resume()                 -- a fired C op is polled, and wins, in C
      if k > 0 then
        local op = select(k, ...)
        return k, op:take()
      end
      k = after_resume(k, ser, n, ...)
    else
      local done = poll(k, (select(k, ...)), ser)
      if not done then
        if done == nil then
          k = -1
        else
          c_reset()
          k = wait_more(ser, n, ...)
        end
      end
    end
  end
  if k < 0 then raise("nexus.select") end
  c_finish()
  local op = select(k, ...)
  return k, op:take()
end

-- Never suspends: i, results of the first op that can complete now | nil.
function M.try_select(...)
  local n = select("#", ...)
  check_n("nexus.try_select", n)
  begin("nexus.try_select", 0)
  local ser = serial + 1
  serial = ser
  local k = round(ser, n, ...)
  if k < 0 then raise("nexus.try_select") end
  c_finish()
  if k == 0 then return nil end
  local op = select(k, ...)
  return k, op:take()
end

---------------------------------------------------------------- time ops

local function sleep_register(op)
  if api_now() >= op.at then return true end
  local rc = api_sleep_until(op.at)
  if rc ~= 0 then return nil, rc == E_NOMEM and "out of memory" or "cannot wait here" end
  return false
end

local SleepOp = M.class("sleep")
function SleepOp.poll(op, ser)
  if op.ser ~= ser then
    op.ser = ser
    op.at = api_now() + op.secs
  end
  return sleep_register(op)
end
function SleepOp.take() return true end

local DeadlineOp = M.class("deadline")
DeadlineOp.poll = sleep_register
DeadlineOp.take = SleepOp.take

-- Completes `secs` after the start of each select it is passed to.
function M.sleep_op(secs)
  check_secs("nexus.sleep_op", secs)
  return M.op(SleepOp, { secs = secs, at = 0, ser = 0 }, "nexus.sleep_op")
end

-- Completes at `t` on the nexus.now() clock.
function M.deadline_op(t)
  check_time("nexus.deadline_op", t)
  return M.op(DeadlineOp, { at = t }, "nexus.deadline_op")
end

return M

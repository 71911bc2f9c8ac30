-- nexus.time: sleep, timeouts, intervals, backoff. Timers live in the C
-- runtime's heap; this file only checks arguments and yields.
local api = require "nexus.api"
local util = require "nexus.util"

local type, error, tostring, setmetatable, pairs, unpack, select =
  type, error, tostring, setmetatable, pairs, unpack, select
local floor, random, huge = math.floor, math.random, math.huge
local cocreate, coresume, costatus, yield = coroutine.create, coroutine.resume, coroutine.status, coroutine.yield
local dl_bind = require("nexus.core").dl_bind
local cannot_suspend = util.cannot_suspend
local api_now, api_sleep_until = api.now, api.sleep_until
local api_dl_push, api_dl_state, api_dl_pop, api_cancel_wait = api.dl_push, api.dl_state, api.dl_pop, api.cancel_wait
local check_secs, check_time, check_fn, no_task, pack, argerror =
  util.check_secs, util.check_time, util.check_fn, util.no_task, util.pack, util.argerror
local suspend = util.suspend

local M = {}

function M.now() return api_now() end
function M.event_time() return api.event_time() end

local function wait_until(fname, deadline)
  local rc = api_sleep_until(deadline)
  if rc ~= 0 then
    no_task(fname, rc)
    rc = api_sleep_until(deadline)
    if rc ~= 0 then no_task(fname, rc) end
  end
  return suspend(fname, 3)   -- a tail call: see util.suspend
end

-- (suspends) secs >= 0; sleep(0) lets the other ready tasks run first.
function M.sleep(secs)
  check_secs("nexus.sleep", secs)
  return wait_until("nexus.sleep", api_now() + secs)
end

function M.sleep_until(deadline)
  check_time("nexus.sleep_until", deadline)
  return wait_until("nexus.sleep_until", deadline)
end

-- Timeouts run fn in a coroutine of its own inside the current task, with
-- a deadline level registered in C. fn's waits are the task's waits. When
-- the deadline passes while fn waits, C cancels that wait and wakes the
-- task: fn's coroutine is dropped and never resumed (a dropped future).
-- When it passes while fn's wait had already completed, fn keeps that
-- result and is dropped at its next wait instead.
local DL_CANCELLED = 2

local function finish(lvl, co, r)
  api_dl_pop(lvl)
  if r[1] then return true, unpack(r, 2, r.n) end
  error(r[2], 0)
end

local function run_with_deadline(fname, deadline, fn, ...)
  local lvl = api_dl_push(deadline)
  if lvl < 0 then
    no_task(fname, lvl)
    lvl = api_dl_push(deadline)
    if lvl < 0 then no_task(fname, lvl) end
  end
  local co = cocreate(fn)
  dl_bind(lvl, co)
  local r = pack(coresume(co, ...))
  while costatus(co) ~= "dead" do
    -- fn wants to wait: its wait is registered on this task
    if api_dl_state(lvl) ~= 0 then
      api_cancel_wait()
      api_dl_pop(lvl)
      return nil, "timeout"
    end
    local why = cannot_suspend()
    if why then
      api_cancel_wait()
      api_dl_pop(lvl)
      error(fname .. ": " .. why, 2)
    end
    yield()
    if api_dl_state(lvl) == DL_CANCELLED then
      api_dl_pop(lvl)
      return nil, "timeout"
    end
    r = pack(coresume(co))
  end
  return finish(lvl, co, r)
end

-- (suspends) true, ...fn results | nil, "timeout"
function M.timeout(secs, fn, ...)
  check_secs("nexus.timeout", secs)
  check_fn("nexus.timeout", fn)
  return run_with_deadline("nexus.timeout", api_now() + secs, fn, ...)
end

function M.timeout_at(deadline, fn, ...)
  check_time("nexus.timeout_at", deadline)
  check_fn("nexus.timeout_at", fn)
  return run_with_deadline("nexus.timeout_at", deadline, fn, ...)
end

local function after(fname, deadline, fn, ...)
  if api.in_task() == 0 then no_task(fname, -1) end   -- before running fn
  local r = pack(fn(...))
  wait_until(fname, deadline)
  return unpack(r, 1, r.n)
end

-- (suspends) run fn, then sleep until deadline; fn's results.
function M.after(deadline, fn, ...)
  check_time("nexus.after", deadline)
  check_fn("nexus.after", fn)
  return after("nexus.after", deadline, fn, ...)
end

function M.after_delay(secs, fn, ...)
  check_secs("nexus.after_delay", secs)
  check_fn("nexus.after_delay", fn)
  return after("nexus.after_delay", api_now() + secs, fn, ...)
end

---------------------------------------------------------------- intervals

local Interval = {}
Interval.__index = Interval
Interval.__tostring = function(iv)
  return ("nexus.interval(period=%g, %s)"):format(iv.period, iv.missed)
end

-- A tick counts as missed, as in tokio, when it fires more than 5 ms late.
local MISSED_SLACK = 0.005
local behaviors = { burst = true, delay = true, skip = true }

local function check_period(fname, period)
  if type(period) ~= "number" or period ~= period then
    argerror(fname, "period must be a number, got " .. (period ~= period and "NaN" or type(period)), 2)
  elseif period <= 0 or period == huge then
    argerror(fname, "period must be positive and finite, got " .. tostring(period), 2)
  end
end

function M.interval_at(start, period)
  check_time("nexus.interval_at", start, "start")
  check_period("nexus.interval_at", period)
  return setmetatable({ period = period, nexttick = start, missed = "burst" }, Interval)
end

function M.interval(period)
  check_period("nexus.interval", period)
  return setmetatable({ period = period, nexttick = api_now(), missed = "burst" }, Interval)
end

-- (suspends) returns the scheduled time of this tick.
function Interval:tick()
  local due = self.nexttick
  wait_until("interval:tick", due)
  local now, period = api_now(), self.period
  local nxt = due + period
  if now > due + MISSED_SLACK then
    local b = self.missed
    if b == "delay" then
      nxt = now + period
    elseif b == "skip" then
      nxt = due + period * (floor((now - due) / period) + 1)
    end
  end
  self.nexttick = nxt
  return due
end

function Interval:set_missed_tick_behavior(b)
  if not behaviors[b] then
    argerror("interval:set_missed_tick_behavior",
      "unknown behavior " .. tostring(b) .. " (expected \"burst\", \"delay\" or \"skip\")")
  end
  self.missed = b
  return self
end

function Interval:reset() self.nexttick = api_now() + self.period end
function Interval:period_secs() return self.period end

---------------------------------------------------------------- backoff

local Backoff = {}
Backoff.__index = Backoff
local backoff_opts = { initial = "number", max_delay = "number", max_retries = "number",
                       deadline = "number", jitter = "number" }

function M.backoff(opts)
  opts = opts or {}
  if type(opts) ~= "table" then argerror("nexus.backoff", "options must be a table, got " .. type(opts)) end
  for k, v in pairs(opts) do
    if not backoff_opts[k] then argerror("nexus.backoff", "unknown option '" .. tostring(k) .. "'") end
    if type(v) ~= "number" or v ~= v then
      argerror("nexus.backoff", "option '" .. k .. "' must be a number, got " .. (v ~= v and "NaN" or type(v)))
    end
  end
  local initial, max_delay = opts.initial or 0.25, opts.max_delay or 30
  local jitter = opts.jitter or 0
  if initial <= 0 then argerror("nexus.backoff", "initial must be positive, got " .. initial) end
  if max_delay < initial then argerror("nexus.backoff", "max_delay must be >= initial") end
  if jitter < 0 or jitter > 1 then argerror("nexus.backoff", "jitter must be within [0, 1], got " .. jitter) end
  local mr = opts.max_retries
  if mr and (mr < 0 or mr ~= floor(mr)) then
    argerror("nexus.backoff", "max_retries must be a non-negative integer, got " .. mr)
  end
  return setmetatable({ initial = initial, max_delay = max_delay, max_retries = mr,
                        deadline = opts.deadline, jitter = jitter, delay = initial, n = 0 }, Backoff)
end

-- (suspends) sleeps the current delay (cut short at the deadline), then
-- doubles it up to max_delay; nil, "exhausted", err once retries or the
-- deadline have run out.
function Backoff:wait(err)
  if (self.max_retries and self.n >= self.max_retries)
     or (self.deadline and api_now() >= self.deadline) then
    return nil, "exhausted", err
  end
  local d = self.delay
  if self.jitter > 0 then d = d * (1 - self.jitter * random()) end
  local deadline = api_now() + d
  if self.deadline and deadline > self.deadline then deadline = self.deadline end
  wait_until("backoff:wait", deadline)
  self.n = self.n + 1
  local nd = self.delay * 2
  self.delay = nd < self.max_delay and nd or self.max_delay
  return true
end

function Backoff:reset() self.delay, self.n = self.initial, 0 end
function Backoff:retries() return self.n end
function Backoff:current_delay() return self.delay end

return M

-- nexus.sync: semaphore, oneshot, watch, broadcast, event. Every field of
-- this table becomes a field of nexus.
--
-- As with the channels, values are Lua values kept in Lua tables here
-- (so they keep their identity); the C records (src/sync.c) keep the
-- counts, versions and sequence numbers, and the waiting tasks. A waiting
-- call is one FFI call, plus a yield when the C side registered a wait.
local ffi = require "ffi"
local core = require "nexus.core"
local util = require "nexus.util"
local sel = require "nexus.select"

ffi.cdef [[
typedef struct nx_sem { double total; uint8_t closed; } nx_sem;
typedef struct nx_once { uint8_t state, tx_closed, rx_closed; } nx_once;
typedef struct nx_watch { double version; uint8_t closed; } nx_watch;
typedef struct nx_bcast { uint32_t cap, subs; uint8_t closed; uint32_t *rem; } nx_bcast;
typedef struct nx_bsub { double missed; uint8_t closed; } nx_bsub;
typedef struct nx_event { uint8_t set; uint32_t gen; } nx_event;
typedef struct nx_sync_api {
  nx_sem *(*sem_new)(double);
  void (*sem_free)(nx_sem *);
  int (*sem_acquire)(nx_sem *, double, int);
  int (*sem_release)(nx_sem *, double);
  double (*sem_available)(nx_sem *);
  double (*sem_held)(nx_sem *);
  void (*sem_add)(nx_sem *, double);
  void (*sem_close)(nx_sem *);
  nx_once *(*once_new)(void);
  int (*once_send)(nx_once *);
  int (*once_recv)(nx_once *, int);
  void (*once_tx_close)(nx_once *);
  void (*once_rx_close)(nx_once *);
  void (*once_tx_free)(nx_once *);
  void (*once_rx_free)(nx_once *);
  nx_watch *(*watch_new)(void);
  void (*watch_free)(nx_watch *);
  void (*watch_set)(nx_watch *);
  int (*watch_changed)(nx_watch *, double, int);
  void (*watch_close)(nx_watch *);
  nx_bcast *(*bc_new)(uint32_t);
  void (*bc_free)(nx_bcast *);
  int (*bc_send)(nx_bcast *);
  void (*bc_close)(nx_bcast *);
  nx_bsub *(*sub_new)(nx_bcast *);
  void (*sub_free)(nx_bsub *);
  void (*sub_close)(nx_bsub *);
  int (*sub_recv)(nx_bsub *, int);
  double (*sub_len)(nx_bsub *);
  nx_event *(*ev_new)(void);
  void (*ev_free)(nx_event *);
  void (*ev_set)(nx_event *);
  void (*ev_clear)(nx_event *);
  int (*ev_wait)(nx_event *, uint32_t, int);
} nx_sync_api;
]]

local C = ffi.cast("const nx_sync_api *", core.sync_api)
local c_sem_new, c_sem_free, c_acquire, c_release = C.sem_new, C.sem_free, C.sem_acquire, C.sem_release
local c_available, c_held, c_sem_add, c_sem_close = C.sem_available, C.sem_held, C.sem_add, C.sem_close
local c_once_new, c_once_send, c_once_recv = C.once_new, C.once_send, C.once_recv
local c_once_tx_close, c_once_rx_close, c_once_tx_free, c_once_rx_free =
  C.once_tx_close, C.once_rx_close, C.once_tx_free, C.once_rx_free
local c_watch_new, c_watch_free, c_watch_set, c_changed, c_watch_close =
  C.watch_new, C.watch_free, C.watch_set, C.watch_changed, C.watch_close
local c_bc_new, c_bc_free, c_bc_send, c_bc_close = C.bc_new, C.bc_free, C.bc_send, C.bc_close
local c_sub_new, c_sub_free, c_sub_close, c_sub_recv, c_sub_len =
  C.sub_new, C.sub_free, C.sub_close, C.sub_recv, C.sub_len
local c_ev_new, c_ev_free, c_ev_set, c_ev_clear, c_ev_wait = C.ev_new, C.ev_free, C.ev_set, C.ev_clear, C.ev_wait

local ffi_gc = ffi.gc
local type, error, setmetatable, getmetatable, tostring, pcall, floor =
  type, error, setmetatable, getmetatable, tostring, pcall, math.floor
local argerror, no_task, check_fn, suspend = util.argerror, util.no_task, util.check_fn, util.suspend

-- Statuses of src/sync.h and rt.h.
local E_NOTASK, E_NOMEM = -1, -2
local CLOSED, WAIT, BUSY, OTHER_RT, NONE, TOOBIG, NOTHELD, LAGGED = -5, -6, -7, -8, -9, -10, -11, -12

local M = {}

-- An integral count as "12", not "1.2e+01".
local function int(n) return ("%.0f"):format(n) end

-- The raise for a status no caller expects; level 3 is the caller of the
-- public function that got it (fail is called from that function).
local function fail(fname, rc, what)
  if rc == E_NOTASK then return no_task(fname, rc) end
  if rc == BUSY then error(fname .. ": another task is already receiving on this " .. what, 3) end
  if rc == OTHER_RT then error(fname .. ": the " .. what .. " is in use by another runtime", 3) end
  if rc == E_NOMEM then error(fname .. ": out of memory", 3) end
  error(fname .. ": unexpected status " .. tostring(rc), 3)
end

-- The same, as a select op's fault (poll must not raise).
local function op_fault(rc, what)
  if rc == BUSY then return nil, "another task is already receiving on this " .. what end
  if rc == OTHER_RT then return nil, "the " .. what .. " is in use by another runtime" end
  if rc == E_NOMEM then return nil, "out of memory" end
  if rc == E_NOTASK then return nil, "not inside a nexus task" end
  return nil, "unexpected status " .. tostring(rc)
end

local function bad_self(fname, what, v)
  argerror(fname, "expected " .. what .. ", got " .. type(v), 2)
end

-- A count of permits: a non-negative integer (exact in a double).
local function check_permits(fname, n, what)
  if type(n) ~= "number" or n ~= floor(n) or n < 0 or n > 2 ^ 53 then
    argerror(fname, (what or "permits") .. " must be a non-negative integer, got "
      .. (type(n) == "number" and tostring(n) or type(n)), 2)
  end
end

---------------------------------------------------------------- semaphore

local Sem = {}
Sem.__index = Sem

-- nexus.semaphore(permits)
function M.semaphore(permits)
  check_permits("nexus.semaphore", permits)
  local p = c_sem_new(permits)
  if p == nil then error("nexus.semaphore: out of memory", 2) end
  return setmetatable({ p = ffi_gc(p, c_sem_free) }, Sem)
end

local function toobig(fname, n, p)
  error(fname .. ": " .. int(n) .. " permits asked of a semaphore of " .. int(p.total), 3)
end

-- The waiting calls below make one wait inline (the common case: wait,
-- then complete) and leave any further round to a *_more function: a
-- loop entered inside the caller's hot loop would abort its trace.

local function acquire_more(p, n, fname, rc)
  while rc ~= 0 do
    if rc == WAIT then
      suspend(fname)
    elseif rc == CLOSED then
      return nil, "closed"
    elseif rc == TOOBIG then
      toobig(fname, n, p)
    else
      fail(fname, rc, "semaphore")
    end
    rc = c_acquire(p, n, 1)
  end
  return true
end

-- (suspends) true | nil, "closed". First in, first out.
local function acquire(self, n, fname)
  local p = self.p
  local rc = c_acquire(p, n, 1)
  if rc == 0 then return true end
  if rc == WAIT then
    suspend(fname)
    rc = c_acquire(p, n, 1)
    if rc == 0 then return true end
  end
  return acquire_more(p, n, fname, rc)
end

function Sem:acquire(n)
  if getmetatable(self) ~= Sem then bad_self("sem:acquire", "a semaphore", self) end
  if n == nil then n = 1 else check_permits("sem:acquire", n) end
  return acquire(self, n, "sem:acquire")
end

-- true | false; never overtakes a waiting acquire.
function Sem:try_acquire(n)
  if getmetatable(self) ~= Sem then bad_self("sem:try_acquire", "a semaphore", self) end
  if n == nil then n = 1 else check_permits("sem:try_acquire", n) end
  local p = self.p
  local rc = c_acquire(p, n, 0)
  if rc == 0 then return true end
  if rc == NONE or rc == CLOSED then return false end
  if rc == TOOBIG then toobig("sem:try_acquire", n, p) end
  if rc == E_NOTASK and no_task("sem:try_acquire", rc) then return Sem.try_acquire(self, n) end
  fail("sem:try_acquire", rc, "semaphore")
end

local function release(self, n, fname)
  local p = self.p
  local rc = c_release(p, n)
  if rc == 0 then return end
  if rc == E_NOTASK and no_task(fname, rc) then rc = c_release(p, n) end
  if rc == NOTHELD then
    error(fname .. ": " .. int(n) .. " permits released by a task that holds " .. int(c_held(p)), 3)
  end
  if rc ~= 0 then fail(fname, rc, "semaphore") end
end

-- Gives back n permits (default 1) the running task holds.
function Sem:release(n)
  if getmetatable(self) ~= Sem then bad_self("sem:release", "a semaphore", self) end
  if n == nil then n = 1 else check_permits("sem:release", n) end
  return release(self, n, "sem:release")
end

-- Free permits (those granted to a waiter that has not run yet are not).
function Sem:available()
  if getmetatable(self) ~= Sem then bad_self("sem:available", "a semaphore", self) end
  return c_available(self.p)
end

-- Permits the running task holds.
function Sem:held()
  if getmetatable(self) ~= Sem then bad_self("sem:held", "a semaphore", self) end
  local n = c_held(self.p)
  if n < 0 then
    no_task("sem:held", E_NOTASK)
    n = c_held(self.p)
  end
  return n
end

-- Adds n new permits (the total grows); no task holds them.
function Sem:add_permits(n)
  if getmetatable(self) ~= Sem then bad_self("sem:add_permits", "a semaphore", self) end
  check_permits("sem:add_permits", n)
  if n + self.p.total > 2 ^ 53 then argerror("sem:add_permits", "the total would exceed 2^53") end
  c_sem_add(self.p, n)
end

-- Waiters get nil, "closed", and so does every acquire after.
function Sem:close()
  if getmetatable(self) ~= Sem then bad_self("sem:close", "a semaphore", self) end
  c_sem_close(self.p)
end

function Sem:is_closed() return self.p.closed ~= 0 end
function Sem:total() return self.p.total end

local function with_done(self, ok, ...)
  release(self, 1, "sem:with")
  if ok then return ... end
  error((...), 0)
end

-- Acquires 1 permit, runs fn(...), releases it, even when fn raises
-- (the error is raised again); returns fn's results, or nil, "closed"
-- (fn not run). If the task is aborted inside fn, its end gives the
-- permit back.
function Sem:with(fn, ...)
  if getmetatable(self) ~= Sem then bad_self("sem:with", "a semaphore", self) end
  check_fn("sem:with", fn)
  local ok, err = acquire(self, 1, "sem:with")
  if not ok then return nil, err end
  return with_done(self, pcall(fn, ...))
end

function Sem:__tostring()
  local p = self.p
  return ("nexus.semaphore(%s/%s available%s)"):format(int(c_available(p)), int(p.total),
    p.closed ~= 0 and ", closed" or "")
end

local AcquireOp = sel.class("semaphore acquire")
function AcquireOp.poll(op)
  local rc = c_acquire(op.p, op.n, 1)
  if rc == 0 or rc == CLOSED then
    op.rc = rc
    return true
  end
  if rc == WAIT then return false end
  if rc == TOOBIG then return nil, int(op.n) .. " permits asked of a semaphore of " .. int(op.p.total) end
  return op_fault(rc, "semaphore")
end
function AcquireOp.take(op)
  if op.rc == 0 then return true end
  return nil, "closed"
end

-- An op for nexus.select: true | nil, "closed"; a losing acquire holds
-- nothing (permits granted to it pass on to the next waiter).
function Sem:acquire_op(n)
  if getmetatable(self) ~= Sem then bad_self("sem:acquire_op", "a semaphore", self) end
  if n == nil then n = 1 else check_permits("sem:acquire_op", n) end
  if n > self.p.total then toobig("sem:acquire_op", n, self.p) end
  return sel.op(AcquireOp, { sem = self, p = self.p, n = n, rc = 0 }, "sem:acquire_op")
end

---------------------------------------------------------------- oneshot

local OTx = {}
OTx.__index = OTx
local ORx = {}
ORx.__index = ORx

-- tx, rx = nexus.oneshot(): one value, sent once.
function M.oneshot()
  local o = c_once_new()
  if o == nil then error("nexus.oneshot: out of memory", 2) end
  local box = {}   -- box.v: the value sent, until received
  -- A receiver collected drops a value that was sent and never received.
  local function rx_gc(p)
    box.v = nil
    c_once_rx_free(p)
  end
  local tx = setmetatable({ p = ffi_gc(o, c_once_tx_free), box = box }, OTx)
  -- o + 0: a cdata of its own for rx's finalizer (ffi.cast to the same
  -- type would hand back o itself, and ffi.gc replace tx's finalizer).
  local rx = setmetatable({ p = ffi_gc(o + 0, rx_gc), box = box }, ORx)
  return tx, rx
end

-- Never waits: true | nil, "closed" (the receiver is closed or gone). A
-- second send raises.
function OTx:send(v)
  if getmetatable(self) ~= OTx then bad_self("tx:send", "a oneshot sender", self) end
  if v == nil then argerror("tx:send", "cannot send nil") end
  local p = self.p
  if p.state ~= 0 then argerror("tx:send", "this oneshot has sent its value already") end
  if p.tx_closed ~= 0 then argerror("tx:send", "this oneshot sender is closed") end
  if c_once_send(p) ~= 0 then return nil, "closed" end
  self.box.v = v
  return true
end

-- Sends nothing: the receiver gets nil, "closed".
function OTx:close() c_once_tx_close(self.p) end
-- True once the receiver is closed or gone (a send would fail).
function OTx:is_closed() return self.p.rx_closed ~= 0 end
function OTx:__tostring()
  local p = self.p
  return "nexus.oneshot.tx(" .. (p.state ~= 0 and "sent" or p.rx_closed ~= 0 and "closed" or "empty") .. ")"
end

local function once_take(self)
  local box = self.box
  local v = box.v
  box.v = nil
  return v
end

-- (suspends) v | nil, "closed" (the sender closed or was collected without
-- sending, or the value was received already).
local function once_recv_more(self, p, rc)
  while rc ~= 0 do
    if rc == WAIT then
      suspend("rx:recv")
    elseif rc == CLOSED then
      return nil, "closed"
    else
      fail("rx:recv", rc, "oneshot")
    end
    rc = c_once_recv(p, 1)
  end
  return once_take(self)
end

function ORx:recv()
  if getmetatable(self) ~= ORx then bad_self("rx:recv", "a oneshot receiver", self) end
  local p = self.p
  local rc = c_once_recv(p, 1)
  if rc == 0 then return once_take(self) end
  return once_recv_more(self, p, rc)
end

-- v | nil, "empty" | nil, "closed"
function ORx:try_recv()
  if getmetatable(self) ~= ORx then bad_self("rx:try_recv", "a oneshot receiver", self) end
  local rc = c_once_recv(self.p, 0)
  if rc == 0 then return once_take(self) end
  return nil, rc == NONE and "empty" or "closed"
end

-- The sender's send then returns nil, "closed"; a value sent is dropped.
function ORx:close()
  self.box.v = nil
  c_once_rx_close(self.p)
end

-- True when nothing more can be received.
function ORx:is_closed()
  local p = self.p
  return p.rx_closed ~= 0 or p.state == 2 or (p.state == 0 and p.tx_closed ~= 0)
end
function ORx:__tostring()
  return "nexus.oneshot.rx(" .. (self.p.state == 1 and "ready" or self:is_closed() and "closed" or "empty") .. ")"
end

local OnceRecvOp = sel.class("oneshot recv")
function OnceRecvOp.poll(op)
  local rc = c_once_recv(op.p, 1)
  if rc == 0 or rc == CLOSED then
    op.rc = rc
    return true
  end
  if rc == WAIT then return false end
  return op_fault(rc, "oneshot")
end
function OnceRecvOp.take(op)
  if op.rc ~= 0 then return nil, "closed" end
  return once_take(op.rx)
end

-- An op for nexus.select: v | nil, "closed"; a losing recv takes nothing.
function ORx:recv_op()
  if getmetatable(self) ~= ORx then bad_self("rx:recv_op", "a oneshot receiver", self) end
  return sel.op(OnceRecvOp, { rx = self, p = self.p, rc = 0 }, "rx:recv_op")
end

---------------------------------------------------------------- watch

local W = {}
W.__index = W

local function check_seen(fname, seen, p)
  if seen == nil then return p.version end
  if type(seen) ~= "number" or seen ~= seen then
    argerror(fname, "seen version must be a number, got " .. (type(seen) == "number" and "NaN" or type(seen)), 2)
  end
  return seen
end

-- w = nexus.watch(initial): the latest value and its version (0 for the
-- initial one), any number of watchers.
function M.watch(initial)
  if initial == nil then argerror("nexus.watch", "the initial value cannot be nil") end
  local p = c_watch_new()
  if p == nil then error("nexus.watch: out of memory", 2) end
  return setmetatable({ p = ffi_gc(p, c_watch_free), v = initial }, W)
end

-- Stores v as the latest value and wakes every watcher; returns the new
-- version.
function W:set(v)
  if getmetatable(self) ~= W then bad_self("w:set", "a watch", self) end
  if v == nil then argerror("w:set", "cannot set nil") end
  local p = self.p
  if p.closed ~= 0 then argerror("w:set", "the watch is closed") end
  self.v = v
  c_watch_set(p)
  return p.version
end

-- v, version
function W:get()
  if getmetatable(self) ~= W then bad_self("w:get", "a watch", self) end
  return self.v, self.p.version
end

local function changed_more(self, p, seen, rc)
  while rc ~= 0 do
    if rc == WAIT then
      suspend("w:changed")
    elseif rc == CLOSED then
      return nil, "closed"
    else
      fail("w:changed", rc, "watch")
    end
    rc = c_changed(p, seen, 1)
  end
  return self.v, p.version
end

-- (suspends) until the version is newer than seen (default: the version
-- now): v, version | nil, "closed" (closed, and nothing newer).
function W:changed(seen)
  if getmetatable(self) ~= W then bad_self("w:changed", "a watch", self) end
  local p = self.p
  seen = check_seen("w:changed", seen, p)
  local rc = c_changed(p, seen, 1)
  if rc == WAIT then
    suspend("w:changed")
    rc = c_changed(p, seen, 1)
  end
  if rc == 0 then return self.v, p.version end
  return changed_more(self, p, seen, rc)
end

-- Watchers waiting get nil, "closed" (after any newer value); set raises.
function W:close() c_watch_close(self.p) end
function W:is_closed() return self.p.closed ~= 0 end
function W:version() return self.p.version end
function W:__tostring()
  return "nexus.watch(version " .. int(self.p.version) .. (self.p.closed ~= 0 and ", closed" or "") .. ")"
end

local ChangedOp = sel.class("watch changed")
function ChangedOp.poll(op)
  local rc = c_changed(op.p, op.seen, 1)
  if rc == 0 or rc == CLOSED then
    op.rc = rc
    return true
  end
  if rc == WAIT then return false end
  return op_fault(rc, "watch")
end
-- A winning op remembers the version it returned: the next select with it
-- waits for a newer one.
function ChangedOp.take(op)
  if op.rc ~= 0 then return nil, "closed" end
  local version = op.p.version
  op.seen = version
  return op.w.v, version
end
-- Sets the version the op waits to see exceeded; returns the op.
function ChangedOp.set_seen(op, seen)
  op.seen = check_seen("op:set_seen", seen, op.p)
  return op
end

-- An op for nexus.select: v, version once newer than seen (default: the
-- version now); then seen follows what it returned.
function W:changed_op(seen)
  if getmetatable(self) ~= W then bad_self("w:changed_op", "a watch", self) end
  local p = self.p
  seen = check_seen("w:changed_op", seen, p)
  return sel.op(ChangedOp, { w = self, p = p, seen = seen, rc = 0 }, "w:changed_op")
end

---------------------------------------------------------------- broadcast

local Bc = {}
Bc.__index = Bc
local Sub = {}
Sub.__index = Sub

-- bc = nexus.broadcast(capacity): every subscriber sees every value sent
-- after it subscribed; the last `capacity` values are kept for the slow.
function M.broadcast(capacity)
  if type(capacity) ~= "number" or capacity ~= floor(capacity) or capacity < 1 or capacity > 2 ^ 30 then
    argerror("nexus.broadcast", "capacity must be a positive integer, got "
      .. (type(capacity) == "number" and tostring(capacity) or type(capacity)))
  end
  local p = c_bc_new(capacity)
  if p == nil then error("nexus.broadcast: out of memory", 2) end
  return setmetatable({ p = ffi_gc(p, c_bc_free), ring = {}, cap = capacity }, Bc)
end

-- Never waits: the number of subscribers that will see v | nil, "closed".
function Bc:send(v)
  if getmetatable(self) ~= Bc then bad_self("bc:send", "a broadcast", self) end
  if v == nil then argerror("bc:send", "cannot send nil") end
  local p = self.p
  local i = c_bc_send(p)
  if i >= 0 then
    self.ring[i + 1] = v
    return p.subs
  end
  if i == NONE then return 0 end
  return nil, "closed"
end

-- Clears the ring slots no subscriber will read (after one left).
local function clear_unread(bc, ring)
  local rem = bc.rem
  for i = 0, bc.cap - 1 do
    if rem[i] == 0 then ring[i + 1] = nil end
  end
end

-- A subscriber: sees the values sent from now on.
function Bc:subscribe()
  if getmetatable(self) ~= Bc then bad_self("bc:subscribe", "a broadcast", self) end
  local s = c_sub_new(self.p)
  if s == nil then error("bc:subscribe: out of memory", 2) end
  local bc, ring = self.p + 0, self.ring   -- a cdata without bc's finalizer: the sub holds bc
  local function gc(sp)
    c_sub_close(sp)
    clear_unread(bc, ring)
    c_sub_free(sp)
  end
  return setmetatable({ s = ffi_gc(s, gc), bc = bc, ring = ring, cap = self.cap }, Sub)
end

-- Subscribers drain what is left, then get nil, "closed"; sends get it.
function Bc:close() c_bc_close(self.p) end
function Bc:is_closed() return self.p.closed ~= 0 end
function Bc:subscribers() return self.p.subs end
function Bc:capacity() return self.cap end
function Bc:__tostring()
  local p = self.p
  return ("nexus.broadcast(%d subscribers, capacity %d%s)"):format(p.subs, p.cap,
    p.closed ~= 0 and ", closed" or "")
end

local function sub_take(self, r)
  local ring, cap = self.ring, self.cap
  if r >= cap then         -- the last reader of this value: drop it
    r = r - cap + 1
    local v = ring[r]
    ring[r] = nil
    return v
  end
  return ring[r + 1]
end

local function sub_recv_more(self, s, r)
  while r < 0 do
    if r == WAIT then
      suspend("sub:recv")
    elseif r == LAGGED then
      return nil, "lagged", s.missed
    elseif r == CLOSED then
      return nil, "closed"
    else
      fail("sub:recv", r, "subscriber")
    end
    r = c_sub_recv(s, 1)
  end
  return sub_take(self, r)
end

-- (suspends) v | nil, "lagged", missed | nil, "closed"
function Sub:recv()
  if getmetatable(self) ~= Sub then bad_self("sub:recv", "a broadcast subscriber", self) end
  local s = self.s
  local r = c_sub_recv(s, 1)
  if r == WAIT then
    suspend("sub:recv")
    r = c_sub_recv(s, 1)
  end
  if r >= 0 then return sub_take(self, r) end
  return sub_recv_more(self, s, r)
end

-- v | nil, "empty" | nil, "lagged", missed | nil, "closed"
function Sub:try_recv()
  if getmetatable(self) ~= Sub then bad_self("sub:try_recv", "a broadcast subscriber", self) end
  local s = self.s
  local r = c_sub_recv(s, 0)
  if r >= 0 then return sub_take(self, r) end
  if r == NONE then return nil, "empty" end
  if r == LAGGED then return nil, "lagged", s.missed end
  return nil, "closed"
end

-- Unsubscribes: values it had yet to read wait for it no more.
function Sub:close()
  if getmetatable(self) ~= Sub then bad_self("sub:close", "a broadcast subscriber", self) end
  if self.s.closed ~= 0 then return end
  c_sub_close(self.s)
  clear_unread(self.bc, self.ring)
end

function Sub:len() return c_sub_len(self.s) end
function Sub:is_closed() return self.s.closed ~= 0 end
function Sub:__tostring()
  return ("nexus.broadcast.sub(%d pending%s)"):format(c_sub_len(self.s), self.s.closed ~= 0 and ", closed" or "")
end

local SubRecvOp = sel.class("broadcast recv")
function SubRecvOp.poll(op)
  local r = c_sub_recv(op.s, 1)
  if r >= 0 or r == CLOSED or r == LAGGED then
    op.r = r
    return true
  end
  if r == WAIT then return false end
  return op_fault(r, "subscriber")
end
function SubRecvOp.take(op)
  local r = op.r
  if r >= 0 then return sub_take(op.sub, r) end
  if r == LAGGED then return nil, "lagged", op.s.missed end
  return nil, "closed"
end

-- An op for nexus.select: as sub:recv(); a losing recv takes nothing.
function Sub:recv_op()
  if getmetatable(self) ~= Sub then bad_self("sub:recv_op", "a broadcast subscriber", self) end
  return sel.op(SubRecvOp, { sub = self, s = self.s, r = 0 }, "sub:recv_op")
end

---------------------------------------------------------------- event

local Ev = {}
Ev.__index = Ev

-- ev = nexus.event(): a flag tasks wait for, initially clear.
function M.event()
  local p = c_ev_new()
  if p == nil then error("nexus.event: out of memory", 2) end
  return setmetatable({ p = ffi_gc(p, c_ev_free) }, Ev)
end

-- Sets the flag and releases every waiter (even if cleared before they run).
function Ev:set()
  if getmetatable(self) ~= Ev then bad_self("ev:set", "an event", self) end
  c_ev_set(self.p)
end

function Ev:clear()
  if getmetatable(self) ~= Ev then bad_self("ev:clear", "an event", self) end
  c_ev_clear(self.p)
end

function Ev:is_set()
  if getmetatable(self) ~= Ev then bad_self("ev:is_set", "an event", self) end
  return self.p.set ~= 0
end

local function ev_wait_more(p, gen, rc)
  while rc ~= 0 do
    if rc == WAIT then
      suspend("ev:wait")
    else
      fail("ev:wait", rc, "event")
    end
    rc = c_ev_wait(p, gen, 1)
  end
  return true
end

-- (suspends) until set; true at once if it is.
function Ev:wait()
  if getmetatable(self) ~= Ev then bad_self("ev:wait", "an event", self) end
  local p = self.p
  local gen = p.gen
  local rc = c_ev_wait(p, gen, 1)
  if rc == WAIT then
    suspend("ev:wait")
    rc = c_ev_wait(p, gen, 1)
  end
  if rc == 0 then return true end
  return ev_wait_more(p, gen, rc)
end

function Ev:__tostring() return "nexus.event(" .. (self.p.set ~= 0 and "set" or "clear") .. ")" end

local EvWaitOp = sel.class("event wait")
function EvWaitOp.poll(op, ser)
  local p = op.p
  if op.ser ~= ser then      -- a new select: a set from now on counts
    op.ser = ser
    op.gen = p.gen
  end
  local rc = c_ev_wait(p, op.gen, 1)
  if rc == 0 then return true end
  if rc == WAIT then return false end
  return op_fault(rc, "event")
end
function EvWaitOp.take() return true end

-- An op for nexus.select: true once the event is set.
function Ev:wait_op()
  if getmetatable(self) ~= Ev then bad_self("ev:wait_op", "an event", self) end
  return sel.op(EvWaitOp, { ev = self, p = self.p, gen = 0, ser = 0 }, "ev:wait_op")
end

return M

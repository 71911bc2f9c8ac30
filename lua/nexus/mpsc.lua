-- nexus.mpsc: the cross-thread channel (nexus.channel.mpsc). The queue,
-- its lock and the waking are C (src/mpsc.c); values are copied by C
-- encoders in the sender's thread and decoded in the receiver's. This file
-- checks arguments and yields when the C entry point registered a wait.
--
-- A sender used on the receiver's thread (inside its runtime's tasks)
-- suspends while the channel is full; on any other thread (a sender made
-- with mpsc.sender(handle) in another Lua state) it blocks that thread.
local ffi = require "ffi"
local core = require "nexus.core"
local util = require "nexus.util"
local sel = require "nexus.select"

ffi.cdef [[
typedef struct nexus_mpsc nexus_mpsc;
typedef struct nexus_mpsc_api {
  int (*send_bytes)(nexus_mpsc *h, const void *p, size_t n, int flags);
  int (*send_number)(nexus_mpsc *h, double v, int flags);
  int (*send_boolean)(nexus_mpsc *h, int v, int flags);
  nexus_mpsc *(*sender_clone)(nexus_mpsc *h);
  void (*sender_close)(nexus_mpsc *h);
} nexus_mpsc_api;
]]

local type, error, tostring, tonumber, pcall = type, error, tostring, tonumber, pcall
local getmetatable = getmetatable
local floor = math.floor
local cast = ffi.cast
local c_send, c_recv, c_info = core.mpsc_send, core.mpsc_recv, core.mpsc_info
local no_task = util.no_task
local suspend = util.suspend

local OK, AGAIN, NOTASK = 0, 1, -1
local EAGAIN, EPIPE = -11, -32
local RXBUSY, OTHERRT = -102, -103
local MAX_CAPACITY = 2 ^ 24

local M = {}

-- The C functions of nexus.h as a table (for ffi.load'ed C code).
M.c_api = cast("const nexus_mpsc_api *", core.mpsc_api)

local function raise(fname, what, level)
  error(fname .. ": " .. what, level + 1)
end

local function fail(fname, rc, level)
  if rc == OTHERRT then raise(fname, "belongs to another runtime", level + 1) end
  if rc == -2 or rc == -12 then raise(fname, "out of memory", level + 1) end
  raise(fname, "internal error (status " .. tostring(rc) .. ")", level + 1)
end

---------------------------------------------------------------- senders

local Tx = {}
local tx_mt = core.mpsc_sender_mt
tx_mt.__index = Tx

local function send_slow(tx, v, rc, fname, wait)
  while true do
    if rc == OK then
      return true
    elseif rc == AGAIN then
      suspend(fname)
    elseif rc == EPIPE then
      return nil, "closed"
    elseif rc == EAGAIN then
      return nil, "full"
    elseif rc == NOTASK then
      no_task(fname, rc)
    else
      fail(fname, rc, 3)
    end
    rc = c_send(tx, v, wait, fname)
  end
end

-- (suspends while full) true | nil, "closed". Values are copied: nil-free
-- booleans, numbers, strings and tables of those.
function Tx.send(tx, v)
  local rc = c_send(tx, v, true, "tx:send")
  if rc == OK then return true end
  return send_slow(tx, v, rc, "tx:send", true)
end

-- true | nil, "full" | nil, "closed"
function Tx.try_send(tx, v)
  local rc = c_send(tx, v, false, "tx:try_send")
  if rc == OK then return true end
  return send_slow(tx, v, rc, "tx:try_send", false)
end

function Tx.clone(tx) return core.mpsc_clone(tx) end
function Tx.close(tx) core.mpsc_tx_close(tx) end

function Tx.is_closed(tx)
  local _, _, rx_closed, _, open = c_info(tx)
  return not open or rx_closed
end

function Tx.len(tx) return (c_info(tx)) end
function Tx.capacity(tx)
  local _, cap = c_info(tx)
  return cap
end

-- One more sender, as a nexus_mpsc * for C code or another thread: pass it
-- to exactly one nexus_mpsc_sender_close, or to mpsc.sender() in another
-- Lua state (which then owns it). Until then the receiver never sees
-- "closed".
function Tx.handle(tx) return cast("nexus_mpsc *", core.mpsc_handle(tx)) end

tx_mt.__tostring = function(tx)
  local n, cap = c_info(tx)
  return ("nexus.channel.mpsc.sender(len=%d, capacity=%d%s)"):format(n, cap, Tx.is_closed(tx) and ", closed" or "")
end

---------------------------------------------------------------- receiver

local Rx = {}
local rx_mt = core.mpsc_receiver_mt
rx_mt.__index = Rx

local function recv_slow(rx, rc, v, fname, wait)
  while true do
    if rc == OK then
      return v
    elseif rc == AGAIN then
      suspend(fname)
    elseif rc == EPIPE then
      return nil, "closed"
    elseif rc == EAGAIN then
      return nil, "empty"
    elseif rc == NOTASK then
      no_task(fname, rc)
    elseif rc == RXBUSY then
      raise(fname, "another task is already receiving on this channel", 3)
    else
      fail(fname, rc, 3)
    end
    rc, v = c_recv(rx, wait)
  end
end

-- (suspends while empty) v | nil, "closed"
function Rx.recv(rx)
  local rc, v = c_recv(rx, true)
  if rc == OK then return v end
  return recv_slow(rx, rc, v, "rx:recv", true)
end

-- v | nil, "empty" | nil, "closed"
function Rx.try_recv(rx)
  local rc, v = c_recv(rx, false)
  if rc == OK then return v end
  return recv_slow(rx, rc, v, "rx:try_recv", false)
end

local function iter_next(rx)
  local rc, v = c_recv(rx, true)
  if rc == OK then return v end
  return (recv_slow(rx, rc, v, "rx:iter", true))
end

function Rx.iter(rx) return iter_next, rx end
function Rx.close(rx) core.mpsc_rx_close(rx) end

function Rx.is_closed(rx)
  local n, _, rx_closed, senders_gone = c_info(rx)
  return rx_closed or (senders_gone and n == 0)
end

function Rx.len(rx) return (c_info(rx)) end
function Rx.capacity(rx)
  local _, cap = c_info(rx)
  return cap
end

rx_mt.__tostring = function(rx)
  local n, cap = c_info(rx)
  return ("nexus.channel.mpsc.receiver(len=%d, capacity=%d%s)"):format(n, cap, Rx.is_closed(rx) and ", closed" or "")
end

---------------------------------------------------------------- select ops

-- Ops for nexus.select. Their polls call the same C entry points as the
-- blocking calls, with the op's proxy as the running task: a recv waits
-- as the receiving task (woken directly, or through the loop's async
-- handle by a sender on another thread), a send waits in the senders'
-- FIFO and, granted the turn but losing, passes it on. The C functions
-- raise on a value that cannot be copied (or a corrupt message): a poll
-- must not raise, so they run under pcall and a raise is the op's fault.

local function op_fault(rc, err)
  if rc == RXBUSY then return nil, "another task is already receiving on this channel" end
  if rc == OTHERRT then return nil, "the channel belongs to another runtime" end
  if rc == -2 or rc == -12 then return nil, "out of memory" end
  if err then return nil, err end
  return nil, "unexpected status " .. tostring(rc)
end

-- A poll's answer from a pcalled C call's status (ok: the pcall's): done
-- (OK, or EPIPE: the channel closed), registered (AGAIN), or a fault.
-- Sets op[field] to value on OK, to closed on EPIPE.
local function settle(op, field, value, closed, ok, rc)
  if not ok then return op_fault(nil, rc) end
  if rc == OK then op[field] = value; return true end
  if rc == EPIPE then op[field] = closed; return true end
  if rc == AGAIN then return false end
  return op_fault(rc)
end

local RecvOp = sel.class("mpsc recv")
function RecvOp.poll(op)
  local ok, rc, v = pcall(c_recv, op.rx, true)
  return settle(op, "v", v, nil, ok, rc)
end
function RecvOp.take(op)
  local v = op.v
  if v == nil then return nil, "closed" end
  op.v = nil                 -- the op keeps no value between selects
  return v
end

-- An op for nexus.select: v | nil, "closed"; a losing recv takes nothing.
function Rx.recv_op(rx)
  if getmetatable(rx) ~= rx_mt then
    raise("rx:recv_op", "expected an mpsc receiver, got " .. type(rx), 2)
  end
  return sel.op(RecvOp, { rx = rx }, "rx:recv_op")
end

local SendOp = sel.class("mpsc send")
function SendOp.poll(op)
  local ok, rc = pcall(c_send, op.tx, op.v, true, "tx:send_op")
  return settle(op, "ok", true, false, ok, rc)
end
SendOp.take = sel.take_sent

local function check_value(tx, v, fname)
  if v == nil then raise(fname, "cannot send nil", 3) end
  core.mpsc_check(tx, v, fname)   -- raises for what tx:send could not copy
end

-- The value the next select sends (checked now, copied when sent); returns the op.
function SendOp.set(op, v)
  if getmetatable(op) ~= SendOp then raise("op:set", "expected an mpsc send op, got " .. type(op), 2) end
  check_value(op.tx, v, "op:set")
  op.v = v
  return op
end

-- An op for nexus.select: true | nil, "closed"; a losing send sends
-- nothing. Only on the receiver's thread: elsewhere a send waits by
-- blocking its thread, which a select cannot do.
function Tx.send_op(tx, v)
  if getmetatable(tx) ~= tx_mt then
    raise("tx:send_op", "expected an mpsc sender, got " .. type(tx), 2)
  end
  check_value(tx, v, "tx:send_op")
  if not core.mpsc_local(tx) then
    raise("tx:send_op", "the sender is on another thread than the receiver's runtime "
      .. "(a send op waits as a task of that runtime; use tx:send, which blocks this thread)", 2)
  end
  return sel.op(SendOp, { tx = tx, v = v, ok = false }, "tx:send_op")
end

---------------------------------------------------------------- constructors

-- nexus.channel.mpsc(capacity) -> tx, rx
function M.new(capacity)
  local fname = "nexus.channel.mpsc"
  if type(capacity) ~= "number" or capacity ~= floor(capacity) or capacity < 1 then
    raise(fname, "capacity must be a positive integer, got "
      .. (type(capacity) == "number" and tostring(capacity) or type(capacity)), 2)
  elseif capacity > MAX_CAPACITY then
    raise(fname, ("capacity %d is too large (at most %d)"):format(capacity, MAX_CAPACITY), 2)
  end
  return core.mpsc_new(capacity)
end

-- A handle argument as C takes it: a number (an address) or a light
-- userdata; a pointer cdata becomes its address. Nothing is read through
-- it here: C looks it up in the registry of outstanding handles.
local function handle_arg(fname, h)
  if type(h) == "cdata" then
    local ok, a = pcall(cast, "uintptr_t", h)
    if not ok then raise(fname, "expected a channel handle (from tx:handle()), got " .. tostring(ffi.typeof(h)), 3) end
    return tonumber(a)
  end
  if type(h) ~= "number" and type(h) ~= "userdata" then
    raise(fname, "expected a channel handle (from tx:handle()), got " .. type(h), 3)
  end
  return h
end

-- A sender from a handle (tx:handle(): a nexus_mpsc *, or its address as
-- a number, the form that crosses into another Lua state). It takes over
-- the handle: its close (or collection) closes that sender. Anything but
-- an outstanding handle raises "mpsc.sender: not a live channel handle".
function M.sender(h) return core.mpsc_sender(handle_arg("mpsc.sender", h)) end

-- The address of an outstanding handle as a number (to pass to another
-- Lua state); the handle stays outstanding.
function M.address(h) return core.mpsc_address(handle_arg("mpsc.address", h)) end

-- Test-only (see docs): a libuv thread-pool job that sends from its worker.
function M._pool_send(h, prefix, count)
  return core._mpsc_pool_send(handle_arg("_mpsc_pool_send", h), prefix, count)
end

M.Sender, M.Receiver = Tx, Rx

return M

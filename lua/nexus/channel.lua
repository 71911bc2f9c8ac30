-- nexus.channel: the local channel, bounded, many senders, one receiver.
-- The values live in a Lua table used as a ring; the C record (src/chan.c)
-- says where a send writes and a recv reads, queues the waiting senders
-- (first in, first out) and the one waiting receiver, and keeps the close
-- state. A send or a recv is one FFI call, plus a yield when it must wait.
local ffi = require "ffi"
local core = require "nexus.core"
local util = require "nexus.util"
local sel = require "nexus.select"

ffi.cdef [[
typedef struct nx_chan {
  uint32_t cap, len, head, senders;
  uint8_t rx_closed, tx_closed;
  int32_t hand;
} nx_chan;
typedef struct nx_chan_end { nx_chan *ch; uint8_t closed; uint32_t id; } nx_chan_end;
typedef struct nx_chan_api {
  nx_chan *(*create)(uint32_t);
  int (*send)(nx_chan_end *, int);
  int (*recv)(nx_chan *, int);
  nx_chan_end *(*tx_new)(nx_chan *);
  nx_chan_end *(*rx_new)(nx_chan *);
  void (*tx_close)(nx_chan_end *);
  void (*rx_close)(nx_chan_end *);
  void (*tx_free)(nx_chan_end *);
  void (*rx_free)(nx_chan_end *);
  int32_t (*recv_cpoll)(void *);
  int32_t (*send_cpoll)(void *);
} nx_chan_api;
]]

local C = ffi.cast("const nx_chan_api *", core.chan_api)
local c_send, c_recv, c_tx_new, c_rx_new = C.send, C.recv, C.tx_new, C.rx_new
local c_tx_close, c_rx_close, c_tx_free, c_rx_free = C.tx_close, C.rx_close, C.tx_free, C.rx_free
local ffi_gc = ffi.gc

local type, error, setmetatable, getmetatable, tostring, floor =
  type, error, setmetatable, getmetatable, tostring, math.floor
local no_task, argerror = util.no_task, util.argerror
local suspend = util.suspend

-- Statuses of src/chan.h (an index >= 0 means go ahead).
local E_NOTASK, E_NOMEM, FULL, EMPTY, CLOSED, WAIT, BUSY, OTHER_RT = -1, -2, -3, -4, -5, -6, -7, -8

local M = {}

local Tx = {}
Tx.__index = Tx
local Rx = {}
Rx.__index = Rx

local function tx_new(ch, buf, fname)
  local e = c_tx_new(ch)
  if e == nil then error(fname .. ": out of memory", 3) end
  return setmetatable({ e = ffi_gc(e, c_tx_free), ch = ch, buf = buf }, Tx)
end

-- Clears the ring slots of the values still queued (a handed one too).
local function drop_queued(ch, buf)
  local head, cap = ch.head, ch.cap
  for k = 0, ch.len - 1 do buf[(head + k) % cap + 1] = nil end
  if ch.hand >= 0 then buf[ch.hand + 1] = nil end
end

-- Values queued: a value handed to the woken receiver is one until taken.
local function queued(ch)
  return ch.hand >= 0 and ch.len + 1 or ch.len
end

-- tx, rx = nexus.channel(capacity)
function M.new(capacity)
  if type(capacity) ~= "number" or capacity ~= floor(capacity) or capacity < 1 or capacity > 2 ^ 31 then
    argerror("nexus.channel", "capacity must be a positive integer, got " .. tostring(capacity))
  end
  local ch = C.create(capacity)
  if ch == nil then error("nexus.channel: out of memory", 2) end
  local buf = {}
  local re = c_rx_new(ch)
  if re == nil then error("nexus.channel: out of memory", 2) end
  -- A collected receiver drops the queued values as rx:close does, or the
  -- senders' shared ring would keep them alive as long as any sender lives.
  local function rx_gc(e)
    if e.closed == 0 then drop_queued(ch, buf) end
    c_rx_free(e)
  end
  local rx = setmetatable({ e = ffi_gc(re, rx_gc), ch = ch, buf = buf }, Rx)
  return tx_new(ch, buf, "nexus.channel"), rx
end

-- Statuses that are programming errors or need the slow path.
local function fail(fname, rc)
  if rc == E_NOTASK then return no_task(fname, rc) end
  if rc == BUSY then error(fname .. ": another task is already receiving on this channel", 3) end
  if rc == OTHER_RT then error(fname .. ": the channel is in use by another runtime", 3) end
  if rc == E_NOMEM then error(fname .. ": out of memory", 3) end
  error(fname .. ": unexpected status " .. tostring(rc), 3)
end

---------------------------------------------------------------- senders

-- (suspends while full) true | nil, "closed"
function Tx:send(v)
  if v == nil then argerror("tx:send", "cannot send nil") end
  local e = self.e
  local i = c_send(e, 1)
  while i < 0 do
    if i == WAIT then
      suspend("tx:send")
    elseif i == CLOSED then
      return nil, "closed"
    else
      fail("tx:send", i)
    end
    i = c_send(e, 1)               -- closed meanwhile (by another task): CLOSED
  end
  self.buf[i + 1] = v
  return true
end

-- true | nil, "full" | nil, "closed"
function Tx:try_send(v)
  if v == nil then argerror("tx:try_send", "cannot send nil") end
  local i = c_send(self.e, 0)
  if i >= 0 then
    self.buf[i + 1] = v
    return true
  end
  return nil, i == FULL and "full" or "closed"
end

function Tx:clone()
  if self.e.closed ~= 0 then argerror("tx:clone", "this sender is closed") end
  return tx_new(self.ch, self.buf, "tx:clone")
end

-- This sender is done; the receiver sees "closed" once every sender is.
function Tx:close() c_tx_close(self.e) end

function Tx:is_closed() return self.e.closed ~= 0 or self.ch.rx_closed ~= 0 end
function Tx:capacity() return self.ch.cap end
function Tx:len() return queued(self.ch) end
function Tx:__tostring()
  local ch = self.ch
  return ("nexus.channel.tx(%d/%d%s)"):format(queued(ch), ch.cap, self:is_closed() and ", closed" or "")
end

---------------------------------------------------------------- receiver

local function take(self, i)
  local buf = self.buf
  i = i + 1
  local v = buf[i]
  buf[i] = nil
  return v
end

-- (suspends while empty) v | nil, "closed"
function Rx:recv()
  local ch = self.ch
  local i = c_recv(ch, 1)
  while i < 0 do
    if i == WAIT then
      suspend("rx:recv")
      -- A send handed its value over as it woke us (src/chan.h): take
      -- it without calling recv again.
      local h = ch.hand
      if h >= 0 then
        ch.hand = -1
        return take(self, h)
      end
    elseif i == CLOSED then
      return nil, "closed"
    else
      fail("rx:recv", i)
    end
    i = c_recv(ch, 1)
  end
  return take(self, i)
end

-- v | nil, "empty" | nil, "closed"
function Rx:try_recv()
  local i = c_recv(self.ch, 0)
  if i >= 0 then return take(self, i) end
  return nil, i == EMPTY and "empty" or "closed"
end

-- for v in rx:iter() do ... end: ends when the channel is closed and drained.
function Rx:iter() return Rx.recv, self end

-- Senders then get nil, "closed"; queued values are dropped.
function Rx:close()
  if self.e.closed == 0 then drop_queued(self.ch, self.buf) end
  c_rx_close(self.e)
end

function Rx:is_closed() return self.ch.rx_closed ~= 0 or self.ch.tx_closed ~= 0 end
function Rx:len() return queued(self.ch) end
function Rx:capacity() return self.ch.cap end
function Rx:__tostring()
  local ch = self.ch
  return ("nexus.channel.rx(%d/%d%s)"):format(queued(ch), ch.cap, self:is_closed() and ", closed" or "")
end

---------------------------------------------------------------- select ops

local function op_fault(rc)
  if rc == BUSY then return nil, "another task is already receiving on this channel" end
  if rc == OTHER_RT then return nil, "the channel is in use by another runtime" end
  if rc == E_NOMEM then return nil, "out of memory" end
  return nil, "unexpected status " .. tostring(rc)
end

-- C ops (select.lua): the poll is one FFI call into src/chan.c; the
-- result (a ring index, or CLOSED) is read from op.res[0].
local RecvOp = sel.class("channel recv")
RecvOp.fault = op_fault
function RecvOp.take(op)
  local i = op.res[0]
  if i < 0 then return nil, "closed" end
  return take(op.rx, i)
end

-- An op for nexus.select: v | nil, "closed"; a losing recv takes nothing.
function Rx:recv_op()
  if getmetatable(self) ~= Rx then argerror("rx:recv_op", "expected a channel receiver") end
  return sel.cop(RecvOp, { rx = self }, "rx:recv_op", C.recv_cpoll, self.ch)
end

local SendOp = sel.class("channel send")
SendOp.fault = op_fault
function SendOp.take(op)
  local i = op.res[0]
  if i < 0 then return nil, "closed" end
  op.tx.buf[i + 1] = op.v
  return true
end
-- The value the next select sends; returns the op.
function SendOp.set(op, v)
  if v == nil then argerror("op:set", "cannot send nil") end
  op.v = v
  return op
end

-- An op for nexus.select: true | nil, "closed"; a losing send sends nothing.
function Tx:send_op(v)
  if getmetatable(self) ~= Tx then argerror("tx:send_op", "expected a channel sender") end
  if v == nil then argerror("tx:send_op", "cannot send nil") end
  return sel.cop(SendOp, { tx = self, v = v }, "tx:send_op", C.send_cpoll, self.e)
end

-- nexus.channel(capacity) and nexus.channel.new(capacity); the byte and
-- cross-thread channels join this table as .bytes and .mpsc.
return setmetatable(M, { __call = function(_, capacity) return M.new(capacity) end })

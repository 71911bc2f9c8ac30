-- nexus.bytes: byte channels (nexus.channel.bytes). The ring, the wait
-- queues and the accounting are C (src/bchan.c); this file checks
-- arguments, yields, and keeps the hot path free of allocation: claim
-- objects come from a small pool and go back on commit/abort, and each
-- receiver has one message object that every recv fills again.
--
-- Rule: a claim object is valid from claim until commit/abort, a message
-- object from recv until release; after that the same object may be handed
-- out again.
local ffi = require "ffi"
local core = require "nexus.core"
local util = require "nexus.util"
local sel = require "nexus.select"

ffi.cdef [[
typedef struct nexus_bchan nexus_bchan;
typedef struct nexus_bclaim {
  uint8_t *ptr;
  uint32_t len;
  uint32_t st_, off_, need_, own_;
  nexus_bchan *ch_;
  struct nexus_bclaim *next_, *prev_;
  void *task_;
} nexus_bclaim;
typedef struct nexus_bmsg {
  const uint8_t *ptr;
  uint32_t len;
  uint32_t st_, off_, pad_;
  nexus_bchan *ch_;
} nexus_bmsg;
typedef struct nexus_bytes_api {
  int (*claim)(nexus_bchan *ch, size_t n, nexus_bclaim *c);
  int (*commit)(nexus_bclaim *c);
  int (*abort)(nexus_bclaim *c);
  int (*recv)(nexus_bchan *ch, nexus_bmsg *m);
  int (*release)(nexus_bmsg *m);
  size_t (*len)(const nexus_bchan *ch);
  size_t (*capacity)(const nexus_bchan *ch);
  void (*ref)(nexus_bchan *ch);
  void (*unref)(nexus_bchan *ch);
} nexus_bytes_api;
typedef struct nx_bchan_api {
  nexus_bytes_api pub;
  nexus_bchan *(*create)(uint32_t capacity);
  void (*tx_add)(nexus_bchan *ch);
  void (*tx_close)(nexus_bchan *ch);
  void (*tx_drop)(nexus_bchan *ch);
  void (*rx_close)(nexus_bchan *ch);
  void (*rx_drop)(nexus_bchan *ch);
  int (*claim_wait)(nexus_bchan *ch, uint32_t n, nexus_bclaim *c, int wait);
  int (*recv_wait)(nexus_bchan *ch, nexus_bmsg *m, int wait);
  int (*state)(const nexus_bchan *ch);
  void (*claim_gc)(nexus_bclaim *c);
  void (*msg_gc)(nexus_bmsg *m);
  void (*claim_close)(nexus_bclaim *c);
} nx_bchan_api;
]]

local B = ffi.cast("const nx_bchan_api *", core.bchan_api)
local b_claim_wait, b_recv_wait = B.claim_wait, B.recv_wait
local b_commit, b_abort, b_release = B.pub.commit, B.pub.abort, B.pub.release
local b_state, b_len = B.state, B.pub.len

local type, error, tostring, setmetatable, tonumber = type, error, tostring, setmetatable, tonumber
local getmetatable = getmetatable
local floor = math.floor
local band = bit.band
local copy, fstring, gc, cast = ffi.copy, ffi.string, ffi.gc, ffi.cast
local no_task = util.no_task
local suspend = util.suspend

-- Statuses (src/rt.h, include/nexus.h, src/bchan.h).
local OK, AGAIN, NOTASK = 0, 1, -1
local EAGAIN, EINVAL, EPIPE = -11, -22, -32
local HELD, RXBUSY, OTHERRT = -101, -102, -103
local RXCLOSED, TXCLOSED, DRAINED = 1, 2, 4
local MSG_HELD = 1
local MAX_CAPACITY = 2 ^ 30

local chan_ptr = ffi.typeof("nexus_bchan *")

-- Each end's finalizer sits on a box of its own (a one-element array):
-- pointer cdata are immutable, and the JIT may make two of the same value
-- one object (CSE), so ffi.gc on the sender's and the receiver's pointer
-- gave both ends one object with one finalizer: the receiver was never
-- dropped (its channel, and the runtime it references, leaked; a collected
-- receiver did not close the channel). A mutable array is never merged.
local box_t = ffi.typeof("nexus_bchan *[1]")
local function end_box(ch, fin) return gc(box_t(ch), fin) end
local function tx_fin(box) B.tx_drop(box[0]) end
local function rx_fin(box) B.rx_drop(box[0]) end
local function unref_fin(box) B.pub.unref(box[0]) end

local M = {}

-- For C code loaded with ffi.load: the public functions of nexus.h.
M.c_api = ffi.cast("const nexus_bytes_api *", core.bchan_api)

local function raise(fname, what, level)
  error(fname .. ": " .. what, level + 1)
end

-- An unexpected status is a bug of nexus, named as such.
local function fail(fname, rc, level)
  if rc == OTHERRT then raise(fname, "belongs to another runtime", level + 1) end
  if rc == -2 then raise(fname, "out of memory", level + 1) end
  raise(fname, "internal error (status " .. tostring(rc) .. ")", level + 1)
end

---------------------------------------------------------------- claims

local Claim = {}
local claim_t = ffi.metatype("nexus_bclaim", {
  __index = Claim,
  __tostring = function(c)
    return ("nexus.bytes.claim(%d bytes%s)"):format(c.len, c.st_ == 0 and ", done" or "")
  end,
})

local pool, npool = {}, 0
local POOL_MAX = 64

local function new_claim()
  if npool > 0 then
    local c = pool[npool]
    pool[npool] = nil
    npool = npool - 1
    return c
  end
  local c = gc(claim_t(), B.claim_gc)
  c.own_ = 1
  return c
end

local function free_claim(c)
  if c.own_ == 1 and npool < POOL_MAX then
    npool = npool + 1
    pool[npool] = c
  end
end

-- Publishes the message: true | nil, "closed" (the receiver is gone).
function Claim.commit(c)
  local rc = b_commit(c)
  if rc == OK then
    free_claim(c)
    return true
  elseif rc == EPIPE then
    free_claim(c)
    return nil, "closed"
  end
  raise("claim:commit", "the claim was already committed or aborted", 2)
end

-- Gives the room back.
function Claim.abort(c)
  if b_abort(c) ~= OK then
    raise("claim:abort", "the claim was already committed or aborted", 2)
  end
  free_claim(c)
end

---------------------------------------------------------------- messages

local Msg = {}
ffi.metatype("nexus_bmsg", {
  __index = Msg,
  __len = function(m) return m.len end,
  __tostring = function(m)
    return m.st_ == MSG_HELD and ("nexus.bytes.message(%d bytes)"):format(m.len)
      or "nexus.bytes.message(released)"
  end,
})
local msg_t = ffi.typeof("nexus_bmsg")

-- The message as a Lua string (a copy).
function Msg.string(m)
  if m.st_ ~= MSG_HELD then raise("message:string", "the message was released", 2) end
  return fstring(m.ptr, m.len)
end

-- Makes the room reusable; m is invalid afterwards.
function Msg.release(m)
  if b_release(m) ~= OK then raise("message:release", "the message was already released", 2) end
end

---------------------------------------------------------------- senders

local Tx = {}
Tx.__index = Tx

local function new_tx(ch, cap)
  return setmetatable({ _ch = ch, _box = end_box(ch, tx_fin), _cap = cap, _open = true }, Tx)
end

local function check_size(fname, tx, n)
  if type(n) ~= "number" or n ~= floor(n) then
    raise(fname, "size must be an integer, got " .. (type(n) == "number" and tostring(n) or type(n)), 3)
  elseif n < 1 then
    raise(fname, "cannot claim " .. tostring(n) .. " bytes (at least 1)", 3)
  elseif n > tx._cap then
    raise(fname, ("%d bytes is more than the capacity (%d)"):format(n, tx._cap), 3)
  end
end

-- The claims waiting for room through tx (a set, made at the first wait):
-- tx:close() makes them give up. Weak: a wait abandoned by an abort or a
-- timeout leaves its claim there, idle (closing skips it), until it is
-- collected.
local WEAK_KEYS = { __mode = "k" }
local function wait_through(tx, c, fname)
  local w = tx._waits
  if not w then
    w = setmetatable({}, WEAK_KEYS)
    tx._waits = w
  end
  w[c] = true
  suspend(fname)
  w[c] = nil
end

-- The slow path of a claim: adopt the main chunk, wait for room, or fail.
local function claim_slow(tx, n, c, rc, fname)
  while true do
    if rc == OK then
      return c
    elseif rc == AGAIN then
      wait_through(tx, c, fname)
      if not tx._open then                -- closed while this waited
        if b_claim_wait(tx._ch, n, c, 0) == OK then b_abort(c) end   -- a grant: give it back
        free_claim(c)
        return nil, "closed"
      end
    elseif rc == EPIPE then
      free_claim(c)
      return nil, "closed"
    elseif rc == NOTASK then
      no_task(fname, rc)
    else
      free_claim(c)
      fail(fname, rc, 3)
    end
    rc = b_claim_wait(tx._ch, n, c, 1)
  end
end

-- (suspends while there is no room) claim | nil, "closed"
function Tx.claim(tx, n)
  check_size("tx:claim", tx, n)
  if not tx._open then return nil, "closed" end
  local c = new_claim()
  local rc = b_claim_wait(tx._ch, n, c, 1)
  if rc == OK then return c end
  return claim_slow(tx, n, c, rc, "tx:claim")
end

-- claim | nil, "full" | nil, "closed"
function Tx.try_claim(tx, n)
  check_size("tx:try_claim", tx, n)
  if not tx._open then return nil, "closed" end
  local c = new_claim()
  local rc = b_claim_wait(tx._ch, n, c, 0)
  if rc == OK then return c end
  free_claim(c)
  if rc == EAGAIN then return nil, "full" end
  if rc == EPIPE then return nil, "closed" end
  fail("tx:try_claim", rc, 2)
end

local function check_string(fname, tx, s)
  if type(s) ~= "string" then raise(fname, "expected a string, got " .. type(s), 3) end
  local n = #s
  if n == 0 then raise(fname, "empty message (0 bytes)", 3) end
  if n > tx._cap then raise(fname, ("%d bytes is more than the capacity (%d)"):format(n, tx._cap), 3) end
  return n
end

local function fill(c, s, n)
  copy(c.ptr, s, n)
  local rc = b_commit(c)
  free_claim(c)
  if rc == OK then return true end
  return nil, "closed"
end

-- (suspends while there is no room) claim + copy + commit: true | nil, "closed"
function Tx.send(tx, s)
  local n = check_string("tx:send", tx, s)
  if not tx._open then return nil, "closed" end
  local c = new_claim()
  local rc = b_claim_wait(tx._ch, n, c, 1)
  if rc ~= OK then
    local err
    c, err = claim_slow(tx, n, c, rc, "tx:send")
    if not c then return nil, err end
  end
  return fill(c, s, n)
end

-- true | nil, "full" | nil, "closed"
function Tx.try_send(tx, s)
  local n = check_string("tx:try_send", tx, s)
  local c, err = Tx.try_claim(tx, n)
  if not c then return nil, err end
  return fill(c, s, n)
end

function Tx.clone(tx)
  if not tx._open then raise("tx:clone", "the sender is closed", 2) end
  B.tx_add(tx._ch)
  return new_tx(tx._ch, tx._cap)
end

-- This sender is done; the receiver sees "closed" once every sender is.
function Tx.close(tx)
  if not tx._open then return end
  tx._open = false
  local w = tx._waits
  if w then
    for c in pairs(w) do B.claim_close(c) end   -- wakes them: they see _open false
  end
  B.tx_close(tx._ch)
  gc(tx._box, unref_fin)      -- keep the memory until the handle goes
end

function Tx.is_closed(tx)
  return not tx._open or band(b_state(tx._ch), RXCLOSED) ~= 0
end

function Tx.capacity(tx) return tx._cap end
function Tx.len(tx) return tonumber(b_len(tx._ch)) end
-- The nexus_bchan * for C code (include/nexus.h); valid while a handle lives.
function Tx.cptr(tx) return chan_ptr(tx._ch) end

Tx.__tostring = function(tx)
  return ("nexus.channel.bytes.sender(capacity=%d%s)"):format(tx._cap, tx:is_closed() and ", closed" or "")
end

---------------------------------------------------------------- receiver

local Rx = {}
Rx.__index = Rx

local function recv_slow(rx, rc, fname)
  local m = rx._m
  while true do
    if rc == OK then
      return m
    elseif rc == AGAIN then
      suspend(fname)
    elseif rc == EPIPE then
      return nil, "closed"
    elseif rc == EAGAIN then
      return nil, "empty"
    elseif rc == NOTASK then
      no_task(fname, rc)
    elseif rc == HELD then
      raise(fname, "the previous message was not released (call m:release() first)", 3)
    elseif rc == RXBUSY then
      raise(fname, "another task is already receiving on this channel", 3)
    else
      fail(fname, rc, 3)
    end
    rc = b_recv_wait(rx._ch, m, 1)
  end
end

-- (suspends while empty) message | nil, "closed"
function Rx.recv(rx)
  local rc = b_recv_wait(rx._ch, rx._m, 1)
  if rc == OK then return rx._m end
  return recv_slow(rx, rc, "rx:recv")
end

-- message | nil, "empty" | nil, "closed"
function Rx.try_recv(rx)
  local rc = b_recv_wait(rx._ch, rx._m, 0)
  if rc == OK then return rx._m end
  return recv_slow(rx, rc, "rx:try_recv")
end

-- Each step releases the previous message; ends at "closed".
local function iter_next(rx)
  local m = rx._m
  if m.st_ == MSG_HELD then b_release(m) end
  local rc = b_recv_wait(rx._ch, m, 1)
  if rc == OK then return m end
  return (recv_slow(rx, rc, "rx:iter"))
end

function Rx.iter(rx) return iter_next, rx end

-- Senders then get nil, "closed"; queued messages are dropped.
function Rx.close(rx) B.rx_close(rx._ch) end

function Rx.is_closed(rx)
  local st = b_state(rx._ch)
  return band(st, RXCLOSED) ~= 0 or (band(st, TXCLOSED) ~= 0 and band(st, DRAINED) ~= 0)
end

function Rx.len(rx) return tonumber(b_len(rx._ch)) end
function Rx.capacity(rx) return rx._cap end
function Rx.cptr(rx) return chan_ptr(rx._ch) end

Rx.__tostring = function(rx)
  return ("nexus.channel.bytes.receiver(capacity=%d, len=%d%s)"):format(
    rx._cap, rx:len(), rx:is_closed() and ", closed" or "")
end

---------------------------------------------------------------- select ops

-- Ops for nexus.select. Their polls call the C entry points of the
-- blocking calls with the op's proxy as the running task, so they wait as
-- the receiving task, or as a claim in the producers' FIFO.
--
-- A claim made in a poll is linked to the running task's list (t->claims,
-- so that an aborted task gives its room back): there, to the proxy, which
-- never ends. So a send op commits its claim inside the poll that got it,
-- granted or not: a poll that completes always wins its select. A claim
-- granted room but withdrawn (its op lost, or the task was aborted or
-- timed out) gives the room back through bchan.c's cancel callback.

local BC_GRANTED = 2          -- claim state (src/bchan.c)

local function op_fault(rc)
  if rc == HELD then return nil, "the previous message was not released (call m:release() first)" end
  if rc == RXBUSY then return nil, "another task is already receiving on this channel" end
  if rc == OTHERRT then return nil, "the channel belongs to another runtime" end
  if rc == -2 then return nil, "out of memory" end
  return nil, "unexpected status " .. tostring(rc)
end

local RecvOp = sel.class("bytes recv")
function RecvOp.poll(op)
  local rc = b_recv_wait(op.ch, op.m, 1)
  if rc == OK or rc == EPIPE then
    op.ok = rc == OK
    return true
  end
  if rc == AGAIN then return false end
  return op_fault(rc)
end
function RecvOp.take(op)
  if op.ok then return op.m end
  return nil, "closed"
end

-- An op for nexus.select: message | nil, "closed" (the receiver's one
-- message object, as rx:recv gives); a losing recv takes nothing.
function Rx.recv_op(rx)
  if getmetatable(rx) ~= Rx then raise("rx:recv_op", "expected a byte channel receiver, got " .. type(rx), 2) end
  return sel.op(RecvOp, { rx = rx, ch = rx._ch, m = rx._m, ok = false }, "rx:recv_op")
end

local SendOp = sel.class("bytes send")
function SendOp.poll(op)
  local tx, c, s = op.tx, op.c, op.v
  local ch, n = tx._ch, #s
  if not tx._open then                    -- closed, maybe while this waited
    if c.st_ == BC_GRANTED and b_claim_wait(ch, n, c, 0) == OK then b_abort(c) end   -- a grant: give it back
    op.ok = false
    return true
  end
  local rc = b_claim_wait(ch, n, c, 1)
  if rc == OK and c.len ~= n then         -- room granted for the value before an op:set
    b_abort(c)
    rc = b_claim_wait(ch, n, c, 1)
  end
  if rc == OK then
    copy(c.ptr, s, n)
    op.ok = b_commit(c) == OK             -- EPIPE: the receiver closed
    return true
  elseif rc == EPIPE then
    op.ok = false
    return true
  elseif rc == AGAIN then
    return false
  end
  return op_fault(rc)
end
SendOp.take = sel.take_sent

-- The string the next select sends; returns the op.
function SendOp.set(op, s)
  if getmetatable(op) ~= SendOp then raise("op:set", "expected a byte channel send op, got " .. type(op), 2) end
  check_string("op:set", op.tx, s)
  op.v = s
  return op
end

-- An op for nexus.select: true | nil, "closed"; a losing send sends
-- nothing and holds no room.
function Tx.send_op(tx, s)
  if getmetatable(tx) ~= Tx then raise("tx:send_op", "expected a byte channel sender, got " .. type(tx), 2) end
  check_string("tx:send_op", tx, s)
  -- The op's own claim (never pooled: own_ = 0), waiting through tx: tx:close() makes it give up.
  local c = gc(claim_t(), B.claim_gc)
  local w = tx._waits
  if not w then
    w = setmetatable({}, WEAK_KEYS)
    tx._waits = w
  end
  w[c] = true
  return sel.op(SendOp, { tx = tx, c = c, v = s, ok = false }, "tx:send_op")
end

---------------------------------------------------------------- constructor

-- nexus.channel.bytes(capacity_bytes) -> tx, rx
function M.new(capacity)
  local fname = "nexus.channel.bytes"
  if type(capacity) ~= "number" or capacity ~= floor(capacity) or capacity < 1 then
    raise(fname, "capacity must be a positive integer, got "
      .. (type(capacity) == "number" and tostring(capacity) or type(capacity)), 2)
  elseif capacity > MAX_CAPACITY then
    raise(fname, ("capacity %d is too large (at most %d bytes)"):format(capacity, MAX_CAPACITY), 2)
  end
  local ch = B.create(capacity)
  if ch == nil then raise(fname, "out of memory", 2) end
  local rx = setmetatable({ _ch = ch, _box = end_box(ch, rx_fin), _cap = capacity,
                            _m = gc(msg_t(), B.msg_gc) }, Rx)
  return new_tx(ch, capacity), rx
end

M.Sender, M.Receiver, M.Claim, M.Message = Tx, Rx, Claim, Msg

return M

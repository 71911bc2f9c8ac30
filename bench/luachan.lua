-- bench/luachan.lua: a hand-written bounded channel between coroutines,
-- with the smallest scheduler it needs, in plain Lua: the peer of
-- nexus.channel in the chan workload. Written for speed, in the style of
-- bench/minisched.lua but tighter: the ready queue holds coroutines, a
-- channel is a ring of values plus its one waiting receiver and a FIFO of
-- waiting senders; a woken waiter re-checks (no hand-over of the slot, so
-- a newcomer may overtake it, which nexus does not allow). No close, no
-- errors beyond re-raising.
--
-- The queue and loop are exposed (run_once, on_ready) so that
-- bench/chan_pingpong_luv.lua can drive the same code from libuv.

local create, resume, yield = coroutine.create, coroutine.resume, coroutine.yield

local M = {}

local queue, qh, qt = {}, 1, 0
local current

local function ready(co)
  qt = qt + 1
  queue[qt] = co
  local hook = M.on_ready
  if hook then hook() end
end

function M.spawn(fn) ready(create(fn)) end

local function step(co)
  current = co
  local ok, err = resume(co)
  if not ok then error(err, 0) end
end

-- Runs the tasks that are ready now; true while tasks remain queued.
function M.run_once()
  local last = qt
  while qh <= last do
    local co = queue[qh]
    queue[qh] = nil
    qh = qh + 1
    step(co)
  end
  if qh > qt then qh, qt = 1, 0; return false end
  return true
end

-- Runs until no task is ready.
function M.run()
  while qh <= qt do
    local co = queue[qh]
    queue[qh] = nil
    qh = qh + 1
    step(co)
  end
  qh, qt = 1, 0
end

---------------------------------------------------------------- channel

function M.new(cap)
  return { buf = {}, head = 1, n = 0, cap = cap, rx = nil, sq = {}, sh = 1, st = 0 }
end

local function push(ch, v)
  local n = ch.n
  ch.buf[(ch.head + n - 1) % ch.cap + 1] = v
  ch.n = n + 1
  local r = ch.rx
  if r then ch.rx = nil; ready(r) end
end

local function pop(ch)
  local h, buf = ch.head, ch.buf
  local v = buf[h]
  buf[h] = nil
  ch.head = h % ch.cap + 1
  ch.n = ch.n - 1
  local sh = ch.sh
  if sh <= ch.st then                       -- wake the first waiting sender
    local sq = ch.sq
    local s = sq[sh]
    sq[sh] = nil
    if sh == ch.st then ch.sh, ch.st = 1, 0 else ch.sh = sh + 1 end
    ready(s)
  end
  return v
end

-- (suspends while full)
function M.send(ch, v)
  while ch.n == ch.cap do
    local st = ch.st + 1
    ch.st = st
    ch.sq[st] = current
    yield()
  end
  push(ch, v)
  return true
end

-- (suspends while empty)
function M.recv(ch)
  while ch.n == 0 do
    ch.rx = current
    yield()
  end
  return pop(ch)
end

function M.try_send(ch, v)
  if ch.n == ch.cap then return nil, "full" end
  push(ch, v)
  return true
end

function M.try_recv(ch)
  if ch.n == 0 then return nil, "empty" end
  return pop(ch)
end

return M

-- bench/minisched.lua: the smallest useful coroutine scheduler in plain
-- Lua, as a peer for the nexus benchmarks. A FIFO ready queue, tasks that
-- are coroutines, join through a per-task waiter list, and a condition
-- (waiter list) to park on. No timers, no I/O, no error handling beyond
-- re-raising: it is the floor a runtime's bookkeeping is compared with.
--
-- The queue and loop are exposed so bench/spawn_luv.lua can drive the
-- same scheduler from a libuv idle callback.

local create, resume, yield, status =
  coroutine.create, coroutine.resume, coroutine.yield, coroutine.status

local M = {}

local queue, qh, qt = {}, 1, 0
local current

local function ready(t)
  qt = qt + 1
  queue[qt] = t
  if M.on_ready then M.on_ready() end
end
M.ready = ready

-- spawn(fn, arg): a task that runs fn(arg) once the scheduler reaches it.
function M.spawn(fn, arg)
  local t = { co = create(fn), arg = arg, done = false, res = nil, waiters = nil }
  ready(t)
  return t
end

-- join(t): (suspends) t's result.
function M.join(t)
  if not t.done then
    local w = t.waiters
    if w then w[#w + 1] = current else t.waiters = { current } end
    yield()
  end
  return t.res
end

-- A condition: wait() parks the current task until signal().
function M.condition() return { n = 0 } end

function M.wait(c)
  local n = c.n + 1
  c.n = n
  c[n] = current
  yield()
end

function M.signal(c)
  for i = 1, c.n do ready(c[i]); c[i] = nil end
  c.n = 0
end

local function step(t)
  current = t
  local ok, r = resume(t.co, t.arg)
  t.arg = nil
  if not ok then error(r, 0) end
  if status(t.co) == "dead" then
    t.done = true
    t.res = r
    local w = t.waiters
    if w then for i = 1, #w do ready(w[i]) end end
  end
end

-- Run the tasks that are ready now (not those made ready meanwhile);
-- returns true while tasks remain queued.
function M.run_once()
  local last = qt
  while qh <= last do
    local t = queue[qh]
    queue[qh] = nil
    qh = qh + 1
    step(t)
  end
  if qh > qt then qh, qt = 1, 0; return false end
  return true
end

-- Run until no task is ready (finished or parked).
function M.run()
  while qh <= qt do
    local t = queue[qh]
    queue[qh] = nil
    qh = qh + 1
    step(t)
  end
  qh, qt = 1, 0
end

return M

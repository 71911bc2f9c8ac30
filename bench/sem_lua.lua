-- semaphore contention on the hand-written Lua scheduler (bench/minisched.lua):
-- the peer of bench/sem_nexus.lua. A counting semaphore with a FIFO queue
-- of waiters that hands a released permit straight to the first of them
-- (as nexus does); a waiter parks on a condition of its own, so a release
-- readies exactly one task. yield = back of the ready queue.
local H = require "bench.harness"
local S = require "bench.minisched"
local N = H.size("BENCH_SEM_N", 1000000)
local T = H.size("BENCH_SEM_TASKS", 4)
local per = math.floor(N / T)

local cyield = coroutine.yield
local ready, wait, signal, condition = S.ready, S.wait, S.signal, S.condition

local sem = { permits = 1, q = {}, qh = 1, qt = 0 }

local function acquire(s, me)
  if s.permits > 0 and s.qh > s.qt then
    s.permits = s.permits - 1
    return
  end
  local qt = s.qt + 1
  s.qt = qt
  s.q[qt] = me
  wait(me)                 -- the permit is handed over by release
end

local function release(s)
  local qh = s.qh
  if qh <= s.qt then
    local c = s.q[qh]
    s.q[qh] = nil
    s.qh = qh + 1
    signal(c)
  else
    s.permits = s.permits + 1
  end
end

local inside, done = 0, 0
local elapsed
local t0 = H.now()
for _ = 1, T do
  local t
  t = S.spawn(function()
    local me = condition()
    for _ = 1, per do
      acquire(sem, me)
      inside = inside + 1
      if inside ~= 1 then error("two tasks inside a semaphore of 1") end
      ready(t)             -- yield: to the back of the ready queue
      cyield()
      inside = inside - 1
      release(sem)
    end
    done = done + per
  end)
end
S.run()
elapsed = H.now() - t0
if done ~= per * T then error("sem: " .. done .. " pairs, want " .. per * T) end
H.report({ "ns_per_pair", "total_ms", "n", "tasks" },
  { ns_per_pair = elapsed / done * 1e9, total_ms = elapsed * 1e3, n = done, tasks = T })

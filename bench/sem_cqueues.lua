-- semaphore contention on cqueues: the peer of bench/sem_nexus.lua. A
-- counting semaphore on cqueues.condition (a release hands the permit to
-- one waiter with signal(1)); cqueues.poll() with no argument is the
-- yield (the coroutine runs again on the controller's next step).
local H = require "bench.harness"
local cqueues = require "cqueues"
local condition = require "cqueues.condition"
local N = H.size("BENCH_SEM_N", 1000000)
local T = H.size("BENCH_SEM_TASKS", 4)
local per = math.floor(N / T)

local poll = cqueues.poll
local sem = { permits = 1, waiting = 0, cond = condition.new() }

local function acquire(s)
  if s.permits > 0 and s.waiting == 0 then
    s.permits = s.permits - 1
    return
  end
  s.waiting = s.waiting + 1
  s.cond:wait()            -- the permit is handed over by release
end

local function release(s)
  if s.waiting > 0 then
    s.waiting = s.waiting - 1
    s.cond:signal(1)
  else
    s.permits = s.permits + 1
  end
end

local cq = cqueues.new()
local inside, done = 0, 0
local t0 = H.now()
for _ = 1, T do
  cq:wrap(function()
    for _ = 1, per do
      acquire(sem)
      inside = inside + 1
      if inside ~= 1 then error("two tasks inside a semaphore of 1") end
      poll()
      inside = inside - 1
      release(sem)
    end
    done = done + per
  end)
end
assert(cq:loop())
local elapsed = H.now() - t0
if done ~= per * T then error("sem: " .. done .. " pairs, want " .. per * T) end
H.report({ "ns_per_pair", "total_ms", "n", "tasks" },
  { ns_per_pair = elapsed / done * 1e9, total_ms = elapsed * 1e3, n = done, tasks = T })

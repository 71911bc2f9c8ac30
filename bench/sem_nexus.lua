-- semaphore contention on nexus: BENCH_SEM_TASKS tasks (default 4) share
-- nexus.semaphore(1); each does acquire, nexus.yield(), release, over and
-- over, so every acquire but the first waits and every release hands the
-- permit to the next task in line. Reported per acquire/release pair.
-- Under plain luajit and under the nexus command (nexus.run is explicit).
local H = require "bench.harness"
local nexus = require "nexus"
local N = H.size("BENCH_SEM_N", 1000000)       -- pairs in all
local T = H.size("BENCH_SEM_TASKS", 4)
local per = math.floor(N / T)

local elapsed, pairs_done
nexus.run(function()
  local sem = nexus.semaphore(1)
  local inside, done = 0, 0
  local yield = nexus.yield
  local function worker()
    for _ = 1, per do
      sem:acquire()
      inside = inside + 1
      if inside ~= 1 then error("two tasks inside a semaphore of 1") end
      yield()
      inside = inside - 1
      sem:release()
    end
    done = done + per
  end
  local hs = {}
  local t0 = H.now()
  for i = 1, T do hs[i] = nexus.spawn(worker) end
  for i = 1, T do hs[i]:join() end
  elapsed = H.now() - t0
  pairs_done = done
end)
if pairs_done ~= per * T then error("sem: " .. tostring(pairs_done) .. " pairs, want " .. per * T) end
H.report({ "ns_per_pair", "total_ms", "n", "tasks" },
  { ns_per_pair = elapsed / pairs_done * 1e9, total_ms = elapsed * 1e3, n = pairs_done, tasks = T })

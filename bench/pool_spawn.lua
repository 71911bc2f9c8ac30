-- pooled spawn vs nexus.spawn, steady state: the root spawns detached
-- trivial tasks in batches of 64 and yields so they run, N tasks in all.
-- BENCH_POOL_MODE=pooled uses a task pool of 64 (bounded) and
-- nexus.spawn_pooled; anything else uses nexus.spawn (handles dropped).
-- Reports ns per task and Lua heap growth per task (GC stopped while
-- measuring it in a second pass).
local H = require "bench.harness"
local nexus = require "nexus"
local N = H.size("BENCH_POOL_N", 200000)
local pooled = os.getenv("BENCH_POOL_MODE") == "pooled"

local rt = nexus.runtime.builder():task_pool(64, { bounded = true }):build()
local spawn = pooled and nexus.spawn_pooled or nexus.spawn
local sum = 0
local function task(i) sum = sum + i end

local function pass(n)
  local i = 0
  while i < n do
    for _ = 1, n - i < 64 and n - i or 64 do
      i = i + 1
      spawn(task, i)
    end
    nexus.yield()
  end
end

local elapsed, heap
rt:block_on(function()
  pass(64 * 16)                       -- warm up: pool, JIT, ready queue
  sum = 0
  local t0 = H.now()
  pass(N)
  elapsed = H.now() - t0
  local want = N * (N + 1) / 2
  if sum ~= want then error(("pool: wrong sum %d, want %d"):format(sum, want)) end
  collectgarbage("collect")
  collectgarbage("stop")
  local before = collectgarbage("count")
  pass(64 * 256)
  heap = (collectgarbage("count") - before) * 1024 / (64 * 256)
  collectgarbage("restart")
end)
rt:close()
H.report({ "ns_per_task", "heap_b_per_task", "n" },
  { ns_per_task = elapsed / N * 1e9, heap_b_per_task = heap, n = N })

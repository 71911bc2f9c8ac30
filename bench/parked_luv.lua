-- parked tasks over luv: N coroutines, each sleeping 3600 s on its own uv
-- timer (the sleep of bench/sleepers_luv.lua); the loop runs once without
-- blocking so every handle is live in the loop.
local H = require "bench.harness"
local uv = require "luv"
local N = H.size("BENCH_PARKED_N", 100000)

local create, resume, yield, running =
  coroutine.create, coroutine.resume, coroutine.yield, coroutine.running

local function sleep(ms)
  local co = running()
  local t = uv.new_timer()
  uv.update_time()
  t:start(ms, 0, function()
    t:close()
    assert(resume(co))
  end)
  yield()
end

local parked = 0
local function task() parked = parked + 1; sleep(3600 * 1000) end

local before = H.snapshot()
for _ = 1, N do assert(resume(create(task))) end
uv.run("nowait")
local after = H.snapshot()
assert(parked == N, "not every task parked")
H.report_parked(N, before, after)
os.exit(0)

-- chan ping-pong under luv: the same Lua channel and scheduler as
-- chan_pingpong_lua.lua (bench/luachan.lua), driven by the libuv loop as
-- bench/spawn_luv.lua drives its scheduler: one round of the ready queue
-- per loop iteration, from a uv idle callback stopped when nothing is ready.
-- BENCH_LUV_DRAIN=1: the idle callback runs the scheduler until nothing
-- is ready (no return to the loop, so no I/O poll, between hops).
local H = require "bench.harness"
local uv = require "luv"
local C = require "bench.luachan"
local N = H.size("BENCH_CHAN_N", 1000000)
local DRAIN = os.getenv("BENCH_LUV_DRAIN") == "1"

local idle = uv.new_idle()
local active = false
local round
if DRAIN then
  round = function() C.run(); idle:stop(); active = false end
else
  round = function()
    if not C.run_once() then idle:stop(); active = false end
  end
end
C.on_ready = function()
  if not active then active = true; idle:start(round) end
end

local send, recv = C.send, C.recv
local ab, ba = C.new(1), C.new(1)

local elapsed, sum
C.spawn(function()
  local t0 = H.now()
  local s = 0
  for i = 1, N do
    send(ab, i)
    s = s + recv(ba)
  end
  elapsed = H.now() - t0
  sum = s
end)
C.spawn(function()
  for _ = 1, N do send(ba, recv(ab)) end
end)
uv.run()
idle:close()
uv.run()
H.report_pingpong(N, elapsed, sum)

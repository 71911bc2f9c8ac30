-- shutdown_loop.lua: seed pattern 1, an event loop with a shutdown signal.
-- A worker does some work every 100 ms; the root task waits on the
-- runtime's shutdown signal (SIGINT or SIGTERM, through libuv signal
-- handles), then aborts the worker and says whether it was still running.
--
--   nexus examples/shutdown_loop.lua     (or luajit examples/shutdown_loop.lua)
--   then Ctrl-C, or kill -TERM <pid>: it prints the worker's state, exits 0
--
-- Gotcha (as in the seed): the shutdown signal has a single waiter. With
-- several subsystems, wait once and fan out with a cancel token: see
-- examples/cancel_tree.lua.
local nexus = require "nexus"

local rt = nexus.runtime.builder()
  :signal_handlers(true)      -- on by default under `nexus`, off under luajit
  :build()

local ticks = 0
local function do_work() ticks = ticks + 1 end

rt:block_on(function()
  local worker = nexus.spawn(function()
    while true do
      do_work()
      nexus.sleep(0.1)
    end
  end)

  local signal = nexus.shutdown_signal()
  io.stdout:write("running: Ctrl-C or SIGTERM to stop\n")
  io.stdout:flush()
  signal:wait()

  local signo = signal:signo()
  local was_running = worker:abort()
  io.stdout:write(("shutdown by %s (worker_running=%s, ticks=%d)\n"):format(
    signo == 15 and "SIGTERM" or signo == 2 and "SIGINT" or "trigger",
    tostring(was_running), ticks))
end)

rt:close()   -- closes the signal handles: the default dispositions are back

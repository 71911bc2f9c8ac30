-- cancel_tree.lua: the gotcha of seed pattern 1 (the shutdown signal has
-- a single waiter) solved as the seed says: one task waits on the signal
-- and cancels a root token; every subsystem runs under a child of it, and
-- every worker under a child of its subsystem's token.
--
-- Each subsystem's supervisor takes a drop guard on its token: when the
-- supervisor ends, for whatever reason (it returns, fails or is aborted),
-- its workers are cancelled with it. Here the "db" supervisor gives up
-- early: its workers stop, the other subsystems go on until shutdown.
--
--   nexus examples/cancel_tree.lua        triggers its own shutdown after 0.3 s
--   nexus examples/cancel_tree.lua wait   waits for Ctrl-C or SIGTERM instead
local nexus = require "nexus"

local wait_for_signal = (...) == "wait"

local function say(fmt, ...)
  io.stdout:write(fmt:format(...), "\n")
  io.stdout:flush()
end

-- Sleeps secs unless tok is cancelled first: true when cancelled.
local function sleep_or_cancelled(tok, secs)
  return nexus.timeout(secs, tok.cancelled, tok) ~= nil
end

local function worker(name, tok)
  local ticks = 0
  while not sleep_or_cancelled(tok, 0.02) do ticks = ticks + 1 end
  say("  %s: stopped after %d ticks", name, ticks)
end

-- give_up_after: the supervisor returns after that long (nil: never).
local function subsystem(name, parent, nworkers, give_up_after)
  local tok = parent:child()
  tok:drop_guard()              -- this supervisor ends => its workers stop
  local workers = {}
  for i = 1, nworkers do
    workers[i] = nexus.spawn(worker, ("%s worker %d"):format(name, i), tok:child())
  end
  if give_up_after and not sleep_or_cancelled(tok, give_up_after) then
    say("%s: giving up (its drop guard cancels its workers)", name)
    return                      -- no cancel() here: the guard does it
  end
  tok:cancelled()
  for i = 1, nworkers do workers[i]:join() end
  say("%s: all %d workers stopped", name, nworkers)
end

local rt = nexus.runtime.builder():signal_handlers(true):build()

rt:block_on(function()
  local root = nexus.cancel_token()
  local supervisors = {
    nexus.spawn(subsystem, "http", root, 3),
    nexus.spawn(subsystem, "db", root, 2, 0.1),
    nexus.spawn(subsystem, "metrics", root, 1),
  }
  if wait_for_signal then
    say("running: Ctrl-C or SIGTERM to stop")
  else
    nexus.spawn(function()
      nexus.sleep(0.3)
      nexus.shutdown_handle():trigger()
    end)
  end

  nexus.shutdown_signal():wait()  -- the one waiter
  say("shutdown: cancelling the root token")
  root:cancel()                   -- every subsystem and worker below it
  for i = 1, #supervisors do supervisors[i]:join() end
  say("all subsystems stopped")
end)

rt:close()

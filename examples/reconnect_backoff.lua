-- reconnect_backoff.lua: seed pattern 5, reconnect with exponential backoff.
-- A session that fails a few times, then connects. The delay doubles on
-- each failure up to a cap, and is reset only on a real success.
--
--   nexus examples/reconnect_backoff.lua [failures]
local nexus = require "nexus"

local failures_left = tonumber((...)) or 4
local sessions = 0

-- Stands in for a network session: fails until failures_left runs out.
local function run_session()
  sessions = sessions + 1
  nexus.sleep(0.001)                       -- the connect attempt
  if failures_left > 0 then
    failures_left = failures_left - 1
    return nil, "dropped"
  end
  return true
end

local function reconnect_loop(max_sessions)
  local backoff = nexus.backoff { initial = 0.01, max_delay = 0.04 }
  while sessions < max_sessions do
    local ok, err = run_session()
    if ok then
      print(("session %d: connected, backoff reset"):format(sessions))
      backoff:reset()
    else
      local delay = backoff:current_delay()
      print(("session %d: error %s; retry in %.0f ms"):format(sessions, err, delay * 1000))
      backoff:wait(err)
    end
  end
  return sessions
end

local t0 = nexus.now()
local n = nexus.spawn(reconnect_loop, 6):join()
print(("%d sessions in %.0f ms"):format(n, (nexus.now() - t0) * 1000))

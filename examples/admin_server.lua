-- admin_server.lua: the small HTTP side of a nexus service, for health
-- checks, metrics and a live task dump, beside the work it reports on.
--
--   nexus examples/admin_server.lua [port]
--
-- port 0 (the default) picks a free port; the server prints
-- "listening <port>" when ready. Then:
--   curl http://127.0.0.1:<port>/health    "ok" (503 "draining" once stopping)
--   curl http://127.0.0.1:<port>/metrics   rt:stats() and per-state task
--                                          counts, in Prometheus' text format
--   curl http://127.0.0.1:<port>/dump      nexus.dump(): every task, what it
--                                          waits on, for how long, its stack
-- kill -TERM the server: /health answers 503 for a moment (a load
-- balancer stops sending), then the server closes and exits 0.
--
-- The work it reports on is a few ticker tasks and a worker that waits on
-- a channel, so /dump has something to show.
local nexus = require "nexus"

local port = tonumber(arg and arg[1]) or 0
local DRAIN = tonumber(os.getenv("ADMIN_DRAIN_SECS") or "") or 0.5

local draining = false
local ticks = 0

-- The work: tickers, and a worker parked on a channel.
local jobs, inbox = nexus.channel(16)
for i = 1, 3 do
  nexus.spawn(function()
    while not draining do
      nexus.sleep(0.01 * i)
      ticks = ticks + 1
    end
  end)
end
nexus.spawn(function()
  for job in inbox:iter() do job() end
end)

-- rt:stats() and the tasks by state, as Prometheus' text exposition.
local function metrics()
  local out = {}
  local stats = nexus.runtime.current():stats()
  local names = {}
  for k, v in pairs(stats) do
    if type(v) == "number" then names[#names + 1] = k end
  end
  table.sort(names)
  for _, k in ipairs(names) do
    out[#out + 1] = ("nexus_%s %s"):format(k, stats[k])
  end
  local states = {}
  for _, t in ipairs(nexus.tasks()) do
    states[t.state] = (states[t.state] or 0) + 1
  end
  for state, n in pairs(states) do
    out[#out + 1] = ('nexus_tasks{state="%s"} %d'):format(state, n)
  end
  out[#out + 1] = "app_ticks " .. ticks
  return table.concat(out, "\n") .. "\n"
end

local TEXT = { ["content-type"] = "text/plain; charset=utf-8" }

local routes = {
  ["/health"] = function()
    if draining then return 503, TEXT, "draining\n" end
    return 200, TEXT, "ok\n"
  end,
  ["/metrics"] = function() return 200, { ["content-type"] = "text/plain; version=0.0.4" }, metrics() end,
  ["/dump"] = function() return 200, TEXT, nexus.dump() end,
}

local srv = assert(nexus.http.listen("127.0.0.1", port, function(req)
  local route = routes[req.path]
  if not route then return 404, TEXT, "not found\n" end
  if req.method ~= "GET" and req.method ~= "HEAD" then
    return 405, { allow = "GET, HEAD", ["content-type"] = TEXT["content-type"] }, "method not allowed\n"
  end
  return route(req)
end))
local _, _, bound = srv:local_addr()
print("listening " .. bound)
io.stdout:flush()

-- SIGTERM/SIGINT: fail the health check first, then stop.
nexus.shutdown_signal():wait()
draining = true
nexus.sleep(DRAIN)
srv:close()
jobs:close()
print("stopped")

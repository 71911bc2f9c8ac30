-- examples/admin_server.lua, driven by curl: /health, /metrics (rt:stats()
-- and tasks by state), /dump (nexus.dump()), 404 and 405, and a SIGTERM
-- that fails the health check before the server stops and exits 0.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local N = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "net_helpers.lua")

local root = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "../"
local server

teardown(function()
  if server then N.kill(server, "KILL"); N.finish(server) end
end)

-- status and body of a curl request
local function get(url, extra)
  -- (not under the sanitizer build's preload, where curl hangs)
  local r = H.sh("env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS curl -s -w '\\n%{http_code}' " .. (extra or "") .. " " .. H.q(url))
  local body, code = r.out:match("^(.*)\n(%d+)$")
  return tonumber(code), body
end

describe("examples/admin_server.lua", function()
  it("serves /health, /metrics and /dump, and drains on SIGTERM", function()
    server = N.spawn("env ADMIN_DRAIN_SECS=1 " .. N.nexus(H.q(root .. "examples/admin_server.lua") .. " 0"))
    local port = assert(N.expect(server, "^listening (%d+)"))
    local base = "http://127.0.0.1:" .. port
    assert.same({ 200, "ok\n" }, { get(base .. "/health") })
    local code, metrics = get(base .. "/metrics")
    assert.equal(200, code)
    local alive = tonumber(metrics:match("\nnexus_tasks_alive (%d+)\n"))
    assert.truthy(alive and alive >= 6, metrics)        -- root, 3 tickers, worker, accept loop, this request
    assert.truthy(metrics:find('nexus_tasks{state="waiting"} %d+'), metrics)
    assert.truthy(tonumber(metrics:match("\nnexus_spawned (%d+)\n")) >= alive, metrics)
    local _, dump = get(base .. "/dump")
    assert.truthy(dump:find("waiting on channel recv", 1, true), dump)
    assert.truthy(dump:find("admin_server.lua:%d+"), dump)
    assert.same({ 404, "not found\n" }, { get(base .. "/nope") })
    assert.equal(405, (get(base .. "/health", "-X POST")))
    N.kill(server, "TERM")
    local t0 = os.time()
    local seen
    repeat
      seen = get(base .. "/health")
    until seen == 503 or os.time() - t0 > 5
    assert.equal(503, seen)
    local rest = N.finish(server)
    server = nil
    assert.truthy(rest:find("stopped\n", 1, true), rest)
  end)
end)

-- ref_price_refresh.lua: seed pattern 6 (a bridge for cold-path work:
-- refreshing a World resource from a REST endpoint), for real. An
-- interval GETs a reference price over HTTP or HTTPS with nexus.http
-- (libcurl on nexus's own loop: the request suspends this task only),
-- parses it and writes it into the World inside with_world, while a
-- hot-path task keeps ticking.
--
--   nexus examples/ref_price_refresh.lua [refreshes] [url [ca_file]]
--
-- Without a url the example serves the prices itself, on 127.0.0.1, with
-- nexus.http.listen: a slow endpoint (50 ms per answer) that returns
-- {"px": 100.25}, then 100.50, and so on.
local nexus = require "nexus"

local refreshes = tonumber((...)) or 3
local url, ca_file = select(2, ...)

-- The price service, on nexus.http.listen: a slow upstream that answers
-- each GET /price with the next price.
local function serve()
  local n = 0
  return assert(nexus.http.listen("127.0.0.1", 0, function(req)
    if req.path ~= "/price" then return 404, nil, "no such thing\n" end
    nexus.sleep(0.05)                              -- the slow upstream
    n = n + 1
    return 200, { ["content-type"] = "application/json" }, ('{"px": %.2f}'):format(100 + n * 0.25)
  end))
end

local world = nexus.world.builder()
  :register("RefPrice", { px = 0, updates = 0 })
  :build()

local rt = nexus.runtime.builder(world):build()
rt:block_on(function()
  local srv
  if not url then
    srv = serve()
    url = "http://" .. srv:local_addr() .. "/price"
  end
  local hot_ticks = 0
  local hot = nexus.spawn(function()              -- the hot path
    while true do
      nexus.sleep(0.005)
      hot_ticks = hot_ticks + 1
    end
  end)
  local ctx = nexus.world_ctx()
  local tick = nexus.interval(0.1)
  local opts = { timeout = 2, tls = ca_file and { ca_file = ca_file } or nil }
  for i = 1, refreshes do
    tick:tick()
    local before = hot_ticks
    local res, err = nexus.http.get(url, opts)
    local px = res and res.status == 200 and tonumber(res.body:match('"px"%s*:%s*([%d.]+)'))
    if not px then
      print(("refresh %d: failed (%s); RefPrice kept"):format(i, tostring(err or (res and res.status))))
    else
      -- Synchronous: nothing suspends while the World is borrowed.
      ctx:with_world(function(w)
        local ref = w:resource("RefPrice")
        ref.px, ref.updates = px, ref.updates + 1
      end)
      print(("refresh %d: RefPrice %.2f (the hot path ticked %d times during the fetch)")
        :format(i, px, hot_ticks - before))
    end
  end
  hot:abort()
  if srv then srv:close() end
end)

local ref = world:resource("RefPrice")
print(("%d updates, last %.2f"):format(ref.updates, ref.px))
rt:close()

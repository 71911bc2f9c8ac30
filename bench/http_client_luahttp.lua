-- bench/http_client_luahttp.lua: lua-http's client on cqueues in the HTTP
-- client benchmark (bench/http_client.sh). lua-http 0.4's request:go()
-- opens a new connection per request (it has no pool), so each of the
-- INFLIGHT coroutines opens one HTTP/1.1 connection (http.client.connect)
-- and runs its GETs on it one after the other (conn:new_stream), the
-- keep-alive the other clients get from their libraries.
--   luajit bench/http_client_luahttp.lua URL [N [INFLIGHT [WARMUP]]]
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local cqueues = require "cqueues"
local client = require "http.client"
local new_headers = require "http.headers".new
local c = dofile(dir .. "http_count.lua").new({ ... })

local cq = cqueues.new()
local function worker()
  local conn = assert(client.connect{ host = c.host, port = c.port, tls = false, version = 1.1 })
  local authority = c.host .. ":" .. c.port
  while c.take() do
    local h = new_headers()
    h:append(":method", "GET")
    h:append(":scheme", "http")
    h:append(":authority", authority)
    h:append(":path", c.path)
    local stream = conn:new_stream()
    local ok, err = stream:write_headers(h, true)
    local rh
    if ok then rh, err = stream:get_headers() end
    if rh then
      local body, berr = stream:get_body_as_string()
      c.done(tonumber(rh:get(":status")), body or berr)
    else
      c.done(nil, err)
    end
  end
  conn:close()
end
for _ = 1, c.inflight do cq:wrap(worker) end
assert(cq:loop())
c.report()

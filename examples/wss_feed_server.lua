-- wss_feed_server.lua: the local test exchange for wss_feed.lua. A
-- WebSocket server over TLS: a client sends {"op":"subscribe","symbol":S},
-- gets {"type":"subscribed","symbol":S}, then a tick every 10 ms:
-- {"type":"tick","symbol":S,"px":P,"qty":Q}. The first session is dropped
-- after `drop_after` ticks (a flaky exchange), so the client's reconnect
-- shows; later sessions run until the client goes.
--
--   nexus examples/wss_feed_server.lua PORT CERT_FILE KEY_FILE [drop_after]
local nexus = require "nexus"

local port, cert, key = tonumber(arg[1]), arg[2], arg[3]
local drop_after = tonumber(arg[4]) or 5
assert(port and cert and key, "usage: wss_feed_server.lua PORT CERT_FILE KEY_FILE [drop_after]")

local wl = assert(nexus.websocket.listen("127.0.0.1", port, { tls = { cert_file = cert, key_file = key } }))
print("listening " .. tostring(wl:local_addr()):match("(%d+)$"))
io.stdout:flush()

local sessions, px = 0, 100
local function session(ws, n)
  local msg = ws:recv()
  local symbol = msg and msg:match('"op"%s*:%s*"subscribe".-"symbol"%s*:%s*"([%w_]+)"')
  if not symbol then return ws:close(1008, "expected a subscription") end
  assert(ws:send(('{"type":"subscribed","symbol":"%s"}'):format(symbol), "text"))
  local sent = 0
  while true do
    nexus.sleep(0.01)
    px = px + 0.5
    sent = sent + 1
    if not ws:send(('{"type":"tick","symbol":"%s","px":%.2f,"qty":%d}'):format(symbol, px, sent), "text") then
      return
    end
    if n == 1 and sent == drop_after then return ws:close(1001, "going away") end
  end
end

nexus.spawn(function()
  nexus.shutdown_signal():wait()
  wl:close()
end)
while true do
  local ws = wl:accept()
  if not ws then break end
  sessions = sessions + 1
  nexus.spawn(session, ws, sessions)
end

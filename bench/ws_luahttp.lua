-- bench/ws_luahttp.lua PORT: the WebSocket echo server on lua-http
-- (Debian's lua-http: http.server and http.websocket on cqueues). Each
-- connection's stream is upgraded with websocket.new_from_stream and
-- ws:accept(), then every message is sent back as it came
-- (ws:receive() -> ws:send(data, opcode)). Prints "listening <port>" once
-- ready (PORT 0: any free port). TCP_NODELAY on every connection.
local http_server = require "http.server"
local websocket = require "http.websocket"
local port = tonumber(arg[1]) or 0

local srv = assert(http_server.listen {
  host = "127.0.0.1",
  port = port,
  reuseaddr = true,
  onstream = function(_, stream)
    local headers = assert(stream:get_headers())
    local ws = websocket.new_from_stream(stream, headers)
    if not ws then
      stream:shutdown()
      return
    end
    assert(ws:accept())
    local sock = stream.connection.socket
    if sock and sock.setnodelay then sock:setnodelay(true) end
    while true do
      local data, opcode = ws:receive()
      if not data then break end
      if not ws:send(data, opcode) then break end
    end
    ws:close()
  end,
  onerror = function(_, ctx, op, err)
    io.stderr:write("ws_luahttp: ", tostring(op), ": ", tostring(err), "\n")
  end,
})
assert(srv:listen())
local _, _, bound = srv:localname()
io.stdout:write("listening ", assert(tonumber(bound), "no port"), "\n")
io.stdout:flush()
assert(srv:loop())

-- bench/ws_nexus.lua PORT [MODE]: the WebSocket echo server on nexus
-- (nexus.websocket): an accept loop in the root task and one task per
-- connection. Prints "listening <port>" once ready (PORT 0: any free port).
-- MODE:
--   string    (default) d, kind = ws:recv(); ws:send(d, kind)
--   zerocopy  ws:recv_into(tx) moves the messages into a byte channel in
--             C; a second task sends each one back with ws:send(m, kind,
--             more) from the channel's bytes: no Lua string per message
--             (more: another message waits in the channel, so the output
--             is gathered into one write)
-- TCP_NODELAY on every connection, as every server of the benchmark.
-- Runs under the nexus command (bench/ws_bench.sh) and under luajit.
local nexus = require "nexus"
local port = tonumber(arg[1]) or 0
local mode = arg[2] or "string"

local function echo_string(ws)
  while true do
    local d, kind = ws:recv()
    if not d or not ws:send(d, kind) then break end
  end
end

local function echo_zerocopy(ws)
  local tx, rx = nexus.channel.bytes(64 * 1024)
  local kinds, nk = {}, 0            -- one entry per run of one kind
  local sender = nexus.spawn(function()
    local i, left = 0, 0
    for m in rx:iter() do
      while left == 0 do
        i = i + 1
        left = kinds[i * 2 - 1]
      end
      left = left - 1
      -- more = rx:len() > 0: the next message is there, gather the output
      if not ws:send(m, kinds[i * 2], rx:len() > 0) then break end
      if left == 0 then kinds[i * 2 - 1], kinds[i * 2] = nil, nil end
    end
  end)
  while true do
    local n, kind = ws:recv_into(tx)
    if not n then break end
    if n > 0 then
      nk = nk + 1
      kinds[nk * 2 - 1], kinds[nk * 2] = n, kind
    end
  end
  tx:close()
  sender:join()
end

local session = mode == "zerocopy" and echo_zerocopy or echo_string
if mode ~= "string" and mode ~= "zerocopy" then error("ws_nexus.lua: unknown mode " .. mode) end

nexus.run(function()
  local wl = assert(nexus.websocket.listen("127.0.0.1", port, { backlog = 511 }))
  local _, _, bound = wl:local_addr()
  io.stdout:write("listening ", assert(tonumber(bound), "no port in local_addr()"), "\n")
  io.stdout:flush()
  while true do
    local ws, err = wl:accept()
    if not ws then error("accept: " .. tostring(err)) end
    ws.s:set_nodelay(true)
    nexus.spawn(function()
      session(ws)
      ws:close()
    end)
  end
end)

-- heartbeat_split.lua: seed pattern 3, a session that sends heartbeats
-- AND reads frames, split into tasks joined by a channel (no select loop).
--
--   reader    reads frames from the connection with a read timeout and
--             forwards them to the consumer through a channel of 64
--   heartbeat writes PING on its own cadence (interval, "delay")
--   consumer  processes frames until the channel is closed and drained
--
-- There is no network here: the "connection" is a pair of channels and a
-- peer task at the other end. The peer sends five quotes 10 ms apart, reads
-- every PING, and then goes silent without closing: the reader's timeout
-- notices the dead session. Runs under `nexus` and under plain `luajit`.
local nexus = require "nexus"

local READ_TIMEOUT = 0.05      -- a live peer sends something this often
local HEARTBEAT = 0.015

-- The connection: what the peer sends us, and what we write to it.
local function connect()
  local down_tx, down_rx = nexus.channel(16)   -- peer -> us
  local up_tx, up_rx = nexus.channel(16)       -- us -> peer
  local peer = { pings = 0 }
  peer.sender = nexus.spawn(function()
    for i = 1, 5 do
      nexus.sleep(0.01)
      down_tx:send("quote " .. i)
    end
    -- then silence: down_tx stays open, nothing more is sent
    nexus.sleep(math.huge)
  end)
  peer.listener = nexus.spawn(function()
    for frame in up_rx:iter() do
      if frame == "PING" then peer.pings = peer.pings + 1 end
    end
  end)
  local conn = {}
  function conn.read_frame() return down_rx:recv() end
  function conn.write_frame(f) return up_tx:send(f) end
  function conn.close()
    up_tx:close()
    down_rx:close()
    peer.sender:abort()
  end
  return conn, peer
end

nexus.run(function()
  local conn, peer = connect()
  local frame_tx, frame_rx = nexus.channel(64)

  -- Reader: one read at a time, each with a timeout for liveness.
  local reader = nexus.spawn(function()
    while true do
      local ok, frame, err = nexus.timeout(READ_TIMEOUT, conn.read_frame)
      if not ok then
        print(("reader: no frame for %d ms, the session is dead (%s)"):format(READ_TIMEOUT * 1000, frame))
        break
      elseif frame == nil then
        print("reader: connection " .. err)
        break
      end
      if not frame_tx:send(frame) then break end   -- the consumer is gone
    end
    frame_tx:close()                               -- the consumer drains, then ends
  end)

  -- Heartbeat: independent cadence; aborted when the session ends.
  local sent = 0
  local hb = nexus.spawn(function()
    local iv = nexus.interval(HEARTBEAT)
    iv:set_missed_tick_behavior("delay")
    while true do
      iv:tick()
      if not conn.write_frame("PING") then break end
      sent = sent + 1
    end
  end)

  -- Consumer: processes frames in order until the channel is closed.
  local consumer = nexus.spawn(function()
    local n = 0
    for frame in frame_rx:iter() do
      n = n + 1
      print(("consumer: frame %d: %s"):format(n, frame))
    end
    print(("consumer: channel closed after %d frames"):format(n))
    return n
  end)

  reader:join()
  hb:abort()
  local frames = consumer:join()
  conn.close()
  peer.listener:join()
  print(("heartbeat: %d pings sent while the session lived, %d seen by the peer"):format(sent, peer.pings))
  assert(frames == 5 and peer.pings == sent)
end)

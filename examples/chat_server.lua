-- chat_server.lua: a line-based TCP chat. Each line a client sends is
-- broadcast to every other client as "<id>: <line>".
--
--   nexus examples/chat_server.lua [port] [queue]
--
-- port 0 (the default) picks a free port; the server prints
-- "listening <port>" when ready and greets each client with
-- "welcome <id>" once it is registered (a client that waits for the
-- greeting receives every line broadcast after it). Try: nc 127.0.0.1
-- <port> in two terminals, then kill -TERM the server: it ends every
-- session and exits 0.
--
-- The parts:
-- * Sessions run in a nexus.scope, with the accept loop and the shutdown
--   watcher: the scope returns once all of them have ended, and an error
--   in any of them is not lost (it ends the server, with its traceback).
-- * Each client has an outbox, a bounded nexus.channel of `queue` lines
--   (default 256), drained by the client's writer task. A broadcast never
--   waits: it try_sends to each outbox, and a client whose outbox is full
--   (it stopped reading, and its socket buffers are full too) is dropped,
--   so one slow client cannot stall the room.
-- * Each session waits with nexus.select(token:cancelled_op(),
--   stream:read_line_op()): the token first, so cancelling it (a drop, or
--   the shutdown) ends the session even with lines still buffered, and
--   wherever it is waiting, with no watcher task closing the stream to
--   wake a blocked read. A losing read consumes nothing.
-- * Fairness: a session that finds hundreds of lines already buffered
--   broadcasts them without ever having to wait; no nexus.yield() per line
--   here: the runtime's cooperative budget (builder:coop_budget, default
--   128) is what makes such a task yield now and then (every select
--   spends one unit), so the writers run; docs/compose.md, "The
--   cooperative budget".
-- * Shutdown: SIGTERM or SIGINT (nexus.shutdown_signal()) cancels the
--   root token, every session's token is its child, and closing the
--   listener ends the accept loop.
local nexus = require "nexus"

local port = tonumber(arg and arg[1]) or 0
local QUEUE = tonumber(arg and arg[2]) or 256
local MAX_LINE = 4096     -- a longer line ends the session ("too long")

local function say(fmt, ...)
  io.stdout:write(fmt:format(...), "\n")
  io.stdout:flush()
end

local clients = {}        -- id -> { outbox = tx, token = tok }
local root = nexus.cancel_token()

-- Sends line to every client but the sender; drops those that cannot keep up.
local function broadcast(from, line)
  local msg = from .. ": " .. line .. "\n"
  for id, c in pairs(clients) do
    if id ~= from and not c.token:is_cancelled() then
      local ok, err = c.outbox:try_send(msg)
      if not ok and err == "full" then
        c.why = ("slow: %d lines queued"):format(QUEUE)
        c.token:cancel()                 -- its session ends at its select
      end
    end
  end
end

local function session(id, stream, peer)
  local token = root:child()
  local outbox, pending = nexus.channel(QUEUE)
  local me = { outbox = outbox, token = token }
  nexus.scope(function(s)
    -- The writer: the outbox to the socket, until the outbox is closed.
    -- Each turn takes everything queued (one write for many lines), so a
    -- writer keeps up with a sender that broadcasts many lines per turn.
    s:spawn(function()
      local batch = {}
      while true do
        local msg = pending:recv()
        if msg == nil then return end                 -- closed and drained
        batch[1] = msg
        local n = 1
        while n < QUEUE do
          msg = pending:try_recv()
          if msg == nil then break end
          n = n + 1
          batch[n] = msg
        end
        if not stream:write(table.concat(batch, "", 1, n)) then
          me.why = me.why or "write failed"
          token:cancel()
          return
        end
      end
    end)
    clients[id] = me
    outbox:try_send("welcome " .. id .. "\n")
    say("session %d: joined from %s", id, peer)

    -- The reader is the session itself: no watcher task, no close() to
    -- wake it. Ops are built once and reused by every select.
    local cancelled, next_line = token:cancelled_op(), stream:read_line_op(MAX_LINE)
    while true do
      local i, line, err = nexus.select(cancelled, next_line)   -- the token first
      if i == 1 then break end
      if line == nil then
        me.why = "left: " .. tostring(err)
        break
      end
      broadcast(id, line)
    end

    clients[id] = nil
    outbox:close()
    stream:close()              -- ends the writer, even one blocked in write
  end)
  say("session %d: ended (%s)", id, me.why or (root:is_cancelled() and "shutdown") or "cancelled")
end

local rt = nexus.runtime.builder()
  :signal_handlers(true)      -- on by default under `nexus`, off under luajit
  :build()

rt:block_on(function()
  local ln = assert(nexus.tcp.listen("127.0.0.1", port))
  local _, _, bound = ln:local_addr()
  say("listening %d", bound)

  local count = 0
  nexus.scope(function(s)
    s:spawn(function()
      local sig = nexus.shutdown_signal()
      sig:wait()
      say("shutdown: ending %d session(s)", (function()
        local n = 0
        for _ in pairs(clients) do n = n + 1 end
        return n
      end)())
      root:cancel()
      ln:close()                -- ends the accept loop below
    end)
    while true do
      local stream, peer = ln:accept()
      if not stream then break end
      count = count + 1
      s:spawn(session, count, stream, peer)
    end
  end)
  say("shutdown: every session ended (%d served)", count)
end)

rt:close()

-- wss_feed.lua: seed patterns 2 and 5 for real: a market-data client on
-- wss:// that subscribes, feeds every tick through a pre-resolved World
-- handler, and reconnects with nexus.backoff when the exchange drops it.
-- The gotcha of pattern 5: the backoff is reset only after a real
-- subscription reply, not as soon as the TCP/TLS connection opens (an
-- exchange that accepts and then refuses would otherwise be hammered).
--
--   nexus examples/wss_feed.lua URL CA_FILE [ticks]
local nexus = require "nexus"

local url, ca_file = arg[1], arg[2]
local want = tonumber(arg[3]) or 12
assert(url and ca_file, "usage: wss_feed.lua URL CA_FILE [ticks]")

local world = nexus.world.builder()
  :register("Book", "struct { double last; double volume; uint64_t ticks; }", { last = 0 })
  :build()

-- The hot path: resolved once, here; called for every tick with one
-- event (a table reused for every message: nothing allocated per tick).
local on_tick = world:handler(function(book, tick)
  book.last = tick.px
  book.volume = book.volume + tick.qty
  book.ticks = book.ticks + 1
end, "Book")
local tick = { px = 0, qty = 0 }

local rt = nexus.runtime.builder(world):build()
local reconnects = 0
rt:block_on(function()
  local book = world:resource("Book")
  local backoff = nexus.backoff { initial = 0.05, max_delay = 1, max_retries = 8 }
  while tonumber(book.ticks) < want do
    local ws, err = nexus.websocket.connect(url, { tls = { ca_file = ca_file }, timeout = 5 })
    if ws then
      ws:send('{"op":"subscribe","symbol":"BTC"}', "text")
      local _, reply = nexus.timeout(2, ws.recv, ws)   -- an exchange that never answers
      if reply and reply:find('"type":"subscribed"', 1, true) then
        backoff:reset()                  -- only now: a real subscription
        print("subscribed")
        while tonumber(book.ticks) < want do
          local msg, e, code, reason = ws:recv()
          if not msg then
            err = ("closed %s %s"):format(tostring(code or e), tostring(reason or ""))
            break
          end
          local px, qty = msg:match('"px":([%d.]+),"qty":(%d+)')
          if px then
            tick.px, tick.qty = tonumber(px), tonumber(qty)
            on_tick(tick)
          end
        end
      else
        err = "no subscription reply"
        ws:close(1000, "no reply")
      end
      if tonumber(book.ticks) >= want then ws:close(1000, "done") break end
    end
    reconnects = reconnects + 1
    print(("disconnected (%s); reconnecting in %.0f ms"):format(err, backoff:current_delay() * 1000))
    assert(backoff:wait(err), "gave up")
  end
end)
local book = world:resource("Book")
print(("%d ticks, last %.2f, volume %d, %d reconnects"):format(tonumber(book.ticks), book.last,
  book.volume, reconnects))
rt:close()

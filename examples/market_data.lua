-- market_data.lua: pre-resolved handler dispatch (seed pattern 7).
--
-- A market-data loop that resolves its handler once and dispatches every
-- tick through it. The order book lives in the World as C memory; the
-- handler is C (examples/handlers, loaded with ffi.load); ticks are
-- received in a task and each is applied inside ctx:with_world.
--
--   nexus examples/market_data.lua [ticks] [path/to/liborderbook.so]
--
-- Build the library first (docs/world.md):
--   cmake -S examples/handlers -B examples/handlers/build -DCMAKE_PREFIX_PATH=<nexus prefix>
--   cmake --build examples/handlers/build
local ffi = require "ffi"
local nexus = require "nexus"
math.randomseed(7)

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local ob = dofile(here .. "handlers/orderbook.lua")

local N = tonumber(arg and arg[1]) or 1000
local lib, libpath = ob.load(arg and arg[2])

local world = nexus.world.builder()
  :register("Book", "ob_book")                      -- zeroed
  :register("LuaBook", "ob_book")                   -- the Lua handler's copy
  :register("Config", "ob_config", { tick_size = 0.25, max_qty = 500, depth = 5 })
  :register("Feed", { packets = 0 })                -- a plain Lua resource
  :build()

-- Resolve once, dispatch many: names are looked up here, not per tick.
local on_tick = world:handler(lib.ob_on_tick, "Book", nexus.res("Config"))
local on_tick_lua = world:handler(ob.on_tick, "LuaBook", nexus.res("Config"))

-- The exchange: ticks arrive in packets of up to 8; receiving the next
-- packet suspends the task (a short sleep stands in for the socket). The
-- quotes come from ob.feed: levels around a drifting mid on a 0.25 grid,
-- about one tick in 40 bad (off the grid or too large: refused).
local next_quote = ob.feed(42)
local in_packet = 0

local function recv_tick(t)
  if in_packet == 0 then
    nexus.sleep(0.0005)
    in_packet = math.random(8)
    local feed = world:resource("Feed")
    feed.packets = feed.packets + 1
  end
  in_packet = in_packet - 1
  next_quote(t)
end

local wptr = world:ptr()            -- the World as C sees it (nexus_world *)

-- Runs inside with_world: w is the World, borrowed for the call.
local function dispatch(w, t)
  lib.ob_stamp(wptr, t)             -- C takes the World's next sequence number
  on_tick:run(t)
  on_tick_lua:run(t)
end

local rt = nexus.runtime.builder(world):build()
local elapsed = rt:block_on(function()
  local consumer = nexus.spawn(function()
    local ctx = nexus.world_ctx()
    local t = ffi.new("ob_tick")   -- one event, reused
    local t0 = nexus.now()
    for _ = 1, N do
      recv_tick(t)                  -- suspends between packets
      ctx:with_world(dispatch, t)   -- synchronous: no suspension inside
    end
    return nexus.now() - t0
  end)
  return consumer:join()
end)
rt:close()

local function show(name, s)
  local lv = {}
  for i = #s.bid, 1, -1 do lv[#lv + 1] = ("%.2f x %g"):format(s.bid[i][1], s.bid[i][2]) end
  lv[#lv + 1] = "|"
  for i = 1, #s.ask do lv[#lv + 1] = ("%.2f x %g"):format(s.ask[i][1], s.ask[i][2]) end
  print(("%s: mid %.3f  updates %d  rejected %d  last_seq %d"):format(
    name, s.mid, s.updates, s.rejected, s.last_seq))
  print("  " .. table.concat(lv, "  "))
end

local c = ob.snapshot(world:resource("Book"))
local l = ob.snapshot(ffi.cast("ob_book *", world:resource("LuaBook")))
print(("%d ticks in %d packets through %s in %.1f ms"):format(
  N, world:resource("Feed").packets, libpath:match("[^/]*$"), elapsed * 1e3))
show("C handler", c)
show("Lua handler", l)
local same = c.mid == l.mid and c.updates == l.updates and c.rejected == l.rejected
  and #c.bid == #l.bid and #c.ask == #l.ask
for i = 1, #c.bid do same = same and c.bid[i][1] == l.bid[i][1] and c.bid[i][2] == l.bid[i][2] end
for i = 1, #c.ask do same = same and c.ask[i][1] == l.ask[i][1] and c.ask[i][2] == l.ask[i][2] end
print("books agree: " .. tostring(same))
print("sequence: " .. world:current_sequence())

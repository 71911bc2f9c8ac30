-- world: dispatch of N market-data ticks to the order-book handler of
-- examples/handlers, one way per run:
--
--   luajit bench/world_dispatch.lua MODE path/to/liborderbook.so
--
--   direct         ob_on_tick(book, cfg, t), the pointers in locals (reference)
--   handler        world:handler(lib.ob_on_tick, "Book", nexus.res("Config")) : h:run(t)
--   call           the same handler called as h(t) (__call)
--   lua            the Lua twin of ob_on_tick as a handler: h:run(t)
--   touch-direct   ob_touch (counts the tick: nothing but the call) called directly
--   touch-handler  ob_touch through a handler
--
-- Every mode walks the same ring of 4096 pre-generated ticks (ob.feed),
-- stamping each with a fresh sequence number, in a JIT-compiled loop,
-- after a warm-up. Prints ns per dispatch and the book's counters (the
-- same work in every mode that runs ob_on_tick or its twin).
local H = require "bench.harness"
local ffi = require "ffi"
local nexus = require "nexus"
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local ob = dofile(here .. "../examples/handlers/orderbook.lua")

local MODE, LIB = arg[1], arg[2]
local N = H.size("BENCH_WORLD_N", 10000000)
local lib = ob.load(LIB)

local world = nexus.world.builder()
  :register("Book", "ob_book")
  :register("Config", "ob_config", { tick_size = 0.25, max_qty = 500, depth = 5 })
  :build()

local RING = 4096
local ticks = ffi.new("ob_tick[?]", RING)
local feed = ob.feed(1)
for i = 0, RING - 1 do feed(ticks[i]) end
local band = bit.band

-- One function per mode, each its own prototype with the same shape, so
-- the JIT treats every loop alike (constant upvalues folded the same way).
local loops = {}

function loops.direct(n, s0)
  local book = world:resource("Book")
  local cfg = ffi.cast("const ob_config *", world:resource("Config"))
  local f = lib.ob_on_tick
  for i = s0, s0 + n - 1 do
    local t = ticks + band(i, RING - 1)
    t.seq = i
    f(book, cfg, t)
  end
end

local on_tick = world:handler(lib.ob_on_tick, "Book", nexus.res("Config"))
function loops.handler(n, s0)
  local h = on_tick
  for i = s0, s0 + n - 1 do
    local t = ticks + band(i, RING - 1)
    t.seq = i
    h:run(t)
  end
end

function loops.call(n, s0)
  local h = on_tick
  for i = s0, s0 + n - 1 do
    local t = ticks + band(i, RING - 1)
    t.seq = i
    h(t)
  end
end

local on_tick_lua = world:handler(ob.on_tick, "Book", nexus.res("Config"))
function loops.lua(n, s0)
  local h = on_tick_lua
  for i = s0, s0 + n - 1 do
    local t = ticks + band(i, RING - 1)
    t.seq = i
    h:run(t)
  end
end

loops["touch-direct"] = function(n, s0)
  local book = world:resource("Book")
  local cfg = ffi.cast("const ob_config *", world:resource("Config"))
  local f = lib.ob_touch
  for i = s0, s0 + n - 1 do
    local t = ticks + band(i, RING - 1)
    t.seq = i
    f(book, cfg, t)
  end
end

local touch = world:handler(lib.ob_touch, "Book", nexus.res("Config"))
loops["touch-handler"] = function(n, s0)
  local h = touch
  for i = s0, s0 + n - 1 do
    local t = ticks + band(i, RING - 1)
    t.seq = i
    h:run(t)
  end
end

local loop = assert(loops[MODE], "usage: world_dispatch.lua direct|handler|call|lua|touch-direct|touch-handler LIB")
local WARM = 200000
loop(WARM, 1)
local t0 = H.now()
loop(N, WARM + 1)
local elapsed = H.now() - t0
local book = world:resource("Book")
assert(book.updates + book.rejected == WARM + N, "the handler did not see every tick")
H.report({ "ns_per_op", "n", "updates", "rejected" }, {
  ns_per_op = elapsed / N * 1e9, n = N,
  updates = tonumber(book.updates), rejected = tonumber(book.rejected),
})

-- orderbook.lua - the Lua side of the order-book handler library:
-- its declarations (mirroring orderbook.h), a loader, and on_tick written
-- in Lua over the same C structs (the Lua twin of the C handler).
--
--   local ob = dofile("examples/handlers/orderbook.lua")
--   local lib = ob.load(path)      -- ffi.load + a layout check
local ffi = require "ffi"

local M = {}

M.DEPTH = 8
M.BID, M.ASK = 0, 1

-- Guarded: a second load of this file must not redefine the types.
if not pcall(ffi.typeof, "ob_book") then
  ffi.cdef [[
typedef struct nexus_world nexus_world;
typedef struct ob_level { double px, qty; } ob_level;
typedef struct ob_book {
  ob_level bid[8];
  ob_level ask[8];
  uint32_t nbid, nask;
  double mid;
  uint64_t updates;
  uint64_t rejected;
  uint64_t last_seq;
} ob_book;
typedef struct ob_config { double tick_size; double max_qty; uint32_t depth; } ob_config;
typedef struct ob_tick { uint64_t seq; double px, qty; uint32_t side; } ob_tick;
void ob_on_tick(ob_book *book, const ob_config *cfg, const ob_tick *t);
void ob_touch(ob_book *book, const ob_config *cfg, const ob_tick *t);
ob_book *ob_find_book(nexus_world *w);
uint64_t ob_stamp(nexus_world *w, ob_tick *t);
size_t ob_sizeof(int which);
]]
end

-- Where the library may be, relative to this file, when no path is given.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
-- NEXUS_ORDERBOOK_LIB first when set (a nil first entry would end the
-- list for ipairs before the others).
M.candidates = {
  here .. "build/liborderbook.so",
  here .. "../../build/examples/handlers/liborderbook.so",
}
local env_lib = os.getenv("NEXUS_ORDERBOOK_LIB")
if env_lib and env_lib ~= "" then table.insert(M.candidates, 1, env_lib) end

-- ffi.load the library (path, or the first candidate that exists) and
-- check that the declarations above match the compiled structs.
function M.load(path)
  if not path then
    for _, p in ipairs(M.candidates) do
      local f = p and io.open(p, "rb")
      if f then f:close(); path = p; break end
    end
  end
  if not path then
    error("orderbook: liborderbook.so not found; build it with\n"
      .. "  cmake -S examples/handlers -B examples/handlers/build -DCMAKE_PREFIX_PATH=<nexus prefix>\n"
      .. "  cmake --build examples/handlers/build\n"
      .. "or set NEXUS_ORDERBOOK_LIB", 2)
  end
  local ok, lib = pcall(ffi.load, path)
  if not ok then error(("orderbook: cannot load %s: %s"):format(path, tostring(lib)), 2) end
  for i, t in ipairs({ "ob_book", "ob_config", "ob_tick" }) do
    local c = tonumber(lib.ob_sizeof(i - 1))
    if c ~= ffi.sizeof(t) then
      error(("orderbook: %s is %d bytes in %s but %d in the ffi.cdef"):format(t, c, path, ffi.sizeof(t)), 2)
    end
  end
  return lib, path
end

-- The Lua twin of ob_on_tick: same rules, same arithmetic, same result.
-- One level function per side, so each comparison is fixed in its trace.
local floor, abs, huge = math.floor, math.abs, math.huge

-- Removes level i of n (returns the new count).
local function remove_level(lv, n, i)
  for j = i, n - 2 do lv[j].px, lv[j].qty = lv[j + 1].px, lv[j + 1].qty end
  return n - 1
end

-- Inserts px, qty at i of n, dropping the worst level of a full side.
local function insert_level(lv, n, cap, i, px, qty)
  if n == cap then n = n - 1 end
  for j = n, i + 1, -1 do lv[j].px, lv[j].qty = lv[j - 1].px, lv[j - 1].qty end
  lv[i].px, lv[i].qty = px, qty
  return n + 1
end

local function set_bid(lv, n, cap, px, qty)
  local i = 0
  while i < n and lv[i].px > px do i = i + 1 end
  if i < n and lv[i].px == px then
    if qty > 0 then lv[i].qty = qty; return n end
    return remove_level(lv, n, i)
  end
  if qty == 0 or i >= cap then return n end
  return insert_level(lv, n, cap, i, px, qty)
end

local function set_ask(lv, n, cap, px, qty)
  local i = 0
  while i < n and lv[i].px < px do i = i + 1 end
  if i < n and lv[i].px == px then
    if qty > 0 then lv[i].qty = qty; return n end
    return remove_level(lv, n, i)
  end
  if qty == 0 or i >= cap then return n end
  return insert_level(lv, n, cap, i, px, qty)
end

function M.on_tick(book, cfg, t)
  local tick = cfg.tick_size
  local px = floor(t.px / tick + 0.5) * tick
  local side, qty = t.side, t.qty
  local cap = cfg.depth
  if cap == 0 or cap > 8 then cap = 8 end
  local ok = (side == 0 or side == 1) and t.seq > book.last_seq
    and t.px > 0 and t.px < huge and qty >= 0 and qty <= cfg.max_qty
    and abs(t.px - px) <= 1e-9 * tick
  if ok and qty > 0 then
    if side == 0 then
      ok = book.nask == 0 or px < book.ask[0].px
    else
      ok = book.nbid == 0 or px > book.bid[0].px
    end
  end
  if not ok then
    book.rejected = book.rejected + 1
    return
  end
  if side == 0 then
    book.nbid = set_bid(book.bid, book.nbid, cap, px, qty)
  else
    book.nask = set_ask(book.ask, book.nask, cap, px, qty)
  end
  if book.nbid > 0 and book.nask > 0 then
    book.mid = (book.bid[0].px + book.ask[0].px) / 2
  else
    book.mid = 0
  end
  book.updates = book.updates + 1
  book.last_seq = t.seq
end

-- A deterministic stream of quotes, as an exchange might send them:
-- feed(seed) returns next(t), which fills the ob_tick t (side, px, qty;
-- not seq). Levels sit 1 to 6 ticks (tick_size, default 0.25) around a
-- mid that drifts; when the mid moves, the level it moved onto is deleted
-- first, so a well-behaved book never crosses. One tick in `bad` (default
-- 40) is off the grid and one in `bad` has qty 1000 (above a max_qty of
-- 500): the handler refuses those.
function M.feed(seed, tick, bad)
  local x = seed or 42
  tick, bad = tick or 0.25, bad or 40
  local function rand(n)   -- Park-Miller: the same stream on every run
    x = x * 48271 % 2147483647
    return x % n
  end
  local mid, owed = 400, nil   -- mid in ticks
  return function(t)
    if owed then
      t.side, t.px, t.qty = owed, mid * tick, 0
      owed = nil
      return t
    end
    if rand(8) == 0 then
      local up = rand(2) == 0
      mid = mid + (up and 1 or -1)
      owed = up and 1 or 0     -- the ask (up) or bid (down) now at the mid
    end
    local side = rand(2)
    local off = 1 + rand(6)
    t.side = side
    t.px = (side == 0 and mid - off or mid + off) * tick
    t.qty = rand(4) == 0 and 0 or 1 + rand(100)
    local b = rand(bad)
    if b == 0 then t.px = t.px + tick * 0.4 elseif b == 1 then t.qty = 1000 end
    return t
  end
end

-- The book as plain Lua values (levels best first), for printing and
-- comparing.
function M.snapshot(book)
  local s = { bid = {}, ask = {}, mid = book.mid, updates = tonumber(book.updates),
              rejected = tonumber(book.rejected), last_seq = tonumber(book.last_seq) }
  for i = 0, book.nbid - 1 do s.bid[#s.bid + 1] = { book.bid[i].px, book.bid[i].qty } end
  for i = 0, book.nask - 1 do s.ask[#s.ask + 1] = { book.ask[i].px, book.ask[i].qty } end
  return s
end

return M

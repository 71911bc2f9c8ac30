-- The C face: examples/handlers (an order-book handler library) built
-- against nexus with find_package(nexus) and with pkg-config, from a
-- temporary install and from the build tree, loaded with ffi.load and
-- dispatched through pre-resolved handlers; the order book it computes;
-- the World reached from C (lookup by name, sequence); and
-- examples/market_data.lua, the Lua twin of seed pattern 7.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local ffi = require "ffi"
local nexus = require "nexus"

local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$")) or "."
local ob = dofile(ROOT .. "/examples/handlers/orderbook.lua")
local q = H.q

local function build_dir()
  local b = os.getenv("NEXUS_BUILD")
  if b and b ~= "" then return b end
  return ROOT .. "/build"
end

-- Runs a shell command; raises with its output when it fails.
local function must(cmd)
  local r = H.sh(cmd)
  if r.rc ~= 0 then error(("command failed (%s):\n%s\n%s%s"):format(tostring(r.rc), cmd, r.out, r.err), 2) end
  return r
end

-- The sanitizer runtimes are for nexus's own build, not for the tools.
local CLEAN = "env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS "

local function raises(needles, fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error containing '" .. needles[1] .. "', but the call succeeded")
  err = tostring(err)
  for _, n in ipairs(needles) do
    assert(err:find(n, 1, true), "error '" .. err .. "' does not contain '" .. n .. "'")
  end
end

local tmp, prefix, libs = nil, nil, {}

setup(function()
  tmp = must("mktemp -d " .. q((os.getenv("TMPDIR") or "/tmp") .. "/nexus-handlers.XXXXXX")).out:gsub("%s+$", "")
  prefix = tmp .. "/prefix"
  local b = build_dir()
  must(CLEAN .. "cmake --install " .. q(b) .. " --prefix " .. q(prefix))
  local src = ROOT .. "/examples/handlers"
  -- find_package(nexus) against the install
  must(CLEAN .. ("cmake -S %s -B %s -DCMAKE_PREFIX_PATH=%s"):format(q(src), q(tmp .. "/cm-install"), q(prefix)))
  must(CLEAN .. "cmake --build " .. q(tmp .. "/cm-install"))
  libs.cmake_install = tmp .. "/cm-install/liborderbook.so"
  -- find_package(nexus) against the build tree
  must(CLEAN .. ("cmake -S %s -B %s -Dnexus_DIR=%s"):format(q(src), q(tmp .. "/cm-tree"), q(b)))
  must(CLEAN .. "cmake --build " .. q(tmp .. "/cm-tree"))
  libs.cmake_tree = tmp .. "/cm-tree/liborderbook.so"
  -- pkg-config nexus, installed and uninstalled
  local cc = "cc -std=c11 -O2 -Wall -Wextra -Werror -fPIC -shared "
  for name, pcdir in pairs({ pc_install = prefix .. "/lib/pkgconfig", pc_tree = b .. "/pkgconfig" }) do
    local out = tmp .. "/" .. name .. ".so"
    must(CLEAN .. ("PKG_CONFIG_PATH=%s sh -c %s"):format(q(pcdir),
      q(cc .. "$(pkg-config --cflags nexus) " .. q(src .. "/orderbook.c") .. " -o " .. q(out) .. " -lm")))
    libs[name] = out
  end
end)

teardown(function()
  if tmp and tmp:match("/nexus%-handlers%.") then H.sh("rm -rf " .. q(tmp)) end
  H.cleanup()
end)

local CONFIG = { tick_size = 0.5, max_qty = 100, depth = 3 }

local function book_world(cfg)
  return nexus.world.builder()
    :register("Book", "ob_book")
    :register("Config", "ob_config", cfg or CONFIG)
    :build()
end

local function tick(seq, side, px, qty)
  local t = ffi.new("ob_tick")
  t.seq, t.side, t.px, t.qty = seq, side, px, qty
  return t
end

-- levels as { {px, qty}, ... } best first
local function levels(book, side)
  local s = ob.snapshot(book)
  return side == 0 and s.bid or s.ask
end

describe("handler library", function()
  describe("builds against nexus", function()
    it("with find_package(nexus) from an install and from the build tree", function()
      for _, k in ipairs({ "cmake_install", "cmake_tree" }) do
        local lib = ob.load(libs[k])                  -- checks the struct sizes too
        assert.are.equal("cdata", type(lib.ob_on_tick))
      end
    end)

    it("with pkg-config nexus from an install and from the build tree", function()
      for _, k in ipairs({ "pc_install", "pc_tree" }) do
        local lib = ob.load(libs[k])
        assert.are.equal("cdata", type(lib.ob_on_tick))
      end
      local r = must(CLEAN .. "PKG_CONFIG_PATH=" .. q(prefix .. "/lib/pkgconfig") .. " pkg-config --modversion nexus")
      assert.are.equal(nexus.version, (r.out:gsub("%s+$", "")))
    end)

    it("the installed nexus.h compiles on its own, as C and as C++", function()
      local c = H.tmpfile([[
#include <nexus.h>
uint64_t use(nexus_world *w) {
  void *p = nexus_world_resource(w, "Book");
  nexus_handler2_fn h = (nexus_handler2_fn)0;
  return nexus_world_next_sequence(w) + nexus_world_current_sequence(w) + (p != 0) + (h != 0);
}
]])
      must(("cc -std=c11 -pedantic -Wall -Wextra -Werror -x c -fsyntax-only -I%s %s"):format(q(prefix .. "/include"), q(c)))
      must(("c++ -Wall -Wextra -Werror -x c++ -fsyntax-only -I%s %s"):format(q(prefix .. "/include"), q(c)))
    end)

    it("links nothing from nexus: no undefined nexus or Lua symbols", function()
      local r = must("nm -D --undefined-only " .. q(libs.cmake_install))
      assert.is_nil(r.out:find("nexus_", 1, true), r.out)
      assert.is_nil(r.out:find("lua", 1, true), r.out)
    end)
  end)

  describe("the order book through a pre-resolved C handler", function()
    local lib
    before_each(function() lib = lib or ob.load(libs.cmake_install) end)

    it("applies, orders, trims and refuses ticks as documented", function()
      local w = book_world()
      local on_tick = w:handler(lib.ob_on_tick, "Book", nexus.res("Config"))
      local book = w:resource("Book")
      local function step(seq, side, px, qty) on_tick:run(tick(seq, side, px, qty)) end
      step(1, 0, 100, 10)
      assert.are.same({ { 100, 10 } }, levels(book, 0))
      assert.are.equal(0, book.mid)                    -- no ask yet
      step(2, 1, 101, 5)
      assert.are.equal(100.5, book.mid)
      step(3, 0, 99.5, 7)
      step(4, 0, 100.5, 3)
      assert.are.same({ { 100.5, 3 }, { 100, 10 }, { 99.5, 7 } }, levels(book, 0))
      assert.are.equal(100.75, book.mid)
      step(5, 0, 99, 1)                                -- worst of a full side: no effect
      assert.are.same({ { 100.5, 3 }, { 100, 10 }, { 99.5, 7 } }, levels(book, 0))
      assert.is_true(book.updates == 5 and book.rejected == 0)
      step(6, 0, 100.25, 1)                            -- off the 0.5 grid
      step(7, 0, 101, 1)                               -- would cross the ask
      step(8, 1, 100.5, 1)                             -- would cross the bid
      assert.is_true(book.rejected == 3 and book.updates == 5)
      assert.is_true(book.last_seq == 5)
      step(9, 0, 100, 0)                               -- delete
      assert.are.same({ { 100.5, 3 }, { 99.5, 7 } }, levels(book, 0))
      step(10, 0, 99, 2)
      assert.are.same({ { 100.5, 3 }, { 99.5, 7 }, { 99, 2 } }, levels(book, 0))
      step(11, 0, 100, 200)                            -- above max_qty
      step(10, 0, 100, 1)                              -- stale sequence
      step(12, 2, 100, 1)                              -- no such side
      step(13, 0, 0, 1)                                -- price not positive
      step(14, 0, 0 / 0, 1)                            -- NaN price
      step(15, 0, 100, -1)                             -- negative quantity
      assert.is_true(book.rejected == 9 and book.updates == 7)
      step(16, 0, 100, 4)                              -- better than the worst: it goes
      assert.are.same({ { 100.5, 3 }, { 100, 4 }, { 99.5, 7 } }, levels(book, 0))
      step(17, 1, 101, 8)                              -- update in place
      assert.are.same({ { 101, 8 } }, levels(book, 1))
      step(18, 1, 101, 0)
      assert.are.same({}, levels(book, 1))
      assert.are.equal(0, book.mid)
      assert.is_true(book.updates == 10 and book.rejected == 9 and book.last_seq == 18)
    end)

    it("the C handler, its Lua twin and a direct FFI call agree on a long JIT-compiled stream", function()
      local cfg = { tick_size = 0.25, max_qty = 500, depth = 5 }
      local wc, wl, wd = book_world(cfg), book_world(cfg), book_world(cfg)
      local hc = wc:handler(lib.ob_on_tick, "Book", nexus.res("Config"))
      local hl = wl:handler(ob.on_tick, "Book", nexus.res("Config"))
      local book_d = wd:resource("Book")
      local cfg_d = ffi.cast("const ob_config *", wd:resource("Config"))
      local f = lib.ob_on_tick
      local next_quote = ob.feed(7)
      local t = ffi.new("ob_tick")
      for i = 1, 200000 do
        next_quote(t)
        t.seq = i % 1000 == 0 and i - 5 or i         -- now and then a stale tick
        hc:run(t)
        hl(t)
        f(book_d, cfg_d, t)
      end
      local c, l, d = ob.snapshot(wc:resource("Book")), ob.snapshot(wl:resource("Book")), ob.snapshot(book_d)
      assert.are.same(c, l)
      assert.are.same(c, d)
      assert.is_true(c.rejected > 199 and c.updates > 150000, c.rejected .. " " .. c.updates)
      assert.is_true(#c.bid > 0 and #c.ask > 0 and c.bid[1][1] < c.ask[1][1])
    end)

    it("a C function of the wrong arity raises at handler time, naming the counts", function()
      local w = book_world()
      raises({ "world:handler", "takes 3 arguments but the handler passes 2" },
        w.handler, w, lib.ob_on_tick, "Book")
      raises({ "world:handler", "takes 3 arguments but the handler passes 4" },
        w.handler, w, lib.ob_on_tick, "Book", "Config", "Book")
      raises({ "world:handler", "no resource named 'Books'" }, w.handler, w, lib.ob_on_tick, "Books", "Config")
    end)

    it("a read-only resource given to a writable parameter raises when run, and changes nothing", function()
      local w = book_world()
      local h = w:handler(lib.ob_on_tick, nexus.res("Book"), nexus.res("Config"))
      raises({ "cannot convert 'const struct ob_book *' to 'struct ob_book *'" }, h.run, h, tick(1, 0, 100, 1))
      assert.is_true(w:resource("Book").updates == 0)
    end)

    it("C finds resources by name and draws from the World's sequence", function()
      local w = nexus.world.builder()
        :register("Book", "ob_book")
        :register("Config", "ob_config", CONFIG)
        :register("Note", { "a Lua value" })
        :build()
      local p = lib.ob_find_book(w:ptr())
      assert.are.equal(tonumber(ffi.cast("uintptr_t", w:resource("Book"))), tonumber(ffi.cast("uintptr_t", p)))
      local none = nexus.world.builder():register("Book", { lua = true }):build()
      assert.is_true(lib.ob_find_book(none:ptr()) == nil)  -- a Lua resource has no C memory
      assert.is_true(lib.ob_find_book(nexus.world.builder():build():ptr()) == nil)
      local t = ffi.new("ob_tick")
      assert.are.equal(1, w:next_sequence())
      assert.is_true(lib.ob_stamp(w:ptr(), t) == 2 and t.seq == 2)
      assert.is_true(lib.ob_stamp(w:ptr(), t) == 3)
      assert.are.equal(3, w:current_sequence())
      assert.are.equal(4, w:next_sequence())
    end)
  end)

  describe("examples/market_data.lua", function()
    local function check(out, n)
      assert.truthy(out:find("books agree: true", 1, true), out)
      assert.truthy(out:find("sequence: " .. n .. "\n", 1, true), out)
      assert.truthy(out:find(("^%d ticks in %%d+ packets"):format(n)), out)
      local mid, upd, rej, last = out:match("C handler: mid ([%d.]+)  updates (%d+)  rejected (%d+)  last_seq (%d+)")
      assert.truthy(mid, out)
      assert.are.equal(n, tonumber(upd) + tonumber(rej))
      assert.are.equal(n, tonumber(last))               -- the last tick of the feed is a good one
      assert.is_true(tonumber(rej) > 0, out)            -- the feed's bad ticks were refused
      local line = out:match("C handler:[^\n]*\n  ([^\n]*)")
      local bids, asks = line:match("^(.-)%s*|%s*(.*)$")
      local bp, ap = {}, {}
      for px in bids:gmatch("([%d.]+) x") do bp[#bp + 1] = tonumber(px) end
      for px in asks:gmatch("([%d.]+) x") do ap[#ap + 1] = tonumber(px) end
      assert.is_true(#bp >= 1 and #bp <= 5 and #ap >= 1 and #ap <= 5, line)
      for i = 2, #bp do assert.is_true(bp[i - 1] < bp[i], line) end   -- printed worst to best
      for i = 2, #ap do assert.is_true(ap[i - 1] < ap[i], line) end
      assert.is_true(bp[#bp] < ap[1], line)
      assert.are.equal((bp[#bp] + ap[1]) / 2, tonumber(mid))
      for _, px in ipairs(bp) do assert.are.equal(0, px * 4 % 1) end  -- on the 0.25 grid
    end

    it("runs under the nexus command: C and Lua handlers build the same book", function()
      local r = H.sh(("cd %s && NEXUS_ORDERBOOK_LIB=%s %s examples/market_data.lua 1500"):format(
        q(ROOT), q(libs.cmake_install), q(H.nexus_bin())))
      assert.are.equal(0, r.rc, r.err)
      check(r.out, 1500)
    end)

    it("runs under plain luajit with the library path as an argument", function()
      local r = H.sh(("cd %s && luajit examples/market_data.lua 300 %s"):format(q(ROOT), q(libs.pc_install)))
      assert.are.equal(0, r.rc, r.err)
      check(r.out, 300)
    end)

    it("finds the library built where its message says, with NEXUS_ORDERBOOK_LIB unset (regress)", function()
      -- a copy of the example tree whose handlers/build holds the library
      local copy = tmp .. "/copy"
      must(("mkdir -p %s/handlers/build && cp %s/examples/handlers/orderbook.lua %s/handlers/ && cp %s %s/handlers/build/liborderbook.so")
        :format(q(copy), q(ROOT), q(copy), q(libs.pc_install), q(copy)))
      local r = H.sh(("env -u NEXUS_ORDERBOOK_LIB luajit -e %s"):format(q(
        "local ob = dofile(" .. ("%q"):format(copy .. "/handlers/orderbook.lua") .. ") "
        .. "local lib, path = ob.load() print(path)")))
      assert.are.equal(0, r.rc, r.err)
      assert.are.equal(copy .. "/handlers/build/liborderbook.so\n", r.out)
    end)

    it("says how to build the library when it cannot find it", function()
      local r = H.sh(("cd %s && NEXUS_ORDERBOOK_LIB= luajit examples/market_data.lua 10 %s"):format(
        q(ROOT), q(tmp .. "/missing.so")))
      assert.are_not.equal(0, r.rc)
      assert.truthy(r.err:find("orderbook: cannot load " .. tmp .. "/missing.so", 1, true), r.err)
    end)
  end)
end)

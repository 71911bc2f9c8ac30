-- The World: builder, typed resources in C memory and plain Lua ones,
-- sequences, pre-resolved handlers (Lua functions and C function
-- pointers), WorldCtx with_world / with_world_ref, lifetimes, and every
-- bad input of the World named in the issue. The C handler library built
-- with CMake / pkg-config is in world_handlers_spec.lua.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local ffi = require "ffi"
local nexus = require "nexus"

-- Asserts that fn(...) raises a string error containing every needle.
local function raises(needles, fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error containing '" .. needles[1] .. "', but the call succeeded")
  assert(type(err) == "string", "expected a string error, got " .. type(err) .. ": " .. tostring(err))
  for _, n in ipairs(needles) do
    assert(err:find(n, 1, true), "error '" .. err .. "' does not contain '" .. n .. "'")
  end
  assert(not err:find("C-call boundary", 1, true), "LuaJIT's own yield error leaked: " .. err)
  return err
end

local function live()
  for _ = 1, 6 do collectgarbage() end
  return nexus.world._live()
end

local BOOK = "struct { double mid; uint64_t updates; int32_t level[4]; }"

local function book_world()
  return nexus.world.builder()
    :register("Book", BOOK, { mid = 1.5 })
    :register("Metrics", "struct { uint64_t ticks; double last; }")
    :register("Config", { threshold = 10, name = "cfg" })
    :build()
end

local function addr(p) return tonumber(ffi.cast("uintptr_t", p)) end

describe("world", function()
  describe("builder and resources", function()
    it("a typed resource is C memory of its type, zeroed, then set from init", function()
      local w = book_world()
      local b = w:resource("Book")
      assert.are.equal("cdata", type(b))
      assert.is_true(tostring(ffi.typeof(b)):find("^ctype<struct %d+ %*>$") ~= nil, tostring(ffi.typeof(b)))
      assert.are.equal(1.5, b.mid)
      assert.is_true(b.updates == 0)
      for i = 0, 3 do assert.are.equal(0, b.level[i]) end
      local m = w:resource("Metrics")
      assert.is_true(m.ticks == 0)
      assert.are.equal(0, m.last)
    end)

    it("a plain Lua resource is the value itself", function()
      local cfg = { threshold = 10 }
      local w = nexus.world.builder():register("Config", cfg):register("Name", 42):build()
      assert.are.equal(cfg, w:resource("Config"))
      assert.are.equal(42, w:resource("Name"))
    end)

    it("contains tells registered names from others", function()
      local w = book_world()
      assert.is_true(w:contains("Book"))
      assert.is_true(w:contains("Config"))
      assert.is_false(w:contains("book"))
      assert.are.same({ "Book", "Config", "Metrics" }, w:names())
    end)

    it("writes through one pointer are seen through every other", function()
      local w = book_world()
      w:resource("Book").mid = 99.25
      w:resource("Book").level[2] = 7
      assert.are.equal(99.25, w:resource("Book").mid)
      assert.are.equal(7, w:resource("Book").level[2])
    end)

    it("addresses are stable: the same block for the World's whole life", function()
      local b = nexus.world.builder():register("First", "double", 3)
      local w0 = b._world
      local first = addr(w0:resource("First"))
      for i = 1, 100 do b:register("R" .. i, "struct { double x[4]; }", { x = { i } }) end
      local w = b:build()
      assert.are.equal(first, addr(w:resource("First")))
      assert.are.equal(3, w:resource("First")[0])
      for i = 1, 100 do assert.are.equal(i, w:resource("R" .. i).x[0]) end
      collectgarbage()
      assert.are.equal(first, addr(w:resource("First")))
    end)

    it("blocks are aligned as the C type asks (at least 16 bytes)", function()
      local w = nexus.world.builder()
        :register("Small", "char")
        :register("Wide", "struct { char c; } __attribute__((aligned(64)))")
        :build()
      assert.are.equal(0, addr(w:resource("Small")) % 16)
      assert.are.equal(0, addr(w:resource("Wide")) % 64)
    end)

    it("init sets nested structs, arrays and scalar types", function()
      ffi.cdef [[ typedef struct world_spec_inner { double a; int b; } world_spec_inner; ]]
      local w = nexus.world.builder()
        :register("Nested", "struct { world_spec_inner in; double arr[3]; }",
                  { ["in"] = { a = 2.5 }, arr = { 1, 2, 3 } })
        :register("Count", "uint64_t", 7)
        :register("Vec", "int[4]", { 4, 3, 2, 1 })
        :register("ByType", ffi.typeof("world_spec_inner"), { b = 9 })
        :build()
      local n = w:resource("Nested")
      assert.are.equal(2.5, n["in"].a)
      assert.are.equal(0, n["in"].b)
      assert.are.same({ 1, 2, 3 }, { n.arr[0], n.arr[1], n.arr[2] })
      assert.is_true(w:resource("Count")[0] == 7)
      local v = w:resource("Vec")[0]
      assert.are.same({ 4, 3, 2, 1 }, { v[0], v[1], v[2], v[3] })
      assert.are.equal(9, w:resource("ByType").b)
    end)

    it("ensure registers what is missing and keeps what is there", function()
      local cfg = { v = 1 }
      local w = nexus.world.builder()
        :register("Config", cfg)
        :register("Book", BOOK, { mid = 1 })
        :ensure("Config", { v = 2 })
        :ensure("Book", "struct { int other; }", { other = 5 })
        :ensure("Fresh", "double", 4)
        :ensure("Fresh", "double", 8)
        :build()
      assert.are.equal(cfg, w:resource("Config"))
      assert.are.equal(1, w:resource("Book").mid)
      assert.are.equal(4, w:resource("Fresh")[0])
      assert.are.same({ "Book", "Config", "Fresh" }, w:names())
    end)

    it("sequence numbers start at 0 and count up by one", function()
      local w = book_world()
      assert.are.equal(0, w:current_sequence())
      assert.are.equal(1, w:next_sequence())
      assert.are.equal(2, w:next_sequence())
      assert.are.equal(2, w:current_sequence())
      assert.are.equal(0, book_world():current_sequence())   -- per World
    end)

    it("objects print usefully", function()
      local b = nexus.world.builder():register("A", "int")
      assert.truthy(tostring(b):find("nexus.world.builder: 1 resources", 1, true))
      local w = b:build()
      assert.truthy(tostring(b):find("(built)", 1, true))
      assert.truthy(tostring(w):find("^nexus.world: 1 resources %(0x%x+%)$"))
      assert.are.equal('nexus.res("A")', tostring(nexus.res("A")))
      assert.are.equal('nexus.res_mut("A")', tostring(nexus.res_mut("A")))
      local h = w:handler(function() end, "A", nexus.res("A"))
      assert.truthy(tostring(h):find("nexus.handler(A, res(A)) over nexus.world", 1, true))
    end)
  end)

  describe("handlers", function()
    it("a Lua handler gets the resolved resources, then the event, and returns fn's results", function()
      local w = book_world()
      local seen
      local h = w:handler(function(book, metrics, cfg, ev)
        seen = { book, metrics, cfg }
        book.mid = ev.px
        metrics.ticks = metrics.ticks + 1
        return cfg.threshold, "x"
      end, "Book", nexus.res_mut("Metrics"), nexus.res("Config"))
      local a, b = h:run({ px = 101.5 })
      assert.are.equal(10, a)
      assert.are.equal("x", b)
      assert.are.equal(w:resource("Config"), seen[3])
      assert.are.equal(addr(w:resource("Book")), addr(seen[1]))
      assert.are.equal(101.5, w:resource("Book").mid)
      assert.are.equal(10, (h({ px = 102 })))          -- __call runs it too
      assert.are.equal(102, w:resource("Book").mid)
      assert.is_true(w:resource("Metrics").ticks == 2)
    end)

    it("resolves once: later handler calls use the pointers it resolved", function()
      local w = book_world()
      local calls = 0
      local h = w:handler(function(book, ev) calls = calls + 1; book.updates = book.updates + ev end, "Book")
      for _ = 1, 1000 do h:run(2) end
      assert.are.equal(1000, calls)
      assert.is_true(w:resource("Book").updates == 2000)
    end)

    it("nexus.res gives a const pointer (writes raise), a bare name or res_mut a writable one", function()
      local w = book_world()
      local h = w:handler(function(ro, rw, ev)
        rw.mid = ev
        return tostring(ffi.typeof(ro)), tostring(ffi.typeof(rw)), pcall(function() ro.mid = 1 end)
      end, nexus.res("Book"), nexus.res_mut("Book"))
      local tro, trw, ok, err = h:run(5)
      assert.truthy(tro:find("^ctype<const struct %d+ %*>$"), tro)
      assert.truthy(trw:find("^ctype<struct %d+ %*>$"), trw)
      assert.is_false(ok)
      assert.truthy(err:find("constant", 1, true), err)
      assert.are.equal(5, w:resource("Book").mid)
    end)

    it("a C function pointer is called with the resource pointers and the event", function()
      local w = nexus.world.builder()
        :register("Acc", "struct { double sum; uint32_t n; }")
        :register("Scale", "double", 3)
        :build()
      -- a real C function pointer (an FFI callback) taking the World's types
      local acc_t = ffi.typeof(w:resource("Acc"))
      local fn_t = ffi.typeof("void (*)($, const double *, const double *)", acc_t)
      local cb = ffi.cast(fn_t, function(acc, scale, ev) acc.sum = acc.sum + scale[0] * ev[0]; acc.n = acc.n + 1 end)
      local h = w:handler(cb, "Acc", nexus.res("Scale"))
      local ev = ffi.new("double[1]")
      for i = 1, 10 do ev[0] = i; h:run(ev) end
      assert.are.equal(165, w:resource("Acc").sum)
      assert.are.equal(10, w:resource("Acc").n)
      cb:free()
    end)

    it("many resources: each lands in its place", function()
      local b = nexus.world.builder()
      local names = {}
      for i = 1, 20 do
        b:register("R" .. i, "int", i)
        names[i] = i % 2 == 0 and nexus.res("R" .. i) or ("R" .. i)
      end
      local w = b:build()
      local h = w:handler(function(...)
        local n = select("#", ...)
        local t = {}
        for i = 1, n - 1 do t[i] = (select(i, ...))[0] end
        t[n] = select(n, ...)
        return t
      end, unpack(names))
      local t = h:run("ev")
      for i = 1, 20 do assert.are.equal(i, t[i]) end
      assert.are.equal("ev", t[21])
    end)

    it("a handler over no resource gets the event only", function()
      local w = nexus.world.builder():build()
      local h = w:handler(function(...) return select("#", ...), ... end)
      assert.are.same({ 1, "e" }, { h:run("e") })
    end)
  end)

  describe("WorldCtx", function()
    it("nexus.world_ctx() in a task of a runtime with a World: with_world passes that World", function()
      local w = book_world()
      local rt = nexus.runtime.builder(w):build()
      local got, a, b, same = rt:block_on(function()
        local ctx = nexus.world_ctx()
        local got
        local a, b = ctx:with_world(function(world, x, y)
          got = world
          world:resource("Book").mid = x + y
          return x * y, "r"
        end, 3, 4)
        return got, a, b, nexus.world_ctx() == ctx
      end)
      rt:close()
      assert.are.equal(w, got)
      assert.are.equal(12, a)
      assert.are.equal("r", b)
      assert.is_true(same)
      assert.are.equal(7, w:resource("Book").mid)
    end)

    it("with_world_ref passes a read-only view: const pointers, no next_sequence", function()
      local w = book_world()
      w:resource("Book").mid = 4
      local rt = nexus.runtime.builder(w):build()
      local mid, t, ok, err, cfg, seq, okn, errn = rt:block_on(function()
        return nexus.world_ctx():with_world_ref(function(v)
          local b = v:resource("Book")
          local ok, err = pcall(function() b.mid = 5 end)
          local okn, errn = pcall(v.next_sequence, v)
          return b.mid, tostring(ffi.typeof(b)), ok, err, v:resource("Config"), v:current_sequence(), okn, errn
        end)
      end)
      rt:close()
      assert.are.equal(4, mid)
      assert.truthy(t:find("^ctype<const struct"), t)
      assert.is_false(ok)
      assert.truthy(err:find("constant", 1, true), err)
      assert.are.equal(w:resource("Config"), cfg)
      assert.are.equal(0, seq)
      assert.is_false(okn)
      assert.truthy(errn:find("worldref:next_sequence", 1, true), errn)
    end)

    it("works in block_on_busy and in tasks spawned by the root", function()
      local w = book_world()
      local rt = nexus.runtime.builder(w):build()
      local n = rt:block_on_busy(function()
        local hs = {}
        for i = 1, 10 do
          hs[i] = nexus.spawn(function()
            nexus.sleep(0.001 * i)
            return nexus.world_ctx():with_world(function(world) return world:next_sequence() end)
          end)
        end
        local sum = 0
        for i = 1, 10 do sum = sum + hs[i]:join() end
        return sum
      end)
      rt:close()
      assert.are.equal(55, n)
      assert.are.equal(10, w:current_sequence())
    end)

    it("each runtime's ctx is its own World, also one after another", function()
      local w1, w2 = book_world(), book_world()
      local rt1 = nexus.runtime.builder(w1):build()
      local rt2 = nexus.runtime.builder(w2):build()
      local g1 = rt1:block_on(function() return nexus.world_ctx():with_world(function(w) return w end) end)
      local g2 = rt2:block_on(function() return nexus.world_ctx():with_world(function(w) return w end) end)
      local g3 = rt1:block_on(function() return nexus.world_ctx():with_world(function(w) return w end) end)
      rt1:close(); rt2:close()
      assert.are.equal(w1, g1)
      assert.are.equal(w2, g2)
      assert.are.equal(w1, g3)
    end)

    it("an error inside with_world propagates unchanged and releases the World", function()
      local rt = nexus.runtime.builder(book_world()):build()
      local errobj = { code = 7 }
      local e1, e2, after = rt:block_on(function()
        local ctx = nexus.world_ctx()
        local _, e1 = pcall(ctx.with_world, ctx, function() error(errobj) end)
        local _, e2 = pcall(ctx.with_world, ctx, function() error("boom") end)
        return e1, e2, ctx:with_world(function() return "again" end)
      end)
      rt:close()
      assert.are.equal(errobj, e1)
      assert.truthy(e2:find("boom", 1, true))
      assert.are.equal("again", after)
    end)

    it("the script's own runtime works under the nexus command too", function()
      local r = H.nexus_script([[
        local nexus = require "nexus"
        local w = nexus.world.builder():register("N", "int", 41):build()
        local rt = nexus.runtime.builder(w):build()
        print(rt:block_on(function()
          nexus.sleep(0.001)
          return nexus.world_ctx():with_world(function(w) return w:resource("N")[0] + 1 end)
        end))
      ]])
      H.cleanup()
      assert.are.equal(0, r.rc, r.err)
      assert.are.equal("42\n", r.out)
    end)
  end)

  describe("lifetimes", function()
    -- Each case builds its objects in a function of its own, so no stack
    -- slot of the test keeps one alive by accident.
    it("the World's C memory is freed once nothing refers to it", function()
      local base = live()
      local function make()
        local w = book_world()
        w:resource("Book").mid = 1
        return nexus.world._live()
      end
      assert.are.equal(base + 1, make())
      assert.are.equal(base, live())
    end)

    it("a handler, a resource pointer and world:ptr() each keep the World alive", function()
      local base = live()
      local h, p, wp
      local function make()
        local w = book_world()
        h = w:handler(function(book, ev) book.mid = ev; return book.mid end, "Book")
        p = w:resource("Metrics")
        wp = w:ptr()
      end
      make()
      assert.are.equal(base + 1, live())
      assert.are.equal(3, h:run(3))          -- memory still there and usable
      p.ticks = 5
      assert.is_true(p.ticks == 5)
      h = nil
      assert.are.equal(base + 1, live())     -- p and wp still hold it
      p = nil
      assert.are.equal(base + 1, live())
      wp = nil
      assert.are.equal(base, live())
    end)

    it("closing the runtime, then dropping the World: both freed, no crash", function()
      local base = live()
      local function run()
        local w = book_world()
        local h = w:handler(function(b, ev) b.mid = ev end, "Book")
        local rt = nexus.runtime.builder(w):build()
        rt:block_on(function() nexus.world_ctx():with_world(function() h:run(1) end) end)
        rt:close()
        h:run(2)                               -- the World outlives its runtime
        return w:resource("Book").mid
      end
      assert.are.equal(2, run())
      assert.are.equal(base, live())
    end)

    it("dropping the World, then closing the runtime: the runtime keeps it until then", function()
      local base = live()
      local rt
      local function make()
        local w = book_world()
        rt = nexus.runtime.builder(w):build()
        rt:block_on(function() nexus.sleep(0.001) end)
      end
      make()
      assert.are.equal(base + 1, live())       -- the runtime refers to it
      local mid = rt:block_on(function()
        return nexus.world_ctx():with_world(function(w) w:resource("Book").mid = 8; return w:resource("Book").mid end)
      end)
      assert.are.equal(8, mid)
      rt:close()
      assert.are.equal(base + 1, live())       -- closed but still referenced
      rt = nil
      assert.are.equal(base, live())
    end)
  end)

  describe("bad input", function()
    it("registering after build raises, on the builder and on the World", function()
      local b = nexus.world.builder():register("A", "int")
      local w = b:build()
      raises({ "builder:register", "already built" }, b.register, b, "B", "int")
      raises({ "builder:ensure", "already built" }, b.ensure, b, "B", "int")
      raises({ "world:register", "sealed" }, w.register, w, "B", "int")
      raises({ "world:ensure", "sealed" }, w.ensure, w, "B", "int")
      raises({ "builder:build", "already built" }, b.build, b)
      assert.is_false(w:contains("B"))
    end)

    it("the same name twice with register raises; with ensure keeps the first", function()
      local b = nexus.world.builder():register("Book", BOOK, { mid = 1 }):register("Cfg", { x = 1 })
      raises({ "builder:register", "'Book'", "already registered" }, b.register, b, "Book", BOOK, { mid = 2 })
      raises({ "builder:register", "'Cfg'", "already registered" }, b.register, b, "Cfg", { x = 2 })
      raises({ "builder:register", "'Book'" }, b.register, b, "Book", { lua = true })
      b:ensure("Book", BOOK, { mid = 3 }):ensure("Cfg", { x = 3 })
      local w = b:build()
      assert.are.equal(1, w:resource("Book").mid)
      assert.are.equal(1, w:resource("Cfg").x)
    end)

    it("an invalid C type string raises naming the function, the type and the resource", function()
      local b = nexus.world.builder()
      raises({ "builder:register", "invalid C type", "struct { double mid", "'Book'" },
        b.register, b, "Book", "struct { double mid")
      raises({ "builder:register", "invalid C type", "no_such_type_t" }, b.register, b, "X", "no_such_type_t")
      raises({ "builder:ensure", "invalid C type" }, b.ensure, b, "Y", "int int int")
      raises({ "builder:register", "no fixed size" }, b.register, b, "V", "void")
      raises({ "builder:register", "no fixed size" }, b.register, b, "F", "int (int)")
      raises({ "builder:register", "no fixed size" }, b.register, b, "VLA", "struct { int n; double d[?]; }")
      local w = b:build()                       -- nothing half-registered
      assert.are.same({}, w:names())
    end)

    it("an init table with unknown fields raises naming the field", function()
      local b = nexus.world.builder()
      raises({ "builder:register", "'bogus' is not a field", "'Book'" },
        b.register, b, "Book", BOOK, { mid = 1, bogus = 2 })
      ffi.cdef [[ typedef struct world_spec_in2 { double a; } world_spec_in2; ]]
      raises({ "builder:register", "'inner.zz' is not a field" },
        b.register, b, "N", "struct { world_spec_in2 inner; }", { inner = { a = 1, zz = 2 } })
      raises({ "builder:register", "key 1 is not a field name" }, b.register, b, "P", BOOK, { 5 })
      raises({ "builder:register", "field 'mid'", "cannot convert" }, b.register, b, "Q", BOOK, { mid = "x" })
      raises({ "builder:register", "must be a table of field values" }, b.register, b, "R", BOOK, 5)
      raises({ "builder:register", "init of resource 'S'" }, b.register, b, "S", "double", "nope")
      raises({ "builder:register", "a Lua value takes no init" }, b.register, b, "T", { 1 }, { 2 })
      local w = b:build()
      assert.are.same({}, w:names())
    end)

    it("bad names and missing values raise", function()
      local b = nexus.world.builder()
      raises({ "builder:register", "name must be a non-empty string, got nil" }, b.register, b, nil, "int")
      raises({ "builder:register", "name must be a non-empty string, got \"\"" }, b.register, b, "", "int")
      raises({ "builder:register", "name must be a non-empty string, got number" }, b.register, b, 1, "int")
      raises({ "builder:register", "has no value (nil)" }, b.register, b, "A", nil)
      raises({ "builder:register", "expected a World builder" }, b.register, {}, "A", "int")
      raises({ "nexus.res", "name must be a non-empty string" }, nexus.res, nil)
      raises({ "nexus.res_mut", "name must be a non-empty string" }, nexus.res_mut, 3)
    end)

    it("resolving an unknown name raises naming it, in handler and resource", function()
      local w = book_world()
      raises({ "world:handler", "no resource named 'Nope'" }, w.handler, w, function() end, "Book", "Nope")
      raises({ "world:handler", "no resource named 'Gone'" }, w.handler, w, function() end, nexus.res("Gone"))
      raises({ "world:resource", "no resource named 'Nope'" }, w.resource, w, "Nope")
      raises({ "world:resource", "name must be a string, got nil" }, w.resource, w, nil)
      raises({ "world:contains", "name must be a string" }, w.contains, w, 1)
      raises({ "world:handler", "resource #2 must be a name" }, w.handler, w, function() end, "Book", 42)
    end)

    it("a C function of the wrong arity raises at handler time", function()
      local w = book_world()
      ffi.cdef [[ int abs(int); ]]
      raises({ "world:handler", "takes 1 argument but the handler passes 2 (1 resource + the event)" },
        w.handler, w, ffi.C.abs, "Book")
      local two = ffi.cast("void (*)(void *, const void *)", ffi.C.abs)
      raises({ "world:handler", "takes 2 arguments but the handler passes 3 (2 resources + the event)" },
        w.handler, w, two, "Book", "Metrics")
      raises({ "world:handler", "takes 2 arguments but the handler passes 1 (0 resources + the event)" },
        w.handler, w, two)
      assert.is_table(w:handler(two, "Book"))   -- the right count is accepted
      -- a vararg function accepts at least its fixed parameters
      ffi.cdef [[ int snprintf(char *s, size_t n, const char *fmt, ...); ]]
      assert.is_table(w:handler(ffi.C.snprintf, "Book", "Metrics"))
      assert.is_table(w:handler(ffi.C.snprintf, "Book", "Metrics", "Book"))
      raises({ "world:handler", "takes at least 3 arguments but the handler passes 2" },
        w.handler, w, ffi.C.snprintf, "Book")
    end)

    it("a handler function that is not callable raises", function()
      local w = book_world()
      raises({ "world:handler", "expected a function or a C function, got nil" }, w.handler, w, nil, "Book")
      raises({ "world:handler", "expected a function or a C function, got table" }, w.handler, w, {}, "Book")
      raises({ "world:handler", "expected a function or a C function, got ctype<double *>" },
        w.handler, w, ffi.new("double[1]") + 0, "Book")
      raises({ "world:handler", "NULL" }, w.handler, w, ffi.cast("void (*)(void *, const void *)", 0), "Book")
      raises({ "world:handler", "expected a World" }, w.handler, {}, function() end)
    end)

    it("running a handler with a nil event, or with a dot, raises", function()
      local w = book_world()
      local h = w:handler(function() return "ran" end, "Book")
      raises({ "handler:run", "the event is nil" }, h.run, h, nil)
      raises({ "handler:run", "the event is nil" }, h.run, h)
      raises({ "handler:run", "expected a handler" }, h.run, 5)
      assert.are.equal("ran", h:run(false))
    end)

    it("with_world outside a runtime raises", function()
      raises({ "nexus.world_ctx", "not inside a nexus runtime" }, nexus.world_ctx)
      local rt = nexus.runtime.builder(book_world()):build()
      local ctx = rt:block_on(function() return nexus.world_ctx() end)
      raises({ "ctx:with_world", "its runtime is not running" }, ctx.with_world, ctx, function() end)
      raises({ "ctx:with_world_ref", "its runtime is not running" }, ctx.with_world_ref, ctx, function() end)
      -- from a task of another runtime
      local other = nexus.runtime.builder(book_world()):build()
      other:block_on(function()
        raises({ "ctx:with_world", "its runtime is not running" }, ctx.with_world, ctx, function() end)
      end)
      other:close()
      rt:close()
      -- a failed block_on does not leave its runtime as the current one
      local rt2 = nexus.runtime.builder(book_world()):build()
      assert.is_false(pcall(rt2.block_on, rt2, function() error("x") end))
      raises({ "nexus.world_ctx", "not inside a nexus runtime" }, nexus.world_ctx)
      rt2:close()
    end)

    it("a runtime without a World: world_ctx raises; the builder wants a built World", function()
      raises({ "nexus.world_ctx", "has no World" }, nexus.run, function() return nexus.world_ctx() end)
      local r = H.nexus_script([[
        local nexus = require "nexus"
        nexus.sleep(0.001)
        print(pcall(nexus.world_ctx))
      ]])
      H.cleanup()
      assert.are.equal(0, r.rc, r.err)
      assert.truthy(r.out:find("false\t.-nexus.world_ctx: this runtime has no World"), r.out)
      raises({ "nexus.runtime.builder", "world must be a World" }, nexus.runtime.builder, nexus.world.builder())
      raises({ "nexus.runtime.builder", "world must be a World" }, nexus.runtime.builder, {})
    end)

    it("with_world checks its arguments", function()
      local rt = nexus.runtime.builder(book_world()):build()
      rt:block_on(function()
        local ctx = nexus.world_ctx()
        raises({ "ctx:with_world", "expected a function, got nil" }, ctx.with_world, ctx)
        raises({ "ctx:with_world_ref", "expected a function, got number" }, ctx.with_world_ref, ctx, 1)
        raises({ "ctx:with_world", "expected a WorldCtx" }, ctx.with_world, function() end)
      end)
      rt:close()
    end)

    it("nested with_world / with_world_ref raise; the outer one goes on", function()
      local rt = nexus.runtime.builder(book_world()):build()
      local r = rt:block_on(function()
        local ctx = nexus.world_ctx()
        return ctx:with_world(function(w)
          raises({ "ctx:with_world", "nested" }, ctx.with_world, ctx, function() end)
          raises({ "ctx:with_world_ref", "nested" }, ctx.with_world_ref, ctx, function() end)
          w:resource("Book").mid = 2
          return "outer"
        end), ctx:with_world_ref(function()
          raises({ "ctx:with_world", "nested" }, ctx.with_world, ctx, function() end)
          return "ref"
        end), ctx:with_world(function() return "later" end)
      end)
      rt:close()
      assert.are.equal("outer", r)
    end)

    it("suspending inside with_world raises a nexus error; the task goes on", function()
      local rt = nexus.runtime.builder(book_world()):build()
      local log = {}
      rt:block_on(function()
        local ctx = nexus.world_ctx()
        local other = nexus.spawn(function() log[#log + 1] = "other ran" end)
        raises({ "nexus.sleep", "cannot suspend inside with_world" }, ctx.with_world, ctx,
          function() nexus.sleep(0.01) end)
        raises({ "nexus.yield", "cannot suspend inside with_world" }, ctx.with_world_ref, ctx,
          function() nexus.yield() end)
        raises({ "handle:join", "cannot suspend inside with_world" }, ctx.with_world, ctx,
          function() other:join() end)
        raises({ "nexus.sleep", "cannot suspend inside with_world" }, ctx.with_world, ctx,
          function() nexus.timeout(1, nexus.sleep, 0.5) end)
        log[#log + 1] = "before join"
        other:join()
        nexus.sleep(0.001)                      -- suspending after it is fine
        log[#log + 1] = ctx:with_world(function() return "after" end)
      end)
      rt:close()
      assert.are.same({ "before join", "other ran", "after" }, log)
    end)

    it("a bare coroutine.yield inside with_world is reported when fn returns", function()
      local rt = nexus.runtime.builder(book_world()):build()
      local log = {}
      rt:block_on(function()
        local ctx = nexus.world_ctx()
        nexus.spawn(function()
          -- another task runs while the first is suspended: its borrow is stale
          log[#log + 1] = ctx:with_world(function() return "other borrowed" end)
        end)
        raises({ "ctx:with_world", "suspended inside ctx:with_world" }, ctx.with_world, ctx,
          function() coroutine.yield() end)
        log[#log + 1] = ctx:with_world(function() return "again" end)
      end)
      rt:close()
      assert.are.same({ "other borrowed", "again" }, log)
    end)

    it("a task that aborts itself inside with_world does not leave the World borrowed", function()
      local rt = nexus.runtime.builder(book_world()):build()
      local r = rt:block_on(function()
        local ctx = nexus.world_ctx()
        local h = nexus.spawn(function()
          ctx:with_world(function() nexus.current():abort() end)
          return "not reached"
        end)
        assert.are.same({ false, "aborted" }, { h:result() })
        nexus.sleep(0.001)
        return ctx:with_world(function() return "free" end)
      end)
      rt:close()
      assert.are.equal("free", r)
    end)
  end)
end)

-- world: the round trip of ctx:with_world(fn) (and with_world_ref) inside
-- a task, fn doing one increment on a typed resource; N calls in a
-- JIT-compiled loop after a warm-up. Works under luajit and the nexus
-- command.
--
--   luajit bench/world_with.lua [ref]
local H = require "bench.harness"
local nexus = require "nexus"
local N = H.size("BENCH_WORLD_N", 10000000)
local REF = arg and arg[1] == "ref"

local world = nexus.world.builder():register("Count", "struct { uint64_t n; }"):build()
local rt = nexus.runtime.builder(world):build()
local count = world:resource("Count")
local function fn() count.n = count.n + 1 end

local elapsed = rt:block_on(function()
  local ctx = nexus.world_ctx()
  local with = REF and ctx.with_world_ref or ctx.with_world
  for _ = 1, 200000 do with(ctx, fn) end
  local t0 = H.now()
  for _ = 1, N do with(ctx, fn) end
  return H.now() - t0
end)
rt:close()
assert(count.n == N + 200000, "fn did not run every time")
H.report({ "ns_per_op", "n" }, { ns_per_op = elapsed / N * 1e9, n = N })

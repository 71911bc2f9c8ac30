-- bench/report.lua RESULTS [MARKDOWN]: turn bench/run.sh's raw results
-- into one table per workload (median, ratio to the reference, raw runs)
-- on stdout, and the same tables as Markdown into MARKDOWN if given.
--
-- RESULTS lines are tab-separated: workload, implementation, kind, text.
-- kind ORDER lists a runnable implementation (in table order), RUN carries
-- a measurement ("key=value ..."), SKIP and FAIL carry the reason.

local results_path, md_path = arg[1], arg[2]
assert(results_path, "usage: luajit bench/report.lua RESULTS [MARKDOWN]")

local workloads = {
  spawn = {
    title = "spawn/join: N trivial tasks alive at once, then joined in order",
    metric = "ns_per_task", unit = "ns/task", fmt = "%.1f",
    -- The reference is the bare-coroutine loop with every coroutine alive
    -- at once, the shape of the workload: the issue's orientation figure
    -- for that loop (about 520 ns) is this row's, not the one-at-a-time
    -- row's (about 150 ns, where each coroutine dies before the next is
    -- made and memory is reused). Both are shown; see docs/BENCHMARKS.md.
    ref = "coro-alive",
    hide = { total_ms = true },   -- ns_per_task times N
    extra = {},
    label = {
      ["coro-loop"] = "bare coroutines, one at a time",
      ["coro-alive"] = "bare coroutines, all alive (reference)",
      ["coro-alive-cmd"] = "bare coroutines, all alive (nexus command)",
      ["lua-sched"] = "hand-written Lua scheduler",
      ["luv"] = "luv (idle-driven scheduler)",
      ["cqueues"] = "cqueues (wrap + condition)",
      ["nexus"] = "nexus (luajit + require)",
      ["nexus-cmd"] = "nexus (nexus command)",
      ["nexus-closure"] = "nexus, a new closure per spawn (info)",
    },
  },
  sleepers = {
    title = "sleepers: N tasks each sleeping 1-50 ms, wall time to all woken",
    metric = "wall_ms", unit = "wall ms", fmt = "%.1f",
    ref = "c-libuv",
    extra = {
      { key = "late_ms", head = "mean late ms", fmt = "%.2f", agg = "median" },
      { key = "early", head = "early wakes (max)", fmt = "%d", agg = "max" },
      { key = "hwm_mb", head = "peak RSS MB", fmt = "%.1f", agg = "median" },
    },
    label = {
      ["c-libuv"] = "C libuv, uv_timer_t each (reference)",
      ["luv"] = "luv (coroutine + uv timer each)",
      ["cqueues"] = "cqueues (wrap + cqueues.sleep)",
      ["nexus"] = "nexus (luajit + require)",
      ["nexus-cmd"] = "nexus (nexus command)",
      ["nexus-closure"] = "nexus, a closure per task, handles kept and joined (issue 17's shape)",
      ["lua-floor"] = "floor: N closures + coroutines run to a yield and on, no timers (info)",
    },
  },
  parked = {
    title = "parked tasks: memory per task, N tasks suspended",
    metric = "rss_per_task", unit = "RSS B/task", fmt = "%.0f",
    ref = "coro",
    extra = {
      { key = "lua_per_task", head = "Lua heap B/task", fmt = "%.0f", agg = "median" },
    },
    label = {
      ["coro"] = "bare coroutines, yielded (reference)",
      ["lua-sched"] = "hand-written Lua scheduler (condition)",
      ["luv"] = "luv (coroutine + uv timer, 3600 s)",
      ["cqueues"] = "cqueues (cqueues.sleep(3600))",
      ["nexus"] = "nexus (nexus.sleep(3600), luajit)",
      ["nexus-cmd"] = "nexus (nexus.sleep(3600), command)",
      ["nexus-token"] = "nexus, each task in a cancel token's cancelled() (issue 17)",
    },
  },
  bytes = {
    title = "byte channel: N messages of 64 bytes through a 64 KiB channel, producer task to consumer task",
    metric = "ns_per_msg", unit = "ns/msg", fmt = "%.1f",
    ref = "lua-queue",
    extra = {
      { key = "mmsgs_per_s", head = "M msgs/s", fmt = "%.1f", agg = "median" },
      { key = "gb_per_s", head = "GB/s", fmt = "%.2f", agg = "median" },
      { key = "alloc_per_msg", head = "Lua heap B/msg (max)", fmt = "%.2f", agg = "max" },
    },
    label = {
      ["lua-queue"] = "Lua ring of strings, 2 coroutines, no copy (reference)",
      ["nexus-lua"] = "nexus, Lua: tx:send / rx:recv + release",
      ["nexus-c"] = "nexus, C producer and consumer (Lua schedules)",
      ["nexus-cmd-lua"] = "nexus command, Lua",
      ["nexus-cmd-c"] = "nexus command, C",
    },
  },
  chan = {
    title = "chan ping-pong: two tasks, two capacity-1 channels, N round trips",
    metric = "ns_per_hop", unit = "ns/hop", fmt = "%.1f",
    ref = "lua-chan",
    hide = { total_ms = true },
    extra = {},
    label = {
      ["lua-chan"] = "hand-written Lua channel, coroutines (reference)",
      ["coro"] = "bare resume/yield, no channel (floor)",
      ["nexus-yield"] = "two nexus tasks passing the turn with nexus.yield(), no channel (the executor's floor)",
      ["luv"] = "Lua channel under luv (one round per loop iteration)",
      ["luv-drain"] = "Lua channel under luv (drain per idle callback)",
      ["cqueues"] = "cqueues (condition-based channel)",
      ["nexus"] = "nexus.channel (luajit + require)",
      ["nexus-cmd"] = "nexus.channel (nexus command)",
    },
  },
  pool = {
    title = "pool: detached trivial tasks spawned in batches of 64, steady state",
    metric = "ns_per_task", unit = "ns/task", fmt = "%.1f",
    ref = "spawn",
    extra = {},
    label = {
      ["spawn"] = "nexus.spawn, handle dropped (reference)",
      ["pooled"] = "nexus.spawn_pooled, pool of 64 (luajit + require)",
      ["pooled-cmd"] = "nexus.spawn_pooled, pool of 64 (nexus command)",
    },
  },
  signal = {
    title = "signal: SIGTERM to a busy program (tasks always ready) until it has exited, median of 7",
    metric = "exit_ms", unit = "ms", fmt = "%.2f",
    ref = "cmd-spinner",
    extra = { { key = "max_ms", head = "max ms", fmt = "%.2f", agg = "max" } },
    label = {
      ["cmd-spinner"] = "nexus command, a task spinning on nexus.yield (reference)",
      ["cmd-pingpong"] = "nexus command, two tasks in a channel ping-pong",
      ["luajit-runtime"] = "luajit, explicit runtime with signal_handlers(true)",
    },
  },
  select = {
    title = "select ping-pong: as chan ping-pong, each receive a nexus.select over two channels (one idle)",
    metric = "ns_per_hop", unit = "ns/hop", fmt = "%.1f",
    ref = "nexus-chan",
    hide = { total_ms = true },
    extra = {},
    label = {
      ["nexus-chan"] = "nexus.channel ping-pong, plain recv (reference)",
      ["nexus-select"] = "nexus.select(recv_op, idle recv_op) (luajit + require)",
      ["nexus-select-cmd"] = "nexus.select (nexus command)",
    },
  },
  group = {
    title = "group: N trivial tasks spawned into a nexus.group, collected with g:next()",
    metric = "ns_per_task", unit = "ns/task", fmt = "%.1f",
    ref = "spawn-join",
    hide = { total_ms = true },
    extra = {},
    label = {
      ["spawn-join"] = "nexus.spawn + h:join in order (reference)",
      ["group-next"] = "g:spawn + g:next (luajit + require)",
      ["group-next-cmd"] = "g:spawn + g:next (nexus command)",
    },
  },
  sem = {
    title = "semaphore: 4 tasks contending on a semaphore of 1 (acquire, yield, release), per pair",
    metric = "ns_per_pair", unit = "ns/pair", fmt = "%.1f",
    ref = "lua-sched",
    hide = { total_ms = true, tasks = true },
    extra = {},
    label = {
      ["lua-sched"] = "a Lua semaphore on the hand-written scheduler (reference)",
      ["cqueues"] = "cqueues, a condition variable",
      ["nexus"] = "nexus.semaphore (luajit + require)",
      ["nexus-cmd"] = "nexus.semaphore (nexus command)",
    },
  },
  tls_echo = {
    title = "TLS echo: one connection, 64-byte round trips (CPUs: BENCH_TLS_PIN, default both on 0)",
    metric = "p50_us", unit = "p50 us", fmt = "%.2f",
    ref = "c-floor",
    hide = {},
    extra = { { key = "srv_cpu_us", head = "server CPU us", fmt = "%.1f", agg = "median", ratio = true } },
    label = {
      ["c-floor"] = "C on libuv + OpenSSL memory BIOs (reference)",
      ["copas"] = "copas 1.1 + LuaSec (coroutine per connection)",
      ["nexus"] = "nexus, listen{tls=...} (nexus command)",
    },
  },
  ws = {
    title = "WebSocket echo: 50 connections x 16 masked 64-byte binary messages in flight (server CPU 0, load generator CPU 1)",
    metric = "srv_cpu_us", unit = "server CPU us/msg", fmt = "%.3f",
    ref = "c-floor",
    hide = { conns = true, depth = true, secs = true },
    extra = {
      { key = "msgs_per_s", head = "msgs/s", fmt = "%.0f", agg = "median", ratio = true },
      { key = "srv_cpu_pct", head = "server CPU %", fmt = "%.0f", agg = "median" },
      { key = "gen_cpu_us", head = "loadgen CPU us/msg", fmt = "%.3f", agg = "median" },
    },
    label = {
      ["c-floor"] = "C: wslay over libuv (reference)",
      ["nexus"] = "nexus.websocket, recv + send (nexus command)",
      ["nexus-zerocopy"] = "nexus.websocket, recv_into a byte channel + send(m) (nexus command)",
      ["lua-http"] = "lua-http's websocket on cqueues (luajit)",
    },
  },
  http_server = {
    title = "HTTP server: server CPU per keep-alive GET / (server CPU 0, load generator CPU 1)",
    sub = function(r)
      return r.conns and string.format(" (%d connections x %d in flight, %.0f s)",
                                       r.conns, r.depth, r.secs)
    end,
    metric = "srv_cpu_us", unit = "server CPU us/req", fmt = "%.2f",
    ref = "c-floor",
    hide = { conns = true, depth = true, secs = true, n = true },   -- in the title
    extra = {
      { key = "req_per_s", head = "req/s", fmt = "%.0f", agg = "median", ratio = true },
      { key = "p50_us", head = "p50 us", fmt = "%.1f", agg = "median" },
      { key = "p99_us", head = "p99 us", fmt = "%.1f", agg = "median", ratio = true },
      { key = "srv_cpu_pct", head = "server CPU %", fmt = "%.0f", agg = "median" },
      { key = "gen_cpu_us", head = "loadgen CPU us/req", fmt = "%.2f", agg = "median" },
    },
    label = {
      ["c-floor"] = "C on libuv + http_parser (reference)",
      ["luahttp"] = "lua-http server on cqueues",
      ["nexus"] = "nexus.http.listen (nexus command)",
      ["nexus-tcp"] = "fixed responses by hand on nexus.tcp, no parser (info)",
    },
  },
  http_client = {
    title = "HTTP client: GETs of a 1 KiB body, 100 in flight, from a keep-alive C server (server CPU 1, client CPU 0)",
    metric = "cpu_us_per_req", unit = "client CPU us/req", fmt = "%.2f",
    ref = "c-floor",
    hide = {},
    extra = { { key = "req_per_s", head = "req/s", fmt = "%.0f", agg = "median", ratio = true } },
    label = {
      ["c-floor"] = "C: libcurl multi on libuv, multi-uv shape (reference)",
      ["nexus"] = "nexus.http.get, 100 tasks (nexus command)",
      ["lua-http"] = "lua-http on cqueues, 100 keep-alive connections",
      ["copas"] = "socket.http in copas (a connection per request)",
    },
  },
  luv_bridge = {
    title = "luv bridge: nexus.luv.await(fn) against a plain luv callback, the same op, ns per call",
    metric = "ns_per_call", unit = "ns/call", fmt = "%.0f",
    ref = "cb-stat",
    hide = {},
    extra = {},
    label = {
      ["cb-stat"] = "uv.fs_stat chained from its callback, nexus's loop (reference)",
      ["await-stat"] = "uv.fs_stat, each through nexus.luv.await",
      ["luv-stat"] = "uv.fs_stat chained, plain luv on its own loop (info)",
      ["cb-timer"] = "0 ms uv timer restarted from its callback (no loop turn: libuv 1.44)",
      ["await-timer"] = "0 ms uv timer, each through nexus.luv.await (a loop turn each)",
      ["luv-timer"] = "0 ms timer chained, plain luv (info)",
      ["cb-idle"] = "uv idle callback, one per loop turn, nexus's loop",
      ["await-idle"] = "an idle callback per loop turn, each through nexus.luv.await",
      ["luv-idle"] = "uv idle callback per loop turn, plain luv (info)",
    },
  },
  coop = {
    title = "coop: the chan ping-pong with the cooperative budget off and at its default",
    metric = "ns_per_hop", unit = "ns/hop", fmt = "%.1f",
    ref = "coop-off",
    hide = { total_ms = true },
    extra = {},
    label = {
      ["coop-off"] = "coop_budget(0) (reference)",
      ["coop-128"] = "coop_budget(128), the default",
    },
  },
  chan_try = {
    title = "chan try pair: try_send + try_recv, never suspending, N pairs",
    metric = "ns_per_pair", unit = "ns/pair", fmt = "%.2f",
    ref = "lua-chan",
    hide = { total_ms = true },
    extra = {},
    label = {
      ["lua-chan"] = "hand-written Lua channel (reference)",
      ["nexus"] = "nexus.channel (luajit + require)",
      ["nexus-cmd"] = "nexus.channel (nexus command)",
    },
  },
  world = {
    title = "world: ticks dispatched to the order-book handler, and with_world round trips",
    metric = "ns_per_op", unit = "ns/op", fmt = "%.2f",
    ref = "c-direct",
    extra = {},
    label = {
      ["c-direct"] = "ob_on_tick, direct FFI call, pointers in locals (reference)",
      ["c-handler"] = "ob_on_tick through handler:run(ev)",
      ["c-handler-call"] = "ob_on_tick through handler(ev) (__call)",
      ["lua-handler"] = "Lua twin of ob_on_tick through handler:run(ev)",
      ["touch-direct"] = "ob_touch (call only), direct FFI call",
      ["touch-handler"] = "ob_touch through handler:run(ev)",
      ["with_world"] = "ctx:with_world(fn) round trip (luajit)",
      ["with_world_ref"] = "ctx:with_world_ref(fn) round trip (luajit)",
      ["with_world-cmd"] = "ctx:with_world(fn) round trip (nexus command)",
    },
  },
  echo_latency = {
    title = "echo latency: 1 connection, sequential 64-byte round trips",
    metric = "p50_us", unit = "p50 us", fmt = "%.2f",
    ref = "c-libuv",
    extra = {
      { key = "p99_us", head = "p99 us", fmt = "%.2f", agg = "median", ratio = true },
      { key = "p999_us", head = "p999 us", fmt = "%.2f", agg = "median", ratio = true },
      { key = "srv_cpu_us", head = "server CPU us/rt", fmt = "%.2f", agg = "median" },
    },
    label = {
      ["c-libuv"] = "C libuv, static read buffer (reference)",
      ["c-epoll"] = "C epoll",
      ["luv"] = "luv (read_start callbacks)",
      ["cqueues"] = "cqueues (coroutine per connection)",
      ["copas"] = "copas (LuaSocket, coroutine per connection)",
      ["nexus"] = "nexus (luajit + require)",
      ["nexus-cmd"] = "nexus (nexus command)",
    },
  },
  echo_throughput = {
    title = "echo throughput: server CPU per 64-byte message",
    sub = function(r)
      return r.conns and string.format(" (%d connections x %d in flight, %.0f s)",
                                       r.conns, r.depth, r.secs)
    end,
    metric = "srv_cpu_us", unit = "server CPU us/msg", fmt = "%.3f",
    ref = "c-libuv",
    hide = { conns = true, depth = true, secs = true },   -- in the title
    extra = {
      { key = "msgs_per_s", head = "msgs/s", fmt = "%.0f", agg = "median", ratio = true },
      { key = "srv_cpu_pct", head = "server CPU %", fmt = "%.0f", agg = "median" },
      { key = "gen_cpu_us", head = "loadgen CPU us/msg", fmt = "%.3f", agg = "median" },
    },
  },
}
workloads.echo_throughput.label = workloads.echo_latency.label


local function median(xs)
  local t = {}
  for i, v in ipairs(xs) do t[i] = v end
  table.sort(t)
  local n = #t
  if n == 0 then return nil end
  if n % 2 == 1 then return t[(n + 1) / 2] end
  return (t[n / 2] + t[n / 2 + 1]) / 2
end

local function max(xs)
  local m
  for _, v in ipairs(xs) do if not m or v > m then m = v end end
  return m
end

-- Median of the per-round ratios vals[r] / ref[r]: rounds run the
-- implementations back to back, so a burst of machine noise that slows one
-- round slows both sides of its ratio.
local function paired(vals, refs)
  if not refs then return "-" end
  local rs = {}
  for r = 1, math.min(#vals, #refs) do rs[r] = vals[r] / refs[r] end
  local m = median(rs)
  return m and string.format("%.2fx", m) or "-"
end

-- Targets the issue states, checked against the nexus rows. A relative
-- target is judged on both the ratio of medians and the paired ratio;
-- when the two disagree the verdict is "unclear (noise)": rerun with more
-- BENCH_RUNS.
local world_targets   -- below

local function targets(w, d)
  local out = {}
  local function ratios(impl, ref)
    local a, b = d.rows[impl], d.rows[ref]
    if not (a and b and a.med and b.med) then return nil end
    local rs = {}
    for r = 1, math.min(#a.vals, #b.vals) do rs[r] = a.vals[r] / b.vals[r] end
    return a.med / b.med, median(rs)
  end
  local function rel(impl, ref, what, limit, strict)
    local r1, r2 = ratios(impl, ref)
    if not r1 then return end
    local function ok(r) if strict then return r < limit end return r <= limit end
    local verdict = ok(r1) and ok(r2) and "met"
                 or (not ok(r1) and not ok(r2)) and "MISSED" or "unclear (noise)"
    out[#out + 1] = string.format("%s: %.2fx %s, paired %.2fx (target %s %gx): %s",
      impl, r1, what, r2, strict and "<" or "<=", limit, verdict)
  end
  local function check(impl)
    local row = d.rows[impl]
    if not (row and row.med) then return end
    if w == "spawn" then
      -- each nexus row against the bare loop run by the same binary: the
      -- nexus command links Debian's libluajit, whose C parts run about
      -- 8 % more instructions than the same code in Debian's luajit
      if impl == "nexus-cmd" then
        rel(impl, "coro-alive-cmd", "the bare-coroutine loop (all alive) under the command", 1.5)
      else
        rel(impl, "coro-alive", "the bare-coroutine loop (all alive)", 1.5)
      end
      rel(impl, "luv", "luv", 1, true)
      rel(impl, "cqueues", "cqueues", 1, true)
    elseif w == "pool" then
      rel(impl, "spawn", "nexus.spawn", 1, true)
    elseif w == "sleepers" then
      rel(impl, "c-libuv", "the C libuv program (wall)", impl == "nexus-closure" and 2.0 or 1.5)
      if impl == "nexus-closure" then
        -- issue "Performance II": lateness <= 1.5x C's, never early; and
        -- the wall against the interpreter's floor measured in the same run
        local c = d.rows["c-libuv"]
        local late, clate = median(row.late or {}), c and median(c.late or {})
        if late and clate then
          out[#out + 1] = string.format("%s: mean lateness %.2f ms, %.2fx the C program's %.2f (target <= 1.5x): %s",
            impl, late, late / clate, clate, late / clate <= 1.5 and "met" or "MISSED")
        end
        out[#out + 1] = string.format("%s: %d early wakes at most (target 0): %s",
          impl, max(row.early or {}) or 0, (max(row.early or {}) or 0) == 0 and "met" or "MISSED")
        local fl = d.rows["lua-floor"]
        if fl and fl.med and c and c.med then
          out[#out + 1] = string.format("%s: above the floor (closures + coroutines, %.1f ms) nexus adds %.1f ms, %.2fx the C program's wall (info)",
            impl, fl.med, row.med - fl.med, (row.med - fl.med) / c.med)
        end
      end
    elseif w == "chan" or w == "chan_try" then
      local limit = w == "chan" and 60 or 30
      out[#out + 1] = string.format("%s: %.1f %s (target <= %d): %s",
        impl, row.med, workloads[w].unit, limit, row.med <= limit and "met" or "MISSED")
      if w == "chan" then
        -- issue "Performance II": <= 2x the bare resume/yield hop, and
        -- >= 1.2x ahead of the fastest Lua channel peer
        rel(impl, "coro", "the bare resume/yield (per hop)", 2.0)
        local best
        for _, p in ipairs({ "lua-chan", "luv", "luv-drain", "cqueues" }) do
          local pr = d.rows[p]
          if pr and pr.med and (not best or pr.med < d.rows[best].med) then best = p end
        end
        if best then
          local r1, r2 = ratios(impl, best)
          local ok1, ok2 = 1 / r1 >= 1.2, 1 / r2 >= 1.2
          out[#out + 1] = string.format("%s: %.2fx ahead of the fastest Lua channel peer (%s), paired %.2fx (target >= 1.2x): %s",
            impl, 1 / r1, best, 1 / r2, ok1 and ok2 and "met" or (not ok1 and not ok2) and "MISSED" or "unclear (noise)")
        end
        rel(impl, "luv", "luv", 1, true)
        rel(impl, "luv-drain", "luv (drain)", 1, true)
        rel(impl, "cqueues", "cqueues", 1, true)
      end
    elseif w == "echo_latency" then
      rel(impl, "c-libuv", "the C libuv server (p50)", 1.05)
    elseif w == "echo_throughput" then
      rel(impl, "c-libuv", "the C libuv server (CPU/msg)", 1.15)
      rel(impl, "luv", "luv (CPU/msg)", 1, true)
      rel(impl, "cqueues", "cqueues (CPU/msg)", 1, true)
      rel(impl, "copas", "copas (CPU/msg)", 1, true)
    elseif w == "parked" then
      out[#out + 1] = string.format("%s: %.0f bytes/task by RSS, %.0f by Lua heap (target <= 700, on RSS): %s",
        impl, row.med, median(row.lua), row.med <= 700 and "met" or "MISSED")
      rel(impl, "coro", "a bare coroutine (RSS)", 1.2)
    end
  end
  if w == "world" then return world_targets(d, rel, out) end
  if w == "signal" then
    for _, impl in ipairs(d.order) do
      local row = d.rows[impl]
      if row and row.med then
        out[#out + 1] = string.format("%s: exits %.2f ms after SIGTERM (target <= 100): %s",
          impl, row.med, row.med <= 100 and "met" or "MISSED")
      end
    end
    return out
  end
  if w == "pool" then
    check("pooled")
    check("pooled-cmd")
    return out
  end
  if w == "select" then
    rel("nexus-select", "nexus-chan", "the plain ping-pong", 1.3)
    rel("nexus-select-cmd", "nexus-chan", "the plain ping-pong", 1.3)
    return out
  end
  if w == "group" then
    rel("group-next", "spawn-join", "spawn+join", 1.2)
    rel("group-next-cmd", "spawn-join", "spawn+join", 1.2)
    return out
  end
  if w == "sem" then
    rel("nexus", "lua-sched", "the Lua semaphore", 1, true)
    rel("nexus", "cqueues", "cqueues", 1, true)
    return out
  end
  if w == "luv_bridge" then
    for _, op in ipairs({ "stat", "timer", "idle" }) do
      local a, c = d.rows["await-" .. op], d.rows["cb-" .. op]
      if a and c and a.med and c.med then
        out[#out + 1] = string.format("await-%s: %.0f ns per call over the plain callback (%.0f against %.0f; reported, no target)",
          op, a.med - c.med, a.med, c.med)
      end
    end
    return out
  end
  if w == "http_client" then
    rel("nexus", "c-floor", "the C floor (CPU/req)", 1.15)
    rel("nexus", "lua-http", "lua-http (CPU/req)", 1, true)
    rel("nexus", "copas", "copas (CPU/req)", 1, true)
    return out
  end
  if w == "tls_echo" then
    rel("nexus", "c-floor", "the C floor (p50)", 1.10)
    rel("nexus", "copas", "copas + LuaSec (p50)", 1, true)
    return out
  end
  if w == "ws" then
    for _, impl in ipairs({ "nexus", "nexus-zerocopy" }) do
      rel(impl, "c-floor", "the C floor (CPU/msg)", 1.25)
      rel(impl, "lua-http", "lua-http (CPU/msg)", 1, true)
    end
    return out
  end
  if w == "http_server" then
    rel("nexus", "c-floor", "the C floor (CPU/req)", 1.3)
    rel("nexus", "luahttp", "lua-http (CPU/req)", 1, true)
    return out
  end
  if w == "coop" then
    rel("coop-128", "coop-off", "the budget off", 1.02)
    return out
  end
  check("nexus")
  check("nexus-cmd")
  if w == "sleepers" then check("nexus-closure") end
  if w == "parked" then check("nexus-token") end
  return out
end

-- The issue's targets for the World: a handler costs what a direct FFI
-- call costs (<= 1.2x, on the real handler and on the call alone), a
-- with_world round trip <= 20 ns; the Lua handler is reported beside C.
world_targets = function(d, rel, out)
  rel("c-handler", "c-direct", "the direct FFI call", 1.2)
  rel("c-handler-call", "c-direct", "the direct FFI call", 1.2)
  rel("touch-handler", "touch-direct", "the direct FFI call (call only)", 1.2)
  for _, impl in ipairs({ "with_world", "with_world_ref", "with_world-cmd" }) do
    local row = d.rows[impl]
    if row and row.med then
      out[#out + 1] = string.format("%s: %.2f ns per round trip (target <= 20 ns): %s",
        impl, row.med, row.med <= 20 and "met" or "MISSED")
    end
  end
  local lua, c = d.rows["lua-handler"], d.rows["c-handler"]
  if lua and c and lua.med and c.med then
    out[#out + 1] = string.format("lua-handler: %.2f ns vs c-handler %.2f ns per tick (%.2fx; reported, no target)",
      lua.med, c.med, lua.med / c.med)
  end
  return out
end


-- Read the raw results.
local data = {}     -- workload -> { order = {impl...}, rows = impl -> row }
local seen_order = {}
for line in io.lines(results_path) do
  local w, impl, kind, text = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
  if w then
    local d = data[w]
    if not d then
      d = { order = {}, rows = {} }
      data[w] = d
      seen_order[#seen_order + 1] = w
    end
    local row = d.rows[impl]
    if not row then
      row = { runs = {}, skip = nil, fail = nil }
      d.rows[impl] = row
      d.order[#d.order + 1] = impl
    end
    if kind == "RUN" then
      local r = {}
      for k, v in text:gmatch("(%S+)=(%S+)") do r[k] = tonumber(v) end
      row.runs[#row.runs + 1] = r
    elseif kind == "SKIP" then
      row.skip = text
    elseif kind == "FAIL" then
      row.fail = text
    end
  end
end

local md = {}
local function emit(s) io.stdout:write(s, "\n") end

for _, w in ipairs({ "spawn", "sleepers", "parked", "pool", "chan", "chan_try", "select", "group", "sem", "coop", "tls_echo", "ws", "http_server", "http_client", "luv_bridge", "world", "bytes",
                        "signal", "echo_latency", "echo_throughput" }) do
  local d, spec = data[w], workloads[w]
  if d then
    -- medians
    local med, n, first = {}, nil, nil
    for _, impl in ipairs(d.order) do
      local row = d.rows[impl]
      local xs, lua, late, early = {}, {}, {}, {}
      for i, r in ipairs(row.runs) do
        xs[i] = r[spec.metric]; lua[i] = r.lua_per_task; n = n or r.n
        late[i] = r.late_ms; early[i] = r.early
        first = first or r
      end
      row.vals, row.lua, row.late, row.early = xs, lua, late, early
      row.med = median(xs)
      med[impl] = row.med
    end
    local ref = med[spec.ref]

    local head = { "implementation", "median " .. spec.unit, "ratio", "paired ratio" }
    for _, e in ipairs(spec.extra) do
      head[#head + 1] = e.head
      if e.ratio then head[#head + 1] = e.head .. " ratio" end
    end
    head[#head + 1] = "runs (" .. spec.unit .. ")"

    local rows = {}
    for _, impl in ipairs(d.order) do
      local row = d.rows[impl]
      local label = spec.label[impl] or impl
      local cells
      if row.skip then
        cells = { label, "skipped: " .. row.skip }
      elseif #row.vals == 0 then
        cells = { label, "failed: " .. (row.fail or "no runs") }
      else
        local m = med[impl]
        cells = { label, string.format(spec.fmt, m),
                  ref and string.format("%.2fx", m / ref) or "-" }
        cells[#cells + 1] = paired(row.vals, d.rows[spec.ref] and d.rows[spec.ref].vals)
        for _, e in ipairs(spec.extra) do
          local xs = {}
          for i, r in ipairs(row.runs) do xs[i] = r[e.key] end
          local v = (e.agg == "max" and max or median)(xs)
          cells[#cells + 1] = v and string.format(e.fmt, v) or "-"
          if e.ratio then   -- ratio of medians to the reference's
            local refrow, rv = d.rows[spec.ref], nil
            if refrow and not refrow.skip then
              local rs = {}
              for i, r in ipairs(refrow.runs) do rs[i] = r[e.key] end
              rv = median(rs)
            end
            cells[#cells + 1] = (v and rv) and string.format("%.2fx", v / rv) or "-"
          end
        end
        local raw = {}
        for i, v in ipairs(row.vals) do raw[i] = string.format(spec.fmt, v) end
        cells[#cells + 1] = table.concat(raw, " ")
        if row.fail then cells[#cells] = cells[#cells] .. " (then failed: " .. row.fail .. ")" end
      end
      rows[#rows + 1] = cells
    end

    -- text table
    emit("")
    local sub = spec.sub and first and spec.sub(first)
                or (n and string.format(" (N = %d)", n) or "")
    emit(spec.title .. sub)
    local width = {}
    for _, r in ipairs({ head, unpack(rows) }) do
      if #r == #head then
        for i, c in ipairs(r) do width[i] = math.max(width[i] or 0, #c) end
      end
    end
    local function line(r)
      if #r ~= #head then return "  " .. string.format("%-" .. width[1] .. "s  ", r[1]) .. r[2] end
      local parts = {}
      for i, c in ipairs(r) do
        parts[i] = i == 1 and string.format("%-" .. width[i] .. "s", c)
                          or (i == #r and c or string.format("%" .. width[i] .. "s", c))
      end
      return "  " .. table.concat(parts, "  ")
    end
    emit(line(head))
    for _, r in ipairs(rows) do emit(line(r)) end
    -- medians of the extra fields a script reports beyond the table's
    local shown = { [spec.metric] = true, n = true }
    for _, e in ipairs(spec.extra) do shown[e.key] = true end
    for k in pairs(spec.hide or {}) do shown[k] = true end
    local also = {}
    for _, impl in ipairs(d.order) do
      local row, keys, parts = d.rows[impl], {}, {}
      for _, r in ipairs(row.runs) do
        for k in pairs(r) do if not shown[k] and not keys[k] then keys[k] = true; keys[#keys + 1] = k end end
      end
      table.sort(keys)
      for _, k in ipairs(keys) do
        local xs = {}
        for _, r in ipairs(row.runs) do xs[#xs + 1] = r[k] end
        parts[#parts + 1] = string.format("%s=%.4g", k, median(xs))
      end
      if #parts > 0 then also[#also + 1] = impl .. ": " .. table.concat(parts, " ") end
    end
    for _, a in ipairs(also) do emit("  also (medians): " .. a) end
    local tg = targets(w, d)
    for _, t in ipairs(tg) do emit("  target: " .. t) end

    -- markdown
    md[#md + 1] = "### " .. spec.title .. sub
    md[#md + 1] = ""
    md[#md + 1] = "| " .. table.concat(head, " | ") .. " |"
    local sep = {}
    for i = 1, #head do sep[i] = i == 1 and "---" or "---:" end
    md[#md + 1] = "| " .. table.concat(sep, " | ") .. " |"
    for _, r in ipairs(rows) do
      local cells = {}
      for i = 1, #head do cells[i] = r[i] or "" end
      md[#md + 1] = "| " .. table.concat(cells, " | ") .. " |"
    end
    md[#md + 1] = ""
    for _, t in ipairs(tg) do md[#md + 1] = "- target: " .. t end
    for _, a in ipairs(also) do md[#md + 1] = "- also (medians): " .. a end
    if #tg + #also > 0 then md[#md + 1] = "" end
  end
end

if md_path then
  local f = assert(io.open(md_path, "w"))
  f:write(table.concat(md, "\n"), "\n")
  f:close()
  emit("")
  emit("raw results: " .. results_path .. "; Markdown tables: " .. md_path)
end

-- Runs every example through the nexus command and checks what it prints.
local bin = assert(os.getenv("NEXUS_BIN"), "NEXUS_BIN must name the nexus binary")

local function run(args)
  local out = os.tmpname()
  local p = io.popen(("%s %s 2>&1 >%s; echo $?"):format(bin, args, out))
  local stderr_and_rc = p:read("*a")
  p:close()
  local f = io.open(out)
  local stdout = f:read("*a")
  f:close()
  os.remove(out)
  local rc = tonumber(stderr_and_rc:match("(%d+)%s*$"))
  return stdout, rc, stderr_and_rc
end

describe("examples", function()
  it("hello.lua ticks in time order, times out the slow ticker, exits 0", function()
    local out, rc, err = run("examples/hello.lua")
    assert.are.equal(0, rc, err)
    -- fast ticks every 10 ms, slow every 25 ms: both run at once, so the
    -- output interleaves them, in time order, each ticker's ticks in turn
    local fast, slow, last_ms, interleaved = {}, {}, -1, false
    for name, n, ms in out:gmatch("(%a+)%s+tick (%d) at%s+(%d+) ms") do
      local list = name == "fast" and fast or slow
      list[#list + 1] = tonumber(n)
      assert.is_true(tonumber(ms) >= last_ms, "ticks out of time order:\n" .. out)
      last_ms = tonumber(ms)
      if name == "slow" and #fast < 3 then interleaved = true end
    end
    assert.are.same({ 1, 2, 3 }, fast)
    assert.are.same({ 1, 2 }, slow)
    assert.is_true(interleaved, "the slow ticker ran only after the fast one:\n" .. out)
    assert.truthy(out:find("fast done\n", 1, true))
    assert.truthy(out:find("slow done\n", 1, true))
    assert.truthy(out:find("timeout:\tnil\ttimeout", 1, true))
    assert.is_nil(out:find("late", 1, true) and out:find("late%s+tick"))
  end)

  it("reconnect_backoff.lua doubles the delay up to the cap and resets on success", function()
    local out, rc, err = run("examples/reconnect_backoff.lua 4")
    assert.are.equal(0, rc, err)
    local delays = {}
    for ms in out:gmatch("retry in (%d+) ms") do delays[#delays + 1] = tonumber(ms) end
    assert.are.same({ 10, 20, 40, 40 }, delays)
    assert.truthy(out:find("session 5: connected, backoff reset", 1, true))
    local n, ms = out:match("(%d+) sessions in (%d+) ms")
    assert.are.equal("6", n)
    -- 10 + 20 + 40 + 40 ms of backoff at least: the sleeps really happened
    assert.is_true(tonumber(ms) >= 110)
  end)

  it("reconnect_backoff.lua never waits when the session succeeds at once", function()
    local out, rc, err = run("examples/reconnect_backoff.lua 0")
    assert.are.equal(0, rc, err)
    assert.is_nil(out:find("retry in", 1, true))
    local _, count = out:gsub("connected, backoff reset", "")
    assert.are.equal(6, count)
  end)

  it("join_many.lua sums concurrent tasks and collects a failure with result()", function()
    local out, rc, err = run("examples/join_many.lua")
    assert.are.equal(0, rc, err)
    local total, tasks, ms = out:match("total = (%d+) from (%d+) tasks in (%d+) ms")
    assert.are.equal("56", total)
    assert.are.equal("8", tasks)
    -- eight 10 ms queries run concurrently: far less than 8 x 10 ms
    assert.is_true(tonumber(ms) >= 9 and tonumber(ms) < 60, "took " .. ms .. " ms")
    assert.truthy(out:find("query 1: ok 1\nquery 2: ok 2\nquery 3: error query 3 failed\nquery 4: ok 4", 1, true))
  end)

  it("ref_price_refresh.lua GETs prices from its own endpoint while the hot path ticks on", function()
    local out, rc, err = run("examples/ref_price_refresh.lua 3")
    assert.are.equal(0, rc, err)
    local prices, ticks = {}, {}
    for i, px, n in out:gmatch("refresh (%d): RefPrice ([%d.]+) %(the hot path ticked (%d+) times") do
      prices[tonumber(i)] = px
      ticks[#ticks + 1] = tonumber(n)
    end
    assert.are.same({ "100.25", "100.50", "100.75" }, prices)
    -- a 50 ms slow answer and 5 ms hot ticks: a stalled loop gives 0 or 1
    for _, n in ipairs(ticks) do assert.is_true(n >= 3, "hot path stalled:\n" .. out) end
    assert.truthy(out:find("3 updates, last 100.75\n", 1, true), out)
  end)
end)

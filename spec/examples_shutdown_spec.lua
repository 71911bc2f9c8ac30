-- The shutdown examples, run as child processes and stopped by real
-- signals: examples/shutdown_loop.lua (seed pattern 1) and
-- examples/cancel_tree.lua (its gotcha: fan a shutdown out to subsystems
-- through a token tree with drop guards).
local dir = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
local P = dofile(dir .. "proc.lua")
local H = P.H
local nexus = require "nexus"

local examples = dir .. "../examples/"
local START, END = 30, 30

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

local function index_of(t, pattern)
  for i, l in ipairs(t) do if l:find(pattern) then return i end end
end

describe("examples", function()
  after_each(P.cleanup)

  describe("shutdown_loop.lua", function()
    local runs = {
      { "nexus", "TERM", "SIGTERM", function(f) return P.spawn({ H.nexus_bin(), f }) end },
      { "nexus", "INT", "SIGINT", function(f) return P.spawn({ H.nexus_bin(), f }) end },
      { "luajit", "TERM", "SIGTERM", function(f) return P.spawn({ os.getenv("NEXUS_LUAJIT") or "luajit", f }) end },
    }
    for _, r in ipairs(runs) do
      local how, sig, signame, start = r[1], r[2], r[3], r[4]
      it(("under %s, a real SIG%s stops it: exit 0, the worker was running and ticked"):format(how, sig), function()
        local p = start(examples .. "shutdown_loop.lua")
        assert.is_true(p:wait_for("running: Ctrl-C or SIGTERM to stop\n", START), p:show())
        local t0 = nexus.now()
        P.sleep_ms(500)
        p:signal(sig)
        assert.is_truthy(p:wait(END), p:show())
        local elapsed = nexus.now() - t0
        assert.are.same({ exited = true, code = 0 }, p.status, p:show())
        local ticks = tonumber(p:out():match(
          "\nshutdown by " .. signame .. " %(worker_running=true, ticks=(%d+)%)\n$"))
        assert.is_truthy(ticks, p:show())
        -- a tick at once, then one every 100 ms: at least 0, 100, 200 ms
        assert.is_true(ticks >= 3, p:show())
        assert.is_true(ticks <= elapsed / 0.1 + 2, ("%d ticks in %.2f s"):format(ticks, elapsed))
        assert.are.equal("", p:err())
      end)
    end
  end)

  describe("cancel_tree.lua", function()
    -- Causal order, whatever the order of wake-ups among siblings.
    local function check_tree(out, show)
      local l = lines(out)
      local give_up = index_of(l, "^db: giving up")
      local shutdown = index_of(l, "^shutdown: cancelling the root token$")
      assert.is_truthy(give_up, show)
      assert.is_truthy(shutdown, show)
      assert.is_true(give_up < shutdown, show)
      local stopped = {}
      for i, line in ipairs(l) do
        local name, ticks = line:match("^  (%a+ worker %d): stopped after (%d+) ticks$")
        if name then
          assert.is_nil(stopped[name], "stopped twice: " .. name)
          stopped[name] = i
          assert.is_true(tonumber(ticks) > 0, show)
        end
      end
      for _, w in ipairs({ "db worker 1", "db worker 2" }) do
        assert.is_truthy(stopped[w], w .. "\n" .. show)
        assert.is_true(stopped[w] > give_up and stopped[w] < shutdown,
          w .. " stopped by db's drop guard, before the shutdown\n" .. show)
      end
      local subsystems = { http = 3, metrics = 1 }
      for sub, n in pairs(subsystems) do
        local done = index_of(l, "^" .. sub .. ": all " .. n .. " workers stopped$")
        assert.is_truthy(done, show)
        for i = 1, n do
          local w = ("%s worker %d"):format(sub, i)
          assert.is_truthy(stopped[w], w .. "\n" .. show)
          assert.is_true(stopped[w] > shutdown and stopped[w] < done,
            w .. " stopped by the root token, before its supervisor's report\n" .. show)
        end
      end
      assert.are.equal("all subsystems stopped", l[#l], show)
      local n = 0
      for _ in pairs(stopped) do n = n + 1 end
      assert.are.equal(6, n, show)
    end

    it("fans a triggered shutdown out to every subsystem; the db guard fires first", function()
      local r = H.run_nexus({ examples .. "cancel_tree.lua" })
      local show = ("rc=%s\n%s%s"):format(r.rc, r.out, r.err)
      assert.are.equal(0, r.rc, show)
      assert.are.equal("", r.err)
      check_tree(r.out, show)
    end)

    it("with 'wait', a real SIGTERM does the same", function()
      local p = P.spawn({ H.nexus_bin(), examples .. "cancel_tree.lua", "wait" })
      assert.is_true(p:wait_for("running: Ctrl-C or SIGTERM to stop\n", START), p:show())
      assert.is_true(p:wait_for("db worker 2: stopped", START), p:show())
      p:signal("TERM")
      assert.is_truthy(p:wait(END), p:show())
      assert.are.same({ exited = true, code = 0 }, p.status, p:show())
      check_tree(p:out(), p:show())
    end)
  end)
end)

-- The composition examples, each run as a child process (under the nexus
-- command and under plain luajit) and checked by what it prints:
-- examples/join_many.lua (seed pattern 8 with a group),
-- examples/fanout.lua (1,000 jobs, a concurrency cap, a deadline), and
-- examples/chat_server.lua (sessions in a scope, slow clients dropped,
-- SIGTERM). No assertion depends on the machine being fast: time limits
-- are only there to turn a hang into a failure.
local dir = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
local P = dofile(dir .. "proc.lua")
local H = P.H
local nexus = require "nexus"

local examples = dir .. "../examples/"
local LIMIT = 60          -- seconds an example may take before it counts as hung

local runners = {
  nexus = function(file, ...) return P.spawn({ H.nexus_bin(), file, ... }) end,
  luajit = function(file, ...) return P.spawn({ os.getenv("NEXUS_LUAJIT") or "luajit", file, ... }) end,
}

-- Runs an example to its end: stdout, and the proc (for :show()).
local function run(how, name, ...)
  local p = runners[how](examples .. name, ...)
  assert.is_truthy(p:wait(LIMIT), "still running after " .. LIMIT .. " s\n" .. p:show())
  return p:out(), p
end

describe("composition examples", function()
  after_each(P.cleanup)

  for _, how in ipairs({ "nexus", "luajit" }) do
    describe("under " .. how, function()
      it("join_many.lua: a group sums 8 queries and collects a failure with next(), no pcall", function()
        local out, p = run(how, "join_many.lua")
        assert.are.same({ exited = true, code = 0 }, p.status, p:show())
        assert.are.equal("", p:err(), p:show())
        local total, tasks = out:match("total = (%d+) from (%d+) tasks in %d+ ms\n")
        assert.are.equal("56", total, p:show())
        assert.are.equal("8", tasks, p:show())
        assert.truthy(out:find("query 1: ok 1\nquery 2: ok 2\nquery 3: error query 3 failed\n"
          .. "query 4: ok 4\n4 queries, 1 failed\n", 1, true), p:show())
      end)

      it("fanout.lua: 1,000 jobs through a group, at most 50 at once, every failure collected", function()
        local out, p = run(how, "fanout.lua")
        assert.are.same({ exited = true, code = 0 }, p.status, p:show())
        assert.are.equal("", p:err(), p:show())
        local peak = out:match("^fanout: 1000 jobs, cap 50: 990 ok, 10 failed, 0 cancelled, "
          .. "peak (%d+) in flight, sum 495000, completed\nfirst error: job 100 failed\n$")
        assert.is_truthy(peak, p:show())
        assert.is_true(tonumber(peak) >= 1 and tonumber(peak) <= 50, p:show())
      end)

      it("fanout.lua: a smaller cap holds", function()
        local out, p = run(how, "fanout.lua", "200", "7")
        assert.are.same({ exited = true, code = 0 }, p.status, p:show())
        local peak = out:match("^fanout: 200 jobs, cap 7: 198 ok, 2 failed, 0 cancelled, "
          .. "peak (%d+) in flight, sum 19800, completed\n")
        assert.is_truthy(peak, p:show())
        assert.is_true(tonumber(peak) >= 1 and tonumber(peak) <= 7, p:show())
      end)

      it("fanout.lua: a job that never ends runs into the deadline; closing the group aborts it", function()
        -- job 555 sleeps for an hour: the run times out whatever the
        -- machine's speed; how many of the others finished first may vary
        local out, p = run(how, "fanout.lua", "1000", "50", "0.5", "555")
        assert.are.same({ exited = true, code = 0 }, p.status, p:show())
        assert.are.equal("", p:err(), p:show())
        local ok, failed, cancelled, peak, sum = out:match("^fanout: 1000 jobs, cap 50: (%d+) ok, (%d+) failed, "
          .. "(%d+) cancelled, peak (%d+) in flight, sum (%d+), timed out\n")
        assert.is_truthy(ok, p:show())
        ok, failed, cancelled, peak, sum = tonumber(ok), tonumber(failed), tonumber(cancelled), tonumber(peak), tonumber(sum)
        assert.are.equal(1000, ok + failed + cancelled, p:show())
        assert.is_true(cancelled >= 1 and failed <= 10 and peak <= 50, p:show())
        assert.is_true(sum <= 495000 - 555, p:show())
        local aborted = out:match("\ndeadline 0%.5 s %(timeout%): closed the group, (%d+) members aborted, "
          .. "every one ended: true\n$")
        assert.is_truthy(aborted, p:show())
        assert.is_true(tonumber(aborted) >= 1 and tonumber(aborted) <= 50, p:show())
      end)
    end)
  end
end)

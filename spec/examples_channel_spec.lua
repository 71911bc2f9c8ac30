-- The channel examples (seed patterns 3 and 4), each run with the nexus
-- command and with plain luajit, checking what they print.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")

local root = (debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$")) or "."

local runners = {
  { "nexus", function(file, ...) return H.run_nexus({ root .. "/examples/" .. file, ... }) end },
  { "luajit", function(file, ...)
      local parts = { "luajit", H.q(root .. "/examples/" .. file) }
      for _, a in ipairs({ ... }) do parts[#parts + 1] = H.q(a) end
      return H.sh(table.concat(parts, " "))
    end },
}

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

describe("channel examples", function()
  for _, r in ipairs(runners) do
    local how, run = r[1], r[2]

    describe("under " .. how, function()
      it("heartbeat_split.lua: frames in order, the read timeout ends the session, heartbeats all written", function()
        local res = run("heartbeat_split.lua")
        assert.are.equal(0, res.rc, res.err)
        local out = lines(res.out)
        assert.are.same({
          "consumer: frame 1: quote 1",
          "consumer: frame 2: quote 2",
          "consumer: frame 3: quote 3",
          "consumer: frame 4: quote 4",
          "consumer: frame 5: quote 5",
          "reader: no frame for 50 ms, the session is dead (timeout)",
          "consumer: channel closed after 5 frames",
        }, { unpack(out, 1, 7) })
        assert.are.equal(8, #out, res.out)
        local sent, seen = out[8]:match("^heartbeat: (%d+) pings sent while the session lived, (%d+) seen by the peer$")
        assert.truthy(sent, out[8])
        -- the session lives >= 90 ms (5 x 10 ms of quotes, 50 ms of silence)
        -- with a ping every 15 ms, the first at once
        assert.is_true(tonumber(sent) >= 4 and tonumber(sent) <= 30, out[8])
        assert.are.equal(sent, seen)
      end)

      it("backpressure.lua: every payload arrives and the producer is never more than capacity ahead", function()
        local res = run("backpressure.lua")
        assert.are.equal(0, res.rc, res.err)
        local out = lines(res.out)
        assert.are.equal(3, #out, res.out)
        -- sum of i % 1024 for i = 1..10000
        assert.truthy(out[1]:match("^10000 payloads, 5021704 bytes through a channel of 32 in %d+ ms$"), out[1])
        assert.are.equal("max lead observed: 32 (capacity 32)", out[2])
        local waits = tonumber(out[3]:match("^the producer waited for room (%d+) times$"))
        assert.truthy(waits, out[3])
        assert.is_true(waits > 0, out[3])
      end)

      it("backpressure.lua with capacity 1: the producer is at most one ahead", function()
        local res = run("backpressure.lua", "1", "500")
        assert.are.equal(0, res.rc, res.err)
        assert.truthy(res.out:find("500 payloads, 125250 bytes through a channel of 1 in", 1, true), res.out)
        assert.truthy(res.out:find("max lead observed: 1 (capacity 1)\n", 1, true), res.out)
      end)

      it("backpressure.lua with capacity 0 fails with the channel's error", function()
        local res = run("backpressure.lua", "0")
        assert.are.equal(1, res.rc)
        assert.truthy(res.err:find("nexus.channel: capacity must be a positive integer, got 0", 1, true), res.err)
        assert.are.equal("", res.out)
      end)
    end)
  end
end)

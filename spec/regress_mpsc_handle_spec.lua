-- Regression: require("nexus.mpsc").sender(12345) (any number) dereferenced
-- it as a pointer and crashed; the address of a freed channel was a heap
-- use-after-free. Handles are now looked up in a registry of outstanding
-- handles before anything is read through them; a handle taken over or
-- closed is refused the second time. Each case runs in a child process,
-- so a crash fails it instead of the whole run.
local dir = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
local H = dofile(dir .. "helpers.lua")

local run = H.luajit_show

local NOT_LIVE = "not a live channel handle (not from tx:handle(), or already taken over or closed)"

describe("regress: mpsc handles are never dereferenced on trust", function()
  after_each(H.cleanup)

  it("mpsc.sender of a made-up number or pointer raises", function()
    local r, show = run([[
      local mpsc = require "nexus.mpsc"
      local ffi = require "ffi"
      for _, h in ipairs({ 12345, 0, 2^40, 4096 * 1000 + 8, ffi.cast("void *", 123456) }) do
        local ok, err = pcall(mpsc.sender, h)
        print(ok, err)
      end
      print(pcall(mpsc.sender, -1))
      print(pcall(mpsc.sender, 1e300))
    ]])
    assert.are.equal(0, r.rc, show)
    local lines = {}
    for l in r.out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(7, #lines, show)
    for _, l in ipairs(lines) do
      assert.are.equal("false\tmpsc.sender: " .. NOT_LIVE, l)
    end
  end)

  it("the handle of a freed channel is refused, not read", function()
    local r, show = run([[
      local nexus = require "nexus"
      local mpsc = require "nexus.mpsc"
      local addr
      nexus.run(function()
        local tx, rx = nexus.channel.mpsc(4)
        local h = tx:handle()
        addr = mpsc.address(h)
        mpsc.c_api.sender_close(h)      -- the handle ends: the channel may go
        tx:close(); rx:close()
      end)
      collectgarbage(); collectgarbage()
      -- a few more channels, so the freed memory is reused
      local keep = {}
      for i = 1, 100 do keep[i] = { nexus.channel.mpsc(4) } end
      print(pcall(mpsc.sender, addr))
      print(pcall(mpsc._pool_send, addr, "x", 1))
    ]])
    assert.are.equal(0, r.rc, show)
    assert.are.equal("false\tmpsc.sender: " .. NOT_LIVE .. "\nfalse\t_mpsc_pool_send: " .. NOT_LIVE .. "\n", r.out, show)
  end)

  it("a handle taken over once is refused the second time; the counts stay right", function()
    local r, show = run([[
      local nexus = require "nexus"
      local mpsc = require "nexus.mpsc"
      nexus.run(function()
        local tx, rx = nexus.channel.mpsc(4)
        local addr = mpsc.address(tx:handle())
        local a = mpsc.sender(addr)
        print(pcall(mpsc.sender, addr))
        mpsc.c_api.sender_close(require("ffi").cast("nexus_mpsc *", addr))  -- refused: no-op
        assert(a:send("from a"))
        a:close()
        assert(tx:send("from tx"))
        tx:close()
        print(rx:recv(), rx:recv(), rx:recv())
      end)
    ]])
    assert.are.equal(0, r.rc, show)
    assert.are.equal("false\tmpsc.sender: " .. NOT_LIVE .. "\nfrom a\tfrom tx\tnil\tclosed\n", r.out, show)
  end)

  it("the C API refuses a made-up handle: send gives EINVAL, clone NULL, close does nothing", function()
    local r, show = run([[
      local mpsc = require "nexus.mpsc"
      local ffi = require "ffi"
      local bogus = ffi.cast("nexus_mpsc *", 12345)
      local api = mpsc.c_api
      print(api.send_number(bogus, 1, 0) ~= 0, api.send_boolean(bogus, 1, 0) ~= 0,
            api.send_bytes(bogus, "x", 1, 0) ~= 0, api.sender_clone(bogus) == nil)
      api.sender_close(bogus)
      api.sender_close(nil)
      print("alive")
    ]])
    assert.are.equal(0, r.rc, show)
    assert.are.equal("true\ttrue\ttrue\ttrue\nalive\n", r.out, show)
  end)

  it("handles still work across threads (nexus.thread.run takes one over)", function()
    local r, show = run([[
      local nexus = require "nexus"
      local mpsc = require "nexus.mpsc"
      local got = nexus.run(function()
        local tx, rx = nexus.channel.mpsc(8)
        local addr = mpsc.address(tx:handle())
        tx:close()
        local ok = nexus.thread.run(function(a)
          local t = require("nexus.mpsc").sender(a)
          for i = 1, 3 do t:send("m" .. i) end
          t:close()
          return true
        end, addr)
        local out = {}
        for v in rx:iter() do out[#out + 1] = v end
        return table.concat(out, ","), ok
      end)
      print(got)
    ]])
    assert.are.equal(0, r.rc, show)
    assert.are.equal("m1,m2,m3\n", r.out, show)
  end)
end)

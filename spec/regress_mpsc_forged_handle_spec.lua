-- Regression (robustness issue, defect 4, what spec/regress_mpsc_handle_spec
-- left open):
-- * mpsc.address took anything: mpsc.address(12345) returned 12345 and
--   mpsc.address("x") raised LuaJIT's own conversion error. It now checks,
--   like mpsc.sender, that it is given an outstanding handle;
-- * C sends now skip the registry's lock when the thread's last handle is
--   the same and no handle ended since (an epoch): a handle that ended
--   must still be refused at once, also by the thread that used it last.
-- Each case runs in a child process, so a crash fails it instead of the
-- whole run (and under SANITIZE=address a use after free is a report).
local dir = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
local H = dofile(dir .. "helpers.lua")

local run = H.luajit_show

local NOT_LIVE = "not a live channel handle (not from tx:handle(), or already taken over or closed)"

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

describe("regress: mpsc handles are checked by every function that takes one", function()
  after_each(H.cleanup)

  it("mpsc.address refuses what is not an outstanding handle, naming itself", function()
    local r, show = run([[
      local mpsc = require "nexus.mpsc"
      local nexus = require "nexus"
      local ffi = require "ffi"
      for _, h in ipairs({ 12345, 0, -1, 2^60, ffi.cast("void *", 4096) }) do
        print(select(2, pcall(mpsc.address, h)))
      end
      for _, h in ipairs({ "x", true, {} }) do
        print(select(2, pcall(mpsc.address, h)))
      end
      print(select(2, pcall(mpsc.address, ffi.new("struct { int a; }"))):match("^mpsc.address: expected") ~= nil)
      print(select(2, pcall(mpsc.sender, ffi.new("struct { int a; }"))):match("^mpsc.sender: expected") ~= nil)
      local tx, rx = nexus.channel.mpsc(2)
      local h = tx:handle()
      local a = mpsc.address(h)
      print(a == tonumber(ffi.cast("uintptr_t", h)), mpsc.address(a) == a)   -- still outstanding
      local s = mpsc.sender(a)
      print(select(2, pcall(mpsc.address, a)))                           -- taken over
      s:close(); tx:close(); rx:close()
    ]])
    assert.are.equal(0, r.rc, show)
    local l = lines(r.out)
    assert.are.equal(12, #l, show)
    for i = 1, 5 do assert.are.equal("mpsc.address: " .. NOT_LIVE, l[i], show) end
    assert.are.equal("mpsc.address: expected a channel handle (from tx:handle()), got string", l[6], show)
    assert.are.equal("mpsc.address: expected a channel handle (from tx:handle()), got boolean", l[7], show)
    assert.are.equal("mpsc.address: expected a channel handle (from tx:handle()), got table", l[8], show)
    assert.are.equal("true", l[9], show)                 -- a struct cdata: a clear error
    assert.are.equal("true", l[10], show)
    assert.are.equal("true\ttrue", l[11], show)          -- an outstanding handle's address
    assert.are.equal("mpsc.address: " .. NOT_LIVE, l[12], show)
  end)

  it("a C send through a handle that ended is refused, also right after it worked", function()
    local r, show = run([[
      local nexus = require "nexus"
      local mpsc = require "nexus.mpsc"
      local api = mpsc.c_api
      collectgarbage("stop")
      local tx, rx = nexus.channel.mpsc(8)
      local h = tx:handle()
      print(api.send_number(h, 1, 0), api.send_number(h, 2, 0))  -- 0 0: found, then remembered
      api.sender_close(h)                                        -- its last handle ended
      print(api.send_number(h, 3, 0), api.send_boolean(h, 1, 0), api.send_bytes(h, "x", 1, 0),
            api.sender_clone(h) == nil)
      -- another channel's handle ending does not stop a live handle working
      local tx2, rx2 = nexus.channel.mpsc(8)
      local h2, h3 = tx2:handle(), tx:handle()
      print(api.send_number(h3, 4, 0))
      api.sender_close(h2)
      print(api.send_number(h3, 5, 0))
      api.sender_close(h3)
      print(api.send_number(h3, 6, 0))
      tx:close(); tx2:close()
      local got = {}
      while true do
        local v = rx:try_recv()
        if v == nil then break end
        got[#got + 1] = v
      end
      print(table.concat(got, ","))
      -- the channel freed: its old handle is still refused, nothing read
      rx:close(); rx2:close()
      rx, rx2, tx, tx2 = nil
      collectgarbage("restart"); collectgarbage(); collectgarbage()
      print(api.send_number(h, 7, 0), api.send_number(h3, 8, 0))
    ]])
    assert.are.equal(0, r.rc, show)
    assert.are.same({ "0\t0", "-22\t-22\t-22\ttrue", "0", "0", "-22", "1,2,4,5", "-22\t-22" }, lines(r.out), show)
  end)

  it("handles checked from many threads at once stay right (thread-pool senders)", function()
    local r, show = run([[
      local nexus = require "nexus"
      local mpsc = require "nexus.mpsc"
      local n = nexus.run(function()
        local tx, rx = nexus.channel.mpsc(4)
        for t = 1, 4 do mpsc._pool_send(tx:handle(), "t" .. t .. ":", 500) end
        tx:close()
        local count, other = 0, 0
        for v in rx:iter() do
          if v == true then other = other + 1 else count = count + 1 end
        end
        return count, other
      end)
      print(n)
    ]])
    assert.are.equal(0, r.rc, show)
    assert.are.equal("2000\n", r.out, show)
  end)
end)

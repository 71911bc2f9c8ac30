-- DNS: nexus.dns.resolve through libuv's getaddrinfo; IP literals answered
-- without a lookup; abandoned lookups (timeout, abort) release everything.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(dir .. "helpers.lua")
local nexus = require "nexus"

local function has(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

describe("dns", function()
  it("resolves localhost to a list of address strings including 127.0.0.1", function()
    local list = nexus.run(function() return nexus.dns.resolve("localhost") end)
    assert.is_table(list)
    assert.is_true(has(list, "127.0.0.1"), table.concat(list, ", "))
    local seen = {}
    for _, ip in ipairs(list) do
      assert.is_nil(seen[ip], "duplicate " .. ip)
      seen[ip] = true
    end
  end)

  it("family = 4 gives IPv4 addresses only", function()
    local list = nexus.run(function() return nexus.dns.resolve("localhost", { family = 4 }) end)
    assert.is_true(#list >= 1)
    for _, ip in ipairs(list) do assert.truthy(ip:match("^%d+%.%d+%.%d+%.%d+$"), ip) end
  end)

  it("IP literals come back as they are (normalised), without a lookup", function()
    local r = nexus.run(function()
      return { nexus.dns.resolve("127.0.0.1"), nexus.dns.resolve("::1"),
               nexus.dns.resolve("0:0:0:0:0:0:0:1"), H.pack(nexus.dns.resolve("::1", { family = 4 })) }
    end)
    assert.are.same({ "127.0.0.1" }, r[1])
    assert.are.same({ "::1" }, r[2])
    assert.are.same({ "::1" }, r[3])
    assert.is_nil(r[4][1])      -- an IPv6 literal asked as IPv4 goes to the resolver, which refuses
    assert.is_string(r[4][2])
  end)

  it("suspends only the resolving task: others run meanwhile; many lookups at once", function()
    local ok, ticks = nexus.run(function()
      local ticks = 0
      local ticker = nexus.spawn(function()
        while true do ticks = ticks + 1; nexus.yield() end
      end)
      local hs = {}
      for i = 1, 50 do hs[i] = nexus.spawn(nexus.dns.resolve, "localhost") end
      local ok = true
      for i = 1, 50 do ok = ok and has(hs[i]:join(), "127.0.0.1") end
      ticker:abort()
      return ok, ticks
    end)
    assert.is_true(ok)
    assert.is_true(ticks > 0)
  end)

  it("a lookup abandoned by timeout or abort releases its request; the runtime goes on", function()
    local r = nexus.run(function()
      local r = { H.pack(nexus.timeout(0, nexus.dns.resolve, "localhost")) }
      local h = nexus.spawn(nexus.dns.resolve, "localhost")
      nexus.yield()
      r[2] = h:abort()
      collectgarbage()
      collectgarbage()
      nexus.sleep(0.05)          -- the callbacks of the abandoned lookups come and go
      r[3] = nexus.dns.resolve("localhost")
      return r
    end)
    assert.are.same({ n = 2, nil, "timeout" }, r[1])
    assert.is_true(r[2])
    assert.is_true(has(r[3], "127.0.0.1"))
  end)

  it("runs at a nexus script's top level", function()
    local r = H.nexus_script([[
      local nexus = require "nexus"
      print(nexus.dns.resolve("127.0.0.1")[1])
    ]])
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal("127.0.0.1\n", r.out)
  end)

  describe("bad input", function()
    local cases = {
      { "nexus.dns.resolve: name must be a string, got nil", function() nexus.dns.resolve() end },
      { "nexus.dns.resolve: name must be a string, got number", function() nexus.dns.resolve(1) end },
      { "nexus.dns.resolve: empty name", function() nexus.dns.resolve("") end },
      { "nexus.dns.resolve: options must be a table, got string", function() nexus.dns.resolve("x", "y") end },
      { "nexus.dns.resolve: unknown option 'fam'", function() nexus.dns.resolve("x", { fam = 4 }) end },
      { "nexus.dns.resolve: family must be 4, 6, \"inet\" or \"inet6\", got 5",
        function() nexus.dns.resolve("x", { family = 5 }) end },
    }
    for _, case in ipairs(cases) do
      it("raises " .. case[1], function()
        local e = nexus.run(function() return H.errof(case[2]) end)
        assert.is_string(e, "did not raise")
        assert.truthy(e:find(case[1], 1, true), e)
      end)
    end

    it("raises outside a task", function()
      local e = H.errof(nexus.dns.resolve, "localhost")
      assert.truthy(e:find("nexus.dns.resolve: not inside a nexus task", 1, true), e)
    end)
  end)
end)

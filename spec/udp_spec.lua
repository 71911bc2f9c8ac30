-- UDP: bind, send_to/recv_from, connect/send/recv, the receive queue,
-- close, timeouts, one receiver at a time, IPv6, bad input.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(dir .. "helpers.lua")
local nexus = require "nexus"
local LATE = H.LATE

local function two(host)
  host = host or "127.0.0.1"
  local a = assert(nexus.udp.bind(host, 0))
  local b = assert(nexus.udp.bind(host, 0))
  local _, _, pa = a:local_addr()
  local _, _, pb = b:local_addr()
  return a, b, pa, pb
end

describe("udp", function()
  it("send_to / recv_from carry a datagram and name its sender", function()
    local r = nexus.run(function()
      local a, b, pa, pb = two()
      assert(a:send_to("hello", "127.0.0.1", pb))
      local data, ip, port = b:recv_from()
      local r = { data = data, ip = ip, port = port, pa = pa, str = tostring(a) }
      a:close(); b:close()
      r.closed = tostring(a)
      return r
    end)
    assert.are.equal("hello", r.data)
    assert.are.equal("127.0.0.1", r.ip)
    assert.are.equal(r.pa, r.port)
    assert.are.equal("nexus.udp.socket(127.0.0.1:" .. r.pa .. ")", r.str)
    assert.are.equal("nexus.udp.socket(closed)", r.closed)
  end)

  it("recv_from suspends until a datagram arrives", function()
    local data, waited = nexus.run(function()
      local a, b, _, pb = two()
      nexus.spawn(function() nexus.sleep(0.05); a:send_to("later", "127.0.0.1", pb) end)
      local t0 = nexus.now()
      local data = b:recv_from()
      local waited = nexus.now() - t0
      a:close(); b:close()
      return data, waited
    end)
    assert.are.equal("later", data)
    assert.is_true(waited >= 0.04 and waited < 0.05 + LATE, waited)
  end)

  it("connect / send / recv talk to one peer; peer_addr names it", function()
    local r = nexus.run(function()
      local a, b, pa, pb = two()
      assert(a:connect("127.0.0.1", pb))
      assert(b:connect("127.0.0.1", pa))
      assert(a:send("ping"))
      local r = { b:recv() }
      assert(b:send("pong"))
      r[2] = a:recv()
      r[3] = a:peer_addr()
      r[4] = "127.0.0.1:" .. pb
      a:close(); b:close()
      return r
    end)
    assert.are.equal("ping", r[1])
    assert.are.equal("pong", r[2])
    assert.are.equal(r[4], r[3])
  end)

  it("datagrams sent before anyone receives queue up, keep their bounds and order", function()
    local got = nexus.run(function()
      local a, b, _, pb = two()
      for i = 1, 100 do assert(a:send_to("dgram " .. i, "127.0.0.1", pb)) end
      assert(a:send_to("", "127.0.0.1", pb))
      local got = {}
      for i = 1, 101 do got[i] = b:recv() end
      a:close(); b:close()
      return got
    end)
    assert.are.equal("dgram 1", got[1])
    assert.are.equal("dgram 50", got[50])
    assert.are.equal("dgram 100", got[100])
    assert.are.equal("", got[101], "an empty datagram is a datagram")
  end)

  it("a 60,000-byte datagram arrives whole", function()
    local same = nexus.run(function()
      local a, b, _, pb = two()
      local big = ("0123456789"):rep(6000)
      assert(a:send_to(big, "127.0.0.1", pb))
      local d = b:recv()
      a:close(); b:close()
      return d == big
    end)
    assert.is_true(same)
  end)

  it("works over IPv6", function()
    local data, ip = nexus.run(function()
      local a, b, _, pb = two("::1")
      assert(a:send_to("six", "::1", pb))
      local data, ip = b:recv_from()
      a:close(); b:close()
      return data, ip
    end)
    assert.are.equal("six", data)
    assert.are.equal("::1", ip)
  end)

  it("a receive timed out leaves the socket usable", function()
    local r = nexus.run(function()
      local a, b, _, pb = two()
      local r = { H.pack(nexus.timeout(0.05, b.recv_from, b)) }
      a:send_to("after", "127.0.0.1", pb)
      r[2] = b:recv()
      a:close(); b:close()
      return r
    end)
    assert.are.same({ n = 2, nil, "timeout" }, r[1])
    assert.are.equal("after", r[2])
  end)

  it("close wakes the receiver with nil, 'closed'; later calls say 'closed' too", function()
    local r = nexus.run(function()
      local a, b = two()
      local h = nexus.spawn(function() return H.pack(b:recv_from()) end)
      nexus.sleep(0.01)
      b:close()
      local r = { h:join(), H.pack(b:recv()), H.pack(b:send_to("x", "127.0.0.1", 9)),
                  H.pack(b:send("x")), H.pack(b:connect("127.0.0.1", 9)), H.pack(b:local_addr()),
                  b:is_closed() }
      a:close()
      return r
    end)
    for i = 1, 6 do assert.are.same({ n = 2, nil, "closed" }, r[i], "call " .. i) end
    assert.is_true(r[7])
  end)

  it("a second concurrent receiver raises", function()
    local e = nexus.run(function()
      local a, b = two()
      local h = nexus.spawn(function() return b:recv() end)
      nexus.sleep(0.01)
      local e = H.errof(b.recv_from, b)
      h:abort()
      a:close(); b:close()
      return e
    end)
    assert.are.equal("udp:recv_from: another task is already receiving", e)
  end)

  it("an aborted receiver lets another task receive", function()
    local got = nexus.run(function()
      local a, b, _, pb = two()
      local h = nexus.spawn(function() return b:recv() end)
      nexus.sleep(0.01)
      h:abort()
      a:send_to("for the next one", "127.0.0.1", pb)
      local got = b:recv()
      a:close(); b:close()
      return got
    end)
    assert.are.equal("for the next one", got)
  end)

  it("a socket of another runtime raises; rt:close() closes the sockets it owns", function()
    local rt = nexus.runtime.new()
    local a = rt:block_on(function() return assert(nexus.udp.bind("127.0.0.1", 0)) end)
    local e = nexus.run(function() return H.errof(a.recv, a) end)
    assert.are.equal("udp:recv: belongs to another runtime", e)
    assert.are.equal("udp:recv: not inside a nexus task", H.errof(a.recv, a))
    rt:close()
    assert.is_true(a:is_closed())
  end)

  describe("bad input", function()
    local cases = {
      { "nexus.udp.bind: host must be a string, got nil", function() nexus.udp.bind() end },
      { "nexus.udp.bind: port must be an integer in 0..65535, got -1", function() nexus.udp.bind("127.0.0.1", -1) end },
      { "nexus.udp.bind: host must be an IP address, got 'example.com'", function() nexus.udp.bind("example.com", 0) end },
      { "nexus.udp.bind: unknown option 'size'", function() nexus.udp.bind("127.0.0.1", 0, { size = 1 }) end },
      { "udp:send_to: expected a string, got number", function(u) u:send_to(1, "127.0.0.1", 9) end },
      { "udp:send_to: host must be an IP address, got 'localhost.localdomain' (resolve names with nexus.dns.resolve)",
        function(u) u:send_to("x", "localhost.localdomain", 9) end },
      { "udp:send_to: port must be an integer, got nil", function(u) u:send_to("x", "127.0.0.1") end },
      { "udp:send_to: port must be an integer in 0..65535, got 65536", function(u) u:send_to("x", "127.0.0.1", 65536) end },
      { "udp:send: expected a string, got nil", function(u) u:send() end },
      { "udp:connect: host must be a string, got nil", function(u) u:connect() end },
      { "udp:recv: expected a udp socket, got string", function(u) u.recv("x") end },
    }
    for _, case in ipairs(cases) do
      it("raises " .. case[1], function()
        local e = nexus.run(function()
          local u = assert(nexus.udp.bind("127.0.0.1", 0))
          local e = H.errof(case[2], u)
          u:close()
          return e
        end)
        assert.is_string(e, "did not raise")
        assert.truthy(e:find(case[1], 1, true), e)
      end)
    end
  end)
end)

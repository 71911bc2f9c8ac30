-- Network errors users handle: each returns nil, err with a short
-- lowercase message, and none kills the process (no SIGPIPE death).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(dir .. "helpers.lua")
local N = dofile(dir .. "net_helpers.lua")
local nexus = require "nexus"
local pair = N.pair

-- A port nobody listens on (it was free a moment ago).
local function free_port()
  local ln = assert(nexus.tcp.listen("127.0.0.1", 0))
  local _, _, port = ln:local_addr()
  ln:close()
  return port
end

describe("network errors", function()
  it("connecting to a port nobody listens on: nil, 'connection refused'", function()
    local r = nexus.run(function()
      return { H.pack(nexus.tcp.connect("127.0.0.1", free_port())),
               H.pack(nexus.tcp.connect("::1", free_port())),
               H.pack(nexus.tcp.connect("localhost", free_port(), { timeout = 5 })) }
    end)
    for i = 1, 3 do assert.are.same({ n = 2, nil, "connection refused" }, r[i]) end
  end)

  it("connecting where no route leads: nil, 'network is unreachable'", function()
    local s, err = nexus.run(function() return nexus.tcp.connect("255.255.255.255", 80) end)
    assert.is_nil(s)
    assert.are.equal("network is unreachable", err)
  end)

  it("listening on a port in use: nil, 'address already in use' (also for UDP)", function()
    local r = nexus.run(function()
      local ln = assert(nexus.tcp.listen("127.0.0.1", 0))
      local _, _, port = ln:local_addr()
      local u = assert(nexus.udp.bind("127.0.0.1", 0))
      local _, _, uport = u:local_addr()
      local r = { H.pack(nexus.tcp.listen("127.0.0.1", port)),
                  H.pack(nexus.udp.bind("127.0.0.1", uport)) }
      ln:close(); u:close()
      return r
    end)
    assert.are.same({ n = 2, nil, "address already in use" }, r[1])
    assert.are.same({ n = 2, nil, "address already in use" }, r[2])
  end)

  it("a peer that closes with unread data resets the connection: nil, 'connection reset by peer'", function()
    local r = nexus.run(function()
      local c, s, ln = pair()
      c:write("never read by the server")
      nexus.sleep(0.05)            -- in the server's socket, unread
      s:close()                    -- so the kernel answers with a reset
      nexus.sleep(0.05)
      local r = H.pack(c:read())
      local again = H.pack(c:read())
      c:close(); ln:close()
      return { r, again }
    end)
    assert.are.same({ n = 2, nil, "connection reset by peer" }, r[1])
    assert.are.same({ n = 2, nil, "connection reset by peer" }, r[2], "the error sticks")
  end)

  it("reading after close: nil, 'closed'", function()
    local r = nexus.run(function()
      local c, s, ln = pair()
      c:close()
      local r = { H.pack(c:read()), H.pack(c:read_line()), H.pack(c:read_exactly(1)) }
      s:close(); ln:close()
      return r
    end)
    for i = 1, 3 do assert.are.same({ n = 2, nil, "closed" }, r[i]) end
  end)

  local writer_src = [[
    local nexus = require "nexus"
    local ln = assert(nexus.tcp.listen("127.0.0.1", 0))
    local _, _, port = ln:local_addr()
    nexus.spawn(function() local s = ln:accept(); s:close(); ln:close() end)
    local c = assert(nexus.tcp.connect("127.0.0.1", port))
    nexus.sleep(0.05)                 -- the peer has closed
    for i = 1, 1000 do
      local ok, err = c:write(("x"):rep(1000))
      if not ok then print("write " .. err) break end
      nexus.sleep(0.001)
    end
    c:close()
    print("still alive")
  ]]

  it("writing to a peer that closed: nil, err, and the nexus command lives on (no SIGPIPE)", function()
    local r = H.nexus_script(writer_src)
    assert.are.equal(0, r.rc, r.err)
    local err = r.out:match("^write ([^\n]+)\n")
    assert.truthy(err == "broken pipe" or err == "connection reset by peer", r.out)
    assert.truthy(r.out:find("still alive\n", 1, true))
  end)

  it("the same under plain luajit, where nexus sets SIGPIPE to ignored itself", function()
    local r = H.luajit_script("local nexus = require 'nexus'; nexus.run(function() "
      .. writer_src:gsub("local nexus = require \"nexus\"", "") .. " end)")
    assert.are.equal(0, r.rc, r.err)
    assert.truthy(r.out:find("still alive\n", 1, true), r.out)
    assert.truthy(r.out:find("^write "), r.out)
  end)

  it("writing to a closed peer from this very process: nil, err", function()
    local err = nexus.run(function()
      local c, s, ln = pair()
      s:close()
      nexus.sleep(0.05)
      local err
      for _ = 1, 1000 do
        local ok, e = c:write(("y"):rep(4096))
        if not ok then err = e break end
        nexus.sleep(0.001)
      end
      c:close(); ln:close()
      return err
    end)
    assert.truthy(err == "broken pipe" or err == "connection reset by peer", err)
  end)

  it("accepting on a closed listener: nil, 'closed'", function()
    local r = nexus.run(function()
      local ln = assert(nexus.tcp.listen("127.0.0.1", 0))
      ln:close()
      return H.pack(ln:accept())
    end)
    assert.are.same({ n = 2, nil, "closed" }, r)
  end)

  it("a name that does not resolve: nil, err from connect and from dns.resolve", function()
    local r = nexus.run(function()
      return { H.pack(nexus.tcp.connect("no-such-host.invalid", 80, { timeout = 10 })),
               H.pack(nexus.dns.resolve("no-such-host.invalid")) }
    end)
    for i = 1, 2 do
      assert.is_nil(r[i][1])
      assert.is_string(r[i][2])
      assert.truthy(r[i][2] == "name not found" or r[i][2] == "timeout"
                    or r[i][2]:match("^temporary failure"), r[i][2])
    end
  end)

  it("a connected UDP socket whose peer port is closed: recv gives nil, 'connection refused'", function()
    local r = nexus.run(function()
      local gone = assert(nexus.udp.bind("127.0.0.1", 0))
      local _, _, port = gone:local_addr()
      gone:close()
      local u = assert(nexus.udp.bind("127.0.0.1", 0))
      assert(u:connect("127.0.0.1", port))
      assert(u:send("anyone?"))
      local r = H.pack(nexus.timeout(2, u.recv, u))
      u:close()
      return r
    end)
    assert.are.same({ n = 3, true, nil, "connection refused" }, r)
  end)
end)

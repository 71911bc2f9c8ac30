-- examples/wss_feed.lua against examples/wss_feed_server.lua (seed
-- patterns 2 and 5 on wss://): a certificate made here by the openssl
-- command; the exchange drops the first session after 5 ticks; the client
-- reconnects with its backoff, resubscribes, and its World handler sees
-- every tick.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local N = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "net_helpers.lua")

local root = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "../"
local dir, server

setup(function()
  dir = os.tmpname()
  os.remove(dir)
  local r = H.sh(("mkdir -p %s && cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key "
    .. "-out ca.pem -days 2 -subj /CN=nexus-feed-ca 2>/dev/null && openssl req -newkey rsa:2048 -nodes "
    .. "-keyout srv.key -out srv.csr -subj /CN=127.0.0.1 2>/dev/null && printf 'subjectAltName=IP:127.0.0.1\\n' > ext "
    .. "&& openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 "
    .. "-extfile ext 2>/dev/null"):format(dir, dir))
  assert(r.rc == 0, r.err)
end)

teardown(function()
  if server then N.kill(server, "KILL"); N.finish(server) end
  if dir then os.execute("rm -rf " .. dir) end
end)

describe("examples/wss_feed.lua", function()
  it("subscribes over wss://, feeds the World handler, reconnects after a drop", function()
    server = N.spawn(N.nexus(H.q(root .. "examples/wss_feed_server.lua") .. " 0 " .. dir .. "/srv.pem "
      .. dir .. "/srv.key 5"))
    local port = assert(N.expect(server, "^listening (%d+)"))
    local r = H.run_nexus({ root .. "examples/wss_feed.lua", "wss://127.0.0.1:" .. port .. "/", dir .. "/ca.pem", "12" })
    assert.are.equal(0, r.rc, r.err .. r.out)
    local _, subs = r.out:gsub("subscribed\n", "")
    assert.are.equal(2, subs, r.out)
    assert.matches("disconnected %(closed 1001 going away%); reconnecting in 50 ms", r.out)
    assert.matches("12 ticks, last %d+%.%d+, volume 43, 1 reconnects\n", r.out)
  end)
end)

-- wss://: nexus.websocket over TLS streams, server and client, with a
-- certificate made here by the openssl command (a test CA and a server
-- certificate for 127.0.0.1): messages both ways, a 1 MiB message, a
-- close with code and reason, and a client that does not trust the CA.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local nexus = require "nexus"

local dir

setup(function()
  dir = os.tmpname()
  os.remove(dir)
  local r = H.sh(("mkdir -p %s && cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key "
    .. "-out ca.pem -days 2 -subj /CN=nexus-wss-ca 2>/dev/null && openssl req -newkey rsa:2048 -nodes "
    .. "-keyout srv.key -out srv.csr -subj /CN=127.0.0.1 2>/dev/null && printf 'subjectAltName=IP:127.0.0.1\\n' > ext "
    .. "&& openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 "
    .. "-extfile ext 2>/dev/null"):format(dir, dir))
  assert(r.rc == 0, r.err)
end)

teardown(function() if dir then os.execute("rm -rf " .. dir) end end)

describe("nexus.websocket over TLS (wss://)", function()
  it("carries messages both ways, a 1 MiB one, and a close with code and reason", function()
    local r = nexus.run(function()
      local wl = assert(nexus.websocket.listen("127.0.0.1", 0,
        { tls = { cert_file = dir .. "/srv.pem", key_file = dir .. "/srv.key" } }))
      local port = tonumber(tostring(wl:local_addr()):match(":(%d+)$") or wl:local_addr())
      local srv = nexus.spawn(function()
        local ws = assert(wl:accept())
        local got = {}
        while true do
          local data, kind, code, reason = ws:recv()
          if not data then return { got = got, code = code, reason = reason } end
          got[#got + 1] = #data .. ":" .. kind
          assert(ws:send(data, kind))                    -- echo
        end
      end)
      local ws = assert(nexus.websocket.connect(("wss://127.0.0.1:%d/"):format(port),
        { tls = { ca_file = dir .. "/ca.pem" } }))
      assert(ws:send("hello", "text"))
      local a, ak = ws:recv()
      local big = ("x"):rep(1024 * 1024)
      assert(ws:send(big, "binary"))
      local b, bk = ws:recv()
      ws:close(4001, "done")
      local s = srv:join()
      nexus.spawn(function() wl:accept() end)           -- the handshake starts at accept
      local _, bad = nexus.websocket.connect(("wss://127.0.0.1:%d/"):format(port))   -- system store
      wl:close()
      return { a = a, ak = ak, blen = #b, bk = bk, s = s, bad = bad }
    end)
    assert.are.equal("hello", r.a)
    assert.are.equal("text", r.ak)
    assert.are.equal(1024 * 1024, r.blen)
    assert.are.equal("binary", r.bk)
    assert.are.same({ "5:text", "1048576:binary" }, r.s.got)
    assert.are.equal(4001, r.s.code)
    assert.are.equal("done", r.s.reason)
    assert.matches("tls", tostring(r.bad))
  end)
end)

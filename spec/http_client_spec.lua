-- nexus.http.request against an independent server (Python's http.server,
-- and with ssl for HTTPS; certificates made here with the openssl
-- command): results, keep-alive reuse (connections counted by the
-- server), redirects on and off, time-outs and aborts removing the
-- transfer, many requests at once, errors, bad input.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local N = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "net_helpers.lua")
local nexus = require "nexus"

local SERVER = [[
import http.server, ssl, sys, time
conns = set()
prices = [0]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def reply(self, code, body, extra=()):
        conns.add(self.client_address[1])
        b = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(b)))
        self.send_header("X-Conns", str(len(conns)))
        self.send_header("Set-Cookie", "a=1")
        self.send_header("Set-Cookie", "b=2")
        for k, v in extra: self.send_header(k, v)
        self.end_headers()
        try:
            if self.command != "HEAD": self.wfile.write(b)
        except BrokenPipeError: pass
    def do_GET(self):
        if self.path == "/hello": return self.reply(200, "hello")
        if self.path == "/redirect": return self.reply(302, "", [("Location", "/hello")])
        if self.path == "/slow": time.sleep(2); return self.reply(200, "slow")
        if self.path == "/big": return self.reply(200, "x" * (2 * 1024 * 1024))
        if self.path == "/echo-header": return self.reply(200, self.headers.get("X-Test", ""))
        if self.path == "/price":
            prices[0] += 1
            return self.reply(200, '{"px": %.2f}' % (100 + prices[0] * 0.25))
        return self.reply(404, "nope")
    do_HEAD = do_GET
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        return self.reply(201, self.command + " " + self.rfile.read(n).decode())
    do_PUT = do_POST
class S(http.server.ThreadingHTTPServer):
    request_queue_size = 256          # 100 clients connect at once
s = S(("127.0.0.1", 0), H)
if len(sys.argv) > 1:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    s.socket = ctx.wrap_socket(s.socket, server_side=True)
print("port", s.server_address[1], flush=True)
s.serve_forever()
]]

local dir, plain, tls, base, sbase

local function sh(cmd)
  local r = H.sh(cmd)
  assert(r.rc == 0, cmd .. "\n" .. r.err)
end

setup(function()
  dir = os.tmpname()
  os.remove(dir)
  sh("mkdir -p " .. dir)
  local py = H.write_file(dir .. "/server.py", SERVER)
  -- a CA, and a server certificate for 127.0.0.1 signed by it
  sh(("cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
    .. "-subj /CN=nexus-test-ca 2>/dev/null && openssl req -newkey rsa:2048 -nodes -keyout srv.key "
    .. "-out srv.csr -subj /CN=127.0.0.1 2>/dev/null && printf 'subjectAltName=IP:127.0.0.1\\n' > ext "
    .. "&& openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem "
    .. "-days 2 -extfile ext 2>/dev/null"):format(dir))
  plain = N.spawn("python3 " .. H.q(py))
  base = "http://127.0.0.1:" .. N.expect(plain, "^port (%d+)")
  tls = N.spawn("python3 " .. H.q(py) .. " " .. dir .. "/srv.pem " .. dir .. "/srv.key")
  sbase = "https://127.0.0.1:" .. N.expect(tls, "^port (%d+)")
end)

teardown(function()
  for _, p in ipairs({ plain, tls }) do
    if p then N.kill(p, "KILL"); N.finish(p) end
  end
  if dir then os.execute("rm -rf " .. dir) end
end)

describe("nexus.http.request", function()
  it("GETs, POSTs, PUTs and HEADs, with lower-case headers", function()
    local r = nexus.run(function()
      local a = assert(nexus.http.get(base .. "/hello"))
      local b = assert(nexus.http.post(base .. "/x", "data"))
      local c = assert(nexus.http.request{ method = "PUT", url = base .. "/x", body = "put" })
      local d = assert(nexus.http.request{ method = "HEAD", url = base .. "/hello" })
      local e = assert(nexus.http.get(base .. "/echo-header", { headers = { ["X-Test"] = "yes" } }))
      local f = assert(nexus.http.get(base .. "/missing"))
      return { a = a, b = b, c = c, d = d, e = e, f = f }
    end)
    assert.are.equal(200, r.a.status)
    assert.are.equal("hello", r.a.body)
    assert.are.equal("1.1", r.a.version)
    assert.are.equal("5", r.a.headers["content-length"])
    assert.are.equal("a=1, b=2", r.a.headers["set-cookie"])
    assert.are.same({ 201, "POST data" }, { r.b.status, r.b.body })
    assert.are.same({ 201, "PUT put" }, { r.c.status, r.c.body })
    assert.are.same({ 200, "" }, { r.d.status, r.d.body })
    assert.are.equal("yes", r.e.body)
    assert.are.same({ 404, "nope" }, { r.f.status, r.f.body })
  end)

  it("reuses its connection between requests (keep-alive: the server counts one more at most)", function()
    local r = nexus.run(function()
      local first = assert(nexus.http.get(base .. "/hello"))
      local last
      for _ = 1, 10 do last = assert(nexus.http.get(base .. "/hello")) end
      return { tonumber(first.headers["x-conns"]), tonumber(last.headers["x-conns"]) }
    end)
    assert.are.equal(r[1], r[2])
  end)

  it("follows redirects only when asked", function()
    local r = nexus.run(function()
      return { assert(nexus.http.get(base .. "/redirect")).status,
               assert(nexus.http.get(base .. "/redirect", { follow_redirects = true })).body }
    end)
    assert.are.same({ 302, "hello" }, r)
  end)

  it("times out (its own timeout, and nexus.timeout removes the transfer at once)", function()
    local r = nexus.run(function()
      local t0 = nexus.now()
      local a = { nexus.http.get(base .. "/slow", { timeout = 0.2 }) }
      local b = { nexus.timeout(0.2, nexus.http.get, base .. "/slow") }
      local c = assert(nexus.http.get(base .. "/hello"))     -- the client still works
      return { a = a, b = b, c = c.body, took = nexus.now() - t0 }
    end)
    assert.are.same({ nil, "timeout" }, r.a)
    assert.are.same({ nil, "timeout" }, r.b)
    assert.are.equal("hello", r.c)
    assert.is_true(r.took < 1.9)
  end)

  it("runs many requests at once (a group of 100) and carries a 2 MiB body", function()
    local r = nexus.run(function()
      local g = nexus.group()
      for _ = 1, 100 do g:spawn(nexus.http.get, base .. "/hello") end
      local ok, errs = 0, {}
      while true do
        local h, done, res, err = g:next()
        if not h then break end
        if done and res and res.status == 200 and res.body == "hello" then ok = ok + 1
        else errs[#errs + 1] = tostring(err or res) end
      end
      if ok < 100 then print(table.concat(errs, "; ")) end
      return { ok = ok, big = #assert(nexus.http.get(base .. "/big")).body }
    end)
    assert.are.same({ ok = 100, big = 2 * 1024 * 1024 }, r)
  end)

  it("streams a response: res:read() in chunks, with backpressure, then nil", function()
    local r = nexus.run(function()
      local res = assert(nexus.http.get(base .. "/big", { stream = true }))
      assert(res.body == nil)
      local n, chunks = 0, 0
      nexus.sleep(0.2)                 -- unread: the transfer pauses at 1 MiB
      while true do
        local c = res:read()
        if not c then break end
        n = n + #c
        chunks = chunks + 1
      end
      local small = assert(nexus.http.get(base .. "/hello", { stream = true }))
      return { status = res.status, n = n, chunks = chunks, small = small:read(), tail = small:read() }
    end)
    assert.are.equal(200, r.status)
    assert.are.equal(2 * 1024 * 1024, r.n)
    assert.is_true(r.chunks >= 2)
    assert.are.equal("hello", r.small)
    assert.is_nil(r.tail)
  end)

  it("speaks HTTPS: verified against a CA file, refused without it", function()
    local r = nexus.run(function()
      local good = assert(nexus.http.get(sbase .. "/hello", { tls = { ca_file = dir .. "/ca.pem" } }))
      local _, bad = nexus.http.get(sbase .. "/hello")
      local unverified = assert(nexus.http.get(sbase .. "/hello", { tls = { verify = false } }))
      return { good = good.body, bad = bad, unverified = unverified.body }
    end)
    assert.are.equal("hello", r.good)
    assert.matches("^tls: ", r.bad)
    assert.are.equal("hello", r.unverified)
  end)

  it("drives examples/ref_price_refresh.lua (seed pattern 6) over HTTPS", function()
    local root = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "../"
    local r = H.run_nexus({ root .. "examples/ref_price_refresh.lua", "3", sbase .. "/price", dir .. "/ca.pem" })
    assert.are.equal(0, r.rc, r.err)
    assert.matches("refresh 1: RefPrice 100.25 %(the hot path ticked %d+ times", r.out)
    assert.matches("refresh 3: RefPrice 100.75", r.out)
    assert.matches("3 updates, last 100.75\n", r.out)
  end)

  it("returns nil, err for a refused connection and an unknown host", function()
    local r = nexus.run(function()
      return { { nexus.http.get("http://127.0.0.1:1/") }, { nexus.http.get("http://no-such-host.invalid/") } }
    end)
    assert.are.same({ nil, "connection refused" }, r[1])
    assert.are.same({ nil, "could not resolve host" }, r[2])
  end)

  it("raises on bad input, naming the function", function()
    nexus.run(function()
      local cases = {
        { nil, "expected an options table, got nil" },
        { {}, "url must be a string, got nil" },
        { { url = "ftp://x/" }, "url must be http:// or https://" },
        { { url = base, bogus = 1 }, "unknown option 'bogus'" },
        { { url = base, method = "get" }, "method must be an upper%-case word" },
        { { url = base, body = 3 }, "body must be a string, got number" },
        { { url = base, headers = { ["Bad Name"] = "x" } }, "bad header name Bad Name" },
        { { url = base, headers = { X = "a\r\nb" } }, "header X holds a control character" },
        { { url = base, timeout = -1 }, "negative timeout" },
        { { url = base, version = "3" }, "version must be \"1.1\" or \"2\"" },
        { { url = base, tls = { verify = "yes" } }, "tls.verify must be a boolean, got string" },
        { { url = base, tls = { cert = "x" } }, "unknown tls option 'cert'" },
        { { url = base, stream = "yes" }, "stream must be a boolean, got string" },
      }
      for _, c in ipairs(cases) do
        local ok, err = pcall(nexus.http.request, c[1])
        assert.is_false(ok)
        assert.matches("nexus.http.request: " .. c[2], err)
      end
      assert.has_error(function() nexus.http.get(base, 5) end, "nexus.http.get: options must be a table, got number")
    end)
    assert.has_error(function() nexus.http.get(base .. "/hello") end)   -- outside a task
  end)
end)

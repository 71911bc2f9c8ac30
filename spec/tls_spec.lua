-- TLS on tcp streams (src/tls.c, docs/tls.md): handshakes both ways,
-- verification failures with their reasons, ALPN, client certificates,
-- buffered reads, large transfers under backpressure, broken and stalled
-- handshakes without descriptor leaks, STARTTLS, select ops and time-outs
-- over TLS, interoperation with openssl s_server and s_client, bad input.
-- Certificates are made at test time with the openssl command.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(dir .. "helpers.lua")
local N = dofile(dir .. "net_helpers.lua")
local P = dofile(dir .. "proc.lua")
local nexus = require "nexus"

-- ---------------------------------------------------------------- certs

local D = os.tmpname()
os.remove(D)
assert(os.execute("mkdir -p " .. H.q(D)) == 0 or true)

local MKCERTS = [[
set -e
cd "$1"
EC="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
ca() { openssl req -x509 -new $EC -keyout $1.key -out $1.pem -subj "/CN=$2" -days 3 \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign; }
ca ca "nexus test CA"
ca other "unknown CA"
leaf() {
  openssl req -new $EC -keyout $1.key -out $1.csr -subj "/CN=$2"
  printf 'subjectAltName=%s\n' "$3" > $1.ext
  openssl x509 -req -in $1.csr -CA $4.pem -CAkey $4.key -CAcreateserial -out $1.pem -days 3 -extfile $1.ext
}
leaf server localhost "DNS:localhost,IP:127.0.0.1" ca
leaf wrong wrong.example "DNS:wrong.example" ca
leaf unknown localhost "DNS:localhost,IP:127.0.0.1" other
leaf client "nexus client" "DNS:client.example" ca
# expired: openssl 3.0's req and x509 take no start date; ca does
openssl req -new $EC -keyout expired.key -out expired.csr -subj "/CN=localhost"
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > expired.ext
printf '[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n' > ca.cnf
: > index.txt; echo 1000 > serial
openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr -out expired.pem \
  -startdate 20200101000000Z -enddate 20200102000000Z -extfile expired.ext -notext
]]

local made = H.sh("sh -c " .. H.q(MKCERTS) .. " mkcerts " .. H.q(D))
assert(made.rc == 0, "making certificates failed: " .. made.err)

local function f(name) return D .. "/" .. name end
local CA = f("ca.pem")
local SERVER = { cert_file = f("server.pem"), key_file = f("server.key") }
local function server_tls(extra)
  local t = { cert_file = SERVER.cert_file, key_file = SERVER.key_file }
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

-- Inside a task: a TLS listener with tls options lt, and a client
-- connection with connect options copts (tls included). Returns the
-- client stream (or nil, err), the server stream and its first read
-- result (when server_read), the listener.
local function tls_pair(lt, ctls, copts, host)
  local ln = assert(nexus.tcp.listen("127.0.0.1", 0, { tls = lt }))
  local _, _, port = ln:local_addr()
  local h = nexus.spawn(function() return ln:accept() end)
  copts = copts or {}
  copts.tls = ctls
  if copts.timeout == nil then copts.timeout = 5 end
  local c, err = nexus.tcp.connect(host or "127.0.0.1", port, copts)
  local s = h:join()
  return c, err, s, ln
end

-- A verify failure seen by the client; the server's first read fails too.
local function client_fails(cert, key, ctls, host)
  return nexus.run(function()
    local c, err, s, ln = tls_pair({ cert_file = f(cert), key_file = f(key) }, ctls, nil, host)
    local _, serr = s:read(10)
    if c then c:close() end
    s:close(); ln:close()
    return c, err, serr
  end)
end

describe("tls", function()
  after_each(function() P.cleanup() end)
  teardown(function() os.execute("rm -rf " .. H.q(D)) end)

  describe("handshake", function()
    it("nexus client and server: TLS 1.3 by default, tls_info on both sides, line and length reads", function()
      local r = nexus.run(function()
        local c, err, s, ln = tls_pair(server_tls(), { ca_file = CA }, nil, "localhost")
        assert(c, err)
        local r = { ci = c:tls_info() }
        assert(c:write("hello\r\nworld\nxyz0123456789"))
        r.l1 = s:read_line()
        r.l2 = s:read_line()
        r.ex = s:read_exactly(3)
        r.si = s:tls_info()
        r.rest = s:read_exactly(10)
        assert(s:write("pong\n"))
        r.pong = c:read_line()
        r.plain = select(1, N.pair()):tls_info()
        c:close()
        r.eof = { s:read() }
        s:close(); ln:close()
        return r
      end)
      assert.are.equal("hello", r.l1)
      assert.are.equal("world", r.l2)
      assert.are.equal("xyz", r.ex)
      assert.are.equal("0123456789", r.rest)
      assert.are.equal("pong", r.pong)
      assert.are.equal("TLSv1.3", r.ci.version)
      assert.truthy(r.ci.cipher:match("^TLS_"))
      assert.are.equal("localhost", r.ci.server_name)
      assert.are.equal("CN=localhost", r.ci.peer.subject)
      assert.are.equal("CN=nexus test CA", r.ci.peer.issuer)
      assert.is_true(r.ci.peer.verified)
      assert.is_true(r.ci.peer.not_after > os.time())
      assert.are.equal("localhost", r.si.server_name)      -- SNI seen by the server
      assert.is_nil(r.si.peer)                            -- no client certificate
      assert.is_nil(r.plain)
      assert.are.same({ nil, "eof" }, r.eof)                -- close_notify
    end)

    it("verifies an IP literal against the certificate's IP SAN (no SNI for an IP); min_version = 1.3", function()
      local r = nexus.run(function()
        local c, err, s, ln = tls_pair(server_tls(), { ca_file = CA, min_version = "1.3" })
        assert(c, err)
        assert(c:write("."))
        s:read(1)
        local r = { c = c:tls_info(), s = s:tls_info() }
        c:close(); s:close(); ln:close()
        return r
      end)
      assert.are.equal("TLSv1.3", r.c.version)
      assert.are.equal("127.0.0.1", r.c.server_name)
      assert.is_true(r.c.peer.verified)
      assert.is_nil(r.s.server_name)
    end)

    it("fails verification with OpenSSL's reason: wrong name, unknown CA, expired, self-signed", function()
      local c, err, serr = client_fails("wrong.pem", "wrong.key", { ca_file = CA })
      assert.is_nil(c)
      assert.are.equal("tls: certificate verify failed: IP address mismatch", err)
      assert.truthy(serr:match("^tls: "), serr)
      c, err = client_fails("wrong.pem", "wrong.key", { ca_file = CA, server_name = "localhost" }, "localhost")
      assert.are.equal("tls: certificate verify failed: hostname mismatch", err)
      c, err = client_fails("unknown.pem", "unknown.key", { ca_file = CA })
      assert.are.equal("tls: certificate verify failed: unable to get local issuer certificate", err)
      c, err = client_fails("expired.pem", "expired.key", { ca_file = CA })
      assert.are.equal("tls: certificate verify failed: certificate has expired", err)
      c, err = client_fails("other.pem", "other.key", { ca_file = CA })
      assert.truthy(err:match("^tls: certificate verify failed: self.signed certificate"), err)
      -- the system trust store knows no test CA
      c, err = client_fails("server.pem", "server.key", {})
      assert.are.equal("tls: certificate verify failed: unable to get local issuer certificate", err)
    end)

    it("verify = false accepts any certificate (and still sends SNI)", function()
      local r = nexus.run(function()
        local c, err, s, ln = tls_pair({ cert_file = f("wrong.pem"), key_file = f("wrong.key") },
                                       { verify = false, server_name = "sni.example" })
        assert(c, err)
        assert(c:write("x"))
        local got = s:read(1)
        local i = s:tls_info()
        local ci = c:tls_info()
        c:close(); s:close(); ln:close()
        return { got = got, sni = i.server_name, verified = ci.peer.verified }
      end)
      assert.are.same({ got = "x", sni = "sni.example", verified = false }, r)
    end)

    it("ALPN: the server picks its first protocol the client offers; none in common fails", function()
      local r = nexus.run(function()
        local c, err, s, ln = tls_pair(server_tls({ alpn = { "http/1.1", "h2" } }),
                                       { ca_file = CA, alpn = { "h2", "http/1.1" } })
        assert(c, err)
        assert(c:write("."))
        s:read(1)
        local r = { c = c:tls_info().alpn, s = s:tls_info().alpn }
        c:close(); s:close(); ln:close()
        c, err, s, ln = tls_pair(server_tls({ alpn = { "h2" } }), { ca_file = CA, alpn = { "spdy/3" } })
        r.none_c, r.none_err = c, err
        r.none_s = select(2, s:read(1))
        s:close(); ln:close()
        -- a client without ALPN talks to an ALPN server: no protocol
        c, err, s, ln = tls_pair(server_tls({ alpn = { "h2" } }), { ca_file = CA })
        r.no_alpn = c:tls_info().alpn
        c:close(); s:close(); ln:close()
        return r
      end)
      assert.are.equal("http/1.1", r.c)
      assert.are.equal("http/1.1", r.s)
      assert.is_nil(r.none_c)
      assert.truthy(r.none_err:match("no application protocol"), r.none_err)
      assert.truthy(r.none_s:match("^tls: "), r.none_s)
      assert.is_nil(r.no_alpn)
    end)

    it("client certificates: required and missing fails on both sides; given, the server sees it", function()
      local r = nexus.run(function()
        local lt = server_tls({ verify_client = true, ca_file = CA })
        local c, err, s, ln = tls_pair(lt, { ca_file = CA })
        local r = {}
        -- TLS 1.3: the client finishes first; the server's alert comes after
        if c then r.c_read = select(2, c:read(1)) else r.c_read = err end
        r.s_read = select(2, s:read(1))
        if c then c:close() end
        s:close(); ln:close()
        c, err, s, ln = tls_pair(lt, { ca_file = CA, cert_file = f("client.pem"), key_file = f("client.key") })
        assert(c, err)
        assert(c:write("hi"))
        r.got = s:read_exactly(2)
        r.peer = s:tls_info().peer
        c:close(); s:close(); ln:close()
        -- a client certificate from an unknown CA
        c, err, s, ln = tls_pair(lt, { ca_file = CA, cert_file = f("unknown.pem"), key_file = f("unknown.key") })
        r.unknown = select(2, s:read(1))
        if c then c:close() end
        s:close(); ln:close()
        return r
      end)
      assert.are.equal("tls: peer did not return a certificate", r.s_read)
      assert.truthy(r.c_read:match("^tls: .*certificate required"), r.c_read)
      assert.are.equal("hi", r.got)
      assert.are.equal("CN=nexus client", r.peer.subject)
      assert.is_true(r.peer.verified)
      assert.truthy(r.unknown:match("^tls: certificate verify failed"), r.unknown)
    end)

    it("STARTTLS: s:tls_handshake upgrades a plain stream on both sides", function()
      local r = nexus.run(function()
        local c, s, ln = N.pair()
        assert(c:write("STARTTLS\n"))
        assert.are.equal("STARTTLS", s:read_line())
        local h = nexus.spawn(function()
          return s:tls_handshake({ server = true, cert_file = SERVER.cert_file, key_file = SERVER.key_file })
        end)
        local ok, err = c:tls_handshake({ ca_file = CA, server_name = "localhost", timeout = 5 })
        assert(ok, err)
        assert(h:join())
        assert(c:write("secret\n"))
        local r = { line = s:read_line(), v = c:tls_info().version, again = H.errof(c.tls_handshake, c, {}) }
        c:close(); s:close(); ln:close()
        return r
      end)
      assert.are.equal("secret", r.line)
      assert.are.equal("TLSv1.3", r.v)
      assert.truthy(r.again:match("stream:tls_handshake: the stream is already TLS"), r.again)
    end)

    it("an accepted stream's handshake is lazy: a silent client never holds up accept", function()
      local r = nexus.run(function()
        local ln = assert(nexus.tcp.listen("127.0.0.1", 0, { tls = server_tls() }))
        local _, _, port = ln:local_addr()
        local silent = assert(nexus.tcp.connect("127.0.0.1", port))    -- plain, says nothing
        local s1 = assert(ln:accept())
        local h = nexus.spawn(function() return ln:accept() end)
        local c = assert(nexus.tcp.connect("127.0.0.1", port, { tls = { ca_file = CA }, timeout = 5 }))
        local s2 = assert(h:join())
        -- the server writes first: its write waits for the handshake
        assert(s2:write("banner\n"))
        local banner = c:read_line()
        local ok, err = nexus.timeout(0.2, function() return s1:tls_handshake() end)
        local r = { banner = banner, ok = ok, err = err, s1_closed = s1:is_closed() }
        silent:close(); c:close(); s2:close(); ln:close()
        return r
      end)
      assert.are.equal("banner", r.banner)
      assert.is_falsy(r.ok)
      assert.are.equal("timeout", r.err)
      assert.is_true(r.s1_closed)          -- an abandoned handshake closes the stream
    end)
  end)

  describe("streams", function()
    it("10 MiB each way at once with slow readers: intact, and the queues stay bounded", function()
      local MiB = 1024 * 1024
      local chunk = {}
      for i = 0, 255 do chunk[#chunk + 1] = string.char(i) end
      local block = table.concat(chunk):rep(256)           -- 64 KiB
      local r = nexus.run(function()
        local hw = 256 * 1024
        local c, err, s, ln = tls_pair(server_tls(), { ca_file = CA },
                                       { read_high_water = hw, write_high_water = hw })
        assert(c, err)
        local maxq, maxbuf = 0, 0
        local function sender(st)
          for i = 1, 160 do
            assert(st:write(block))
            if st:write_queued() > maxq then maxq = st:write_queued() end
          end
          return true
        end
        local function slow_reader(st)
          local got, n, bad = 0, 0, false
          while got < 10 * MiB do
            local d = assert(st:read(16384))
            if d ~= block:sub(got % 65536 + 1, got % 65536 + #d) then
              -- compare across the block boundary
              local off = got % 65536
              local want = (block .. block):sub(off + 1, off + #d)
              if d ~= want then bad = true end
            end
            got = got + #d
            n = n + 1
            if st:buffered() > maxbuf then maxbuf = st:buffered() end
            if n % 8 == 0 then nexus.sleep(0.001) end
          end
          return got, bad
        end
        local t0 = nexus.now()
        local hs1 = nexus.spawn(sender, c)
        local hs2 = nexus.spawn(sender, s)
        local hr1 = nexus.spawn(slow_reader, s)
        local hr2 = nexus.spawn(slow_reader, c)
        hs1:join(); hs2:join()
        local g1, b1 = hr1:join()
        local g2, b2 = hr2:join()
        local secs = nexus.now() - t0
        c:close(); s:close(); ln:close()
        return { g1 = g1, g2 = g2, b1 = b1, b2 = b2, maxq = maxq, maxbuf = maxbuf, secs = secs, hw = hw }
      end)
      assert.are.equal(10 * MiB, r.g1)
      assert.are.equal(10 * MiB, r.g2)
      assert.is_false(r.b1)
      assert.is_false(r.b2)
      -- a write of 64 KiB may queue at most its ciphertext above the mark
      assert.is_true(r.maxq <= r.hw + 70000, tostring(r.maxq))
      -- the plaintext buffer passes the mark by at most one read's worth
      assert.is_true(r.maxbuf <= r.hw + 20000, tostring(r.maxbuf))
      print(("\n    10 MiB each way over TLS: %.2f s"):format(r.secs))
    end)

    it("select ops, read time-outs and write_queued work over TLS", function()
      local r = nexus.run(function()
        local c, err, s, ln = tls_pair(server_tls(), { ca_file = CA }, { read_timeout = 0.1 })
        assert(c, err)
        local r = {}
        r.tmo = { c:read(10) }
        local h = nexus.spawn(function()
          nexus.sleep(0.05)
          s:write("via select\n")
        end)
        local i, line = nexus.select(c:read_line_op(), nexus.sleep_op(2))
        r.sel = { i, line }
        h:join()
        r.q = c:write_queued()
        c:close(); s:close(); ln:close()
        return r
      end)
      assert.are.same({ nil, "timeout" }, r.tmo)
      assert.are.same({ 1, "via select" }, r.sel)
      assert.are.equal(0, r.q)
    end)
  end)

  describe("broken handshakes", function()
    it("peers that vanish mid-handshake or send garbage leak no descriptors (200 of each, both sides)", function()
      local r = nexus.run(function()
        local ln = assert(nexus.tcp.listen("127.0.0.1", 0, { tls = server_tls() }))
        local _, _, port = ln:local_addr()
        local plain = assert(nexus.tcp.listen("127.0.0.1", 0))
        local _, _, pport = plain:local_addr()
        local errs = {}
        local served = 0
        nexus.spawn(function()
          while true do
            local s = ln:accept()
            if not s then return end
            nexus.spawn(function()
              local _, e = s:read(1)
              errs[e] = (errs[e] or 0) + 1
              served = served + 1
              s:close()
            end)
          end
        end)
        -- the plain server: half a handshake then gone, or garbage
        local cerrs = {}
        nexus.spawn(function()
          local k = 0
          while true do
            local s = plain:accept()
            if not s then return end
            k = k + 1
            if k % 2 == 0 then s:write(("\22\3\3\0\200"):rep(3) .. "garbage") end
            s:close()
          end
        end)
        local ctx = { ca_file = CA }
        -- warm up (contexts, the system's caches) before counting
        local w = nexus.tcp.connect("127.0.0.1", port, { tls = ctx, timeout = 5 })
        if w then w:close() end
        collectgarbage()
        local before = N.fds()
        for i = 1, 200 do
          local s = assert(nexus.tcp.connect("127.0.0.1", port))
          if i % 2 == 0 then
            s:write("\22\3\1\2\0\1\0\1\252\3\3" .. ("x"):rep(50))      -- a truncated ClientHello
          else
            s:write(("GET / HTTP/1.1\r\n\r\n"):rep(5))                  -- not TLS at all
          end
          s:close()
          local c, e = nexus.tcp.connect("127.0.0.1", pport, { tls = ctx, timeout = 5 })
          assert(not c)
          cerrs[e] = (cerrs[e] or 0) + 1
        end
        local deadline = nexus.now() + 5
        while served < 201 and nexus.now() < deadline do nexus.sleep(0.01) end
        collectgarbage(); collectgarbage()
        nexus.sleep(0.05)
        local after = N.fds()
        ln:close(); plain:close()
        return { before = before, after = after, errs = errs, cerrs = cerrs, served = served }
      end)
      assert.are.equal(201, r.served)
      assert.is_true(r.after <= r.before, ("fds %d -> %d"):format(r.before, r.after))
      for e in pairs(r.errs) do
        if e ~= "eof" then assert.truthy(e:match("^tls: "), e) end
      end
      for e in pairs(r.cerrs) do assert.truthy(e:match("^tls: "), e) end
    end)

    it("a time-out or an abort during the handshake gives up cleanly", function()
      local r = nexus.run(function()
        local ln = assert(nexus.tcp.listen("127.0.0.1", 0))   -- plain: never answers the hello
        local _, _, port = ln:local_addr()
        local held = {}
        nexus.spawn(function()
          while true do
            local s = ln:accept()
            if not s then return end
            held[#held + 1] = s
          end
        end)
        collectgarbage()
        local before = N.fds()
        local t0 = nexus.now()
        local c, err = nexus.tcp.connect("127.0.0.1", port, { tls = { ca_file = CA }, timeout = 0.2 })
        local took = nexus.now() - t0
        local h = nexus.spawn(function()
          return nexus.tcp.connect("127.0.0.1", port, { tls = { ca_file = CA } })
        end)
        nexus.sleep(0.1)
        local tasks_before = #nexus.tasks()
        h:abort()
        local aborted = { pcall(h.join, h) }
        for _, s in ipairs(held) do s:close() end
        collectgarbage(); collectgarbage()
        nexus.sleep(0.05)
        local after = N.fds()
        ln:close()
        return { c = c, err = err, took = took, before = before, after = after, aborted = aborted,
                 tasks_before = tasks_before }
      end)
      assert.is_nil(r.c)
      assert.are.equal("timeout", r.err)
      assert.is_true(r.took >= 0.2 and r.took < 0.2 + H.LATE, tostring(r.took))
      assert.is_false(r.aborted[1])
      assert.is_true(r.after <= r.before, ("fds %d -> %d"):format(r.before, r.after))
    end)
  end)

  describe("interoperation", function()
    local function free_port()
      return nexus.run(function()
        local ln = assert(nexus.tcp.listen("127.0.0.1", 0))
        local _, _, port = ln:local_addr()
        ln:close()
        return port
      end)
    end

    it("nexus client with openssl s_server (ALPN, TLS 1.2 and 1.3)", function()
      for _, v in ipairs({ "-tls1_3", "-tls1_2" }) do
        local port = free_port()
        local srv = P.spawn({ "openssl", "s_server", "-accept", "127.0.0.1:" .. port, "-cert", SERVER.cert_file,
                              "-key", SERVER.key_file, "-alpn", "h2,http/1.1", "-rev", v })
        assert(srv:wait_for("ACCEPT", 5), srv:show())
        local r = nexus.run(function()
          local c, err = nexus.tcp.connect("localhost", port,
            { timeout = 5, tls = { ca_file = CA, alpn = { "http/1.1" } } })
          assert(c, err)
          assert(c:write("hello openssl\n"))
          local line = c:read_line()
          local i = c:tls_info()
          c:close()
          return { line = line, version = i.version, alpn = i.alpn }
        end)
        assert.are.same({ line = "lssnepo olleh", version = v == "-tls1_3" and "TLSv1.3" or "TLSv1.2",
                          alpn = "http/1.1" }, r)
        srv:signal("KILL")
        srv:wait(5)
      end
    end)

    it("nexus server with openssl s_client (verifying us, SNI, ALPN, a client certificate)", function()
      local r = nexus.run(function()
        local ln = assert(nexus.tcp.listen("127.0.0.1", 0, { tls = server_tls({ alpn = { "h2" },
          verify_client = true, ca_file = CA }) }))
        local _, _, port = ln:local_addr()
        local cmd = "printf 'ping from s_client\\n' | openssl s_client -connect 127.0.0.1:" .. port
          .. " -servername localhost -verify_return_error -verify_hostname localhost -CAfile " .. CA
          .. " -cert " .. f("client.pem") .. " -key " .. f("client.key") .. " -alpn h2 -ign_eof"
        local cl = P.spawn({ "sh", "-c", cmd })
        local s = assert(ln:accept())
        local line = s:read_line()
        local i = s:tls_info()
        assert(s:write("pong from nexus\n"))
        s:close()
        local deadline = nexus.now() + 5
        while not cl:poll() and nexus.now() < deadline do nexus.sleep(0.02) end
        ln:close()
        return { line = line, sni = i.server_name, alpn = i.alpn, peer = i.peer.subject,
                 out = cl:out(), how = cl:how(), show = cl:show() }
      end)
      assert.are.equal("ping from s_client", r.line)
      assert.are.equal("localhost", r.sni)
      assert.are.equal("h2", r.alpn)
      assert.are.equal("CN=nexus client", r.peer)
      assert.truthy(r.out:find("pong from nexus", 1, true), r.show)
      assert.truthy(r.out:find("Verify return code: 0 (ok)", 1, true), r.show)
      assert.are.equal("exit 0", r.how, r.show)
    end)
  end)

  describe("bad input", function()
    local function err_connect(tls)
      return nexus.run(function()
        return H.errof(nexus.tcp.connect, "127.0.0.1", 1, { tls = tls })
      end)
    end
    local function err_listen(tls)
      return nexus.run(function()
        return H.errof(nexus.tcp.listen, "127.0.0.1", 0, { tls = tls })
      end)
    end

    local cases = {
      { "a string", "x", "tls must be a table or true, got string" },
      { "verify", { verify = "yes" }, "tls.verify must be a boolean, got string" },
      { "server_name", { server_name = 42 }, "tls.server_name must be a string, got number" },
      { "empty server_name", { server_name = "" }, "tls.server_name must be a non-empty string without NUL bytes" },
      { "NUL in ca_file", { ca_file = "a\0b" }, "tls.ca_file must be a non-empty string without NUL bytes" },
      { "ca_path", { ca_path = true }, "tls.ca_path must be a string, got boolean" },
      { "alpn not a table", { alpn = "h2" }, "tls.alpn must be a list of strings, got string" },
      { "alpn empty", { alpn = {} }, "tls.alpn must be a non-empty list of strings" },
      { "alpn entry", { alpn = { "h2", 3 } }, "tls.alpn[2] must be a string, got number" },
      { "alpn too long", { alpn = { ("x"):rep(256) } }, "tls.alpn[1] must be 1..255 bytes long" },
      { "min_version", { min_version = "1.1" }, "tls.min_version must be \"1.2\" or \"1.3\", got \"1.1\"" },
      { "min_version number", { min_version = 1.2 }, "tls.min_version must be \"1.2\" or \"1.3\", got number" },
      { "unknown key", { verfy = true }, "tls.'verfy' is not a tls option" },
      { "server key on a client", { verify_client = true }, "tls.'verify_client' is not a tls option" },
      { "cert without key", { cert_file = "/x" }, "tls.cert_file and key_file go together" },
    }
    for _, case in ipairs(cases) do
      it("nexus.tcp.connect raises for tls " .. case[1], function()
        local e = err_connect(case[2])
        assert.truthy(e, "no error")
        assert.truthy(e:find("nexus.tcp.connect: " .. case[3], 1, true), e)
      end)
    end

    local lcases = {
      { "no certificate", {}, "tls.cert_file and key_file are required on the server side" },
      { "true", true, "tls must be a table, got boolean" },
      { "verify_client", server_tls({ verify_client = 1 }), "tls.verify_client must be a boolean, got number" },
      { "a client key", server_tls({ server_name = "x" }), "tls.'server_name' is not a server tls option" },
      { "alpn", server_tls({ alpn = { "" } }), "tls.alpn[1] must be 1..255 bytes long" },
    }
    for _, case in ipairs(lcases) do
      it("nexus.tcp.listen raises for tls " .. case[1], function()
        local e = err_listen(case[2])
        assert.truthy(e, "no error")
        assert.truthy(e:find("nexus.tcp.listen: " .. case[3], 1, true), e)
      end)
    end

    it("files that cannot be loaded give nil, \"tls: ...\" (not an error)", function()
      local r = nexus.run(function()
        local r = {}
        r.l1 = { nexus.tcp.listen("127.0.0.1", 0, { tls = { cert_file = f("nope.pem"), key_file = f("server.key") } }) }
        r.l2 = { nexus.tcp.listen("127.0.0.1", 0, { tls = { cert_file = f("server.pem"), key_file = f("client.key") } }) }
        r.c1 = { nexus.tcp.connect("127.0.0.1", 1, { tls = { ca_file = f("nope.pem") } }) }
        r.c2 = { nexus.tcp.connect("127.0.0.1", 1, { tls = { ca_file = CA, cert_file = f("ca.key"), key_file = f("ca.key") } }) }
        return r
      end)
      assert.is_nil(r.l1[1])
      assert.truthy(r.l1[2]:match("^tls: cannot load cert_file '.*nope.pem'"), r.l1[2])
      assert.truthy(r.l2[2]:match("^tls: cannot load key_file '.*client.key': key values mismatch"), r.l2[2])
      assert.truthy(r.c1[2]:match("^tls: cannot load ca_file '.*nope.pem'"), r.c1[2])
      assert.truthy(r.c2[2]:match("^tls: cannot load cert_file"), r.c2[2])
    end)

    it("tls_handshake checks its options and its stream", function()
      local r = nexus.run(function()
        local c, s, ln = N.pair()
        local r = {
          bad = H.errof(c.tls_handshake, c, { verify = 1 }),
          server_nocert = H.errof(c.tls_handshake, c, { server = true }),
          not_stream = H.errof(c.tls_handshake, "x"),
          info = H.errof(c.tls_info, 42),
        }
        c:close(); s:close(); ln:close()
        return r
      end)
      assert.truthy(r.bad:find("stream:tls_handshake: tls.verify must be a boolean, got number", 1, true), r.bad)
      assert.truthy(r.server_nocert:find("tls.cert_file and key_file are required on the server side", 1, true))
      assert.truthy(r.not_stream:find("stream:tls_handshake: expected a tcp stream", 1, true), r.not_stream)
      assert.truthy(r.info:find("stream:tls_info: expected a tcp stream", 1, true), r.info)
    end)
  end)
end)

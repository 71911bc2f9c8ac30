-- nexus.http.listen: curl as an independent client (keep-alive counted on
-- the server side, bodies, chunked both ways, 100-continue, HTTPS), raw
-- sockets for what curl will not send (pipelining, limits, malformed
-- requests, time-outs), WebSocket upgrades, many requests at once with
-- fds flat, close, handler errors and bad input.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local N = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "net_helpers.lua")
local nexus = require "nexus"

local dir

setup(function()
  dir = os.tmpname()
  os.remove(dir)
  local r = H.sh(("mkdir -p %s && cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem "
    .. "-days 2 -subj /CN=nexus-test-ca 2>/dev/null && openssl req -newkey rsa:2048 -nodes -keyout srv.key "
    .. "-out srv.csr -subj /CN=127.0.0.1 2>/dev/null && printf 'subjectAltName=IP:127.0.0.1\\n' > ext "
    .. "&& openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem "
    .. "-days 2 -extfile ext 2>/dev/null"):format(dir, dir))
  assert(r.rc == 0, r.err)
end)

teardown(function()
  if dir then os.execute("rm -rf " .. H.q(dir)) end
end)

-- Runs fn(srv, port) in a task beside a server of handler; closes it after.
local function with_server(handler, opts, fn)
  return nexus.run(function()
    local srv = assert(nexus.http.listen("127.0.0.1", 0, handler, opts))
    local _, _, port = srv:local_addr()
    local out = { fn(srv, port) }
    srv:close()
    return unpack(out)
  end)
end

-- curl's stdout and exit code (run as a child process, so the server
-- runs meanwhile; without the sanitizer build's preload, under which curl
-- hangs).
local function curl(args)
  local argv = { "-u", "LD_PRELOAD", "-u", "ASAN_OPTIONS", "-u", "UBSAN_OPTIONS", "curl" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local p = assert(nexus.process.spawn("env", argv))
  local t = {}
  while true do
    local d = p.stdout:read()
    if not d then break end
    t[#t + 1] = d
  end
  return table.concat(t), p:wait()
end

-- One raw response from s: status, headers (lower-case), body | nil, err.
local function response(s, head_only)
  local line, err = s:read_line()
  if not line then return nil, err end
  local status = tonumber(line:match("^HTTP/1%.[01] (%d%d%d)"))
  local hs = {}
  while true do
    local l = assert(s:read_line())
    if l == "" then break end
    local k, v = l:match("^([^:]+):%s*(.*)$")
    hs[k:lower()] = v
  end
  if head_only or status == 204 or status == 304 then return status, hs, "" end
  local body
  if hs["content-length"] then
    body = assert(s:read_exactly(tonumber(hs["content-length"])))
  elseif hs["transfer-encoding"] == "chunked" then
    local t = {}
    while true do
      local n = tonumber(assert(s:read_line()), 16)
      if n == 0 then assert(s:read_line() == "") break end
      t[#t + 1] = assert(s:read_exactly(n))
      assert(s:read_line() == "")
    end
    body = table.concat(t)
  else
    local t = {}
    while true do
      local d = s:read()
      if not d then break end
      t[#t + 1] = d
    end
    body = table.concat(t)
  end
  return status, hs, body
end

local function raw(port, data)
  local s = assert(nexus.tcp.connect("127.0.0.1", port))
  assert(s:write(data))
  return s
end

local function status_of(req_bytes, opts, handler)
  return with_server(handler or hello, opts, function(_, port)
    local s = raw(port, req_bytes)
    local st, hs = response(s)
    local eof = { s:read() }
    s:close()
    return st, hs and hs.connection, eof[2]
  end)
end

local function hello(req)
  return 200, { ["Content-Type"] = "text/plain" }, "hello " .. req.path
end

describe("nexus.http.listen with curl as the client", function()
  it("answers GETs and reuses one connection for several (keep-alive, counted by the server)", function()
    local peers = {}
    local out, code = with_server(function(req)
      peers[tostring(req.peer)] = true
      return hello(req)
    end, nil, function(_, port)
      local base = "http://127.0.0.1:" .. port
      return curl { "-s", base .. "/a", base .. "/b", base .. "/c" }
    end)
    assert.equal(0, code)
    assert.equal("hello /ahello /bhello /c", out)
    local n = 0
    for _ in pairs(peers) do n = n + 1 end
    assert.equal(1, n)
  end)

  it("gives the handler method, path, query, headers and version", function()
    local seen
    local out = with_server(function(req)
      seen = { req.method, req.path, req.query, req.headers["x-test"], req.headers.host, req.version, req.target }
      return 201, { ["X-Reply"] = { "one", "two" } }, "made"
    end, nil, function(_, port)
      return curl { "-s", "-i", "-X", "PUT", "-H", "X-Test: yes ", ("http://127.0.0.1:%d/p/q?a=1&b=2"):format(port) }
    end)
    assert.same({ "PUT", "/p/q", "a=1&b=2", "yes", "127.0.0.1:" .. seen[5]:match(":(%d+)$"), "1.1", "/p/q?a=1&b=2" }, seen)
    assert.truthy(out:find("^HTTP/1.1 201 Created\r\n"))
    assert.truthy(out:find("X-Reply: one\r\nX-Reply: two\r\n", 1, true))
    assert.truthy(out:find("\r\nDate: %a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT\r\n"))
    assert.truthy(out:find("\r\n\r\nmade$"))
  end)

  it("reads request bodies: content-length, chunked, and after 100 Continue", function()
    local file = H.write_file(dir .. "/up.bin", N.blob(300000, 7))
    local bodies = {}
    local out1, out2, out3 = with_server(function(req)
      local b = assert(req:body())
      bodies[#bodies + 1] = b
      assert.equal(b, req:body())          -- read once, kept
      return 200, nil, tostring(#b)
    end, { max_body = 1000000 }, function(_, port)
      local url = "http://127.0.0.1:" .. port .. "/up"
      return curl { "-s", "--data-binary", "@" .. file, url },
        curl { "-s", "-H", "Transfer-Encoding: chunked", "--data-binary", "@" .. file, url },
        curl { "-s", "-H", "Expect: 100-continue", "--data-binary", "@" .. file, url }
    end)
    assert.same({ "300000", "300000", "300000" }, { out1, out2, out3 })
    for i = 1, 3 do assert.is_true(bodies[i] == N.blob(300000, 7)) end
  end)

  it("streams a response from a function as chunks, which curl reassembles", function()
    local out = with_server(function()
      local i = 0
      return 200, {}, function()
        i = i + 1
        if i > 100 then return nil end
        nexus.yield()
        return ("line %03d\n"):format(i)
      end
    end, nil, function(_, port)
      return curl { "-s", "-i", "http://127.0.0.1:" .. port .. "/" }
    end)
    assert.truthy(out:find("Transfer-Encoding: chunked\r\n", 1, true))
    local body = out:match("\r\n\r\n(.*)$")
    assert.equal(100, select(2, body:gsub("line %d%d%d\n", "")))
    assert.truthy(body:find("^line 001\n"))
    assert.truthy(body:find("line 100\n$"))
  end)

  it("serves HTTPS with the tls option", function()
    local out, code = with_server(hello, { tls = { cert_file = dir .. "/srv.pem", key_file = dir .. "/srv.key" } },
      function(_, port)
        local base = "https://127.0.0.1:" .. port
        return curl { "-s", "--cacert", dir .. "/ca.pem", base .. "/x", base .. "/y" }
      end)
    assert.equal(0, code)
    assert.equal("hello /xhello /y", out)
  end)

  it("answers HEAD with the headers only, and 204 with no body or length", function()
    local a, b = with_server(function(req)
      if req.path == "/none" then return 204 end
      return 200, nil, "twelve bytes"
    end, nil, function(_, port)
      local s = raw(port, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /none HTTP/1.1\r\nHost: x\r\n\r\n")
      local st1, h1 = response(s, true)
      local st2, h2, b2 = response(s)
      s:close()
      return { st1, h1["content-length"] }, { st2, h2["content-length"], b2 }
    end)
    assert.same({ 200, "12" }, a)
    assert.same({ 204, nil, "" }, b)
  end)
end)

describe("nexus.http.listen over raw sockets", function()
  it("answers pipelined requests in order on one connection", function()
    local got = with_server(function(req)
      if req.path == "/slow" then nexus.sleep(0.05) end
      return 200, nil, req.path .. ":" .. (req:body() or "")
    end, nil, function(_, port)
      local s = raw(port, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
        .. "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        .. "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n"
        .. "GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      local t = {}
      for _ = 1, 4 do
        local st, _, body = response(s)
        t[#t + 1] = st .. " " .. body
      end
      t[#t + 1] = tostring(s:read())      -- closed after the last
      s:close()
      return t
    end)
    assert.same({ "200 /slow:", "200 /p:abc", "200 /c:xy", "200 /last:", "nil" }, got)
  end)

  it("skips a body the handler did not read, and serves the next request", function()
    local got = with_server(function(req) return 200, nil, req.path end, nil, function(_, port)
      local body = ("z"):rep(100000)
      local s = raw(port, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
        .. "GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
      local _, _, b1 = response(s)
      local _, _, b2 = response(s)
      s:close()
      return { b1, b2 }
    end)
    assert.same({ "/a", "/b" }, got)
  end)

  it("closes after an HTTP/1.0 request unless it asks for keep-alive", function()
    local got = with_server(hello, nil, function(_, port)
      local s = raw(port, "GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /c HTTP/1.0\r\n\r\n")
      local st1, h1, b1 = response(s)
      local st2, h2, b2 = response(s)
      local eof = { s:read() }
      s:close()
      return { st1, h1.connection, b1, st2, h2.connection, b2, eof[2] }
    end)
    assert.same({ 200, "keep-alive", "hello /k", 200, "close", "hello /c", "eof" }, got)
  end)

  it("answers each limit and malformed request with its status, then closes", function()
    local cases = {
      { "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " .. ("a"):rep(20000) .. "\r\n\r\n", nil, 431 },
      { "GET /" .. ("u"):rep(20000) .. " HTTP/1.1\r\nHost: x\r\n\r\n", nil, 414 },
      { "GET / HTTP/1.1\r\n" .. ("X-A: 1\r\n"):rep(101) .. "\r\n", nil, 431 },
      { "GET / HTTP/1.1\r\n" .. ("X-A: 1\r\n"):rep(11) .. "\r\n", { max_headers = 10 }, 431 },
      { "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", nil, 413 },
      { "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world", { max_body = 10 }, 413 },
      { "BAD\r\n\r\n", nil, 400 },
      { "GET / HTTP/1.1\r\nHost x\r\n\r\n", nil, 400 },
      { "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", nil, 400 },
      { "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", nil, 501 },
      { "GET / HTTP/9.1\r\nHost: x\r\n\r\n", nil, 505 },
    }
    local called = 0
    for i, c in ipairs(cases) do
      local st, conn, eof = status_of(c[1], c[2], function(req)
        called = called + 1
        return hello(req)
      end)
      assert.are.same({ i, c[3], "close", "eof" }, { i, st, conn, eof })
    end
    assert.equal(0, called)
  end)

  it("a chunked body over max_body: req:body() says so and the connection closes", function()
    local err
    local st, conn = with_server(function(req)
      local b
      b, err = req:body()
      return 400, nil, tostring(b)
    end, { max_body = 10 }, function(_, port)
      -- the head first: the handler runs before the body comes
      local s = raw(port, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
      nexus.sleep(0.05)
      s:write("8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n")
      local st, hs = response(s)
      s:close()
      return st, hs.connection
    end)
    assert.equal("body too large", err)
    assert.same({ 400, "close" }, { st, conn })
  end)

  it("closes an idle keep-alive connection, and answers 408 to a head that never ends", function()
    local got = with_server(hello, { idle_timeout = 0.2, request_timeout = 0.3 }, function(_, port)
      local t0 = nexus.now()
      local s = raw(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      local st = response(s)
      local eof = { s:read() }
      local idle = nexus.now() - t0
      s:close()
      local s2 = raw(port, "GET / HTTP/1.1\r\nHost: x\r\n")
      local st2, hs2 = response(s2)
      s2:close()
      return { st, eof[2], idle >= 0.15 and idle < 5, st2, hs2.connection }
    end)
    assert.same({ 200, "eof", true, 408, "close" }, got)
  end)

  it("a handler's error is a 500, reported through on_error with the request", function()
    local reported
    local st = status_of("GET /boom HTTP/1.1\r\nHost: x\r\n\r\n", {
      on_error = function(err, req) reported = { tostring(err), req.path } end,
    }, function() error("kaput") end)
    assert.equal(500, st)
    assert.equal("/boom", reported[2])
    assert.truthy(reported[1]:find("kaput", 1, true))
    assert.truthy(reported[1]:find("traceback", 1, true))
  end)

  it("a bad response from the handler is a 500 that names the fault", function()
    local bad = {
      { function() return "200" end, "status must be an integer" },
      { function() return 99 end, "status must be an integer" },
      { function() return 200, "x" end, "headers must be a table" },
      { function() return 200, { ["bad name"] = "v" } end, "bad header name" },
      { function() return 200, { X = "a\r\nb" } end, "control character" },
      { function() return 200, nil, 42 end, "body must be a string or a function" },
      { function() return 200, { ["Content-Length"] = 3 }, "four" end, "content-length 3 but the body has 4" },
      { function() return 200, { ["Transfer-Encoding"] = "chunked" }, "x" end, "transfer-encoding" },
    }
    for _, c in ipairs(bad) do
      local reported
      local st = status_of("GET / HTTP/1.1\r\nHost: x\r\n\r\n", {
        on_error = function(err) reported = tostring(err) end,
      }, c[1])
      assert.equal(500, st)
      assert.truthy(reported and reported:find(c[2], 1, true), tostring(reported))
    end
  end)

  it("a body function that fails mid-response is reported, and the connection closes", function()
    local reported
    local got = with_server(function()
      local i = 0
      return 200, nil, function()
        i = i + 1
        if i == 3 then error("feed broke") end
        return "part" .. i .. "\n"
      end
    end, { on_error = function(err) reported = tostring(err) end }, function(_, port)
      local s = raw(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      local t = {}
      while true do
        local d = s:read()
        if not d then break end
        t[#t + 1] = d
      end
      s:close()
      return table.concat(t)
    end)
    assert.truthy(got:find("^HTTP/1.1 200 OK\r\n"))
    assert.truthy(got:find("part1\n", 1, true) and got:find("part2\n", 1, true))
    assert.falsy(got:find("0\r\n\r\n", 1, true))    -- no last chunk: the client sees it cut short
    assert.truthy(reported and reported:find("feed broke", 1, true), reported)
  end)

  it("a peer that leaves mid-request or mid-response breaks nothing", function()
    local served = with_server(function(req)
      if req.path == "/stream" then
        return 200, nil, function() nexus.sleep(0.01) return ("x"):rep(65536) end
      end
      return hello(req)
    end, { on_error = function() end }, function(srv, port)
      for _ = 1, 20 do
        raw(port, "GET / HTTP/1.1\r\nHo"):close()
        raw(port, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc"):close()
        local s = raw(port, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        s:read_exactly(1000)
        s:close()
      end
      nexus.sleep(0.1)
      local s = raw(port, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
      local _, _, b = response(s)
      s:close()
      return b, srv:requests()
    end)
    assert.equal("hello /ok", served)
  end)
end)

describe("nexus.http.listen with mutated requests", function()
  it("answers or closes on 600 mangled requests, and still serves a good one", function()
    local seeds = {
      "GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n",
      "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
      "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
      "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        .. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    }
    math.randomseed(20261204)
    local function mangle(r)
      for _ = 1, math.random(1, 4) do
        local op, i = math.random(1, 4), math.random(1, #r)
        if op == 1 then                       -- flip a byte
          r = r:sub(1, i - 1) .. string.char(math.random(0, 255)) .. r:sub(i + 1)
        elseif op == 2 then                   -- cut
          r = r:sub(1, i)
        elseif op == 3 then                   -- repeat a piece
          local j = math.min(#r, i + math.random(0, 20))
          r = r:sub(1, j) .. r:sub(i, j):rep(math.random(1, 50)) .. r:sub(j + 1)
        else                                  -- insert a control byte
          r = r:sub(1, i - 1) .. string.char(math.random(0, 31)) .. r:sub(i)
        end
      end
      return r
    end
    local statuses, body = with_server(function(req)
      if req.path == "/ws" and req.headers.upgrade then
        local ws = req:websocket()
        if ws then ws:close() end
        return
      end
      local b = req:body()
      return 200, nil, tostring(b and #b)
    end, { request_timeout = 0.05, body_timeout = 0.05, idle_timeout = 0.05, max_body = 4096,
           on_error = function() end }, function(_, port)
      local seen = {}
      for i = 1, 600 do
        local s = raw(port, mangle(seeds[(i - 1) % #seeds + 1]))
        s:set_timeouts { read = 2 }
        local line = s:read_line()
        local st = line and line:match("^HTTP/1%.1 (%d%d%d)") or "none"
        seen[st] = (seen[st] or 0) + 1
        s:close()
      end
      local s = raw(port, "GET /fine HTTP/1.1\r\nHost: x\r\n\r\n")
      local st, _, b = response(s)
      s:close()
      return seen, st .. " " .. b
    end)
    local t = {}
    for k, v in pairs(statuses) do t[#t + 1] = k .. "=" .. v end
    print("mangled: " .. table.concat(t, " "))
    assert.equal("200 0", body)
    assert.truthy((statuses["400"] or 0) > 50, "too few 400s")
    assert.truthy((statuses["200"] or 0) > 10, "too few 200s")
  end)
end)

describe("nexus.http.listen upgrades", function()
  it("req:websocket() hands the connection to a WebSocket", function()
    local got = with_server(function(req)
      if req.path ~= "/ws" then return 404, nil, "no" end
      local ws = assert(req:websocket { protocols = { "chat" } })
      while true do
        local m, kind = ws:recv()
        if not m then break end
        ws:send(m:upper(), kind)
      end
    end, nil, function(_, port)
      local ws = assert(nexus.websocket.connect(("ws://127.0.0.1:%d/ws"):format(port), { protocols = { "chat" } }))
      local t = { ws:protocol() }
      for _, m in ipairs { "one", "two", ("x"):rep(100000) } do
        assert(ws:send(m, "text"))
        local r = ws:recv()
        t[#t + 1] = #r > 10 and #r or r
      end
      ws:close()
      return t
    end)
    assert.same({ "chat", "ONE", "TWO", 100000 }, got)
  end)

  it("req:websocket() on a plain request answers 426 and returns nil, err", function()
    local err
    local st = status_of("GET / HTTP/1.1\r\nHost: x\r\n\r\n", nil, function(req)
      local ws, e = req:websocket()
      err = e
      assert.is_nil(ws)
      return 200, nil, "ignored"
    end)
    assert.equal(426, st)
    assert.equal("expected Upgrade: websocket", err)
  end)
end)

describe("nexus.http.listen at scale", function()
  it("serves 1,000 concurrent requests (nexus.http clients) and leaves fds flat", function()
    local before
    local ok, fds_during = with_server(function(req)
      nexus.sleep(0.01)
      return 200, nil, req.query
    end, { backlog = 2048 }, function(_, port)
      before = N.fds()
      local g = nexus.group()
      for i = 1, 1000 do
        g:spawn(function()
          local res = assert(nexus.http.get(("http://127.0.0.1:%d/?%d"):format(port, i)))
          assert(res.status == 200 and res.body == tostring(i), res.body)
        end)
      end
      g:wait()
      return true, N.fds()
    end)
    assert.is_true(ok)
    assert.truthy(fds_during > before)   -- connections were open (kept alive by the client)
  end)

  it("fds are back where they were after 1,000 requests on fresh connections", function()
    local before, after = with_server(hello, nil, function(_, port)
      local function requests(n)
        for _ = 1, n do
          local s = raw(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
          response(s)
          s:close()
        end
        nexus.sleep(0.05)
      end
      requests(20)                        -- what earlier specs left behind settles
      local b = N.fds()
      requests(1000)
      return b, N.fds()
    end)
    assert.truthy(after <= before, before .. " fds before, " .. after .. " after")
  end)
end)

describe("srv:close", function()
  it("closes idle keep-alive connections now, and a busy one after its response", function()
    local got = with_server(function(req)
      if req.path == "/slow" then nexus.sleep(0.2) end
      return hello(req)
    end, nil, function(srv, port)
      local idle = raw(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      response(idle)
      local busy = raw(port, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
      nexus.sleep(0.05)
      srv:close()
      local idle_eof = { idle:read() }
      local st, hs, body = response(busy)
      local c, err = nexus.tcp.connect("127.0.0.1", port)
      return { idle_eof[2], st, hs.connection, body, c == nil, err }
    end)
    assert.same({ "eof", 200, "close", "hello /slow", true, "connection refused" }, got)
  end)
end)

describe("srv:close with a head half sent", function()
  it("closes that connection too, so the runtime can end", function()
    local t0 = nexus.now()
    local got = nexus.run(function()
      local srv = assert(nexus.http.listen("127.0.0.1", 0, hello))
      local _, _, port = srv:local_addr()
      local s = raw(port, "GET / HTTP/1.1\r\nHost: x\r\nX-Half: ")
      nexus.sleep(0.05)
      srv:close()
      local r = { s:read() }
      s:close()
      return r[2]
    end)
    assert.equal("eof", got)
    assert.truthy(nexus.now() - t0 < 5)
  end)
end)

describe("nexus.http.listen bad input", function()
  it("names the function and the fault", function()
    nexus.run(function()
      local h = function() end
      local cases = {
        { function() nexus.http.listen("127.0.0.1", 0, nil) end, "handler must be a function, got nil" },
        { function() nexus.http.listen("127.0.0.1", 0, h, 5) end, "options must be a table" },
        { function() nexus.http.listen("127.0.0.1", 0, h, { nope = 1 }) end, "unknown option 'nope'" },
        { function() nexus.http.listen("127.0.0.1", 0, h, { max_body = -1 }) end, "max_body must be a positive integer" },
        { function() nexus.http.listen("127.0.0.1", 0, h, { idle_timeout = "x" }) end, "idle_timeout must be a positive number" },
        { function() nexus.http.listen("127.0.0.1", 0, h, { on_error = 1 }) end, "on_error must be a function" },
        { function() nexus.http.listen("127.0.0.1", 0, h, { max_headers = 20000 }) end, "max_headers must be at most 10000" },
        { function() nexus.http.listen("127.0.0.1", 0, h, { tls = {} }) end, "cert_file" },
        { function() nexus.http.listen(42, 0, h) end, "nexus.tcp.listen" },
      }
      for _, c in ipairs(cases) do
        local ok, err = pcall(c[1])
        assert.is_false(ok)
        assert.truthy(tostring(err):find(c[2], 1, true), tostring(err))
        assert.truthy(tostring(err):find("nexus.http.listen", 1, true) or tostring(err):find("nexus.tcp.listen", 1, true),
          tostring(err))
      end
      local srv = assert(nexus.http.listen("127.0.0.1", 0, h))
      local ok, err = pcall(srv.close, {})
      assert.is_false(ok)
      assert.truthy(err:find("srv:close: expected an http server", 1, true))
      ok, err = pcall(srv.local_addr, nil)
      assert.truthy(not ok and err:find("srv:local_addr", 1, true))
      srv:close()
    end)
    local ok, err = pcall(nexus.http.listen, "127.0.0.1", 0, function() end)
    assert.is_false(ok)
    assert.truthy(err:find("nexus.http.listen", 1, true))
  end)

  it("req methods check their receiver and options", function()
    local errs = with_server(function(req)
      local t = {}
      t[1] = select(2, pcall(req.body, {}))
      t[2] = select(2, pcall(req.websocket, req, { nope = true }))
      t[3] = select(2, pcall(req.websocket, req, { max_message = 0 }))
      return 200, nil, table.concat(t, "\n")
    end, nil, function(_, port)
      local s = raw(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      local _, _, b = response(s)
      s:close()
      return b
    end)
    assert.truthy(errs:find("req:body: expected a request", 1, true), errs)
    assert.truthy(errs:find("req:websocket: unknown option 'nope'", 1, true), errs)
    assert.truthy(errs:find("req:websocket: max_message must be a positive integer", 1, true), errs)
  end)
end)

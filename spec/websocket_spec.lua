-- nexus.websocket: nexus client <-> nexus server on 127.0.0.1 (text,
-- binary, empty and 1 MiB messages, fragments, ping/pong, close codes
-- both ways, 1009, 1007, 1002 from a raw peer, bad Upgrade requests,
-- recv time-out and abort, recv_op in a select), and interop with
-- Python's websockets (python3-websockets) as an independent peer, as
-- server and as client.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(dir .. "helpers.lua")
local N = dofile(dir .. "net_helpers.lua")
local nexus = require "nexus"
local bit = require "bit"
local ws_mod = nexus.websocket
local char, byte, floor = string.char, string.byte, math.floor

local PY = "/usr/bin/python3"
local has_py = os.execute(PY .. " -c 'import websockets' 2>/dev/null")
has_py = has_py == 0 or has_py == true

-- A listener on 127.0.0.1 and its URL base.
local function listen(opts)
  local wl = assert(ws_mod.listen("127.0.0.1", 0, opts))
  local _, _, port = wl:local_addr()
  return wl, "ws://127.0.0.1:" .. port, port
end

-- A connected client and server pair.
local function ws_pair(lopts, copts)
  local wl, base = listen(lopts)
  local h = nexus.spawn(function() return wl:accept() end)
  local c = assert(ws_mod.connect(base .. "/", copts))
  local s, req = h:join()
  assert(s, req)
  return c, s, wl, req
end

---------------------------------------------------------------- raw frames

local function xor(payload, key)
  local t = {}
  for i = 1, #payload do
    t[i] = char(bit.bxor(byte(payload, i), byte(key, (i - 1) % 4 + 1)))
  end
  return table.concat(t)
end

-- One frame: op, payload; fin (default true); masked (default true).
local function frame(op, payload, fin, masked)
  if masked == nil then masked = true end
  local b1 = (fin == false and 0 or 0x80) + op
  local m = masked and 0x80 or 0
  local len = #payload
  local hdr
  if len < 126 then
    hdr = char(b1, m + len)
  elseif len < 65536 then
    hdr = char(b1, m + 126, floor(len / 256), len % 256)
  else
    hdr = char(b1, m + 127, 0, 0, 0, 0, floor(len / 2 ^ 24) % 256, floor(len / 65536) % 256,
               floor(len / 256) % 256, len % 256)
  end
  if masked then
    local key = "\55\250\33\61"
    return hdr .. key .. xor(payload, key)
  end
  return hdr .. payload
end

-- Reads one (unmasked) frame from a raw stream: op, payload, fin.
local function read_frame(s)
  local h = assert(s:read_exactly(2))
  local b1, b2 = byte(h, 1, 2)
  local len = b2 % 128
  if len == 126 then
    local e = s:read_exactly(2)
    len = byte(e, 1) * 256 + byte(e, 2)
  elseif len == 127 then
    local e = s:read_exactly(8)
    len = 0
    for i = 1, 8 do len = len * 256 + byte(e, i) end
  end
  local p = len > 0 and assert(s:read_exactly(len)) or ""
  return b1 % 16, p, b1 >= 128
end

local function close_code(p)
  return byte(p, 1) * 256 + byte(p, 2), p:sub(3)
end

-- A raw TCP client that did the handshake (checks the 101).
local function raw_client(port, path)
  local s = assert(nexus.tcp.connect("127.0.0.1", port))
  assert(s:write("GET " .. (path or "/") .. " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    .. "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    .. "Sec-WebSocket-Version: 13\r\n\r\n"))
  local status = assert(s:read_line())
  assert(status == "HTTP/1.1 101 Switching Protocols", status)
  local accept
  while true do
    local l = assert(s:read_line())
    if l == "" then break end
    accept = accept or l:match("^Sec%-WebSocket%-Accept: (.*)$")
  end
  assert(accept == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", accept)   -- RFC 6455's example
  return s
end

-- Sends a raw request, returns the status line and the whole response.
local function raw_request(port, req)
  local s = assert(nexus.tcp.connect("127.0.0.1", port))
  s:write(req)
  local status = s:read_line()
  local rest = {}
  while true do
    local d = s:read()
    if not d then break end
    rest[#rest + 1] = d
  end
  s:close()
  return status, table.concat(rest)
end

---------------------------------------------------------------- nexus <-> nexus

describe("nexus.websocket (nexus client, nexus server)", function()
  it("echoes text, binary, empty and 1 MiB messages both ways", function()
    local r = nexus.run(function()
      local c, s, wl, req = ws_pair()
      local h = nexus.spawn(function()
        while true do
          local d, k = s:recv()
          if not d then return k end
          assert(s:send(d, k))
        end
      end)
      local big = N.blob(2 ^ 20, 7)
      local out = {}
      for _, m in ipairs({ { "héllo", "text" }, { "\0\1\2\255", "binary" }, { "", "text" }, { "", "binary" },
                           { big, "binary" }, { big:gsub("[\128-\255]", "a"), "text" } }) do
        assert(c:send(m[1], m[2]))
        local d, k = c:recv()
        out[#out + 1] = d == m[1] and k == m[2]
      end
      c:close()
      local ended = h:join()
      wl:close()
      return { out = out, ended = ended, path = req.path, host = req.headers.host }
    end)
    assert.are.same({ true, true, true, true, true, true }, r.out)
    assert.are.equal("closed", r.ended)
    assert.are.equal("/", r.path)
    assert.truthy(r.host:match("^127%.0%.0%.1:%d+$"))
  end)

  it("reassembles fragmented messages (with a ping between fragments) and answers pings", function()
    local r = nexus.run(function()
      local wl, _, port = listen()
      local h = nexus.spawn(function()
        local s = assert(wl:accept())
        local a, ak = s:recv()
        local b, bk = s:recv()
        return { a, ak, b, bk }
      end)
      local raw = raw_client(port)
      raw:write(frame(1, "frag", false) .. frame(0, "men", false) .. frame(9, "are you there")
        .. frame(0, "ted", true) .. frame(2, "\1\2", false) .. frame(0, "\3", true))
      local op, p = read_frame(raw)
      local got = h:join()
      raw:close()
      wl:close()
      return { got = got, op = op, p = p }
    end)
    assert.are.same({ "fragmented", "text", "\1\2\3", "binary" }, r.got)
    assert.are.equal(10, r.op)              -- pong
    assert.are.equal("are you there", r.p)
  end)

  it("ws:ping is answered by the peer (pongs counted)", function()
    local r = nexus.run(function()
      local c, s, wl = ws_pair()
      nexus.spawn(function()
        local d = s:recv()
        s:send(d)
        s:recv()
      end)
      assert(c:ping("abc"))
      assert(c:send("x"))
      local d = c:recv()               -- the pong arrived before the echo
      local n = c:pongs()
      c:close()
      wl:close()
      return { d, n }
    end)
    assert.are.same({ "x", 1 }, r)
  end)

  it("close codes and reasons travel both ways", function()
    local r = nexus.run(function()
      local c, s, wl = ws_pair()
      local h = nexus.spawn(function() return { s:recv() } end)
      local ok = c:close(4000, "client bye")
      local srv = h:join()
      local after = { c:recv() }
      local sent = { c:send("late") }
      local c2, s2 = ws_pair()
      local h2 = nexus.spawn(function() return { c2:recv() } end)
      local ok2 = s2:close(4001, "server bye")
      local cli = h2:join()
      wl:close()
      return { ok = ok, srv = srv, after = after, sent = sent, ok2 = ok2, cli = cli }
    end)
    assert.is_true(r.ok)
    assert.are.same({ nil, "closed", 4000, "client bye" }, r.srv)
    assert.are.same({ nil, "closed", 4000, "client bye" }, r.after)
    assert.are.same({ nil, "closed" }, r.sent)
    assert.is_true(r.ok2)
    assert.are.same({ nil, "closed", 4001, "server bye" }, r.cli)
  end)

  it("a message over max_message closes with 1009 (on each side)", function()
    local r = nexus.run(function()
      local c, s = ws_pair({ max_message = 1000 }, { max_message = 100 })
      local h = nexus.spawn(function() return { s:recv() } end)
      assert(c:send(("a"):rep(1001)))
      local srv = h:join()
      local cli = { c:recv() }
      -- and the client's own limit, fragments counted together
      local c2, s2 = ws_pair(nil, { max_message = 100 })
      local h2 = nexus.spawn(function() return { c2:recv() } end)
      s2:send(("b"):rep(100))
      local ok100 = h2:join()
      h2 = nexus.spawn(function() return { c2:recv() } end)
      s2:send(("b"):rep(101))
      local cli2 = h2:join()
      return { srv = srv, cli = cli, ok100 = ok100[1] and #ok100[1], cli2 = cli2 }
    end)
    assert.are.same({ nil, "closed", 1009, "message too big" }, r.srv)
    assert.are.same({ nil, "closed", 1009, "message too big" }, r.cli)   -- the server's close frame
    assert.are.equal(100, r.ok100)
    assert.are.same({ nil, "closed", 1009, "message too big" }, r.cli2)
  end)

  it("fragments over max_message in total close with 1009", function()
    local r = nexus.run(function()
      local wl, _, port = listen({ max_message = 10 })
      local h = nexus.spawn(function() return { assert(wl:accept()):recv() } end)
      local raw = raw_client(port)
      raw:write(frame(2, "123456", false) .. frame(0, "789012", true))
      local op, p = read_frame(raw)
      return { srv = h:join(), op = op, code = close_code(p) }
    end)
    assert.are.same({ nil, "closed", 1009, "message too big" }, r.srv)
    assert.are.same(8, r.op)
    assert.are.same(1009, r.code)
  end)

  it("invalid UTF-8 in a text message closes with 1007; ws:send refuses it", function()
    local r = nexus.run(function()
      local wl, _, port = listen()
      local h = nexus.spawn(function() return { assert(wl:accept()):recv() } end)
      local raw = raw_client(port)
      raw:write(frame(1, "ok \192\128 overlong"))
      local op, p = read_frame(raw)
      local c, s = ws_pair()
      local e = H.errof(c.send, c, "\255", "text")
      local ok = c:send("\255", "binary")
      local d, k = s:recv()
      return { srv = h:join(), op = op, code = close_code(p), e = e, bin = ok and d == "\255" and k }
    end)
    assert.are.same({ nil, "closed", 1007, "invalid utf-8" }, r.srv)
    assert.are.equal(8, r.op)
    assert.are.equal(1007, r.code)
    assert.truthy(r.e:find("ws:send: text is not valid UTF-8", 1, true))
    assert.are.equal("binary", r.bin)
  end)

  it("an unmasked client frame closes with 1002", function()
    local r = nexus.run(function()
      local wl, _, port = listen()
      local h = nexus.spawn(function() return { assert(wl:accept()):recv() } end)
      local raw = raw_client(port)
      raw:write(frame(1, "hello", true, false))
      local op, p = read_frame(raw)
      local eof = { raw:read() }
      return { srv = h:join(), op = op, code = close_code(p), eof = eof }
    end)
    assert.are.same({ nil, "closed", 1002, "protocol error" }, r.srv)
    assert.are.equal(8, r.op)
    assert.are.equal(1002, r.code)
    assert.are.same({ nil, "eof" }, r.eof)
  end)

  it("runs handshakes concurrently: a silent client delays nobody, and close ends the ones under way", function()
    local r = nexus.run(function()
      local wl, base, port = listen({ handshake_timeout = 5 })
      local h = nexus.spawn(function()
        local t0 = nexus.now()
        local ws = assert(wl:accept())
        return { ws:recv(), nexus.now() - t0 }
      end)
      local silent = {}
      for i = 1, 3 do silent[i] = assert(nexus.tcp.connect("127.0.0.1", port)) end   -- never say a word
      nexus.sleep(0.05)
      local c = assert(ws_mod.connect(base .. "/"))
      assert(c:send("first"))
      local got = h:join()
      -- the silent ones are still handshaking: wl:close ends them now, not in 5 s
      local t1 = nexus.now()
      wl:close()
      local after = { wl:accept() }
      local silent_eof = {}
      for i = 1, 3 do silent_eof[i] = select(2, silent[i]:read()) end
      local closed_in = nexus.now() - t1
      c:close()
      return { got = got, after = after, silent = silent_eof, closed_in = closed_in }
    end)
    assert.are.equal("first", r.got[1])
    assert.truthy(r.got[2] < 2, "the accept waited " .. r.got[2] .. " s behind silent clients")
    assert.are.same({ nil, "closed" }, r.after)
    assert.are.same({ "eof", "eof", "eof" }, r.silent)
    assert.truthy(r.closed_in < 2, "silent handshakes lasted " .. r.closed_in .. " s after close")
  end)

  it("answers bad Upgrade requests with 4xx, closes them, and goes on to the next", function()
    local r = nexus.run(function()
      local wl, base, port = listen({ path = "/ws" })
      local h = nexus.spawn(function() return { wl:accept() } end)
      local out = {}
      local key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      local up = "Upgrade: websocket\r\nConnection: Upgrade\r\n"
      local cases = {
        "GARBAGE\r\n\r\n",
        "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n",                                       -- no upgrade: 426
        "GET /ws HTTP/1.1\r\nHost: x\r\n" .. up .. "Sec-WebSocket-Version: 13\r\n\r\n", -- no key
        "GET /ws HTTP/1.1\r\nHost: x\r\n" .. up .. "Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "GET /ws HTTP/1.1\r\nHost: x\r\n" .. up .. key .. "Sec-WebSocket-Version: 8\r\n\r\n",
        "GET /other HTTP/1.1\r\nHost: x\r\n" .. up .. key .. "Sec-WebSocket-Version: 13\r\n\r\n",
        "POST /ws HTTP/1.1\r\nHost: x\r\n" .. up .. key .. "Sec-WebSocket-Version: 13\r\n\r\n",
        "GET /ws HTTP/1.1\r\n" .. up .. key .. "Sec-WebSocket-Version: 13\r\n\r\n",    -- no Host
        "GET /ws HTTP/1.1\r\nHost: x\r\n bad fold\r\n\r\n",
        "GET /ws HTTP/1.1\r\n" .. ("X-A: 1\r\n"):rep(101) .. "\r\n",
        "GET /ws HTTP/1.1\r\nX-Big: " .. ("a"):rep(9000) .. "\r\n\r\n",
        "GET /ws HTTP/1.0\r\nHost: x\r\n" .. up .. key .. "Sec-WebSocket-Version: 13\r\n\r\n",
      }
      for i, req in ipairs(cases) do out[i] = (raw_request(port, req)) end
      -- a peer that hangs up mid-request
      local s = assert(nexus.tcp.connect("127.0.0.1", port))
      s:write("GET /ws HTTP/1.1\r\nHo")
      s:close()
      local c = assert(ws_mod.connect(base .. "/ws?x=1"))
      local got = h:join()
      assert(c:send("still here"))
      local d = got[1]:recv()
      return { out = out, path = got[2].path, query = got[2].query, d = d }
    end)
    assert.are.same({
      "HTTP/1.1 400 Bad Request", "HTTP/1.1 426 Upgrade Required", "HTTP/1.1 400 Bad Request",
      "HTTP/1.1 400 Bad Request", "HTTP/1.1 426 Upgrade Required", "HTTP/1.1 404 Not Found",
      "HTTP/1.1 405 Method Not Allowed", "HTTP/1.1 400 Bad Request", "HTTP/1.1 400 Bad Request",
      "HTTP/1.1 431 Request Header Fields Too Large", "HTTP/1.1 431 Request Header Fields Too Large",
      "HTTP/1.1 400 Bad Request",
    }, r.out)
    assert.are.equal("/ws", r.path)
    assert.are.equal("x=1", r.query)
    assert.are.equal("still here", r.d)
  end)

  it("a recv can time out or be aborted, and the connection stays usable", function()
    local r = nexus.run(function()
      local c, s = ws_pair()
      local a, b = nexus.timeout(0.05, c.recv, c)
      local h = nexus.spawn(function() return c:recv() end)
      nexus.sleep(0.01)
      h:abort()
      assert(s:send("after"))
      local d = c:recv()
      c:set_timeouts({ read = 0.02 })
      local t1, t2 = c:recv()
      c:set_timeouts({ read = false })
      assert(s:send("again"))
      local d2 = c:recv()
      return { a, b, d, t1, t2, d2 }
    end)
    assert.are.same({ nil, "timeout", "after", nil, "timeout", "again" }, r)
  end)

  it("recv_op in a select: loses to a sleep_op taking nothing, wins with a message", function()
    local r = nexus.run(function()
      local c, s = ws_pair()
      local op, sl = c:recv_op(), nexus.sleep_op(0.05)
      local i1 = nexus.select(op, sl)
      assert(s:send("one"))
      assert(s:send("two"))
      nexus.sleep(0.02)
      local i2, d2, k2 = nexus.select(op, sl)
      local i3 = nexus.select(nexus.sleep_op(0), op)   -- biased: the ready sleep wins...
      local d3 = c:recv()                      -- ...so "two" is still there
      -- a ping arriving while the op waits is answered at once
      nexus.spawn(function() nexus.sleep(0.02); s:ping("hi"); s:send("three") end)
      local i4, d4 = nexus.select(op, nexus.sleep_op(2))
      nexus.spawn(function() s:recv() end)       -- s reads the pong
      nexus.sleep(0.02)
      local pongs = s:pongs()
      -- the peer closes while the op waits
      nexus.spawn(function() s:close(4005, "op") end)
      local i5, a5, b5, c5, d5 = nexus.select(op, nexus.sleep_op(2))
      return { i1, i2, d2, k2, i3, d3, i4, d4, pongs, i5, a5, b5, c5, d5 }
    end)
    assert.are.same({ 2, 1, "one", "text", 1, "two", 1, "three", 1, 1, nil, "closed", 4005, "op" }, r)
  end)

  it("connect fails cleanly: refused, not a WebSocket server, time-out, bad URL", function()
    local r = nexus.run(function()
      local ln = assert(nexus.tcp.listen("127.0.0.1", 0))
      local _, _, port = ln:local_addr()
      ln:close()
      local a = { ws_mod.connect("ws://127.0.0.1:" .. port .. "/") }
      local http = assert(nexus.tcp.listen("127.0.0.1", 0))
      local _, _, hport = http:local_addr()
      nexus.spawn(function()
        local s = http:accept()
        while s:read_line() ~= "" do end
        s:write("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        local s2 = http:accept()       -- this one never answers
        nexus.sleep(1)
        s2:close()
      end)
      local b = { ws_mod.connect("ws://127.0.0.1:" .. hport .. "/") }
      local t0 = nexus.now()
      local c = { ws_mod.connect("ws://127.0.0.1:" .. hport .. "/", { timeout = 0.1 }) }
      local dt = nexus.now() - t0
      local e1 = H.errof(ws_mod.connect, "http://x/")
      local e2 = H.errof(ws_mod.connect, "ws://127.0.0.1/", { bogus = 1 })
      local e3 = H.errof(ws_mod.connect, "ws://127.0.0.1/", { max_message = 0 })
      local e4 = H.errof(ws_mod.listen, "127.0.0.1", 0, { path = "nope" })
      local cw, sw = ws_pair()
      local e5 = H.errof(cw.send, cw, {}, "text")
      local e6 = H.errof(cw.send, cw, "x", "blob")
      local e7 = H.errof(cw.close, cw, 999)
      local e8 = H.errof(cw.ping, cw, ("x"):rep(126))
      local e9 = H.errof(cw.recv, "nope")
      cw:close()
      sw:recv()
      return { a = a, b = b, c = c, dt = dt, e = { e1, e2, e3, e4, e5, e6, e7, e8, e9 } }
    end)
    assert.are.same({ nil, "connection refused" }, r.a)
    assert.are.same({ nil, "handshake: status 200 OK" }, r.b)
    assert.are.same({ nil, "timeout" }, r.c)
    assert.truthy(r.dt < 0.5)
    local want = { "nexus.websocket.connect: expected a ws:// or wss:// URL",
                   "nexus.websocket.connect: unknown option 'bogus'",
                   "nexus.websocket.connect: max_message must be a positive integer",
                   "nexus.websocket.listen: path must be a string starting with /",
                   "ws:send: expected a string or a byte channel message, got table", "ws:send: kind must be \"text\" or \"binary\"",
                   "ws:close: code must be", "ws:ping: ping data is 126 bytes", "ws:recv: expected a websocket" }
    for i, w in ipairs(want) do
      assert.truthy(r.e[i] and r.e[i]:find(w, 1, true), tostring(r.e[i]) .. " ~ " .. w)
    end
  end)

  it("ws:send waits under backpressure; a timed-out send leaves the connection usable", function()
    local r = nexus.run(function()
      local c, s = ws_pair()
      local chunk = N.blob(256 * 1024, 5)
      local sent, blocked = 0, nil
      for _ = 1, 400 do                 -- the server reads nothing: the socket fills
        local ok, a, b = nexus.timeout(0.2, c.send, c, chunk, "binary")
        if not ok then blocked = a break end
        assert(a, b)
        sent = sent + 1
      end
      -- the same task sends again once the reader drains (the abandoned
      -- send's bytes were queued whole: framing intact)
      local h = nexus.spawn(function()
        local n, bytes = 0, 0
        while true do
          local d = s:recv()
          if not d then return n, bytes end
          n, bytes = n + 1, bytes + #d
        end
      end)
      assert(c:send("last", "text"))
      -- another task can send too
      local h2 = nexus.spawn(function() return c:send("other", "text") end)
      assert(h2:join())
      c:close()
      local n, bytes = h:join()
      return { sent = sent, blocked = blocked, n = n, bytes = bytes }
    end)
    assert.are.equal("timeout", r.blocked)
    assert.truthy(r.sent >= 1 and r.sent < 400, r.sent)
    assert.are.equal(r.sent + 3, r.n)   -- the timed-out one went out whole
    assert.are.equal((r.sent + 1) * 256 * 1024 + 4 + 5, r.bytes)
  end)

  it("many messages pipelined, sends under backpressure, no fd leak", function()
    local before
    local r = nexus.run(function()
      local warm = assert(ws_mod.listen("127.0.0.1", 0))   -- libuv's one spare fd per loop
      warm:close()
      collectgarbage()                 -- sockets earlier cases left for the collector
      collectgarbage()
      nexus.sleep(0.05)
      before = N.fds()
      local n, sum = 0, 0
      for _ = 1, 20 do
        local c, s, wl = ws_pair()
        local h = nexus.spawn(function()
          local got = 0
          while true do
            local d = s:recv()
            if not d then return got end
            got = got + #d
          end
        end)
        for i = 1, 200 do assert(c:send(("m"):rep(i), "binary")) end
        c:close()
        sum = sum + h:join()
        wl:close()
        n = n + 1
      end
      collectgarbage()
      nexus.sleep(0.05)
      return { n = n, sum = sum, fds = N.fds() }
    end)
    assert.are.equal(20, r.n)
    assert.are.equal(20 * 200 * 201 / 2, r.sum)
    -- none left open (one fewer: a descriptor of an earlier case closed meanwhile)
    assert.truthy(r.fds <= before, before .. " fds before, " .. r.fds .. " after")
  end)
end)

---------------------------------------------------------------- interop

local PY_SERVER = [[
import asyncio, sys, websockets
closes = []
async def handler(ws, path=None):
    try:
        async for msg in ws:
            if isinstance(msg, str) and msg.startswith("cmd:"):
                cmd = msg[4:]
                if cmd == "frag":
                    await ws.send(["frag", "men", "ted"])
                elif cmd == "fragbin":
                    await ws.send([b"\x00\x01", b"\x02"])
                elif cmd == "ping":
                    w = await ws.ping(b"py")
                    await asyncio.wait_for(w, 5)
                    await ws.send("pong ok")
                elif cmd == "big":
                    await ws.send(bytes(range(256)) * 4096)
                elif cmd.startswith("close "):
                    _, code, reason = cmd.split(" ", 2)
                    await ws.close(int(code), reason)
                    return
            else:
                await ws.send(msg)
    except websockets.ConnectionClosed:
        pass
    print("CLOSED", ws.close_code, ws.close_reason, flush=True)
async def main():
    async with websockets.serve(handler, "127.0.0.1", 0, max_size=2**21, ping_interval=None) as srv:
        print("PORT", srv.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()
asyncio.run(main())
]]

local PY_CLIENT = [[
import asyncio, sys, websockets
async def main(port):
    uri = "ws://127.0.0.1:%s/echo" % port
    async with websockets.connect(uri, max_size=2**21, ping_interval=None) as ws:
        await ws.send("hello")
        print("TEXT", await ws.recv(), flush=True)
        await ws.send(b"\x00\x01bin")
        print("BIN", (await ws.recv()) == b"\x00\x01bin", flush=True)
        await ws.send(["frag", "men", "ted"])
        print("FRAG", await ws.recv(), flush=True)
        big = bytes(range(256)) * 4096
        await ws.send(big)
        print("BIG", (await ws.recv()) == big, flush=True)
        w = await ws.ping(b"x")
        await asyncio.wait_for(w, 5)
        print("PONG ok", flush=True)
        await ws.send("close-me")
        try:
            await ws.recv()
        except websockets.ConnectionClosed as e:
            print("CLOSED", e.rcvd.code, e.rcvd.reason, flush=True)
    async with websockets.connect(uri, ping_interval=None) as ws:
        await ws.send("hi")
        await ws.recv()
        await ws.close(4003, "py bye")
        print("SENTCLOSE", flush=True)
asyncio.run(main(sys.argv[1]))
]]

local tmpdir, pysrv, pyport

local function py_ok()
  if not has_py then
    pending("python3-websockets is not installed (" .. PY .. ")")
    return false
  end
  return true
end

describe("nexus.websocket interop with Python websockets", function()
  setup(function()
    if not has_py then return end
    tmpdir = os.tmpname()
    os.remove(tmpdir)
    os.execute("mkdir -p " .. tmpdir)
    H.write_file(tmpdir .. "/server.py", PY_SERVER)
    H.write_file(tmpdir .. "/client.py", PY_CLIENT)
    pysrv = N.spawn(PY .. " " .. H.q(tmpdir .. "/server.py"))
    pyport = N.expect(pysrv, "^PORT (%d+)")
  end)

  teardown(function()
    if pysrv then
      N.kill(pysrv, "KILL")
      N.finish(pysrv)
    end
    if tmpdir then os.execute("rm -rf " .. tmpdir) end
  end)

  it("nexus client, Python server: text, binary, fragments, ping both ways, 1 MiB, close codes", function()
    if not py_ok() then return end
    local r = nexus.run(function()
      local ws = assert(ws_mod.connect("ws://127.0.0.1:" .. pyport .. "/x"))
      local out = {}
      local function rt(d, k)
        assert(ws:send(d, k))
        local a, b = ws:recv()
        return a == d and b
      end
      out.text = rt("héllo wörld", "text")
      out.bin = rt("\0\1\2\255", "binary")
      out.empty = rt("", "text")
      local big = N.blob(2 ^ 20, 3)
      out.big = rt(big, "binary")
      ws:send("cmd:frag")
      out.frag = { ws:recv() }
      ws:send("cmd:fragbin")
      out.fragbin = { ws:recv() }
      ws:send("cmd:ping")                      -- Python pings, waits for the pong
      out.ping = { ws:recv() }
      ws:send("cmd:big")
      local d = ws:recv()
      out.pybig = #d == 2 ^ 20 and d:sub(1, 4) == "\0\1\2\3"
      assert(ws:ping("n"))
      out.echo = rt("after ping")
      out.pongs = ws:pongs()
      out.closed = ws:close(4001, "nexus bye")
      -- the server closes
      local ws2 = assert(ws_mod.connect("ws://127.0.0.1:" .. pyport .. "/y"))
      ws2:send("cmd:close 4002 py says bye")
      out.srvclose = { ws2:recv() }
      return out
    end)
    assert.are.equal("text", r.text)
    assert.are.equal("binary", r.bin)
    assert.are.equal("text", r.empty)
    assert.are.equal("binary", r.big)
    assert.are.same({ "fragmented", "text" }, r.frag)
    assert.are.same({ "\0\1\2", "binary" }, r.fragbin)
    assert.are.same({ "pong ok", "text" }, r.ping)
    assert.is_true(r.pybig)
    assert.are.equal("text", r.echo)
    assert.are.equal(1, r.pongs)
    assert.is_true(r.closed)
    assert.are.same({ nil, "closed", 4002, "py says bye" }, r.srvclose)
    local code, reason = N.expect(pysrv, "^CLOSED (%d+) ?(.*)$")
    assert.are.same({ "4001", "nexus bye" }, { code, reason })
  end)

  it("Python client, nexus server: text, binary, fragments, ping, 1 MiB, close codes", function()
    if not py_ok() then return end
    local proc
    local r = nexus.run(function()
      local wl, _, port = listen({ path = "/echo" })
      proc = N.spawn(PY .. " " .. H.q(tmpdir .. "/client.py") .. " " .. port)
      local _, ws = nexus.timeout(10, wl.accept, wl)
      assert(ws)
      local n = 0
      while true do
        local d, k = ws:recv()
        if not d then break end
        n = n + 1
        if d == "close-me" then
          ws:close(4002, "nexus closes")
          break
        end
        assert(ws:send(d, k))
      end
      local _, ws2 = nexus.timeout(10, wl.accept, wl)
      local d = ws2:recv()
      ws2:send(d)
      local closed = { ws2:recv() }
      wl:close()
      return { n = n, closed = closed }
    end)
    local out = N.finish(proc)
    assert.are.equal(5, r.n)
    assert.are.same({ nil, "closed", 4003, "py bye" }, r.closed)
    assert.truthy(out:find("TEXT hello\n", 1, true), out)
    assert.truthy(out:find("BIN True\n", 1, true), out)
    assert.truthy(out:find("FRAG fragmented\n", 1, true), out)
    assert.truthy(out:find("BIG True\n", 1, true), out)
    assert.truthy(out:find("PONG ok\n", 1, true), out)
    assert.truthy(out:find("CLOSED 4002 nexus closes\n", 1, true), out)
    assert.truthy(out:find("SENTCLOSE\n", 1, true), out)
  end)
end)

describe("nexus.websocket: replies gathered while received messages wait", function()
  it("a reply sent with messages still queued goes out when the task yields, without another recv", function()
    local r = nexus.run(function()
      local c, s, wl = ws_pair()
      for i = 1, 3 do assert(c:send("q" .. i, "binary")) end
      nexus.sleep(0.05)                       -- all three reach the server's socket
      local d = s:recv()                      -- reads them in one go: two stay queued
      local queued = tonumber(s.c.nmsg)
      assert(s:send("re:" .. d, "binary"))    -- gathered, not written yet
      local t0 = nexus.now()
      local ok, got = nexus.timeout(1, c.recv, c)   -- no recv on the server side meanwhile
      local dt = nexus.now() - t0
      local rest = { (s:recv()), (s:recv()) }
      nexus.spawn(function() while s:recv() do end end)
      c:close()
      wl:close()
      return { queued = queued, got = ok and got or tostring(got), dt = dt, rest = rest }
    end)
    assert.are.equal(2, r.queued)
    assert.are.equal("re:q1", r.got)
    assert.truthy(r.dt < 0.5, r.dt)
    assert.are.same({ "q2", "q3" }, r.rest)
  end)

  it("send(d, kind, true) gathers: several sends, one flush when the task yields", function()
    local r = nexus.run(function()
      local c, s, wl = ws_pair()
      for i = 1, 4 do assert(s:send("m" .. i, "binary", true)) end
      local held = tonumber(s.c.outlen)      -- the four wait, framed
      assert(s:send("m5", "binary"))         -- more = false: all written
      local after = tonumber(s.c.outlen)
      local got = {}
      for i = 1, 5 do
        local ok, d = nexus.timeout(1, c.recv, c)
        got[i] = ok and d or tostring(d)
      end
      assert(s:send("lone", "binary", true))
      local ok, d = nexus.timeout(1, c.recv, c)   -- written when this task yields
      nexus.spawn(function() while s:recv() do end end)
      c:close()
      wl:close()
      return { held = held, after = after, got = got, lone = ok and d or tostring(d) }
    end)
    assert.are.equal(4 * 4, r.held)            -- four frames of 2 + 2 bytes
    assert.are.equal(0, r.after)
    assert.are.same({ "m1", "m2", "m3", "m4", "m5" }, r.got)
    assert.are.equal("lone", r.lone)
  end)
end)

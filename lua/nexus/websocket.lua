-- nexus.websocket: RFC 6455 clients and servers on nexus streams.
--
-- Framing is wslay's (src/ws.c): it parses, unmasks and checks frames,
-- answers pings and close frames, and checks text as UTF-8; src/ws.c
-- assembles messages and checks max_message. It does no I/O: ws:recv
-- reads from the stream (s:read, or the stream's read op inside a
-- select) and feeds the bytes in; whatever wslay frames (messages, pongs,
-- close frames) waits in the connection's pending output until a writer
-- takes all of it and writes it with s:write, under the stream's
-- backpressure. One writer at a time (a semaphore of one permit): a sender
-- waiting for the socket to drain holds it, and flushes what others
-- queued meanwhile before it lets go. Only stream methods are used, so a
-- TLS stream underneath (wss://) changes nothing here.
--
-- The HTTP Upgrade handshake is written here, with a strict parser
-- (8 KiB of head, 100 header lines at most). See docs/websocket.md.
local ffi = require "ffi"
local core = require "nexus.core"
local api = require "nexus.api"
local util = require "nexus.util"
local tcp = require "nexus.tcp"
local time = require "nexus.time"
local sync = require "nexus.sync"
local task = require "nexus.task"
local sel = require "nexus.select"
local sel_select = sel.select
local channel = require "nexus.channel"
local bytes = require "nexus.bytes"

local type, tostring, tonumber, pairs, ipairs, floor = type, tostring, tonumber, pairs, ipairs, math.floor
local setmetatable, getmetatable, pcall, error, huge = setmetatable, getmetatable, pcall, error, math.huge
local concat = table.concat
local ffi_string = ffi.string
local argerror, no_task = util.argerror, util.no_task
local api_in_task, api_now = api.in_task, api.now
local timeout, timeout_at = time.timeout, time.timeout_at
local spawn = task.spawn

ffi.cdef [[
typedef struct nx_ws_pub {
  size_t nmsg;
  size_t outlen;
  double pongs;
  int32_t rcode;
  int32_t scode;
  uint8_t rclosed, sclosed, dead, failed, reason_len;
  char reason[127];
} nx_ws_pub;
typedef struct nx_ws_api {
  nx_ws_pub *(*new)(int server, double max);
  void (*free)(nx_ws_pub *w);
  int (*feed)(nx_ws_pub *w, const char *p, size_t n);
  int (*queue)(nx_ws_pub *w, int op, const char *p, size_t n);
  int (*close)(nx_ws_pub *w, int code, const char *reason, size_t n);
  const char *(*peek)(nx_ws_pub *w, size_t *n, int *op);
  void (*drop)(nx_ws_pub *w);
  const char *(*out)(nx_ws_pub *w, size_t *n);
  void (*out_done)(nx_ws_pub *w, size_t n);
  int (*utf8)(const char *p, size_t n);
  int (*accept_key)(const char *key, size_t n, char *out);
  int (*gen_key)(char *out);
  int (*into)(nx_ws_pub *w, nexus_bchan *ch, uint32_t max, int *op, size_t *n);
  int (*take_into)(nx_ws_pub *w, uint8_t *dst, size_t n);
} nx_ws_api;
]]

local C = ffi.cast("const nx_ws_api *", core.ws_api)
local c_new, c_free, c_feed, c_queue, c_close = C.new, C.free, C.feed, C.queue, C.close
local c_peek, c_drop, c_out, c_out_done, c_utf8 = C.peek, C.drop, C.out, C.out_done, C.utf8
local c_accept_key, c_gen_key = C.accept_key, C.gen_key
local c_into, c_take_into = C.into, C.take_into
local Sender, Receiver = bytes.Sender, bytes.Receiver
local bmsg_t = ffi.typeof("nexus_bmsg")
local istype = ffi.istype
local nout = ffi.new("size_t[1]")
local opout = ffi.new("int[1]")
local keybuf = ffi.new("char[32]")

local OP_TEXT, OP_BINARY, OP_PING = 1, 2, 9
-- nx_ws_into's statuses when it moved nothing (src/ws.h)
local INTO_NONE, INTO_FULL, INTO_EMPTY, INTO_BIG, INTO_CLOSED = -10, -11, -12, -13, -14
local MSG_HELD = 1                   -- nexus_bmsg.st_ of a received, unreleased message
local KIND = { [1] = "text", [2] = "binary" }
local QERR = { [-1] = "closed", [-2] = "out of memory", [-3] = "invalid message" }
local FAIL_REASON = { [1002] = "protocol error", [1007] = "invalid utf-8", [1009] = "message too big",
                      [1011] = "out of memory" }
local MAX_HEAD, MAX_HEADERS = 8192, 100
local CLOSE_WAIT = 2                 -- seconds a close handshake may take
local DEFAULT_MAX = 16 * 2 ^ 20
local DEFAULT_TIMEOUT = 5
local HS_LIMIT = 64                  -- handshakes under way or waiting for wl:accept, per listener
local MAXSIZE = 2 ^ 52
local GATHER_MAX = 64 * 1024         -- output held back while replies are gathered

local M = { CLOSE_WAIT = CLOSE_WAIT }
local WS = {}
WS.__index = WS
local WL = {}
WL.__index = WL

---------------------------------------------------------------- helpers

local function accept_key(key)
  local n = c_accept_key(key, #key, keybuf)
  if n < 0 then return nil end
  return ffi_string(keybuf, n)
end

local function gen_key()
  local n = c_gen_key(keybuf)
  if n <= 0 then error("nexus.websocket: no random bytes for a key", 3) end
  return ffi_string(keybuf, n)
end

-- Is tok (lowercase) one of the comma-separated tokens of header value v?
local function has_token(v, tok)
  if not v then return false end
  for t in v:gmatch("[^,]+") do
    if t:match("^[ \t]*(.-)[ \t]*$"):lower() == tok then return true end
  end
  return false
end

local function tokens(v)
  local t = {}
  if v then
    for x in v:gmatch("[^,]+") do
      x = x:match("^[ \t]*(.-)[ \t]*$")
      if x ~= "" then t[#t + 1] = x end
    end
  end
  return t
end

local TOKEN = util.TOKEN

-- The head of an HTTP message: its first line and its headers (lowercase
-- names; repeated headers joined with ", ") | nil, err. At most MAX_HEAD
-- bytes and MAX_HEADERS header lines; obsolete line folding, a name that
-- is no token, or a control character in a value is an error.
local function read_head(s)
  local total = 0
  local first, err = s:read_line(MAX_HEAD)
  if not first then return nil, err == "too long" and "header too large" or err end
  total = #first + 2
  local headers, count = {}, 0
  while true do
    if total >= MAX_HEAD then return nil, "header too large" end
    local line
    line, err = s:read_line(MAX_HEAD - total)
    if not line then return nil, err == "too long" and "header too large" or err end
    total = total + #line + 2
    if total > MAX_HEAD then return nil, "header too large" end
    if line == "" then break end
    count = count + 1
    if count > MAX_HEADERS then return nil, "too many headers" end
    local name, value = line:match("^([^:]*):[ \t]*(.-)[ \t]*$")
    if not name or not name:match(TOKEN) then return nil, "malformed header line" end
    if value:find("[%z\1-\8\10-\31\127]") then return nil, "malformed header value" end
    name = name:lower()
    local prev = headers[name]
    headers[name] = prev and (prev .. ", " .. value) or value
  end
  return first, headers
end

---------------------------------------------------------------- connections

local function new_ws(s, server, max, proto, what)
  local c = c_new(server and 1 or 0, max)
  if c == nil then error("nexus.websocket: out of memory", 3) end
  ffi.gc(c, c_free)
  return setmetatable({
    s = s, c = c, server = server, what = what, proto = proto or false,
    lock = sync.semaphore(1), ev = sync.event(), rop = s:read_op(),
    done = false, ended = false, code = false, reason = false,
    ioerr = false, werr = false, kicked = false,
  }, WS)
end

local function pop(c)
  local p = c_peek(c, nout, opout)
  local data, kind = ffi_string(p, nout[0]), KIND[opout[0]]
  c_drop(c)
  return data, kind
end

-- Writes all pending output; the caller holds the write lock.
local function flush_locked(ws)
  local c, s = ws.c, ws.s
  while c.outlen > 0 do
    if ws.werr then
      c_out_done(c, c.outlen)
      return nil, ws.werr
    end
    local p = c_out(c, nout)
    local n = tonumber(nout[0])
    local data = ffi_string(p, n)
    c_out_done(c, n)
    local ok, err = s:write(data)
    if not ok then
      -- a write time-out leaves the bytes queued on the stream
      if err ~= "timeout" then ws.werr = err end
      return nil, err
    end
  end
  return true
end

-- (suspends under backpressure) true | nil, err. A flush abandoned by
-- nexus.timeout while it waited for the socket to drain never releases
-- the lock: its task still holds the permit (sem:held), and takes it up
-- again at its next flush; an abort or the task's end gives it back.
local function flush(ws)
  if ws.werr then return nil, ws.werr end
  if ws.c.outlen == 0 then return true end
  local lock = ws.lock
  if lock:held() == 0 then
    local ok, err = lock:acquire()
    if not ok then return nil, err end
  end
  local ok, a, b = pcall(flush_locked, ws)
  lock:release()
  if not ok then error(a, 0) end
  return a, b
end

-- From a select's poll, which must not suspend: a task of its own writes
-- the pongs and close frames a feed produced.
local function kicked(ws)
  ws.kicked = false
  flush(ws)
end
local function kick(ws)
  if ws.kicked then return end
  ws.kicked = true
  spawn(kicked, ws)
end

-- Reading is over: records the outcome, once (never suspends).
local function set_done(ws, ioerr)
  if ws.done then return end
  local c = ws.c
  if c.rclosed ~= 0 then
    ws.code, ws.reason = c.rcode, ffi_string(c.reason, c.reason_len)
  elseif c.failed ~= 0 then
    ws.code, ws.reason = c.scode, FAIL_REASON[c.scode] or "protocol error"
  else
    ws.code, ws.reason = 1006, ioerr or "closed"
  end
  ws.done = true
  ws.ev:set()
end

local function drain(s)
  while s:read() do end
end

-- (suspends, at most about 2 * CLOSE_WAIT) ends the connection: our close
-- frame (the echo of the peer's, or the one that fails the connection)
-- goes out; when we failed it, the write side is shut and the peer's end
-- awaited, so it reads our close frame before any reset.
local function shut(ws)
  if ws.ended then return end
  ws.ended = true
  local c, s = ws.c, ws.s
  if not ws.ioerr then
    timeout(CLOSE_WAIT, flush, ws)
    if c.rclosed == 0 then
      pcall(s.shutdown, s)
      pcall(timeout, CLOSE_WAIT, drain, s)
    end
  end
  s:close()
end

local function finish(ws)
  set_done(ws, ws.ioerr)
  shut(ws)
  return nil, "closed", ws.code, ws.reason
end

local function check_ws(fname, ws)
  if getmetatable(ws) ~= WS then argerror(fname, "expected a websocket, got " .. type(ws), 2) end
end

-- (suspends) data, "text" | "binary" | nil, "closed", code, reason |
-- nil, "timeout" (the stream's read time-out; the connection stays usable)
function WS.recv(ws)
  check_ws("ws:recv", ws)
  local c, s = ws.c, ws.s
  while true do
    if c.nmsg > 0 then return pop(c) end
    if ws.done or c.dead ~= 0 then return finish(ws) end
    if c.outlen > 0 then flush(ws) end     -- replies gathered (queue)
    local data, err = s:read()
    if not data then
      if err == "timeout" then return nil, "timeout" end
      ws.ioerr = err
      return finish(ws)
    end
    c_feed(c, data, #data)
    if c.dead ~= 0 then set_done(ws) end
    if c.outlen > 0 then flush(ws) end
  end
end

local RecvOp = sel.class("websocket recv")
-- Reads through the stream's own read op (its poll registers this op's
-- proxy as the stream's reader), feeding what it gets; complete messages
-- wait in the queue, so a losing recv takes none of them.
function RecvOp.poll(op)
  local ws = op.ws
  local c, rop = ws.c, ws.rop
  local cls = getmetatable(rop)
  while true do
    if c.nmsg > 0 or ws.done then return true end
    if c.dead ~= 0 then
      set_done(ws)
      return true
    end
    local done, msg = cls.poll(rop)
    if done == nil then return nil, msg end
    if not done then return false end
    local data, err = cls.take(rop)
    if not data then
      ws.ioerr = err
      set_done(ws, err)
      return true
    end
    c_feed(c, data, #data)
    if c.outlen > 0 then kick(ws) end
  end
end
function RecvOp.take(op)
  local ws = op.ws
  local c = ws.c
  if c.nmsg > 0 then return pop(c) end
  return finish(ws)
end

-- An op for nexus.select: as ws:recv() (data, kind | nil, "closed", code,
-- reason); a losing recv takes no message.
function WS.recv_op(ws)
  check_ws("ws:recv_op", ws)
  return sel.op(RecvOp, { ws = ws }, "ws:recv_op")
end

-- What an argument is, for error messages.
local function what(v)
  local mt = getmetatable(v)
  if mt == Receiver then return "a byte channel receiver" end
  if mt == Sender then return "a byte channel sender" end
  return type(v)
end

-- (suspends) n, kind | 0, kind | nil, "closed", code, reason |
-- nil, "timeout" | nil, "channel closed" | nil, "message too big for the
-- channel", len. Moves the next received messages, a run of one kind (at
-- most max, default all that are queued and fit), from the connection's
-- buffer straight into the byte channel of sender tx, in C: no Lua
-- string is made. Waits for room while the channel is full, and reads
-- nothing from the socket meanwhile (the peer then meets TCP's
-- backpressure). An empty message (a byte channel carries none) is
-- consumed and returned as 0, kind. A message longer than the channel's
-- capacity stays queued (ws:recv takes it).
function WS.recv_into(ws, tx, max)
  local fname = "ws:recv_into"
  check_ws(fname, ws)
  if getmetatable(tx) ~= Sender then
    argerror(fname, "expected a byte channel sender (nexus.channel.bytes), got " .. what(tx))
  end
  if max ~= nil and (type(max) ~= "number" or max ~= floor(max) or max < 1) then
    argerror(fname, "max must be a positive integer, got "
      .. (type(max) == "number" and tostring(max) or type(max)))
  end
  if tx:is_closed() then argerror(fname, "the byte channel is closed") end
  if api_in_task() == 0 then no_task(fname, -1) end
  if not max or max > 0x7fffffff then max = 0x7fffffff end
  local c, s, ch = ws.c, ws.s, tx._ch
  while true do
    if c.nmsg > 0 then
      local n = c_into(c, ch, max, opout, nout)
      if n > 0 then return n, KIND[opout[0]] end
      if n == INTO_EMPTY then return 0, KIND[opout[0]] end
      if n == INTO_CLOSED then return nil, "channel closed" end
      if n == INTO_BIG then return nil, "message too big for the channel", tonumber(nout[0]) end
      -- INTO_FULL: wait for room for the head message (in the channel's
      -- FIFO of waiting producers), then move it
      local need = tonumber(nout[0])
      local cl = tx:claim(need)
      if not cl then return nil, "channel closed" end
      local op = c_take_into(c, cl.ptr, need)
      if op > 0 then
        if not cl:commit() then return nil, "channel closed" end
        return 1, KIND[op]
      end
      cl:abort()                          -- another reader took it: again
    else
      if ws.done or c.dead ~= 0 then return finish(ws) end
      if c.outlen > 0 then flush(ws) end   -- replies gathered (queue)
      local data, err = s:read()
      if not data then
        if err == "timeout" then return nil, "timeout" end
        ws.ioerr = err
        return finish(ws)
      end
      c_feed(c, data, #data)
      if c.dead ~= 0 then set_done(ws) end
      if c.outlen > 0 then flush(ws) end
    end
  end
end

local function queue(ws, fname, op, data, len, more)
  if api_in_task() == 0 then no_task(fname, -1) end
  if ws.werr then return nil, ws.werr end
  local c = ws.c
  if ws.done or c.sclosed ~= 0 then return nil, "closed" end
  local rc = c_queue(c, op, data, len or #data)
  if rc ~= 0 then return nil, QERR[rc] or "closed" end
  -- Replies gathered: while received messages wait in the queue, the
  -- reader takes them without reading the socket, so the output is
  -- written once it has taken them all (recv flushes before it reads),
  -- or when this task yields (a kicked task), whichever comes first: one
  -- write for a batch instead of one per message. more: the caller says
  -- more sends follow at once (as MSG_MORE).
  if (more or c.nmsg > 0) and op ~= OP_PING and c.outlen < GATHER_MAX then
    kick(ws)
    return true
  end
  return flush(ws)
end

-- (suspends under backpressure) true | nil, err. data: a string, or a
-- message received from a byte channel (rx:recv()), sent from its bytes
-- without a Lua string (it may be released once send returns). more:
-- true when more sends follow at once: the output is gathered (written
-- before the next socket read, at the task's next yield, or past 64 KiB).
function WS.send(ws, data, kind, more)
  local fname = "ws:send"
  check_ws(fname, ws)
  local len
  if type(data) == "string" then
    len = #data
  elseif istype(bmsg_t, data) then
    if data.st_ ~= MSG_HELD then argerror(fname, "the byte channel message was released") end
    len = data.len
    data = data.ptr
  else
    argerror(fname, "expected a string or a byte channel message, got " .. type(data))
  end
  local op
  if kind == nil or kind == "text" then
    op = OP_TEXT
    if c_utf8(data, len) == 0 then
      argerror(fname, "text is not valid UTF-8 (send it as \"binary\")")
    end
  elseif kind == "binary" then
    op = OP_BINARY
  else
    argerror(fname, "kind must be \"text\" or \"binary\", got " .. tostring(kind))
  end
  return queue(ws, fname, op, data, len, more)
end

-- (suspends under backpressure) true | nil, err. The pong is not awaited
-- (ws:pongs() counts those received).
function WS.ping(ws, data)
  local fname = "ws:ping"
  check_ws(fname, ws)
  if data == nil then data = "" end
  if type(data) ~= "string" then argerror(fname, "expected a string, got " .. type(data)) end
  if #data > 125 then argerror(fname, "ping data is " .. #data .. " bytes (at most 125)") end
  return queue(ws, fname, OP_PING, data)
end

function WS.pongs(ws)
  check_ws("ws:pongs", ws)
  return ws.c.pongs
end

local function valid_code(code)
  return code == 1000 or code == 1001 or code == 1002 or code == 1003 or
    (code >= 1007 and code <= 1011) or (code >= 3000 and code <= 4999)
end

-- Reads (discarding messages) until the peer's close frame or the end.
local function close_read(ws)
  while not ws.done do
    local d, err = WS.recv(ws)
    if d == nil and err ~= "timeout" then return end
  end
end

-- (suspends, about CLOSE_WAIT seconds at most) sends a close frame
-- (code 1000 by default), waits for the peer's, and closes the stream.
-- true; a second close is a no-op.
function WS.close(ws, code, reason)
  local fname = "ws:close"
  check_ws(fname, ws)
  if code ~= nil and (type(code) ~= "number" or code ~= floor(code) or not valid_code(code)) then
    argerror(fname, "code must be 1000-1003, 1007-1011 or 3000-4999, got " .. tostring(code))
  end
  if reason ~= nil then
    if type(reason) ~= "string" then argerror(fname, "reason must be a string, got " .. type(reason)) end
    if code == nil then argerror(fname, "a reason needs a code") end
    if #reason > 123 then argerror(fname, "reason is " .. #reason .. " bytes (at most 123)") end
    if c_utf8(reason, #reason) == 0 then argerror(fname, "reason is not valid UTF-8") end
  end
  if api_in_task() == 0 then no_task(fname, -1) end
  if ws.ended then return true end
  local c = ws.c
  local deadline = api_now() + CLOSE_WAIT
  if not ws.done and c.sclosed == 0 and not ws.werr then
    reason = reason or ""
    c_close(c, code or 1000, reason, #reason)
    timeout_at(deadline, flush, ws)
  end
  if not ws.done then
    local ok, err = pcall(timeout_at, deadline, close_read, ws)
    if not ok then
      -- another task reads (ws:recv, or a select's recv_op): it sees
      -- the peer's close frame and sets ev
      if not tostring(err):find("already reading", 1, true) then error(err, 0) end
      timeout_at(deadline, ws.ev.wait, ws.ev)
    end
  end
  if not ws.done then
    ws.ioerr = ws.ioerr or "no close reply"
    set_done(ws, ws.ioerr)
  end
  ws.ended = true
  ws.s:close()
  return true
end

function WS.is_closed(ws) return ws.done end
function WS.protocol(ws) return ws.proto or nil end
function WS.peer_addr(ws) return ws.s:peer_addr() end
function WS.local_addr(ws) return ws.s:local_addr() end
-- The stream's read and write time-outs (s:set_timeouts); returns ws.
function WS.set_timeouts(ws, t)
  check_ws("ws:set_timeouts", ws)
  ws.s:set_timeouts(t)
  return ws
end
function WS.__tostring(ws)
  return ("nexus.websocket(%s, %s)"):format(ws.what, ws.done and "closed" or "open")
end

---------------------------------------------------------------- options

local function check_opts(fname, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then argerror(fname, "options must be a table, got " .. type(opts), 2) end
  for k, v in pairs(opts) do
    local kind = allowed[k]
    if not kind then argerror(fname, "unknown option '" .. tostring(k) .. "'", 2) end
    if kind == "secs" then
      if v ~= false and (type(v) ~= "number" or v ~= v or v < 0) then
        argerror(fname, k .. " must be a non-negative number of seconds or false, got " .. tostring(v), 2)
      end
    elseif kind == "size" then
      if type(v) ~= "number" or v ~= floor(v) or v < 1 or v > MAXSIZE then
        argerror(fname, k .. " must be a positive integer, got " .. tostring(v), 2)
      end
    elseif kind == "list" then
      if type(v) ~= "table" then argerror(fname, k .. " must be a list of strings, got " .. type(v), 2) end
      for i, p in ipairs(v) do
        if type(p) ~= "string" or not p:match(TOKEN) then
          argerror(fname, k .. "[" .. i .. "] must be a token string, got " .. tostring(p), 2)
        end
      end
    elseif kind == "headers" then
      if type(v) ~= "table" then argerror(fname, k .. " must be a table, got " .. type(v), 2) end
      for name, val in pairs(v) do
        if type(name) ~= "string" or not name:match(TOKEN) then
          argerror(fname, "header name " .. tostring(name) .. " is not a token", 2)
        end
        if type(val) ~= "string" or val:find("[%z\1-\8\10-\31\127]") then
          argerror(fname, "header " .. name .. " must be a string without control characters", 2)
        end
      end
    elseif kind == "path" then
      if type(v) ~= "string" or v:sub(1, 1) ~= "/" then
        argerror(fname, k .. " must be a string starting with /, got " .. tostring(v), 2)
      end
    elseif kind == "table" then
      if type(v) ~= "table" then argerror(fname, k .. " must be a table, got " .. type(v), 2) end
    end
  end
  return opts
end

---------------------------------------------------------------- client

local RESERVED = { host = true, upgrade = true, connection = true, ["sec-websocket-key"] = true,
                   ["sec-websocket-version"] = true, ["sec-websocket-protocol"] = true,
                   ["sec-websocket-extensions"] = true }

-- scheme, host, port, path (with query), host header | nil, err
local function parse_url(url)
  local scheme, rest = url:match("^([wW][sS][sS]?)://(.*)$")
  if not scheme then return nil, "expected a ws:// or wss:// URL" end
  scheme = scheme:lower()
  local authority, path = rest:match("^([^/?#]*)(.*)$")
  path = path:gsub("#.*$", "")
  if path == "" then path = "/" elseif path:sub(1, 1) == "?" then path = "/" .. path end
  if path:find("[%z\1-\32\127]") then return nil, "the path has spaces or control characters" end
  if authority:find("@", 1, true) then return nil, "user info in the URL is not supported" end
  local host, port
  if authority:sub(1, 1) == "[" then
    host, port = authority:match("^%[([%x:.]+)%]:?(%d*)$")
  else
    host, port = authority:match("^([^:]+):?(%d*)$")
  end
  if not host or host == "" then return nil, "no host in the URL" end
  local dflt = scheme == "wss" and 443 or 80
  port = port ~= "" and tonumber(port) or dflt
  if port < 1 or port > 65535 then return nil, "port out of range" end
  local hosthdr = authority:sub(1, 1) == "[" and "[" .. host .. "]" or host
  if port ~= dflt then hosthdr = hosthdr .. ":" .. port end
  return scheme, host, port, path, hosthdr
end

local function client_handshake(s, hosthdr, path, opts, max)
  local key = gen_key()
  local t = { "GET ", path, " HTTP/1.1\r\nHost: ", hosthdr,
              "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ", key,
              "\r\nSec-WebSocket-Version: 13\r\n" }
  local protos = opts.protocols
  if protos and #protos > 0 then t[#t + 1] = "Sec-WebSocket-Protocol: " .. concat(protos, ", ") .. "\r\n" end
  if opts.headers then
    for name, val in pairs(opts.headers) do
      if not RESERVED[name:lower()] then t[#t + 1] = name .. ": " .. val .. "\r\n" end
    end
  end
  t[#t + 1] = "\r\n"
  local ok, err = s:write(concat(t))
  if not ok then return nil, err end
  local line, hdrs = read_head(s)
  if not line then return nil, "handshake: " .. tostring(hdrs) end
  local code = line:match("^HTTP/1%.1 (%d%d%d)")
  if not code then return nil, "handshake: malformed status line" end
  if code ~= "101" then return nil, "handshake: status " .. line:sub(10) end
  if not has_token(hdrs.upgrade, "websocket") then return nil, "handshake: no Upgrade: websocket" end
  if not has_token(hdrs.connection, "upgrade") then return nil, "handshake: no Connection: upgrade" end
  if hdrs["sec-websocket-accept"] ~= accept_key(key) then return nil, "handshake: wrong Sec-WebSocket-Accept" end
  if hdrs["sec-websocket-extensions"] then return nil, "handshake: an extension nobody asked for" end
  local proto = hdrs["sec-websocket-protocol"]
  if proto then
    local offered = false
    for _, p in ipairs(protos or {}) do if p == proto then offered = true end end
    if not offered then return nil, "handshake: a subprotocol nobody asked for" end
  end
  return new_ws(s, false, max, proto, "client " .. path)
end

local connect_opts = { headers = "headers", protocols = "list", timeout = "secs", max_message = "size",
                       tls = "table" }

-- (suspends) ws | nil, err. opts.timeout (default 5 s; false: none)
-- bounds the connection and the handshake together.
function M.connect(url, opts)
  local fname = "nexus.websocket.connect"
  if type(url) ~= "string" then argerror(fname, "url must be a string, got " .. type(url)) end
  opts = check_opts(fname, opts, connect_opts)
  local scheme, host, port, path, hosthdr = parse_url(url)
  if not scheme then argerror(fname, host .. " (" .. url .. ")") end
  if opts.tls and scheme ~= "wss" then argerror(fname, "tls options given for a ws:// URL") end
  if api_in_task() == 0 then no_task(fname, -1) end
  local max = opts.max_message or DEFAULT_MAX
  local box = {}
  local function run()
    local copts
    if scheme == "wss" then copts = { tls = opts.tls or {} } end
    local ok, s, err = pcall(tcp.connect, host, port, copts)
    if not ok then
      if copts and tostring(s):find("unknown option 'tls'", 1, true) then
        return nil, "wss: TLS streams are not available in this build"
      end
      error(s, 0)
    end
    if not s then return nil, err end
    box.s = s
    return client_handshake(s, hosthdr, path, opts, max)
  end
  local secs = opts.timeout
  if secs == nil then secs = DEFAULT_TIMEOUT end
  local ws, err
  if secs and secs ~= huge then
    local ok
    ok, ws, err = timeout(secs, run)
    if not ok then ws, err = nil, ws end
  else
    ws, err = run()
  end
  if not ws and box.s then box.s:close() end
  return ws, err
end

---------------------------------------------------------------- server

local REASONS = { [400] = "Bad Request", [404] = "Not Found", [405] = "Method Not Allowed",
                  [426] = "Upgrade Required", [431] = "Request Header Fields Too Large" }

local function reject(s, status, msg, extra)
  local body = msg .. "\n"
  s:write(("HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: text/plain\r\n%sContent-Length: %d\r\n\r\n%s")
    :format(status, REASONS[status], extra or "", #body, body))
  return nil, msg
end

local KEY_PAT = "^" .. ("[%w+/]"):rep(22) .. "==$"

local function server_handshake(wl, s, peer)
  local line, hdrs = read_head(s)
  if not line then
    if hdrs == "header too large" or hdrs == "too many headers" then return reject(s, 431, hdrs) end
    if hdrs:find("^malformed") then return reject(s, 400, hdrs) end
    return nil, hdrs                               -- eof, closed: nobody to answer
  end
  local method, target = line:match("^(%u+) (%S+) HTTP/1%.1$")
  if not method then return reject(s, 400, "malformed request line") end
  if method ~= "GET" then return reject(s, 405, "method not allowed", "Allow: GET\r\n") end
  if target:sub(1, 1) ~= "/" then return reject(s, 400, "bad request target") end
  local path, query = target:match("^([^?]*)%??(.*)$")
  if wl.path and path ~= wl.path then return reject(s, 404, "not found") end
  return M._upgrade(s, peer, path, query, target, hdrs, wl.protocols, wl.max)
end

-- The server's side of the handshake once the request line is checked (a
-- GET for the right path), for wl:accept and req:websocket() of
-- nexus.http.listen: ws, req | nil, err (the 4xx answer written).
function M._upgrade(s, peer, path, query, target, hdrs, protocols, max)
  if not hdrs.host then return reject(s, 400, "no Host header") end
  if not has_token(hdrs.upgrade, "websocket") then
    return reject(s, 426, "expected Upgrade: websocket", "Upgrade: websocket\r\n")
  end
  if not has_token(hdrs.connection, "upgrade") then return reject(s, 400, "expected Connection: upgrade") end
  if hdrs["sec-websocket-version"] ~= "13" then
    return reject(s, 426, "unsupported WebSocket version", "Sec-WebSocket-Version: 13\r\n")
  end
  local key = hdrs["sec-websocket-key"]
  if not key or not key:match(KEY_PAT) then return reject(s, 400, "bad Sec-WebSocket-Key") end
  local proto
  local offered = tokens(hdrs["sec-websocket-protocol"])
  for _, p in ipairs(protocols) do
    for _, o in ipairs(offered) do
      if o == p then proto = p break end
    end
    if proto then break end
  end
  local ok, err = s:write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    .. "Sec-WebSocket-Accept: " .. accept_key(key) .. "\r\n"
    .. (proto and "Sec-WebSocket-Protocol: " .. proto .. "\r\n" or "") .. "\r\n")
  if not ok then return nil, err end
  local ws = new_ws(s, true, max, proto, "server " .. tostring(peer))
  return ws, { path = path, query = query, target = target, headers = hdrs, protocol = proto, peer = peer }
end

local listen_opts = { path = "path", max_message = "size", protocols = "list", handshake_timeout = "secs",
                      backlog = "size", tls = "table" }

-- wl | nil, err. opts.path: the one path served (others get 404; nil:
-- any); handshake_timeout (default 5 s) bounds each client's handshake.
function M.listen(host, port, opts)
  local fname = "nexus.websocket.listen"
  opts = check_opts(fname, opts, listen_opts)
  if api_in_task() == 0 then no_task(fname, -1) end
  local lopts = { backlog = opts.backlog }
  if opts.tls then lopts.tls = opts.tls end
  local ln, err = tcp.listen(host, port, lopts)
  if not ln then return nil, err end
  local hs = opts.handshake_timeout
  if hs == nil then hs = DEFAULT_TIMEOUT end
  local tx, rx = channel.new(HS_LIMIT + 1)
  return setmetatable({ ln = ln, path = opts.path or false, max = opts.max_message or DEFAULT_MAX,
                        protocols = opts.protocols or {}, hs = hs or false,
                        tx = tx, rx = rx, busy = 0, pending = {}, closed = false }, WL)
end

local function check_wl(fname, wl)
  if getmetatable(wl) ~= WL then argerror(fname, "expected a websocket listener, got " .. type(wl), 2) end
end

-- Handshakes run concurrently, each in a task of its own, so a slow or
-- silent client delays nobody: wl:accept takes connections while fewer
-- than HS_LIMIT are handshaking or waiting to be taken, and completed
-- ones queue for it in the order they completed.

local function handshake(wl, s, peer)
  local ws, req
  if wl.hs and wl.hs ~= huge then
    local ok
    ok, ws, req = timeout(wl.hs, server_handshake, wl, s, peer)
    if not ok then ws = nil end
  else
    ws, req = server_handshake(wl, s, peer)
  end
  wl.pending[s] = nil
  if not ws then
    s:close()
    wl.busy = wl.busy - 1
    return
  end
  if not wl.tx:send({ ws, req }) then              -- the listener closed meanwhile
    wl.busy = wl.busy - 1
    s:close()
  end
end

-- (suspends) ws, req | nil, err. A connection whose handshake fails (a
-- bad request gets its 4xx answer) or times out is closed, and the next
-- one is taken. Accepting happens here, inside wl:accept (no task runs
-- for a listener nobody accepts on), in a select with the queue of
-- completed handshakes.
function WL.accept(wl)
  check_wl("wl:accept", wl)
  if wl.closed then return nil, "closed" end
  local rx = wl.rx
  while true do
    local item, err = rx:try_recv()
    if not item and err ~= "closed" then
      if wl.busy >= HS_LIMIT then
        item, err = rx:recv()
      else
        local i, a, b = sel_select(wl.ln:accept_op(), rx:recv_op())
        if i == 1 then
          if a then                                -- a connection: its handshake runs on its own
            wl.busy = wl.busy + 1
            wl.pending[a] = spawn(handshake, wl, a, b)
            err = false
          else
            return nil, b
          end
        else
          item, err = a, b
        end
      end
    end
    if item then
      wl.busy = wl.busy - 1
      return item[1], item[2]
    elseif err == "closed" then
      return nil, "closed"
    end
  end
end

function WL.local_addr(wl)
  check_wl("wl:local_addr", wl)
  return wl.ln:local_addr()
end

-- Closes the listener; handshakes under way are abandoned (their
-- connections closed), and WebSockets accepted but not taken are closed.
function WL.close(wl)
  check_wl("wl:close", wl)
  if wl.closed then return wl.ln:close() end
  wl.closed = true
  local ok, err = wl.ln:close()
  for s, h in pairs(wl.pending) do
    h:abort()
    s:close()
  end
  wl.pending = {}
  wl.tx:close()
  while true do
    local item = wl.rx:try_recv()
    if not item then break end
    if item[1] then item[1].s:close() end
  end
  return ok, err
end

function WL.__tostring(wl)
  return "nexus.websocket.listener(" .. tostring((wl.ln:local_addr())) .. ")"
end

-- For req:websocket() of nexus.http.listen.
M._check_opts = check_opts
M._DEFAULT_MAX = DEFAULT_MAX

return M

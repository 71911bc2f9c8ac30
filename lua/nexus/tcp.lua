-- nexus.tcp: listeners and streams. The C side (src/tcp.c) owns the read
-- buffer and the write queue; each method here calls its C entry point,
-- and yields only when that registered a wait (it returned false), then
-- calls again. A second value true with that false says C found this
-- coroutine cannot yield: util.check_yieldable then raises (and releases
-- the wait), as it does while a World is borrowed. See docs/net.md.
--
-- Stream time-outs (s:set_timeouts, the read_timeout/write_timeout
-- options) live in weak tables here, looked up only once a call must wait:
-- the call then waits under a deadline level of the task (the mechanism of
-- nexus.timeout, src/rt.c), which cancels the wait when it fires.
local ffi = require "ffi"
local core = require "nexus.core"
local api = require "nexus.api"
local util = require "nexus.util"
local time = require "nexus.time"
local dns = require "nexus.dns"
local sel = require "nexus.select"

local type, tostring, tonumber, pairs, floor, getmetatable = type, tostring, tonumber, pairs, math.floor, getmetatable
local setmetatable, pcall, error, huge = setmetatable, pcall, error, math.huge
local sel_op, sel_class = sel.op, sel.class
local ffi_string = ffi.string
local yield = coroutine.yield
local c_read, c_read_exactly, c_read_until = core.tcp_read, core.tcp_read_exactly, core.tcp_read_until
local c_fill = core.tcp_fill
local c_write, c_write_wait = core.tcp_write, core.tcp_write_wait
local c_connect, c_connected = core.tcp_connect, core.tcp_connected
local c_listen, c_accept = core.tcp_listen, core.tcp_accept
local c_is_ip, c_peek = core.net_is_ip, core.tcp_peek
local c_tls_ctx_new, c_tls_attach, c_tls_wait, c_tls_info = core.tls_ctx_new, core.tls_attach, core.tls_wait, core.tls_info
local no_task, check_yieldable, argerror = util.no_task, util.check_yieldable, util.argerror
local api_in_task, api_now = api.in_task, api.now
local api_dl_push, api_dl_state, api_dl_pop, api_cancel_wait = api.dl_push, api.dl_state, api.dl_pop, api.cancel_wait
local timeout = time.timeout

ffi.cdef [[
typedef struct nx_tcp_api {
  const char *(*read)(void *ud, size_t max, size_t *n);
  int (*write)(void *ud, const char *p, size_t len);
} nx_tcp_api;
]]
-- The fast path of read and write (src/tcp.c): direct FFI calls when data
-- is buffered or the socket takes it; the classic entry points otherwise.
local fast = ffi.cast("const nx_tcp_api *", core.tcp_api)
local fast_read, fast_write = fast.read, fast.write
local nread = ffi.new("size_t[1]")
local SMT = core.tcp_stream_mt
local LMT = core.tcp_listener_mt
local MAXREAD = 2 ^ 52

local M = {}
local S = core.tcp_stream_methods
local write_after_handshake

-- data | nil, err | nil, err, partial: no trailing nils on success.
local function framed(a, b, c)
  if a then return a end
  if c then return nil, b, c end
  return nil, b
end
local L = core.tcp_listener_methods

---------------------------------------------------------------- time-outs

-- Seconds, per stream (and per listener, for the streams it accepts);
-- absent: no time-out. Weak keys: an entry goes with its handle.
local read_tmo = setmetatable({}, { __mode = "k" })
local write_tmo = setmetatable({}, { __mode = "k" })
local listener_tmo = setmetatable({}, { __mode = "k" })   -- ln -> { read, write }

local DL_PENDING, DL_CANCELLED = 0, 2
local TIMEOUT = {}   -- what timed_wait returns when the deadline passed

-- The waits of one timed call, the first already registered (the call
-- returned false): yield, then ask again, until the call completes or the
-- deadline level lvl has passed.
local function timed_loop(lvl, fname, call, s, x, y, z, w)
  while true do
    yield()
    -- cancelled: the deadline fired while this waited; C released the wait
    if api_dl_state(lvl) == DL_CANCELLED then return TIMEOUT end
    local a, b, c = call(s, x, y, z, w)
    if a ~= false then return a, b, c end
    -- the deadline passed after the previous wait had completed (woken,
    -- but another task took the data before this one ran): release the
    -- wait just registered
    if api_dl_state(lvl) ~= DL_PENDING then
      api_cancel_wait()
      return TIMEOUT
    end
    if b or util.borrowing then check_yieldable(fname) end
  end
end

-- call(s, x, y, z, w) returned false, b (a wait registered): waits for it
-- at most secs from now under a deadline level of the task. Returns the
-- call's results, or TIMEOUT. The level is popped on every way out: an
-- error inside is re-raised after the pop (pcall: yielding across it is
-- fine in LuaJIT); an abort, or an enclosing nexus.timeout that fires,
-- never resumes this and pops the level with its own.
local function timed_wait(fname, secs, b, call, s, x, y, z, w)
  if b or util.borrowing then check_yieldable(fname) end   -- before the push
  local lvl = api_dl_push(api_now() + secs)
  if lvl < 0 then
    api_cancel_wait()
    no_task(fname, lvl)                  -- -2: out of memory; raises
  end
  local ok, a, b2, c = pcall(timed_loop, lvl, fname, call, s, x, y, z, w)
  api_dl_pop(lvl)
  if not ok then error(a, 0) end
  return a, b2, c
end

-- A time-out given by the user: seconds >= 0; false or math.huge: none
-- (nil here). what names it in the error message.
local function timeout_value(fname, what, v, level)
  if v == false or v == huge then return nil end
  if type(v) ~= "number" then
    argerror(fname, what .. " must be a number of seconds or false, got " .. type(v), level + 1)
  end
  if v ~= v or v < 0 then
    argerror(fname, what .. " must be a non-negative number of seconds, got "
             .. (v ~= v and "NaN" or tostring(v)), level + 1)
  end
  return v
end

-- s:set_timeouts{ read = secs, write = secs }: a missing key leaves that
-- time-out as it is; false or math.huge turns it off. Returns s.
function S.set_timeouts(s, t)
  local fname = "stream:set_timeouts"
  if getmetatable(s) ~= SMT then argerror(fname, "expected a tcp stream, got " .. type(s)) end
  if type(t) ~= "table" then
    argerror(fname, "expected a table { read = secs, write = secs }, got " .. type(t))
  end
  for k in pairs(t) do
    if k ~= "read" and k ~= "write" then
      argerror(fname, "unknown key '" .. tostring(k) .. "' (expected read or write)")
    end
  end
  local r, w = t.read, t.write
  if r ~= nil then r = timeout_value(fname, "read", r, 1) end
  if w ~= nil then w = timeout_value(fname, "write", w, 1) end
  if t.read ~= nil then read_tmo[s] = r end
  if t.write ~= nil then write_tmo[s] = w end
  return s
end

-- Internal (nexus.http.listen): the read time-out of the next reads, in
-- seconds (nil: none), without a table per call.
function S._read_timeout(s, secs)
  read_tmo[s] = secs
end

-- s:timeouts(): the read and write time-outs in seconds, nil when off.
function S.timeouts(s)
  if getmetatable(s) ~= SMT then argerror("stream:timeouts", "expected a tcp stream, got " .. type(s)) end
  return read_tmo[s], write_tmo[s]
end

---------------------------------------------------------------- streams

-- (suspends) a string of 1..max bytes (all that is buffered when max is
-- nil) | nil, "eof" | nil, err
function S.read(s, max)
  if getmetatable(s) == SMT and (max == nil or (type(max) == "number" and max >= 1
     and max <= MAXREAD and max == floor(max))) then
    local p = fast_read(s, max or 0, nread)
    if p ~= nil then return ffi_string(p, nread[0]) end
  end
  local a, b = c_read(s, max)
  if a == false then
    local secs = read_tmo[s]
    if secs then
      a, b = timed_wait("stream:read", secs, b, c_read, s, max)
      if a == TIMEOUT then return nil, "timeout" end
    end
  end
  while a == false do
    if b or util.borrowing then check_yieldable("stream:read") end
    yield()
    -- woken with data, usually (s and max passed c_read's checks)
    local p = fast_read(s, max or 0, nread)
    if p ~= nil then return ffi_string(p, nread[0]) end
    a, b = c_read(s, max)
  end
  if a then return a end
  return nil, b
end

-- (suspends) true once more than have bytes are buffered | nil, err
-- ("timeout" after the stream's read time-out). Internal: for a parser
-- that works on the buffer in place (nexus.http.listen, src/httpd.c).
function S._fill(s, have)
  local a, b = c_fill(s, have)
  if a == false then
    local secs = read_tmo[s]
    if secs then
      a, b = timed_wait("stream:fill", secs, b, c_fill, s, have)
      if a == TIMEOUT then return nil, "timeout" end
    end
  end
  while a == false do
    if b or util.borrowing then check_yieldable("stream:fill") end
    yield()
    a, b = c_fill(s, have)
  end
  if a then return true end
  return nil, b
end

-- (suspends) n bytes | nil, err, partial
function S.read_exactly(s, n)
  local a, b, c = c_read_exactly(s, n)
  if a == false then
    local secs = read_tmo[s]
    if secs then
      a, b, c = timed_wait("stream:read_exactly", secs, b, c_read_exactly, s, n)
      if a == TIMEOUT then return nil, "timeout", c_peek(s) end
    end
  end
  while a == false do
    if b or util.borrowing then check_yieldable("stream:read_exactly") end
    yield()
    a, b, c = c_read_exactly(s, n)
  end
  return framed(a, b, c)
end

-- (suspends) the bytes before delim (delim consumed, not returned) |
-- nil, err, partial | nil, "too long" when max bytes hold no delim
function S.read_until(s, delim, max)
  local a, b, c = c_read_until(s, delim, max, "stream:read_until", false)
  if a == false then
    local secs = read_tmo[s]
    if secs then
      a, b, c = timed_wait("stream:read_until", secs, b, c_read_until, s, delim, max, "stream:read_until", false)
      if a == TIMEOUT then return nil, "timeout", c_peek(s) end
    end
  end
  while a == false do
    if b or util.borrowing then check_yieldable("stream:read_until") end
    yield()
    a, b, c = c_read_until(s, delim, max, "stream:read_until", false)
  end
  return framed(a, b, c)
end

-- (suspends) a line without "\n" or "\r\n" | nil, err, partial
function S.read_line(s, max)
  local a, b, c = c_read_until(s, "\n", max, "stream:read_line", true)
  if a == false then
    local secs = read_tmo[s]
    if secs then
      a, b, c = timed_wait("stream:read_line", secs, b, c_read_until, s, "\n", max, "stream:read_line", true)
      if a == TIMEOUT then return nil, "timeout", c_peek(s) end
    end
  end
  while a == false do
    if b or util.borrowing then check_yieldable("stream:read_line") end
    yield()
    a, b, c = c_read_until(s, "\n", max, "stream:read_line", true)
  end
  return framed(a, b, c)
end

-- A write to an accepted TLS stream whose handshake has not run yet
-- (it runs on the first read or write): C registered a wait for the
-- handshake's end; then the write is tried again, and waits for the queue
-- as any write. st[1]: the data is not written yet.
local function write_step(s, data, st)
  if st[1] then
    local a, b, again = c_write(s, data)
    if not again then st[1] = false end
    return a, b
  end
  return c_write_wait(s)
end

function write_after_handshake(s, data, a, b)
  local st = { true }
  local secs = write_tmo[s]
  if secs then
    a, b = timed_wait("stream:write", secs, b, write_step, s, data, st)
    if a == TIMEOUT then return nil, "timeout" end
  end
  while a == false do
    if b or util.borrowing then check_yieldable("stream:write") end
    yield()
    a, b = write_step(s, data, st)
  end
  if a then return a end
  return nil, b
end

-- (suspends while more than write_high_water bytes are queued)
-- true | nil, err
function S.write(s, data)
  local a, b
  if getmetatable(s) == SMT and type(data) == "string" then
    local rc = fast_write(s, data, #data)
    if rc == 0 then return true end
    if rc == 1 then                        -- queued above the mark: wait
      check_yieldable("stream:write")
      a = false
    end
  end
  local again
  if a == nil then a, b, again = c_write(s, data) end
  if again then return write_after_handshake(s, data, a, b) end
  if a == false then
    local secs = write_tmo[s]
    if secs then
      a, b = timed_wait("stream:write", secs, b, c_write_wait, s)
      if a == TIMEOUT then return nil, "timeout" end
    end
  end
  while a == false do
    if b or util.borrowing then check_yieldable("stream:write") end
    yield()
    a, b = c_write_wait(s)
  end
  if a then return a end
  return nil, b
end

-- Iterates over lines until eof or an error: for line in s:lines() do ... end
-- Each call returns what read_line does (line | nil, err, partial), so an
-- iterator called by hand tells eof from "timeout".
function S.lines(s, max)
  return function()
    return S.read_line(s, max)
  end
end

---------------------------------------------------------------- select ops

-- Ops for nexus.select (lua/nexus/select.lua). poll runs with the op's
-- proxy as the current task, so the C entry points above register the
-- proxy as the stream's reader (the listener's acceptor) when they must
-- wait, exactly as they do a task: a second reader meanwhile raises
-- "another task is already reading", close() wakes the op to give
-- nil, "closed", and the proxy's cancel callback (the select ended,
-- losing or winning, or the task was aborted or timed out) unlinks it.
-- A read consumes bytes only when it completes, and completing is
-- winning, so a losing read consumes nothing. Stream time-outs do not
-- apply: a select's time-out is its own sleep_op/deadline_op.
-- poll must not raise: the C calls, which raise on faults, are pcalled
-- (the FFI fast path of read_op first, which never raises).

-- The C fault "stream:read: msg" names the op's function instead.
local function op_fault(fname, msg)
  msg = tostring(msg)
  return nil, fname .. ": " .. (msg:match("^[%w_]+:[%w_]+: (.*)$") or msg)
end

local function check_stream(fname, s)
  if getmetatable(s) ~= SMT then argerror(fname, "expected a tcp stream, got " .. type(s), 2) end
end

-- A byte count: nil (dflt) or an integer in lo..2^52.
local function check_count(fname, what, v, lo)
  if v == nil then return end
  if type(v) ~= "number" or v ~= v or v ~= floor(v) or v < lo or v > MAXREAD then
    local got = type(v) == "number" and tostring(v) or type(v)
    argerror(fname, what .. " must be " .. (lo == 0 and "a non-negative" or "a positive")
             .. " integer, got " .. got, 2)
  end
end

-- Results are kept in fields made at creation (false: none), so a poll
-- and a take allocate nothing beyond the result string.
local ReadOp = sel_class("tcp read")
function ReadOp.poll(op)
  local s = op.s
  local p = fast_read(s, op.fmax, nread)
  if p ~= nil then
    op.a = ffi_string(p, nread[0])
    return true
  end
  local ok, a, b = pcall(c_read, s, op.max)
  if not ok then return op_fault("stream:read_op", a) end
  if a == false then return false end
  op.a, op.b = a or false, b or false
  return true
end
function ReadOp.take(op)
  local a, b = op.a, op.b
  op.a, op.b = false, false
  if a then return a end
  return nil, b
end

-- An op for nexus.select: as s:read(max) (data | nil, err), without the
-- stream's read time-out; a losing read consumes nothing.
function S.read_op(s, max)
  check_stream("stream:read_op", s)
  check_count("stream:read_op", "max", max, 1)
  return sel_op(ReadOp, { s = s, max = max, fmax = max or 0, a = false, b = false },
                "stream:read_op")
end

-- read_exactly, read_until and read_line: data | nil, err, partial
local function framed_take(op)
  local a, b, c = op.a, op.b, op.c
  op.a, op.b, op.c = false, false, false
  if a then return a end
  if c then return nil, b, c end
  return nil, b
end

local ExactOp = sel_class("tcp read_exactly")
function ExactOp.poll(op)
  local ok, a, b, c = pcall(c_read_exactly, op.s, op.n)
  if not ok then return op_fault("stream:read_exactly_op", a) end
  if a == false then return false end
  op.a, op.b, op.c = a or false, b or false, c or false
  return true
end
ExactOp.take = framed_take

-- An op for nexus.select: as s:read_exactly(n) (n bytes | nil, err,
-- partial), without the stream's read time-out; a losing read consumes
-- nothing.
function S.read_exactly_op(s, n)
  check_stream("stream:read_exactly_op", s)
  if n == nil then argerror("stream:read_exactly_op", "n must be an integer, got nil") end
  check_count("stream:read_exactly_op", "n", n, 0)
  return sel_op(ExactOp, { s = s, n = n, a = false, b = false, c = false }, "stream:read_exactly_op")
end

local UntilOp = sel_class("tcp read_until")
function UntilOp.poll(op)
  local ok, a, b, c = pcall(c_read_until, op.s, op.delim, op.max, op.fname, op.cr)
  if not ok then return op_fault(op.fname, a) end
  if a == false then return false end
  op.a, op.b, op.c = a or false, b or false, c or false
  return true
end
UntilOp.take = framed_take

local LineOp = sel_class("tcp read_line")
LineOp.poll = UntilOp.poll
LineOp.take = framed_take

local function until_op(cls, fname, s, delim, max, cr)
  return sel_op(cls, { s = s, delim = delim, max = max, fname = fname, cr = cr,
                       a = false, b = false, c = false }, fname)
end

-- An op for nexus.select: as s:read_until(delim, max), without the
-- stream's read time-out; a losing read consumes nothing.
function S.read_until_op(s, delim, max)
  local fname = "stream:read_until_op"
  check_stream(fname, s)
  if type(delim) ~= "string" then argerror(fname, "delimiter must be a string, got " .. type(delim)) end
  if delim == "" then argerror(fname, "empty delimiter") end
  check_count(fname, "max", max, 1)
  return until_op(UntilOp, fname, s, delim, max, false)
end

-- An op for nexus.select: as s:read_line(max), without the stream's read
-- time-out; a losing read consumes nothing.
function S.read_line_op(s, max)
  local fname = "stream:read_line_op"
  check_stream(fname, s)
  check_count(fname, "max", max, 1)
  return until_op(LineOp, fname, s, "\n", max, true)
end

---------------------------------------------------------------- options

local function check_port(fname, port, lo)
  local p = tonumber(port)
  if type(port) ~= "number" and type(port) ~= "string" or not p
     or p ~= floor(p) or p < lo or p > 65535 then
    argerror(fname, ("port must be an integer in %d..65535, got %s"):format(lo, tostring(port)), 2)
  end
  return p
end

local function check_host(fname, host)
  if type(host) ~= "string" then argerror(fname, "host must be a string, got " .. type(host), 2) end
  if host == "" then argerror(fname, "empty host", 2) end
end

local kinds = {
  backlog = "count", read_high_water = "count", write_high_water = "count",
  reuseport = "boolean", nodelay = "boolean", timeout = "secs",
  read_timeout = "timeout", write_timeout = "timeout", tls = "tls",
}

-- Checks opts against the allowed keys; returns opts or an empty table.
local function check_opts(fname, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then argerror(fname, "options must be a table, got " .. type(opts), 2) end
  for k, v in pairs(opts) do
    if not allowed[k] then argerror(fname, "unknown option '" .. tostring(k) .. "'", 2) end
    local kind = kinds[k]
    if kind == "tls" then                  -- check_tls
    elseif kind == "boolean" then
      if type(v) ~= "boolean" then argerror(fname, k .. " must be a boolean, got " .. type(v), 2) end
    elseif kind == "timeout" then          -- seconds, or false: none
      if v ~= false and (type(v) ~= "number" or v ~= v) then
        argerror(fname, k .. " must be a number or false, got " .. (v ~= v and "NaN" or type(v)), 2)
      elseif v ~= false and v < 0 then
        argerror(fname, "negative " .. k .. " (" .. tostring(v) .. ")", 2)
      end
    elseif kind == "secs" then
      if type(v) ~= "number" or v ~= v then
        argerror(fname, k .. " must be a number, got " .. (v ~= v and "NaN" or type(v)), 2)
      elseif v < 0 then
        argerror(fname, "negative " .. k .. " (" .. tostring(v) .. ")", 2)
      end
    elseif type(v) ~= "number" or v ~= floor(v) or v < 1 then
      argerror(fname, k .. " must be a positive integer, got " .. tostring(v), 2)
    end
  end
  return opts
end

---------------------------------------------------------------- TLS

-- The tls options (docs/tls.md). Each side's keys and their kinds.
local tls_client_keys = {
  server_name = "name", verify = "boolean", ca_file = "path", ca_path = "path",
  cert_file = "path", key_file = "path", alpn = "alpn", min_version = "version",
}
local tls_server_keys = {
  cert_file = "path", key_file = "path", alpn = "alpn", verify_client = "boolean",
  ca_file = "path", ca_path = "path", min_version = "version",
}
local tls_handshake_keys = { server = "boolean", timeout = "secs" }
for k, v in pairs(tls_client_keys) do tls_handshake_keys[k] = v end
for k, v in pairs(tls_server_keys) do tls_handshake_keys[k] = v end

-- One SSL_CTX per distinct option set, shared by the connections made
-- with it; weak values: an unused context goes at the next collection.
local ctx_cache = setmetatable({}, { __mode = "v" })

local function tls_bad(fname, what, level)
  argerror(fname, "tls." .. what, level + 1)
end

-- Checks t (the tls option table, or true for a client's defaults);
-- returns the SSL_CTX handle | nil, "tls: ..." (a file that cannot be
-- loaded), and the checked server_name.
local function tls_context(fname, t, server, level)
  level = (level or 1) + 1
  if t == true and not server then t = {} end
  if type(t) ~= "table" then
    argerror(fname, "tls must be a table" .. (server and "" or " or true") .. ", got " .. type(t), level)
  end
  local keys = server == "handshake" and tls_handshake_keys or server and tls_server_keys or tls_client_keys
  for k, v in pairs(t) do
    local kind = keys[k]
    if not kind then
      tls_bad(fname, "'" .. tostring(k) .. "' is not a" .. (server and " server" or "") .. " tls option", level)
    end
    if kind == "boolean" then
      if type(v) ~= "boolean" then tls_bad(fname, k .. " must be a boolean, got " .. type(v), level) end
    elseif kind == "path" or kind == "name" then
      if type(v) ~= "string" then tls_bad(fname, k .. " must be a string, got " .. type(v), level) end
      if v == "" or v:find("\0", 1, true) then
        tls_bad(fname, k .. " must be a non-empty string without NUL bytes", level)
      end
    elseif kind == "version" then
      if v ~= "1.2" and v ~= "1.3" then
        tls_bad(fname, "min_version must be \"1.2\" or \"1.3\", got " .. (type(v) == "string" and
                ("\"" .. v .. "\"") or type(v)), level)
      end
    elseif kind == "secs" then
      if type(v) ~= "number" or v ~= v or v < 0 then
        tls_bad(fname, k .. " must be a non-negative number of seconds, got " .. tostring(v), level)
      end
    elseif kind == "alpn" then
      if type(v) ~= "table" then tls_bad(fname, "alpn must be a list of strings, got " .. type(v), level) end
      local n = 0
      for _ in pairs(v) do n = n + 1 end
      if n == 0 or n ~= #v then tls_bad(fname, "alpn must be a non-empty list of strings", level) end
      for i = 1, n do
        local p = v[i]
        if type(p) ~= "string" then tls_bad(fname, "alpn[" .. i .. "] must be a string, got " .. type(p), level) end
        if #p == 0 or #p > 255 then tls_bad(fname, "alpn[" .. i .. "] must be 1..255 bytes long", level) end
      end
    end
  end
  local is_server = server == true or (server == "handshake" and t.server == true)
  if is_server then
    if not t.cert_file or not t.key_file then
      tls_bad(fname, "cert_file and key_file are required on the server side", level)
    end
    if t.server_name ~= nil or t.verify ~= nil then
      tls_bad(fname, (t.server_name ~= nil and "server_name" or "verify") .. " is a client option", level)
    end
  else
    if (t.cert_file == nil) ~= (t.key_file == nil) then
      tls_bad(fname, "cert_file and key_file go together", level)
    end
    if t.verify_client ~= nil then tls_bad(fname, "verify_client is a server option", level) end
  end
  local verify = t.verify ~= false
  local alpn = nil
  if t.alpn then
    local parts = {}
    for i = 1, #t.alpn do parts[i] = string.char(#t.alpn[i]) .. t.alpn[i] end
    alpn = table.concat(parts)
  end
  local minv = t.min_version == "1.3" and 13 or 12
  local key = table.concat({ is_server and "S" or "C", tostring(verify), t.ca_file or "", t.ca_path or "",
                             t.cert_file or "", t.key_file or "", alpn or "", minv,
                             tostring(t.verify_client == true) }, "\0")
  local ctx = ctx_cache[key]
  if not ctx then
    local err
    ctx, err = c_tls_ctx_new(is_server, verify, t.ca_file, t.ca_path, t.cert_file, t.key_file,
                             alpn, minv, t.verify_client == true)
    if not ctx then return nil, err end
    ctx_cache[key] = ctx
  end
  return ctx, t.server_name
end

local tls_streams = setmetatable({}, { __mode = "k" })   -- stream -> true: TLS attached

-- Waits for the handshake of s's TLS connection: true | nil, "tls: ...".
local function tls_wait(s, fname)
  local a, b = c_tls_wait(s, fname)
  while a == false do
    if b or util.borrowing then check_yieldable(fname) end
    yield()
    a, b = c_tls_wait(s, fname)
  end
  if a then return true end
  return nil, b
end

-- TLS under s (connected, plain) with ctx, then the handshake.
local function tls_start(s, ctx, name, fname)
  local ok, err = c_tls_attach(s, ctx, name, fname)
  if not ok then return nil, err end
  tls_streams[s] = true
  return tls_wait(s, fname)
end

-- (suspends) true | nil, "tls: ..." | nil, "timeout". Upgrades a plain
-- connected stream (STARTTLS): opts are connect's tls options (the client
-- side, the default) or, with server = true, listen's; timeout bounds
-- the handshake (a time-out or an abort closes the stream). On an
-- accepted TLS stream, with no options: waits for its handshake (which
-- otherwise runs on its first read or write).
function S.tls_handshake(s, opts)
  local fname = "stream:tls_handshake"
  check_stream(fname, s)
  if api_in_task() == 0 then no_task(fname, -1) end
  if tls_streams[s] then
    if opts ~= nil then argerror(fname, "the stream is already TLS") end
    return tls_wait(s, fname)
  end
  if opts == nil then opts = {} end
  local ctx, name = tls_context(fname, opts, "handshake")
  if not ctx then return nil, name end
  if name == nil and not opts.server then
    local _, ip = s:peer_addr()
    name = ip
  end
  if opts.timeout then
    local ok, r, err = timeout(opts.timeout, tls_start, s, ctx, name, fname)
    if not ok then return nil, r end
    return r, err
  end
  return tls_start(s, ctx, name, fname)
end

-- { version, cipher, alpn, server_name, peer = { subject, issuer,
-- not_after, verified } } | nil for a plain stream.
function S.tls_info(s)
  check_stream("stream:tls_info", s)
  return c_tls_info(s)
end

---------------------------------------------------------------- connect

local function connect_ip(ip, port, nodelay, rh, wh)
  local s, a, b = c_connect(ip, port, nodelay, rh, wh)
  if a ~= false then return s, a end      -- nil, err
  while a == false do
    if b or util.borrowing then check_yieldable("nexus.tcp.connect") end
    yield()
    a, b = c_connected(s)
  end
  if a then return s end
  return nil, b
end

-- Tries each address of host in turn; the last error if none answers.
local function connect_any(host, port, nodelay, rh, wh)
  local addrs, err
  if c_is_ip(host) then
    addrs = { host }
  else
    addrs, err = dns.resolve(host)
    if not addrs then return nil, err end
    if #addrs == 0 then return nil, "no address for name" end
  end
  for i = 1, #addrs do
    local s
    s, err = connect_ip(addrs[i], port, nodelay, rh, wh)
    if s then return s end
  end
  return nil, err
end

local connect_opts = { timeout = true, nodelay = true, read_high_water = true, write_high_water = true,
                       read_timeout = true, write_timeout = true, tls = true }

-- connect_any, then the TLS handshake when ctx.
local function connect_full(host, port, nodelay, rh, wh, ctx, name)
  local s, err = connect_any(host, port, nodelay, rh, wh)
  if not s or not ctx then return s, err end
  local ok
  ok, err = tls_start(s, ctx, name, "nexus.tcp.connect")
  if not ok then
    s:close()
    return nil, err
  end
  return s
end

-- The read_timeout/write_timeout options (checked) of a new stream.
local function opt_timeouts(s, r, w)
  if r == huge then r = nil end
  if w == huge then w = nil end
  read_tmo[s] = r or nil
  write_tmo[s] = w or nil
  return s
end

-- (suspends) stream | nil, err. Names are resolved (nexus.dns.resolve);
-- opts.timeout bounds the whole of it (resolution included).
function M.connect(host, port, opts)
  local fname = "nexus.tcp.connect"
  check_host(fname, host)
  port = check_port(fname, port, 1)
  opts = check_opts(fname, opts, connect_opts)
  local ctx, name
  if opts.tls ~= nil and opts.tls ~= false then
    ctx, name = tls_context(fname, opts.tls, false)
    if not ctx then return nil, name end
    name = name or host
  end
  if api_in_task() == 0 then no_task(fname, -1) end
  local nodelay = opts.nodelay ~= false
  local rh, wh = opts.read_high_water, opts.write_high_water
  local s, err
  if opts.timeout then
    local ok
    ok, s, err = timeout(opts.timeout, connect_full, host, port, nodelay, rh, wh, ctx, name)
    if not ok then return nil, s end
  else
    s, err = connect_full(host, port, nodelay, rh, wh, ctx, name)
  end
  if not s then return nil, err end
  local r, w = opts.read_timeout, opts.write_timeout
  if r or w then opt_timeouts(s, r, w) end
  return s
end

---------------------------------------------------------------- listen

local listen_opts = { backlog = true, reuseport = true, nodelay = true,
                      read_high_water = true, write_high_water = true,
                      read_timeout = true, write_timeout = true, tls = true }
local listener_tls = setmetatable({}, { __mode = "k" })   -- ln -> server SSL_CTX
local accept_opts = { read_timeout = true, write_timeout = true }

-- listener | nil, err. host: an IP address, "*" (0.0.0.0) or "localhost";
-- port 0 picks a free port (see ln:local_addr()).
-- Under `nexus --workers N` every worker listens on the same port:
-- SO_REUSEPORT is then the default, so the kernel spreads connections.
local IN_WORKERS = os.getenv("NEXUS_WORKER_COUNT") ~= nil

function M.listen(host, port, opts)
  local fname = "nexus.tcp.listen"
  check_host(fname, host)
  port = check_port(fname, port, 0)
  opts = check_opts(fname, opts, listen_opts)
  local ctx
  if opts.tls ~= nil then
    local err
    ctx, err = tls_context(fname, opts.tls, true)
    if not ctx then return nil, err end
  end
  if api_in_task() == 0 then no_task(fname, -1) end
  local reuse = opts.reuseport
  if reuse == nil then reuse = IN_WORKERS end
  local ln, err = c_listen(host, port, opts.backlog, reuse, opts.nodelay ~= false,
                           opts.read_high_water, opts.write_high_water)
  local r, w = opts.read_timeout, opts.write_timeout
  if ln and (r or w) then listener_tmo[ln] = { r, w } end
  if ln and ctx then listener_tls[ln] = ctx end
  return ln, err
end

-- The read_timeout/write_timeout of a stream ln accepted: the listener's,
-- each replaced by opts' (checked).
local function accepted_timeouts(ln, s, opts)
  local ctx = listener_tls[ln]
  if ctx then
    -- TLS: the handshake runs on the stream's first read or write (or
    -- s:tls_handshake()), as Go's tls.Listener does, so a client that
    -- stalls or fails its handshake never holds up accept.
    local ok, err = c_tls_attach(s, ctx, nil, "listener:accept")
    if not ok then
      s:close()
      return err
    end
    tls_streams[s] = true
  end
  local lt = listener_tmo[ln]
  local r, w
  if lt then r, w = lt[1], lt[2] end
  if opts then
    if opts.read_timeout ~= nil then r = opts.read_timeout end
    if opts.write_timeout ~= nil then w = opts.write_timeout end
  end
  if r or w then opt_timeouts(s, r, w) end
end

-- (suspends) stream, "ip:port" | nil, err. opts: read_timeout and
-- write_timeout of the stream, each replacing the listener's.
function L.accept(ln, opts)
  if opts ~= nil then opts = check_opts("listener:accept", opts, accept_opts) end
  local a, b = c_accept(ln)
  while a == false do
    if b or util.borrowing then check_yieldable("listener:accept") end
    yield()
    a, b = c_accept(ln)
  end
  if a then
    local err = accepted_timeouts(ln, a, opts)
    if err then return nil, err end
  end
  return a, b
end

local AcceptOp = sel_class("tcp accept")
function AcceptOp.poll(op)
  local ok, a, b = pcall(c_accept, op.ln)
  if not ok then return op_fault("listener:accept_op", a) end
  if a == false then return false end
  if a then
    local err = accepted_timeouts(op.ln, a, op.opts)
    if err then a, b = nil, err end
  end
  op.a, op.b = a or false, b or false
  return true
end
function AcceptOp.take(op)
  local a, b = op.a, op.b
  op.a, op.b = false, false
  if a then return a, b end
  return nil, b
end

-- An op for nexus.select: as ln:accept(opts) (stream, "ip:port" | nil,
-- err); a losing accept leaves the connection for the next accept.
function L.accept_op(ln, opts)
  local fname = "listener:accept_op"
  if getmetatable(ln) ~= LMT then argerror(fname, "expected a tcp listener, got " .. type(ln)) end
  if opts ~= nil then opts = check_opts(fname, opts, accept_opts) end
  return sel_op(AcceptOp, { ln = ln, opts = opts or false, a = false, b = false }, fname)
end

return M

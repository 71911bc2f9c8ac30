-- nexus.tcp: listeners and streams. The C side (src/tcp.c) owns the read
-- buffer and the write queue; each method here calls its C entry point,
-- and yields only when that registered a wait (it returned false), then
-- calls again. A second value true with that false says C found this
-- coroutine cannot yield: util.check_yieldable then raises (and releases
-- the wait), as it does while a World is borrowed. See docs/net.md.
local ffi = require "ffi"
local core = require "nexus.core"
local api = require "nexus.api"
local util = require "nexus.util"
local time = require "nexus.time"
local dns = require "nexus.dns"

local type, tostring, tonumber, pairs, floor, getmetatable = type, tostring, tonumber, pairs, math.floor, getmetatable
local ffi_string = ffi.string
local yield = coroutine.yield
local c_read, c_read_exactly, c_read_until = core.tcp_read, core.tcp_read_exactly, core.tcp_read_until
local c_write, c_write_wait = core.tcp_write, core.tcp_write_wait
local c_connect, c_connected = core.tcp_connect, core.tcp_connected
local c_listen, c_accept = core.tcp_listen, core.tcp_accept
local c_is_ip = core.net_is_ip
local no_task, check_yieldable, argerror = util.no_task, util.check_yieldable, util.argerror
local api_in_task = api.in_task
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
local MAXREAD = 2 ^ 52

local M = {}
local S = core.tcp_stream_methods

-- data | nil, err | nil, err, partial: no trailing nils on success.
local function framed(a, b, c)
  if a then return a end
  if c then return nil, b, c end
  return nil, b
end
local L = core.tcp_listener_methods

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

-- (suspends) n bytes | nil, err, partial
function S.read_exactly(s, n)
  local a, b, c = c_read_exactly(s, n)
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
  while a == false do
    if b or util.borrowing then check_yieldable("stream:read_line") end
    yield()
    a, b, c = c_read_until(s, "\n", max, "stream:read_line", true)
  end
  return framed(a, b, c)
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
  if a == nil then a, b = c_write(s, data) end
  while a == false do
    if b or util.borrowing then check_yieldable("stream:write") end
    yield()
    a, b = c_write_wait(s)
  end
  if a then return a end
  return nil, b
end

-- Iterates over lines until eof or an error: for line in s:lines() do ... end
function S.lines(s, max)
  return function()
    return (S.read_line(s, max))
  end
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
}

-- Checks opts against the allowed keys; returns opts or an empty table.
local function check_opts(fname, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then argerror(fname, "options must be a table, got " .. type(opts), 2) end
  for k, v in pairs(opts) do
    if not allowed[k] then argerror(fname, "unknown option '" .. tostring(k) .. "'", 2) end
    local kind = kinds[k]
    if kind == "boolean" then
      if type(v) ~= "boolean" then argerror(fname, k .. " must be a boolean, got " .. type(v), 2) end
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

local connect_opts = { timeout = true, nodelay = true, read_high_water = true, write_high_water = true }

-- (suspends) stream | nil, err. Names are resolved (nexus.dns.resolve);
-- opts.timeout bounds the whole of it (resolution included).
function M.connect(host, port, opts)
  local fname = "nexus.tcp.connect"
  check_host(fname, host)
  port = check_port(fname, port, 1)
  opts = check_opts(fname, opts, connect_opts)
  if api_in_task() == 0 then no_task(fname, -1) end
  local nodelay = opts.nodelay ~= false
  local rh, wh = opts.read_high_water, opts.write_high_water
  if opts.timeout then
    local ok, s, err = timeout(opts.timeout, connect_any, host, port, nodelay, rh, wh)
    if not ok then return nil, s end
    return s, err
  end
  return connect_any(host, port, nodelay, rh, wh)
end

---------------------------------------------------------------- listen

local listen_opts = { backlog = true, reuseport = true, nodelay = true,
                      read_high_water = true, write_high_water = true }

-- listener | nil, err. host: an IP address, "*" (0.0.0.0) or "localhost";
-- port 0 picks a free port (see ln:local_addr()).
function M.listen(host, port, opts)
  local fname = "nexus.tcp.listen"
  check_host(fname, host)
  port = check_port(fname, port, 0)
  opts = check_opts(fname, opts, listen_opts)
  if api_in_task() == 0 then no_task(fname, -1) end
  return c_listen(host, port, opts.backlog, opts.reuseport, opts.nodelay ~= false,
                  opts.read_high_water, opts.write_high_water)
end

-- (suspends) stream, "ip:port" | nil, err
function L.accept(ln)
  local a, b = c_accept(ln)
  while a == false do
    if b or util.borrowing then check_yieldable("listener:accept") end
    yield()
    a, b = c_accept(ln)
  end
  return a, b
end

return M

-- nexus.http: an HTTP client on libcurl's multi interface, driven by the
-- runtime's loop (src/http.c). One multi handle per runtime: connections
-- and TLS sessions are reused between requests. See docs/http.md.
local core = require "nexus.core"
local util = require "nexus.util"

local c_start, c_wait, c_result, c_read = core.http_start, core.http_wait, core.http_result, core.http_read
local setmetatable, getmetatable = setmetatable, getmetatable
local type, pairs, tostring = type, pairs, tostring
local suspend, argerror, check_secs = util.suspend, util.argerror, util.check_secs

local M = {}

local FN = "nexus.http.request"
local KEYS = { method = true, url = true, headers = true, body = true, timeout = true,
  connect_timeout = true, tls = true, version = true, follow_redirects = true, stream = true }

local function bad(what) argerror(FN, what, 3) end

local good_url   -- the last url that passed (strings are values: the same one passes again)

local function check(opts)
  if type(opts) ~= "table" then bad("expected an options table, got " .. type(opts)) end
  for k in pairs(opts) do
    if not KEYS[k] then bad("unknown option '" .. tostring(k) .. "'") end
  end
  local url = opts.url
  if url ~= good_url then
    if type(url) ~= "string" then bad("url must be a string, got " .. type(url)) end
    if not url:match("^[hH][tT][tT][pP][sS]?://[^/%s]") then bad("url must be http:// or https://, got '" .. url .. "'") end
    if url:find("[%z\r\n]") then bad("url holds a control character") end
    good_url = url
  end
  local m = opts.method
  if m ~= nil and (type(m) ~= "string" or not m:match("^[A-Z]+$")) then
    bad("method must be an upper-case word such as \"GET\", got " .. tostring(m))
  end
  if opts.body ~= nil and type(opts.body) ~= "string" then bad("body must be a string, got " .. type(opts.body)) end
  local h = opts.headers
  if h ~= nil then
    if type(h) ~= "table" then bad("headers must be a table, got " .. type(h)) end
    for k, v in pairs(h) do
      if type(k) ~= "string" or not k:match(util.TOKEN) then bad("bad header name " .. tostring(k)) end
      if type(v) ~= "string" and type(v) ~= "number" then bad("header " .. k .. " must be a string, got " .. type(v)) end
      if tostring(v):find("[%z\r\n]") then bad("header " .. k .. " holds a control character") end
    end
  end
  if opts.timeout ~= nil then check_secs(FN, opts.timeout, "timeout") end
  if opts.connect_timeout ~= nil then check_secs(FN, opts.connect_timeout, "connect_timeout") end
  local v = opts.version
  if v ~= nil and v ~= "1.1" and v ~= "2" then bad("version must be \"1.1\" or \"2\", got " .. tostring(v)) end
  if opts.follow_redirects ~= nil and type(opts.follow_redirects) ~= "boolean" then
    bad("follow_redirects must be a boolean, got " .. type(opts.follow_redirects))
  end
  if opts.stream ~= nil and type(opts.stream) ~= "boolean" then bad("stream must be a boolean, got " .. type(opts.stream)) end
  local tls = opts.tls
  if tls ~= nil then
    if type(tls) ~= "table" then bad("tls must be a table, got " .. type(tls)) end
    for k, x in pairs(tls) do
      if k == "verify" then
        if type(x) ~= "boolean" then bad("tls.verify must be a boolean, got " .. type(x)) end
      elseif k == "ca_file" then
        if type(x) ~= "string" then bad("tls.ca_file must be a string, got " .. type(x)) end
      else
        bad("unknown tls option '" .. tostring(k) .. "'")
      end
    end
  end
end

-- A streamed response: res:read() gives the body as it comes.
local Stream = {}
Stream.__index = Stream

-- (suspends) the next chunk of the body | nil at the end | nil, err.
-- While more than 1 MiB waits unread, the transfer is paused
-- (backpressure: the socket is not read).
function Stream:read()
  if getmetatable(self) ~= Stream then argerror("res:read", "expected a streamed response") end
  local req = self.req
  while not c_wait(req, "data") do suspend("res:read") end
  return c_read(req)
end

-- (suspends) { status, headers, body, version } | nil, err; with
-- stream = true it returns once the body begins, without body, and
-- res:read() gives it.
function M.request(opts)
  check(opts)
  local req = c_start(opts)
  local what = opts.stream and "body" or "done"
  while not c_wait(req, what) do suspend(FN) end
  local status, version, headers, body = c_result(req)   -- headers: the last response's, lower-case names
  if not status then return nil, version end
  if opts.stream then
    return setmetatable({ status = status, version = version, headers = headers, req = req }, Stream)
  end
  return { status = status, version = version, headers = headers, body = body }
end

local function with(opts, fname)
  if opts ~= nil and type(opts) ~= "table" then argerror(fname, "options must be a table, got " .. type(opts), 2) end
  local o = {}
  if opts then
    for k, v in pairs(opts) do o[k] = v end
  end
  return o
end

function M.get(url, opts)
  local o = with(opts, "nexus.http.get")
  o.url = url
  return M.request(o)
end

function M.post(url, body, opts)
  local o = with(opts, "nexus.http.post")
  o.url, o.body, o.method = url, body, o.method or "POST"
  return M.request(o)
end

-- The server: lua/nexus/http_server.lua.
M.listen = require("nexus.http_server").listen

return M

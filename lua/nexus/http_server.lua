-- nexus.http.listen: an HTTP/1.1 server on nexus streams.
--
-- One task per connection reads requests with http_parser working in
-- place on the stream's buffer (src/httpd.c) and runs each in turn: the
-- handler (inside xpcall), the writing of its response, the rest of the
-- body if the handler did not read it, then the next request (keep-alive;
-- pipelined requests are answered in order, one at a time). HTTP/1.1
-- answers a connection's requests in order anyway, so a task per request
-- would add no concurrency; it cost 40 % of a request's instructions
-- (docs/BENCHMARKS.md, "HTTP server"). Limits on the
-- head, the header count, the body and the idle and read times are
-- answered with their status and the connection closed. See docs/http.md.
local ffi = require "ffi"
local core = require "nexus.core"
local api = require "nexus.api"
local util = require "nexus.util"
local tcp = require "nexus.tcp"
local task = require "nexus.task"
local time = require "nexus.time"

local type, tostring, tonumber, pairs, ipairs, floor, error = type, tostring, tonumber, pairs, ipairs, math.floor, error
local setmetatable, getmetatable, xpcall, huge = setmetatable, getmetatable, xpcall, math.huge
local lower, concat, os_time, os_date, byte = string.lower, table.concat, os.time, os.date, string.byte
local traceback = debug.traceback
local ffi_string = ffi.string
local argerror, no_task = util.argerror, util.no_task
local api_in_task, api_now = api.in_task, api.now
local spawn = task.spawn

ffi.cdef [[
typedef struct nx_hp_pub {
  int32_t state;
  int32_t status;
  int32_t method;
  int32_t major, minor;
  int32_t keep_alive;
  int32_t upgrade;
  int32_t nhdr;
  uint32_t url_len;
  uint32_t *hdr;
  char *arena;
  char *body;
  size_t body_len;
  double content_length;
} nx_hp_pub;
typedef struct nx_httpd_api {
  nx_hp_pub *(*new)(double max_head, double max_headers, double max_body);
  void (*free)(nx_hp_pub *h);
  void (*reset)(nx_hp_pub *h);
  int (*feed)(nx_hp_pub *h, void *stream);
  const char *(*method_name)(int m);
} nx_httpd_api;
]]

local C = ffi.cast("const nx_httpd_api *", core.httpd_api)
local c_new, c_free, c_reset, c_feed = C.new, C.free, C.reset, C.feed

local HEAD, BODY, DONE, ERROR = 0, 1, 2, 3

local METHOD = {}
for i = 0, 63 do
  local n = ffi_string(C.method_name(i))
  if n == "<unknown>" then break end
  METHOD[i] = n
end

local REASON = {
  [100] = "Continue", [101] = "Switching Protocols",
  [200] = "OK", [201] = "Created", [202] = "Accepted", [203] = "Non-Authoritative Information",
  [204] = "No Content", [205] = "Reset Content", [206] = "Partial Content",
  [300] = "Multiple Choices", [301] = "Moved Permanently", [302] = "Found", [303] = "See Other",
  [304] = "Not Modified", [307] = "Temporary Redirect", [308] = "Permanent Redirect",
  [400] = "Bad Request", [401] = "Unauthorized", [402] = "Payment Required", [403] = "Forbidden",
  [404] = "Not Found", [405] = "Method Not Allowed", [406] = "Not Acceptable",
  [408] = "Request Timeout", [409] = "Conflict", [410] = "Gone", [411] = "Length Required",
  [412] = "Precondition Failed", [413] = "Content Too Large", [414] = "URI Too Long",
  [415] = "Unsupported Media Type", [416] = "Range Not Satisfiable", [417] = "Expectation Failed",
  [422] = "Unprocessable Content", [426] = "Upgrade Required", [428] = "Precondition Required",
  [429] = "Too Many Requests", [431] = "Request Header Fields Too Large",
  [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout", [505] = "HTTP Version Not Supported",
}

local STATUS_LINE = {}   -- status -> "HTTP/1.1 200 OK\r\n", made once
local function status_line(status)
  local l = STATUS_LINE[status]
  if not l then
    l = "HTTP/1.1 " .. status .. " " .. (REASON[status] or "Status") .. "\r\n"
    STATUS_LINE[status] = l
  end
  return l
end

-- The Date header, made once a second (os.time at most every 50 ms).
local date_sec, date_line, date_next = -1, "", -1
local function date()
  local now = api_now()
  if now < date_next then return date_line end
  date_next = now + 0.05
  local t = os_time()
  if t ~= date_sec then
    date_sec = t
    date_line = "Date: " .. os_date("!%a, %d %b %Y %H:%M:%S GMT", t) .. "\r\n"
  end
  return date_line
end

local M = {}
local SRV = {}
SRV.__index = SRV
local REQ = {}
REQ.__index = REQ

---------------------------------------------------------------- responses

local TOKEN = util.TOKEN
local BADVAL = "[%z\1-\8\10-\31\127]"
local SPECIAL = { ["content-length"] = 1, ["transfer-encoding"] = 2, connection = 3, date = 4 }

local function resp_error(msg) error("nexus.http.listen: handler's response: " .. msg, 0) end

-- The header lines of a handler's headers table (name -> string, number
-- or a list of them), and what the special ones said.
-- Header names and short values already checked, so that a handler
-- returning the same headers each time pays for the checks once (each
-- cache starts over after 1,000 entries).
local NAME_OK, nname = {}, 0   -- name -> its SPECIAL code, or 0
local VAL_OK, nval = {}, 0     -- value -> true
local function name_code(k)
  local sp = NAME_OK[k]
  if sp then return sp end
  if type(k) ~= "string" or not k:match(TOKEN) then resp_error("bad header name " .. tostring(k)) end
  sp = SPECIAL[lower(k)] or 0
  if nname >= 1000 then NAME_OK, nname = {}, 0 end
  NAME_OK[k], nname = sp, nname + 1
  return sp
end

local function header_lines(headers, out, n)
  local clen, te, close, has_date
  for k, v in pairs(headers) do
    local sp = name_code(k)
    local tv = type(v)
    if tv == "number" then
      v = tostring(v)
      tv = "string"
    end
    if tv == "string" then
      if not VAL_OK[v] then
        if v:find(BADVAL) then resp_error("header " .. k .. " holds a control character") end
        if #v <= 256 then
          if nval >= 1000 then VAL_OK, nval = {}, 0 end
          VAL_OK[v], nval = true, nval + 1
        end
      end
      out[n + 1], out[n + 2], out[n + 3], out[n + 4] = k, ": ", v, "\r\n"
      n = n + 4
    elseif tv == "table" then
      for i, x in ipairs(v) do
        if type(x) == "number" then x = tostring(x) end
        if type(x) ~= "string" or x:find(BADVAL) then
          resp_error("header " .. k .. "[" .. i .. "] must be a string without control characters")
        end
        out[n + 1], out[n + 2], out[n + 3], out[n + 4] = k, ": ", x, "\r\n"
        n = n + 4
      end
    else
      resp_error("header " .. k .. " must be a string, a number or a list, got " .. tv)
    end
    if sp == 0 then -- an ordinary header
    elseif sp == 1 then clen = v
    elseif sp == 2 then te = v
    elseif sp == 3 then close = type(v) == "string" and lower(v):find("close", 1, true) ~= nil
    elseif sp == 4 then has_date = true end
  end
  return n, clen, te, close, has_date
end

local head_buf = {}

-- Writes the response; returns true, keep (the connection may serve
-- another request) | nil, err (the stream failed: close it).
local function write_response(req, status, headers, body)
  if type(status) ~= "number" or status ~= floor(status) or status < 200 or status > 999 then
    resp_error("status must be an integer from 200 to 999, got " .. tostring(status))
  end
  if headers ~= nil and type(headers) ~= "table" then resp_error("headers must be a table, got " .. type(headers)) end
  local tb = type(body)
  if body ~= nil and tb ~= "string" and tb ~= "function" then
    resp_error("body must be a string or a function returning chunks, got " .. tb)
  end
  local s = req._s
  local out = head_buf
  out[1] = status_line(status)
  local n, clen, te, close, has_date = 1, nil, nil, nil, nil
  if headers then n, clen, te, close, has_date = header_lines(headers, out, 1) end
  if not has_date then
    n = n + 1
    out[n] = date()
  end
  local keep = req._keep and not close and not req._srv.closed
  local nobody = req.method == "HEAD" or status == 204 or status == 304
  local chunked = false
  if tb == "function" and not nobody then
    if te then
      resp_error("transfer-encoding is the server's to set")
    elseif clen == nil then
      if req._http10 then keep = false else chunked = true end
    end
  end
  if te and not nobody then resp_error("transfer-encoding is the server's to set") end
  if status == 204 or status == 304 then
    if clen then resp_error(status .. " has no body: no content-length") end
  elseif clen == nil and tb ~= "function" then
    n = n + 1
    out[n] = "Content-Length: " .. (body and #body or 0) .. "\r\n"
  elseif tb == "string" and clen ~= nil and tonumber(clen) ~= #body then
    resp_error("content-length " .. tostring(clen) .. " but the body has " .. #body .. " bytes")
  end
  if chunked then
    n = n + 1
    out[n] = "Transfer-Encoding: chunked\r\n"
  end
  if not keep then
    n = n + 1
    out[n] = "Connection: close\r\n"
  elseif req._http10 then
    n = n + 1
    out[n] = "Connection: keep-alive\r\n"
  end
  n = n + 1
  if tb == "string" and not nobody then
    out[n] = "\r\n" .. body
  else
    out[n] = "\r\n"
  end
  local head = concat(out, "", 1, n)
  for i = 1, n do out[i] = nil end
  req._responded = true
  local ok, err = s:write(head)
  if not ok then return nil, err end
  if tb == "function" and not nobody then
    while true do
      local chunk = body()
      if chunk == nil then break end
      if type(chunk) ~= "string" then
        error("nexus.http.listen: the body function returned a " .. type(chunk) .. ", expected a string or nil", 0)
      end
      if #chunk > 0 then
        if chunked then
          ok, err = s:write(("%x\r\n"):format(#chunk) .. chunk .. "\r\n")
        else
          ok, err = s:write(chunk)
        end
        if not ok then return nil, err end
      end
    end
    if chunked then
      ok, err = s:write("0\r\n\r\n")
      if not ok then return nil, err end
    end
  end
  return true, keep
end

-- A plain answer of the server's own (a limit, a parse error, a failed
-- handler): the connection closes after it unless keep.
local function answer(s, status, keep)
  local body = status .. " " .. (REASON[status] or "Error") .. "\n"
  return s:write(status_line(status) .. date() .. "Content-Type: text/plain\r\nContent-Length: " .. #body
    .. "\r\n" .. (keep and "" or "Connection: close\r\n") .. "\r\n" .. body)
end

local function report(srv, err, req)
  if srv.on_error then
    local ok, e = xpcall(srv.on_error, traceback, err, req)
    if ok then return end
    err = "nexus.http.listen: on_error failed: " .. tostring(e) .. "\n(while reporting) " .. tostring(err)
  end
  io.stderr:write("nexus.http.listen: ", tostring(err), "\n")
end

-- Calls f under a Lua frame of its own: returning straight into xpcall's
-- frame is NYI for LuaJIT's recorder, so f's traces would abort (and f be
-- blacklisted) without it.
local function invoke(f, a, b, c, d)
  local r1, r2, r3, r4 = f(a, b, c, d)
  return r1, r2, r3, r4
end

-- One request, in its connection's task: the handler, then its response.
-- An error in either is caught here (a 500, reported) and ends nothing
-- but this connection.
local function run_request(srv, req)
  local ok, status, headers, body = xpcall(invoke, traceback, srv.handler, req)
  if req._ws then return false end                 -- the connection is the WebSocket's now
  if req._responded then                           -- req:websocket() refused it (4xx sent)
    return false
  end
  if ok then
    local written, keep
    ok, written, keep = xpcall(invoke, traceback, write_response, req, status, headers, body)
    if ok then return written and keep end         -- nil: the stream failed
    status = written                               -- the error
  end
  report(srv, status, req)
  if req._responded then return false end          -- failed mid-body: nothing more to say
  answer(req._s, 500, false)
  return false
end

---------------------------------------------------------------- requests

local function check_req(fname, req)
  if getmetatable(req) ~= REQ then argerror(fname, "expected a request, got " .. type(req), 2) end
end

-- Reads the rest of the request's body into the parser: DONE | ERROR |
-- nil, err.
local function read_body(req)
  local s, hp, srv = req._s, req._hp, req._srv
  local st = hp.state
  if st == BODY and req._continue then
    req._continue = false
    local ok, err = s:write("HTTP/1.1 100 Continue\r\n\r\n")
    if not ok then return nil, err end
  end
  while st == BODY do
    s:_read_timeout(srv.body_timeout)
    local ok, err = s:_fill(0)
    if not ok then return nil, err end
    st = c_feed(hp, s)
  end
  if st < 0 then return nil, "closed" end
  return st
end

-- (suspends) the body | nil, err ("body too large", "malformed body",
-- "timeout", "closed", ...). Read once; later calls return it again.
function REQ.body(req)
  check_req("req:body", req)
  local b = req._body
  if b then return b end
  if req._ws then error("req:body: the request was upgraded to a WebSocket", 2) end
  local st, err = read_body(req)
  if st == ERROR then
    req._keep = false
    local status = req._hp.status
    return nil, status == 413 and "body too large" or "malformed body"
  elseif not st then
    req._keep = false
    return nil, err
  end
  local hp = req._hp
  b = hp.body_len > 0 and ffi_string(hp.body, hp.body_len) or ""
  req._body = b
  return b
end

local ws_opts = { protocols = "list", max_message = "size" }

-- (suspends) ws | nil, err: answers the upgrade (101) and hands the
-- connection to the WebSocket; a request that is no WebSocket handshake
-- gets its 4xx here and nil, err. The handler's return values are then
-- ignored; the WebSocket's holder closes it.
function REQ.websocket(req, opts)
  check_req("req:websocket", req)
  local websocket = require "nexus.websocket"
  opts = websocket._check_opts("req:websocket", opts, ws_opts)
  if req._responded or req._ws then error("req:websocket: the request was answered already", 2) end
  if req.method ~= "GET" then
    req._responded = true
    req._keep = false
    answer(req._s, 405, false)
    return nil, "method not allowed"
  end
  local ws, err = websocket._upgrade(req._s, req.peer, req.path, req.query, req.target, req.headers,
    opts.protocols or {}, opts.max_message or websocket._DEFAULT_MAX)
  req._responded = true
  if not ws then
    req._keep = false
    return nil, err
  end
  req._ws = ws
  return ws
end

function REQ.__tostring(req)
  return "nexus.http.request(" .. req.method .. " " .. req.target .. ")"
end

-- The request whose head the parser holds.
local function new_req(srv, s, peer, hp)
  local arena, hdr = hp.arena, hp.hdr
  local target = ffi_string(arena, hp.url_len)
  local headers = {}
  for i = 0, hp.nhdr - 1 do
    local k = ffi_string(arena + hdr[4 * i], hdr[4 * i + 1])
    local v = ffi_string(arena + hdr[4 * i + 2], hdr[4 * i + 3])
    local last = byte(v, -1)
    if last == 32 or last == 9 then v = v:match("^(.-)[ \t]*$") end
    local prev = headers[k]
    if prev then v = prev .. (k == "cookie" and "; " or ", ") .. v end
    headers[k] = v
  end
  local path, query = target, ""
  local q = target:find("?", 1, true)
  if q then
    path, query = target:sub(1, q - 1), target:sub(q + 1)
  end
  local major, minor = hp.major, hp.minor
  local continue = hp.state == BODY and headers.expect ~= nil and lower(headers.expect) == "100-continue"
  return setmetatable({
    method = METHOD[hp.method] or "?", target = target, path = path, query = query,
    headers = headers, version = (major == 1 and minor == 1) and "1.1" or major .. "." .. minor, peer = peer,
    _s = s, _hp = hp, _srv = srv, _keep = hp.keep_alive ~= 0, _http10 = major == 1 and minor == 0,
    _continue = continue, _responded = false, _ws = false, _body = false,
  }, REQ)
end

---------------------------------------------------------------- connections

-- What each connection is doing, for the sweeper (the idle and head
-- time-outs): one table per connection, two fields written per request,
-- and no timer armed per wait.
local BUSY, IDLE, INHEAD = 0, 1, 2

-- Waits for the head of the next request: HEAD turned BODY or DONE, or
-- ERROR (answered by the caller) | nil (the peer left, or the sweeper
-- closed the connection: idle too long, or the head took too long and it
-- answered 408; or the server is closing).
local function read_head(conn, s, hp)
  local st = c_feed(hp, s)
  if st ~= HEAD then return st >= 0 and st or nil end
  conn.phase, conn.since = IDLE, api_now()
  while st == HEAD do
    if not s:_fill(0) then
      conn.phase = BUSY
      return nil
    end
    if conn.phase == IDLE then conn.phase, conn.since = INHEAD, api_now() end
    st = c_feed(hp, s)
  end
  conn.phase = BUSY
  return st >= 0 and st or nil
end

-- Closes the connections idle longer than idle_timeout, and answers 408 to
-- those whose head took longer than request_timeout; wakes every tick.
local function sweep(srv)
  local conns = srv.conns
  while true do
    time.sleep(srv.tick)
    local now = api_now()
    for c in pairs(conns) do
      local ph = c.phase
      if ph == IDLE and now - c.since >= srv.idle_timeout then
        c.phase = BUSY
        c.s:close()
      elseif ph == INHEAD and now - c.since >= srv.request_timeout then
        c.phase = BUSY
        answer(c.s, 408, false)
        c.s:close()
      end
    end
  end
end

-- Reads and drops what the handler left of a body: true when the
-- connection can serve another request.
local function skip_body(req)
  if req._hp.state == DONE then return true end
  if req._continue then return false end           -- the client waits to send it: don't ask for it
  local st = read_body(req)
  return st == DONE
end

local function serve(srv, s, peer)
  local hp = c_new(srv.max_header_size, srv.max_headers, srv.max_body)
  if hp == nil then
    s:close()
    return
  end
  hp = ffi.gc(hp, c_free)
  s:set_timeouts { write = srv.write_timeout }
  local conn = { s = s, phase = BUSY, since = 0 }
  local conns = srv.conns
  conns[conn] = true
  while not srv.closed do
    local st = read_head(conn, s, hp)
    if st == ERROR then
      answer(s, hp.status, false)
      break
    elseif not st then
      break
    end
    local req = new_req(srv, s, peer, hp)
    srv.nreq = srv.nreq + 1
    local keep = run_request(srv, req)
    if req._ws then                                -- the WebSocket's holder closes it
      conns[conn] = nil
      return
    end
    if not keep or not skip_body(req) or hp.upgrade ~= 0 then break end
    c_reset(hp)
  end
  conns[conn] = nil
  s:close()
end

local function accept_loop(srv)
  local ln = srv.ln
  while true do
    local s, peer = ln:accept()
    if not s then
      if srv.closed then return end
      time.sleep(0.05)                               -- out of fds, say: try again soon
    else
      spawn(serve, srv, s, peer)
    end
  end
end

---------------------------------------------------------------- servers

local listen_opts = {
  tls = "table", backlog = "size", max_header_size = "size", max_headers = "size", max_body = "size",
  idle_timeout = "secs", request_timeout = "secs", body_timeout = "secs", write_timeout = "secs",
  on_error = "function", reuseport = "boolean",
}

local function check_opts(fname, opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then argerror(fname, "options must be a table, got " .. type(opts), 2) end
  for k, v in pairs(opts) do
    local kind = listen_opts[k]
    if not kind then argerror(fname, "unknown option '" .. tostring(k) .. "'", 2) end
    if kind == "size" then
      if type(v) ~= "number" or v ~= floor(v) or v < 1 or v > 2 ^ 40 then
        argerror(fname, k .. " must be a positive integer, got " .. tostring(v), 2)
      end
    elseif kind == "secs" then
      if type(v) ~= "number" or v ~= v or v <= 0 then
        argerror(fname, k .. " must be a positive number of seconds (math.huge: none), got " .. tostring(v), 2)
      end
    elseif type(v) ~= kind then
      argerror(fname, k .. " must be a " .. kind .. ", got " .. type(v), 2)
    end
  end
  if opts.max_headers and opts.max_headers > 10000 then
    argerror(fname, "max_headers must be at most 10000, got " .. opts.max_headers, 2)
  end
  return opts
end

local function tmo(v, dflt)
  if v == nil then return dflt end
  return v
end

-- srv | nil, err. handler(req) returns status, headers, body.
function M.listen(host, port, handler, opts)
  local fname = "nexus.http.listen"
  if type(handler) ~= "function" then
    argerror(fname, "handler must be a function, got " .. type(handler))
  end
  opts = check_opts(fname, opts)
  if api_in_task() == 0 then no_task(fname, -1) end
  local ln, err = tcp.listen(host, port, { backlog = opts.backlog, tls = opts.tls, reuseport = opts.reuseport })
  if not ln then return nil, err end
  local srv = setmetatable({
    ln = ln, handler = handler, on_error = opts.on_error or false, closed = false,
    conns = {}, nreq = 0,
    max_header_size = opts.max_header_size or 16384, max_headers = opts.max_headers or 100,
    max_body = opts.max_body or 1048576,
    idle_timeout = tmo(opts.idle_timeout, 60), request_timeout = tmo(opts.request_timeout, 30),
    body_timeout = tmo(opts.body_timeout, 60), write_timeout = tmo(opts.write_timeout, 60),
  }, SRV)
  if srv.body_timeout == huge then srv.body_timeout = nil end
  if srv.write_timeout == huge then srv.write_timeout = nil end
  -- the sweeper's period: a quarter of the shorter time-out, 5 ms to 1 s
  local tick = (srv.idle_timeout < srv.request_timeout and srv.idle_timeout or srv.request_timeout) / 4
  srv.tick = tick < 0.005 and 0.005 or tick > 1 and 1 or tick
  srv.task = spawn(accept_loop, srv)
  srv.sweeper = spawn(sweep, srv)
  return srv
end

local function check_srv(fname, srv)
  if getmetatable(srv) ~= SRV then argerror(fname, "expected an http server, got " .. type(srv), 2) end
end

-- Stops accepting; connections waiting for a request (or still reading
-- its head: the sweeper that would time them out stops too) close now,
-- busy ones after their response (which says Connection: close).
function SRV.close(srv)
  check_srv("srv:close", srv)
  if srv.closed then return end
  srv.closed = true
  srv.ln:close()
  srv.sweeper:abort()
  for c in pairs(srv.conns) do
    if c.phase ~= BUSY then c.s:close() end        -- waiting for a request, or in its head
  end
end

function SRV.local_addr(srv)
  check_srv("srv:local_addr", srv)
  return srv.ln:local_addr()
end

-- Requests taken so far.
function SRV.requests(srv)
  check_srv("srv:requests", srv)
  return srv.nreq
end

function SRV.__tostring(srv)
  return "nexus.http.server(" .. tostring((srv.ln:local_addr())) .. ")"
end

return M

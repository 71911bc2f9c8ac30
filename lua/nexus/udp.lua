-- nexus.udp: UDP sockets. Receiving suspends (the datagram queue is in C,
-- src/udp.c); sending never does. See docs/net.md.
local core = require "nexus.core"
local api = require "nexus.api"
local util = require "nexus.util"

local type, tostring, tonumber, pairs, floor = type, tostring, tonumber, pairs, math.floor
local yield = coroutine.yield
local c_bind, c_recv = core.udp_bind, core.udp_recv
local no_task, check_yieldable, argerror = util.no_task, util.check_yieldable, util.argerror
local api_in_task = api.in_task

local M = {}
local U = core.udp_methods

-- (suspends) data, ip, port | nil, err
function U.recv_from(u)
  local a, b, c = c_recv(u, true, "udp:recv_from")
  while a == false do
    if b or util.borrowing then check_yieldable("udp:recv_from") end
    yield()
    a, b, c = c_recv(u, true, "udp:recv_from")
  end
  if a then return a, b, c end
  return nil, b
end

-- (suspends) data | nil, err (for connected sockets: u:connect)
function U.recv(u)
  local a, b = c_recv(u, false, "udp:recv")
  while a == false do
    if b or util.borrowing then check_yieldable("udp:recv") end
    yield()
    a, b = c_recv(u, false, "udp:recv")
  end
  if a then return a end
  return nil, b
end

local bind_opts = { recv_high_water = true, send_high_water = true }

-- socket | nil, err. host: an IP address, "*" (0.0.0.0) or "localhost";
-- port 0 picks a free port.
function M.bind(host, port, opts)
  local fname = "nexus.udp.bind"
  if type(host) ~= "string" then argerror(fname, "host must be a string, got " .. type(host)) end
  local p = tonumber(port)
  if (type(port) ~= "number" and type(port) ~= "string") or not p or p ~= floor(p) or p < 0 or p > 65535 then
    argerror(fname, "port must be an integer in 0..65535, got " .. tostring(port))
  end
  opts = opts or {}
  if type(opts) ~= "table" then argerror(fname, "options must be a table, got " .. type(opts)) end
  for k, v in pairs(opts) do
    if not bind_opts[k] then argerror(fname, "unknown option '" .. tostring(k) .. "'") end
    if type(v) ~= "number" or v ~= floor(v) or v < 1 then
      argerror(fname, k .. " must be a positive integer, got " .. tostring(v))
    end
  end
  if api_in_task() == 0 then no_task(fname, -1) end
  return c_bind(host, p, opts.recv_high_water, opts.send_high_water)
end

return M

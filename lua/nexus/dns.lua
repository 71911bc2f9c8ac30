-- nexus.dns: name resolution through libuv's getaddrinfo (thread pool).
local core = require "nexus.core"
local api = require "nexus.api"
local util = require "nexus.util"

local type, tostring, pairs = type, tostring, pairs
local yield = coroutine.yield
local c_resolve, c_result = core.dns_resolve, core.dns_result
local no_task, check_yieldable, argerror = util.no_task, util.check_yieldable, util.argerror
local api_in_task = api.in_task

local M = {}

local families = { [4] = 4, [6] = 6, inet = 4, inet6 = 6 }

-- (suspends) { "ip", ... } (distinct addresses, IPv4 and IPv6, in the
-- resolver's order) | nil, err. opts.family: 4 or 6 to ask for one.
function M.resolve(name, opts)
  local fname = "nexus.dns.resolve"
  if type(name) ~= "string" then argerror(fname, "name must be a string, got " .. type(name)) end
  if name == "" then argerror(fname, "empty name") end
  local family = 0
  if opts ~= nil then
    if type(opts) ~= "table" then argerror(fname, "options must be a table, got " .. type(opts)) end
    for k in pairs(opts) do
      if k ~= "family" then argerror(fname, "unknown option '" .. tostring(k) .. "'") end
    end
    if opts.family ~= nil then
      family = families[opts.family]
      if not family then
        argerror(fname, "family must be 4, 6, \"inet\" or \"inet6\", got " .. tostring(opts.family))
      end
    end
  end
  if api_in_task() == 0 then no_task(fname, -1) end
  -- { ip, ... } at once (a literal) | nil, err | request, false: it waits
  local req, a, b = c_resolve(name, family)
  if a ~= false then return req, a end
  local r = false
  while r == false do
    if b or util.borrowing then check_yieldable(fname) end
    yield()
    r, b = c_result(req)
  end
  if r then return r end
  return nil, b
end

return M

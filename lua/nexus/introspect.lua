-- nexus.tasks() and nexus.dump(): what every task of the running runtime
-- is doing. The C side (src/introspect.c) reads the task table; this file
-- formats the dump, which SIGQUIT prints under the nexus command.
local core = require "nexus.core"

local ipairs, concat, format = ipairs, table.concat, string.format
local M = {}

-- An array of { id, name, state, wait, since, where } (wait only for a
-- waiting task; since: seconds in this state).
function M.tasks() return core.tasks(false) end

-- Text: every task, its wait, where it waits, its traceback.
function M.dump()
  local ts = core.tasks(true)
  local out = { format("nexus: %d task(s)", #ts) }
  for _, t in ipairs(ts) do
    out[#out + 1] = format("task %d%s: %s%s for %.3f s at %s", t.id,
      t.name and (' "' .. t.name .. '"') or "", t.state, t.wait and (" on " .. t.wait) or "",
      t.since, t.where or "?")
    if t.traceback then out[#out + 1] = "  " .. t.traceback:gsub("\n", "\n  ") end
  end
  return concat(out, "\n")
end

debug.getregistry()["nexus.dump"] = M.dump   -- for the SIGQUIT dump (C)

return M

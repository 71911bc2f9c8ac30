-- fanout.lua: fan 1,000 jobs out through a group, at most `cap` at once,
-- under an overall deadline; some jobs fail, and nobody wraps a job in
-- pcall: a member's error is the group's, handed back by g:next().
--
--   nexus examples/fanout.lua [jobs] [cap] [deadline_secs] [stuck_job]
--
-- defaults: 1000 jobs, cap 50, deadline 30 s, no stuck job. Job i sleeps
-- (i % 5) ms and returns i; every 100th job fails. A stuck job never ends,
-- so the deadline passes: the group is then closed, which aborts the
-- members still running (and those ended but not yet collected).
--
-- The cap: the main task keeps at most `cap` members in the group (g:len()
-- counts the members next() has not returned yet), collecting one outcome
-- before it spawns the next job. So the outcomes are consumed as they
-- come, and the group never holds more than `cap` tasks.
--
-- The deadline: nexus.timeout cancels whatever the body is waiting on
-- (g:next() here) and returns nil, "timeout"; the task goes on, closes the
-- group, and reports. Prints one summary line:
--
--   fanout: <jobs> jobs, cap <cap>: <ok> ok, <failed> failed, <cancelled>
--   cancelled, peak <n> in flight, sum <sum>, <completed | timed out>
--
-- and, after a time-out, what closing the group did.
local nexus = require "nexus"

local jobs = tonumber(arg and arg[1]) or 1000
local cap = tonumber(arg and arg[2]) or 50
local deadline = tonumber(arg and arg[3]) or 30
local stuck = tonumber(arg and arg[4])

local running, peak = 0, 0       -- jobs between their start and their end

local function job(i)
  running = running + 1
  if running > peak then peak = running end
  if i == stuck then nexus.sleep(3600) end     -- aborted by g:close(), never returns
  nexus.sleep(0.001 * (i % 5))
  running = running - 1
  if i % 100 == 0 then error("job " .. i .. " failed", 0) end
  return i
end

nexus.run(function()
  local g = nexus.group()
  local ok_count, failed, sum = 0, 0, 0
  local live = {}                -- handle -> true, for members not collected
  local first_error

  -- One outcome, in completion order.
  local function collect()
    local h, ok, v = g:next()
    live[h] = nil
    if ok then
      ok_count, sum = ok_count + 1, sum + v
    else
      failed = failed + 1
      first_error = first_error or v
    end
  end

  local done, why = nexus.timeout(deadline, function()
    for i = 1, jobs do
      if g:len() >= cap then collect() end     -- wait for room
      live[g:spawn(job, i)] = true
    end
    while g:len() > 0 do collect() end
  end)

  local dropped = 0
  if not done then
    -- The deadline passed while the body waited in g:next(): close the
    -- group, which aborts every member next() has not returned.
    dropped = g:len()
    g:close()
  end
  local all_ended = true
  for h in pairs(live) do all_ended = all_ended and h:is_finished() end

  print(("fanout: %d jobs, cap %d: %d ok, %d failed, %d cancelled, peak %d in flight, sum %d, %s")
    :format(jobs, cap, ok_count, failed, jobs - ok_count - failed, peak, sum,
            done and "completed" or "timed out"))
  if first_error then print("first error: " .. first_error) end
  if not done then
    print(("deadline %g s (%s): closed the group, %d members aborted, every one ended: %s")
      :format(deadline, why, dropped, tostring(all_ended)))
  end
end)

-- fuzz/ops.lua: the fuzzer's driver. Returns run(bytes): the bytes are
-- decoded into a sequence of operations on a fresh nexus runtime, and the
-- runtime's invariants are checked. Any violation raises an error that
-- begins with "fuzz invariant:"; the libFuzzer harness (fuzz_ops.c) turns
-- every error into abort(), so libFuzzer records the input.
--
-- Operations (one byte each, then their arguments): spawn a producer or a
-- consumer task on one of three channels (local, bytes, mpsc), a task that
-- holds a byte-channel claim across a wait, a task waiting on a cancel
-- token; abort, join (under a timeout) and drop tasks; sleep, yield,
-- nexus.timeout around a receive; try_send/try_recv; a producer that
-- sends each value through nexus.select over two channels' send ops and a
-- sleep op (a losing send must send nothing), a consumer receiving
-- through a select of a recv op, a sleep op and a token; close a sender or a
-- receiver; leave a sender or a receiver to the collector instead of
-- closing it; cancel a token; collectgarbage; close the runtime early.
--
-- Invariants:
-- * no crash, no sanitizer report (the harness's build), no task error;
-- * a channel never holds more than its capacity (rx:len());
-- * a task that ends (returns or is aborted) with an armed drop guard has
--   cancelled its token;
-- * no value received twice, none received that was not sent, each
--   producer's values received in its order;
-- * no value lost: on a channel whose receiver was never closed (nor
--   dropped), every value whose send returned true is received by the
--   final drain, also from the senders left to the collector;
-- * every waiter is woken by close: once every sender is closed (or
--   collected), every dropped receiver collected and every token
--   cancelled, all tasks end (rt:shutdown_quiesce finds none left);
-- * every task has ended after rt:close(), and every handle says finished;
-- * the process's open descriptors are back to their count at the start,
--   and the runtime's memory is freed (no channel or handle keeps it).
--
-- Everything is bounded: at most MAX_OPS operations, sleeps of 0-2 ms,
-- tasks that send or receive at most 8 values.
local nexus = require "nexus"
local ffi = require "ffi"

pcall(ffi.cdef, "int fcntl(int fd, int cmd, ...);")
local F_GETFD = 1

local MAX_OPS = 96
-- The final waits: tries of 1, 2, 4 ... up to 50 ms, a full GC between
-- two, for SETTLE_TOTAL seconds in all before a violation is reported.
local SETTLE_TOTAL = 2
-- Spec hook (spec/fuzz_harness_spec.lua): a fault injected on purpose,
-- which the checks must report. "drop": the first value received goes
-- missing from the model; "fd": each input leaves a descriptor open;
-- "stuck": each input leaves a task waiting on a token nobody cancels.
local INJECT = os.getenv("NEXUS_FUZZ_INJECT")
-- NEXUS_FUZZ_TRACE=1: print each operation decoded, with its argument
-- bytes (fuzz/replay.lua; to turn a crash input into a Lua script).
local TRACE = os.getenv("NEXUS_FUZZ_TRACE") == "1"
local OP_NAMES = { "produce", "consume", "consume_timed", "abort", "join", "sleep",
  "yield", "try_send", "try_recv", "close_tx", "close_rx", "claim", "token",
  "cancel", "collect", "close_early", "drop_rx", "produce_dropping", "guard",
  "select_produce", "select_consume" }

local function violation(fmt, ...)
  error("fuzz invariant: " .. fmt:format(...), 0)
end

local function count_fds()
  local n = 0
  for fd = 0, 1023 do
    if ffi.C.fcntl(fd, F_GETFD) ~= -1 then n = n + 1 end
  end
  return n
end

---------------------------------------------------------------- channels

-- A received byte message as the number it carries (released), or nil, err.
local function bytes_value(m, err)
  if not m then return nil, err end
  local s = m:string()
  m:release()
  return tonumber(s)
end

-- The three kinds behind one face: send(v) / recv() / try_* with numbers.
local kinds = {
  chan = {
    new = function(cap) return nexus.channel(cap) end,
    send = function(tx, v) return tx:send(v) end,
    try_send = function(tx, v) return tx:try_send(v) end,
    recv = function(rx) return rx:recv() end,
    try_recv = function(rx) return rx:try_recv() end,
    send_op = function(tx, v) return tx:send_op(v) end,
    set = function(op, v) return op:set(v) end,
    recv_op = function(rx) return rx:recv_op() end,
    value = function(v, err) return v, err end,
  },
  bytes = {
    new = function(cap) return nexus.channel.bytes(cap * 8) end,
    send = function(tx, v) return tx:send(tostring(v)) end,
    try_send = function(tx, v) return tx:try_send(tostring(v)) end,
    recv = function(rx) return bytes_value(rx:recv()) end,
    try_recv = function(rx) return bytes_value(rx:try_recv()) end,
    send_op = function(tx, v) return tx:send_op(tostring(v)) end,
    set = function(op, v) return op:set(tostring(v)) end,
    recv_op = function(rx) return rx:recv_op() end,
    value = bytes_value,
  },
  mpsc = {
    new = function(cap) return nexus.channel.mpsc(cap) end,
    send = function(tx, v) return tx:send(v) end,
    try_send = function(tx, v) return tx:try_send(v) end,
    recv = function(rx) return rx:recv() end,
    try_recv = function(rx) return rx:try_recv() end,
    send_op = function(tx, v) return tx:send_op(v) end,
    set = function(op, v) return op:set(v) end,
    recv_op = function(rx) return rx:recv_op() end,
    value = function(v, err) return v, err end,
  },
}
local KIND_NAMES = { "chan", "bytes", "mpsc" }

-- libuv opens a few descriptors once per process (the signal pipe), with
-- the first loop: open them now, so that each input starts from the same
-- count.
do
  local rt = nexus.runtime.new()
  rt:block_on(function()
    local tx, rx = nexus.channel.mpsc(1)
    nexus.spawn(function() tx:send(1) end)
    rx:recv()
  end)
  rt:close()
end

---------------------------------------------------------------- one input

local core = require "nexus.core"

local leaked = {}           -- NEXUS_FUZZ_INJECT=fd keeps its files here

local function run1(input, st)
  local fd0 = count_fds()
  local _, live0 = core._runtime_slots()
  if INJECT == "fd" then leaked[#leaked + 1] = io.open("/dev/null") end
  local pos = 0
  local function byte()
    pos = pos + 1
    return input:byte(pos) or 0
  end

  local rt = nexus.runtime.new()
  st.rt = rt
  local chans, tasks, tokens = {}, {}, {}
  local next_pid = 0
  local early_close = false

  -- A channel's model: what was sent (value -> true), what was received
  -- (value -> true) and in which order per producer (pid -> last i).
  local function record_got(ch, v)
    if type(v) ~= "number" then violation("%s: received a %s (%s)", ch.name, type(v), tostring(v)) end
    if ch.got[v] then violation("%s: value %d received twice", ch.name, v) end
    if not ch.sent[v] then violation("%s: value %d received but never sent", ch.name, v) end
    local pid, i = math.floor(v / 10000), v % 10000
    if (ch.last[pid] or 0) >= i then
      violation("%s: producer %d's value %d after %d", ch.name, pid, i, ch.last[pid])
    end
    ch.last[pid] = i
    if INJECT == "drop" and ch.ngot == 0 then
      ch.ngot = 1            -- the first value "goes missing": the check must fire
      return
    end
    ch.got[v] = true
    ch.ngot = ch.ngot + 1
  end

  local function record_sent(ch, v)
    ch.sent[v] = true
    ch.nsent = ch.nsent + 1
  end

  local function pick(list)
    if #list == 0 then return nil end
    return list[byte() % #list + 1]
  end

  local function spawn(kind, fn, ...)
    local h = nexus.spawn(fn, ...)
    tasks[#tasks + 1] = { h = h, kind = kind }
    return h
  end

  local function consumer_busy(ch)
    return ch.consumer and not ch.consumer:is_finished()
  end

  -- Tasks. Each may be aborted at any of its waits.
  -- drop: the sender is not closed but left to the collector.
  local function producer(ch, tx, pid, n, drop)
    local k = ch.k
    for i = 1, n do
      local v = pid * 10000 + i
      local ok, err = k.send(tx, v)
      if ok then
        record_sent(ch, v)
      elseif err ~= "closed" then
        violation("%s: send gave %s", ch.name, tostring(err))
      else
        break
      end
    end
    if not drop then tx:close() end
  end

  -- The consumer holds the receiver: dropped (op 16), it is collected
  -- once the consumer ends.
  local function consumer(ch, rx, n, timed)
    local k = ch.k
    for _ = 1, n do
      local v, err
      if timed then
        local ok, a, b = nexus.timeout(0.001, k.recv, rx)
        if not ok then
          if a ~= "timeout" then violation("%s: timeout gave %s", ch.name, tostring(a)) end
        else
          v, err = a, b
          if v == nil and err ~= "closed" then violation("%s: recv gave %s", ch.name, tostring(err)) end
        end
      else
        v, err = k.recv(rx)
        if v == nil and err ~= "closed" then violation("%s: recv gave %s", ch.name, tostring(err)) end
      end
      if v ~= nil then record_got(ch, v) end
      if err == "closed" then return end
    end
  end

  local function claim_holder(ch, tx, size, wait, commit, pid)
    local c = tx:claim(size)
    if c then
      if wait > 0 then nexus.sleep(wait * 0.001) else nexus.yield() end
      if commit then
        local v = pid * 10000 + 1
        local s = tostring(v)
        if #s <= size then
          ffi.fill(c.ptr, size, 32)          -- spaces: tonumber skips them
          ffi.copy(c.ptr, s, #s)
          if c:commit() then
            record_sent(ch, v)
          end
        else
          c:abort()
        end
      else
        c:abort()
      end
    end
    tx:close()
  end

  -- Each value goes to channel a or b, whichever send op wins (a first
  -- when both can); a select that times out sends nothing.
  local function select_producer(a, txa, b, txb, pid, n, wait)
    local ka, kb = a.k, b.k
    local opa, opb = ka.send_op(txa, pid * 10000 + 1), kb.send_op(txb, pid * 10000 + 1)
    local sl = nexus.sleep_op(wait * 0.001)
    for i = 1, n do
      local v = pid * 10000 + i
      ka.set(opa, v)
      kb.set(opb, v)
      local k, ok, err = nexus.select(opa, opb, sl)
      if k == 1 or k == 2 then
        local ch = k == 1 and a or b
        if ok then
          record_sent(ch, v)
        elseif err ~= "closed" then
          violation("%s: send_op gave %s", ch.name, tostring(err))
        else
          break
        end
      end
    end
    txa:close()
    txb:close()
  end

  local function select_consumer(ch, rx, n, tok)
    local k = ch.k
    local rop, sl, cop = k.recv_op(rx), nexus.sleep_op(0.001), tok:cancelled_op()
    for _ = 1, n do
      local i, a, b = nexus.select(rop, sl, cop)
      if i == 3 then return end
      if i == 1 then
        local v, err = k.value(a, b)
        if v ~= nil then record_got(ch, v) end
        if v == nil and err ~= "closed" then violation("%s: recv_op gave %s", ch.name, tostring(err)) end
        if err == "closed" then return end
      end
    end
  end

  local function token_waiter(tok)
    tok:cancelled()
  end

  -- Arms a drop guard on g.tok, maybe disarms it, waits 0-2 ms (it may be
  -- aborted there), ends: an armed guard cancels the token.
  local guards = {}
  local function guard_holder(g, disarm, wait)
    local guard = g.tok:drop_guard()
    g.armed = true
    if disarm then
      guard:disarm()
      g.armed = false
    end
    if wait > 0 then nexus.sleep(wait * 0.001) else nexus.yield() end
  end

  local ops = {
    -- 0: a producer of 1-8 values through its own clone of the sender
    function()
      local ch = pick(chans)
      if ch.tx_closed then return end
      next_pid = next_pid + 1
      spawn("producer", producer, ch, ch.tx:clone(), next_pid, byte() % 8 + 1)
    end,
    -- 1: a consumer of 1-8 values (one receiver at a time)
    function()
      local ch = pick(chans)
      if consumer_busy(ch) or not ch.rx then return end
      ch.consumer = spawn("consumer", consumer, ch, ch.rx, byte() % 8 + 1, false)
    end,
    -- 2: a consumer whose every recv is under a 1 ms timeout
    function()
      local ch = pick(chans)
      if consumer_busy(ch) or not ch.rx then return end
      ch.consumer = spawn("consumer", consumer, ch, ch.rx, byte() % 4 + 1, true)
    end,
    -- 3: abort a task
    function()
      local t = pick(tasks)
      if t then t.h:abort() end
    end,
    -- 4: join a task, for at most 2 ms (a join that times out leaves it)
    function()
      local i = byte() % math.max(#tasks, 1) + 1
      local t = tasks[i]
      if not t then return end
      local ok, r, e = nexus.timeout(0.002, t.h.result, t.h)
      if ok then
        table.remove(tasks, i)                 -- consumed: the handle is done
        if r == false and e ~= "aborted" then error(e, 0) end   -- a task's violation
      end
    end,
    -- 5: sleep 0-2 ms
    function() nexus.sleep((byte() % 3) * 0.001) end,
    -- 6: yield
    function() nexus.yield() end,
    -- 7: try_send from the root
    function()
      local ch = pick(chans)
      if ch.tx_closed then return end
      next_pid = next_pid + 1
      local v = next_pid * 10000 + 1
      local ok, err = ch.k.try_send(ch.tx, v)
      if ok then
        record_sent(ch, v)
      elseif err ~= "full" and err ~= "closed" then
        violation("%s: try_send gave %s", ch.name, tostring(err))
      end
    end,
    -- 8: try_recv from the root, when no consumer task receives
    function()
      local ch = pick(chans)
      if consumer_busy(ch) or not ch.rx then return end
      local v, err = ch.k.try_recv(ch.rx)
      if v ~= nil then
        record_got(ch, v)
      elseif err ~= "empty" and err ~= "closed" then
        violation("%s: try_recv gave %s", ch.name, tostring(err))
      end
    end,
    -- 9: close the main sender (producers already spawned keep theirs)
    function()
      local ch = pick(chans)
      if not ch.tx_closed then
        ch.tx:close()
        ch.tx_closed = true
      end
    end,
    -- 10: close the receiver (queued values are dropped: no loss check)
    function()
      local ch = chans[byte() % #chans + 1]
      if byte() % 4 ~= 0 or not ch.rx then return end      -- rarer than the rest
      ch.rx:close()
      ch.rx_closed = true
    end,
    -- 11: a task holding a byte-channel claim across a wait
    function()
      local ch = chans[2]
      if ch.tx_closed then return end
      next_pid = next_pid + 1
      spawn("claim", claim_holder, ch, ch.tx:clone(), byte() % (ch.cap) + 1, byte() % 3, byte() % 2 == 0, next_pid)
    end,
    -- 12: a task waiting on a new cancel token
    function()
      local tok = nexus.cancel_token()
      tokens[#tokens + 1] = tok
      spawn("token", token_waiter, byte() % 2 == 0 and tok or tok:child())
    end,
    -- 13: cancel a token
    function()
      local tok = pick(tokens)
      if tok then tok:cancel() end
    end,
    -- 14: collect garbage (a step, or a full cycle)
    function()
      local b = byte()
      if b % 4 == 0 then collectgarbage() else collectgarbage("step", b) end
    end,
    -- 15: close the runtime early (after this root returns)
    function()
      if byte() % 8 == 0 then early_close = true end
    end,
    -- 16: drop the receiver: no close, the collector finalizes it (as
    -- rx:close: queued values dropped, no loss check) once its consumer
    -- task, if any, has ended
    function()
      local ch = chans[byte() % #chans + 1]
      if byte() % 4 ~= 0 or not ch.rx then return end      -- rarer than the rest
      ch.rx = nil
      ch.rx_closed = true
    end,
    -- 17: a producer of 1-8 values that leaves its sender to the collector
    function()
      local ch = pick(chans)
      if ch.tx_closed then return end
      next_pid = next_pid + 1
      spawn("producer", producer, ch, ch.tx:clone(), next_pid, byte() % 8 + 1, true)
    end,
    -- 18: a task with a drop guard on a new token, and a task waiting on it
    function()
      local b = byte()
      local g = { tok = nexus.cancel_token(), armed = false }
      tokens[#tokens + 1] = g.tok
      g.h = spawn("guard", guard_holder, g, b % 2 == 1, math.floor(b / 2) % 3)
      guards[#guards + 1] = g
      spawn("token", token_waiter, g.tok)
    end,
    -- 19: a producer of 1-8 values, each through a select of two send ops
    -- (two channels, or twice the same) and a 0-2 ms sleep op
    function()
      local a, b = pick(chans), pick(chans)
      if a.tx_closed or b.tx_closed then return end
      next_pid = next_pid + 1
      spawn("producer", select_producer, a, a.tx:clone(), b, b.tx:clone(), next_pid,
        byte() % 8 + 1, byte() % 3)
    end,
    -- 20: a consumer of 1-8 selects of its recv op, a 1 ms sleep op and a
    -- token's cancelled op (a new token, or one of the others)
    function()
      local ch = pick(chans)
      if consumer_busy(ch) or not ch.rx then return end
      local tok = pick(tokens)
      if not tok or byte() % 2 == 0 then
        tok = nexus.cancel_token()
        tokens[#tokens + 1] = tok
      end
      ch.consumer = spawn("consumer", select_consumer, ch, ch.rx, byte() % 8 + 1, tok)
    end,
  }

  -- After each operation: no channel holds more than its capacity.
  local function check_len()
    for _, ch in ipairs(chans) do
      local rx = ch.rx
      if rx then
        local n, cap = rx:len(), rx:capacity()
        if n < 0 or n > cap then violation("%s: rx:len() is %d, capacity %d", ch.name, n, cap) end
      end
    end
  end

  -- Every guard task that has ended armed has cancelled its token.
  local function check_guards()
    for _, g in ipairs(guards) do
      if g.h:is_finished() and g.armed and not g.tok:is_cancelled() then
        violation("a task ended with an armed drop guard and its token is not cancelled")
      end
    end
  end

  local ok, err = pcall(rt.block_on, rt, function()
    for i, name in ipairs(KIND_NAMES) do
      local cap = byte() % 4 + 1
      local k = kinds[name]
      local tx, rx = k.new(cap)
      chans[i] = { name = name, k = k, tx = tx, rx = rx, cap = cap * 8,
                   sent = {}, got = {}, last = {}, nsent = 0, ngot = 0 }
    end
    if INJECT == "stuck" then spawn("token", token_waiter, nexus.cancel_token()) end
    if TRACE then
      for i, ch in ipairs(chans) do
        io.stderr:write(("fuzz: %s capacity %d%s\n"):format(KIND_NAMES[i],
          i == 2 and ch.cap or ch.cap / 8, i == 2 and " bytes" or ""))
      end
    end
    for _ = 1, MAX_OPS do
      if pos >= #input or early_close then break end
      local op, p0 = byte() % #ops + 1, pos
      ops[op]()
      check_len()
      check_guards()
      if TRACE then
        io.stderr:write(("fuzz: %-16s %s (%d tasks)\n"):format(OP_NAMES[op],
          table.concat({ input:byte(p0 + 1, pos) }, " "), #tasks))
      end
    end
  end)
  if not ok then
    rt:close()
    error(err, 0)
  end

  if not early_close then
    -- Close every sender and cancel every token: every task must end.
    -- Then drain what is left; compare with what was sent. Senders left
    -- to the collector (aborted or dropping producers) and dropped
    -- receivers close only when finalized, and a task may still hold one
    -- when a cycle runs: each wait is retried, with full cycles between.
    ok, err = pcall(rt.block_on, rt, function()
      local function settle(fn, ...)
        local step, waited = 0.001, 0
        while waited < SETTLE_TOTAL do
          local done, r, e = nexus.timeout(step, fn, ...)
          if done then return true, r, e end
          collectgarbage()
          collectgarbage()
          waited = waited + step
          step = math.min(step * 2, 0.05)
        end
        return false
      end
      collectgarbage()
      collectgarbage()
      for _, g in ipairs(guards) do
        if not g.h:is_finished() and not settle(g.h.result, g.h) then
          violation("a guard task did not end")
        end
      end
      check_guards()
      for _, tok in ipairs(tokens) do tok:cancel() end
      for _, ch in ipairs(chans) do
        if not ch.tx_closed then
          ch.tx:close()
          ch.tx_closed = true
        end
      end
      for _, ch in ipairs(chans) do
        local c = ch.consumer
        if c and not c:is_finished() then
          local done, r, e = settle(c.result, c)
          if not done then violation("%s: a consumer did not end once every sender closed", ch.name) end
          if r == false and e ~= "aborted" then error(e, 0) end
        end
        if not ch.rx_closed then
          local drained = settle(function()
            while true do
              local v, e = ch.k.recv(ch.rx)
              if v == nil then
                if e ~= "closed" then violation("%s: drain gave %s", ch.name, tostring(e)) end
                return
              end
              record_got(ch, v)
            end
          end)
          if not drained then violation("%s: the drain never saw closed (a sender left open?)", ch.name) end
        end
      end
      -- Producers blocked on a channel whose receiver was dropped wake
      -- when it is finalized; a task's error is a violation.
      for _, t in ipairs(tasks) do
        if not t.h:is_finished() then
          local done, r, e = settle(t.h.result, t.h)
          if not done then
            violation("a %s task did not end once every sender was closed, every receiver dropped and every token cancelled", t.kind)
          end
          if r == false and e ~= "aborted" then error(e, 0) end
        end
      end
    end)
    if not ok then
      rt:close()
      error(err, 0)
    end
    local quiet, why = rt:shutdown_quiesce(5)
    if not quiet then
      local left = rt:stats().tasks_alive
      rt:close()
      violation("%d task(s) did not end once every sender was closed and every token cancelled (%s)", left, tostring(why))
    end
    for _, ch in ipairs(chans) do
      if not ch.rx_closed then
        for v in pairs(ch.sent) do
          if not ch.got[v] then violation("%s: value %d was sent but never received", ch.name, v) end
        end
      end
    end
  end

  rt:close()
  local alive = rt:stats().tasks_alive
  if alive ~= 0 then violation("%d task(s) alive after rt:close()", alive) end
  for _, t in ipairs(tasks) do
    if not t.h:is_finished() then violation("a %s task is not finished after rt:close()", t.kind) end
  end
  check_guards()     -- rt:close() aborted the guard tasks still running
  rt, chans, tasks, tokens, guards, st.rt = nil, nil, nil, nil, nil, nil
  collectgarbage()
  collectgarbage()
  local fd1 = count_fds()
  if fd1 ~= fd0 then violation("open descriptors: %d before, %d after", fd0, fd1) end
  -- The runtime's memory is freed once nothing references it (a channel
  -- or a handle that leaked would keep it).
  local _, live = core._runtime_slots()
  if live > live0 then violation("%d runtime(s) not freed after close and a full GC", live - live0) end
end

-- One input; a violation closes the runtime before it is raised, so the
-- next input (in replay.lua) starts clean.
local function run(input)
  local st = {}
  local ok, err = pcall(run1, input, st)
  if not ok then
    if st.rt then pcall(st.rt.close, st.rt) end
    error(err, 0)
  end
end

return run

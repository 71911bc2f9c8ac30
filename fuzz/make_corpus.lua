-- fuzz/make_corpus.lua [DIR]: writes the seed corpus (default fuzz/corpus)
-- for the fuzzer: inputs that use each operation of fuzz/ops.lua on each
-- channel kind, a few mixes, and some pseudo-random ones (fixed seed).
-- The bytes follow ops.lua's decoding: three capacity bytes, then for each
-- operation its number (0-20) and its argument bytes.
local dir = arg[1] or ((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "corpus")
os.execute("mkdir -p '" .. dir .. "'")

local function write(name, bytes)
  local f = assert(io.open(dir .. "/" .. name, "wb"))
  f:write(string.char(unpack(bytes)))
  f:close()
end

-- Operation numbers (ops.lua's table, 0-based).
local PRODUCE, CONSUME, CONSUME_T, ABORT, JOIN, SLEEP, YIELD, TRY_SEND, TRY_RECV,
      CLOSE_TX, CLOSE_RX, CLAIM, TOKEN, CANCEL, GC, EARLY, DROP_RX, DROP_PRODUCE, GUARD =
      0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18

local n = 0
local function seed(name, caps, ops)
  local b = { caps[1], caps[2], caps[3] }
  for _, v in ipairs(ops) do b[#b + 1] = v end
  n = n + 1
  write(("%02d-%s"):format(n, name), b)
end

for ch = 0, 2 do
  local k = ({ "chan", "bytes", "mpsc" })[ch + 1]
  seed(k .. "-produce-consume", { 0, 1, 2 }, { PRODUCE, ch, 7, CONSUME, ch, 7, SLEEP, 1 })
  seed(k .. "-backpressure", { 0, 0, 0 }, { PRODUCE, ch, 7, PRODUCE, ch, 7, YIELD, CONSUME, ch, 3, SLEEP, 2 })
  seed(k .. "-timed-consumer", { 1, 1, 1 }, { CONSUME_T, ch, 3, SLEEP, 2, PRODUCE, ch, 2, SLEEP, 2 })
  seed(k .. "-abort-producer", { 0, 0, 0 }, { PRODUCE, ch, 7, PRODUCE, ch, 5, YIELD, ABORT, 0, CONSUME, ch, 7 })
  seed(k .. "-abort-consumer", { 0, 0, 0 }, { CONSUME, ch, 7, YIELD, ABORT, 0, PRODUCE, ch, 3 })
  seed(k .. "-join", { 2, 2, 2 }, { PRODUCE, ch, 3, CONSUME, ch, 3, JOIN, 0, JOIN, 0 })
  seed(k .. "-try", { 0, 0, 0 }, { TRY_SEND, ch, TRY_SEND, ch, TRY_RECV, ch, TRY_RECV, ch, TRY_RECV, ch })
  seed(k .. "-close-tx", { 1, 1, 1 }, { PRODUCE, ch, 4, CLOSE_TX, ch, CONSUME, ch, 7, YIELD })
  seed(k .. "-close-rx", { 0, 0, 0 }, { PRODUCE, ch, 7, YIELD, CLOSE_RX, ch, 0, YIELD, PRODUCE, ch, 2 })
  seed(k .. "-gc", { 0, 0, 0 }, { PRODUCE, ch, 7, GC, 0, CONSUME, ch, 7, GC, 1, GC, 4 })
end
seed("claim-commit", { 0, 0, 0 }, { CLAIM, 3, 0, 0, CONSUME, 1, 3, SLEEP, 1 })
seed("claim-abort-task", { 0, 0, 0 }, { CLAIM, 7, 2, 0, YIELD, ABORT, 0, PRODUCE, 1, 2, CONSUME, 1, 3 })
seed("claim-abort", { 1, 1, 1 }, { CLAIM, 2, 1, 1, CLAIM, 3, 0, 0, CONSUME, 1, 5, SLEEP, 2 })
seed("claim-close", { 0, 0, 0 }, { CLAIM, 7, 2, 0, CLOSE_TX, 1, CONSUME, 1, 2 })
seed("tokens", { 0, 0, 0 }, { TOKEN, 0, TOKEN, 1, CANCEL, 0, YIELD, CANCEL, 1, ABORT, 1 })
seed("tokens-left", { 0, 0, 0 }, { TOKEN, 0, TOKEN, 1, TOKEN, 0 })
seed("early-close", { 0, 0, 0 }, { PRODUCE, 0, 7, PRODUCE, 1, 7, CONSUME, 2, 7, TOKEN, 0, CLAIM, 3, 2, 1, EARLY, 0 })
seed("mix-all", { 3, 2, 1 },
  { PRODUCE, 0, 7, PRODUCE, 1, 7, PRODUCE, 2, 7, CONSUME, 0, 7, CONSUME_T, 1, 3, CONSUME, 2, 4,
    TOKEN, 0, CLAIM, 4, 1, 0, YIELD, ABORT, 2, JOIN, 1, SLEEP, 1, TRY_SEND, 2, TRY_RECV, 1,
    GC, 3, CANCEL, 0, CLOSE_TX, 0, CLOSE_RX, 2, 0, SLEEP, 2 })

-- Pseudo-random inputs (a fixed LCG: the same corpus every time).
local x = 12345
local function rnd(m)
  x = (x * 1103515245 + 12345) % 2147483648
  return math.floor(x / 65536) % m
end
for i = 1, 16 do
  local b = {}
  for j = 1, 20 + rnd(200) do b[j] = rnd(256) end
  n = n + 1
  write(("%02d-random-%d"):format(n, i), b)
end

-- Ends left to the collector (ops 16 and 17), after the rest so that the
-- names above stay as they were.
for ch = 0, 2 do
  local k = ({ "chan", "bytes", "mpsc" })[ch + 1]
  seed(k .. "-drop-tx", { 0, 1, 2 }, { DROP_PRODUCE, ch, 5, CONSUME, ch, 7, YIELD, SLEEP, 1 })
  seed(k .. "-drop-tx-drained", { 0, 0, 0 }, { DROP_PRODUCE, ch, 7, DROP_PRODUCE, ch, 3, YIELD, GC, 0 })
  seed(k .. "-drop-rx", { 0, 0, 0 }, { PRODUCE, ch, 7, PRODUCE, ch, 7, YIELD, DROP_RX, ch, 0, GC, 0, YIELD, PRODUCE, ch, 2 })
  seed(k .. "-drop-rx-consumer", { 0, 0, 0 }, { CONSUME, ch, 7, DROP_RX, ch, 0, PRODUCE, ch, 3, GC, 0, ABORT, 0 })
end
seed("drop-mix", { 1, 0, 2 },
  { DROP_PRODUCE, 0, 7, DROP_PRODUCE, 1, 7, DROP_PRODUCE, 2, 7, CONSUME_T, 0, 3, CONSUME, 1, 2,
    ABORT, 1, DROP_RX, 2, 0, GC, 1, CLAIM, 3, 1, 1, YIELD, CLOSE_TX, 1, GC, 0, SLEEP, 1 })

-- Drop guards (op 18: bit 0 disarms, the next bits pick the wait).
seed("guard-armed", { 0, 0, 0 }, { GUARD, 0, YIELD, YIELD, SLEEP, 1 })
seed("guard-abort", { 0, 0, 0 }, { GUARD, 4, YIELD, ABORT, 0, YIELD })
seed("guard-disarmed", { 0, 0, 0 }, { GUARD, 1, SLEEP, 2, GUARD, 3 })
seed("guard-early-close", { 0, 0, 0 }, { GUARD, 2, GUARD, 4, TOKEN, 0, EARLY, 0 })

-- Select (op 19: a producer sending each value through a select of two
-- channels' send ops and a sleep op; op 20: a consumer selecting over its
-- recv op, a sleep op and a token).
local SEL_PRODUCE, SEL_CONSUME = 19, 20
for ch = 0, 2 do
  local k = ({ "chan", "bytes", "mpsc" })[ch + 1]
  local other = (ch + 1) % 3
  seed(k .. "-select-produce", { 0, 0, 0 }, { SEL_PRODUCE, ch, other, 7, 1, CONSUME, ch, 7, CONSUME, other, 7, SLEEP, 2 })
  seed(k .. "-select-same", { 0, 0, 0 }, { SEL_PRODUCE, ch, ch, 7, 0, SEL_CONSUME, ch, 0, 7, SLEEP, 2 })
  seed(k .. "-select-consume", { 1, 1, 1 }, { SEL_CONSUME, ch, 0, 7, PRODUCE, ch, 5, SLEEP, 1, TOKEN, 0 })
  seed(k .. "-select-abort", { 0, 0, 0 }, { SEL_PRODUCE, ch, other, 7, 2, PRODUCE, ch, 7, YIELD, ABORT, 0, SEL_CONSUME, ch, 1, 5 })
end
seed("select-cancel", { 0, 0, 0 }, { TOKEN, 0, SEL_CONSUME, 0, 0, 1, 7, YIELD, CANCEL, 0, SEL_PRODUCE, 0, 1, 3, 0 })

print(("fuzz/make_corpus.lua: %d inputs in %s"):format(n, dir))

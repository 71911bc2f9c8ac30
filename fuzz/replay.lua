-- fuzz/replay.lua FILE...: runs the fuzz driver (fuzz/ops.lua) on each
-- input file under plain luajit (no libFuzzer, no sanitizers): how a crash
-- input is reproduced outside the fuzzer, and how the spec runs the seed
-- corpus. Prints "ok FILE" per input; on a violation prints it and exits 1.
local dir = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
local run = dofile(dir .. "ops.lua")
local failed = 0
for _, path in ipairs(arg) do
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  local ok, err = pcall(run, data)
  if ok then
    print("ok " .. path)
  else
    print("FAIL " .. path .. ": " .. tostring(err))
    failed = failed + 1
  end
end
os.exit(failed == 0 and 0 or 1)

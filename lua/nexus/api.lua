-- nexus.api: the C entry points the hot paths call through the FFI.
-- The module hands us a table of function pointers (it is loaded privately
-- by require, so ffi.C cannot see its symbols); fields are cached as locals
-- by the callers, so a JIT-compiled call costs what a direct FFI call costs.
local ffi = require "ffi"
local core = require "nexus.core"

ffi.cdef [[
typedef struct nx_api {
  double (*now)(void);
  double (*event_time)(void);
  int (*in_task)(void);
  int (*sleep_until)(double);
  int (*dl_push)(double);
  int (*dl_state)(int);
  void (*dl_pop)(int);
  void (*cancel_wait)(void);
  void (*set_borrowing)(int);
  int (*join_take)(void *);
} nx_api;
]]

return ffi.cast("const nx_api *", core.api)

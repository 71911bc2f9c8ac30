/* thread.c - nexus.thread.run: a Lua function run in a fresh Lua state on
 * libuv's thread pool, awaited by the calling task (the bridge of seed
 * pattern 6: blocking cold-path work off the loop's thread).
 *
 * The function travels as bytecode (string.dump: it has no upvalues), its
 * arguments and results as codec.c values. Like a DNS request, a job
 * outlives its Lua userdata when the task gives up (abort, timeout, a
 * closing runtime): see nx_preq in net.h.
 */
#include "net.h"
#include "codec.h"

#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#define NX_THREAD_MT "nexus.thread.job"
#define NX_TMT lua_upvalueindex(1)
#define NX_TB_KEY "nexus.thread.traceback"

typedef struct nx_job {
  nx_preq pr;             /* first: the wait's object */
  uv_work_t req;
  nx_buf code, in, out;   /* bytecode; arguments; results or [error, traceback] */
  int nargs, nout;
  int status;             /* of the after-work callback: UV_ECANCELED */
  uint8_t ok;
} nx_job;

static void nx_job_free(nx_preq *p) {
  nx_job *j = (nx_job *)p;
  free(j->code.p);
  free(j->in.p);
  free(j->out.p);
  free(j);
}

/* ---- in the pool thread ---- */

/* Message handler: keeps the error value as it is and leaves the
 * traceback in the registry, so the caller gets both apart. */
static int nx_job_handler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
  lua_setfield(L, LUA_REGISTRYINDEX, NX_TB_KEY);
  return 1;
}

/* Runs under lua_cpcall in the job's own state: a failure to copy a
 * result (or memory) raises out of it, and nx_job_work reports that. */
static int nx_job_main(lua_State *L) {
  nx_job *j = lua_touserdata(L, 1);
  lua_settop(L, 0);
  luaL_openlibs(L);
  lua_pushcfunction(L, nx_job_handler);
  if (luaL_loadbuffer(L, (const char *)j->code.p, j->code.len, "=nexus.thread.run") != 0)
    return lua_error(L);
  const uint8_t *p = j->in.p, *end = p + j->in.len;
  luaL_checkstack(L, j->nargs + 1, "too many arguments");
  for (int i = 0; i < j->nargs; i++)
    if (nx_codec_get(L, &p, end) != 0) return luaL_error(L, "nexus.thread.run: corrupt arguments");
  j->out.len = 0;
  if (lua_pcall(L, j->nargs, LUA_MULTRET, 1) != 0) {
    nx_codec_put(L, &j->out, 2, "nexus.thread.run", "raise", 1);
    lua_getfield(L, LUA_REGISTRYINDEX, NX_TB_KEY);
    if (!lua_isstring(L, -1)) {
      lua_pop(L, 1);
      lua_pushliteral(L, "(no traceback)");
    }
    nx_codec_put(L, &j->out, -1, "nexus.thread.run", "raise", 1);
    j->nout = 2;
    return 0;
  }
  int n = lua_gettop(L);
  for (int i = 2; i <= n; i++) nx_codec_put(L, &j->out, i, "nexus.thread.run", "return", 1);
  j->nout = n - 1;
  j->ok = 1;
  return 0;
}

/* An error outside the function's own pcall (bytecode that does not
 * load, a result that cannot be copied, memory): [message, ""]. */
static void nx_job_fail(nx_job *j, const char *msg) {
  j->ok = 0;
  j->nout = 2;
  j->out.len = 0;
  if (nx_codec_put_string(&j->out, msg, strlen(msg)) != 0 || nx_codec_put_string(&j->out, "", 0) != 0)
    j->nout = 0;                 /* l_result says "out of memory" */
}

static void nx_job_work(uv_work_t *req) {
  nx_job *j = req->data;
  lua_State *L = luaL_newstate();
  if (!L) {
    nx_job_fail(j, "nexus.thread.run: cannot create a Lua state (out of memory)");
    return;
  }
  if (lua_cpcall(L, nx_job_main, j) != 0) {
    const char *msg = lua_tostring(L, -1);
    nx_job_fail(j, msg ? msg : "nexus.thread.run: the job failed");
  }
  lua_close(L);
}

/* ---- on the loop's thread ---- */

static void nx_job_after(uv_work_t *req, int status) {
  nx_job *j = req->data;
  j->status = status;
  nx_preq_done(&j->pr);
}

/* core.thread_run(bytecode, ...) -> job: queued, and the running task
 * waits on it (the Lua side suspends, then calls core.thread_result). */
static int l_run(lua_State *L) {
  const char *fname = "nexus.thread.run";
  size_t n;
  const char *code = luaL_checklstring(L, 1, &n);
  nx_rt *rt = nx_net_task_rt(L, nx_cur_rt, fname);
  int nargs = lua_gettop(L) - 1;
  void **ud = nx_net_newud(L, NX_TMT, NX_TAG_THREAD);
  nx_job *j = calloc(1, sizeof *j);
  if (!j) return nx_net_error(L, "%s: out of memory", fname);
  j->pr.done = 1;                /* not queued: __gc frees it if copying raises */
  *ud = j;
  j->pr.rt = rt;
  j->pr.req = (uv_req_t *)&j->req;
  j->pr.destroy = nx_job_free;
  j->req.data = j;
  if (nx_buf_reserve(&j->code, n) != 0) return nx_net_error(L, "%s: out of memory", fname);
  memcpy(j->code.p, code, n);
  j->code.len = n;
  for (int i = 2; i <= nargs + 1; i++) nx_codec_put(L, &j->in, i, fname, "pass", 1);
  j->nargs = nargs;
  int rc = uv_queue_work(&rt->loop, &j->req, nx_job_work, nx_job_after);
  if (rc != 0) return nx_net_error(L, "%s: cannot queue the job (%s)", fname, nx_net_strerror(rc));
  j->pr.done = 0;
  nx_preq_wait(L, rt, &j->pr, fname);
  return 1;
}

/* core.thread_result(job) -> nil (still running: waits again) |
 * true, results... | false, err, traceback */
static int l_result(lua_State *L) {
  const char *fname = "nexus.thread.run";
  nx_job *j = nx_net_check(L, 1, NX_TAG_THREAD, fname, "a thread job");
  if (!j->pr.done) {
    nx_preq_wait(L, nx_net_task_rt(L, nx_cur_rt, fname), &j->pr, fname);
    return 0;
  }
  if (j->status != 0) return nx_net_error(L, "%s: the job was cancelled", fname);
  if (j->nout == 0 && !j->ok) return nx_net_error(L, "%s: out of memory", fname);
  luaL_checkstack(L, j->nout + 1, "too many results");
  lua_pushboolean(L, j->ok);
  const uint8_t *p = j->out.p, *end = p + j->out.len;
  for (int i = 0; i < j->nout; i++)
    if (nx_codec_get(L, &p, end) != 0) return nx_net_error(L, "%s: corrupt results", fname);
  return 1 + j->nout;
}

static int l_job_gc(lua_State *L) {
  nx_job **ud = lua_touserdata(L, 1);
  nx_job *j = *ud;
  if (!j) return 0;
  *ud = NULL;
  nx_preq_gc(&j->pr);
  return 0;
}

static int l_job_tostring(lua_State *L) {
  lua_pushliteral(L, "nexus.thread.job");
  return 1;
}

static const luaL_Reg nx_job_meta[] = {
  {"__gc", l_job_gc}, {"__tostring", l_job_tostring}, {NULL, NULL},
};

static const luaL_Reg nx_thread_funcs[] = {
  {"thread_run", l_run}, {"thread_result", l_result}, {NULL, NULL},
};

void nx_thread_open(lua_State *L) {
  int m = lua_gettop(L);
  nx_net_newmt(L, NX_THREAD_MT);
  lua_pushvalue(L, -1);
  nx_net_setfuncs(L, m + 1, nx_job_meta, 1);
  nx_net_setfuncs(L, m, nx_thread_funcs, 1);
  lua_pop(L, 2);
}

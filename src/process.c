/* process.c - nexus.process.spawn: a child process (uv_spawn) whose stdin,
 * stdout and stderr are nexus streams (pipes, tcp.c), wait, kill.
 *
 * libuv reaps the child (its SIGCHLD handling) while the process handle
 * lives, so the handle stays until the child has exited, whatever happens
 * to the Lua object: no zombie. A runtime that closes with children still
 * running kills them (SIGKILL) and reaps them. libuv opens every
 * descriptor close-on-exec, so the child gets only its three stdio ends.
 */
#include "process.h"

#include <errno.h>
#include <stddef.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <lauxlib.h>

#include "net.h"

#define NX_PROC_MT "nexus.process"

typedef struct nx_proc {
  uv_process_t h;               /* first */
  nx_owned own;
  nx_rt *rt;
  nx_task *waiter;
  int exited, running;
  int64_t status;
  int termsig;
  int udgone;                   /* the userdata was collected */
} nx_proc;

typedef struct nx_pbox { nx_proc *p; } nx_pbox;

static void nx_proc_free_cb(uv_handle_t *h) {
  nx_proc *p = h->data;
  if (p->udgone) free(p);
  else p->running = 0;
}

static void nx_proc_exit_cb(uv_process_t *h, int64_t status, int termsig) {
  nx_proc *p = h->data;
  p->exited = 1;
  p->status = status;
  p->termsig = termsig;
  nx_disown(p->rt, &p->own);
  if (p->waiter) {
    nx_task *t = p->waiter;
    p->waiter = NULL;
    nx_task_wake(p->rt, t, NX_WAKE_OK);
  }
  uv_close((uv_handle_t *)&p->h, nx_proc_free_cb);
}

/* The runtime closes with the child running: kill it and reap it. */
static void nx_proc_close(nx_rt *rt, nx_owned *o) {
  (void)rt;
  nx_proc *p = (nx_proc *)((char *)o - offsetof(nx_proc, own));
  if (p->exited) return;
  pid_t pid = p->h.pid;
  kill(pid, SIGKILL);
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  p->exited = 1;
  p->termsig = SIGKILL;
  uv_close((uv_handle_t *)&p->h, nx_proc_free_cb);
}

static nx_proc *nx_check_proc(lua_State *L, const char *fname) {
  nx_pbox *b = luaL_testudata(L, 1, NX_PROC_MT);
  if (!b || !b->p) luaL_error(L, "%s: expected a process", fname);
  return b->p;
}

static int l_proc_gc(lua_State *L) {
  nx_pbox *b = luaL_testudata(L, 1, NX_PROC_MT);
  if (!b || !b->p) return 0;
  nx_proc *p = b->p;
  b->p = NULL;
  if (p->running) p->udgone = 1;   /* the handle goes once the child exited */
  else free(p);
  return 0;
}

/* A "K=V" array from the table at idx (NULL: inherit). */
static char **nx_env(lua_State *L, int idx) {
  if (lua_isnil(L, idx)) return NULL;
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    n++;
    lua_pop(L, 1);
  }
  luaL_checkstack(L, (int)n + 8, "nexus.process.spawn: too many environment variables");
  char **env = lua_newuserdata(L, (n + 1) * sizeof *env);   /* freed by the GC */
  size_t i = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pushvalue(L, -2);
    lua_pushliteral(L, "=");
    lua_pushvalue(L, -3);
    lua_concat(L, 3);
    env[i++] = (char *)lua_tostring(L, -1);
    lua_insert(L, -3);              /* kept on the stack below the key */
    lua_pop(L, 1);
  }
  env[i] = NULL;
  return env;
}

/* core.process_spawn(file, args, env, cwd, stdio): process, stdin,
 * stdout, stderr (a stream or false each) | nil, err. The Lua side
 * checked the arguments; stdio: a string of three letters, p (pipe),
 * i (inherit), n (ignore). */
static int l_process_spawn(lua_State *L) {
  const char *file = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  const char *cwd = lua_tostring(L, 4);
  const char *modes = luaL_optstring(L, 5, "ppp");
  nx_rt *rt = nx_cur_rt;
  if (!rt || !rt->cur) return luaL_error(L, "nexus.process.spawn: not inside a nexus task");
  int nargs = (int)lua_objlen(L, 2);
  char **argv = lua_newuserdata(L, (size_t)(nargs + 2) * sizeof *argv);
  argv[0] = (char *)file;
  for (int i = 1; i <= nargs; i++) {
    lua_rawgeti(L, 2, i);
    argv[i] = (char *)lua_tostring(L, -1);
    lua_pop(L, 1);                  /* the table keeps the string */
  }
  argv[nargs + 1] = NULL;
  char **env = nx_env(L, 3);
  int top = lua_gettop(L);
  nx_pbox *b = lua_newuserdata(L, sizeof *b);
  b->p = NULL;
  luaL_getmetatable(L, NX_PROC_MT);
  lua_setmetatable(L, -2);
  uv_stdio_container_t io[3];
  for (int k = 0; k < 3; k++) {
    if (modes[k] == 'p') {
      uv_stream_t *st = nx_pipe_stream_new(L, rt);
      if (!st) return luaL_error(L, "nexus.process.spawn: out of memory");
      io[k].flags = UV_CREATE_PIPE | (k == 0 ? UV_READABLE_PIPE : UV_WRITABLE_PIPE);
      io[k].data.stream = st;
    } else {
      lua_pushboolean(L, 0);
      io[k].flags = modes[k] == 'i' ? UV_INHERIT_FD : UV_IGNORE;
      io[k].data.fd = k;
    }
  }
  nx_proc *p = calloc(1, sizeof *p);
  if (!p) return luaL_error(L, "nexus.process.spawn: out of memory");
  uv_process_options_t o;
  memset(&o, 0, sizeof o);
  o.file = file;
  o.args = argv;
  o.env = env;
  o.cwd = cwd;
  o.stdio_count = 3;
  o.stdio = io;
  o.exit_cb = nx_proc_exit_cb;
  p->h.data = p;
  p->rt = rt;
  int rc = uv_spawn(&rt->loop, &p->h, &o);
  if (rc != 0) {
    /* libuv closes a failed process handle itself: wait for that */
    p->udgone = 1;
    uv_close((uv_handle_t *)&p->h, nx_proc_free_cb);
    lua_settop(L, top);
    lua_pushnil(L);
    lua_pushstring(L, nx_net_strerror(rc));
    return 2;
  }
  p->running = 1;
  p->own.close = nx_proc_close;
  nx_own(rt, &p->own);
  b->p = p;
  return 4;
}

static void nx_proc_cancel(nx_rt *rt, nx_task *t) {
  (void)rt;
  nx_proc *p = t->wobj;
  if (p->waiter == t) p->waiter = NULL;
}

/* core.process_wait(p): code | nil, "signal", signo once exited; else
 * false (the running task now waits). */
static int l_process_wait(lua_State *L) {
  nx_proc *p = nx_check_proc(L, "process:wait");
  if (p->exited) {
    if (p->termsig) {
      lua_pushnil(L);
      lua_pushliteral(L, "signal");
      lua_pushinteger(L, p->termsig);
      return 3;
    }
    lua_pushinteger(L, (lua_Integer)p->status);
    return 1;
  }
  nx_rt *rt = nx_cur_rt;
  if (!rt || rt != p->rt) return luaL_error(L, "process:wait: not inside a task of the process's runtime");
  if (p->waiter && p->waiter != rt->cur) return luaL_error(L, "process:wait: another task is already waiting");
  if (nx_wait(rt, nx_proc_cancel, p) != NX_OK) return luaL_error(L, "process:wait: not inside a nexus task");
  p->waiter = rt->cur;
  lua_pushboolean(L, 0);
  return 1;
}

/* core.process_kill(p, signo): true | nil, err (false once exited). */
static int l_process_kill(lua_State *L) {
  nx_proc *p = nx_check_proc(L, "process:kill");
  int sig = (int)luaL_checkinteger(L, 2);
  if (p->exited) {
    lua_pushboolean(L, 0);
    return 1;
  }
  int rc = uv_process_kill(&p->h, sig);
  if (rc != 0) {
    lua_pushnil(L);
    lua_pushstring(L, nx_net_strerror(rc));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_process_pid(lua_State *L) {
  nx_proc *p = nx_check_proc(L, "process:pid");
  lua_pushinteger(L, p->h.pid);
  return 1;
}

static const luaL_Reg nx_process_funcs[] = {
  {"process_spawn", l_process_spawn}, {"process_wait", l_process_wait},
  {"process_kill", l_process_kill}, {"process_pid", l_process_pid}, {NULL, NULL},
};

void nx_process_open(lua_State *L) {
  nx_wait_kind(nx_proc_cancel, "process wait", NULL);
  luaL_newmetatable(L, NX_PROC_MT);
  lua_pushcfunction(L, l_proc_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_register(L, NULL, nx_process_funcs);
}

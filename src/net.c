/* net.c - helpers shared by tcp.c, udp.c and dns.c: addresses, error
 * strings, argument checks and the wait sentinel. */
#include "net.h"

#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <netinet/in.h>

const char *nx_net_strerror(int err) {
  switch (err) {
  case UV_EOF: return "eof";
  case UV_ETIMEDOUT: return "timeout";
  case UV_ECANCELED: return "closed";          /* a request of a closed handle */
  case UV_EAI_NONAME: return "name not found";
  case UV_EAI_NODATA: return "no address for name";
  default: return uv_strerror(err);            /* lowercase already */
  }
}

int nx_net_addr(const char *host, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (strcmp(host, "*") == 0) host = "0.0.0.0";
  else if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0) return 0;
  return UV_EINVAL;
}

int nx_net_ip(const struct sockaddr *sa, char *ip, size_t iplen) {
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    if (uv_ip6_name(a, ip, iplen) != 0) snprintf(ip, iplen, "?");
    return ntohs(a->sin6_port);
  }
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    if (uv_ip4_name(a, ip, iplen) != 0) snprintf(ip, iplen, "?");
    return ntohs(a->sin_port);
  }
  snprintf(ip, iplen, "?");
  return 0;
}

void nx_net_fmt(const struct sockaddr *sa, char *out, size_t outlen) {
  char ip[NX_ADDRSTRLEN];
  int port = nx_net_ip(sa, ip, sizeof ip);
  snprintf(out, outlen, sa->sa_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip, port);
}

int nx_net_push_addr(lua_State *L, const struct sockaddr *sa) {
  char ip[NX_ADDRSTRLEN], full[NX_ADDRSTRLEN + 8];
  int port = nx_net_ip(sa, ip, sizeof ip);
  snprintf(full, sizeof full, sa->sa_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip, port);
  lua_pushstring(L, full);
  lua_pushstring(L, ip);
  lua_pushinteger(L, port);
  return 3;
}

int nx_net_fail(lua_State *L, int err) {
  lua_pushnil(L);
  lua_pushstring(L, nx_net_strerror(err));
  return 2;
}

int nx_net_error(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return lua_error(L);
}

const char *nx_net_checkhost(lua_State *L, int idx, const char *fname, const char *what) {
  size_t len;
  if (lua_type(L, idx) != LUA_TSTRING)
    nx_net_error(L, "%s: %s must be a string, got %s", fname, what, nx_net_typename(L, idx));
  const char *s = lua_tolstring(L, idx, &len);
  if (strlen(s) != len) nx_net_error(L, "%s: %s contains a NUL byte", fname, what);
  return s;
}

const char *nx_net_typename(lua_State *L, int idx) {
  return lua_isnone(L, idx) ? "nil" : luaL_typename(L, idx);
}

int nx_net_wait(lua_State *L, nx_rt *rt) {
  lua_pushboolean(L, 0);
  if (lua_isyieldable(L) && nx_may_suspend(rt, L)) return 1;
  lua_pushboolean(L, 1);
  return 2;
}

nx_rt *nx_net_rt(lua_State *L, nx_rt *rt, const char *fname) {
  nx_rt *cur = nx_cur_rt;
  if (cur && cur != rt) nx_net_error(L, "%s: belongs to another runtime", fname);
  return cur;
}

nx_rt *nx_net_task_rt(lua_State *L, nx_rt *rt, const char *fname) {
  nx_rt *cur = nx_net_rt(L, rt, fname);
  if (!cur || !cur->cur) nx_net_error(L, "%s: not inside a nexus task", fname);
  return cur;
}

void *nx_net_check(lua_State *L, int idx, uint32_t tag, const char *fname, const char *what) {
  nx_ud *u;
  if (lua_type(L, idx) == LUA_TUSERDATA && lua_objlen(L, idx) == sizeof *u
      && (u = lua_touserdata(L, idx))->tag == tag && u->p)
    return u->p;
  nx_net_error(L, "%s: expected %s, got %s", fname, what, nx_net_typename(L, idx));
  return NULL;
}

void **nx_net_newud(lua_State *L, int mt, uint32_t tag) {
  nx_ud *u = lua_newuserdata(L, sizeof *u);
  u->p = NULL;
  u->tag = tag;
  lua_pushvalue(L, mt);
  lua_setmetatable(L, -2);
  return &u->p;
}

lua_Integer nx_net_optint(lua_State *L, int idx, lua_Integer dflt, lua_Integer lo,
                          lua_Integer hi, const char *fname, const char *what) {
  int t = lua_type(L, idx);
  if (t == LUA_TNUMBER) {
    lua_Number n = lua_tonumber(L, idx);
    /* range first: the cast of a NaN or a huge n would be undefined */
    if (n >= (lua_Number)lo && n <= (lua_Number)hi && n == (lua_Number)(lua_Integer)n)
      return (lua_Integer)n;
    /* The bounds in full (2^52 is no int, and %f would print 4.5e+15),
     * and an integral n too: lua_tostring's %.14g prints 2^52 + 1 as
     * 4.5035996273705e+15, which reads as inside 1..4503599627370496. */
    char los[24], his[24], got[24];
    snprintf(los, sizeof los, "%lld", (long long)lo);
    snprintf(his, sizeof his, "%lld", (long long)hi);
    if (n > -9.2e18 && n < 9.2e18 && n == (lua_Number)(long long)n)
      snprintf(got, sizeof got, "%lld", (long long)n);
    else
      snprintf(got, sizeof got, "%s", lua_tostring(L, idx));
    nx_net_error(L, "%s: %s must be an integer in %s..%s, got %s", fname, what, los, his, got);
  } else if (t != LUA_TNIL && t != LUA_TNONE) {
    nx_net_error(L, "%s: %s must be an integer, got %s", fname, what, lua_typename(L, t));
  }
  return dflt;
}

void nx_net_ignore_sigpipe(void) {
  static int done;
  if (done) return;
  done = 1;
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
  }
}

void nx_net_newmt(lua_State *L, const char *name) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  lua_setfield(L, -2, "__index");
}

void nx_net_setfuncs(lua_State *L, int t, const luaL_Reg *fns, int nup) {
  t = t < 0 ? lua_gettop(L) + t + 1 : t;
  for (; fns->name; fns++) {
    for (int i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, fns->func, nup);
    lua_setfield(L, t, fns->name);
  }
}

/* ---- the shared life of socket objects ---- */

static void nx_nh_release(nx_nh *nh) {
  if (nh->hclosed && nh->udgone) nh->destroy(nh);
}

static void nx_nh_close_cb(uv_handle_t *h) {
  nx_nh *nh = (nx_nh *)h;
  nh->hclosed = 1;
  nx_nh_release(nh);
}

/* The runtime closes: its tasks were aborted first (their cancel
 * callbacks unlinked every waiter), so only the handle is left. */
static void nx_nh_own_close(nx_rt *rt, nx_owned *o) {
  (void)rt;
  nx_nh *nh = (nx_nh *)((char *)o - offsetof(nx_nh, own));
  nh->closed = 1;
  nx_nh_close_handle(nh);
}

void nx_nh_init(nx_nh *nh, nx_rt *rt, void (*destroy)(nx_nh *), int ok) {
  nh->rt = rt;
  nh->destroy = destroy;
  nx_rt_ref(rt);
  nh->own.next = nh->own.prev = NULL;
  nh->own.close = nx_nh_own_close;
  if (ok) {
    nh->u.h.data = nh;
    nx_own(rt, &nh->own);
  } else {
    nh->closed = nh->hclosing = nh->hclosed = 1;
  }
}

void nx_nh_close_handle(nx_nh *nh) {
  if (nh->hclosing) return;
  nh->hclosing = 1;
  nx_disown(nh->rt, &nh->own);
  uv_close(&nh->u.h, nx_nh_close_cb);
}

void nx_nh_gc(nx_nh *nh, int close_now) {
  nx_rt *rt = nh->rt;
  nh->closed = 1;
  if (close_now) nx_nh_close_handle(nh);
  nh->udgone = 1;
  nx_nh_release(nh);
  nx_rt_unref(rt);
}

/* ---- thread-pool requests (net.h nx_preq) ---- */

/* The task gave up: see nx_preq. */
static void nx_preq_cancel(nx_rt *rt, nx_task *t) {
  nx_preq *p = t->wobj;
  (void)rt;
  if (p->waiter == t) p->waiter = NULL;
  if (!p->done) uv_cancel(p->req);
}

void nx_preq_wait(lua_State *L, nx_rt *rt, nx_preq *p, const char *fname) {
  nx_wait_kind(nx_preq_cancel, "thread pool (dns resolve or thread.run)", NULL);
  if (nx_wait(rt, nx_preq_cancel, p) != NX_OK) nx_net_error(L, "%s: not inside a nexus task", fname);
  p->waiter = rt->cur;
}

int nx_preq_done(nx_preq *p) {
  p->done = 1;
  if (p->udgone) {
    p->destroy(p);
    return 1;
  }
  nx_task *t = p->waiter;
  if (t) {
    p->waiter = NULL;
    nx_task_wake(p->rt, t, NX_WAKE_OK);
  }
  return 0;
}

void nx_preq_gc(nx_preq *p) {
  p->udgone = 1;
  p->waiter = NULL;
  if (p->done) p->destroy(p);
  else uv_cancel(p->req);             /* the callback destroys it */
}

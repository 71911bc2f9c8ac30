/* udp.c - UDP sockets on libuv.
 *
 * Received datagrams queue in one buffer per socket, each behind a small
 * header (length, sender), written where libuv's alloc callback pointed:
 * no malloc per datagram. While more than recv_high_water bytes queue
 * unread with no receiver waiting, receiving stops and the kernel's
 * socket buffer (then the network) absorbs or drops the rest, as UDP does.
 *
 * Sending never suspends: uv_udp_try_send, else a copied send request
 * while the send queue holds less than send_high_water bytes, else
 * nil, "no buffer space available" (the datagram is dropped, as a full
 * kernel queue would).
 */
#include "net.h"

#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>

#define NX_UDP_MT "nexus.udp.socket"
#define NX_UMT lua_upvalueindex(1)

#define NX_DGRAM_MAX 65536

typedef struct nx_dgram {
  size_t len;
  struct sockaddr_storage from;
} nx_dgram;

/* Records are 8-byte aligned so every header is. */
#define NX_ALIGN(n) (((n) + 7) & ~(size_t)7)
#define NX_RECORD(n) (sizeof(nx_dgram) + NX_ALIGN(n))

typedef struct nx_udp {
  nx_nh nh;                     /* first */
  char *buf;                    /* queued records: [head, tail) */
  size_t cap, head, tail;
  size_t rhigh, whigh;
  nx_task *reader;
  int rerr;                     /* reported once, to the next receiver */
  uint8_t receiving;
} nx_udp;

typedef struct nx_sreq {
  uv_udp_send_t req;
  char data[];
} nx_sreq;

static void nx_udp_destroy(nx_nh *nh) {
  nx_udp *u = (nx_udp *)nh;
  free(u->buf);
  free(u);
}

static nx_udp *nx_check_udp(lua_State *L, const char *fname) {
  return nx_net_check(L, 1, NX_TAG_UDP, fname, "a udp socket");
}

static void nx_udp_wake(nx_udp *u) {
  nx_task *t = u->reader;
  if (!t) return;
  u->reader = NULL;
  nx_task_wake(u->nh.rt, t, NX_WAKE_OK);
}

static void nx_udp_stop(nx_udp *u) {
  if (!u->receiving) return;
  u->receiving = 0;
  uv_udp_recv_stop(&u->nh.u.udp);
}

static void nx_udp_close(nx_udp *u) {
  if (u->nh.closed) return;
  u->nh.closed = 1;
  nx_udp_wake(u);
  nx_nh_close_handle(&u->nh);
}

/* ---- receiving ---- */

static void nx_udp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  nx_udp *u = (nx_udp *)h;
  size_t need = NX_RECORD(NX_DGRAM_MAX);
  size_t n = u->tail - u->head;
  (void)hint;
  if (n == 0) u->head = u->tail = 0;
  if (u->cap - u->tail < need) {
    if (u->head > 0) {
      memmove(u->buf, u->buf + u->head, n);
      u->head = 0;
      u->tail = n;
    }
    if (u->cap - u->tail < need) {
      size_t cap = u->cap ? u->cap : NX_RECORD(u->rhigh) + need;
      while (cap - n < need) cap *= 2;
      char *p = realloc(u->buf, cap);
      if (!p) {
        b->base = NULL;
        b->len = 0;                    /* libuv reports UV_ENOBUFS */
        return;
      }
      u->buf = p;
      u->cap = cap;
    }
  }
  b->base = u->buf + u->tail + sizeof(nx_dgram);
  b->len = NX_DGRAM_MAX;
}

static void nx_udp_recv_cb(uv_udp_t *h, ssize_t n, const uv_buf_t *b,
                           const struct sockaddr *addr, unsigned flags) {
  nx_udp *u = (nx_udp *)h;
  (void)flags;
  if (n == 0 && !addr) return;         /* nothing more to read */
  if (n < 0) {
    u->rerr = (int)n;
  } else {
    nx_dgram *d = (nx_dgram *)(b->base - sizeof(nx_dgram));
    d->len = (size_t)n;
    memset(&d->from, 0, sizeof d->from);
    memcpy(&d->from, addr, addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                      : sizeof(struct sockaddr_in));
    u->tail += NX_RECORD((size_t)n);
  }
  if (u->reader) nx_udp_wake(u);
  else if (u->tail - u->head >= u->rhigh) nx_udp_stop(u);
}

static void nx_udp_start(nx_udp *u) {
  if (u->receiving || u->nh.closed) return;
  int rc = uv_udp_recv_start(&u->nh.u.udp, nx_udp_alloc, nx_udp_recv_cb);
  if (rc != 0) u->rerr = rc;
  else u->receiving = 1;
}

static void nx_udp_cancel(nx_rt *rt, nx_task *t) {
  nx_udp *u = t->wobj;
  (void)rt;
  if (u->reader == t) u->reader = NULL;
}

/* core.udp_recv(u, with_addr, fname): data[, ip, port] | nil, err | false */
static int l_recv(lua_State *L) {
  const char *fname = lua_tostring(L, 3);
  if (!fname) fname = "udp:recv";
  nx_udp *u = nx_check_udp(L, fname);
  int with_addr = lua_toboolean(L, 2);
  nx_rt *rt = nx_net_task_rt(L, u->nh.rt, fname);
  if (u->reader) return nx_net_error(L, "%s: another task is already receiving", fname);
  if (u->nh.closed) return nx_net_fail(L, UV_ECANCELED);
  if (u->tail > u->head) {
    nx_dgram *d = (nx_dgram *)(u->buf + u->head);
    lua_pushlstring(L, (const char *)(d + 1), d->len);
    int nret = 1;
    if (with_addr) {
      char ip[NX_ADDRSTRLEN];
      int port = nx_net_ip((struct sockaddr *)&d->from, ip, sizeof ip);
      lua_pushstring(L, ip);
      lua_pushinteger(L, port);
      nret = 3;
    }
    u->head += NX_RECORD(d->len);
    if (u->head == u->tail) u->head = u->tail = 0;
    if (!u->receiving && u->tail - u->head < u->rhigh) nx_udp_start(u);
    return nret;
  }
  if (u->rerr) {
    int err = u->rerr;
    u->rerr = 0;
    return nx_net_fail(L, err);
  }
  if (nx_wait(rt, nx_udp_cancel, u) != NX_OK)
    return nx_net_error(L, "%s: not inside a nexus task", fname);
  u->reader = rt->cur;
  nx_udp_start(u);
  return nx_net_wait(L, rt);
}

/* ---- sending ---- */

static void nx_udp_send_cb(uv_udp_send_t *req, int status) {
  (void)status;                        /* datagrams may be lost anyway */
  free(req);
}

static int nx_udp_send(lua_State *L, nx_udp *u, const struct sockaddr *sa, const char *fname) {
  size_t len;
  const char *p = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &len) : NULL;
  if (!p) return nx_net_error(L, "%s: expected a string, got %s", fname, nx_net_typename(L, 2));
  if (u->nh.closed) return nx_net_fail(L, UV_ECANCELED);
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
  int rc = uv_udp_try_send(&u->nh.u.udp, &b, 1, sa);
  if (rc == UV_EAGAIN) {
    if (u->nh.u.udp.send_queue_size + len > u->whigh) return nx_net_fail(L, UV_ENOBUFS);
    nx_sreq *r = malloc(sizeof *r + len);
    if (!r) return nx_net_fail(L, UV_ENOMEM);
    memcpy(r->data, p, len);
    b = uv_buf_init(r->data, (unsigned)len);
    rc = uv_udp_send(&r->req, &u->nh.u.udp, &b, 1, sa, nx_udp_send_cb);
    if (rc != 0) free(r);
  }
  if (rc < 0) return nx_net_fail(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int nx_check_addr(lua_State *L, int idx, const char *fname, struct sockaddr_storage *ss) {
  const char *host = nx_net_checkhost(L, idx, fname, "host");
  int port = (int)nx_net_optint(L, idx + 1, -1, 0, 65535, fname, "port");
  if (port < 0) return nx_net_error(L, "%s: port must be an integer, got nil", fname);
  if (nx_net_addr(host, port, ss) != 0)
    return nx_net_error(L, "%s: host must be an IP address, got '%s' (resolve names with nexus.dns.resolve)",
                        fname, host);
  return 0;
}

/* u:send_to(data, host, port): true | nil, err */
static int l_send_to(lua_State *L) {
  const char *fname = "udp:send_to";
  nx_udp *u = nx_check_udp(L, fname);
  struct sockaddr_storage ss;
  nx_check_addr(L, 3, fname, &ss);
  nx_net_rt(L, u->nh.rt, fname);
  return nx_udp_send(L, u, (struct sockaddr *)&ss, fname);
}

/* u:send(data): to the connected peer. */
static int l_send(lua_State *L) {
  nx_udp *u = nx_check_udp(L, "udp:send");
  nx_net_rt(L, u->nh.rt, "udp:send");
  return nx_udp_send(L, u, NULL, "udp:send");
}

/* u:connect(host, port): true | nil, err */
static int l_connect(lua_State *L) {
  const char *fname = "udp:connect";
  nx_udp *u = nx_check_udp(L, fname);
  struct sockaddr_storage ss;
  nx_check_addr(L, 2, fname, &ss);
  nx_net_rt(L, u->nh.rt, fname);
  if (u->nh.closed) return nx_net_fail(L, UV_ECANCELED);
  int rc = uv_udp_connect(&u->nh.u.udp, (struct sockaddr *)&ss);
  if (rc != 0) return nx_net_fail(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- the rest ---- */

/* core.udp_bind(host, port, recv_high, send_high): socket | nil, err */
static int l_bind(lua_State *L) {
  const char *fname = "nexus.udp.bind";
  struct sockaddr_storage ss;
  nx_check_addr(L, 1, fname, &ss);
  size_t rhigh = (size_t)nx_net_optint(L, 3, 65536, 1, (lua_Integer)1 << 30, fname, "recv_high_water");
  size_t whigh = (size_t)nx_net_optint(L, 4, 65536, 1, (lua_Integer)1 << 30, fname, "send_high_water");
  nx_rt *rt = nx_net_task_rt(L, nx_cur_rt, fname);
  void **ud = nx_net_newud(L, NX_UMT, NX_TAG_UDP);
  nx_udp *u = calloc(1, sizeof *u);
  if (!u) return nx_net_fail(L, UV_ENOMEM);
  *ud = u;
  int rc = uv_udp_init(&rt->loop, &u->nh.u.udp);
  nx_nh_init(&u->nh, rt, nx_udp_destroy, rc == 0);
  if (rc != 0) return nx_net_fail(L, rc);
  u->rhigh = rhigh;
  u->whigh = whigh;
  if ((rc = uv_udp_bind(&u->nh.u.udp, (struct sockaddr *)&ss, 0)) != 0) {
    nx_udp_close(u);
    return nx_net_fail(L, rc);
  }
  return 1;
}

static int l_close(lua_State *L) {
  nx_udp *u = nx_check_udp(L, "udp:close");
  nx_net_rt(L, u->nh.rt, "udp:close");
  nx_udp_close(u);
  return 0;
}

static int l_is_closed(lua_State *L) {
  nx_udp *u = nx_check_udp(L, "udp:is_closed");
  lua_pushboolean(L, u->nh.closed);
  return 1;
}

typedef int (*nx_nameof)(const uv_udp_t *, struct sockaddr *, int *);

static int nx_udp_name(lua_State *L, nx_udp *u, nx_nameof fn) {
  if (u->nh.closed) return nx_net_fail(L, UV_ECANCELED);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int rc = fn(&u->nh.u.udp, (struct sockaddr *)&ss, &len);
  if (rc != 0) return nx_net_fail(L, rc);
  return nx_net_push_addr(L, (struct sockaddr *)&ss);
}

static int l_local_addr(lua_State *L) {
  return nx_udp_name(L, nx_check_udp(L, "udp:local_addr"), uv_udp_getsockname);
}

static int l_peer_addr(lua_State *L) {
  return nx_udp_name(L, nx_check_udp(L, "udp:peer_addr"), uv_udp_getpeername);
}

static int l_udp_gc(lua_State *L) {
  nx_udp **ud = lua_touserdata(L, 1);
  nx_udp *u = *ud;
  if (!u) return 0;
  *ud = NULL;
  nx_udp_wake(u);
  nx_nh_gc(&u->nh, 1);
  return 0;
}

static int l_udp_tostring(lua_State *L) {
  nx_udp **ud = lua_touserdata(L, 1);
  nx_udp *u = ud ? *ud : NULL;
  if (!u || u->nh.closed) {
    lua_pushliteral(L, "nexus.udp.socket(closed)");
    return 1;
  }
  struct sockaddr_storage ss;
  int len = sizeof ss;
  char a[NX_ADDRSTRLEN + 8] = "?";
  if (uv_udp_getsockname(&u->nh.u.udp, (struct sockaddr *)&ss, &len) == 0)
    nx_net_fmt((struct sockaddr *)&ss, a, sizeof a);
  lua_pushfstring(L, "nexus.udp.socket(%s)", a);
  return 1;
}

static const luaL_Reg nx_udp_methods[] = {
  {"send_to", l_send_to}, {"send", l_send}, {"connect", l_connect}, {"close", l_close},
  {"local_addr", l_local_addr}, {"peer_addr", l_peer_addr}, {"is_closed", l_is_closed},
  {NULL, NULL},
};

static const luaL_Reg nx_udp_meta[] = {
  {"__gc", l_udp_gc}, {"__tostring", l_udp_tostring}, {NULL, NULL},
};

static const luaL_Reg nx_udp_funcs[] = {
  {"udp_bind", l_bind}, {"udp_recv", l_recv}, {NULL, NULL},
};

void nx_udp_open(lua_State *L) {
  nx_wait_kind(nx_udp_cancel, "udp recv", NULL);
  int m = lua_gettop(L);
  nx_net_newmt(L, NX_UDP_MT);            /* m+1 */
  lua_getfield(L, m + 1, "__index");     /* m+2 */
  lua_pushvalue(L, m + 1);
  nx_net_setfuncs(L, m + 1, nx_udp_meta, 1);
  nx_net_setfuncs(L, m + 2, nx_udp_methods, 1);
  nx_net_setfuncs(L, m, nx_udp_funcs, 1);
  lua_pop(L, 1);
  lua_setfield(L, m, "udp_methods");
  lua_pop(L, 1);
}

/* dns.c - name resolution through uv_getaddrinfo (libuv's thread pool).
 *
 * A request outlives its Lua userdata when the task gives up (abort,
 * timeout): see nx_preq in net.h.
 */
#include "net.h"

#include <stdlib.h>
#include <string.h>

#include <netdb.h>
#include <netinet/in.h>

#define NX_DNS_MT "nexus.dns.request"
#define NX_DMT lua_upvalueindex(1)

typedef struct nx_dnsreq {
  nx_preq pr;                   /* first: the wait's object */
  uv_getaddrinfo_t req;
  struct addrinfo *res;
  int status;
} nx_dnsreq;

static void nx_dns_free(nx_preq *p) {
  nx_dnsreq *r = (nx_dnsreq *)p;
  if (r->res) uv_freeaddrinfo(r->res);
  free(r);
}

static void nx_dns_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  nx_dnsreq *r = req->data;
  r->status = status;
  r->res = res;
  nx_preq_done(&r->pr);
}

static int nx_dns_wait(lua_State *L, nx_rt *rt, nx_dnsreq *r) {
  nx_preq_wait(L, rt, &r->pr, "nexus.dns.resolve");
  return nx_net_wait(L, rt);
}

/* An IP literal needs no lookup; pushes { ip } when name is one. */
static int nx_dns_literal(lua_State *L, const char *name, int family) {
  unsigned char a[sizeof(struct in6_addr)];
  char ip[NX_ADDRSTRLEN];
  if (family != 6 && uv_inet_pton(AF_INET, name, a) == 0) {
    uv_inet_ntop(AF_INET, a, ip, sizeof ip);
  } else if (family != 4 && uv_inet_pton(AF_INET6, name, a) == 0) {
    uv_inet_ntop(AF_INET6, a, ip, sizeof ip);
  } else {
    return 0;
  }
  lua_createtable(L, 1, 0);
  lua_pushstring(L, ip);
  lua_rawseti(L, -2, 1);
  return 1;
}

/* core.dns_resolve(name, family): { ip, ... } | request, false (then
 * core.dns_result(request)) | nil, err. family: 0 (any), 4 or 6. */
static int l_resolve(lua_State *L) {
  const char *fname = "nexus.dns.resolve";
  const char *name = nx_net_checkhost(L, 1, fname, "name");
  int family = (int)luaL_optinteger(L, 2, 0);
  nx_rt *rt = nx_net_task_rt(L, nx_cur_rt, fname);
  if (nx_dns_literal(L, name, family)) return 1;
  void **ud = nx_net_newud(L, NX_DMT, NX_TAG_DNS);
  nx_dnsreq *r = calloc(1, sizeof *r);
  if (!r) return nx_net_fail(L, UV_ENOMEM);
  r->pr.rt = rt;
  r->pr.req = (uv_req_t *)&r->req;
  r->pr.destroy = nx_dns_free;
  r->req.data = r;
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = family == 4 ? AF_INET : family == 6 ? AF_INET6 : AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;        /* one entry per address */
  int rc = uv_getaddrinfo(&rt->loop, &r->req, nx_dns_cb, name, NULL, &hints);
  if (rc != 0) {
    free(r);
    return nx_net_fail(L, rc);
  }
  *ud = r;
  return 1 + nx_dns_wait(L, rt, r);
}

/* Pushes the distinct addresses, in getaddrinfo's order. */
static void nx_dns_push(lua_State *L, const struct addrinfo *res) {
  int n = 0;
  lua_newtable(L);
  for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    char ip[NX_ADDRSTRLEN];
    nx_net_ip(ai->ai_addr, ip, sizeof ip);
    int dup = 0;
    for (int i = 1; i <= n && !dup; i++) {
      lua_rawgeti(L, -1, i);
      dup = strcmp(lua_tostring(L, -1), ip) == 0;
      lua_pop(L, 1);
    }
    if (dup) continue;
    lua_pushstring(L, ip);
    lua_rawseti(L, -2, ++n);
  }
}

/* core.dns_result(request): { ip, ... } | nil, err | false */
static int l_result(lua_State *L) {
  const char *fname = "nexus.dns.resolve";
  nx_dnsreq *r = nx_net_check(L, 1, NX_TAG_DNS, fname, "a dns request");
  nx_rt *rt = nx_net_task_rt(L, r->pr.rt, fname);
  if (!r->pr.done) return nx_dns_wait(L, rt, r);
  if (r->status != 0) return nx_net_fail(L, r->status);
  nx_dns_push(L, r->res);
  return 1;
}

static int l_dns_gc(lua_State *L) {
  nx_dnsreq **ud = lua_touserdata(L, 1);
  nx_dnsreq *r = *ud;
  if (!r) return 0;
  *ud = NULL;
  nx_preq_gc(&r->pr);
  return 0;
}

static int l_dns_tostring(lua_State *L) {
  lua_pushliteral(L, "nexus.dns.request");
  return 1;
}

static const luaL_Reg nx_dns_meta[] = {
  {"__gc", l_dns_gc}, {"__tostring", l_dns_tostring}, {NULL, NULL},
};

static const luaL_Reg nx_dns_funcs[] = {
  {"dns_resolve", l_resolve}, {"dns_result", l_result}, {NULL, NULL},
};

void nx_dns_open(lua_State *L) {
  int m = lua_gettop(L);
  nx_net_newmt(L, NX_DNS_MT);
  lua_pushvalue(L, -1);
  nx_net_setfuncs(L, m + 1, nx_dns_meta, 1);
  nx_net_setfuncs(L, m, nx_dns_funcs, 1);
  lua_pop(L, 2);
}

/* http.c - nexus.http.request: libcurl's multi interface driven by the
 * runtime's own libuv loop, in the shape of curl's multi-uv example.
 *
 * One multi handle per runtime (created at the first request, closed with
 * the runtime), so connections and TLS sessions are reused between
 * requests. libcurl tells which sockets to watch (CURLMOPT_SOCKETFUNCTION:
 * one uv_poll_t each) and when to time out (CURLMOPT_TIMERFUNCTION: one
 * uv_timer_t); the loop's callbacks call curl_multi_socket_action. The
 * pitfalls, each handled here:
 * - libcurl is never called from its own callbacks: even a 0 ms time-out
 *   goes through the uv timer;
 * - a socket's REMOVE may come late or never: each socket has a record,
 *   and CURLOPT_CLOSESOCKETFUNCTION stops its poll before the descriptor
 *   is closed, so libuv never polls a closed (or reused) fd;
 * - a finished transfer's message is read (curl_multi_info_read) before
 *   its easy handle is removed and freed.
 * A request whose task is aborted or times out is removed from the multi
 * handle at once (its cancel callback).
 */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CURL_DISABLE_TYPECHECK 1   /* its macros would shadow the table below */
#include <curl/curl.h>
#include <dlfcn.h>
#include <lauxlib.h>

/* libcurl is loaded at the first request (dlopen), not linked: its
 * dependency tree (nghttp2, ssh, gssapi, ldap...) would otherwise load
 * with every nexus module, and its libraries' static TLS does not fit in
 * what glibc keeps for a dlopen'ed module's. The calls below go through
 * this table; the names are redirected to it. */
static struct {
  CURLcode (*global_init)(long);
  CURLM *(*multi_init)(void);
  CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
  CURLMcode (*multi_cleanup)(CURLM *);
  CURLMcode (*multi_assign)(CURLM *, curl_socket_t, void *);
  CURLMcode (*multi_socket_action)(CURLM *, curl_socket_t, int, int *);
  CURLMsg *(*multi_info_read)(CURLM *, int *);
  CURLMcode (*multi_add_handle)(CURLM *, CURL *);
  CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
  CURL *(*easy_init)(void);
  CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
  CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
  void (*easy_cleanup)(CURL *);
  void (*easy_reset)(CURL *);
  const char *(*easy_strerror)(CURLcode);
  struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
  void (*slist_free_all)(struct curl_slist *);
  CURLcode (*easy_pause)(CURL *, int);
} nx_curl;
#undef curl_easy_setopt            /* curl.h's own pass-through macros */
#undef curl_easy_getinfo
#undef curl_multi_setopt
#define curl_global_init nx_curl.global_init
#define curl_multi_init nx_curl.multi_init
#define curl_multi_setopt nx_curl.multi_setopt
#define curl_multi_cleanup nx_curl.multi_cleanup
#define curl_multi_assign nx_curl.multi_assign
#define curl_multi_socket_action nx_curl.multi_socket_action
#define curl_multi_info_read nx_curl.multi_info_read
#define curl_multi_add_handle nx_curl.multi_add_handle
#define curl_multi_remove_handle nx_curl.multi_remove_handle
#define curl_easy_init nx_curl.easy_init
#define curl_easy_setopt nx_curl.easy_setopt
#define curl_easy_getinfo nx_curl.easy_getinfo
#define curl_easy_cleanup nx_curl.easy_cleanup
#define curl_easy_reset nx_curl.easy_reset
#define curl_easy_strerror nx_curl.easy_strerror
#define curl_slist_append nx_curl.slist_append
#define curl_slist_free_all nx_curl.slist_free_all
#define curl_easy_pause nx_curl.easy_pause

/* NULL, or why libcurl cannot be used. */
static const char *nx_curl_load(void) {
  static int state;                /* 0: not tried, 1: loaded, 2: failed */
  static char why[256];
  if (state == 1) return NULL;
  if (state == 2) return why;
  void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    snprintf(why, sizeof why, "libcurl is not installed (libcurl4): %s", dlerror());
    state = 2;
    return why;
  }
#define NX_SYM(field, name)                                                     \
  if (!(*(void **)&nx_curl.field = dlsym(h, name))) {                           \
    snprintf(why, sizeof why, "libcurl.so.4 has no %s", name);                  \
    state = 2;                                                                  \
    return why;                                                                 \
  }
  NX_SYM(global_init, "curl_global_init")
  NX_SYM(multi_init, "curl_multi_init")
  NX_SYM(multi_setopt, "curl_multi_setopt")
  NX_SYM(multi_cleanup, "curl_multi_cleanup")
  NX_SYM(multi_assign, "curl_multi_assign")
  NX_SYM(multi_socket_action, "curl_multi_socket_action")
  NX_SYM(multi_info_read, "curl_multi_info_read")
  NX_SYM(multi_add_handle, "curl_multi_add_handle")
  NX_SYM(multi_remove_handle, "curl_multi_remove_handle")
  NX_SYM(easy_init, "curl_easy_init")
  NX_SYM(easy_setopt, "curl_easy_setopt")
  NX_SYM(easy_getinfo, "curl_easy_getinfo")
  NX_SYM(easy_cleanup, "curl_easy_cleanup")
  NX_SYM(easy_reset, "curl_easy_reset")
  NX_SYM(easy_strerror, "curl_easy_strerror")
  NX_SYM(slist_append, "curl_slist_append")
  NX_SYM(slist_free_all, "curl_slist_free_all")
  NX_SYM(easy_pause, "curl_easy_pause")
#undef NX_SYM
  curl_global_init(CURL_GLOBAL_DEFAULT);
  state = 1;
  return NULL;
}

#define NX_HREQ_MT "nexus.http.request"

typedef struct nx_http nx_http;

typedef struct nx_hsock {          /* one socket libcurl asked to watch */
  uv_poll_t poll;
  curl_socket_t fd;
  nx_http *h;
  struct nx_hsock *next;           /* the runtime's list */
} nx_hsock;

struct nx_http {
  nx_owned own;
  nx_rt *rt;
  CURLM *multi;
  uv_timer_t timer;
  nx_hsock *socks;                 /* watched sockets */
  long added, peak;                /* requests in the multi handle: now, at most */
  CURL **spare;                    /* finished requests' easy handles, reset */
  int nspare, capspare;
  int closed;
};

typedef struct nx_buf { char *p; size_t n, cap; } nx_buf;

typedef struct nx_hreq {
  CURL *easy;
  nx_http *h;                      /* while in the multi handle */
  struct curl_slist *headers;
  nx_buf body, head;               /* the response */
  char *req_body;                  /* a copy: the request's body */
  nx_task *waiter;
  CURLcode result;
  int done, added, gone;
  long status, version;            /* kept when the easy handle is given back */
  int stream, started, paused;     /* stream = true: read as it comes */
  size_t rpos;                     /* stream: body bytes before it are read */
  char err[CURL_ERROR_SIZE];
} nx_hreq;

/* ---- buffers ---- */

static int nx_buf_add(nx_buf *b, const char *p, size_t n) {
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 4096;
    while (cap < b->n + n) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) return -1;
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, p, n);
  b->n += n;
  return 0;
}

/* stream = true: more than this unread pauses the transfer (libcurl
 * holds the data and the socket is not read: backpressure); reading
 * below the low mark resumes it. */
#define NX_HTTP_HIGH (1u << 20)
#define NX_HTTP_LOW (1u << 18)
#define NX_HTTP_MAXREDIRS 20      /* follow_redirects: at most this many */

static void nx_hreq_wake(nx_hreq *r);

static size_t nx_on_body(char *p, size_t size, size_t n, void *ud) {
  nx_hreq *r = ud;
  size_t len = size * n;
  if (r->stream) {
    if (r->body.n - r->rpos > 0 && r->body.n - r->rpos + len > NX_HTTP_HIGH) {
      r->paused = 1;
      return CURL_WRITEFUNC_PAUSE;        /* delivered again on resume */
    }
    if (r->rpos && r->rpos == r->body.n) r->rpos = r->body.n = 0;   /* all read: reuse */
    r->started = 1;
  }
  if (nx_buf_add(&r->body, p, len) != 0) return 0;
  if (r->stream) nx_hreq_wake(r);
  return len;
}

static size_t nx_on_header(char *p, size_t size, size_t n, void *ud) {
  nx_hreq *r = ud;
  if (size * n >= 5 && !memcmp(p, "HTTP/", 5)) r->head.n = 0;   /* a new response: only the last one's headers are kept */
  return nx_buf_add(&r->head, p, size * n) == 0 ? size * n : 0;
}

/* ---- finishing ---- */

static void nx_hreq_remove(nx_hreq *r) {
  if (r->added && r->h && r->h->multi) {
    curl_multi_remove_handle(r->h->multi, r->easy);
    r->h->added--;
  }
  r->added = 0;
}

/* An easy handle for a new request: a spare one (curl_easy_reset keeps
 * its allocations, only the options go back to their defaults), else a
 * new one. */
static CURL *nx_http_easy(nx_http *h) {
  if (h->nspare) return h->spare[--h->nspare];
  return curl_easy_init();
}

/* A finished request whose result was taken gives its easy handle back
 * (and its buffers and header list go): the next request reuses it. A
 * request that is never read keeps it until its __gc. */
static void nx_hreq_recycle(nx_hreq *r) {
  nx_http *h = r->h;
  if (!r->easy || !r->done || r->added) return;
  curl_slist_free_all(r->headers);
  r->headers = NULL;
  free(r->req_body);
  r->req_body = NULL;
  if (h && !h->closed && h->nspare < h->peak) {
    if (h->nspare == h->capspare) {
      int cap = h->capspare ? h->capspare * 2 : 16;
      CURL **p = realloc(h->spare, (size_t)cap * sizeof *p);
      if (!p) goto drop;
      h->spare = p;
      h->capspare = cap;
    }
    curl_easy_reset(r->easy);
    h->spare[h->nspare++] = r->easy;
    r->easy = NULL;
    return;
  }
drop:
  curl_easy_cleanup(r->easy);
  r->easy = NULL;
}

static void nx_hreq_wake(nx_hreq *r) {
  nx_task *t = r->waiter;
  if (!t || !r->h) return;
  r->waiter = NULL;
  nx_task_wake(r->h->rt, t, NX_WAKE_OK);
}

/* Every transfer that ended: its result kept, its task woken, its easy
 * handle out of the multi (after its message was read). */
static void nx_http_check(nx_http *h) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(h->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    nx_hreq *r = NULL;
    CURL *easy = m->easy_handle;
    CURLcode rc = m->data.result;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
    if (!r) continue;
    r->result = rc;
    r->done = 1;
    nx_hreq_remove(r);
    nx_hreq_wake(r);
  }
}

/* ---- the loop's side ---- */

static void nx_http_timer_cb(uv_timer_t *t) {
  nx_http *h = t->data;
  int running;
  curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  nx_http_check(h);
}

static void nx_http_poll_cb(uv_poll_t *p, int status, int events) {
  nx_hsock *s = p->data;
  nx_http *h = s->h;
  int flags = 0, running;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  curl_multi_socket_action(h->multi, s->fd, flags, &running);
  nx_http_check(h);
}

static void nx_hsock_closed(uv_handle_t *hd) { free(hd->data); }

static void nx_hsock_drop(nx_hsock *s) {
  nx_http *h = s->h;
  for (nx_hsock **p = &h->socks; *p; p = &(*p)->next) {
    if (*p == s) {
      *p = s->next;
      break;
    }
  }
  uv_poll_stop(&s->poll);
  uv_close((uv_handle_t *)&s->poll, nx_hsock_closed);
}

/* ---- libcurl's side ---- */

static int nx_curl_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
  (void)easy;
  nx_http *h = userp;
  nx_hsock *s = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      curl_multi_assign(h->multi, fd, NULL);
      nx_hsock_drop(s);
    }
    return 0;
  }
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s) return -1;
    s->fd = fd;
    s->h = h;
    if (uv_poll_init_socket(&h->rt->loop, &s->poll, fd) != 0) {
      free(s);
      return -1;
    }
    s->poll.data = s;
    s->next = h->socks;
    h->socks = s;
    curl_multi_assign(h->multi, fd, s);
  }
  int ev = (what == CURL_POLL_IN ? UV_READABLE : 0) | (what == CURL_POLL_OUT ? UV_WRITABLE : 0) |
           (what == CURL_POLL_INOUT ? UV_READABLE | UV_WRITABLE : 0);
  uv_poll_start(&s->poll, ev, nx_http_poll_cb);
  return 0;
}

static int nx_curl_timer_cb(CURLM *multi, long ms, void *userp) {
  (void)multi;
  nx_http *h = userp;
  if (ms < 0) uv_timer_stop(&h->timer);
  else uv_timer_start(&h->timer, nx_http_timer_cb, (uint64_t)ms, 0);   /* 0 ms too: via the loop */
  return 0;
}

/* Before libcurl closes a socket: its poll stops first (a REMOVE may
 * not have come), so libuv never watches a closed or reused fd. */
static int nx_curl_close_cb(void *clientp, curl_socket_t fd) {
  nx_http *h = clientp;
  for (nx_hsock *s = h->socks; s; s = s->next) {
    if (s->fd == fd) {
      if (h->multi) curl_multi_assign(h->multi, fd, NULL);
      nx_hsock_drop(s);
      break;
    }
  }
  return close(fd);
}

/* ---- per runtime ---- */

static void nx_http_close(nx_rt *rt, nx_owned *o) {
  (void)rt;
  nx_http *h = (nx_http *)o;
  h->closed = 1;
  uv_timer_stop(&h->timer);
  uv_close((uv_handle_t *)&h->timer, NULL);
  /* Transfers still in: their tasks are gone (the runtime aborted them,
   * which removed them); the multi handle goes. */
  curl_multi_cleanup(h->multi);
  h->multi = NULL;
  while (h->nspare) curl_easy_cleanup(h->spare[--h->nspare]);
  free(h->spare);
  h->spare = NULL;
  /* the struct itself is leaked on purpose: its timer's close callback
   * runs in the runtime's last loop turn. Small, once per runtime. */
}

static nx_http *nx_http_of(nx_rt *rt) {
  /* one per runtime, among what it owns (a short list; a request costs
   * far more than the walk) */
  for (nx_owned *o = rt->owned.next; o != &rt->owned; o = o->next)
    if (o->close == nx_http_close) return (nx_http *)o;
  nx_http *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->rt = rt;
  h->multi = curl_multi_init();
  if (!h->multi) {
    free(h);
    return NULL;
  }
  uv_timer_init(&rt->loop, &h->timer);   /* armed only while libcurl wants a time-out */
  h->timer.data = h;
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, nx_curl_socket_cb);
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, nx_curl_timer_cb);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
  h->own.close = nx_http_close;
  nx_own(rt, &h->own);
  return h;
}

/* ---- requests (Lua) ---- */

static nx_hreq *nx_check_hreq(lua_State *L, const char *fname) {
  nx_hreq *r = luaL_testudata(L, 1, NX_HREQ_MT);
  if (!r) luaL_error(L, "%s: expected an http request", fname);
  return r;
}

static int l_hreq_gc(lua_State *L) {
  nx_hreq *r = luaL_testudata(L, 1, NX_HREQ_MT);
  if (!r || r->gone) return 0;
  r->gone = 1;
  if (r->easy) {
    if (r->h && !r->h->closed) nx_hreq_remove(r);
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
  }
  curl_slist_free_all(r->headers);
  free(r->body.p);
  free(r->head.p);
  free(r->req_body);
  return 0;
}

static int nx_opt_bool(lua_State *L, int idx, const char *key, int dflt) {
  lua_getfield(L, idx, key);
  int v = lua_isnil(L, -1) ? dflt : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* core.http_start(opts): a request, started; opts were checked by
 * nexus/http.lua (method, url, headers, body, timeout, connect_timeout,
 * tls = { verify, ca_file }, version, follow_redirects). */
static int l_http_start(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  nx_rt *rt = nx_cur_rt;
  if (!rt || !rt->cur) return luaL_error(L, "nexus.http.request: not inside a nexus task");
  const char *why = nx_curl_load();
  if (why) return luaL_error(L, "nexus.http.request: %s", why);
  nx_http *h = nx_http_of(rt);
  if (!h) return luaL_error(L, "nexus.http.request: cannot start libcurl");
  nx_hreq *r = lua_newuserdata(L, sizeof *r);
  memset(r, 0, sizeof *r);
  luaL_getmetatable(L, NX_HREQ_MT);
  lua_setmetatable(L, -2);
  if (!(r->easy = nx_http_easy(h))) return luaL_error(L, "nexus.http.request: out of memory");
  /* One pass over the options that are there (usually only url), rather
   * than a lookup for each one that might be: the strings stay valid,
   * the table holds them. */
  const char *url = NULL, *method = NULL, *body = NULL, *version = NULL;
  size_t body_n = 0;
  double tmo = 0, ctmo = 0;
  int follow = 0, has_tls = 0, has_headers = 0;
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
    switch (k[0]) {
    case 'u': if (!strcmp(k, "url")) url = lua_tostring(L, -1); break;
    case 'm': if (!strcmp(k, "method")) method = lua_tostring(L, -1); break;
    case 'b': if (!strcmp(k, "body")) body = lua_tolstring(L, -1, &body_n); break;
    case 'v': if (!strcmp(k, "version")) version = lua_tostring(L, -1); break;
    case 't':
      if (!strcmp(k, "timeout")) tmo = lua_tonumber(L, -1);
      else if (!strcmp(k, "tls")) has_tls = lua_istable(L, -1);
      break;
    case 'c': if (!strcmp(k, "connect_timeout")) ctmo = lua_tonumber(L, -1); break;
    case 'f': if (!strcmp(k, "follow_redirects")) follow = lua_toboolean(L, -1); break;
    case 's': if (!strcmp(k, "stream")) r->stream = lua_toboolean(L, -1); break;
    case 'h': if (!strcmp(k, "headers")) has_headers = lua_istable(L, -1); break;
    }
    lua_pop(L, 1);
  }
  CURL *e = r->easy;
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, r);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->err);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, nx_on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, nx_on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, nx_curl_close_cb);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, h);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  if (body) {
    r->req_body = malloc(body_n ? body_n : 1);
    if (!r->req_body) return luaL_error(L, "nexus.http.request: out of memory");
    memcpy(r->req_body, body, body_n);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->req_body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_n);
  }
  if (method && strcmp(method, "GET") != 0) {
    if (!strcmp(method, "HEAD")) curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    else curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  }
  if (tmo > 0) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(tmo * 1000 + 0.5));
  if (ctmo > 0) curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(ctmo * 1000 + 0.5));
  if (follow) {                    /* libcurl's own default is no limit: a loop ran */
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);   /* until the headers were too large */
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)NX_HTTP_MAXREDIRS);
  }
  if (version && !strcmp(version, "2")) {
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    /* requests started together wait for the connection being made and
     * share it (multiplexed) rather than each opening its own */
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
  }
  else curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  if (has_tls) {
    lua_getfield(L, 1, "tls");
    int verify = nx_opt_bool(L, lua_gettop(L), "verify", 1);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, (long)verify);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
    lua_getfield(L, -1, "ca_file");
    if (lua_isstring(L, -1)) curl_easy_setopt(e, CURLOPT_CAINFO, lua_tostring(L, -1));
    lua_pop(L, 2);
  }
  if (has_headers) {
    lua_getfield(L, 1, "headers");
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      lua_pushvalue(L, -2);
      lua_pushliteral(L, ": ");
      lua_pushvalue(L, -3);
      lua_concat(L, 3);
      struct curl_slist *l = curl_slist_append(r->headers, lua_tostring(L, -1));
      lua_pop(L, 2);
      if (!l) return luaL_error(L, "nexus.http.request: out of memory");
      r->headers = l;
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    lua_pop(L, 1);
  }
  r->h = h;
  if (curl_multi_add_handle(h->multi, e) != CURLM_OK)
    return luaL_error(L, "nexus.http.request: libcurl refused the request");
  r->added = 1;
  /* libcurl keeps 4 idle connections per easy handle in the multi at the
   * moment a transfer ends; here a finished request leaves the multi
   * before its task can start the next one, so after a burst of answers
   * that count is low and the connections just used are closed. Sized by
   * the most requests ever in flight at once instead (the same 4x rule). */
  if (++h->added > h->peak) {
    h->peak = h->added;
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, 4 * h->peak);
  }
  return 1;
}

static void nx_hreq_cancel(nx_rt *rt, nx_task *t) {
  (void)rt;
  nx_hreq *r = t->wobj;
  if (r->waiter == t) r->waiter = NULL;
  /* abort or time-out: the transfer goes at once */
  if (!r->done) {
    nx_hreq_remove(r);
    r->done = 1;
    r->result = CURLE_ABORTED_BY_CALLBACK;
  }
}

/* core.http_wait(req [, what]): true when done (what = "body": when the
 * body has begun, for stream = true; "data": when a chunk is unread);
 * else false, and the task now waits. */
static int l_http_wait(lua_State *L) {
  nx_hreq *r = nx_check_hreq(L, "nexus.http.request");
  const char *what = luaL_optstring(L, 2, "done");
  int ready = r->done || (what[0] == 'b' && r->started) || (what[0] == 'd' && r->body.n > r->rpos);
  if (ready) {
    lua_pushboolean(L, 1);
    return 1;
  }
  nx_rt *rt = nx_cur_rt;
  if (!rt || r->h->rt != rt || nx_wait(rt, nx_hreq_cancel, r) != NX_OK)
    return luaL_error(L, "nexus.http.request: not inside a task of the runtime that started it");
  r->waiter = rt->cur;
  lua_pushboolean(L, 0);
  return 1;
}

/* Pushes the headers of the last response in the header block (after
 * redirects and 100 Continue) as a table: names in lower case, a
 * repeated header's values joined with ", ", values trimmed. */
static void nx_push_headers(lua_State *L, const char *p, size_t n) {
  const char *end = p + n, *last = p;
  for (const char *q = p; q + 5 <= end; q++)      /* the last "HTTP/" at a line's start */
    if ((q == p || (q - p >= 2 && q[-2] == '\r' && q[-1] == '\n')) && !memcmp(q, "HTTP/", 5)) last = q;
  lua_newtable(L);
  int t = lua_gettop(L);
  char name[128];
  for (const char *q = last; q < end;) {
    const char *eol = q;
    while (eol < end && *eol != '\r' && *eol != '\n') eol++;
    const char *c = q;
    while (c < eol && *c != ':' && *c != ' ' && *c != '\t' && *c != '\f' && *c != '\v') c++;
    if (c > q && c < eol && *c == ':') {
      size_t nl = (size_t)(c - q);
      const char *v = c + 1, *ve = eol;
      while (v < ve && (*v == ' ' || *v == '\t')) v++;
      while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      if (nl <= sizeof name) {
        for (size_t i = 0; i < nl; i++) name[i] = (char)((q[i] >= 'A' && q[i] <= 'Z') ? q[i] + 32 : q[i]);
        lua_pushlstring(L, name, nl);
      } else {                                    /* a long name: rare */
        lua_pushlstring(L, q, nl);
        lua_getglobal(L, "string");
        lua_getfield(L, -1, "lower");
        lua_remove(L, -2);
        lua_insert(L, -2);
        lua_call(L, 1, 1);
      }
      lua_pushvalue(L, -1);
      lua_rawget(L, t);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushlstring(L, v, (size_t)(ve - v));
      } else {
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, (size_t)(ve - v));
        lua_concat(L, 3);
      }
      lua_rawset(L, t);
    }
    q = eol;
    while (q < end && (*q == '\r' || *q == '\n')) q++;
  }
}

/* core.http_result(req): status, http version, the headers (a table),
 * the body | nil, error text. */
static int l_http_result(lua_State *L) {
  nx_hreq *r = nx_check_hreq(L, "nexus.http.request");
  if (r->result != CURLE_OK) {
    lua_pushnil(L);
    switch (r->result) {             /* the short words of API.md's conventions */
    case CURLE_OPERATION_TIMEDOUT: lua_pushliteral(L, "timeout"); break;
    case CURLE_COULDNT_CONNECT: lua_pushliteral(L, "connection refused"); break;
    case CURLE_COULDNT_RESOLVE_HOST: lua_pushliteral(L, "could not resolve host"); break;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
      lua_pushfstring(L, "tls: %s", r->err[0] ? r->err : curl_easy_strerror(r->result));
      break;
    case CURLE_GOT_NOTHING: lua_pushliteral(L, "eof"); break;
    case CURLE_TOO_MANY_REDIRECTS: lua_pushliteral(L, "too many redirects"); break;
    default:
      lua_pushfstring(L, "%s%s%s", curl_easy_strerror(r->result), r->err[0] ? ": " : "", r->err);
    }
    nx_hreq_recycle(r);
    return 2;
  }
  long status = r->status, version = r->version;
  if (r->easy) {
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(r->easy, CURLINFO_HTTP_VERSION, &version);
    r->status = status;
    r->version = version;
  }
  lua_pushinteger(L, status);
  lua_pushstring(L, version == CURL_HTTP_VERSION_2_0 ? "2" : version == CURL_HTTP_VERSION_1_0 ? "1.0" : "1.1");
  nx_push_headers(L, r->head.p ? r->head.p : "", r->head.n);
  lua_pushlstring(L, r->body.p ? r->body.p : "", r->body.n);
  if (!r->stream && r->done) {     /* all taken: the handle and the buffers go */
    nx_hreq_recycle(r);
    free(r->body.p);
    free(r->head.p);
    memset(&r->body, 0, sizeof r->body);
    memset(&r->head, 0, sizeof r->head);
  }
  return 4;
}

/* core.http_read(req): the unread body bytes (stream = true) | nil at
 * the end | nil, err. Call after http_wait(req, "data") said true. */
static int l_http_read(lua_State *L) {
  nx_hreq *r = nx_check_hreq(L, "res:read");
  if (r->body.n > r->rpos) {
    lua_pushlstring(L, r->body.p + r->rpos, r->body.n - r->rpos);
    r->rpos = r->body.n = 0;
    if (r->paused && r->easy && !r->done) {      /* below the low mark: go on */
      r->paused = 0;
      curl_easy_pause(r->easy, CURLPAUSE_CONT);  /* may deliver at once (nx_on_body) */
    }
    return 1;
  }
  if (r->done && r->result != CURLE_OK) return l_http_result(L);
  nx_hreq_recycle(r);              /* at the end (done), else a no-op */
  lua_pushnil(L);
  return 1;
}

static const luaL_Reg nx_http_funcs[] = {
  {"http_start", l_http_start}, {"http_wait", l_http_wait}, {"http_result", l_http_result},
  {"http_read", l_http_read},
  {NULL, NULL},
};

void nx_http_open(lua_State *L) {
  nx_wait_kind(nx_hreq_cancel, "http request", NULL);
  luaL_newmetatable(L, NX_HREQ_MT);
  lua_pushcfunction(L, l_hreq_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_register(L, NULL, nx_http_funcs);
}

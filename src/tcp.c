/* tcp.c - TCP streams and listeners on libuv, with cosocket-style reads.
 *
 * Reads: each stream owns one read buffer, [head, tail) unread. libuv's
 * alloc callback hands out its free tail (so a read never mallocs), and
 * read/read_exactly/read_until scan it here and return Lua strings. The
 * reading task says what it needs (any bytes, n bytes, a delimiter) and is
 * woken only once the buffer satisfies it. Reading starts with the first
 * read and stops while more than read_high_water bytes wait unread with no
 * reader (input backpressure: the kernel's window then fills).
 *
 * Writes: uv_try_write first (no request, no copy, one syscall); what the
 * socket does not take is copied into write requests of at most
 * NX_WCHUNK bytes, and the writer is suspended while more than
 * write_high_water bytes are queued. close() sends what was queued before
 * it closes (a shutdown request drains the queue first).
 *
 * TLS (src/tls.c, docs/tls.md): with s->tls set, libuv reads ciphertext
 * into s->cbuf, which is fed to OpenSSL; decrypted bytes land in the same
 * read buffer, and writes are encrypted before the same send/queue path,
 * so everything above works unchanged. A handshake's waiter waits in
 * s->writer, as a connecting task does.
 *
 * One reader and one writer task at a time; each waits in s->reader or
 * s->writer (a connecting task waits in s->writer), unlinked by whoever
 * wakes it or by its cancel callback (abort, timeout, runtime close).
 */
#include "net.h"
#include "tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NX_STREAM_MT "nexus.tcp.stream"
#define NX_LISTENER_MT "nexus.tcp.listener"
/* Every function here is a closure over both metatables. */
#define NX_SMT lua_upvalueindex(1)
#define NX_LMT lua_upvalueindex(2)

#define NX_RBUF_INIT 4096       /* first read buffer */
#define NX_RBUF_MINFREE 1024    /* less free tail than this: compact or grow */
#define NX_WCHUNK 65536         /* largest queued write request */
#define NX_DELIM_INLINE 16

enum { NX_RD_ANY, NX_RD_EXACT, NX_RD_UNTIL };

typedef struct nx_stream {
  nx_nh nh;                     /* first */
  char *buf;                    /* read buffer */
  size_t cap, head, tail;
  size_t lastlen;               /* free tail handed to the last read */
  size_t rhigh, whigh;          /* high-water marks */
  nx_task *reader, *writer;
  /* what the waiting reader needs */
  size_t rneed;                 /* EXACT: bytes; UNTIL: longest record */
  size_t scan;                  /* UNTIL: bytes from head searched already */
  char *delim;                  /* UNTIL: a copy (dbuf or malloc'd) */
  size_t dlen;
  uint8_t rcr;                  /* UNTIL: read_line ("\r" before the "\n" is no content) */
  char dbuf[NX_DELIM_INLINE];
  int rerr;                     /* sticky: UV_EOF or a read error */
  int werr;                     /* sticky write error */
  int cerr;                     /* connect outcome */
  uint8_t rmode, reading, started, filled, connecting, shut, shutting, lingering;
  uv_connect_t creq;
  uv_shutdown_t sreq;
  nx_tls *tls;                  /* TLS under this stream (src/tls.c), or NULL */
  uint8_t pipe;                 /* a pipe (a child's stdio), not a TCP socket */
  char *cbuf;                   /* TLS: ciphertext from the socket */
} nx_stream;

typedef struct nx_listener {
  nx_nh nh;                     /* first */
  nx_task *acceptor;
  int pending;                  /* a connection waits in libuv's accept slot */
  int aerr;                     /* accept error for the next accept */
  size_t rhigh, whigh;          /* given to accepted streams */
  uint8_t nodelay;
} nx_listener;

/* ---- life ---- */

static int nx_send_raw(nx_stream *s, const char *p, size_t len);
static void nx_tls_flush(nx_stream *s);

/* The message of a stream's error code: a TLS failure's reason is kept
 * with its connection. */
static const char *nx_serr(const nx_stream *s, int err) {
  if (err == NX_ETLS) return s->tls ? nx_tls_error(s->tls) : "tls: error";
  return nx_net_strerror(err);
}

static int nx_sfail(lua_State *L, const nx_stream *s, int err) {
  lua_pushnil(L);
  lua_pushstring(L, nx_serr(s, err));
  return 2;
}

static void nx_stream_destroy(nx_nh *nh) {
  nx_stream *s = (nx_stream *)nh;
  free(s->buf);
  if (s->delim != s->dbuf) free(s->delim);
  nx_tls_free(s->tls);
  free(s->cbuf);
  free(s);
}

static void nx_listener_destroy(nx_nh *nh) { free(nh); }

static void nx_wake(nx_rt *rt, nx_task **slot) {
  nx_task *t = *slot;
  if (!t) return;
  *slot = NULL;
  nx_task_wake(rt, t, NX_WAKE_OK);
}

/* Pushes a new stream userdata; NULL if out of memory. If libuv refused
 * the handle, the stream is born closed (s->nh.hclosing). */
static nx_stream *nx_stream_new(lua_State *L, nx_rt *rt, size_t rhigh, size_t whigh) {
  void **ud = nx_net_newud(L, NX_SMT, NX_TAG_STREAM);
  nx_stream *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  int rc = uv_tcp_init(&rt->loop, &s->nh.u.tcp);
  nx_nh_init(&s->nh, rt, nx_stream_destroy, rc == 0);
  s->rhigh = rhigh;
  s->whigh = whigh;
  s->delim = s->dbuf;
  *ud = s;
  nx_net_ignore_sigpipe();
  return s;
}

uv_stream_t *nx_pipe_stream_new(lua_State *L, nx_rt *rt) {
  luaL_getmetatable(L, NX_STREAM_MT);   /* not an upvalue here: called from process.c */
  int mt = lua_gettop(L);
  void **ud = nx_net_newud(L, mt, NX_TAG_STREAM);
  lua_remove(L, mt);
  nx_stream *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  int rc = uv_pipe_init(&rt->loop, &s->nh.u.pipe, 0);
  nx_nh_init(&s->nh, rt, nx_stream_destroy, rc == 0);
  s->pipe = 1;
  s->rhigh = 65536;
  s->whigh = 65536;
  s->delim = s->dbuf;
  *ud = s;
  nx_net_ignore_sigpipe();
  return rc == 0 ? &s->nh.u.s : NULL;
}

/* Raises for what only a TCP socket does. */
static void nx_check_tcp(lua_State *L, nx_stream *s, const char *fname) {
  if (s->pipe) nx_net_error(L, "%s: not a tcp stream (a process's pipe)", fname);
}

static void nx_read_stop(nx_stream *s) {
  if (!s->reading) return;
  s->reading = 0;
  uv_read_stop(&s->nh.u.s);
}

static void nx_linger_cb(uv_shutdown_t *req, int status) {
  nx_stream *s = req->data;
  (void)status;
  s->shutting = 0;
  if (s->lingering) nx_nh_close_handle(&s->nh);
}

/* close(): waiters get "closed"; queued writes still go out unless the
 * write side failed (a shutdown request completes after them). */
static void nx_stream_close(nx_stream *s) {
  if (s->nh.closed) return;
  /* TLS: close_notify goes out with the queued data (best effort: no
   * wait for the peer's). */
  if (s->tls && !s->nh.hclosing && !s->werr && !s->shut && !s->connecting) {
    nx_tls_close_notify(s->tls);
    nx_tls_flush(s);
  }
  s->nh.closed = 1;
  nx_wake(s->nh.rt, &s->reader);
  nx_wake(s->nh.rt, &s->writer);
  nx_read_stop(s);
  free(s->buf);
  s->buf = NULL;
  s->cap = s->head = s->tail = 0;
  if (!s->nh.hclosing && !s->werr && !s->connecting && s->nh.u.s.write_queue_size > 0) {
    s->lingering = 1;
    if (s->shutting) return;            /* the user's shutdown closes it */
    s->sreq.data = s;
    if (!s->shut && uv_shutdown(&s->sreq, &s->nh.u.s, nx_linger_cb) == 0) {
      s->shutting = 1;
      return;
    }
  }
  nx_nh_close_handle(&s->nh);
}

/* ---- the read buffer ---- */

static size_t nx_avail(const nx_stream *s) { return s->tail - s->head; }

/* Makes room for at least minfree bytes after tail: compacts, then grows. */
static int nx_rbuf_reserve(nx_stream *s, size_t minfree) {
  size_t n = nx_avail(s);
  if (n == 0) s->head = s->tail = 0;
  if (s->cap - s->tail >= minfree) return 0;
  size_t cap = s->cap ? s->cap : NX_RBUF_INIT;
  while (cap - n < minfree) cap *= 2;
  if (cap == s->cap) {                  /* room enough once compacted */
    memmove(s->buf, s->buf + s->head, n);
  } else {
    char *b = malloc(cap);
    if (!b) return UV_ENOBUFS;
    if (n) memcpy(b, s->buf + s->head, n);
    free(s->buf);
    s->buf = b;
    s->cap = cap;
  }
  s->head = 0;
  s->tail = n;
  return 0;
}

/* TLS: libuv reads ciphertext into the stream's cbuf (a TLS record and
 * then some), which goes straight into the read BIO. */
#define NX_CBUF (16384 + 1024)

static void nx_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  nx_stream *s = (nx_stream *)h;
  (void)hint;
  if (s->tls) {
    b->base = s->cbuf;
    b->len = s->cbuf ? NX_CBUF : 0;
    return;
  }
  /* The last read filled all we gave: more is waiting, give twice as
   * much (up to the high-water mark). */
  size_t want = NX_RBUF_MINFREE;
  if (s->filled && s->lastlen * 2 > want) want = s->lastlen * 2;
  if (want > s->rhigh && s->rhigh >= NX_RBUF_MINFREE) want = s->rhigh;
  if (nx_rbuf_reserve(s, want) != 0) {
    b->base = NULL;
    b->len = 0;                         /* libuv reports UV_ENOBUFS */
    return;
  }
  b->base = s->buf + s->tail;
  b->len = s->cap - s->tail;
  s->lastlen = b->len;
}

/* Length of the record the waiting reader asked for, if the buffer holds
 * it: for UNTIL, the bytes before the delimiter plus one (0 would mean
 * "not yet"), or (size_t)-1 when the first rneed bytes (the longest record
 * and its delimiter) hold no delimiter: too long. 0: not yet. */
static size_t nx_satisfies(nx_stream *s) {
  size_t n = nx_avail(s);
  switch (s->rmode) {
  case NX_RD_ANY: return n;
  case NX_RD_EXACT: return n >= s->rneed ? s->rneed : 0;
  default: break;
  }
  const char *base = s->buf + s->head;
  size_t lim = n < s->rneed ? n : s->rneed;   /* a record never spans more */
  if (lim >= s->dlen && lim > s->scan) {
    const char *p = memmem(base + s->scan, lim - s->scan, s->delim, s->dlen);
    if (p) return (size_t)(p - base) + 1;
    s->scan = lim - s->dlen + 1;              /* a match may start after that */
  }
  if (n >= s->rneed) return (size_t)-1;
  /* read_line: rneed allows a "\r" after max bytes of content; any other
   * byte there makes the line too long already (an LF line of max + 1
   * bytes does not wait for one more byte). */
  size_t max = s->rneed - s->dlen - 1;
  if (s->rcr && n > max && base[max] != '\r') return (size_t)-1;
  return 0;
}

static int nx_read_start(nx_stream *s);

static void nx_tls_input(nx_stream *s, const char *p, size_t n);

static void nx_read_cb(uv_stream_t *h, ssize_t n, const uv_buf_t *b) {
  nx_stream *s = (nx_stream *)h;
  if (n > 0 && s->tls) {
    nx_tls_input(s, b->base, (size_t)n);
    if (s->nh.closed) return;
  } else if (n > 0) {
    s->tail += (size_t)n;
    s->filled = (size_t)n == b->len;
  } else if (n == 0) {
    return;                             /* EAGAIN */
  } else {
    if (s->tls && !nx_tls_done(s->tls) && !s->rerr) {
      char what[96];
      snprintf(what, sizeof what, "connection %s during handshake",
               n == UV_EOF ? "closed" : nx_net_strerror((int)n));
      nx_tls_set_error(s->tls, what);
      s->rerr = NX_ETLS;
      if (!s->werr) s->werr = NX_ETLS;
      nx_wake(s->nh.rt, &s->writer);    /* the handshake's waiter */
    }
    if (!s->rerr) s->rerr = (int)n;
    nx_read_stop(s);
  }
  if (s->reader) {
    if (n < 0 || s->rerr || nx_satisfies(s)) nx_wake(s->nh.rt, &s->reader);
  } else if (nx_avail(s) >= s->rhigh) {
    nx_read_stop(s);                    /* nobody reads: let the kernel hold it */
  }
}

static int nx_read_start(nx_stream *s) {
  s->started = 1;
  if (s->reading || s->rerr || s->nh.closed) return 0;
  int rc = uv_read_start(&s->nh.u.s, nx_alloc_cb, nx_read_cb);
  if (rc != 0) {
    s->rerr = rc;
    return rc;
  }
  s->reading = 1;
  return 0;
}

/* The reader took n bytes: below the mark again, let data in. */
static void nx_consume(nx_stream *s, size_t n) {
  s->head += n;
  if (s->head == s->tail) s->head = s->tail = 0;
  if (!s->reading && s->started && nx_avail(s) < s->rhigh) nx_read_start(s);
}

static void nx_reader_cancel(nx_rt *rt, nx_task *t) {
  nx_stream *s = t->wobj;
  (void)rt;
  if (s->reader == t) s->reader = NULL;
  if (nx_avail(s) >= s->rhigh) nx_read_stop(s);
}

/* ---- argument checks ---- */

static nx_stream *nx_check_stream(lua_State *L, const char *fname) {
  return nx_net_check(L, 1, NX_TAG_STREAM, fname, "a tcp stream");
}

/* The runtime of a suspending call on s: raises outside its tasks. */
static nx_rt *nx_stream_rt(lua_State *L, nx_stream *s, const char *fname) {
  return nx_net_task_rt(L, s->nh.rt, fname);
}

/* ---- reads ---- */

/* Registers the running task as the reader; returns the wait sentinel. */
static int nx_read_wait(lua_State *L, nx_rt *rt, nx_stream *s, const char *fname) {
  if (nx_wait(rt, nx_reader_cancel, s) != NX_OK)
    return nx_net_error(L, "%s: not inside a nexus task", fname);
  s->reader = rt->cur;
  nx_read_start(s);
  return nx_net_wait(L, rt);
}

/* The cooperative budget (rt.h nx_coop_spend): a read about to complete
 * from the buffer yields once instead when the budget is spent (the fast
 * path may have spent it already: coop_pending). Returns false to the Lua
 * side, which yields with no wait registered and calls again. Where the
 * coroutine cannot yield the read just completes. */
static int nx_read_coop(lua_State *L, nx_rt *rt) {
  if (!rt->coop_pending && !nx_coop_spend(rt)) return 0;
  rt->coop_pending = 0;
  if (!lua_isyieldable(L) || !nx_may_suspend(rt, L)) return 0;
  lua_pushboolean(L, 0);
  return 1;
}

static void nx_check_reader(lua_State *L, nx_stream *s, const char *fname) {
  if (s->reader) nx_net_error(L, "%s: another task is already reading", fname);
}

/* nil, err[, partial]: an error ends the wait for a record; what was
 * buffered is handed over (and consumed) as the partial record. */
static int nx_read_fail(lua_State *L, nx_stream *s, int err, int partial) {
  lua_pushnil(L);
  lua_pushstring(L, nx_serr(s, err));
  if (!partial) return 2;
  size_t n = nx_avail(s);
  lua_pushlstring(L, s->buf ? s->buf + s->head : "", n);
  nx_consume(s, n);
  return 3;
}

static int nx_push_consume(lua_State *L, nx_stream *s, size_t n, size_t skip) {
  lua_pushlstring(L, s->buf + s->head, n);
  nx_consume(s, n + skip);
  return 1;
}

/* core.tcp_read(s, max): string of 1..max bytes | nil, err | false */
static int l_read(lua_State *L) {
  nx_stream *s = nx_check_stream(L, "stream:read");
  size_t max = (size_t)nx_net_optint(L, 2, (lua_Integer)1 << 52, 1, (lua_Integer)1 << 52,
                                     "stream:read", "max");
  nx_rt *rt = nx_stream_rt(L, s, "stream:read");
  nx_check_reader(L, s, "stream:read");
  if (s->nh.closed) return nx_net_fail(L, UV_ECANCELED);
  size_t n = nx_avail(s);
  if (n && nx_read_coop(L, rt)) return 1;
  if (n) return nx_push_consume(L, s, n < max ? n : max, 0);
  if (s->rerr) return nx_sfail(L, s, s->rerr);
  s->rmode = NX_RD_ANY;
  return nx_read_wait(L, rt, s, "stream:read");
}

/* core.tcp_read_exactly(s, n): n bytes | nil, err, partial | false */
static int l_read_exactly(lua_State *L) {
  nx_stream *s = nx_check_stream(L, "stream:read_exactly");
  lua_Integer want = lua_isnoneornil(L, 2) ? -1 : nx_net_optint(L, 2, 0, 0, (lua_Integer)1 << 52,
                                                               "stream:read_exactly", "n");
  if (want < 0) return nx_net_error(L, "stream:read_exactly: n must be an integer, got nil");
  nx_rt *rt = nx_stream_rt(L, s, "stream:read_exactly");
  nx_check_reader(L, s, "stream:read_exactly");
  if (s->nh.closed) return nx_net_fail(L, UV_ECANCELED);
  size_t n = nx_avail(s);
  if (n >= (size_t)want) {
    if (nx_read_coop(L, rt)) return 1;
    if (want == 0) {
      lua_pushliteral(L, "");
      return 1;
    }
    return nx_push_consume(L, s, (size_t)want, 0);
  }
  if (s->rerr) return nx_read_fail(L, s, s->rerr, 1);
  s->rmode = NX_RD_EXACT;
  s->rneed = (size_t)want;
  return nx_read_wait(L, rt, s, "stream:read_exactly");
}

/* core.tcp_fill(s, have): true once more than have bytes are buffered |
 * nil, err (eof or the read error) | false (the task now waits). For a
 * parser working on the buffer in place (src/httpd.c): it takes what it
 * parsed with nx_stream_take and asks for more with this. */
static int l_fill(lua_State *L) {
  nx_stream *s = nx_check_stream(L, "stream:fill");
  size_t have = (size_t)nx_net_optint(L, 2, 0, 0, (lua_Integer)1 << 52, "stream:fill", "have");
  nx_rt *rt = nx_stream_rt(L, s, "stream:fill");
  nx_check_reader(L, s, "stream:fill");
  if (s->nh.closed) return nx_net_fail(L, UV_ECANCELED);
  if (nx_avail(s) > have) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (s->rerr) return nx_sfail(L, s, s->rerr);
  s->rmode = NX_RD_EXACT;
  s->rneed = have + 1;
  return nx_read_wait(L, rt, s, "stream:fill");
}

static void nx_set_delim(lua_State *L, nx_stream *s, const char *d, size_t dl, const char *fname) {
  if (s->delim != s->dbuf) free(s->delim);
  s->delim = s->dbuf;
  if (dl > NX_DELIM_INLINE && !(s->delim = malloc(dl))) {
    s->delim = s->dbuf;
    nx_net_error(L, "%s: out of memory", fname);
  }
  memcpy(s->delim, d, dl);
  s->dlen = dl;
}

/* core.tcp_read_until(s, delim, max, fname, strip_cr):
 * record without the delimiter | nil, err, partial | false.
 * Records longer than max give nil, "too long" and stay buffered. */
static int l_read_until(lua_State *L) {
  const char *fname = lua_tostring(L, 4);
  if (!fname) fname = "stream:read_until";
  nx_stream *s = nx_check_stream(L, fname);
  size_t dl;
  const char *d = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &dl) : NULL;
  if (!d) return nx_net_error(L, "%s: delimiter must be a string, got %s", fname, nx_net_typename(L, 2));
  if (dl == 0) return nx_net_error(L, "%s: empty delimiter", fname);
  size_t max = (size_t)nx_net_optint(L, 3, 1 << 20, 1, (lua_Integer)1 << 52, fname, "max");
  int strip_cr = lua_toboolean(L, 5);
  nx_rt *rt = nx_stream_rt(L, s, fname);
  nx_check_reader(L, s, fname);
  if (s->nh.closed) return nx_net_fail(L, UV_ECANCELED);
  nx_set_delim(L, s, d, dl, fname);
  s->rmode = NX_RD_UNTIL;
  /* The record and its delimiter, and for read_line the '\r' before it:
   * max counts the line's content, so a CRLF line of max bytes fits. */
  s->rneed = max + dl + (strip_cr ? 1 : 0);
  s->rcr = (uint8_t)strip_cr;
  s->scan = 0;
  size_t found = nx_avail(s) ? nx_satisfies(s) : 0;
  if (found && found != (size_t)-1) {
    size_t len = found - 1;
    int cr = strip_cr && len > 0 && s->buf[s->head + len - 1] == '\r';
    if (len - cr <= max) {
      if (nx_read_coop(L, rt)) return 1;
      return nx_push_consume(L, s, len - cr, dl + cr);
    }
  }
  if (found) {
    lua_pushnil(L);                     /* stays buffered */
    lua_pushliteral(L, "too long");
    return 2;
  }
  if (s->rerr) return nx_read_fail(L, s, s->rerr, 1);
  return nx_read_wait(L, rt, s, fname);
}

/* ---- writes ---- */

typedef struct nx_wreq {
  uv_write_t req;
  char data[];
} nx_wreq;

static void nx_writer_cancel(nx_rt *rt, nx_task *t) {
  nx_stream *s = t->wobj;
  (void)rt;
  if (s->writer == t) s->writer = NULL;
}

static void nx_write_cb(uv_write_t *req, int status) {
  nx_stream *s = (nx_stream *)req->handle;
  free(req);
  if (status < 0 && status != UV_ECANCELED && !s->werr) s->werr = status;
  if (s->writer && (s->werr || s->nh.u.s.write_queue_size <= s->whigh))
    nx_wake(s->nh.rt, &s->writer);
}

/* Writes what the socket takes now, queues the rest; 0 or an error. */
static int nx_send_raw(nx_stream *s, const char *p, size_t len) {
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)(len < 0x7fffffff ? len : 0x7fffffff));
  int n = uv_try_write(&s->nh.u.s, &b, 1);
  if (n >= 0) {
    p += n;
    len -= (size_t)n;
  } else if (n != UV_EAGAIN) {
    return n;
  }
  while (len > 0) {
    size_t k = len < NX_WCHUNK ? len : NX_WCHUNK;
    nx_wreq *w = malloc(sizeof *w + k);
    if (!w) return UV_ENOBUFS;
    memcpy(w->data, p, k);
    b = uv_buf_init(w->data, (unsigned)k);
    int rc = uv_write(&w->req, &s->nh.u.s, &b, 1, nx_write_cb);
    if (rc != 0) {
      free(w);
      return rc;
    }
    p += k;
    len -= k;
  }
  return 0;
}

/* ---- TLS glue (src/tls.c does the OpenSSL side) ---- */

/* Sends what OpenSSL wrote into the write BIO. */
static void nx_tls_flush(nx_stream *s) {
  size_t n;
  const char *p = nx_tls_out(s->tls, &n);
  if (n == 0) return;
  int rc = s->nh.hclosing ? UV_ECANCELED : nx_send_raw(s, p, n);
  nx_tls_out_clear(s->tls);
  if (rc < 0 && !s->werr) s->werr = rc;
}

/* The connection failed (the reason is in s->tls): reads and writes say
 * so from now on; every waiter wakes to see it. */
static void nx_tls_broken(nx_stream *s) {
  if (!s->rerr) s->rerr = NX_ETLS;
  if (!s->werr) s->werr = NX_ETLS;
  nx_read_stop(s);
  nx_wake(s->nh.rt, &s->reader);
  nx_wake(s->nh.rt, &s->writer);
}

/* Ciphertext from the socket: into the read BIO, then the handshake
 * advances or records are decrypted into the read buffer (all that is
 * there: the buffer may pass the high-water mark by one read's worth, and
 * then reading stops as for plain streams). */
static void nx_tls_input(nx_stream *s, const char *p, size_t n) {
  nx_tls *t = s->tls;
  if (s->rerr) return;                  /* broken, or close_notify seen */
  if (nx_tls_feed(t, p, n) != 0) {
    nx_tls_broken(s);
    return;
  }
  if (!nx_tls_done(t)) {
    int rc = nx_tls_handshake(t);
    nx_tls_flush(s);                    /* the next flight, or an alert */
    if (rc == NX_TLS_ERR) {
      nx_tls_broken(s);
      return;
    }
    if (rc != 0) return;                /* more to come */
    nx_wake(s->nh.rt, &s->writer);      /* the handshake's waiter */
  }
  for (;;) {
    if (nx_rbuf_reserve(s, 16384 + 256) != 0) {
      nx_tls_set_error(t, "out of memory");
      nx_tls_broken(s);
      return;
    }
    size_t k = 0;
    int rc = nx_tls_read(t, s->buf + s->tail, s->cap - s->tail, &k);
    s->tail += k;
    if (rc == 0) continue;
    nx_tls_flush(s);                    /* tickets, key updates, alerts */
    if (rc == NX_TLS_AGAIN) break;
    if (rc == NX_TLS_EOF) {             /* close_notify: the end */
      s->rerr = UV_EOF;
      nx_read_stop(s);
      break;
    }
    nx_tls_broken(s);
    return;
  }
}

/* Plaintext out: encrypted into the write BIO, which then goes to the
 * socket (and its queue, so backpressure counts ciphertext). */
static int nx_send(nx_stream *s, const char *p, size_t len) {
  if (!s->tls) return nx_send_raw(s, p, len);
  while (len > 0) {
    size_t k = len < NX_WCHUNK ? len : NX_WCHUNK;
    if (nx_tls_write(s->tls, p, k) != 0) {
      nx_tls_flush(s);
      return NX_ETLS;
    }
    nx_tls_flush(s);
    if (s->werr) return s->werr;
    p += k;
    len -= k;
  }
  return 0;
}

static int nx_write_state(lua_State *L, nx_stream *s) {
  if (s->nh.closed) return nx_net_fail(L, UV_ECANCELED);
  if (s->werr) return nx_sfail(L, s, s->werr);
  return 0;
}

static int nx_write_wait(lua_State *L, nx_rt *rt, nx_stream *s) {
  if (nx_wait(rt, nx_writer_cancel, s) != NX_OK)
    return nx_net_error(L, "stream:write: not inside a nexus task");
  s->writer = rt->cur;
  return nx_net_wait(L, rt);
}

/* core.tcp_write(s, data): true | nil, err | false (queued above the mark:
 * yield, then core.tcp_write_wait) */
static int l_write(lua_State *L) {
  nx_stream *s = nx_check_stream(L, "stream:write");
  size_t len;
  const char *p = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &len) : NULL;
  if (!p) return nx_net_error(L, "stream:write: expected a string, got %s", nx_net_typename(L, 2));
  nx_rt *rt = nx_stream_rt(L, s, "stream:write");
  if (s->writer) return nx_net_error(L, "stream:write: another task is already writing");
  int r = nx_write_state(L, s);
  if (r) return r;
  if (s->shut) {
    lua_pushnil(L);
    lua_pushliteral(L, "shut down");
    return 2;
  }
  if (s->tls && !nx_tls_done(s->tls)) {
    /* An accepted TLS stream's handshake runs on its first read or write:
     * wait for it, then the Lua side calls this again ("again"). */
    if (s->rerr) return nx_sfail(L, s, s->rerr);
    int k = nx_write_wait(L, rt, s);
    nx_read_start(s);
    if (k == 1) lua_pushboolean(L, 0);
    lua_pushliteral(L, "again");
    return 3;
  }
  if (len) {
    int rc = nx_send(s, p, len);
    if (rc < 0) {
      if (!s->werr) s->werr = rc;
      return nx_sfail(L, s, rc);
    }
    if (s->nh.u.s.write_queue_size > s->whigh) return nx_write_wait(L, rt, s);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* core.tcp_write_wait(s): after the writer was woken. */
static int l_write_wait(lua_State *L) {
  nx_stream *s = nx_check_stream(L, "stream:write");
  nx_rt *rt = nx_stream_rt(L, s, "stream:write");
  int r = nx_write_state(L, s);
  if (r) return r;
  if (s->nh.u.s.write_queue_size > s->whigh) return nx_write_wait(L, rt, s);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- the FFI fast path ----
 *
 * read and write are the calls of every echo, request and response: when
 * data is buffered (read) or the socket takes it (write) they complete at
 * once, and the Lua side reaches them through the FFI, which the JIT
 * compiles to direct calls (a classic C function costs a trace exit and
 * the API's checks). Anything else (a wait to register where the Lua
 * side must first check it may yield, an error, bad arguments) returns
 * "slow" without side effects, and the Lua side calls the classic entry
 * point, which does the same and reports. The Lua side has checked that
 * ud is a userdata with the stream metatable (so a payload of nx_ud). */

static nx_rt *nx_fast_rt(nx_ud *u) {
  nx_stream *s = u->p;
  nx_rt *rt = nx_cur_rt;
  if (u->tag != NX_TAG_STREAM || !s || rt != s->nh.rt || !nx_running(rt) || s->nh.closed) return NULL;
  return rt;
}

/* Up to max (0: no limit) buffered bytes, consumed; *n their count. NULL
 * when nothing is buffered or anything is unusual: take the slow path.
 * The bytes stay where they are until the loop runs libuv again, so the
 * caller copies them (ffi.string) right away. */
static const char *nx_fast_read(void *ud, size_t max, size_t *n) {
  nx_ud *u = ud;
  nx_stream *s = u->p;
  nx_rt *rt = nx_fast_rt(u);
  if (!rt || s->reader) return NULL;
  size_t a = nx_avail(s);
  if (a == 0 || nx_coop_spend(rt)) return NULL;   /* the slow path yields once */
  if (max && a > max) a = max;
  const char *p = s->buf + s->head;
  nx_consume(s, a);
  *n = a;
  return p;
}

/* The buffered bytes, left in place (*n their count; NULL when the
 * stream is not usable here or another task reads it), and the taking of
 * the first n of them: a parser in C reads the buffer without a copy
 * (src/httpd.c). Bytes stay valid until the loop runs libuv again. */
const char *nx_stream_peek(void *ud, size_t *n) {
  nx_ud *u = ud;
  nx_stream *s = u->p;
  if (!nx_fast_rt(u) || s->reader) return NULL;
  *n = nx_avail(s);
  return s->buf ? s->buf + s->head : "";
}

void nx_stream_take(void *ud, size_t n) {
  nx_ud *u = ud;
  nx_stream *s = u->p;
  if (!nx_fast_rt(u) || n > nx_avail(s)) return;
  nx_consume(s, n);
}

/* 0: written or queued (true); 1: queued above the mark, the writer now
 * waits (yield, then core.tcp_write_wait); 2: slow path, nothing done. */
static int nx_fast_write(void *ud, const char *p, size_t len) {
  nx_ud *u = ud;
  nx_stream *s = u->p;
  nx_rt *rt = nx_fast_rt(u);
  if (!rt || s->writer || s->werr || s->shut || (s->tls && !nx_tls_done(s->tls))) return 2;
  if (len == 0) return 0;
  int rc = nx_send(s, p, len);
  if (rc < 0) {
    if (!s->werr) s->werr = rc;         /* the slow path reports it */
    return 2;
  }
  if (s->nh.u.s.write_queue_size > s->whigh && nx_wait(rt, nx_writer_cancel, s) == NX_OK) {
    s->writer = rt->cur;
    return 1;
  }
  return 0;
}

typedef struct nx_tcp_api {
  const char *(*read)(void *ud, size_t max, size_t *n);
  int (*write)(void *ud, const char *p, size_t len);
} nx_tcp_api;

static const nx_tcp_api nx_tcp_api_table = { nx_fast_read, nx_fast_write };

/* ---- connect ---- */

static void nx_connect_cb(uv_connect_t *req, int status) {
  nx_stream *s = req->data;
  s->connecting = 0;
  s->cerr = status;
  nx_wake(s->nh.rt, &s->writer);
}

/* Abandoned (timeout, abort): the stream goes with the attempt. */
static void nx_connect_cancel(nx_rt *rt, nx_task *t) {
  nx_stream *s = t->wobj;
  (void)rt;
  if (s->writer == t) s->writer = NULL;
  nx_stream_close(s);
}

static size_t nx_opt_size(lua_State *L, int idx, size_t dflt, const char *fname, const char *what) {
  return (size_t)nx_net_optint(L, idx, (lua_Integer)dflt, 1, (lua_Integer)1 << 40, fname, what);
}

/* core.tcp_connect(ip, port, nodelay, read_high, write_high):
 * stream, false (then core.tcp_connected) | nil, err */
static int l_connect(lua_State *L) {
  const char *fname = "nexus.tcp.connect";
  const char *ip = nx_net_checkhost(L, 1, fname, "host");
  int port = (int)nx_net_optint(L, 2, 0, 1, 65535, fname, "port");
  int nodelay = lua_toboolean(L, 3);
  size_t rhigh = nx_opt_size(L, 4, 65536, fname, "read_high_water");
  size_t whigh = nx_opt_size(L, 5, 65536, fname, "write_high_water");
  nx_rt *rt = nx_net_task_rt(L, nx_cur_rt, fname);
  struct sockaddr_storage ss;
  if (nx_net_addr(ip, port, &ss) != 0) return nx_net_fail(L, UV_EINVAL);
  nx_stream *s = nx_stream_new(L, rt, rhigh, whigh);
  if (!s) return nx_net_fail(L, UV_ENOMEM);
  if (s->nh.hclosing) return nx_net_fail(L, UV_ENOMEM);
  s->creq.data = s;
  int rc = uv_tcp_connect(&s->creq, &s->nh.u.tcp, (struct sockaddr *)&ss, nx_connect_cb);
  if (rc != 0) {
    nx_stream_close(s);
    return nx_net_fail(L, rc);
  }
  if (nodelay) uv_tcp_nodelay(&s->nh.u.tcp, 1);
  s->connecting = 1;
  if (nx_wait(rt, nx_connect_cancel, s) != NX_OK) {
    nx_stream_close(s);
    return nx_net_error(L, "%s: not inside a nexus task", fname);
  }
  s->writer = rt->cur;
  return 1 + nx_net_wait(L, rt);
}

/* core.tcp_connected(s): true | nil, err | false */
static int l_connected(lua_State *L) {
  nx_stream *s = nx_check_stream(L, "nexus.tcp.connect");
  nx_rt *rt = nx_stream_rt(L, s, "nexus.tcp.connect");
  if (s->nh.closed) return nx_net_fail(L, UV_ECANCELED);
  if (s->connecting) {
    if (nx_wait(rt, nx_connect_cancel, s) != NX_OK)
      return nx_net_error(L, "nexus.tcp.connect: not inside a nexus task");
    s->writer = rt->cur;
    return nx_net_wait(L, rt);
  }
  if (s->cerr) {
    int err = s->cerr;
    nx_stream_close(s);
    return nx_net_fail(L, err);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- stream methods that do not suspend ---- */

static int l_close(lua_State *L) {
  nx_stream *s = nx_check_stream(L, "stream:close");
  nx_net_rt(L, s->nh.rt, "stream:close");
  nx_stream_close(s);
  return 0;
}

static void nx_shutdown_cb(uv_shutdown_t *req, int status) {
  nx_stream *s = req->data;
  s->shutting = 0;
  if (status < 0 && status != UV_ECANCELED && !s->werr) s->werr = status;
  if (s->lingering) nx_nh_close_handle(&s->nh);
}

/* s:shutdown(): the write side ends once the queued data is out. */
static int l_shutdown(lua_State *L) {
  nx_stream *s = nx_check_stream(L, "stream:shutdown");
  nx_net_rt(L, s->nh.rt, "stream:shutdown");
  if (s->nh.closed) return nx_net_fail(L, UV_ECANCELED);
  if (!s->shut) {
    if (s->tls && !s->werr) {           /* TLS: close_notify, then FIN */
      nx_tls_close_notify(s->tls);
      nx_tls_flush(s);
    }
    s->sreq.data = s;
    int rc = uv_shutdown(&s->sreq, &s->nh.u.s, nx_shutdown_cb);
    if (rc != 0) return nx_net_fail(L, rc);
    s->shut = s->shutting = 1;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int nx_ok_or_fail(lua_State *L, int rc) {
  if (rc != 0) return nx_net_fail(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_set_nodelay(lua_State *L) {
  nx_stream *s = nx_check_stream(L, "stream:set_nodelay");
  nx_check_tcp(L, s, "stream:set_nodelay");
  nx_net_rt(L, s->nh.rt, "stream:set_nodelay");
  if (s->nh.closed) return nx_net_fail(L, UV_ECANCELED);
  return nx_ok_or_fail(L, uv_tcp_nodelay(&s->nh.u.tcp, lua_isnone(L, 2) || lua_toboolean(L, 2)));
}

static int l_set_keepalive(lua_State *L) {
  nx_stream *s = nx_check_stream(L, "stream:set_keepalive");
  nx_check_tcp(L, s, "stream:set_keepalive");
  int on = lua_isnone(L, 2) || lua_toboolean(L, 2);
  lua_Integer secs = nx_net_optint(L, 3, 60, 1, 1 << 20, "stream:set_keepalive", "delay");
  nx_net_rt(L, s->nh.rt, "stream:set_keepalive");
  if (s->nh.closed) return nx_net_fail(L, UV_ECANCELED);
  return nx_ok_or_fail(L, uv_tcp_keepalive(&s->nh.u.tcp, on, (unsigned)secs));
}

typedef int (*nx_nameof)(const uv_tcp_t *, struct sockaddr *, int *);

static int nx_push_name(lua_State *L, nx_nh *nh, nx_nameof fn) {
  if (nh->closed) return nx_net_fail(L, UV_ECANCELED);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int rc = fn(&nh->u.tcp, (struct sockaddr *)&ss, &len);
  if (rc != 0) return nx_net_fail(L, rc);
  return nx_net_push_addr(L, (struct sockaddr *)&ss);
}

static int l_peer_addr(lua_State *L) {
  nx_stream *s = nx_check_stream(L, "stream:peer_addr");
  nx_check_tcp(L, s, "stream:peer_addr");
  return nx_push_name(L, &s->nh, uv_tcp_getpeername);
}

static int l_local_addr(lua_State *L) {
  nx_stream *s = nx_check_stream(L, "stream:local_addr");
  nx_check_tcp(L, s, "stream:local_addr");
  return nx_push_name(L, &s->nh, uv_tcp_getsockname);
}

/* stream:buffered(): bytes read from the socket and not yet taken. */
static int l_buffered(lua_State *L) {
  nx_stream *s = nx_check_stream(L, "stream:buffered");
  lua_pushinteger(L, (lua_Integer)nx_avail(s));
  return 1;
}

/* core.tcp_peek(s): the buffered bytes, not consumed: the partial record
 * of a read that timed out (they stay for the next read). */
static int l_peek(lua_State *L) {
  nx_stream *s = nx_check_stream(L, "stream:peek");
  lua_pushlstring(L, s->buf ? s->buf + s->head : "", nx_avail(s));
  return 1;
}

/* stream:write_queued(): bytes accepted by write and not yet sent. */
static int l_write_queued(lua_State *L) {
  nx_stream *s = nx_check_stream(L, "stream:write_queued");
  lua_pushinteger(L, s->nh.closed ? 0 : (lua_Integer)s->nh.u.s.write_queue_size);
  return 1;
}

static int l_is_closed(lua_State *L) {
  nx_stream *s = nx_check_stream(L, "stream:is_closed");
  lua_pushboolean(L, s->nh.closed);
  return 1;
}

static int l_stream_gc(lua_State *L) {
  nx_stream **ud = lua_touserdata(L, 1);
  nx_stream *s = *ud;
  if (!s) return 0;
  *ud = NULL;
  /* A waiter still linked here would be a task whose coroutine holds us:
   * only at lua_close, in any order. Wake it so nothing dangles. */
  nx_wake(s->nh.rt, &s->reader);
  nx_wake(s->nh.rt, &s->writer);
  nx_nh_gc(&s->nh, !s->lingering);
  return 0;
}

static int nx_tostring(lua_State *L, const char *kind, nx_nh *nh, int peer) {
  if (!nh || nh->closed) {
    lua_pushfstring(L, "nexus.tcp.%s(closed)", kind);
    return 1;
  }
  struct sockaddr_storage a, b;
  char la[NX_ADDRSTRLEN + 8] = "?", pa[NX_ADDRSTRLEN + 8] = "?";
  int len = sizeof a;
  if (uv_tcp_getsockname(&nh->u.tcp, (struct sockaddr *)&a, &len) == 0)
    nx_net_fmt((struct sockaddr *)&a, la, sizeof la);
  len = sizeof b;
  if (peer && uv_tcp_getpeername(&nh->u.tcp, (struct sockaddr *)&b, &len) == 0)
    nx_net_fmt((struct sockaddr *)&b, pa, sizeof pa);
  if (peer) lua_pushfstring(L, "nexus.tcp.%s(%s -> %s)", kind, la, pa);
  else lua_pushfstring(L, "nexus.tcp.%s(%s)", kind, la);
  return 1;
}

static int l_stream_tostring(lua_State *L) {
  nx_stream **ud = lua_touserdata(L, 1);
  if (ud && *ud && (*ud)->pipe) {
    lua_pushstring(L, (*ud)->nh.closed ? "nexus.pipe(closed)" : "nexus.pipe");
    return 1;
  }
  return nx_tostring(L, "stream", ud ? &(*ud)->nh : NULL, 1);
}

/* ---- listeners ---- */

static void nx_connection_cb(uv_stream_t *server, int status) {
  nx_listener *ln = (nx_listener *)server;
  if (status < 0) ln->aerr = status;
  else ln->pending = 1;      /* libuv stops watching until uv_accept */
  nx_wake(ln->nh.rt, &ln->acceptor);
}

static void nx_acceptor_cancel(nx_rt *rt, nx_task *t) {
  nx_listener *ln = t->wobj;
  (void)rt;
  if (ln->acceptor == t) ln->acceptor = NULL;
}

static nx_listener *nx_check_listener(lua_State *L, const char *fname) {
  return nx_net_check(L, 1, NX_TAG_LISTENER, fname, "a tcp listener");
}

static void nx_listener_close(nx_listener *ln) {
  if (ln->nh.closed) return;
  ln->nh.closed = 1;
  nx_wake(ln->nh.rt, &ln->acceptor);
  nx_nh_close_handle(&ln->nh);
}

/* core.tcp_listen(host, port, backlog, reuseport, nodelay, read_high, write_high)
 * (the stream metatable is upvalue 2): listener | nil, err */
static int l_listen(lua_State *L) {
  const char *fname = "nexus.tcp.listen";
  const char *host = nx_net_checkhost(L, 1, fname, "host");
  int port = (int)nx_net_optint(L, 2, 0, 0, 65535, fname, "port");
  int backlog = (int)nx_net_optint(L, 3, 511, 1, 1 << 16, fname, "backlog");
  int reuseport = lua_toboolean(L, 4);
  int nodelay = lua_toboolean(L, 5);
  size_t rhigh = nx_opt_size(L, 6, 65536, fname, "read_high_water");
  size_t whigh = nx_opt_size(L, 7, 65536, fname, "write_high_water");
  nx_rt *rt = nx_net_task_rt(L, nx_cur_rt, fname);
  struct sockaddr_storage ss;
  if (nx_net_addr(host, port, &ss) != 0)
    return nx_net_error(L, "%s: host must be an IP address, \"*\" or \"localhost\", got '%s'",
                        fname, host);
  void **ud = nx_net_newud(L, NX_LMT, NX_TAG_LISTENER);
  nx_listener *ln = calloc(1, sizeof *ln);
  if (!ln) return nx_net_fail(L, UV_ENOMEM);
  *ud = ln;
  int rc = uv_tcp_init_ex(&rt->loop, &ln->nh.u.tcp, ss.ss_family);
  nx_nh_init(&ln->nh, rt, nx_listener_destroy, rc == 0);
  if (rc != 0) return nx_net_fail(L, rc);
  ln->rhigh = rhigh;
  ln->whigh = whigh;
  ln->nodelay = (uint8_t)nodelay;
  if (reuseport) {
    /* Before bind, so several processes can share the port (libuv 1.44
     * has no flag for it). */
    uv_os_fd_t fd;
    int one = 1;
    rc = uv_fileno(&ln->nh.u.h, &fd);
    if (rc == 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) rc = uv_translate_sys_error(errno);
    if (rc != 0) goto fail;
  }
  if ((rc = uv_tcp_bind(&ln->nh.u.tcp, (struct sockaddr *)&ss, 0)) != 0) goto fail;
  if ((rc = uv_listen(&ln->nh.u.s, backlog, nx_connection_cb)) != 0) goto fail;
  return 1;
fail:
  nx_listener_close(ln);
  return nx_net_fail(L, rc);
}

/* core.tcp_accept(ln): stream, "ip:port" | nil, err | false */
static int l_accept(lua_State *L) {
  const char *fname = "listener:accept";
  nx_listener *ln = nx_check_listener(L, fname);
  nx_rt *rt = nx_net_task_rt(L, ln->nh.rt, fname);
  if (ln->acceptor) return nx_net_error(L, "%s: another task is already accepting", fname);
  if (ln->nh.closed) return nx_net_fail(L, UV_ECANCELED);
  if (ln->aerr) {
    int err = ln->aerr;
    ln->aerr = 0;
    return nx_net_fail(L, err);
  }
  if (!ln->pending) {
    if (nx_wait(rt, nx_acceptor_cancel, ln) != NX_OK)
      return nx_net_error(L, "%s: not inside a nexus task", fname);
    ln->acceptor = rt->cur;
    return nx_net_wait(L, rt);
  }
  ln->pending = 0;
  nx_stream *s = nx_stream_new(L, rt, ln->rhigh, ln->whigh);
  if (!s || s->nh.hclosing) return nx_net_fail(L, UV_ENOMEM);
  int rc = uv_accept(&ln->nh.u.s, &s->nh.u.s);
  if (rc != 0) {
    nx_stream_close(s);
    return nx_net_fail(L, rc);
  }
  if (ln->nodelay) uv_tcp_nodelay(&s->nh.u.tcp, 1);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  char peer[NX_ADDRSTRLEN + 8] = "?";
  if (uv_tcp_getpeername(&s->nh.u.tcp, (struct sockaddr *)&ss, &len) == 0)
    nx_net_fmt((struct sockaddr *)&ss, peer, sizeof peer);
  lua_pushstring(L, peer);
  return 2;
}

static int l_listener_close(lua_State *L) {
  nx_listener *ln = nx_check_listener(L, "listener:close");
  nx_net_rt(L, ln->nh.rt, "listener:close");
  nx_listener_close(ln);
  return 0;
}

static int l_listener_local_addr(lua_State *L) {
  nx_listener *ln = nx_check_listener(L, "listener:local_addr");
  return nx_push_name(L, &ln->nh, uv_tcp_getsockname);
}

static int l_listener_is_closed(lua_State *L) {
  nx_listener *ln = nx_check_listener(L, "listener:is_closed");
  lua_pushboolean(L, ln->nh.closed);
  return 1;
}

static int l_listener_gc(lua_State *L) {
  nx_listener **ud = lua_touserdata(L, 1);
  nx_listener *ln = *ud;
  if (!ln) return 0;
  *ud = NULL;
  nx_wake(ln->nh.rt, &ln->acceptor);
  nx_nh_gc(&ln->nh, 1);
  return 0;
}

static int l_listener_tostring(lua_State *L) {
  nx_listener **ud = lua_touserdata(L, 1);
  return nx_tostring(L, "listener", ud ? &(*ud)->nh : NULL, 0);
}

/* core.net_is_ip(host): is host an IPv4 or IPv6 literal? */
static int l_is_ip(lua_State *L) {
  unsigned char a[16];
  const char *host = nx_net_checkhost(L, 1, "nexus.tcp.connect", "host");
  lua_pushboolean(L, uv_inet_pton(AF_INET, host, a) == 0 || uv_inet_pton(AF_INET6, host, a) == 0);
  return 1;
}

/* ---- TLS entry points (lua/nexus/tcp.lua wraps them) ---- */

/* The handshake abandoned (time-out, abort, a closing runtime): a half
 * done handshake leaves nothing usable, so the stream goes with it. */
static void nx_handshake_cancel(nx_rt *rt, nx_task *t) {
  nx_stream *s = t->wobj;
  (void)rt;
  if (s->writer == t) s->writer = NULL;
  nx_stream_close(s);
}

/* core.tls_attach(s, ctx, name, fname): true | nil, err. TLS under a
 * connected plain stream: a client starts its handshake now, a server
 * waits for the client's hello (on the first read, write or
 * tls_handshake). Bytes already buffered are the peer's first TLS bytes. */
static int l_tls_attach(lua_State *L) {
  const char *fname = luaL_optstring(L, 4, "stream:tls_handshake");
  nx_stream *s = nx_check_stream(L, fname);
  nx_check_tcp(L, s, fname);
  nx_tls_ctx *c = nx_tls_check_ctx(L, 2, fname);
  const char *name = lua_type(L, 3) == LUA_TSTRING ? lua_tostring(L, 3) : NULL;
  nx_stream_rt(L, s, fname);
  if (s->nh.closed) return nx_net_fail(L, UV_ECANCELED);
  if (s->tls) return nx_net_error(L, "%s: the stream is already TLS", fname);
  if (s->reader || s->writer) return nx_net_error(L, "%s: the stream is in use by another task", fname);
  if (s->rerr) return nx_sfail(L, s, s->rerr);
  if (s->werr) return nx_sfail(L, s, s->werr);
  char err[256];
  if (!(s->cbuf = malloc(NX_CBUF))) return nx_net_fail(L, UV_ENOMEM);
  s->tls = nx_tls_new(c, name, err, sizeof err);
  if (!s->tls) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  size_t n = nx_avail(s);
  if (n) {
    if (nx_tls_feed(s->tls, s->buf + s->head, n) != 0) return nx_sfail(L, s, NX_ETLS);
    s->head = s->tail = 0;
  }
  if (!nx_tls_ctx_is_server(c)) {
    if (nx_tls_handshake(s->tls) == NX_TLS_ERR) {
      nx_tls_flush(s);
      nx_tls_broken(s);
      return nx_sfail(L, s, NX_ETLS);
    }
    nx_tls_flush(s);                    /* the ClientHello */
    if (n) nx_tls_input(s, "", 0);      /* ... and what was buffered */
  } else if (n) {
    nx_tls_input(s, "", 0);
  }
  /* The handshake runs in the background from now on (the read callback
   * answers each flight); reads and writes wait for its end. */
  if (!s->rerr) nx_read_start(s);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.tls_wait(s, fname): true | nil, err | false: the handshake's end. */
static int l_tls_wait(lua_State *L) {
  const char *fname = luaL_optstring(L, 2, "stream:tls_handshake");
  nx_stream *s = nx_check_stream(L, fname);
  nx_rt *rt = nx_stream_rt(L, s, fname);
  if (s->nh.closed) return nx_net_fail(L, UV_ECANCELED);
  if (!s->tls) return nx_net_error(L, "%s: not a TLS stream", fname);
  if (nx_tls_done(s->tls)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (s->rerr) return nx_sfail(L, s, s->rerr);
  if (s->werr) return nx_sfail(L, s, s->werr);
  if (s->writer) return nx_net_error(L, "%s: another task is already writing", fname);
  if (nx_wait(rt, nx_handshake_cancel, s) != NX_OK)
    return nx_net_error(L, "%s: not inside a nexus task", fname);
  s->writer = rt->cur;
  nx_read_start(s);
  return nx_net_wait(L, rt);
}

/* core.tls_info(s): table | nil (a plain or closed stream) */
static int l_tls_info(lua_State *L) {
  nx_stream *s = nx_check_stream(L, "stream:tls_info");
  if (!s->tls || s->nh.closed) return 0;
  return nx_tls_push_info(L, s->tls);
}

/* ---- module ---- */

static const luaL_Reg nx_stream_methods[] = {
  {"close", l_close}, {"shutdown", l_shutdown},
  {"set_nodelay", l_set_nodelay}, {"set_keepalive", l_set_keepalive},
  {"peer_addr", l_peer_addr}, {"local_addr", l_local_addr},
  {"buffered", l_buffered}, {"write_queued", l_write_queued}, {"is_closed", l_is_closed},
  {NULL, NULL},
};

static const luaL_Reg nx_stream_meta[] = {
  {"__gc", l_stream_gc}, {"__tostring", l_stream_tostring}, {NULL, NULL},
};

static const luaL_Reg nx_listener_methods[] = {
  {"close", l_listener_close}, {"local_addr", l_listener_local_addr},
  {"is_closed", l_listener_is_closed}, {NULL, NULL},
};

static const luaL_Reg nx_listener_meta[] = {
  {"__gc", l_listener_gc}, {"__tostring", l_listener_tostring}, {NULL, NULL},
};

/* The suspending entry points, for lua/nexus/tcp.lua to wrap. */
static const luaL_Reg nx_tcp_funcs[] = {
  {"tcp_read", l_read}, {"tcp_fill", l_fill}, {"tcp_read_exactly", l_read_exactly}, {"tcp_read_until", l_read_until},
  {"tcp_write", l_write}, {"tcp_write_wait", l_write_wait}, {"tcp_peek", l_peek},
  {"tcp_connect", l_connect}, {"tcp_connected", l_connected},
  {"tcp_listen", l_listen}, {"tcp_accept", l_accept}, {"net_is_ip", l_is_ip},
  {"tls_attach", l_tls_attach}, {"tls_wait", l_tls_wait}, {"tls_info", l_tls_info},
  {NULL, NULL},
};

/* For nexus.tasks(): "tcp read 127.0.0.1:9000" (the peer). */
static void nx_stream_describe(const char *what, nx_task *t, char *buf, size_t n) {
  nx_stream *s = t->wobj;
  struct sockaddr_storage ss;
  int len = sizeof ss;
  char peer[NX_ADDRSTRLEN + 8] = "?";
  if (s && !s->nh.closed && uv_tcp_getpeername(&s->nh.u.tcp, (struct sockaddr *)&ss, &len) == 0)
    nx_net_fmt((struct sockaddr *)&ss, peer, sizeof peer);
  snprintf(buf, n, "%s %s", what, peer);
}
static void nx_read_describe(nx_task *t, char *buf, size_t n) { nx_stream_describe("tcp read", t, buf, n); }
static void nx_write_describe(nx_task *t, char *buf, size_t n) { nx_stream_describe("tcp write", t, buf, n); }

void nx_tcp_open(lua_State *L) {
  nx_wait_kind(nx_reader_cancel, "tcp read", nx_read_describe);
  nx_wait_kind(nx_writer_cancel, "tcp write", nx_write_describe);
  nx_wait_kind(nx_connect_cancel, "tcp connect", NULL);
  nx_wait_kind(nx_acceptor_cancel, "tcp accept", NULL);
  nx_wait_kind(nx_handshake_cancel, "tls handshake", NULL);
  int m = lua_gettop(L);
  nx_net_newmt(L, NX_STREAM_MT);         /* m+1 */
  nx_net_newmt(L, NX_LISTENER_MT);       /* m+2 */
  lua_getfield(L, m + 1, "__index");     /* m+3 */
  lua_getfield(L, m + 2, "__index");     /* m+4 */
  lua_pushvalue(L, m + 1);
  lua_pushvalue(L, m + 2);               /* the upvalues */
  nx_net_setfuncs(L, m + 1, nx_stream_meta, 2);
  nx_net_setfuncs(L, m + 2, nx_listener_meta, 2);
  nx_net_setfuncs(L, m + 3, nx_stream_methods, 2);
  nx_net_setfuncs(L, m + 4, nx_listener_methods, 2);
  nx_net_setfuncs(L, m, nx_tcp_funcs, 2);
  lua_pop(L, 2);
  lua_setfield(L, m, "tcp_listener_methods");
  lua_setfield(L, m, "tcp_stream_methods");
  lua_setfield(L, m, "tcp_listener_mt");
  lua_setfield(L, m, "tcp_stream_mt");
  lua_pushlightuserdata(L, (void *)&nx_tcp_api_table);
  lua_setfield(L, m, "tcp_api");
  nx_tls_open(L);
}

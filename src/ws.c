/* ws.c - WebSocket framing with wslay's event API (see ws.h).
 *
 * Input: nx_ws_feed(w, p, n) runs wslay_event_recv over bytes the Lua side
 * read from the stream. wslay is in no-buffering mode: it parses frames,
 * unmasks, checks masking for the side (a server requires masked frames,
 * a client unmasked: else close 1002), checks text as UTF-8 (1007) and
 * answers pings and close frames itself; payload chunks of data frames
 * come here (on_frame_recv_chunk) and are assembled into a message, which
 * goes whole onto the queue (its buffer moves, no copy). The length of a
 * message is checked here against max_message at each frame's start,
 * fragments included (1009). Control frames are buffered by wslay.
 *
 * Output: wslay_event_send after every queue and every feed; the send
 * callback appends to w->out, which the Lua side writes with s:write and
 * then marks done (nx_ws_out_done). The callback never refuses, so after
 * each call w->out holds whole frames only, and a writer that takes all of
 * it never tears one. A client's masks come from a pool refilled by
 * OpenSSL's RAND_bytes (RFC 6455 10.3 asks for an unpredictable source).
 *
 * The handshake's parsing is Lua's (lua/nexus/websocket.lua); its digest
 * (SHA-1 of key + GUID, base64) and random key are here.
 */
#include "ws.h"

#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <lauxlib.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <wslay/wslay.h>

#include "nexus.h"

#define NX_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define NX_WS_OUT_KEEP (256 * 1024)   /* an empty output buffer larger than this is freed */
#define NX_WS_MASKPOOL 256
#define NX_WS_SMALL 240               /* a one-frame message up to this is assembled in its block */
#define NX_WS_SPARE 64                /* blocks of small messages kept for reuse */

typedef struct nx_ws_msg nx_ws_msg;
struct nx_ws_msg {
  nx_ws_msg *next;
  char *data;                   /* inl, or a buffer of its own */
  size_t len;
  int op;                       /* WSLAY_TEXT_FRAME or WSLAY_BINARY_FRAME */
  char inl[NX_WS_SMALL];
};

struct nx_ws {
  nx_ws_pub pub;                /* first: read by the Lua side */
  wslay_event_context_ptr ctx;
  uint64_t max;                 /* max_message */
  /* input being fed */
  const uint8_t *in;
  size_t inlen;
  /* the message being assembled */
  char *abuf;
  size_t alen, acap;
  uint8_t ctrl;                 /* the current frame is a control frame */
  nx_ws_msg *cur;               /* a small message assembled in its block, or NULL */
  nx_ws_msg *spare;             /* blocks for reuse (no malloc per small message) */
  size_t nspare;
  /* complete messages */
  nx_ws_msg *head, *tail;
  /* pending output, [outoff, outoff + pub.outlen) */
  char *out;
  size_t outoff, outcap;
  uint8_t nomem;
  /* client masks */
  uint8_t mask[NX_WS_MASKPOOL];
  size_t maskoff;
};

/* ---- wslay callbacks ---- */

static ssize_t nx_ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                             void *ud) {
  nx_ws *w = ud;
  (void)flags;
  if (w->inlen == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  size_t n = w->inlen < len ? w->inlen : len;
  memcpy(buf, w->in, n);
  w->in += n;
  w->inlen -= n;
  return (ssize_t)n;
}

static int nx_ws_reserve(char **buf, size_t *cap, size_t used, size_t more) {
  if (*cap - used >= more) return 0;
  size_t c = *cap ? *cap : 256;
  while (c - used < more) {
    if (c > SIZE_MAX / 2) return -1;
    c *= 2;
  }
  char *b = realloc(*buf, c);
  if (!b) return -1;
  *buf = b;
  *cap = c;
  return 0;
}

static ssize_t nx_ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                             int flags, void *ud) {
  nx_ws *w = ud;
  (void)flags;
  size_t used = w->outoff + w->pub.outlen;
  if (nx_ws_reserve(&w->out, &w->outcap, used, len) != 0) {
    w->nomem = 1;
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  memcpy(w->out + used, data, len);
  w->pub.outlen += len;
  return (ssize_t)len;
}

static int nx_ws_genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *ud) {
  nx_ws *w = ud;
  (void)ctx;
  while (len > 0) {
    if (w->maskoff == NX_WS_MASKPOOL) {
      if (RAND_bytes(w->mask, NX_WS_MASKPOOL) != 1) return -1;
      w->maskoff = 0;
    }
    size_t n = NX_WS_MASKPOOL - w->maskoff;
    if (n > len) n = len;
    memcpy(buf, w->mask + w->maskoff, n);
    w->maskoff += n;
    buf += n;
    len -= n;
  }
  return 0;
}

/* We fail the connection with code: wslay sends the close frame, reads
 * nothing more. */
static void nx_ws_fail(nx_ws *w, uint16_t code, const char *reason) {
  if (w->pub.failed || w->pub.dead) return;
  w->pub.failed = 1;
  wslay_event_queue_close(w->ctx, code, (const uint8_t *)reason, strlen(reason));
  wslay_event_shutdown_read(w->ctx);
}

static void nx_ws_on_start(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *arg, void *ud) {
  nx_ws *w = ud;
  (void)ctx;
  w->ctrl = (arg->opcode & 0x8u) != 0;
  if (w->ctrl) return;
  if (arg->payload_length > w->max || w->alen > w->max - arg->payload_length) {
    nx_ws_fail(w, WSLAY_CODE_MESSAGE_TOO_BIG, "message too big");
    return;
  }
  /* a whole message in one small frame: assembled in a block (reused) */
  if (w->alen == 0 && !w->cur && arg->fin && arg->payload_length <= NX_WS_SMALL) {
    nx_ws_msg *m = w->spare;
    if (m) {
      w->spare = m->next;
      w->nspare--;
    } else if (!(m = malloc(sizeof *m))) {
      nx_ws_fail(w, WSLAY_CODE_INTERNAL_SERVER_ERROR, "out of memory");
      return;
    }
    m->data = m->inl;
    w->cur = m;
    return;
  }
  /* a frame announces its length: room for it at once (bounded by max) */
  if (arg->payload_length && nx_ws_reserve(&w->abuf, &w->acap, w->alen, (size_t)arg->payload_length) != 0)
    nx_ws_fail(w, WSLAY_CODE_INTERNAL_SERVER_ERROR, "out of memory");
}

static void nx_ws_on_chunk(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_chunk_arg *arg, void *ud) {
  nx_ws *w = ud;
  (void)ctx;
  if (w->ctrl || w->pub.failed || arg->data_length == 0) return;
  if (w->cur) {                 /* within NX_WS_SMALL: checked at the frame's start */
    memcpy(w->cur->inl + w->alen, arg->data, arg->data_length);
    w->alen += arg->data_length;
    return;
  }
  if (nx_ws_reserve(&w->abuf, &w->acap, w->alen, arg->data_length) != 0) {
    nx_ws_fail(w, WSLAY_CODE_INTERNAL_SERVER_ERROR, "out of memory");
    return;
  }
  memcpy(w->abuf + w->alen, arg->data, arg->data_length);
  w->alen += arg->data_length;
}

static void nx_ws_on_end(wslay_event_context_ptr ctx, void *ud) {
  nx_ws *w = ud;
  (void)ctx;
  w->ctrl = 0;
}

static void nx_ws_on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                         void *ud) {
  nx_ws *w = ud;
  (void)ctx;
  if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
    w->pub.rclosed = 1;
    w->pub.rcode = arg->status_code ? arg->status_code : 1005;
    size_t n = arg->msg_length > 2 ? arg->msg_length - 2 : 0;
    if (n > sizeof w->pub.reason) n = sizeof w->pub.reason;
    if (n) memcpy(w->pub.reason, arg->msg + 2, n);
    w->pub.reason_len = (uint8_t)n;
    return;
  }
  if (arg->opcode == WSLAY_PONG) {
    w->pub.pongs++;
    return;
  }
  if (arg->opcode != WSLAY_TEXT_FRAME && arg->opcode != WSLAY_BINARY_FRAME) return;
  if (w->pub.failed) return;
  nx_ws_msg *m = w->cur;
  if (m) {
    w->cur = NULL;
  } else {
    if (!(m = malloc(sizeof *m))) {
      nx_ws_fail(w, WSLAY_CODE_INTERNAL_SERVER_ERROR, "out of memory");
      return;
    }
    m->data = w->abuf;
    w->abuf = NULL;
    w->acap = 0;
  }
  m->next = NULL;
  m->len = w->alen;
  m->op = arg->opcode;
  w->alen = 0;
  if (w->tail) w->tail->next = m;
  else w->head = m;
  w->tail = m;
  w->pub.nmsg++;
}

/* ---- state ---- */

/* After wslay ran: what the Lua side reads. */
static void nx_ws_sync(nx_ws *w) {
  /* wslay stops reading only when the peer's close frame came or when it
   * failed the connection (1002, 1007, 1009: it queued that close) */
  if (!wslay_event_get_read_enabled(w->ctx) && !w->pub.rclosed) w->pub.failed = 1;
  if (wslay_event_get_close_sent(w->ctx) || (w->pub.failed && !w->pub.scode))
    w->pub.sclosed = 1;
  if (!w->pub.scode && wslay_event_get_close_sent(w->ctx))
    w->pub.scode = wslay_event_get_status_code_sent(w->ctx);
  if (!wslay_event_get_read_enabled(w->ctx) || w->pub.rclosed) w->pub.dead = 1;
}

static void nx_ws_msg_free(nx_ws_msg *m) {
  if (m->data != m->inl) free(m->data);
  free(m);
}

/* A taken message's block goes back to the spares (small ones). */
static void nx_ws_msg_done(nx_ws *w, nx_ws_msg *m) {
  if (m->data == m->inl && w->nspare < NX_WS_SPARE) {
    m->next = w->spare;
    w->spare = m;
    w->nspare++;
    return;
  }
  nx_ws_msg_free(m);
}

/* ---- the FFI entry points ---- */

static nx_ws *nx_ws_new(int server, double max) {
  nx_ws *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  struct wslay_event_callbacks cb = {
    nx_ws_recv_cb, nx_ws_send_cb, server ? NULL : nx_ws_genmask_cb,
    nx_ws_on_start, nx_ws_on_chunk, nx_ws_on_end, nx_ws_on_msg,
  };
  int rc = server ? wslay_event_context_server_init(&w->ctx, &cb, w)
                  : wslay_event_context_client_init(&w->ctx, &cb, w);
  if (rc != 0) {
    free(w);
    return NULL;
  }
  w->max = max >= 1.8e19 ? UINT64_MAX : (uint64_t)max;
  w->maskoff = NX_WS_MASKPOOL;
  wslay_event_config_set_no_buffering(w->ctx, 1);
  /* the message's length is checked in on_start, fragments included
   * (wslay's own check would see one frame, and close without a reason) */
  wslay_event_config_set_max_recv_msg_length(w->ctx, UINT64_MAX);
  return w;
}

static void nx_ws_free(nx_ws *w) {
  if (!w) return;
  wslay_event_context_free(w->ctx);
  nx_ws_msg *m = w->head;
  while (m) {
    nx_ws_msg *n = m->next;
    nx_ws_msg_free(m);
    m = n;
  }
  if (w->cur) free(w->cur);
  while ((m = w->spare)) {
    w->spare = m->next;
    free(m);
  }
  free(w->abuf);
  free(w->out);
  free(w);
}

/* Runs wslay over n bytes at p (all of them are used, or dropped once
 * nothing more is read), then serialises what it queued (pongs, close
 * frames). 0, or -2 when out of memory (the connection is dead). */
static int nx_ws_feed(nx_ws *w, const char *p, size_t n) {
  if (w->pub.dead) return 0;
  w->in = (const uint8_t *)p;
  w->inlen = n;
  int rc = wslay_event_recv(w->ctx);
  w->in = NULL;
  w->inlen = 0;
  if (rc != 0 && !w->pub.failed) {
    /* a frame the frame layer refused (WSLAY_ERR_PROTO): wslay queued a
     * close without a code; out of memory */
    w->pub.failed = 1;
    w->pub.scode = rc == WSLAY_ERR_NOMEM || w->nomem ? 1011 : 1002;
    wslay_event_shutdown_read(w->ctx);
  }
  wslay_event_send(w->ctx);
  nx_ws_sync(w);
  return w->nomem ? NX_WS_NOMEM : 0;
}

static int nx_ws_status(int rc) {
  if (rc == 0) return NX_WS_OK;
  if (rc == WSLAY_ERR_NO_MORE_MSG) return NX_WS_CLOSED;
  if (rc == WSLAY_ERR_NOMEM) return NX_WS_NOMEM;
  return NX_WS_INVAL;
}

/* Queues a message (op: 1 text, 2 binary, 9 ping, 10 pong) and frames it
 * into the output. wslay copies p. */
static int nx_ws_queue(nx_ws *w, int op, const char *p, size_t n) {
  struct wslay_event_msg m = { (uint8_t)op, (const uint8_t *)p, n };
  int rc = wslay_event_queue_msg(w->ctx, &m);
  if (rc != 0) return nx_ws_status(rc);
  wslay_event_send(w->ctx);
  nx_ws_sync(w);
  return w->nomem ? NX_WS_NOMEM : NX_WS_OK;
}

/* Queues our close frame (code 0: none) and frames it. */
static int nx_ws_close(nx_ws *w, int code, const char *reason, size_t n) {
  int rc = wslay_event_queue_close(w->ctx, (uint16_t)code, (const uint8_t *)reason, n);
  if (rc != 0) return nx_ws_status(rc);
  w->pub.sclosed = 1;
  w->pub.scode = code ? code : 1005;
  wslay_event_send(w->ctx);
  nx_ws_sync(w);
  return w->nomem ? NX_WS_NOMEM : NX_WS_OK;
}

/* The first queued message: its bytes (valid until nx_ws_drop), *n, *op. */
static const char *nx_ws_peek(nx_ws *w, size_t *n, int *op) {
  nx_ws_msg *m = w->head;
  if (!m) return NULL;
  *n = m->len;
  *op = m->op;
  return m->data ? m->data : "";
}

static void nx_ws_drop(nx_ws *w) {
  nx_ws_msg *m = w->head;
  if (!m) return;
  w->head = m->next;
  if (!w->head) w->tail = NULL;
  w->pub.nmsg--;
  nx_ws_msg_done(w, m);
}

/* ---- zero-copy delivery into a byte channel (ws:recv_into) ----
 *
 * Queued messages go from their assembly buffer straight into the ring of
 * a byte channel (claim, one memcpy, commit): no Lua string is made. One
 * call moves a run of messages of one kind, so the caller can say which
 * kind they were. */

/* Moves up to max queued messages of the head's kind into ch. Returns how
 * many (> 0, *op their kind), or, when none moved, NX_WS_INTO_*: NONE (no
 * message queued), FULL (no room now for the head's *n bytes), EMPTY (the
 * head was an empty message: dropped, *op its kind: a byte channel carries
 * no 0-byte message), BIG (the head's *n bytes exceed the channel's
 * capacity; it stays queued), CLOSED (the channel's receiver is gone). */
static int nx_ws_into(nx_ws *w, nexus_bchan *ch, uint32_t max, int *op, size_t *n) {
  size_t cap = nexus_bchan_capacity(ch);
  int moved = 0;
  nx_ws_msg *m;
  while ((m = w->head) && (uint32_t)moved < max) {
    if (moved && m->op != *op) break;
    if (m->len == 0 || m->len > cap) {
      if (moved) break;
      *op = m->op;
      *n = m->len;
      if (m->len) return NX_WS_INTO_BIG;
      nx_ws_drop(w);
      return NX_WS_INTO_EMPTY;
    }
    nexus_bclaim c;
    memset(&c, 0, sizeof c);
    int rc = nexus_bchan_claim(ch, m->len, &c);
    if (rc != 0) {
      if (moved) break;
      *n = m->len;
      return rc == NEXUS_EPIPE ? NX_WS_INTO_CLOSED : NX_WS_INTO_FULL;
    }
    memcpy(c.ptr, m->data, m->len);
    *op = m->op;
    nx_ws_drop(w);
    moved++;
    if (nexus_bchan_commit(&c) != 0) return moved;   /* the receiver closed since */
  }
  return moved ? moved : NX_WS_INTO_NONE;
}

/* Copies the head message into dst when it is n bytes long, and drops it:
 * its kind, or 0 (no such message: another reader took it meanwhile). */
static int nx_ws_take_into(nx_ws *w, uint8_t *dst, size_t n) {
  nx_ws_msg *m = w->head;
  if (!m || m->len != n) return 0;
  int op = m->op;
  memcpy(dst, m->data, n);
  nx_ws_drop(w);
  return op;
}

/* The pending output: pointer and *n (valid until the next call here). */
static const char *nx_ws_out(nx_ws *w, size_t *n) {
  *n = w->pub.outlen;
  return w->out + w->outoff;
}

/* n bytes of the output were written (or dropped). */
static void nx_ws_out_done(nx_ws *w, size_t n) {
  if (n > w->pub.outlen) n = w->pub.outlen;
  w->outoff += n;
  w->pub.outlen -= n;
  if (w->pub.outlen == 0) {
    w->outoff = 0;
    if (w->outcap > NX_WS_OUT_KEEP) {
      free(w->out);
      w->out = NULL;
      w->outcap = 0;
    }
  }
}

/* 1 when p[0..n) is UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
static int nx_ws_utf8(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s, *e = p + n;
  while (p < e) {
    unsigned c = *p;
    if (c < 0x80) {
      p++;
      continue;
    }
    size_t k;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) k = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      k = 2;
      if (c == 0xe0) lo = 0xa0;
      if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      k = 3;
      if (c == 0xf0) lo = 0x90;
      if (c == 0xf4) hi = 0x8f;
    } else {
      return 0;
    }
    if ((size_t)(e - p) <= k) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i <= k; i++)
      if (p[i] < 0x80 || p[i] > 0xbf) return 0;
    p += k + 1;
  }
  return 1;
}

/* Sec-WebSocket-Accept for a key: base64(SHA-1(key GUID)), 28 chars and
 * a NUL into out[32]. */
static int nx_ws_accept_key(const char *key, size_t n, char *out) {
  unsigned char md[SHA_DIGEST_LENGTH];
  char buf[128];
  if (n > sizeof buf - (sizeof NX_WS_GUID - 1)) return -1;
  memcpy(buf, key, n);
  memcpy(buf + n, NX_WS_GUID, sizeof NX_WS_GUID - 1);
  SHA1((const unsigned char *)buf, n + sizeof NX_WS_GUID - 1, md);
  return EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
}

/* A fresh Sec-WebSocket-Key: base64 of 16 random bytes, 24 chars and a
 * NUL into out[32]. */
static int nx_ws_gen_key(char *out) {
  unsigned char r[16];
  if (RAND_bytes(r, sizeof r) != 1) return -1;
  return EVP_EncodeBlock((unsigned char *)out, r, sizeof r);
}

typedef struct nx_ws_api {
  nx_ws *(*new)(int server, double max);
  void (*free)(nx_ws *w);
  int (*feed)(nx_ws *w, const char *p, size_t n);
  int (*queue)(nx_ws *w, int op, const char *p, size_t n);
  int (*close)(nx_ws *w, int code, const char *reason, size_t n);
  const char *(*peek)(nx_ws *w, size_t *n, int *op);
  void (*drop)(nx_ws *w);
  const char *(*out)(nx_ws *w, size_t *n);
  void (*out_done)(nx_ws *w, size_t n);
  int (*utf8)(const char *p, size_t n);
  int (*accept_key)(const char *key, size_t n, char *out);
  int (*gen_key)(char *out);
  int (*into)(nx_ws *w, nexus_bchan *ch, uint32_t max, int *op, size_t *n);
  int (*take_into)(nx_ws *w, uint8_t *dst, size_t n);
} nx_ws_api;

static const nx_ws_api nx_ws_api_table = {
  nx_ws_new, nx_ws_free, nx_ws_feed, nx_ws_queue, nx_ws_close, nx_ws_peek, nx_ws_drop,
  nx_ws_out, nx_ws_out_done, nx_ws_utf8, nx_ws_accept_key, nx_ws_gen_key,
  nx_ws_into, nx_ws_take_into,
};

void nx_ws_open(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&nx_ws_api_table);
  lua_setfield(L, -2, "ws_api");
}

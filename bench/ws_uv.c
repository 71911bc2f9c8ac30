/* bench/ws_uv.c: the C floor of the WebSocket benchmark: wslay over libuv.
 *
 * Usage: ws_uv PORT   (0 = any free port). Listens on 127.0.0.1, prints
 * "listening <port>" once ready, answers each connection's HTTP Upgrade by
 * hand (the request head read up to its blank line, Sec-WebSocket-Key
 * found, Sec-WebSocket-Accept = base64(SHA-1(key GUID)) with OpenSSL; no
 * other check: a floor, not a server), then echoes every text or binary
 * message with wslay's event API: wslay_event_recv over the bytes just
 * read (its recv callback takes from them), each message queued back from
 * wslay's on_msg_recv callback (wslay assembles it: buffering mode), and
 * wslay_event_send framing into the connection's output buffer, which
 * goes out with uv_try_write (a plain write(2) on an idle socket); what
 * the kernel refuses is copied into a uv_write request, and the
 * connection stops reading until it completes (backpressure).
 * One static 64 KiB read buffer. TCP_NODELAY on every connection.
 *
 * Build: cc -O2 -o ws_uv ws_uv.c $(pkg-config --cflags --libs libuv) -lwslay -lcrypto
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <uv.h>
#include <wslay/wslay.h>

#define READ_MAX 65536
#define HEAD_MAX 8192

typedef struct conn {
  uv_tcp_t tcp;
  wslay_event_context_ptr ctx;   /* NULL: still in the handshake */
  char head[HEAD_MAX];
  size_t headlen;
  const uint8_t *in;             /* bytes being fed to wslay */
  size_t inlen;
  char *out;                     /* framed output not yet written */
  size_t outlen, outcap;
  int writing, closing;
} conn;

typedef struct wreq {
  uv_write_t req;
  uv_buf_t buf;
  char data[];
} wreq;

static char rbuf[READ_MAX];
static uv_loop_t *loop;

static void on_close(uv_handle_t *h) {
  conn *c = h->data;
  if (c->ctx) wslay_event_context_free(c->ctx);
  free(c->out);
  free(c);
}

static void conn_close(conn *c) {
  if (c->closing) return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void alloc_cb(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  (void)h;
  (void)sz;
  *b = uv_buf_init(rbuf, READ_MAX);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b);
static void flush(conn *c);

static void write_cb(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  conn *c = req->data;
  free(w);
  c->writing = 0;
  if (status < 0 || c->closing) {
    conn_close(c);
    return;
  }
  flush(c);
  if (!c->writing && !c->closing) uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

/* Writes the pending output: uv_try_write, the rest by a request. */
static void flush(conn *c) {
  if (c->writing || c->outlen == 0) return;
  uv_buf_t b = uv_buf_init(c->out, (unsigned)c->outlen);
  int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (n == UV_EAGAIN) n = 0;
  if (n < 0) {
    conn_close(c);
    return;
  }
  size_t left = c->outlen - (size_t)n;
  if (left == 0) {
    c->outlen = 0;
    return;
  }
  wreq *w = malloc(sizeof *w + left);
  if (!w) {
    conn_close(c);
    return;
  }
  memcpy(w->data, c->out + n, left);
  c->outlen = 0;
  w->buf = uv_buf_init(w->data, (unsigned)left);
  w->req.data = c;
  c->writing = 1;
  uv_read_stop((uv_stream_t *)&c->tcp);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &w->buf, 1, write_cb) != 0) {
    free(w);
    conn_close(c);
  }
}

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud) {
  conn *c = ud;
  (void)flags;
  if (c->inlen == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  size_t n = c->inlen < len ? c->inlen : len;
  memcpy(buf, c->in, n);
  c->in += n;
  c->inlen -= n;
  return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *ud) {
  conn *c = ud;
  (void)flags;
  if (c->outcap - c->outlen < len) {
    size_t cap = c->outcap ? c->outcap : 4096;
    while (cap - c->outlen < len) cap *= 2;
    char *o = realloc(c->out, cap);
    if (!o) {
      wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
      return -1;
    }
    c->out = o;
    c->outcap = cap;
  }
  memcpy(c->out + c->outlen, data, len);
  c->outlen += len;
  return (ssize_t)len;
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *ud) {
  (void)ud;
  if (arg->opcode != WSLAY_TEXT_FRAME && arg->opcode != WSLAY_BINARY_FRAME) return;
  struct wslay_event_msg m = { arg->opcode, arg->msg, arg->msg_length };
  wslay_event_queue_msg(ctx, &m);
}

static void feed(conn *c, const char *p, size_t n) {
  c->in = (const uint8_t *)p;
  c->inlen = n;
  int rc = wslay_event_recv(c->ctx);
  c->in = NULL;
  c->inlen = 0;
  wslay_event_send(c->ctx);
  flush(c);
  if (rc != 0 || (!wslay_event_want_read(c->ctx) && !wslay_event_want_write(c->ctx))) conn_close(c);
}

static const struct wslay_event_callbacks callbacks = { recv_cb, send_cb, NULL, NULL, NULL, NULL, on_msg };

/* The handshake: the head is complete at end; answer 101 and switch. */
static int upgrade(conn *c, size_t end) {
  c->head[end - 1] = '\0';
  char *k = strcasestr(c->head, "\r\nSec-WebSocket-Key:");
  if (!k) return -1;
  k += strlen("\r\nSec-WebSocket-Key:");
  while (*k == ' ') k++;
  size_t klen = strcspn(k, " \r\n");
  char cat[128], acc[64], resp[256];
  if (klen > 64) return -1;
  memcpy(cat, k, klen);
  memcpy(cat + klen, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
  unsigned char md[SHA_DIGEST_LENGTH];
  SHA1((unsigned char *)cat, klen + 36, md);
  EVP_EncodeBlock((unsigned char *)acc, md, SHA_DIGEST_LENGTH);
  int n = snprintf(resp, sizeof resp,
                   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\n\r\n", acc);
  if (wslay_event_context_server_init(&c->ctx, &callbacks, c) != 0) return -1;
  send_cb(c->ctx, (const uint8_t *)resp, (size_t)n, 0, c);
  return 0;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  conn *c = s->data;
  if (n < 0) {
    conn_close(c);
    return;
  }
  if (n == 0) return;
  if (c->ctx) {
    feed(c, b->base, (size_t)n);
    return;
  }
  size_t take = (size_t)n;
  if (take > HEAD_MAX - c->headlen) take = HEAD_MAX - c->headlen;
  memcpy(c->head + c->headlen, b->base, take);
  size_t from = c->headlen >= 3 ? c->headlen - 3 : 0;
  c->headlen += take;
  char *e = NULL;
  for (size_t i = from; i + 4 <= c->headlen; i++)
    if (memcmp(c->head + i, "\r\n\r\n", 4) == 0) {
      e = c->head + i + 4;
      break;
    }
  if (!e) {
    if (c->headlen == HEAD_MAX) conn_close(c);
    return;
  }
  size_t end = (size_t)(e - c->head), rest = c->headlen - end;
  char tail[HEAD_MAX];
  memcpy(tail, e, rest);
  if (upgrade(c, end) != 0) {
    conn_close(c);
    return;
  }
  flush(c);
  if (rest) feed(c, tail, rest);
}

static void on_conn(uv_stream_t *srv, int status) {
  if (status < 0) return;
  conn *c = calloc(1, sizeof *c);
  if (!c) return;
  uv_tcp_init(loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  signal(SIGPIPE, SIG_IGN);
  loop = uv_default_loop();
  uv_tcp_t srv;
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", port, &sa);
  uv_tcp_init(loop, &srv);
  if (uv_tcp_bind(&srv, (const struct sockaddr *)&sa, 0) != 0 ||
      uv_listen((uv_stream_t *)&srv, 511, on_conn) != 0) {
    fprintf(stderr, "ws_uv: cannot listen on 127.0.0.1:%d\n", port);
    return 1;
  }
  struct sockaddr_in bound;
  int len = sizeof bound;
  uv_tcp_getsockname(&srv, (struct sockaddr *)&bound, &len);
  printf("listening %d\n", ntohs(bound.sin_port));
  fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}

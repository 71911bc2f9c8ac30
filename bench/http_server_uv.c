/* bench/http_server_uv.c: the C floor of the HTTP server benchmark:
 * libuv and the parser nexus's server uses (http_parser 2.9, Debian's
 * libhttp-parser-dev), and nothing else.
 *
 * Usage: http_server_uv PORT   (0 = any free port). Listens on 127.0.0.1,
 * prints "listening <port>" once ready, and answers every request of every
 * connection, keep-alive: GET / with 200, Content-Type text/plain and the
 * body "Hello, World!"; any other method or path with 404. The request
 * line's URL is collected (on_url may come in pieces); headers are parsed
 * by http_parser but not kept. A request body is skipped. Responses to the
 * requests of one read (pipelined ones) go out together. Connection: close
 * (or HTTP/1.0 without keep-alive) closes the connection after the
 * response. Runs until killed.
 *
 * I/O as in bench/echo_uv.c: one static 64 KiB read buffer, responses
 * written with uv_try_write, only what the kernel refuses is copied into a
 * uv_write request, and the connection stops reading until it completes.
 * TCP_NODELAY on every accepted connection.
 *
 * Build: cc -O2 -o http_server_uv http_server_uv.c \
 *          $(pkg-config --cflags --libs libuv) -lhttp_parser
 */
#include <http_parser.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define READ_MAX 65536
#define OUT_MAX 65536
#define URL_MAX 2048

static const char ok_resp[] =
  "HTTP/1.1 200 OK\r\n"
  "Content-Type: text/plain\r\n"
  "Content-Length: 13\r\n"
  "\r\n"
  "Hello, World!";
static const char nf_resp[] =
  "HTTP/1.1 404 Not Found\r\n"
  "Content-Type: text/plain\r\n"
  "Content-Length: 10\r\n"
  "\r\n"
  "not found\n";

typedef struct conn {
  uv_tcp_t tcp;
  http_parser parser;
  char url[URL_MAX];
  size_t url_len;
  int closing;          /* the last response asked for Connection: close */
  size_t out_len;       /* responses of this read, not written yet */
  char out[OUT_MAX];
} conn;

typedef struct wreq {   /* the rest of the responses the kernel did not take */
  uv_write_t req;
  uv_buf_t buf;
  char data[];
} wreq;

static uv_loop_t *loop;
static char rbuf[READ_MAX];
static http_parser_settings settings;

static void check(int rc, const char *what) {
  if (rc < 0) {
    fprintf(stderr, "http_server_uv: %s: %s\n", what, uv_strerror(rc));
    exit(1);
  }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  (void)hint;
  *buf = uv_buf_init(rbuf, sizeof rbuf);
}

static void on_close(uv_handle_t *h) { free(h); }

static void drop(conn *c) {
  if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, on_close);
}

static int on_message_begin(http_parser *p) {
  ((conn *)p->data)->url_len = 0;
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  conn *c = p->data;
  if (c->url_len + len > URL_MAX) return 1;   /* 414, in effect: an error */
  memcpy(c->url + c->url_len, at, len);
  c->url_len += len;
  return 0;
}

static int on_message_complete(http_parser *p) {
  conn *c = p->data;
  const char *r = ok_resp;
  size_t n = sizeof ok_resp - 1;
  if (p->method != HTTP_GET || c->url_len != 1 || c->url[0] != '/') {
    r = nf_resp;
    n = sizeof nf_resp - 1;
  }
  if (c->out_len + n > OUT_MAX) return 1;   /* more pipelined than we buffer */
  memcpy(c->out + c->out_len, r, n);
  c->out_len += n;
  if (!http_should_keep_alive(p)) {
    c->closing = 1;
    http_parser_pause(p, 1);   /* nothing after it is answered */
  }
  return 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_written(uv_write_t *req, int status) {
  conn *c = (conn *)req->handle;
  free(req);
  if (status < 0 || c->closing) { drop(c); return; }
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) drop(c);
}

/* Writes the responses collected; 0 if all went, 1 if a write request
 * holds the rest, -1 on error. */
static int flush(conn *c) {
  uv_buf_t out = uv_buf_init(c->out, (unsigned)c->out_len);
  int done = uv_try_write((uv_stream_t *)&c->tcp, &out, 1);
  if (done == UV_EAGAIN) done = 0;
  if (done < 0) return -1;
  size_t rest = c->out_len - (size_t)done;
  c->out_len = 0;
  if (rest == 0) return 0;
  wreq *w = malloc(sizeof *w + rest);
  if (w == NULL) return -1;
  memcpy(w->data, c->out + done, rest);
  w->buf = uv_buf_init(w->data, (unsigned)rest);
  uv_read_stop((uv_stream_t *)&c->tcp);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &w->buf, 1, on_written) < 0) {
    free(w);
    return -1;
  }
  return 1;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  conn *c = (conn *)s;
  if (n < 0) { drop(c); return; }
  if (n == 0) return;   /* EAGAIN: libuv hands the buffer back unused */
  size_t used = http_parser_execute(&c->parser, &settings, buf->base, (size_t)n);
  enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
  if ((e != HPE_OK && e != HPE_PAUSED) || (used != (size_t)n && !c->closing) ||
      c->parser.upgrade) {
    drop(c);
    return;
  }
  if (c->out_len == 0) return;
  int rc = flush(c);
  if (rc < 0 || (rc == 0 && c->closing)) drop(c);
}

static void on_connection(uv_stream_t *server, int status) {
  check(status, "listen");
  conn *c = malloc(sizeof *c);
  if (c == NULL) { fprintf(stderr, "http_server_uv: out of memory\n"); exit(1); }
  uv_tcp_init(loop, &c->tcp);
  if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
    uv_close((uv_handle_t *)&c->tcp, on_close);
    return;
  }
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  c->url_len = 0;
  c->closing = 0;
  c->out_len = 0;
  uv_tcp_nodelay(&c->tcp, 1);
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) drop(c);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: http_server_uv PORT\n");
    return 2;
  }
  static uv_tcp_t server;
  struct sockaddr_in sa;
  int salen = sizeof sa;
  signal(SIGPIPE, SIG_IGN);   /* libuv writes with write(2): no MSG_NOSIGNAL */
  http_parser_settings_init(&settings);
  settings.on_message_begin = on_message_begin;
  settings.on_url = on_url;
  settings.on_message_complete = on_message_complete;
  loop = uv_default_loop();
  check(uv_ip4_addr("127.0.0.1", atoi(argv[1]), &sa), "address");
  uv_tcp_init(loop, &server);
  check(uv_tcp_bind(&server, (struct sockaddr *)&sa, 0), "bind");
  check(uv_listen((uv_stream_t *)&server, 511, on_connection), "listen");
  check(uv_tcp_getsockname(&server, (struct sockaddr *)&sa, &salen), "getsockname");
  printf("listening %d\n", ntohs(sa.sin_port));
  fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}

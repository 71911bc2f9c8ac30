/* bench/echo_uv.c: the echo reference, plain C on libuv.
 *
 * Usage: echo_uv PORT   (0 = any free port). Listens on 127.0.0.1, prints
 * "listening <port>" once ready, then echoes every byte it reads back to
 * the same connection until the peer closes. Runs until killed.
 *
 * The read buffer is owned: alloc_cb hands out one static 64 KiB buffer
 * (the loop runs one read callback at a time, and every byte is written or
 * copied before the callback returns), since a libuv server that mallocs a
 * buffer per read is the slowest of all. The echo goes out with
 * uv_try_write, which on an idle socket is a plain write(2) with no request
 * and no allocation; only what the kernel refuses is copied into a uv_write
 * request, and the connection stops reading until that write completes
 * (backpressure). TCP_NODELAY on every accepted connection, as every server
 * of the benchmark does.
 *
 * Build: cc -O2 -o echo_uv echo_uv.c $(pkg-config --cflags --libs libuv)
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define READ_MAX 65536

typedef struct wreq {   /* the rest of an echo the kernel did not take */
  uv_write_t req;
  uv_buf_t buf;
  char data[];
} wreq;

static uv_loop_t *loop;
static char rbuf[READ_MAX];

static void check(int rc, const char *what) {
  if (rc < 0) {
    fprintf(stderr, "echo_uv: %s: %s\n", what, uv_strerror(rc));
    exit(1);
  }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h;
  (void)hint;
  *buf = uv_buf_init(rbuf, sizeof rbuf);
}

static void on_close(uv_handle_t *h) { free(h); }

static void drop(uv_stream_t *s) {
  if (!uv_is_closing((uv_handle_t *)s)) uv_close((uv_handle_t *)s, on_close);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_written(uv_write_t *req, int status) {
  uv_stream_t *s = req->handle;
  free(req);
  if (status < 0) { drop(s); return; }
  if (uv_read_start(s, on_alloc, on_read) < 0) drop(s);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  if (n < 0) { drop(s); return; }
  if (n == 0) return;   /* EAGAIN: libuv hands the buffer back unused */
  uv_buf_t out = uv_buf_init(buf->base, (unsigned)n);
  int done = uv_try_write(s, &out, 1);
  if (done == UV_EAGAIN) done = 0;
  if (done < 0) { drop(s); return; }
  if (done == n) return;
  size_t rest = (size_t)n - (size_t)done;
  wreq *w = malloc(sizeof *w + rest);
  if (w == NULL) { drop(s); return; }
  memcpy(w->data, buf->base + done, rest);
  w->buf = uv_buf_init(w->data, (unsigned)rest);
  uv_read_stop(s);
  if (uv_write(&w->req, s, &w->buf, 1, on_written) < 0) { free(w); drop(s); }
}

static void on_connection(uv_stream_t *server, int status) {
  check(status, "listen");
  uv_tcp_t *c = malloc(sizeof *c);
  if (c == NULL) { fprintf(stderr, "echo_uv: out of memory\n"); exit(1); }
  uv_tcp_init(loop, c);
  if (uv_accept(server, (uv_stream_t *)c) < 0) {
    uv_close((uv_handle_t *)c, on_close);
    return;
  }
  uv_tcp_nodelay(c, 1);
  if (uv_read_start((uv_stream_t *)c, on_alloc, on_read) < 0) drop((uv_stream_t *)c);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: echo_uv PORT\n");
    return 2;
  }
  static uv_tcp_t server;
  struct sockaddr_in sa;
  int salen = sizeof sa;
  signal(SIGPIPE, SIG_IGN);   /* libuv writes with write(2): no MSG_NOSIGNAL */
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

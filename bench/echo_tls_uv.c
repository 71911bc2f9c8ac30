/* bench/echo_tls_uv.c: the floor of the TLS echo benchmark: an echo server
 * in C on libuv with OpenSSL memory BIOs (what nexus's TLS streams do,
 * with nothing else): ciphertext read by libuv goes into the read BIO,
 * SSL_read gives the plaintext, SSL_write echoes it, the write BIO is
 * drained into uv_write after every SSL call.
 *
 *   echo_tls_uv PORT CERT_FILE KEY_FILE      (prints "listening <port>")
 *
 * Build: cc -O2 -o echo_tls_uv echo_tls_uv.c $(pkg-config --cflags --libs libuv) -lssl -lcrypto
 */
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static SSL_CTX *ctx;

typedef struct conn {
  uv_tcp_t tcp;
  SSL *ssl;
  BIO *rbio, *wbio;
} conn;

static void on_closed(uv_handle_t *h) {
  conn *c = h->data;
  SSL_free(c->ssl);
  free(c);
}

static void on_written(uv_write_t *w, int status) {
  (void)status;
  free(w->data);
  free(w);
}

/* Sends what the write BIO holds. */
static void flush(conn *c) {
  size_t pend;
  while ((pend = BIO_ctrl_pending(c->wbio)) > 0) {
    char *p = malloc(pend);
    int n = BIO_read(c->wbio, p, (int)pend);
    if (n <= 0) {
      free(p);
      return;
    }
    uv_write_t *w = malloc(sizeof *w);
    w->data = p;
    uv_buf_t b = uv_buf_init(p, (unsigned)n);
    uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_written);
  }
}

static void on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  (void)h;
  static char buf[65536];
  (void)sz;
  *b = uv_buf_init(buf, sizeof buf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  conn *c = s->data;
  if (n < 0) {
    uv_close((uv_handle_t *)s, on_closed);
    return;
  }
  BIO_write(c->rbio, b->base, (int)n);
  if (!SSL_is_init_finished(c->ssl)) {
    SSL_do_handshake(c->ssl);
    flush(c);
    if (!SSL_is_init_finished(c->ssl)) return;
  }
  char plain[65536];
  int r;
  while ((r = SSL_read(c->ssl, plain, sizeof plain)) > 0) SSL_write(c->ssl, plain, r);
  flush(c);
}

static void on_conn(uv_stream_t *srv, int status) {
  if (status < 0) return;
  conn *c = calloc(1, sizeof *c);
  uv_tcp_init(srv->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, on_closed);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  c->ssl = SSL_new(ctx);
  c->rbio = BIO_new(BIO_s_mem());
  c->wbio = BIO_new(BIO_s_mem());
  SSL_set_bio(c->ssl, c->rbio, c->wbio);
  SSL_set_accept_state(c->ssl);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: echo_tls_uv PORT CERT_FILE KEY_FILE\n");
    return 1;
  }
  ctx = SSL_CTX_new(TLS_server_method());
  if (SSL_CTX_use_certificate_chain_file(ctx, argv[2]) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, argv[3], SSL_FILETYPE_PEM) != 1) {
    fprintf(stderr, "echo_tls_uv: cannot load the certificate or key\n");
    return 1;
  }
  uv_loop_t *loop = uv_default_loop();
  uv_tcp_t srv;
  uv_tcp_init(loop, &srv);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", atoi(argv[1]), &a);
  if (uv_tcp_bind(&srv, (struct sockaddr *)&a, 0) != 0 || uv_listen((uv_stream_t *)&srv, 511, on_conn) != 0) {
    fprintf(stderr, "echo_tls_uv: cannot listen\n");
    return 1;
  }
  struct sockaddr_storage ss;
  int len = sizeof ss;
  uv_tcp_getsockname(&srv, (struct sockaddr *)&ss, &len);
  printf("listening %d\n", ntohs(((struct sockaddr_in *)&ss)->sin_port));
  fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}

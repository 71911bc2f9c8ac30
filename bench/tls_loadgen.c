/* bench/tls_loadgen.c: the load generator of the TLS echo benchmark.
 *
 *   tls_loadgen -p PORT [-n N] [-w WARMUP] [-m SIZE] [-P PID]
 *
 * One TLS connection to 127.0.0.1:PORT (no certificate check: the
 * handshake is not what is measured), WARMUP (10000) untimed round trips,
 * then N (50000) timed ones of SIZE (64) bytes: SSL_write the message,
 * SSL_read until all of it is back, each checked. Prints, in the bench
 * harness format: RESULT p50_us p99_us mean_us n, and with -P the
 * server's CPU time per round trip (srv_cpu_us, /proc/PID/stat).
 *
 * Build: cc -O2 -o tls_loadgen tls_loadgen.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
  fprintf(stderr, "tls_loadgen: %s\n", what);
  exit(1);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double server_cpu(long pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  unsigned long ut = 0, st = 0;
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int cmp(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  int port = 0, size = 64, c;
  long n = 50000, warm = 10000, pid = 0;
  while ((c = getopt(argc, argv, "p:n:w:m:P:")) != -1) {
    if (c == 'p') port = atoi(optarg);
    else if (c == 'n') n = atol(optarg);
    else if (c == 'w') warm = atol(optarg);
    else if (c == 'm') size = atoi(optarg);
    else if (c == 'P') pid = atol(optarg);
    else die("usage: tls_loadgen -p PORT [-n N] [-w WARMUP] [-m SIZE] [-P PID]");
  }
  if (port <= 0 || n < 1 || size < 8 || size > 65536) die("bad arguments");
  struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("connect");
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  SSL *ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (SSL_connect(ssl) != 1) die("TLS handshake failed");
  char *msg = malloc((size_t)size), *back = malloc((size_t)size);
  uint32_t *lat = malloc((size_t)n * sizeof *lat);
  memset(msg, 'x', (size_t)size);
  double cpu0 = 0;
  uint64_t sum = 0;
  for (long i = -warm; i < n; i++) {
    if (i == 0 && pid) cpu0 = server_cpu(pid);
    memcpy(msg, &i, sizeof i);
    uint64_t t0 = now_ns();
    if (SSL_write(ssl, msg, size) != size) die("SSL_write");
    for (int got = 0; got < size;) {
      int r = SSL_read(ssl, back + got, size - got);
      if (r <= 0) die("SSL_read: the server closed");
      got += r;
    }
    uint64_t dt = now_ns() - t0;
    if (memcmp(msg, back, (size_t)size) != 0) die("echo differs");
    if (i >= 0) {
      lat[i] = (uint32_t)(dt / 10);     /* units of 10 ns */
      sum += dt;
    }
  }
  double cpu = pid ? server_cpu(pid) - cpu0 : -1;
  qsort(lat, (size_t)n, sizeof *lat, cmp);
  printf("RESULT p50_us=%.2f p99_us=%.2f mean_us=%.2f", lat[n / 2] / 100.0, lat[(long)(n * 0.99)] / 100.0,
         (double)sum / (double)n / 1000.0);
  if (pid && cpu >= 0) printf(" srv_cpu_us=%.3f", cpu / (double)n * 1e6);
  printf(" n=%ld\n", n);
  SSL_shutdown(ssl);
  return 0;
}

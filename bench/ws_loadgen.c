/* bench/ws_loadgen.c: the load generator of the WebSocket benchmark
 * (bench/ws_bench.sh).
 *
 * Usage: ws_loadgen -p PORT [-c CONNS] [-d DEPTH] [-s SECS] [-W WARMUP_SECS]
 *                   [-m SIZE] [-P PID]
 *
 * Opens CONNS (50) WebSocket connections to 127.0.0.1:PORT (an HTTP/1.1
 * Upgrade each, the 101 answer and its Sec-WebSocket-Accept checked), and
 * keeps DEPTH (16) binary messages of SIZE (64, at most 125) bytes in
 * flight on each: whenever k whole echoed frames have come back, k more
 * are sent (one write). Client frames are masked, as RFC 6455 requires:
 * each frame of the stream has its own 4-byte key, drawn once from
 * /dev/urandom into a precomputed stream (a benchmark's masks need not be
 * fresh; the servers cannot tell). Every echoed byte is checked: the
 * server must answer each message with one unmasked binary frame holding
 * the same payload. Level-triggered epoll over all connections. After
 * WARMUP_SECS (1) untimed, a window of SECS (5) is timed.
 *
 * Prints one line in the bench harness format:
 *   RESULT msgs_per_s=... gen_cpu_us=... [srv_cpu_us=... srv_cpu_pct=...]
 *          conns=... depth=... secs=...
 * msgs_per_s: echoed messages per second in the window; gen_cpu_us: this
 * program's CPU per message; with -P the server's CPU per message
 * (utime + stime from /proc/PID/stat at the two ends of the window) and
 * its utilisation (near 100: the server is the bottleneck).
 * Exit status 0 with the RESULT line, else 1 with a message on stderr.
 *
 * Build: cc -O2 -o ws_loadgen ws_loadgen.c -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#define MAX_CONNS 10000
#define MAX_EVENTS 256
#define PERIOD_MSGS 257   /* a prime number of frames: lines up with no batch */

static struct {
  int port, conns, depth, size;
  double secs, warm_secs;
  long server_pid;
} opt = { 0, 50, 16, 64, 5.0, 1.0, 0 };

#define LG_NAME "ws_loadgen"
#include "loadgen.h"

static void b64(const unsigned char *in, int n, char *out) { EVP_EncodeBlock((unsigned char *)out, in, n); }

/* A blocking connection, upgraded: the request written, the head of the
 * answer read byte by byte (nothing follows it before our first frame). */
static int ws_connect(int port, int fdrand) {
  struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
  int one = 1;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) sys_fail("socket");
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) sys_fail("connect");
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  unsigned char raw[16];
  char key[32], want[64], req[512], head[4096];
  if (read(fdrand, raw, sizeof raw) != (ssize_t)sizeof raw) sys_fail("/dev/urandom");
  b64(raw, 16, key);
  int n = snprintf(req, sizeof req,
                   "GET /echo HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                   port, key);
  write_full(fd, req, (size_t)n);
  size_t len = 0;
  while (len < 4 || memcmp(head + len - 4, "\r\n\r\n", 4) != 0) {
    if (len == sizeof head - 1) fail("%s", "handshake answer too long");
    ssize_t k = read(fd, head + len, 1);
    if (k == 0) fail("%s", "server closed during the handshake");
    if (k < 0) {
      if (errno == EINTR) continue;
      sys_fail("read");
    }
    len++;
  }
  head[len] = '\0';
  if (strncmp(head, "HTTP/1.1 101", 12) != 0) fail("handshake: %s", head);
  char cat[128];
  unsigned char md[SHA_DIGEST_LENGTH];
  snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
  SHA1((unsigned char *)cat, strlen(cat), md);
  b64(md, SHA_DIGEST_LENGTH, want);
  char *a = strcasestr(head, "\r\nSec-WebSocket-Accept:");
  if (a == NULL) fail("%s", "handshake: no Sec-WebSocket-Accept");
  a += strlen("\r\nSec-WebSocket-Accept:");
  while (*a == ' ') a++;
  if (strncmp(a, want, strlen(want)) != 0) fail("%s", "handshake: wrong Sec-WebSocket-Accept");
  if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) sys_fail("fcntl");
  return fd;
}

/* The streams: out (masked frames, OFRAME bytes each) and the echo
 * expected back (unmasked, IFRAME bytes each), each PERIOD_MSGS frames
 * long plus the in-flight window, so any write is one contiguous slice. */
static char *out_stream, *in_stream;
static size_t oframe, iframe, operiod, iperiod;

static void make_streams(int fdrand) {
  oframe = 6 + (size_t)opt.size;
  iframe = 2 + (size_t)opt.size;
  operiod = PERIOD_MSGS * oframe;
  iperiod = PERIOD_MSGS * iframe;
  size_t extra = (size_t)opt.depth;
  out_stream = malloc((PERIOD_MSGS + extra) * oframe);
  in_stream = malloc((PERIOD_MSGS + extra) * iframe);
  if (out_stream == NULL || in_stream == NULL) fail("%s", "out of memory");
  for (size_t f = 0; f < PERIOD_MSGS + extra; f++) {
    size_t j = f % PERIOD_MSGS;
    unsigned char *o = (unsigned char *)out_stream + f * oframe, *i = (unsigned char *)in_stream + f * iframe;
    unsigned char mask[4];
    if (f < PERIOD_MSGS) {
      if (read(fdrand, mask, 4) != 4) sys_fail("/dev/urandom");
    } else {
      memcpy(mask, out_stream + j * oframe + 2, 4);
    }
    o[0] = 0x82;                                   /* FIN, binary */
    o[1] = (unsigned char)(0x80 | opt.size);       /* masked, 7-bit length */
    memcpy(o + 2, mask, 4);
    i[0] = 0x82;
    i[1] = (unsigned char)opt.size;
    for (int k = 0; k < opt.size; k++) {
      unsigned char p = (unsigned char)(j * 131 + (size_t)k * 7 + 1);
      i[2 + k] = p;
      o[6 + k] = p ^ mask[k % 4];
    }
  }
}

typedef struct conn {
  int fd;
  int want_out;
  uint64_t sent, rcvd;    /* stream bytes */
} conn;

static void arm(int ep, conn *c, int out) {
  struct epoll_event ev = { .events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c };
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) sys_fail("epoll_ctl");
  c->want_out = out;
}

/* Tops the connection up to DEPTH messages in flight. */
static void top_up(int ep, conn *c) {
  uint64_t target = (c->rcvd / iframe + (uint64_t)opt.depth) * oframe;
  while (c->sent < target) {
    ssize_t n = write(c->fd, out_stream + c->sent % operiod, (size_t)(target - c->sent));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) sys_fail("write");
      if (!c->want_out) arm(ep, c, 1);
      return;
    }
    c->sent += (uint64_t)n;
  }
  if (c->want_out) arm(ep, c, 0);
}

/* Reads what is there, checks it against the expected echo. */
static void take(conn *c, char *buf, size_t cap) {
  ssize_t n = read(c->fd, buf, cap);
  if (n == 0) fail("%s", "server closed a connection");
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return;
    sys_fail("read");
  }
  size_t off = (size_t)(c->rcvd % iperiod), left = (size_t)n;
  const char *p = buf;
  while (left > 0) {
    size_t k = iperiod - off < left ? iperiod - off : left;
    if (memcmp(p, in_stream + off, k) != 0) fail("%s", "the echo differs from the frames expected");
    p += k;
    left -= k;
    off = 0;
  }
  c->rcvd += (uint64_t)n;
}

static uint64_t messages(const conn *cs) {
  uint64_t m = 0;
  for (int i = 0; i < opt.conns; i++) m += cs[i].rcvd / iframe;
  return m;
}

static void run(void) {
  static char buf[65536];
  struct epoll_event evs[MAX_EVENTS];
  int fdrand = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fdrand < 0) sys_fail("/dev/urandom");
  make_streams(fdrand);
  conn *cs = calloc((size_t)opt.conns, sizeof *cs);
  uint64_t *base = calloc((size_t)opt.conns, sizeof *base);
  if (cs == NULL || base == NULL) fail("%s", "out of memory");
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) sys_fail("epoll_create1");
  for (int i = 0; i < opt.conns; i++) {
    conn *c = &cs[i];
    c->fd = ws_connect(opt.port, fdrand);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) sys_fail("epoll_ctl");
  }
  close(fdrand);
  for (int i = 0; i < opt.conns; i++) top_up(ep, &cs[i]);

  uint64_t t_start = now_ns();
  uint64_t t_warm = t_start + (uint64_t)(opt.warm_secs * 1e9);
  uint64_t t_end = t_warm + (uint64_t)(opt.secs * 1e9);
  uint64_t t0 = 0, t1 = 0, m0 = 0, m1 = 0;
  double cpu0 = 0, cpu1 = 0, self0 = 0, self1 = 0;
  int timing = 0;
  for (;;) {
    int n = epoll_wait(ep, evs, MAX_EVENTS, 10);
    if (n < 0 && errno != EINTR) sys_fail("epoll_wait");
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) take(c, buf, sizeof buf);
      top_up(ep, c);
    }
    uint64_t t = now_ns();
    if (!timing && t >= t_warm) {
      timing = 1;
      t0 = t;
      m0 = messages(cs);
      cpu0 = lg_proc_cpu(opt.server_pid);
      self0 = self_cpu();
      for (int i = 0; i < opt.conns; i++) base[i] = cs[i].rcvd;
    } else if (timing && t >= t_end) {
      t1 = t;
      m1 = messages(cs);
      cpu1 = lg_proc_cpu(opt.server_pid);
      self1 = self_cpu();
      break;
    }
  }
  for (int i = 0; i < opt.conns; i++) {
    if (cs[i].rcvd == base[i]) fail("%s", "a connection made no progress in the window");
    close(cs[i].fd);
  }
  close(ep);
  double secs = (double)(t1 - t0) * 1e-9, msgs = (double)(m1 - m0);
  if (msgs <= 0) fail("%s", "no messages in the window");
  printf("RESULT msgs_per_s=%.0f gen_cpu_us=%.4f", msgs / secs, (self1 - self0) * 1e6 / msgs);
  if (opt.server_pid > 0)
    printf(" srv_cpu_us=%.4f srv_cpu_pct=%.1f", (cpu1 - cpu0) * 1e6 / msgs, (cpu1 - cpu0) / secs * 100);
  printf(" conns=%d depth=%d secs=%.2f\n", opt.conns, opt.depth, secs);
  free(cs);
  free(base);
}

static void usage(void) {
  fprintf(stderr, "usage: ws_loadgen -p PORT [-c CONNS] [-d DEPTH] [-s SECS] [-W WARMUP_SECS]"
                  " [-m SIZE] [-P PID]\n");
  exit(2);
}

int main(int argc, char **argv) {
  int c;
  while ((c = getopt(argc, argv, "p:c:d:s:W:m:P:")) != -1) {
    switch (c) {
      case 'p': opt.port = (int)num(optarg, 1, 65535); break;
      case 'c': opt.conns = (int)num(optarg, 1, MAX_CONNS); break;
      case 'd': opt.depth = (int)num(optarg, 1, 1024); break;
      case 's': opt.secs = num(optarg, 0.01, 3600); break;
      case 'W': opt.warm_secs = num(optarg, 0, 3600); break;
      case 'm': opt.size = (int)num(optarg, 1, 125); break;
      case 'P': opt.server_pid = (long)num(optarg, 1, 1e9); break;
      default: usage();
    }
  }
  if (optind != argc || opt.port == 0) usage();
  signal(SIGPIPE, SIG_IGN);
  run();
  return 0;
}

/* bench/echo_loadgen.c: the load generator of the echo benchmark.
 *
 * Usage:
 *   echo_loadgen latency    -p PORT [-n N] [-w WARMUP] [-m SIZE] [-P PID]
 *   echo_loadgen throughput -p PORT [-c CONNS] [-d DEPTH] [-s SECS]
 *                           [-W WARMUP_SECS] [-m SIZE] [-P PID]
 *
 * Talks to an echo server on 127.0.0.1:PORT and prints one line in the
 * bench harness format (bench/harness.lua):  RESULT key=value ...
 * Every echoed byte is checked against what was sent.
 *
 * latency: one connection, WARMUP (default 10000) untimed round trips,
 *   then N (default 100000) sequential round trips of SIZE (64) bytes: write
 *   the message, read until all of it is back. Each round trip is timed
 *   with CLOCK_MONOTONIC. Reports p50_us, p99_us, p999_us (nearest rank),
 *   mean_us, min_us, max_us, n; with -P also srv_cpu_us, the server's CPU
 *   time per round trip. The socket is blocking: with one connection there
 *   is nothing to multiplex, and fewer system calls on the client side
 *   leave more of the round trip to the server being measured.
 *
 * throughput: CONNS (50) connections, each keeping DEPTH (16) messages of
 *   SIZE bytes in flight: whenever k whole messages have come back, k more
 *   are sent (one write). Level-triggered epoll over all connections.
 *   After WARMUP_SECS (1) of untimed running, a window of SECS (5) seconds
 *   is timed. Reports msgs_per_s (round trips completed per second in the
 *   window), gen_cpu_us (this program's CPU per message, from getrusage),
 *   conns, depth, secs; with -P the server's CPU per message srv_cpu_us
 *   and its utilisation srv_cpu_pct, from utime + stime in /proc/PID/stat
 *   read at the two ends of the window. srv_cpu_pct near 100 means the
 *   server is the bottleneck; well below it, the load generator is.
 *
 * Exit status 0 with the RESULT line, else 1 with a message on stderr.
 *
 * Build: cc -O2 -o echo_loadgen echo_loadgen.c
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

#define MAX_SIZE 4096
#define MAX_CONNS 10000
#define MAX_EVENTS 256

static struct {
  const char *mode;
  int port;
  long n, warmup;          /* latency */
  int conns, depth;        /* throughput */
  double secs, warm_secs;
  int size;
  long server_pid;         /* 0: no server CPU figures */
} opt = { NULL, 0, 100000, 10000, 50, 16, 5.0, 1.0, 64, 0 };

#define LG_NAME "echo_loadgen"
#include "loadgen.h"

/* --- latency ---------------------------------------------------------- */

static void read_full(int fd, char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = read(fd, buf, len);
    if (n == 0) fail("%s", "server closed the connection");
    if (n < 0) {
      if (errno == EINTR) continue;
      sys_fail("read");
    }
    buf += n;
    len -= (size_t)n;
  }
}

static void round_trip(int fd, long i, char *msg, char *back) {
  memcpy(msg, &i, sizeof i);   /* every message differs from the last */
  write_full(fd, msg, (size_t)opt.size);
  read_full(fd, back, (size_t)opt.size);
  if (memcmp(msg, back, (size_t)opt.size) != 0) fail("%s", "echo differs from the message sent");
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

static double rank_us(const uint32_t *sorted, long n, double q) {
  long k = (long)(q * (double)n + 0.999999);   /* nearest rank: ceil(q n) */
  if (k < 1) k = 1;
  if (k > n) k = n;
  return sorted[k - 1] * 1e-3;
}

static void run_latency(void) {
  char msg[MAX_SIZE], back[MAX_SIZE];
  uint32_t *ns = malloc((size_t)opt.n * sizeof *ns);
  if (ns == NULL) fail("%s", "out of memory");
  for (int i = 0; i < opt.size; i++) msg[i] = (char)('a' + i % 26);
  int fd = connect_to(opt.port);

  for (long i = 0; i < opt.warmup; i++) round_trip(fd, i, msg, back);
  double cpu0 = lg_proc_cpu(opt.server_pid);
  double sum = 0;
  for (long i = 0; i < opt.n; i++) {
    uint64_t t0 = now_ns();
    round_trip(fd, opt.warmup + i, msg, back);
    uint64_t d = now_ns() - t0;
    ns[i] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
    sum += (double)d;
  }
  double cpu1 = lg_proc_cpu(opt.server_pid);
  close(fd);

  qsort(ns, (size_t)opt.n, sizeof *ns, cmp_u32);
  printf("RESULT p50_us=%.3f p99_us=%.3f p999_us=%.3f mean_us=%.3f min_us=%.3f max_us=%.3f",
         rank_us(ns, opt.n, 0.50), rank_us(ns, opt.n, 0.99), rank_us(ns, opt.n, 0.999),
         sum / (double)opt.n * 1e-3, ns[0] * 1e-3, ns[opt.n - 1] * 1e-3);
  if (opt.server_pid > 0) printf(" srv_cpu_us=%.4f", (cpu1 - cpu0) * 1e6 / (double)opt.n);
  printf(" n=%ld\n", opt.n);
  free(ns);
}

/* --- throughput -------------------------------------------------------- */

/* Every connection sends the same byte stream: stream byte k is
 * pattern[k % PERIOD]. pattern is PERIOD + the in-flight window long, so
 * any write of the stream is one contiguous slice of it. PERIOD is a prime
 * number of messages, so it lines up with no batch size. */
#define PERIOD_MSGS 257

typedef struct conn {
  int fd;
  int want_out;           /* EPOLLOUT armed */
  uint64_t sent, rcvd;    /* stream bytes */
} conn;

static char *pattern;
static size_t period, inflight;

static void make_pattern(void) {
  period = (size_t)PERIOD_MSGS * (size_t)opt.size;
  inflight = (size_t)opt.depth * (size_t)opt.size;
  pattern = malloc(period + inflight);
  if (pattern == NULL) fail("%s", "out of memory");
  for (size_t k = 0; k < period + inflight; k++) {
    size_t j = k % period;
    pattern[k] = (char)(j * 131 + j / (size_t)opt.size);
  }
}

static void arm(int ep, conn *c, int out) {
  struct epoll_event ev = { .events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c };
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) sys_fail("epoll_ctl");
  c->want_out = out;
}

/* Tops the connection up to DEPTH messages in flight. */
static void top_up(int ep, conn *c) {
  uint64_t target = c->rcvd - c->rcvd % (uint64_t)opt.size + inflight;
  while (c->sent < target) {
    ssize_t n = write(c->fd, pattern + c->sent % period, (size_t)(target - c->sent));
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

/* Reads what is there, checks it against the stream. Bytes received. */
static size_t take(conn *c, char *buf, size_t cap) {
  ssize_t n = read(c->fd, buf, cap);
  if (n == 0) fail("%s", "server closed a connection");
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return 0;
    sys_fail("read");
  }
  size_t off = (size_t)(c->rcvd % period), left = (size_t)n;
  const char *p = buf;
  while (left > 0) {   /* at most two slices: the stream wraps at period */
    size_t k = period - off < left ? period - off : left;
    if (memcmp(p, pattern + off, k) != 0) fail("%s", "echo differs from the stream sent");
    p += k;
    left -= k;
    off = 0;
  }
  c->rcvd += (uint64_t)n;
  return (size_t)n;
}

/* Received bytes over all connections, in whole messages. */
static uint64_t messages(const conn *cs) {
  uint64_t m = 0;
  for (int i = 0; i < opt.conns; i++) m += cs[i].rcvd / (uint64_t)opt.size;
  return m;
}

static void run_throughput(void) {
  static char buf[65536];
  struct epoll_event evs[MAX_EVENTS];
  make_pattern();
  conn *cs = calloc((size_t)opt.conns, sizeof *cs);
  uint64_t *base = calloc((size_t)opt.conns, sizeof *base);
  if (cs == NULL || base == NULL) fail("%s", "out of memory");
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) sys_fail("epoll_create1");
  for (int i = 0; i < opt.conns; i++) {
    conn *c = &cs[i];
    c->fd = connect_to(opt.port);
    if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0) sys_fail("fcntl");
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) sys_fail("epoll_ctl");
  }
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
    if (!timing && t >= t_warm) {   /* the window opens */
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
    printf(" srv_cpu_us=%.4f srv_cpu_pct=%.1f", (cpu1 - cpu0) * 1e6 / msgs,
           (cpu1 - cpu0) / secs * 100);
  printf(" conns=%d depth=%d secs=%.2f\n", opt.conns, opt.depth, secs);
  free(cs);
  free(base);
  free(pattern);
}

/* --- main -------------------------------------------------------------- */

static void usage(void) {
  fprintf(stderr,
          "usage: echo_loadgen latency -p PORT [-n N] [-w WARMUP] [-m SIZE] [-P PID]\n"
          "       echo_loadgen throughput -p PORT [-c CONNS] [-d DEPTH] [-s SECS]\n"
          "                    [-W WARMUP_SECS] [-m SIZE] [-P PID]\n");
  exit(2);
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  opt.mode = argv[1];
  int c;
  optind = 2;
  while ((c = getopt(argc, argv, "p:n:w:c:d:s:W:m:P:")) != -1) {
    switch (c) {
      case 'p': opt.port = (int)num(optarg, 1, 65535); break;
      case 'n': opt.n = (long)num(optarg, 1, 1e9); break;
      case 'w': opt.warmup = (long)num(optarg, 0, 1e9); break;
      case 'c': opt.conns = (int)num(optarg, 1, MAX_CONNS); break;
      case 'd': opt.depth = (int)num(optarg, 1, 1024); break;
      case 's': opt.secs = num(optarg, 0.01, 3600); break;
      case 'W': opt.warm_secs = num(optarg, 0, 3600); break;
      case 'm': opt.size = (int)num(optarg, 1, MAX_SIZE); break;
      case 'P': opt.server_pid = (long)num(optarg, 1, 1e9); break;
      default: usage();
    }
  }
  if (optind != argc || opt.port == 0) usage();
  signal(SIGPIPE, SIG_IGN);   /* a server that dies is an error message, not a signal */
  if (strcmp(opt.mode, "latency") == 0) run_latency();
  else if (strcmp(opt.mode, "throughput") == 0) run_throughput();
  else usage();
  return 0;
}

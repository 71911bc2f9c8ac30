/* bench/http_loadgen.c: the load generator of the HTTP server benchmark.
 *
 *   http_loadgen -p PORT [-c CONNS] [-d DEPTH] [-s SECS] [-W WARMUP_SECS]
 *                [-u PATH] [-P PID]
 *
 * CONNS (50) keep-alive HTTP/1.1 connections to 127.0.0.1:PORT, each
 * keeping DEPTH (1) requests "GET PATH HTTP/1.1" (PATH "/") in flight:
 * with DEPTH 1 the next request goes out when the response to the last one
 * has come in whole; with DEPTH > 1 the requests are pipelined, and
 * whenever k responses have come back, k more are sent (one write).
 * Level-triggered epoll over all connections.
 *
 * Responses are parsed just enough to find where each ends: the status
 * line (must be "HTTP/1.x 200"), the headers up to the empty line, and a
 * body of Content-Length bytes. A response without Content-Length (chunked
 * or close-delimited), a "Connection: close" or a closed connection is an
 * error: the benchmark measures keep-alive serving.
 *
 * After WARMUP_SECS (1) of untimed running, a window of SECS (5) seconds
 * is timed. Every response completed in the window has its latency (from
 * the write of its request to the read that completed it, CLOCK_MONOTONIC)
 * counted in a histogram of 100 ns buckets (up to 1 s; later ones count
 * as 1 s). Prints one line in the bench harness format (bench/harness.lua):
 *   RESULT req_per_s p50_us p99_us p999_us mean_us max_us gen_cpu_us
 *          [srv_cpu_us srv_cpu_pct] conns depth secs n
 * req_per_s: responses completed per second in the window; gen_cpu_us: this
 * program's CPU per request (getrusage); with -P the server's CPU per
 * request srv_cpu_us and its utilisation srv_cpu_pct, from utime + stime
 * in /proc/PID/stat (clock ticks) read at the two ends of the window.
 *
 * Exit status 0 with the RESULT line, else 1 with a message on stderr.
 *
 * Build: cc -O2 -o http_loadgen http_loadgen.c
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
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 10000
#define MAX_DEPTH 256
#define MAX_EVENTS 256
#define RBUF 65536
#define BUCKET_NS 100
#define NBUCKETS 10000000   /* 1 s of 100 ns buckets */

static struct {
  int port;
  int conns, depth;
  double secs, warm_secs;
  const char *path;
  long server_pid;   /* 0: no server CPU figures */
} opt = { 0, 50, 1, 5.0, 1.0, "/", 0 };

#define LG_NAME "http_loadgen"
#include "loadgen.h"

/* --- the connections --------------------------------------------------- */

typedef struct conn {
  int fd;
  int want_out;                  /* EPOLLOUT armed */
  uint64_t sent, done;           /* requests written whole, responses read whole */
  size_t wpos;                   /* bytes of the current write batch written */
  size_t wlen;                   /* bytes in the current write batch (0: none) */
  uint64_t t_sent[MAX_DEPTH];    /* ring: write time of request k at k % depth */
  char in[RBUF];                 /* unparsed response bytes */
  size_t inlen;
  long body_left;                /* -1: in the headers; else body bytes still due */
} conn;

static char *reqs;          /* the request, DEPTH times back to back */
static size_t req_len;
static uint32_t *hist;      /* latency histogram of the window */
static uint64_t hist_n, hist_over;
static double hist_sum_ns;
static uint64_t hist_max_ns;
static int timing;

static void arm(int ep, conn *c, int out) {
  struct epoll_event ev = { .events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c };
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) sys_fail("epoll_ctl");
  c->want_out = out;
}

/* Writes requests until DEPTH are in flight (or the kernel refuses). A
 * request counts as sent, and its clock starts, when its last byte is
 * written. */
static void top_up(int ep, conn *c) {
  for (;;) {
    if (c->wlen == 0) {
      uint64_t want = c->done + (uint64_t)opt.depth - c->sent;
      if (want == 0) break;
      c->wlen = (size_t)want * req_len;
      c->wpos = 0;
    }
    ssize_t n = write(c->fd, reqs + c->wpos, c->wlen - c->wpos);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) sys_fail("write");
      if (!c->want_out) arm(ep, c, 1);
      return;
    }
    size_t before = c->wpos / req_len;
    c->wpos += (size_t)n;
    size_t whole = c->wpos / req_len;
    if (whole > before) {
      uint64_t t = now_ns();
      for (size_t k = before; k < whole; k++) {
        c->t_sent[c->sent % (uint64_t)opt.depth] = t;
        c->sent++;
      }
    }
    if (c->wpos == c->wlen) c->wlen = 0;
  }
  if (c->want_out) arm(ep, c, 0);
}

static void count_latency(uint64_t ns) {
  if (!timing) return;
  hist_n++;
  hist_sum_ns += (double)ns;
  if (ns > hist_max_ns) hist_max_ns = ns;
  uint64_t b = ns / BUCKET_NS;
  if (b >= NBUCKETS) { hist_over++; b = NBUCKETS - 1; }
  hist[b]++;
}

/* Finds the end of the header block in p[0..len): the offset after
 * "\r\n\r\n", or 0 if it is not there yet. */
static size_t header_end(const char *p, size_t len) {
  for (size_t i = 3; i < len; i++)
    if (p[i] == '\n' && p[i - 1] == '\r' && p[i - 2] == '\n' && p[i - 3] == '\r') return i + 1;
  return 0;
}

/* Checks the status line and headers in h[0..len), returns Content-Length. */
static long parse_head(const char *h, size_t len) {
  if (len < 12 || memcmp(h, "HTTP/1.", 7) != 0 || memcmp(h + 8, " 200", 4) != 0) {
    char line[80];
    size_t k = 0;
    while (k < len && k < sizeof line - 1 && h[k] != '\r') { line[k] = h[k]; k++; }
    line[k] = '\0';
    fail("unexpected status line: %s", line);
  }
  long clen = -1;
  const char *p = memchr(h, '\n', len) + 1, *end = h + len - 2;   /* before the last \r\n */
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end + 2 - p));
    size_t l = (size_t)(eol - p);
    if (l >= 15 && strncasecmp(p, "content-length:", 15) == 0) {
      clen = strtol(p + 15, NULL, 10);
    } else if (l >= 11 && strncasecmp(p, "connection:", 11) == 0) {
      const char *v = p + 11;
      while (*v == ' ' || *v == '\t') v++;
      if (strncasecmp(v, "close", 5) == 0) fail("%s", "the server answered Connection: close");
    } else if (l >= 18 && strncasecmp(p, "transfer-encoding:", 18) == 0) {
      fail("%s", "the server answered with Transfer-Encoding (Content-Length wanted)");
    }
    p = eol + 1;
  }
  if (clen < 0) fail("%s", "a response without Content-Length");
  return clen;
}

/* Reads what is there and counts every response completed. */
static void take(conn *c) {
  ssize_t n = read(c->fd, c->in + c->inlen, sizeof c->in - c->inlen);
  if (n == 0) fail("%s", "the server closed a connection");
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return;
    sys_fail("read");
  }
  uint64_t t = now_ns();
  size_t len = c->inlen + (size_t)n, pos = 0;
  for (;;) {
    if (c->body_left < 0) {
      size_t e = header_end(c->in + pos, len - pos);
      if (e == 0) break;
      c->body_left = parse_head(c->in + pos, e);
      pos += e;
    }
    size_t avail = len - pos;
    if ((size_t)c->body_left > avail) {   /* skip what is there of the body */
      c->body_left -= (long)avail;
      pos = len;
      break;
    }
    pos += (size_t)c->body_left;
    c->body_left = -1;
    if (c->done >= c->sent) fail("%s", "a response to no request");
    count_latency(t - c->t_sent[c->done % (uint64_t)opt.depth]);
    c->done++;
  }
  if (pos < len) memmove(c->in, c->in + pos, len - pos);
  c->inlen = len - pos;
  if (c->inlen == sizeof c->in) fail("%s", "a response header over 64 KiB");
}

static uint64_t responses(conn *const *cs) {
  uint64_t m = 0;
  for (int i = 0; i < opt.conns; i++) m += cs[i]->done;
  return m;
}

/* The latency at quantile q (nearest rank) from the histogram, in us:
 * the upper edge of its bucket. */
static double quantile_us(double q) {
  uint64_t k = (uint64_t)(q * (double)hist_n + 0.999999), seen = 0;
  if (k < 1) k = 1;
  for (uint64_t b = 0; b < NBUCKETS; b++) {
    seen += hist[b];
    if (seen >= k) return (double)((b + 1) * BUCKET_NS) * 1e-3;
  }
  return (double)hist_max_ns * 1e-3;
}

static void run(void) {
  struct epoll_event evs[MAX_EVENTS];
  char host[64];
  snprintf(host, sizeof host, "127.0.0.1:%d", opt.port);
  char one[1024];
  int l = snprintf(one, sizeof one, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", opt.path, host);
  if (l <= 0 || (size_t)l >= sizeof one) fail("%s", "path too long");
  req_len = (size_t)l;
  reqs = malloc(req_len * (size_t)opt.depth);
  hist = calloc(NBUCKETS, sizeof *hist);
  conn **cs = calloc((size_t)opt.conns, sizeof *cs);
  uint64_t *base = calloc((size_t)opt.conns, sizeof *base);
  if (reqs == NULL || hist == NULL || cs == NULL || base == NULL) fail("%s", "out of memory");
  for (int i = 0; i < opt.depth; i++) memcpy(reqs + (size_t)i * req_len, one, req_len);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) sys_fail("epoll_create1");
  for (int i = 0; i < opt.conns; i++) {
    conn *c = cs[i] = calloc(1, sizeof *c);
    if (c == NULL) fail("%s", "out of memory");
    c->body_left = -1;
    c->fd = connect_to(opt.port);
    if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0) sys_fail("fcntl");
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) sys_fail("epoll_ctl");
  }
  for (int i = 0; i < opt.conns; i++) top_up(ep, cs[i]);

  uint64_t t_start = now_ns();
  uint64_t t_warm = t_start + (uint64_t)(opt.warm_secs * 1e9);
  uint64_t t_end = t_warm + (uint64_t)(opt.secs * 1e9);
  uint64_t t0 = 0, t1 = 0, m0 = 0, m1 = 0;
  double cpu0 = 0, cpu1 = 0, self0 = 0, self1 = 0;
  for (;;) {
    int n = epoll_wait(ep, evs, MAX_EVENTS, 10);
    if (n < 0 && errno != EINTR) sys_fail("epoll_wait");
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) take(c);
      top_up(ep, c);
    }
    uint64_t t = now_ns();
    if (!timing && t >= t_warm) {   /* the window opens */
      timing = 1;
      t0 = t;
      m0 = responses(cs);
      cpu0 = lg_proc_cpu(opt.server_pid);
      self0 = self_cpu();
      for (int i = 0; i < opt.conns; i++) base[i] = cs[i]->done;
    } else if (timing && t >= t_end) {
      t1 = t;
      m1 = responses(cs);
      cpu1 = lg_proc_cpu(opt.server_pid);
      self1 = self_cpu();
      break;
    }
  }
  for (int i = 0; i < opt.conns; i++) {
    if (cs[i]->done == base[i]) fail("%s", "a connection made no progress in the window");
    close(cs[i]->fd);
    free(cs[i]);
  }
  close(ep);

  double secs = (double)(t1 - t0) * 1e-9, reqn = (double)(m1 - m0);
  if (reqn <= 0 || hist_n == 0) fail("%s", "no responses in the window");
  printf("RESULT req_per_s=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f mean_us=%.1f max_us=%.1f"
         " gen_cpu_us=%.3f",
         reqn / secs, quantile_us(0.50), quantile_us(0.99), quantile_us(0.999),
         hist_sum_ns / (double)hist_n * 1e-3, (double)hist_max_ns * 1e-3,
         (self1 - self0) * 1e6 / reqn);
  if (opt.server_pid > 0)
    printf(" srv_cpu_us=%.3f srv_cpu_pct=%.1f", (cpu1 - cpu0) * 1e6 / reqn,
           (cpu1 - cpu0) / secs * 100);
  printf(" conns=%d depth=%d secs=%.2f n=%llu\n", opt.conns, opt.depth, secs,
         (unsigned long long)hist_n);
  if (hist_over) fprintf(stderr, "http_loadgen: %llu responses took over 1 s\n",
                         (unsigned long long)hist_over);
  free(cs);
  free(base);
  free(reqs);
  free(hist);
}

static void usage(void) {
  fprintf(stderr,
          "usage: http_loadgen -p PORT [-c CONNS] [-d DEPTH] [-s SECS] [-W WARMUP_SECS]\n"
          "                    [-u PATH] [-P PID]\n");
  exit(2);
}

int main(int argc, char **argv) {
  int c;
  while ((c = getopt(argc, argv, "p:c:d:s:W:u:P:")) != -1) {
    switch (c) {
      case 'p': opt.port = (int)num(optarg, 1, 65535); break;
      case 'c': opt.conns = (int)num(optarg, 1, MAX_CONNS); break;
      case 'd': opt.depth = (int)num(optarg, 1, MAX_DEPTH); break;
      case 's': opt.secs = num(optarg, 0.01, 3600); break;
      case 'W': opt.warm_secs = num(optarg, 0, 3600); break;
      case 'u': opt.path = optarg; break;
      case 'P': opt.server_pid = (long)num(optarg, 1, 1e9); break;
      default: usage();
    }
  }
  if (optind != argc || opt.port == 0 || opt.path[0] != '/') usage();
  signal(SIGPIPE, SIG_IGN);   /* a server that dies is an error message, not a signal */
  run();
  return 0;
}

/* loadgen.h - what the C load generators of bench/ share (echo_loadgen.c,
 * ws_loadgen.c, http_loadgen.c): errors, clocks, the server's CPU from
 * /proc, a loopback connection, full writes and number options. Each
 * defines LG_NAME (its name, for messages) before including this. */
#ifndef NX_BENCH_LOADGEN_H
#define NX_BENCH_LOADGEN_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef LG_NAME
#error "define LG_NAME before including loadgen.h"
#endif

static inline void fail(const char *fmt, const char *what) {
  fprintf(stderr, LG_NAME ": ");
  fprintf(stderr, fmt, what);
  fprintf(stderr, "\n");
  exit(1);
}

static inline void sys_fail(const char *what) {
  fprintf(stderr, LG_NAME ": %s: %s\n", what, strerror(errno));
  exit(1);
}

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CPU seconds (user + system) process pid has used so far, from fields 14
 * and 15 of /proc/PID/stat, in clock ticks. -1 when pid is 0 (no -P). */
static inline double lg_proc_cpu(long pid) {
  char path[64], buf[1024];
  if (pid <= 0) return -1;
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) sys_fail(path);
  size_t len = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[len] = '\0';
  char *p = strrchr(buf, ')');   /* the command name may hold spaces */
  unsigned long ut, st;
  if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                          &ut, &st) != 2)
    fail("cannot parse %s", path);
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static inline double self_cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

/* A blocking TCP connection to 127.0.0.1:port, TCP_NODELAY. */
static inline int connect_to(int port) {
  struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
  int one = 1;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) sys_fail("socket");
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) sys_fail("connect");
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static inline void write_full(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      sys_fail("write");
    }
    buf += n;
    len -= (size_t)n;
  }
}

/* A number option in [lo, hi]; exits 2 otherwise. */
static inline double num(const char *s, double lo, double hi) {
  char *end;
  double v = strtod(s, &end);
  if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
    fprintf(stderr, LG_NAME ": bad number '%s' (want %g..%g)\n", s, lo, hi);
    exit(2);
  }
  return v;
}

#endif

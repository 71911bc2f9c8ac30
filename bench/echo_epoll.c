/* bench/echo_epoll.c: the echo baseline in plain C on epoll.
 *
 * Usage: echo_epoll PORT   (0 = any free port). Listens on 127.0.0.1,
 * prints "listening <port>" once ready, then echoes every byte it reads
 * back to the same connection until the peer closes. Runs until killed.
 *
 * What a careful hand-written server does: level-triggered epoll, one read
 * of up to 64 KiB into one static buffer per readiness event, written
 * straight back. A write the kernel does not take whole (never with the
 * benchmark's at most 1 KiB in flight per connection, but the program must
 * stay correct) is kept in a per-connection buffer and the connection
 * waits for EPOLLOUT, reading nothing more until it drains. TCP_NODELAY on
 * every accepted connection, as every server of the benchmark does.
 *
 * Build: cc -O2 -o echo_epoll echo_epoll.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_MAX 65536
#define MAX_EVENTS 256

typedef struct pending {   /* bytes the kernel did not take yet */
  char *buf;
  size_t len;
} pending;

static char rbuf[READ_MAX];
static pending *pend;      /* indexed by fd */
static int npend;
static int ep;

static void die(const char *what) {
  perror(what);
  exit(1);
}

static pending *pend_of(int fd) {
  if (fd >= npend) {
    int n = npend ? npend : 64;
    while (n <= fd) n *= 2;
    pending *p = realloc(pend, (size_t)n * sizeof *p);
    if (p == NULL) die("realloc");
    memset(p + npend, 0, (size_t)(n - npend) * sizeof *p);
    pend = p;
    npend = n;
  }
  return &pend[fd];
}

static void drop(int fd) {
  pending *p = pend_of(fd);
  free(p->buf);
  p->buf = NULL;
  p->len = 0;
  close(fd);   /* also removes fd from the epoll set */
}

static void watch(int fd, int op, uint32_t events) {
  struct epoll_event ev = { .events = events, .data.fd = fd };
  if (epoll_ctl(ep, op, fd, &ev) < 0) die("epoll_ctl");
}

/* Writes len bytes of buf; keeps what the kernel refuses. 0, or -1 when
 * the connection is gone. */
static int send_all(int fd, const char *buf, size_t len) {
  size_t off = 0;
  while (off < len) {
    ssize_t n = write(fd, buf + off, len - off);
    if (n >= 0) { off += (size_t)n; continue; }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return -1;
    pending *p = pend_of(fd);
    p->len = len - off;
    p->buf = malloc(p->len);
    if (p->buf == NULL) die("malloc");
    memcpy(p->buf, buf + off, p->len);
    watch(fd, EPOLL_CTL_MOD, EPOLLOUT);   /* stop reading until drained */
    return 0;
  }
  return 0;
}

static void on_readable(int fd) {
  ssize_t n = read(fd, rbuf, sizeof rbuf);
  if (n > 0) {
    if (send_all(fd, rbuf, (size_t)n) < 0) drop(fd);
  } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
    drop(fd);
  }
}

static void on_writable(int fd) {
  pending *p = pend_of(fd);
  char *buf = p->buf;
  size_t len = p->len;
  p->buf = NULL;
  p->len = 0;
  watch(fd, EPOLL_CTL_MOD, EPOLLIN);
  int rc = send_all(fd, buf, len);   /* may re-arm EPOLLOUT with the rest */
  free(buf);
  if (rc < 0) drop(fd);
}

static void on_accept(int lfd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) return;
      die("accept4");
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    watch(fd, EPOLL_CTL_ADD, EPOLLIN);
  }
}

static int listen_on(int port) {
  struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
  socklen_t salen = sizeof sa;
  int one = 1;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
  if (listen(fd, 511) < 0) die("listen");
  if (getsockname(fd, (struct sockaddr *)&sa, &salen) < 0) die("getsockname");
  printf("listening %d\n", ntohs(sa.sin_port));
  fflush(stdout);
  return fd;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: echo_epoll PORT\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);   /* a vanished peer is an EPIPE, not a death */
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  int lfd = listen_on(atoi(argv[1]));
  watch(lfd, EPOLL_CTL_ADD, EPOLLIN);

  struct epoll_event evs[MAX_EVENTS];
  for (;;) {
    int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      uint32_t e = evs[i].events;
      if (fd == lfd) on_accept(lfd);
      else if (e & EPOLLOUT) on_writable(fd);
      else if (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(fd);
    }
  }
}

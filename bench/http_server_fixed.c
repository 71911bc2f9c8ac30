/* bench/http_server_fixed.c: the server of the HTTP client benchmark.
 *
 *   http_server_fixed PORT          (0: any free port)
 *
 * One thread on epoll, edge-free (level-triggered) and small, so the
 * clients are what is measured: it answers every request (a head ending
 * in CRLF CRLF; request bodies are not expected) with the same 1 KiB body,
 * keeps connections open (HTTP/1.1 keep-alive) unless the request says
 * "Connection: close", and answers pipelined requests in order. Prints
 * "listening <port>" when ready; on SIGTERM/SIGINT prints
 * "served <requests> on <connections> connections" to stderr and exits.
 *
 * Build: cc -O2 -o http_server_fixed http_server_fixed.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BODY 1024
#define INCAP 8192

typedef struct conn {
  int fd;
  size_t in;                 /* bytes in buf */
  char buf[INCAP];
  char *out;                 /* unsent reply bytes (rarely used) */
  size_t outn, outcap;
  int close_after;
  int want_out;              /* EPOLLOUT is on */
} conn;

static char reply[256 + BODY];
static size_t reply_len;
static volatile sig_atomic_t stop;
static unsigned long served, accepted;

static void on_signal(int sig) { (void)sig; stop = 1; }

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void drop(int ep, conn *c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c->out);
  free(c);
}

static int queue(conn *c, const char *p, size_t n) {
  if (c->outn + n > c->outcap) {
    size_t cap = c->outcap ? c->outcap * 2 : 16384;
    while (cap < c->outn + n) cap *= 2;
    char *q = realloc(c->out, cap);
    if (!q) return -1;
    c->out = q;
    c->outcap = cap;
  }
  memcpy(c->out + c->outn, p, n);
  c->outn += n;
  return 0;
}

/* Sends what is queued; 1 when all is out, 0 when the socket is full, -1 on an error. */
static int flush(conn *c) {
  size_t off = 0;
  while (off < c->outn) {
    ssize_t w = send(c->fd, c->out + off, c->outn - off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      return -1;
    }
    off += (size_t)w;
  }
  memmove(c->out, c->out + off, c->outn - off);
  c->outn -= off;
  return c->outn == 0;
}

/* Every complete request head in buf gets the reply; 0, or -1 to close. */
static int handle(conn *c) {
  size_t start = 0;
  for (;;) {
    char *end = memmem(c->buf + start, c->in - start, "\r\n\r\n", 4);
    if (!end) break;
    size_t hlen = (size_t)(end - (c->buf + start)) + 4;
    c->buf[start + hlen - 1] = 0;           /* the last LF: the head is a C string now */
    char *head = c->buf + start;
    if (strcasestr(head, "\nconnection: close") || strcasestr(head, "\nconnection:close"))
      c->close_after = 1;
    if (queue(c, reply, reply_len) != 0) return -1;
    served++;
    start += hlen;
    if (c->close_after) break;
  }
  memmove(c->buf, c->buf + start, c->in - start);
  c->in -= start;
  if (c->in == INCAP) return -1;            /* a head larger than the buffer */
  return 0;
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  reply_len = (size_t)snprintf(reply, sizeof reply,
                               "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                               "Content-Length: %d\r\n\r\n", BODY);
  for (int i = 0; i < BODY; i++) reply[reply_len + (size_t)i] = (char)('a' + i % 26);
  reply_len += BODY;

  struct sigaction sa = { .sa_handler = on_signal };
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  if (lfd < 0) die("socket");
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
  if (listen(lfd, 1024) < 0) die("listen");
  socklen_t alen = sizeof a;
  getsockname(lfd, (struct sockaddr *)&a, &alen);
  printf("listening %d\n", ntohs(a.sin_port));
  fflush(stdout);

  int ep = epoll_create1(0);
  if (ep < 0) die("epoll_create1");
  struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  struct epoll_event evs[256];
  while (!stop) {
    int n = epoll_wait(ep, evs, 256, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      if (!c) {                               /* the listener */
        for (;;) {
          int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
          if (fd < 0) break;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          c = calloc(1, sizeof *c);
          if (!c) {
            close(fd);
            continue;
          }
          c->fd = fd;
          accepted++;
          struct epoll_event cev = { .events = EPOLLIN, .data.ptr = c };
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
        }
        continue;
      }
      if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        ssize_t r = recv(c->fd, c->buf + c->in, INCAP - c->in, 0);
        if (r <= 0) {
          if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
          drop(ep, c);
          continue;
        }
        c->in += (size_t)r;
        if (handle(c) != 0) {
          drop(ep, c);
          continue;
        }
      }
      if (c->outn) {
        int f = flush(c);
        if (f < 0) {
          drop(ep, c);
          continue;
        }
        if (f && c->close_after) {
          drop(ep, c);
          continue;
        }
        if (c->want_out != !f) {              /* only when it changes */
          c->want_out = !f;
          struct epoll_event cev = { .events = f ? EPOLLIN : EPOLLIN | EPOLLOUT, .data.ptr = c };
          epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
        }
      }
    }
  }
  fprintf(stderr, "served %lu on %lu connections\n", served, accepted);
  return 0;
}

/* bench/http_client_uv.c: the C floor of the HTTP client benchmark:
 * libcurl's multi interface on libuv, in the shape of curl's
 * docs/examples/multi-uv.c (a uv_poll_t per socket libcurl names, one
 * uv_timer_t for its time-outs, curl_multi_socket_action from the loop's
 * callbacks, finished transfers read with curl_multi_info_read), and no
 * more: a new easy handle per request, as the example (and nexus.http)
 * does, the body collected into a buffer and checked.
 *
 *   http_client_uv URL [N [INFLIGHT [WARMUP]]]
 *
 * WARMUP (1000) untimed GETs, then N (10000) timed ones, INFLIGHT (100)
 * at a time; every response must be a 200 with a 1024-byte body. Prints
 *   RESULT req_per_s=... cpu_us_per_req=... n=...
 * (CPU: this process's utime + stime from getrusage over the timed part).
 *
 * Build: cc -O2 -o http_client_uv http_client_uv.c -lcurl -luv
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <uv.h>

typedef struct sock_ctx {
  uv_poll_t poll;
  curl_socket_t fd;
} sock_ctx;

typedef struct xfer {
  CURL *easy;
  char *body;
  size_t n, cap;
} xfer;

static uv_loop_t *loop;
static CURLM *multi;
static uv_timer_t timer;
static const char *url;
static long total, warmup, started, finished, failures;
static double t0, cpu0, t1, cpu1;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
         (double)ru.ru_stime.tv_usec * 1e-6;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  xfer *x = ud;
  size_t len = size * n;
  if (x->n + len > x->cap) {
    size_t cap = x->cap ? x->cap * 2 : 4096;
    while (cap < x->n + len) cap *= 2;
    char *q = realloc(x->body, cap);
    if (!q) return 0;
    x->body = q;
    x->cap = cap;
  }
  memcpy(x->body + x->n, p, len);
  x->n += len;
  return len;
}

static void start_one(void) {
  xfer *x = calloc(1, sizeof *x);
  x->easy = curl_easy_init();
  curl_easy_setopt(x->easy, CURLOPT_URL, url);
  curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
  curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
  curl_easy_setopt(x->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  curl_multi_add_handle(multi, x->easy);
  started++;
}

static void check_done(void) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    xfer *x;
    long status = 0;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
    curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
    if (m->data.result != CURLE_OK || status != 200 || x->n != 1024) failures++;
    curl_multi_remove_handle(multi, x->easy);
    curl_easy_cleanup(x->easy);
    free(x->body);
    free(x);
    finished++;
    if (finished == warmup) {
      t0 = now();
      cpu0 = cpu();
    }
    if (finished == warmup + total) {
      t1 = now();
      cpu1 = cpu();
      uv_stop(loop);           /* idle keep-alive sockets may still be watched */
    }
    if (started < warmup + total) start_one();
  }
}

static void on_timeout(uv_timer_t *t) {
  (void)t;
  int running;
  curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done();
}

static void on_poll(uv_poll_t *p, int status, int events) {
  sock_ctx *s = p->data;
  int flags = 0, running;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  curl_multi_socket_action(multi, s->fd, flags, &running);
  check_done();
}

static void on_closed(uv_handle_t *h) { free(h->data); }

static int on_socket(CURL *easy, curl_socket_t fd, int action, void *userp, void *socketp) {
  (void)easy;
  (void)userp;
  sock_ctx *s = socketp;
  if (action == CURL_POLL_REMOVE) {
    if (s) {
      uv_poll_stop(&s->poll);
      uv_close((uv_handle_t *)&s->poll, on_closed);
      curl_multi_assign(multi, fd, NULL);
    }
    return 0;
  }
  if (!s) {
    s = calloc(1, sizeof *s);
    s->fd = fd;
    uv_poll_init_socket(loop, &s->poll, fd);
    s->poll.data = s;
    curl_multi_assign(multi, fd, s);
  }
  int ev = 0;
  if (action != CURL_POLL_OUT) ev |= UV_READABLE;
  if (action != CURL_POLL_IN) ev |= UV_WRITABLE;
  uv_poll_start(&s->poll, ev, on_poll);
  return 0;
}

static int on_timer(CURLM *m, long ms, void *userp) {
  (void)m;
  (void)userp;
  if (ms < 0) uv_timer_stop(&timer);
  else uv_timer_start(&timer, on_timeout, (uint64_t)ms, 0);   /* 0 ms too: via the loop */
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: http_client_uv URL [N [INFLIGHT [WARMUP]]]\n");
    return 2;
  }
  url = argv[1];
  total = argc > 2 ? atol(argv[2]) : 10000;
  long inflight = argc > 3 ? atol(argv[3]) : 100;
  warmup = argc > 4 ? atol(argv[4]) : 1000;
  if (total < 1 || inflight < 1 || warmup < 0) return 2;
  if (warmup == 0) {
    t0 = now();
    cpu0 = cpu();
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  loop = uv_default_loop();
  uv_timer_init(loop, &timer);
  multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
  for (long i = 0; i < inflight && started < warmup + total; i++) start_one();
  uv_run(loop, UV_RUN_DEFAULT);
  curl_multi_cleanup(multi);
  if (finished != warmup + total || failures) {
    fprintf(stderr, "http_client_uv: %ld of %ld finished, %ld failed\n", finished, warmup + total, failures);
    return 1;
  }
  printf("RESULT req_per_s=%.6g cpu_us_per_req=%.6g n=%ld\n", (double)total / (t1 - t0),
         (cpu1 - cpu0) / (double)total * 1e6, total);
  return 0;
}

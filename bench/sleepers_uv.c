/* bench/sleepers_uv.c: the sleepers reference, plain C on libuv.
 *
 * Arms N uv_timer_t, each for 1 + x mod 50 ms with x from the MINSTD LCG
 * (seed 12345) that every implementation uses (bench/harness.lua H.lcg).
 * Like a sleep(d) built on libuv, each timer refreshes the loop's cached
 * time (uv_update_time) before uv_timer_start, and its deadline is the
 * monotonic clock read just before arming plus d. Reports, in the harness
 * RESULT format: wall time from the first arm to the last wake, mean
 * lateness (wake time - deadline), early wakes, peak RSS (VmHWM).
 *
 * Build: cc -O2 -o sleepers_uv sleepers_uv.c $(pkg-config --cflags --libs libuv)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct sleeper {
  uv_timer_t timer;
  uint64_t deadline;   /* ns, uv_hrtime() clock (CLOCK_MONOTONIC) */
} sleeper;

static long n_tasks = 100000;
static long woken;
static long early;
static double late_sum_ns;
static uint64_t t_start, t_last, t_armed;

static void on_timer(uv_timer_t *t) {
  sleeper *s = (sleeper *)t;
  uint64_t now = uv_hrtime();
  int64_t late = (int64_t)(now - s->deadline);
  if (late < 0) early++;
  late_sum_ns += (double)late;
  if (++woken == n_tasks) t_last = now;
  uv_close((uv_handle_t *)t, NULL);
}

static long vm_hwm_bytes(void) {
  char line[256];
  long kb = -1;
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) return -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmHWM:", 6) == 0) { kb = strtol(line + 6, NULL, 10); break; }
  fclose(f);
  return kb < 0 ? -1 : kb * 1024;
}

int main(void) {
  const char *env = getenv("BENCH_SLEEPERS_N");
  uv_loop_t *loop = uv_default_loop();
  sleeper *ss;
  uint64_t x = 12345;
  long i;

  if (env != NULL) n_tasks = strtol(env, NULL, 10);
  if (n_tasks <= 0) { fprintf(stderr, "sleepers_uv: bad BENCH_SLEEPERS_N\n"); return 1; }
  ss = calloc((size_t)n_tasks, sizeof *ss);
  if (ss == NULL) { fprintf(stderr, "sleepers_uv: out of memory\n"); return 1; }

  t_start = uv_hrtime();
  for (i = 0; i < n_tasks; i++) {
    uint64_t d;
    x = (x * 48271) % 2147483647;
    d = 1 + x % 50;
    uv_timer_init(loop, &ss[i].timer);
    uv_update_time(loop);
    ss[i].deadline = uv_hrtime() + d * 1000000;
    uv_timer_start(&ss[i].timer, on_timer, d, 0);
  }
  t_armed = uv_hrtime();
  uv_run(loop, UV_RUN_DEFAULT);

  if (woken != n_tasks) {
    fprintf(stderr, "sleepers_uv: %ld of %ld timers fired\n", woken, n_tasks);
    return 1;
  }
  printf("RESULT wall_ms=%.6g late_ms=%.6g early=%ld hwm_mb=%.6g n=%ld arm_ms=%.6g\n",
         (double)(t_last - t_start) / 1e6, late_sum_ns / (double)n_tasks / 1e6,
         early, (double)vm_hwm_bytes() / 1048576.0, n_tasks,
         (double)(t_armed - t_start) / 1e6);
  uv_loop_close(loop);
  free(ss);
  return 0;
}

/* master.c - `nexus --workers N script.lua`: nginx's master/worker model.
 *
 * The master forks N workers before any Lua state exists; each worker
 * returns from nx_master_run and goes on as a plain `nexus script.lua`,
 * with NEXUS_WORKER_ID (0..N-1) and NEXUS_WORKER_COUNT in its environment
 * (nexus.worker_id(), nexus.worker_count(); listeners default to
 * SO_REUSEPORT, so the kernel spreads connections over the workers).
 *
 * The master only waits and relays, with every signal it handles blocked
 * and taken by sigtimedwait (no handler runs at an awkward moment):
 * - a worker that dies is restarted after a delay that doubles (0.1 s up
 *   to 5 s) while it keeps dying within 10 s of its start, and the master
 *   logs each death on stderr;
 * - SIGTERM and SIGINT are forwarded to every worker; the master waits
 *   for them, at most NEXUS_WORKERS_GRACE seconds (default 10), then
 *   SIGKILLs the rest, and exits 0 if every worker exited 0, else 1
 *   (128 + the signal when a worker was killed);
 * - SIGHUP restarts the workers gracefully: new workers start at once,
 *   the old ones get SIGTERM (their shutdown signal) and drain.
 * A worker dies with its master (PR_SET_PDEATHSIG): no orphans.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "master.h"

#include <errno.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NX_MAX_WORKERS 1024
#define NX_BACKOFF_MIN 0.1
#define NX_BACKOFF_MAX 5.0
#define NX_STABLE_SECS 10.0

typedef struct nx_worker {
  pid_t pid;            /* 0: not running */
  double started;       /* when it was forked */
  double restart_at;    /* when to fork it again (pid == 0) */
  double backoff;
} nx_worker;

typedef struct nx_retiree { pid_t pid; struct nx_retiree *next; } nx_retiree;

static double nx_mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nx_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void nx_log(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "nexus: master %d: ", (int)getpid());
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  fflush(stderr);
  va_end(ap);
}

/* In the child: its id in the environment, the signal mask back, death
 * with the master. Returns 0: go on as a worker. */
static int nx_become_worker(int id, int n, const sigset_t *old, pid_t master) {
  char buf[32];
  snprintf(buf, sizeof buf, "%d", id);
  setenv("NEXUS_WORKER_ID", buf, 1);
  snprintf(buf, sizeof buf, "%d", n);
  setenv("NEXUS_WORKER_COUNT", buf, 1);
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != master) _exit(1);          /* the master died before prctl */
  sigprocmask(SIG_SETMASK, old, NULL);
  return 0;
}

/* Forks worker id; returns 1 in the master, 0 in the child. */
static int nx_fork_worker(nx_worker *w, int id, int n, const sigset_t *old) {
  pid_t master = getpid();
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) return nx_become_worker(id, n, old, master);
  if (pid < 0) {
    nx_log("fork for worker %d failed: %s; retrying", id, strerror(errno));
    w->pid = 0;
    w->restart_at = nx_mono() + NX_BACKOFF_MAX;
    return 1;
  }
  w->pid = pid;
  w->started = nx_mono();
  return 1;
}

static void nx_describe_status(int status, char *buf, size_t n) {
  if (WIFEXITED(status)) snprintf(buf, n, "exited with status %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status)) snprintf(buf, n, "was killed by signal %d (%s)", WTERMSIG(status),
                                         strsignal(WTERMSIG(status)));
  else snprintf(buf, n, "ended (status %d)", status);
}

static double nx_grace(void) {
  const char *g = getenv("NEXUS_WORKERS_GRACE");
  double v = g ? atof(g) : 10.0;
  return v > 0 ? v : 10.0;
}

/* Sends sig to every running worker and retiree. */
static void nx_signal_all(nx_worker *ws, int n, nx_retiree *r, int sig) {
  for (int i = 0; i < n; i++)
    if (ws[i].pid > 0) kill(ws[i].pid, sig);
  for (; r; r = r->next) kill(r->pid, sig);
}

static int nx_remove_retiree(nx_retiree **list, pid_t pid) {
  for (nx_retiree **p = list; *p; p = &(*p)->next) {
    if ((*p)->pid == pid) {
      nx_retiree *r = *p;
      *p = r->next;
      free(r);
      return 1;
    }
  }
  return 0;
}

int nx_master_run(int n) {
  if (n < 1 || n > NX_MAX_WORKERS) {
    fprintf(stderr, "nexus: --workers: expected 1..%d, got %d\n", NX_MAX_WORKERS, n);
    return 1;
  }
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigprocmask(SIG_BLOCK, &set, &old);

  nx_worker *ws = calloc((size_t)n, sizeof *ws);
  if (!ws) {
    fputs("nexus: --workers: out of memory\n", stderr);
    return 1;
  }
  nx_retiree *retirees = NULL;
  for (int i = 0; i < n; i++) {
    ws[i].backoff = NX_BACKOFF_MIN;
    if (nx_fork_worker(&ws[i], i, n, &old) == 0) {
      free(ws);
      return -1;                                  /* a worker: go on */
    }
  }
  int stopping = 0, stop_sig = 0, failed = 0;
  double deadline = 0;
  for (;;) {
    /* Reap every child that ended. */
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      if (nx_remove_retiree(&retirees, pid)) continue;
      for (int i = 0; i < n; i++) {
        if (ws[i].pid != pid) continue;
        ws[i].pid = 0;
        char why[96];
        nx_describe_status(status, why, sizeof why);
        int clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!clean) failed = WIFSIGNALED(status) && !failed ? 128 + WTERMSIG(status) : (failed ? failed : 1);
        if (stopping) break;
        double now = nx_mono();
        if (now - ws[i].started >= NX_STABLE_SECS) ws[i].backoff = NX_BACKOFF_MIN;
        ws[i].restart_at = now + ws[i].backoff;
        nx_log("worker %d (pid %d) %s; restarting it in %.1f s", i, (int)pid, why, ws[i].backoff);
        ws[i].backoff = ws[i].backoff * 2 > NX_BACKOFF_MAX ? NX_BACKOFF_MAX : ws[i].backoff * 2;
        break;
      }
    }
    int running = 0;
    for (int i = 0; i < n; i++) running += ws[i].pid > 0;
    if (stopping && running == 0 && !retirees) break;
    double now = nx_mono();
    if (stopping && now >= deadline) {
      nx_log("workers still running %.0f s after %s: killing them", nx_grace(), strsignal(stop_sig));
      nx_signal_all(ws, n, retirees, SIGKILL);
      deadline = now + 3600;
    }
    /* Restart what is due. */
    double next = now + 1.0;
    if (!stopping) {
      for (int i = 0; i < n; i++) {
        if (ws[i].pid > 0) continue;
        if (ws[i].restart_at <= now) {
          if (nx_fork_worker(&ws[i], i, n, &old) == 0) {
            free(ws);
            while (retirees) nx_remove_retiree(&retirees, retirees->pid);
            return -1;
          }
        } else if (ws[i].restart_at < next) {
          next = ws[i].restart_at;
        }
      }
    } else if (deadline < next) {
      next = deadline;
    }
    double wait = next - nx_mono();
    if (wait < 0.001) wait = 0.001;
    struct timespec ts = { (time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9) };
    int sig = sigtimedwait(&set, NULL, &ts);
    if (sig == SIGTERM || sig == SIGINT) {
      if (!stopping) {
        stopping = 1;
        stop_sig = sig;
        deadline = nx_mono() + nx_grace();
        nx_signal_all(ws, n, retirees, sig);
      } else {
        nx_signal_all(ws, n, retirees, SIGKILL);   /* a second signal: at once */
      }
    } else if (sig == SIGHUP && !stopping) {
      nx_log("SIGHUP: starting new workers, the old ones drain");
      for (int i = 0; i < n; i++) {
        if (ws[i].pid > 0) {
          nx_retiree *r = malloc(sizeof *r);
          if (r) {
            r->pid = ws[i].pid;
            r->next = retirees;
            retirees = r;
          }
          kill(ws[i].pid, SIGTERM);
        }
        ws[i].backoff = NX_BACKOFF_MIN;
        if (nx_fork_worker(&ws[i], i, n, &old) == 0) {
          free(ws);
          while (retirees) nx_remove_retiree(&retirees, retirees->pid);
          return -1;
        }
      }
    }
  }
  free(ws);
  return failed;
}

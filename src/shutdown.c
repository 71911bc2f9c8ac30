/* shutdown.c - shutdown signal, SIGINT/SIGTERM handlers (see shutdown.h). */
#include "shutdown.h"

#include <signal.h>
#include <stdlib.h>

static void nx_sd_ref(nx_rt *rt, int on) {
  nx_shutdown *sd = rt->sd;
  if (!sd) return;
  for (int i = 0; i < 2; i++) {
    if (on) uv_ref((uv_handle_t *)&sd->sig[i]);
    else uv_unref((uv_handle_t *)&sd->sig[i]);
  }
}

static void nx_sd_wait_cancel(nx_rt *rt, nx_task *t) {
  if (rt->sd_waiter == t) rt->sd_waiter = NULL;
  t->wobj = NULL;
  nx_sd_ref(rt, 0);
}

/* Shutdown: wakes the waiter. A signal nobody waits for interrupts. */
void nx_sd_trigger(nx_rt *rt, int signo) {
  rt->shut = 1;
  if (signo && !rt->signo) rt->signo = signo;
  nx_task *w = rt->sd_waiter;
  if (w) {
    rt->sd_waiter = NULL;
    nx_sd_ref(rt, 0);
    nx_task_wake(rt, w, NX_WAKE_OK);
  } else if (signo) {
    rt->interrupted = signo;
  }
}

static void nx_sd_signal_cb(uv_signal_t *h, int signo) {
  nx_rt *rt = h->data;
  if (rt->shut) exit(128 + signo);   /* second signal: at once */
  nx_sd_trigger(rt, signo);
}

int nx_sd_wait(nx_rt *rt) {
  if (rt->shut) return NX_OK;
  nx_task *t = nx_running(rt);
  if (!t) return NX_E_NOTASK;
  if (rt->sd_waiter && rt->sd_waiter != t) return NX_SD_BUSY;
  rt->sd_waiter = t;
  nx_sd_ref(rt, 1);
  nx_wait(rt, nx_sd_wait_cancel, rt);
  return NX_AGAIN;
}

/* libuv runs close callbacks in no promised order (last closed first, in
 * fact): free the block after the last of them, not after sig[1]'s. */
static void nx_sd_free_cb(uv_handle_t *h) {
  nx_shutdown *sd = h->data;
  if (--sd->closing == 0) free(sd);
}

static void nx_sd_close(nx_rt *rt, nx_owned *o) {
  nx_shutdown *sd = (nx_shutdown *)o;
  rt->sd = NULL;
  sd->closing = 2;
  for (int i = 0; i < 2; i++) {
    sd->sig[i].data = sd;
    uv_close((uv_handle_t *)&sd->sig[i], nx_sd_free_cb);
  }
}

int nx_sd_install(nx_rt *rt) {
  static const int signos[2] = { SIGINT, SIGTERM };
  if (rt->sd) return 0;
  nx_shutdown *sd = calloc(1, sizeof *sd);
  if (!sd) return UV_ENOMEM;
  for (int i = 0; i < 2; i++) {      /* both, so that a failure closes both */
    uv_signal_init(&rt->loop, &sd->sig[i]);
    sd->sig[i].data = rt;
  }
  for (int i = 0; i < 2; i++) {
    int rc = uv_signal_start(&sd->sig[i], nx_sd_signal_cb, signos[i]);
    if (rc != 0) {
      rt->sd = sd;
      nx_sd_close(rt, &sd->own);
      return rc;
    }
    uv_unref((uv_handle_t *)&sd->sig[i]);
  }
  sd->own.close = nx_sd_close;
  nx_own(rt, &sd->own);
  rt->sd = sd;
  return 0;
}

void nx_shutdown_names(void) { nx_wait_kind(nx_sd_wait_cancel, "shutdown signal", NULL); }

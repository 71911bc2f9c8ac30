/* shutdown.h - the runtime's shutdown signal and its signal handlers.
 *
 * SIGINT and SIGTERM, through libuv signal handles on the runtime's loop
 * (installed by :signal_handlers(true)), trigger the shutdown signal. One
 * task may wait on it. A signal that finds no task waiting interrupts the
 * runtime: every task is aborted and block_on returns (the nexus command
 * then exits with 128+signal). A second signal while shutting down exits
 * the process at once with 128+signal.
 *
 * The signal handles are unreferenced while nobody waits on the signal, so
 * they never keep an otherwise finished (or deadlocked) runtime parked.
 */
#ifndef NX_SHUTDOWN_H
#define NX_SHUTDOWN_H

#include "rt.h"

typedef struct nx_shutdown {
  nx_owned own;                /* closed with the runtime */
  uv_signal_t sig[2];          /* SIGINT, SIGTERM */
  uint8_t closing;             /* close callbacks still to come */
} nx_shutdown;

int nx_sd_install(nx_rt *rt);             /* 0 or a libuv error */
int nx_sd_wait(nx_rt *rt);                /* NX_OK (shut down), NX_AGAIN, NX_E_* or NX_SD_BUSY */
void nx_sd_trigger(nx_rt *rt, int signo);
enum { NX_SD_BUSY = -10 };

void nx_shutdown_names(void);   /* for nexus.tasks() */

#endif

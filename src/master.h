/* master.h - the --workers master of the nexus command (master.c). */
#ifndef NX_MASTER_H
#define NX_MASTER_H

/* Runs the master of n workers. Returns -1 in a worker (go on and run the
 * script), else the master's exit status. */
int nx_master_run(int n);

#endif

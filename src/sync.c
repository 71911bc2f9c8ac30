/* sync.c - synchronisation primitives: semaphore, oneshot, watch,
 * broadcast, event. (Being written: the opener exports nothing yet.) */
#include "sync.h"

void nx_sync_open(lua_State *L) { (void)L; }

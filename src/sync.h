/* sync.h - semaphore, oneshot, watch, broadcast, event (see sync.c). */
#ifndef NX_SYNC_H
#define NX_SYNC_H

#include <lua.h>

void nx_sync_open(lua_State *L);

#endif

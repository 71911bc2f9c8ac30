/* mpsc.h - cross-thread channel: bounded, many senders on any OS thread,
 * one receiving task woken through its runtime's loop (uv_async_t).
 *
 * The public C face (nexus_mpsc_send_*, sender handles) is in nexus.h;
 * the Lua binding (classic API: values are copied) is opened here.
 */
#ifndef NX_MPSC_H
#define NX_MPSC_H

#include <lua.h>

#include "nexus.h"

/* Statuses of the Lua entry points besides NX_OK, NX_AGAIN, NX_E_NOTASK
 * and the NEXUS_E* codes. */
enum {
  NX_M_RXBUSY = -102,    /* another task is already receiving */
  NX_M_OTHERRT = -103    /* the channel belongs to another runtime */
};

void nx_mpsc_open(lua_State *L);

#endif

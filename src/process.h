/* process.h - nexus.process.spawn (process.c). */
#ifndef NX_PROCESS_H
#define NX_PROCESS_H

#include "rt.h"

void nx_process_open(lua_State *L);

#endif

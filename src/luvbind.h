/* luvbind.h - luv opened on a nexus runtime's loop (nexus.luv). */
#ifndef NX_LUVBIND_H
#define NX_LUVBIND_H

#include "rt.h"

void nx_luv_raise(nx_rt *rt, lua_State *L);   /* the executor: a luv callback failed */
void nx_luv_open(lua_State *L);

#endif

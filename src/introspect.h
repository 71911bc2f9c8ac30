/* introspect.h - names, nexus.tasks(), the deadlock listing, SIGQUIT. */
#ifndef NX_INTROSPECT_H
#define NX_INTROSPECT_H

#include "rt.h"

void nx_task_set_name(lua_State *L, nx_rt *rt, nx_task *t, int idx);   /* the string at idx */
void nx_task_push_name(lua_State *L, nx_rt *rt, nx_task *t);           /* or nil */
void nx_push_waiting_list(lua_State *L, nx_rt *rt);
int nx_sigquit_install(nx_rt *rt);
void nx_dump_now(nx_rt *rt, lua_State *L);
void nx_introspect_open(lua_State *L);

#endif

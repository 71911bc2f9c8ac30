/* group.h - task groups (nexus.group, JoinSet) and the scopes built on
 * them.
 *
 * A member's joiner is its group's sink, a task record of kind
 * NX_KIND_GROUP that never runs: a member's error is then observed (it
 * never follows on_task_error), and its end is reported here rather than
 * by a wake. Ended members queue up in completion order for g:next().
 * A group dropped (closed or collected) while members run is handed to
 * the executor, which aborts them at its next safe point.
 */
#ifndef NX_GROUP_H
#define NX_GROUP_H

#include "rt.h"

typedef struct nx_group nx_group;
struct nx_group {
  nx_task sink;                 /* first: the members' joiner */
  nx_task watch;                /* waits on a token that aborts the members (scopes) */
  nx_task *waiter;              /* the task waiting in next() */
  nx_rt *rt;                    /* bound by the first member */
  uint64_t rt_serial;
  uint64_t *done;               /* slots of ended members, a ring */
  uint32_t dhead, dn, dcap;
  uint32_t members;             /* added and not yet returned by next */
  uint32_t live;                /* members that have not ended */
  uint8_t dropped;              /* its Lua object is gone or closed */
  uint8_t in_kills;             /* waits in rt->kills */
  nx_group *next_kill;          /* in rt->kills */
};

void nx_group_ended(nx_rt *rt, nx_task *sink, nx_task *member);   /* from nx_end_common */
void nx_group_kill(nx_rt *rt, lua_State *L);                      /* the executor, at a safe point */
void nx_group_watch_fired(nx_rt *rt, nx_task *watch);             /* from nx_task_ready */
/* lmodule.c: the task of the handle at idx (NULL if not a live handle). */
nx_task *nx_lua_handle_task(lua_State *L, int idx, nx_rt **rtp);
void nx_group_open(lua_State *L);
/* For core.group_spawn (lmodule.c): the open group at idx (raises), and
 * adopting the task t of the handle at hidx (members table at midx). */
nx_group *nx_group_check_open(lua_State *L, int idx, const char *fname);
void nx_group_adopt(lua_State *L, nx_group *g, nx_task *t, int midx, int hidx);
/* group_next's work on the group at index 1: pushes one value. */
void nx_group_next_push(lua_State *L, int wait);

#endif

/* cancel.h - cancellation tokens: a tree, cancelled from any node down.
 *
 * A token knows its parent and its children (a doubly linked sibling
 * list), so cancelling a node visits its subtree iteratively, waking every
 * waiter, with no recursion however deep the tree. A child holds a
 * reference on its parent (the tree above a live token stays); a parent
 * only links its children, which unlink themselves when freed.
 *
 * Drop guards tie a token to a task: when the task ends (returns, errors,
 * is aborted) its guards cancel their tokens, unless disarmed.
 */
#ifndef NX_CANCEL_H
#define NX_CANCEL_H

#include <stdint.h>

#include "rt.h"
#include "waitq.h"

typedef struct nx_token nx_token;
struct nx_token {
  uint8_t cancelled;            /* read by the Lua wrapper through the FFI */
  uint32_t refs;
  nx_token *parent, *child, *next, *prev;
  nx_rt *rt;                    /* runtime of its waiters, once any (a reference) */
  nx_waitq waiters;
};

typedef struct nx_guard nx_guard;
struct nx_guard {
  uint8_t armed;                /* read by the Lua wrapper through the FFI */
  uint8_t refs;                 /* the task's list and the Lua object */
  nx_token *tok;
  nx_task *task;                /* NULL once the task ended */
  nx_guard *next;               /* in the task's list */
};

nx_token *nx_token_new(nx_token *parent);    /* one reference, the caller's */
void nx_token_unref(nx_token *t);
void nx_token_cancel(nx_token *t);
int nx_token_wait(nx_token *t);              /* NX_OK when cancelled, else NX_AGAIN */
/* A guard of the running task on t; NX_OK and *out, or NX_E_NOTASK/NOMEM. */
int nx_guard_new(nx_token *t, nx_guard **out);
nx_token *nx_guard_disarm(nx_guard *g);
void nx_guard_unref(nx_guard *g);
void nx_guards_fire(nx_task *t);             /* the task ended */

struct lua_State;
void nx_cancel_open(struct lua_State *L);    /* core.cancel_api */

#endif

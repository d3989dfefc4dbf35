/* Per-enterprise lanes: read-modify-write updates of one credit code (PATCH, and
 * the replacements that must compare with what is stored) run one at a time in
 * this process, in arrival order. huiqid is normally Redis's only writer, so its
 * own updates then never clash on a version and need no retry; the version check
 * stays for writers in other processes. Each lane holds one running update and a
 * bounded FIFO of waiting ones; a lane exists only while it is in use. Owned by
 * the app (app_t.lanes); nothing here is global. */
#ifndef HUIQI_API_ENT_LANE_H
#define HUIQI_API_ENT_LANE_H

/* Updates that may wait per credit code behind the running one; beyond, the
 * request is answered 503 overloaded with Retry-After. */
#define ENT_LANE_MAX_WAITING 128

typedef struct ent_lanes ent_lanes_t;

/* A waiting update, embedded in the caller's request state. */
typedef struct ent_lane_wait {
    struct ent_lane_wait *next;
    void (*start)(void *arg); /* runs when the lane is this update's */
    void *arg;
} ent_lane_wait_t;

/* At most 'max_waiting' updates wait per credit code behind the running one. */
ent_lanes_t *ent_lanes_new(unsigned max_waiting);
/* Frees the lanes; any still in use are dropped with their waiters (whose owners
 * must already be gone: only at shutdown, after the loop has ended). */
void ent_lanes_free(ent_lanes_t *l);

/* Asks for the lane of 'uscc' (18 characters). Returns 0 when the caller holds it
 * now; 1 when 'w' was queued (w->start(w->arg) runs once the lane is its, from
 * the ent_lane_leave of the update before it); -EBUSY when 'max_waiting' updates
 * already wait (nothing is queued). */
int ent_lane_enter(ent_lanes_t *l, const char *uscc, ent_lane_wait_t *w);
/* The holder of the lane of 'uscc' is done (answered, whatever the outcome): the
 * next waiter, if any, starts before this returns. */
void ent_lane_leave(ent_lanes_t *l, const char *uscc);

#endif

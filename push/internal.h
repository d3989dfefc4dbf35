/* Module-internal: state shared by push/engine.c (deliveries) and push/jobs.c
 * (bulk jobs, change-driven pushes). */
#ifndef HUIQI_PUSH_INTERNAL_H
#define HUIQI_PUSH_INTERNAL_H

#include "push/http.h"
#include "push/push.h"

typedef struct push_job push_job_t;
typedef struct push_ep push_ep_t;

struct push {
    uv_loop_t *loop;
    store_t *store;
    push_opts_t o;
    push_app_t app;
    pushhttp_t *http;
    uv_timer_t tick;
    int closing;
    int open_handles;
    void (*done)(void *);
    void *done_arg;
    /* endpoints: open addressing by key */
    push_ep_t **eps;
    size_t neps, capeps;
    unsigned pending;      /* items read from the queue and not yet recorded */
    unsigned inflight;     /* HTTP requests in flight */
    size_t deferred_known; /* deferred items remembered by endpoints, for recall */
    int reading;
    int recover; /* re-read entries this consumer took before (a crash, a drop) */
    int was_ready;
    int moving;
    uint64_t last_move_ms;
    uint64_t rng;
    push_job_t *jobs; /* running jobs */
    /* Shared by the jobs' steps, which run one at a time on the loop: a listing
     * keeps a bitmap over all ordinals in it (matcher_list). */
    matcher_scratch_t *scratch;
    unsigned job_steps; /* job steps in flight to Redis, all jobs together */
    int resuming;
    push_stats_t stats;
};

/* jobs.c */
void push__jobs_close(push_t *p);
unsigned push__jobs_running(const push_t *p);

#endif

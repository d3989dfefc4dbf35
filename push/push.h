/* Pushing policies to enterprises: bulk jobs that walk a policy's audience and
 * queue notices (never twice: see JOB_STEP in store/scripts.c), pushes driven by
 * an enterprise's change, and the delivery engine that takes the durable queue
 * in Redis and calls webhooks: signed (Standard Webhooks), paced per endpoint,
 * retried on a schedule with jitter, honouring Retry-After, disabling endpoints
 * that answer 410 or fail for days, and recording every attempt. An entry leaves
 * the queue only once its outcome is recorded. Runs on the loop thread. */
#ifndef HUIQI_PUSH_PUSH_H
#define HUIQI_PUSH_PUSH_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "push/ssrf.h"
#include "store/store.h"

typedef struct push push_t;

/* One delivery as queued (all strings NUL-terminated, possibly empty). */
typedef struct push_item {
    const char *id;              /* the webhook-id, stable across attempts */
    const char *ev;              /* policy.matched, package.batch, policy.granted, ... */
    const char *wh;              /* webhook id, or "ent" for an enterprise's own endpoint */
    const char *pol;             /* policy id */
    const char *u;               /* credit code, or a comma list for package.batch */
    const char *job;             /* job id or "" */
    const char *url;             /* the endpoint for "ent" */
    const char *added, *removed; /* enterprise.package_changed */
    /* When the notice was queued (from its stream entry id), 0 when unknown: the
     * body's timestamp, so a notice sent again after a crash, before its body was
     * recorded, renders to the same bytes. */
    int64_t queued_ms;
} push_item_t;

/* The app's answer to a render request: 0 with the body to send; -ECANCELED when
 * the notice must expire (its policy was withdrawn or closed), with a reason; any
 * other error retries later. */
typedef void (*push_render_done)(void *ctx, int rc, const char *body, size_t len, const char *why);

typedef struct push_app {
    void *app;
    /* Builds (or, with 'stored' from an earlier attempt, re-checks) the body of a
     * delivery. Must call done(ctx, ...) exactly once, possibly later. */
    void (*render)(void *app, const push_item_t *item, const char *stored, size_t stored_len,
                   push_render_done done, void *ctx);
    /* Today, as days since 1970 (policy windows). */
    int32_t (*today)(void *app);
    /* The secret that signs deliveries to enterprises' own endpoints ("whsec_..."). */
    const char *(*enterprise_secret)(void *app);
} push_app_t;

typedef struct push_opts {
    ssrf_policy_t ssrf;
    unsigned timeout_ms;     /* a 2xx within this is a success (15,000) */
    int64_t schedule_ms[16]; /* delay before attempt 2, 3, ...; a failure after the
                                last one is final */
    unsigned nschedule;
    int64_t disable_after_ms;   /* an endpoint failing this long is disabled */
    unsigned max_inflight;      /* requests in flight in all */
    unsigned endpoint_inflight; /* default per endpoint */
} push_opts_t;

/* The default schedule: immediately, then after 5 s, 5 min, 30 min, 2 h, 5 h,
 * 10 h and 10 h (about 27.6 hours in all), each with +-10% jitter. */
void push_opts_default(push_opts_t *o);
/* Parses "5s,5m,30m,2h" (units s, m, h, d; 0 allowed) into the schedule. */
int push_schedule_parse(push_opts_t *o, const char *text);

push_t *push_new(uv_loop_t *loop, store_t *store, const push_opts_t *opts, const push_app_t *app);
/* Stops reading the queue, aborts requests in flight (their entries stay in the
 * queue for the next start) and calls done(arg). */
void push_close(push_t *p, void (*done)(void *), void *arg);

/* Starts a job for a published policy ("publish" or "push"). The callback gets
 * the job id. Returns 0 or -EPERM (not published), -ENOENT, or a store error. */
typedef void (*push_job_cb)(void *arg, int rc, uint64_t job);
int push_job_start(push_t *p, uint32_t policy, const char *kind, push_job_cb cb, void *arg);
/* Publishes a policy and, unless 'notify' is 0, creates its push job in the same
 * Redis script (store_pol_publish), then walks it. 'cb' gets the policy as now
 * stored (borrowed for the call; NULL on error) and the job id, or 0 when no job
 * was made (notify 0, or the policy was already published). Returns 0 or a store
 * error, and then 'cb' is never called; 'cb' may get -ENOENT, -EPERM or a store
 * error (store.h). */
typedef void (*push_publish_cb)(void *arg, int rc, const store_policy_t *pol, uint64_t job);
int push_publish(push_t *p, uint32_t policy, int notify, push_publish_cb cb, void *arg);
/* Resumes the jobs that were running when the service stopped (call when the store
 * is ready). */
void push_jobs_resume(push_t *p);
/* Asks a running job to stop; it ends "cancelled" at its next step. */
int push_job_cancel(push_t *p, uint64_t job, push_job_cb cb, void *arg);

/* The store's enterprise hook: queue notices for policies the enterprise now
 * newly matches, and package_changed events. */
void push_on_enterprise(push_t *p, const char *uscc, uint32_t ord, const uint64_t *old_row,
                        const uint64_t *new_row);

/* Work was queued: read the queue soon rather than at the next tick. */
void push_kick(push_t *p);

typedef struct push_stats {
    uint64_t attempts, delivered, retried, dead, expired, disabled_endpoints;
    unsigned inflight, pending, jobs_running;
} push_stats_t;
void push_get_stats(const push_t *p, push_stats_t *out);

#endif

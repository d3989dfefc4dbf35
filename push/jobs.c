/* Bulk jobs and change-driven pushes; see push.h. A job walks its policy's
 * audience in ordinal order, a chunk per step; each step is one atomic script in
 * Redis (mark sent, queue, advance the cursor), so a job interrupted anywhere
 * resumes from its cursor and ends with the same notices. Steps run one at a time
 * per job, between other work on the loop, so the API keeps answering. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "matcher/matcher.h"
#include "matcher/polset.h"
#include "push/internal.h"
#include "tags/date.h"

#define JOB_CHUNK    1000 /* enterprises per step */
#define JOB_RETRY_MS 500  /* after a failed step */
/* Steps in flight to Redis for all jobs together. Each step is a script that
 * holds Redis for a millisecond or two; with one at a time, a request of the API
 * waits behind at most one, however many policies are being pushed at once (an
 * operator publishing a hundred policies must not stall everyone else). Jobs
 * take turns. */
#define JOB_MAX_STEPS 1u

struct push_job {
    push_job_t *next;
    push_t *p;
    uint64_t id;
    uint32_t policy;
    uint32_t cursor;
    uint32_t next_cursor;
    int done_walk; /* this step reached the end of the audience */
    int in_step;
    int waiting; /* due, but other jobs' steps hold the turn */
    int closing;
    uv_timer_t timer;
    uint32_t ords[JOB_CHUNK];
    char keys[JOB_CHUNK * 18];
};

static void job_schedule(push_job_t *j, uint64_t ms);

static void job_on_close(uv_handle_t *h) {
    push_job_t *j = h->data;
    free(j);
}

static void job_remove(push_job_t *j) {
    push_t *p = j->p;
    for (push_job_t **pp = &p->jobs; *pp; pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    }
    j->closing = 1;
    uv_close((uv_handle_t *)&j->timer, job_on_close);
}

static push_job_t *job_find(push_t *p, uint64_t id) {
    for (push_job_t *j = p->jobs; j; j = j->next) {
        if (j->id == id) {
            return j;
        }
    }
    return NULL;
}

/* Takes a turn for a Redis step: 0, or -EBUSY (then the job waits its turn). */
static int job_begin(push_job_t *j) {
    push_t *p = j->p;
    if (p->job_steps >= JOB_MAX_STEPS) {
        j->waiting = 1;
        return -EBUSY;
    }
    p->job_steps++;
    j->in_step = 1;
    return 0;
}

/* Gives the turn back and wakes the job that has waited longest: the list is
 * newest first, so the last waiting one. */
static void job_finish(push_job_t *j) {
    push_t *p = j->p;
    j->in_step = 0;
    if (p->job_steps) {
        p->job_steps--;
    }
    push_job_t *next = NULL;
    for (push_job_t *x = p->jobs; x; x = x->next) {
        if (x->waiting && !x->closing) {
            next = x;
        }
    }
    if (next) {
        next->waiting = 0;
        job_schedule(next, 0);
    }
}

unsigned push__jobs_running(const push_t *p) {
    unsigned n = 0;
    for (const push_job_t *j = p->jobs; j; j = j->next) {
        n++;
    }
    return n;
}

void push__jobs_close(push_t *p) {
    while (p->jobs) {
        job_remove(p->jobs);
    }
}

static void job_on_end(void *arg, int rc, uint64_t v) {
    (void)v;
    push_job_t *j = arg;
    job_finish(j);
    if (rc && rc != -ENOENT) {
        job_schedule(j, JOB_RETRY_MS); /* try to end it again */
        return;
    }
    job_remove(j);
}

static void job_end(push_job_t *j, const char *state) {
    if (job_begin(j) != 0) {
        return;
    }
    if (store_job_end(j->p->store, j->id, state, job_on_end, j) != 0) {
        job_finish(j);
        job_schedule(j, JOB_RETRY_MS);
    }
}

static void job_on_reload(void *arg, int rc, const store_kv_t *kv, size_t n) {
    push_job_t *j = arg;
    job_finish(j);
    if (rc == -ENOENT) {
        job_remove(j);
        return;
    }
    if (rc) {
        job_schedule(j, JOB_RETRY_MS);
        return;
    }
    size_t len;
    const char *st = store_kv_get(kv, n, "state", &len);
    if (st == NULL || len != 7 || memcmp(st, "running", 7) != 0) {
        job_remove(j); /* cancelled or finished elsewhere */
        return;
    }
    const char *cur = store_kv_get(kv, n, "cursor", &len);
    char buf[16];
    if (cur && len < sizeof buf) {
        memcpy(buf, cur, len);
        buf[len] = '\0';
        j->cursor = (uint32_t)strtoul(buf, NULL, 10);
    }
    job_schedule(j, 0);
}

/* After an uncertain failure the cursor in Redis says whether the step ran. */
static void job_reload(push_job_t *j) {
    if (job_begin(j) != 0) {
        return;
    }
    if (store_job_get(j->p->store, j->id, job_on_reload, j) != 0) {
        job_finish(j);
        job_schedule(j, JOB_RETRY_MS);
    }
}

static void job_on_step(void *arg, int rc, uint64_t newly, uint64_t queued) {
    (void)newly;
    push_job_t *j = arg;
    job_finish(j);
    if (j->closing) {
        return;
    }
    if (rc == -EPERM) {
        job_remove(j); /* no longer running: cancelled */
        return;
    }
    if (rc) {
        job_reload(j);
        return;
    }
    j->cursor = j->next_cursor;
    if (queued) {
        push_kick(j->p);
    }
    if (j->done_walk) {
        job_end(j, "done");
        return;
    }
    job_schedule(j, 0);
}

static void job_step(uv_timer_t *t) {
    push_job_t *j = t->data;
    push_t *p = j->p;
    if (j->in_step || j->closing || p->closing) {
        return;
    }
    if (!store_ready(p->store)) {
        job_schedule(j, JOB_RETRY_MS);
        return;
    }
    if (p->job_steps >= JOB_MAX_STEPS) {
        j->waiting = 1; /* job_finish of the step in flight wakes it */
        return;
    }
    const store_policy_t *pol = store_policy(p->store, j->policy);
    if (pol == NULL || pol->status != STORE_POL_PUBLISHED) {
        /* Withdrawn or deleted while the job ran: nothing more goes out. */
        job_end(j, "cancelled");
        return;
    }
    const matcher_t *m = store_matcher(p->store);
    uint32_t next;
    size_t n = matcher_list(m, &pol->rule, p->scratch, j->cursor, j->ords, JOB_CHUNK, &next);
    for (size_t i = 0; i < n; i++) {
        memcpy(j->keys + i * 18, matcher_key(m, j->ords[i]), 18);
    }
    j->done_walk = next == MATCHER_NONE;
    j->next_cursor = j->done_walk ? matcher_span(m) : next;
    if (j->next_cursor < j->cursor) {
        j->next_cursor = j->cursor;
    }
    job_begin(j); /* cannot fail: the turn was checked above */
    if (store_job_step(p->store, j->id, j->policy, j->cursor, j->next_cursor, j->ords, j->keys, n,
                       job_on_step, j) != 0) {
        job_finish(j);
        job_schedule(j, JOB_RETRY_MS);
    }
}

static void job_schedule(push_job_t *j, uint64_t ms) {
    if (!j->closing) {
        uv_timer_start(&j->timer, job_step, ms, 0);
    }
}

static push_job_t *job_new(push_t *p, uint64_t id, uint32_t policy, uint32_t cursor) {
    push_job_t *j = xcalloc(1, sizeof *j);
    j->p = p;
    j->id = id;
    j->policy = policy;
    j->cursor = cursor;
    uv_timer_init(p->loop, &j->timer);
    j->timer.data = j;
    j->next = p->jobs;
    p->jobs = j;
    return j;
}

/* ---------------------------------------------------------------------------
 * Starting, resuming, cancelling
 * ------------------------------------------------------------------------- */

typedef struct start_op {
    push_t *p;
    uint32_t policy;
    push_job_cb cb;
    void *arg;
} start_op_t;

static void on_created(void *arg, int rc, uint64_t id) {
    start_op_t *op = arg;
    if (rc == 0 && !op->p->closing) {
        job_schedule(job_new(op->p, id, op->policy, 0), 0);
    }
    if (op->cb) {
        op->cb(op->arg, rc, id);
    }
    free(op);
}

int push_job_start(push_t *p, uint32_t policy, const char *kind, push_job_cb cb, void *arg) {
    const store_policy_t *pol = store_policy(p->store, policy);
    if (pol == NULL) {
        return -ENOENT;
    }
    if (pol->status != STORE_POL_PUBLISHED) {
        return -EPERM;
    }
    uint64_t total = matcher_count(store_matcher(p->store), &pol->rule, p->scratch);
    start_op_t *op = xcalloc(1, sizeof *op);
    op->p = p;
    op->policy = policy;
    op->cb = cb;
    op->arg = arg;
    int rc = store_job_create(p->store, policy, kind, pol->mode, pol->ver, total, on_created, op);
    if (rc) {
        free(op);
    }
    return rc;
}

typedef struct publish_op {
    push_t *p;
    uint32_t policy;
    push_publish_cb cb;
    void *arg;
} publish_op_t;

static void on_published(void *arg, int rc, const store_policy_t *pol, uint64_t job) {
    publish_op_t *op = arg;
    /* Closing: the job stays running in Redis and resumes at the next start. */
    if (rc == 0 && job && !op->p->closing) {
        job_schedule(job_new(op->p, job, op->policy, 0), 0);
    }
    op->cb(op->arg, rc, pol, job);
    free(op);
}

int push_publish(push_t *p, uint32_t policy, int notify, push_publish_cb cb, void *arg) {
    /* The audience is counted from memory for the job's progress figures; a policy
     * missing from memory is sent all the same, and Redis has the last word. */
    const store_policy_t *pol = store_policy(p->store, policy);
    uint64_t total = 0;
    if (notify && pol) {
        total = matcher_count(store_matcher(p->store), &pol->rule, p->scratch);
    }
    publish_op_t *op = xcalloc(1, sizeof *op);
    op->p = p;
    op->policy = policy;
    op->cb = cb;
    op->arg = arg;
    int rc =
        store_pol_publish(p->store, policy, notify ? "publish" : NULL, total, on_published, op);
    if (rc) {
        free(op);
    }
    return rc;
}

typedef struct resume_op {
    push_t *p;
    uint64_t id;
} resume_op_t;

static void on_resume_get(void *arg, int rc, const store_kv_t *kv, size_t n) {
    resume_op_t *op = arg;
    push_t *p = op->p;
    if (rc == 0 && !p->closing && job_find(p, op->id) == NULL) {
        size_t len;
        const char *st = store_kv_get(kv, n, "state", &len);
        char buf[24];
        uint32_t policy = 0, cursor = 0;
        const char *v = store_kv_get(kv, n, "policy", &len);
        if (v && len < sizeof buf) {
            memcpy(buf, v, len);
            buf[len] = '\0';
            policy = (uint32_t)strtoul(buf, NULL, 10);
        }
        v = store_kv_get(kv, n, "cursor", &len);
        if (v && len < sizeof buf) {
            memcpy(buf, v, len);
            buf[len] = '\0';
            cursor = (uint32_t)strtoul(buf, NULL, 10);
        }
        if (st && strncmp(st, "running", 7) == 0 && policy) {
            job_schedule(job_new(p, op->id, policy, cursor), 0);
        }
    }
    free(op);
}

static void on_running(void *arg, int rc, const store_kv_t *kv, size_t n) {
    push_t *p = arg;
    p->resuming = 0;
    if (rc || p->closing) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char buf[24];
        if (kv[i].vlen >= sizeof buf) {
            continue;
        }
        memcpy(buf, kv[i].v, kv[i].vlen);
        buf[kv[i].vlen] = '\0';
        uint64_t id = strtoull(buf, NULL, 10);
        if (id == 0 || job_find(p, id)) {
            continue;
        }
        resume_op_t *op = xcalloc(1, sizeof *op);
        op->p = p;
        op->id = id;
        if (store_job_get(p->store, id, on_resume_get, op) != 0) {
            free(op);
        }
    }
}

void push_jobs_resume(push_t *p) {
    if (p->resuming || p->closing) {
        return;
    }
    if (store_jobs_running(p->store, on_running, p) == 0) {
        p->resuming = 1;
    }
}

typedef struct cancel_op {
    push_job_cb cb;
    void *arg;
    uint64_t id;
} cancel_op_t;

static void on_cancelled(void *arg, int rc, uint64_t changed) {
    cancel_op_t *op = arg;
    op->cb(op->arg, rc ? rc : (changed ? 0 : -EALREADY), op->id);
    free(op);
}

int push_job_cancel(push_t *p, uint64_t job, push_job_cb cb, void *arg) {
    cancel_op_t *op = xcalloc(1, sizeof *op);
    op->cb = cb;
    op->arg = arg;
    op->id = job;
    int rc = store_job_end(p->store, job, "cancelled", on_cancelled, op);
    if (rc) {
        free(op);
    }
    return rc;
}

/* ---------------------------------------------------------------------------
 * Change-driven pushes
 * ------------------------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a;
    uint32_t y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Published policies open today that 'row' satisfies, sorted. */
static size_t open_matches(push_t *p, const uint64_t *row, uint32_t **out) {
    *out = NULL;
    if (row == NULL) {
        return 0;
    }
    const polset_t *ps = store_polset(p->store);
    size_t cap = polset_size(ps) + 1;
    uint32_t *ids = xmalloc(cap * sizeof *ids);
    size_t n = polset_match(ps, row, ids, cap);
    int32_t today = p->app.today(p->app.app);
    size_t k = 0;
    for (size_t i = 0; i < n && i < cap; i++) {
        const store_policy_t *pol = store_policy(p->store, ids[i]);
        if (pol && pol->status == STORE_POL_PUBLISHED &&
            (pol->opens == DATE_NONE || today >= pol->opens) &&
            (pol->closes == DATE_NONE || today <= pol->closes)) {
            ids[k++] = ids[i];
        }
    }
    qsort(ids, k, sizeof *ids, cmp_u32);
    *out = ids;
    return k;
}

static void on_pushed(void *arg, int rc, uint64_t newly, uint64_t queued) {
    push_t *p = arg;
    (void)rc;
    (void)newly;
    if (queued) {
        push_kick(p);
    }
}

void push_on_enterprise(push_t *p, const char *uscc, uint32_t ord, const uint64_t *old_row,
                        const uint64_t *new_row) {
    if (p->closing || new_row == NULL) {
        return;
    }
    uint32_t *now_ids, *was_ids;
    size_t nn = open_matches(p, new_row, &now_ids);
    size_t nw = open_matches(p, old_row, &was_ids);
    uint32_t *added = xmalloc((nn + 1) * sizeof *added);
    uint32_t *removed = xmalloc((nw + 1) * sizeof *removed);
    store_push_pol_t *pols = xmalloc((nn + 1) * sizeof *pols);
    size_t na = 0, nr = 0, i = 0, j = 0;
    while (i < nn || j < nw) {
        if (j == nw || (i < nn && now_ids[i] < was_ids[j])) {
            added[na++] = now_ids[i++];
        } else if (i == nn || was_ids[j] < now_ids[i]) {
            removed[nr++] = was_ids[j++];
        } else {
            i++;
            j++;
        }
    }
    for (size_t k = 0; k < na; k++) {
        const store_policy_t *pol = store_policy(p->store, added[k]);
        pols[k].id = added[k];
        pols[k].mode = pol->mode;
        pols[k].ver = pol->ver;
    }
    /* A brand-new enterprise has no package to compare with: nothing "changed". */
    size_t pc_added = old_row ? na : 0;
    size_t pc_removed = old_row ? nr : 0;
    if (na || pc_removed) {
        store_push_enterprise(p->store, uscc, ord, pols, na, added, pc_added, removed, pc_removed,
                              on_pushed, p);
    }
    free(now_ids);
    free(was_ids);
    free(added);
    free(removed);
    free(pols);
}

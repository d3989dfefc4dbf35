/* The in-memory fake store: reads of jobs, deliveries and grants, the delivery
 * queue and delivery records. The queue never hands anything out: see the top of
 * fake_push.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "store/fake_internal.h"

/* ---------------------------------------------------------------------------
 * Reads: jobs, deliveries, grants, the queue
 * ------------------------------------------------------------------------- */

enum {
    RD_JOB,
    RD_RUNNING,
    RD_MATCHES,
    RD_DLV,
    RD_LOG,
    RD_LIST,
    RD_GRANT,
    RD_QSTATS,
    RD_QREAD,
    RD_MOVE,
    RD_RECALL,
    RD_REQUEUE,
    RD_RECORD
};

typedef struct rd_op {
    fake_op_t base;
    union {
        store_hash_cb hash;
        store_id_cb id;
    } cb;
    void *arg;
    int kind;
    char id[160];
    uint64_t start;
    unsigned count;
    uint32_t wh;
    int64_t since, until;
    /* store_dlv_record */
    char *outcome, *body, *attempt, *error, *job, *whs, *sid;
    size_t body_len;
    int has_body;
    char **fields;
    unsigned nfields;
    int64_t *dues; /* store_q_recall: fields[i] due at dues[i] */
    int64_t next_due_ms, now_ms;
    unsigned attempts;
    long status;
} rd_op_t;

static void rd_op_free(rd_op_t *op) {
    free(op->outcome);
    free(op->body);
    free(op->attempt);
    free(op->error);
    free(op->job);
    free(op->whs);
    free(op->sid);
    for (unsigned i = 0; i < op->nfields; i++) {
        free(op->fields[i]);
    }
    free(op->fields);
    free(op->dues);
    free(op);
}

/* A list answer: kv[i].v are the strings of 'r' from 'start', up to 'count'. */
static void answer_list(rd_op_t *op, const fake_rec_t *r, size_t start, size_t count) {
    size_t avail = r && start < r->nlist ? r->nlist - start : 0;
    size_t n = avail < count ? avail : count;
    store_kv_t *kv = xcalloc(n + 1, sizeof *kv);
    for (size_t i = 0; i < n; i++) {
        kv[i] = (store_kv_t){.k = "", .v = r->list[start + i], .vlen = r->list_lens[start + i]};
    }
    op->cb.hash(op->arg, 0, kv, n);
    free(kv);
}

static void answer_hash(rd_op_t *op, const fake_rec_t *r) {
    size_t n = 0;
    store_kv_t *kv = r ? fake__rec_kv(r, 0, &n) : NULL;
    op->cb.hash(op->arg, n ? 0 : -ENOENT, kv, n);
    free(kv);
}

/* ZRANGEBYSCORE hq:dlvs[:wh:<id>] since (until or +inf) WITHSCORES LIMIT 0 max:
 * ids with their creation time, by time, then id. */
static int dlv_cmp(const void *a, const void *b) {
    const fake_rec_t *x = *(const fake_rec_t *const *)a;
    const fake_rec_t *y = *(const fake_rec_t *const *)b;
    if (x->score != y->score) {
        return x->score < y->score ? -1 : 1;
    }
    return strcmp(x->id, y->id);
}

static void answer_dlv_list(store_t *s, rd_op_t *op) {
    const fake_rec_t **sel = xcalloc(s->dlvs.n + 1, sizeof *sel);
    size_t n = 0;
    for (size_t i = 0; i < s->dlvs.n; i++) {
        const fake_rec_t *r = s->dlvs.r[i];
        if ((op->wh == 0 || r->wh == op->wh) && r->score >= op->since &&
            (op->until <= 0 || r->score < op->until)) {
            sel[n++] = r;
        }
    }
    qsort(sel, n, sizeof *sel, dlv_cmp);
    if (n > op->count) {
        n = op->count;
    }
    store_kv_t *kv = xcalloc(n + 1, sizeof *kv);
    char(*score)[24] = xcalloc(n + 1, sizeof *score);
    for (size_t i = 0; i < n; i++) {
        snprintf(score[i], sizeof score[i], "%lld", (long long)sel[i]->score);
        kv[i] = (store_kv_t){
            .k = sel[i]->id, .klen = strlen(sel[i]->id), .v = score[i], .vlen = strlen(score[i])};
    }
    /* An empty range reads as -ENOENT, as HGETALL-shaped answers do in push.c. */
    op->cb.hash(op->arg, n ? 0 : -ENOENT, kv, n);
    free(score);
    free(kv);
    free(sel);
}

static void answer_running(store_t *s, rd_op_t *op) {
    store_kv_t *kv = xcalloc(s->jobs.n + 1, sizeof *kv);
    size_t n = 0;
    for (size_t i = 0; i < s->jobs.n; i++) {
        size_t len;
        const char *st = fake__rec_get(s->jobs.r[i], "state", &len);
        if (st && len == 7 && memcmp(st, "running", 7) == 0) {
            kv[n++] =
                (store_kv_t){.k = "", .v = s->jobs.r[i]->id, .vlen = strlen(s->jobs.r[i]->id)};
        }
    }
    op->cb.hash(op->arg, 0, kv, n);
    free(kv);
}

static void answer_qstats(store_t *s, rd_op_t *op) {
    size_t queued = 0, retrying = 0, running = 0;
    for (size_t i = 0; i < s->dlvs.n; i++) {
        size_t len;
        const char *st = fake__rec_get(s->dlvs.r[i], "state", &len);
        queued += st && len == 6 && memcmp(st, "queued", 6) == 0;
        retrying += st && len == 5 && memcmp(st, "retry", 5) == 0;
    }
    for (size_t i = 0; i < s->jobs.n; i++) {
        size_t len;
        const char *st = fake__rec_get(s->jobs.r[i], "state", &len);
        running += st && len == 7 && memcmp(st, "running", 7) == 0;
    }
    char v[3][24];
    snprintf(v[0], sizeof v[0], "%zu", queued);
    snprintf(v[1], sizeof v[1], "%zu", retrying);
    snprintf(v[2], sizeof v[2], "%zu", running);
    store_kv_t kv[3] = {{.k = "queued", .klen = 6, .v = v[0], .vlen = strlen(v[0])},
                        {.k = "retrying", .klen = 8, .v = v[1], .vlen = strlen(v[1])},
                        {.k = "jobs_running", .klen = 12, .v = v[2], .vlen = strlen(v[2])}};
    op->cb.hash(op->arg, 0, kv, 3);
}

/* Q_MOVE: due retries back to the queue; answers how many. */
static uint64_t dlv_move_due(store_t *s, int64_t now, unsigned max) {
    uint64_t n = 0;
    for (size_t i = 0; i < s->dlvs.n && n < max; i++) {
        fake_rec_t *r = s->dlvs.r[i];
        size_t len;
        const char *st = fake__rec_get(r, "state", &len);
        if (st && len == 5 && memcmp(st, "retry", 5) == 0 && fake__rec_num(r, "next_at") <= now) {
            fake__rec_set(r, "state", "queued", 6);
            n++;
        }
    }
    return n;
}

/* Q_RECALL: deferred deliveries whose retry is still due when it was deferred
 * to go back into the queue. */
static uint64_t dlv_recall(store_t *s, const rd_op_t *op) {
    uint64_t n = 0;
    for (unsigned i = 0; i < op->nfields; i++) {
        fake_rec_t *r = fake__tab_find(&s->dlvs, op->fields[i]);
        size_t len;
        const char *st = r ? fake__rec_get(r, "state", &len) : NULL;
        if (st && len == 5 && memcmp(st, "retry", 5) == 0 &&
            fake__rec_num(r, "next_at") == op->dues[i]) {
            fake__rec_set(r, "state", "queued", 6);
            n++;
        }
    }
    return n;
}

/* DLV_RECORD: the attempt and its outcome. */
static void dlv_record(store_t *s, rd_op_t *op) {
    fake_rec_t *r = fake__tab_find(&s->dlvs, op->id);
    if (r == NULL) {
        if (s->dlvs.n >= FAKE_MAX_DLVS) {
            return;
        }
        r = fake__tab_get(&s->dlvs, op->id);
        r->score = op->now_ms;
        r->wh = (uint32_t)strtoul(op->whs, NULL, 10);
        fake__rec_setf(r, "created", "%lld", (long long)op->now_ms);
        for (unsigned i = 0; i + 1 < op->nfields; i += 2) {
            fake__rec_set(r, op->fields[i], op->fields[i + 1], strlen(op->fields[i + 1]));
        }
    }
    if (op->has_body) {
        fake__rec_set(r, "body", op->body, op->body_len);
    }
    fake__rec_set(r, "state", op->outcome, strlen(op->outcome));
    fake__rec_setf(r, "attempts", "%u", op->attempts);
    fake__rec_setf(r, "last_status", "%ld", op->status);
    fake__rec_set(r, "last_error", op->error, strlen(op->error));
    fake__rec_setf(r, "last_at", "%lld", (long long)op->now_ms);
    fake__rec_setf(r, "next_at", "%lld", (long long)op->next_due_ms);
    if (r->nlist == FAKE_LOG_MAX) {
        free(r->list[0]);
        memmove(r->list, r->list + 1, (r->nlist - 1) * sizeof *r->list);
        memmove(r->list_lens, r->list_lens + 1, (r->nlist - 1) * sizeof *r->list_lens);
        r->nlist--;
    }
    fake__rec_push(r, op->attempt, strlen(op->attempt));
    fake_rec_t *j = op->job[0] ? fake__tab_find(&s->jobs, op->job) : NULL;
    if (j) {
        const char *o = op->outcome;
        const char *counter = strcmp(o, "delivered") == 0                            ? "delivered"
                              : strcmp(o, "dead") == 0 || strcmp(o, "disabled") == 0 ? "failed"
                              : strcmp(o, "expired") == 0                            ? "expired"
                                                                                     : NULL;
        if (counter) {
            fake__rec_incr(j, counter, 1);
        }
    }
}

static void rd_run(store_t *s, fake_op_t *o) {
    rd_op_t *op = (rd_op_t *)o;
    int ids = op->kind == RD_MOVE || op->kind == RD_RECALL || op->kind == RD_REQUEUE ||
              op->kind == RD_RECORD;
    if (s->closing) {
        if (ids) {
            op->cb.id(op->arg, -EIO, 0);
        } else {
            op->cb.hash(op->arg, -EIO, NULL, 0);
        }
        rd_op_free(op);
        return;
    }
    fake_rec_t *r = NULL;
    switch (op->kind) {
    case RD_JOB:
        answer_hash(op, fake__job_find(s, op->start));
        break;
    case RD_RUNNING:
        answer_running(s, op);
        break;
    case RD_MATCHES:
        r = fake__job_find(s, op->start);
        if (r == NULL) { /* as store/push.c: no such job */
            op->cb.hash(op->arg, -ENOENT, NULL, 0);
        } else {
            answer_list(op, r, (size_t)op->since, op->count);
        }
        break;
    case RD_DLV:
        answer_hash(op, fake__tab_find(&s->dlvs, op->id));
        break;
    case RD_LOG:
        answer_list(op, fake__tab_find(&s->dlvs, op->id), 0, FAKE_LOG_MAX);
        break;
    case RD_LIST:
        answer_dlv_list(s, op);
        break;
    case RD_GRANT:
        r = fake__tab_find(&s->grants, op->id);
        if (r) {
            size_t len;
            const char *v = fake__rec_get(r, "value", &len);
            store_kv_t kv = {.k = "value", .klen = 5, .v = v, .vlen = len};
            op->cb.hash(op->arg, 0, &kv, 1);
        } else {
            op->cb.hash(op->arg, -ENOENT, NULL, 0);
        }
        break;
    case RD_QSTATS:
        answer_qstats(s, op);
        break;
    case RD_QREAD:
        op->cb.hash(op->arg, 0, NULL, 0); /* nothing leaves the machine: see the top */
        break;
    case RD_MOVE:
        op->cb.id(op->arg, 0, dlv_move_due(s, op->since, op->count));
        break;
    case RD_RECALL:
        op->cb.id(op->arg, 0, dlv_recall(s, op));
        break;
    case RD_REQUEUE:
        r = fake__tab_find(&s->dlvs, op->id);
        if (r) {
            fake__rec_set(r, "state", "queued", 6);
        }
        op->cb.id(op->arg, r ? 0 : -ENOENT, r ? 1 : 0);
        break;
    default:
        dlv_record(s, op);
        op->cb.id(op->arg, 0, 1);
        break;
    }
    rd_op_free(op);
}

static int rd_queue(store_t *s, int writes, rd_op_t *op) {
    int rc = writes ? fake__writable(s) : fake__readable(s);
    if (rc) {
        rd_op_free(op);
        return rc;
    }
    fake__queue(s, &op->base, rd_run);
    return 0;
}

static rd_op_t *rd_hash(int kind, store_hash_cb cb, void *arg) {
    rd_op_t *op = xcalloc(1, sizeof *op);
    op->kind = kind;
    op->cb.hash = cb;
    op->arg = arg;
    return op;
}

static rd_op_t *rd_id(int kind, store_id_cb cb, void *arg) {
    rd_op_t *op = xcalloc(1, sizeof *op);
    op->kind = kind;
    op->cb.id = cb;
    op->arg = arg;
    return op;
}

int store_job_get(store_t *s, uint64_t job, store_hash_cb cb, void *arg) {
    rd_op_t *op = rd_hash(RD_JOB, cb, arg);
    op->start = job;
    return rd_queue(s, 0, op);
}

int store_jobs_running(store_t *s, store_hash_cb cb, void *arg) {
    return rd_queue(s, 0, rd_hash(RD_RUNNING, cb, arg));
}

int store_job_matches(store_t *s, uint64_t job, uint64_t start, unsigned count, store_hash_cb cb,
                      void *arg) {
    rd_op_t *op = rd_hash(RD_MATCHES, cb, arg);
    op->start = job;
    op->since = start > INT64_MAX ? INT64_MAX : (int64_t)start;
    op->count = count;
    return rd_queue(s, 0, op);
}

int store_q_read(store_t *s, unsigned count, int pending, store_hash_cb cb, void *arg) {
    (void)count;
    (void)pending;
    return rd_queue(s, 1, rd_hash(RD_QREAD, cb, arg));
}

int store_q_move_due(store_t *s, int64_t now_ms, unsigned max, store_id_cb cb, void *arg) {
    rd_op_t *op = rd_id(RD_MOVE, cb, arg);
    op->since = now_ms;
    op->count = max;
    return rd_queue(s, 1, op);
}

int store_q_recall(store_t *s, const char *const *ids, const int64_t *due_ms, unsigned n,
                   store_id_cb cb, void *arg) {
    rd_op_t *op = rd_id(RD_RECALL, cb, arg);
    op->fields = xcalloc((size_t)n + 1, sizeof *op->fields);
    op->dues = xcalloc((size_t)n + 1, sizeof *op->dues);
    for (unsigned i = 0; i < n; i++) {
        op->fields[i] = xstrdup(ids[i]);
        op->dues[i] = due_ms[i];
    }
    op->nfields = n;
    return rd_queue(s, 1, op);
}

int store_dlv_record(store_t *s, const store_dlv_rec_t *d, store_id_cb cb, void *arg) {
    rd_op_t *op = rd_id(RD_RECORD, cb, arg);
    snprintf(op->id, sizeof op->id, "%s", d->id);
    op->outcome = xstrdup(d->outcome);
    op->attempt = xstrdup(d->attempt);
    op->error = xstrdup(d->error ? d->error : "");
    op->job = xstrdup(d->job ? d->job : "");
    op->whs = xstrdup(d->wh ? d->wh : "");
    op->has_body = d->body != NULL;
    op->body = d->body ? xmemdup(d->body, d->body_len) : NULL;
    op->body_len = d->body_len;
    op->fields = xcalloc(d->nfields + 1, sizeof *op->fields);
    for (unsigned i = 0; i < d->nfields; i++) {
        op->fields[i] = xstrdup(d->fields[i]);
    }
    op->nfields = d->nfields;
    op->next_due_ms = d->next_due_ms;
    op->now_ms = d->now_ms;
    op->attempts = d->attempts;
    op->status = d->status;
    return rd_queue(s, 0, op);
}

int store_dlv_get(store_t *s, const char *id, store_hash_cb cb, void *arg) {
    rd_op_t *op = rd_hash(RD_DLV, cb, arg);
    snprintf(op->id, sizeof op->id, "%.140s", id);
    return rd_queue(s, 0, op);
}

int store_dlv_log(store_t *s, const char *id, store_hash_cb cb, void *arg) {
    rd_op_t *op = rd_hash(RD_LOG, cb, arg);
    snprintf(op->id, sizeof op->id, "%.140s", id);
    return rd_queue(s, 0, op);
}

int store_dlv_list(store_t *s, uint32_t wh, int64_t since_ms, int64_t until_ms, unsigned max,
                   store_hash_cb cb, void *arg) {
    rd_op_t *op = rd_hash(RD_LIST, cb, arg);
    op->wh = wh;
    op->since = since_ms;
    op->until = until_ms;
    op->count = max;
    return rd_queue(s, 0, op);
}

int store_dlv_requeue(store_t *s, const char *id, store_id_cb cb, void *arg) {
    rd_op_t *op = rd_id(RD_REQUEUE, cb, arg);
    snprintf(op->id, sizeof op->id, "%s", id);
    return rd_queue(s, 1, op);
}

int store_grant_get(store_t *s, uint32_t policy, const char *uscc, store_hash_cb cb, void *arg) {
    rd_op_t *op = rd_hash(RD_GRANT, cb, arg);
    snprintf(op->id, sizeof op->id, "%u:%.18s", policy, uscc);
    return rd_queue(s, 0, op);
}

int store_queue_stats(store_t *s, store_hash_cb cb, void *arg) {
    return rd_queue(s, 0, rd_hash(RD_QSTATS, cb, arg));
}

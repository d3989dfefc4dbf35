/* The in-memory fake store, push half: webhooks (in the mirror, as in push.c),
 * jobs, the never-doubled notices of JOB_STEP and PUSH_ENT, delivery records and
 * grants (their reads are in fake_read.c). One deliberate difference from Redis: nothing is ever
 * handed to the delivery engine (store_q_read finds the queue empty), because a delivery would
 * leave the machine; a queued notice shows as a delivery record in state "queued"
 * at once instead. See fake_internal.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "store/fake_internal.h"

/* ---------------------------------------------------------------------------
 * Webhooks
 * ------------------------------------------------------------------------- */

typedef struct wh_op {
    fake_op_t base;
    store_wh_cb cb;
    void *arg;
    uint32_t id;
    int del;
    int64_t expect_ver;
    store_webhook_t *w; /* the record to write */
} wh_op_t;

/* WH_PUT and WH_DEL. Returns 0 with '*res' (NULL after a delete) or the refusal. */
static int wh_apply(store_t *s, wh_op_t *op, const store_webhook_t **res) {
    int64_t now = fake__now_ms();
    const store_webhook_t *cur = op->id ? store__mem_webhook(s->mem, op->id) : NULL;
    if (op->id && cur == NULL) {
        return -ENOENT;
    }
    if (op->del) {
        store__mem_wh_apply(s->mem, op->id, NULL);
        return 0;
    }
    if (cur && op->expect_ver >= 0 && (uint64_t)op->expect_ver != cur->ver) {
        return -ESTALE;
    }
    if (cur == NULL && s->mem->nwhs >= FAKE_MAX_WHS) {
        fake__drop_all(s, 0);
    }
    store_webhook_t *w = op->w;
    op->w = NULL;
    w->id = cur ? op->id : ++s->wh_seq;
    w->ver = cur ? cur->ver + 1 : 1;
    w->created_ms = cur ? cur->created_ms : now;
    w->updated_ms = now;
    w->failing_since_ms = cur ? cur->failing_since_ms : 0;
    store__mem_wh_apply(s->mem, w->id, w);
    *res = w;
    return 0;
}

static void wh_run(store_t *s, fake_op_t *o) {
    wh_op_t *op = (wh_op_t *)o;
    const store_webhook_t *res = NULL;
    int rc = s->closing ? -EIO : wh_apply(s, op, &res);
    op->cb(op->arg, rc, rc == 0 ? res : NULL);
    store__webhook_free(op->w);
    free(op);
}

int store_wh_put(store_t *s, uint32_t id, const store_wh_in_t *in, store_wh_cb cb, void *arg) {
    int rc = fake__writable(s);
    if (rc) {
        return rc;
    }
    wh_op_t *op = xcalloc(1, sizeof *op);
    op->cb = cb;
    op->arg = arg;
    op->id = id;
    op->expect_ver = in->expect_ver;
    store_webhook_t *w = xcalloc(1, sizeof *w);
    w->doc = xstrndup(in->doc, in->doc_len);
    w->doc_len = in->doc_len;
    w->url = xstrdup(in->url);
    w->events = in->events;
    w->secrets = xstrdup(in->secrets);
    w->sk = xstrdup(in->sk ? in->sk : "");
    w->rate = in->rate;
    w->inflight = in->inflight;
    w->batch = in->batch;
    w->disabled = in->disabled;
    w->reason = xstrdup(in->reason ? in->reason : "");
    op->w = w;
    fake__queue(s, &op->base, wh_run);
    return 0;
}

int store_wh_del(store_t *s, uint32_t id, store_wh_cb cb, void *arg) {
    int rc = fake__writable(s);
    if (rc) {
        return rc;
    }
    wh_op_t *op = xcalloc(1, sizeof *op);
    op->cb = cb;
    op->arg = arg;
    op->id = id;
    op->del = 1;
    fake__queue(s, &op->base, wh_run);
    return 0;
}

int store_wh_health(store_t *s, uint32_t id, int64_t failing_since_ms, int disable,
                    const char *reason) {
    store_webhook_t *w = (store_webhook_t *)(uintptr_t)store__mem_webhook(s->mem, id);
    if (w == NULL) {
        return -ENOENT;
    }
    w->failing_since_ms = failing_since_ms;
    if (disable) {
        w->disabled = 1;
        free(w->reason);
        w->reason = xstrdup(reason ? reason : "");
    }
    return fake__readable(s);
}

const store_webhook_t *store_webhook(const store_t *s, uint32_t id) {
    return store__mem_webhook(s->mem, id);
}

const store_webhook_t *store_webhook_next(const store_t *s, uint32_t after) {
    return store__mem_webhook_next(s->mem, after);
}

/* ---------------------------------------------------------------------------
 * Notices: the sent bitmaps, deliveries and grants
 * ------------------------------------------------------------------------- */

static fake_sent_t *sent_find(store_t *s, uint32_t policy, int create) {
    for (size_t i = 0; i < s->nsent; i++) {
        if (s->sent[i].policy == policy) {
            return &s->sent[i];
        }
    }
    if (!create) {
        return NULL;
    }
    if (s->nsent == s->capsent) {
        s->capsent = s->capsent ? s->capsent * 2 : 16;
        s->sent = xreallocarray(s->sent, s->capsent, sizeof *s->sent);
    }
    fake_sent_t *st = &s->sent[s->nsent++];
    memset(st, 0, sizeof *st);
    st->policy = policy;
    return st;
}

void fake__sent_drop_policy(store_t *s, uint32_t id) {
    for (size_t i = 0; i < s->nsent; i++) {
        if (s->sent[i].policy == id) {
            free(s->sent[i].bits);
            s->sent[i] = s->sent[--s->nsent];
            return;
        }
    }
}

void fake__sent_clear_ord(store_t *s, uint32_t ord) {
    for (size_t i = 0; i < s->nsent; i++) {
        if (ord / 8 < s->sent[i].nbytes) {
            s->sent[i].bits[ord / 8] &= (uint8_t) ~(1u << (ord % 8));
        }
    }
}

void fake__push_clear(store_t *s) {
    for (size_t i = 0; i < s->nsent; i++) {
        free(s->sent[i].bits);
    }
    s->nsent = 0;
}

/* SETBIT: returns the bit's old value. */
static int sent_set(store_t *s, uint32_t policy, uint32_t ord) {
    fake_sent_t *st = sent_find(s, policy, 1);
    if (ord / 8 >= st->nbytes) {
        size_t n = (size_t)ord / 8 + 64;
        st->bits = xrealloc(st->bits, n);
        memset(st->bits + st->nbytes, 0, n - st->nbytes);
        st->nbytes = n;
    }
    int old = (st->bits[ord / 8] >> (ord % 8)) & 1;
    st->bits[ord / 8] |= (uint8_t)(1u << (ord % 8));
    return old;
}

typedef struct dlv_in {
    const char *id, *ev, *wh, *pol, *u, *job, *url, *added, *removed;
} dlv_in_t;

/* XADD to hq:q, as the fake shows it: a delivery record waiting in the queue. */
static void dlv_queue(store_t *s, const dlv_in_t *d) {
    fake_rec_t *r = fake__tab_find(&s->dlvs, d->id);
    if (r == NULL) {
        if (s->dlvs.n >= FAKE_MAX_DLVS) {
            return;
        }
        int64_t now = fake__now_ms();
        r = fake__tab_get(&s->dlvs, d->id);
        r->score = now;
        r->wh = (uint32_t)strtoul(d->wh, NULL, 10);
        fake__rec_setf(r, "created", "%lld", (long long)now);
        const char *f[] = {"ev",  d->ev,  "wh",  d->wh,  "pol",   d->pol,   "u",       d->u,
                           "job", d->job, "url", d->url, "added", d->added, "removed", d->removed};
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i += 2) {
            if (f[i + 1] && f[i + 1][0]) {
                fake__rec_set(r, f[i], f[i + 1], strlen(f[i + 1]));
            }
        }
        fake__rec_set(r, "attempts", "0", 1);
    }
    fake__rec_set(r, "state", "queued", 6);
}

/* Webhook ids subscribed to 'ev' (STORE_EVM_*), as the hq:whev:<event> sets hold. */
static size_t subscribers(const store_t *s, unsigned ev, uint32_t *out) {
    size_t n = 0;
    for (size_t i = 0; i < s->mem->nwhs && n < FAKE_MAX_WHS; i++) {
        const store_webhook_t *w = s->mem->whs[i];
        if ((w->events & ev) && !w->disabled) {
            out[n++] = w->id;
        }
    }
    return n;
}

/* The scripts' notify(): notices about policy 'pol' to enterprise 'u' at 'ord'
 * unless it was notified before. Returns the deliveries queued, or -1. */
static long notify(store_t *s, uint32_t pol, int mode_auto, uint64_t pver, uint32_t ord,
                   const char *u, const char *job) {
    if (sent_set(s, pol, ord)) {
        return -1;
    }
    char spol[16], uscc[19], id[96], wid[16];
    snprintf(spol, sizeof spol, "%u", pol);
    memcpy(uscc, u, 18);
    uscc[18] = '\0';
    uint32_t ws[FAKE_MAX_WHS];
    size_t nw = subscribers(s, STORE_EVM_MATCHED, ws);
    long n = 0;
    for (size_t i = 0; i < nw; i++, n++) {
        snprintf(wid, sizeof wid, "%u", ws[i]);
        snprintf(id, sizeof id, "msg_%s_%s_%s", spol, uscc, wid);
        dlv_queue(
            s,
            &(dlv_in_t){
                .id = id, .ev = "policy.matched", .wh = wid, .pol = spol, .u = uscc, .job = job});
    }
    const fake_ent_t *e = fake__ent_find(s, u);
    if (e && e->webhook) {
        snprintf(id, sizeof id, "msg_%s_%s_ent", spol, uscc);
        dlv_queue(s, &(dlv_in_t){.id = id,
                                 .ev = "policy.matched",
                                 .wh = "ent",
                                 .pol = spol,
                                 .u = uscc,
                                 .job = job,
                                 .url = e->webhook});
        n++;
    }
    if (mode_auto) {
        char gid[40];
        snprintf(gid, sizeof gid, "%s:%s", spol, uscc);
        if (fake__tab_find(&s->grants, gid) == NULL && s->grants.n < FAKE_MAX_GRANTS) {
            fake__rec_setf(fake__tab_get(&s->grants, gid), "value", "%lld:%llu",
                           (long long)fake__now_ms(), (unsigned long long)pver);
        }
        nw = subscribers(s, STORE_EVM_GRANTED, ws);
        for (size_t i = 0; i < nw; i++, n++) {
            snprintf(wid, sizeof wid, "%u", ws[i]);
            snprintf(id, sizeof id, "msg_%s_%s_%s_g", spol, uscc, wid);
            dlv_queue(s, &(dlv_in_t){.id = id,
                                     .ev = "policy.granted",
                                     .wh = wid,
                                     .pol = spol,
                                     .u = uscc,
                                     .job = job});
        }
    }
    return n;
}

/* ---------------------------------------------------------------------------
 * Jobs and pushes
 * ------------------------------------------------------------------------- */

enum { JOB_CREATE, JOB_STEP, JOB_END, PUSH_ENT };

typedef struct job_op {
    fake_op_t base;
    union {
        store_id_cb id;
        store_step_cb step;
    } cb;
    void *arg;
    int kind;
    uint64_t job;
    uint32_t policy, cursor, next;
    int mode;
    uint64_t pver, total;
    char text[24]; /* kind or end state */
    uint32_t *ords;
    char *keys; /* 18-byte codes */
    size_t n;
    char uscc[19];
    uint32_t ord;
    store_push_pol_t *pols;
    char *added, *removed; /* comma lists */
} job_op_t;

static void job_op_free(job_op_t *op) {
    free(op->ords);
    free(op->keys);
    free(op->pols);
    free(op->added);
    free(op->removed);
    free(op);
}

fake_rec_t *fake__job_find(store_t *s, uint64_t id) {
    char sid[24];
    snprintf(sid, sizeof sid, "%llu", (unsigned long long)id);
    return fake__tab_find(&s->jobs, sid);
}

uint64_t fake__job_new(store_t *s, uint32_t policy, const char *kind, int mode, uint64_t pver,
                       uint64_t total) {
    uint64_t id = ++s->job_seq;
    char sid[24];
    snprintf(sid, sizeof sid, "%llu", (unsigned long long)id);
    fake_rec_t *r = fake__tab_get(&s->jobs, sid);
    int64_t now = fake__now_ms();
    fake__rec_setf(r, "policy", "%u", policy);
    fake__rec_set(r, "kind", kind, strlen(kind));
    fake__rec_set(r, "mode", mode == STORE_MODE_AUTO ? "auto" : "apply",
                  mode == STORE_MODE_AUTO ? 4 : 5);
    fake__rec_setf(r, "pver", "%llu", (unsigned long long)pver);
    fake__rec_setf(r, "audience", "%llu", (unsigned long long)total);
    fake__rec_set(r, "state", "running", 7);
    static const char *const zero[] = {"cursor",    "matched", "skipped", "queued",
                                       "delivered", "failed",  "expired", "scanned"};
    for (size_t i = 0; i < sizeof zero / sizeof zero[0]; i++) {
        fake__rec_set(r, zero[i], "0", 1);
    }
    fake__rec_setf(r, "created", "%lld", (long long)now);
    fake__rec_setf(r, "updated", "%lld", (long long)now);
    return id;
}

static uint64_t job_create(store_t *s, job_op_t *op) {
    if (s->jobs.n >= FAKE_MAX_JOBS) {
        fake__drop_all(s, 0);
    }
    return fake__job_new(s, op->policy, op->text, op->mode, op->pver, op->total);
}

/* package.batch notices of one job step, 'batch' recipients per call. */
static long job_batches(store_t *s, const job_op_t *op, const char *newly, size_t nn) {
    uint32_t ws[FAKE_MAX_WHS];
    size_t nw = subscribers(s, STORE_EVM_BATCH, ws);
    long queued = 0;
    char spol[16], sjob[24], wid[16], id[128];
    snprintf(spol, sizeof spol, "%u", op->policy);
    snprintf(sjob, sizeof sjob, "%llu", (unsigned long long)op->job);
    for (size_t i = 0; i < nw; i++) {
        const store_webhook_t *w = store__mem_webhook(s->mem, ws[i]);
        size_t size = w->batch ? w->batch : 500;
        snprintf(wid, sizeof wid, "%u", ws[i]);
        unsigned part = 0;
        for (size_t at = 0; at < nn; at += size) {
            size_t end = at + size < nn ? at + size : nn;
            char *u = xmalloc((end - at) * 19 + 1);
            for (size_t k = at; k < end; k++) {
                memcpy(u + (k - at) * 19, newly + k * 18, 18);
                u[(k - at) * 19 + 18] = ',';
            }
            u[(end - at) * 19 - 1] = '\0';
            snprintf(id, sizeof id, "msg_%s_j%s_%u_%u_%s", spol, sjob, op->cursor, ++part, wid);
            dlv_queue(
                s,
                &(dlv_in_t){
                    .id = id, .ev = "package.batch", .wh = wid, .pol = spol, .u = u, .job = sjob});
            free(u);
            queued++;
        }
    }
    return queued;
}

/* JOB_STEP. Returns 0, -EPERM (not running) or -ESTALE (cursor moved). */
static int job_step(store_t *s, job_op_t *op, uint64_t *newly_n, uint64_t *queued_n) {
    fake_rec_t *r = fake__job_find(s, op->job);
    size_t len;
    const char *st = r ? fake__rec_get(r, "state", &len) : NULL;
    if (st == NULL || len != 7 || memcmp(st, "running", 7) != 0) {
        return -EPERM;
    }
    if ((uint64_t)fake__rec_num(r, "cursor") != op->cursor) {
        return -ESTALE;
    }
    size_t mlen;
    const char *mode = fake__rec_get(r, "mode", &mlen);
    int mode_auto = mode && mlen == 4 && memcmp(mode, "auto", 4) == 0;
    uint64_t pver = (uint64_t)fake__rec_num(r, "pver");
    char sjob[24];
    snprintf(sjob, sizeof sjob, "%llu", (unsigned long long)op->job);
    char *newly = xmalloc(op->n * 18 + 1);
    size_t nn = 0;
    long queued = 0;
    for (size_t i = 0; i < op->n; i++) {
        long q = notify(s, op->policy, mode_auto, pver, op->ords[i], op->keys + i * 18, sjob);
        if (q >= 0) {
            memcpy(newly + nn * 18, op->keys + i * 18, 18);
            nn++;
            queued += q;
            fake__rec_push(r, op->keys + i * 18, 18);
        }
    }
    queued += job_batches(s, op, newly, nn);
    free(newly);
    fake__rec_setf(r, "cursor", "%u", op->next);
    fake__rec_setf(r, "updated", "%lld", (long long)fake__now_ms());
    fake__rec_incr(r, "matched", (long long)nn);
    fake__rec_incr(r, "skipped", (long long)(op->n - nn));
    fake__rec_incr(r, "scanned", (long long)op->n);
    fake__rec_incr(r, "queued", queued);
    *newly_n = nn;
    *queued_n = (uint64_t)queued;
    return 0;
}

/* PUSH_ENT. */
static void push_ent(store_t *s, job_op_t *op, uint64_t *newly_n, uint64_t *queued_n) {
    uint32_t ws[FAKE_MAX_WHS];
    char id[160], wid[16], spol[16];
    long queued = 0;
    uint64_t newly = 0;
    for (size_t i = 0; i < op->n; i++) {
        const store_push_pol_t *p = &op->pols[i];
        long q = notify(s, p->id, p->mode == STORE_MODE_AUTO, p->ver, op->ord, op->uscc, "");
        if (q < 0) {
            continue;
        }
        newly++;
        queued += q;
        snprintf(spol, sizeof spol, "%u", p->id);
        size_t nw = subscribers(s, STORE_EVM_BATCH, ws);
        for (size_t k = 0; k < nw; k++, queued++) {
            snprintf(wid, sizeof wid, "%u", ws[k]);
            snprintf(id, sizeof id, "msg_%s_%s_%s_b", spol, op->uscc, wid);
            dlv_queue(s,
                      &(dlv_in_t){
                          .id = id, .ev = "package.batch", .wh = wid, .pol = spol, .u = op->uscc});
        }
    }
    if (op->added[0] || op->removed[0]) {
        size_t nw = subscribers(s, STORE_EVM_PKG_CHANGED, ws);
        long long now = (long long)fake__now_ms();
        for (size_t k = 0; k < nw; k++, queued++) {
            snprintf(wid, sizeof wid, "%u", ws[k]);
            snprintf(id, sizeof id, "msg_pc_%s_%lld_%s", op->uscc, now, wid);
            dlv_queue(s, &(dlv_in_t){.id = id,
                                     .ev = "enterprise.package_changed",
                                     .wh = wid,
                                     .u = op->uscc,
                                     .added = op->added,
                                     .removed = op->removed});
        }
    }
    *newly_n = newly;
    *queued_n = (uint64_t)queued;
}

/* JOB_END: answers 1 when it ended the job, 0 when it was not running. */
static int job_end(store_t *s, job_op_t *op, uint64_t *changed) {
    fake_rec_t *r = fake__job_find(s, op->job);
    if (r == NULL) {
        return -ENOENT;
    }
    size_t len;
    const char *st = fake__rec_get(r, "state", &len);
    *changed = st && len == 7 && memcmp(st, "running", 7) == 0;
    if (*changed) {
        int64_t now = fake__now_ms();
        fake__rec_set(r, "state", op->text, strlen(op->text));
        fake__rec_setf(r, "finished", "%lld", (long long)now);
        fake__rec_setf(r, "updated", "%lld", (long long)now);
    }
    return 0;
}

static void job_run(store_t *s, fake_op_t *o) {
    job_op_t *op = (job_op_t *)o;
    int rc = s->closing ? -EIO : 0;
    uint64_t a = 0, b = 0;
    if (op->kind == JOB_CREATE) {
        a = rc ? 0 : job_create(s, op);
        op->cb.id(op->arg, rc, a);
    } else if (op->kind == JOB_END) {
        rc = rc ? rc : job_end(s, op, &a);
        op->cb.id(op->arg, rc, a);
    } else {
        if (rc == 0 && op->kind == JOB_STEP) {
            rc = job_step(s, op, &a, &b);
        } else if (rc == 0) {
            push_ent(s, op, &a, &b);
        }
        if (op->cb.step) {
            op->cb.step(op->arg, rc, a, b);
        }
    }
    job_op_free(op);
}

static job_op_t *job_op_new(int kind, void *arg) {
    job_op_t *op = xcalloc(1, sizeof *op);
    op->kind = kind;
    op->arg = arg;
    return op;
}

int store_job_create(store_t *s, uint32_t policy, const char *kind, int mode, uint64_t pver,
                     uint64_t total, store_id_cb cb, void *arg) {
    int rc = fake__writable(s);
    if (rc) {
        return rc;
    }
    job_op_t *op = job_op_new(JOB_CREATE, arg);
    op->cb.id = cb;
    op->policy = policy;
    snprintf(op->text, sizeof op->text, "%s", kind);
    op->mode = mode;
    op->pver = pver;
    op->total = total;
    fake__queue(s, &op->base, job_run);
    return 0;
}

int store_job_step(store_t *s, uint64_t job, uint32_t policy, uint32_t cursor, uint32_t next,
                   const uint32_t *ords, const char *keys, size_t n, store_step_cb cb, void *arg) {
    int rc = fake__writable(s);
    if (rc) {
        return rc;
    }
    job_op_t *op = job_op_new(JOB_STEP, arg);
    op->cb.step = cb;
    op->job = job;
    op->policy = policy;
    op->cursor = cursor;
    op->next = next;
    op->ords = xmalloc(n * sizeof *ords + 1);
    memcpy(op->ords, ords, n * sizeof *ords);
    op->keys = xmalloc(n * 18 + 1);
    memcpy(op->keys, keys, n * 18);
    op->n = n;
    fake__queue(s, &op->base, job_run);
    return 0;
}

int store_job_end(store_t *s, uint64_t job, const char *state, store_id_cb cb, void *arg) {
    int rc = fake__writable(s);
    if (rc) {
        return rc;
    }
    job_op_t *op = job_op_new(JOB_END, arg);
    op->cb.id = cb;
    op->job = job;
    snprintf(op->text, sizeof op->text, "%s", state);
    fake__queue(s, &op->base, job_run);
    return 0;
}

/* "1,2,3" from a list of ids. */
static char *id_list(const uint32_t *ids, size_t n) {
    char *out = xmalloc(n * 11 + 1);
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        o += (size_t)snprintf(out + o, 12, "%s%u", i ? "," : "", ids[i]);
    }
    return out;
}

int store_push_enterprise(store_t *s, const char *uscc, uint32_t ord,
                          const store_push_pol_t *policies, size_t n, const uint32_t *added,
                          size_t nadded, const uint32_t *removed, size_t nremoved, store_step_cb cb,
                          void *arg) {
    int rc = fake__writable(s);
    if (rc) {
        return rc;
    }
    job_op_t *op = job_op_new(PUSH_ENT, arg);
    op->cb.step = cb;
    memcpy(op->uscc, uscc, 18);
    op->ord = ord;
    op->pols = xmalloc(n * sizeof *policies + 1);
    memcpy(op->pols, policies, n * sizeof *policies);
    op->n = n;
    op->added = id_list(added, nadded);
    op->removed = id_list(removed, nremoved);
    fake__queue(s, &op->base, job_run);
    return 0;
}

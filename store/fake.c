/* The in-memory fake store of the fuzz build: store.h without Redis. Its records
 * follow what the Lua scripts in scripts.c do (create-if-absent, versions, status
 * transitions, ordinal reuse), its index is the real mirror (mirror.c), and every
 * callback runs from a uv_idle pass after the call returned, in call order, as
 * replies on the one Redis connection would. This file: the completion queue,
 * lifecycle, enterprises and policies; record tables, keys and settings are in
 * fake_rec.c, webhooks, jobs and notices in fake_push.c, the reads of jobs and
 * deliveries in fake_read.c. Never linked into huiqid. */
#include "store/fake.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "store/fake_internal.h"
#include "tags/date.h"

/* ---------------------------------------------------------------------------
 * Completion queue and lifecycle
 * ------------------------------------------------------------------------- */

int64_t fake__now_ms(void) {
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

int fake__writable(const store_t *s) {
    if (s->closing) {
        return -ENOTCONN;
    }
    return s->ready ? 0 : -EAGAIN;
}

int fake__readable(const store_t *s) {
    return s->closing ? -ENOTCONN : 0;
}

static void fake_free_data(store_t *s);

static void fake_on_closed(uv_handle_t *h) {
    store_t *s = h->data;
    void (*done)(void *) = s->close_done;
    void *arg = s->close_arg;
    fake_free_data(s);
    store__mem_free(s->mem);
    free(s->ents);
    free(s->ord_free);
    free(s->sent);
    free(s);
    if (done) {
        done(arg);
    }
}

static void fake_on_idle(uv_idle_t *h) {
    store_t *s = h->data;
    /* Only what was queued before this pass runs now: completions queued by these
     * callbacks wait for the next pass, like replies to commands sent later. */
    fake_op_t *op = s->head;
    s->head = s->tail = NULL;
    while (op) {
        fake_op_t *next = op->next;
        s->nqueued--;
        op->run(s, op);
        op = next;
    }
    if (s->head == NULL) {
        if (s->closing) {
            uv_close((uv_handle_t *)&s->idle, fake_on_closed);
        } else {
            uv_idle_stop(&s->idle);
        }
    }
}

void fake__queue(store_t *s, fake_op_t *op, fake_run_fn run) {
    op->run = run;
    op->next = NULL;
    if (s->tail) {
        s->tail->next = op;
    } else {
        s->head = op;
    }
    s->tail = op;
    s->nqueued++;
    s->ops++;
    uv_idle_start(&s->idle, fake_on_idle);
}

size_t store_fake_pending(const store_t *s) {
    return s->nqueued;
}

typedef struct ev_op {
    fake_op_t base;
    int event;
    const char *detail; /* a string literal */
} ev_op_t;

static void ev_run(store_t *s, fake_op_t *o) {
    ev_op_t *op = (ev_op_t *)o;
    if (!s->closing) {
        if (op->event == STORE_EV_READY) {
            s->ready = 1;
            s->loaded = 1;
        }
        if (s->cb) {
            s->cb(s->arg, op->event, op->detail);
        }
    }
    free(op);
}

static void fake_emit(store_t *s, int event, const char *detail) {
    ev_op_t *op = xcalloc(1, sizeof *op);
    op->event = event;
    op->detail = detail;
    fake__queue(s, &op->base, ev_run);
}

store_t *store_new(uv_loop_t *loop, const store_opts_t *opts, const taxonomy_t *tax,
                   store_event_cb cb, void *arg) {
    if ((opts->redis_host == NULL) == (opts->redis_unix == NULL)) {
        return NULL;
    }
    store_t *s = xcalloc(1, sizeof *s);
    s->loop = loop;
    s->tax = tax;
    s->cb = cb;
    s->arg = arg;
    s->mem = store__mem_new(tax);
    uv_idle_init(loop, &s->idle);
    s->idle.data = s;
    /* Like the real store, ready only once "loading" is over, from the loop. */
    fake_emit(s, STORE_EV_READY, "in-memory fake store (fuzz build)");
    return s;
}

void store_close(store_t *s, void (*done)(void *), void *arg) {
    s->closing = 1;
    s->ready = 0;
    s->close_done = done;
    s->close_arg = arg;
    /* What is pending fails with -EIO in the next pass, which then closes the
     * idle handle and frees the store. */
    uv_idle_start(&s->idle, fake_on_idle);
}

static void fake_ent_free(fake_ent_t *e) {
    if (e) {
        free(e->doc);
        free(e->webhook);
        free(e);
    }
}

static void fake_free_data(store_t *s) {
    for (size_t i = 0; i < s->nents; i++) {
        fake_ent_free(s->ents[i]);
    }
    s->nents = 0;
    s->nfree = 0;
    s->ord_next = 0;
    fake__tab_clear(&s->keys);
    fake__tab_clear(&s->jobs);
    fake__tab_clear(&s->dlvs);
    fake__tab_clear(&s->grants);
    fake__tab_clear(&s->cfg);
    fake__push_clear(s);
}

void fake__drop_all(store_t *s, int reset_ids) {
    fake_free_data(s);
    store__mem_free(s->mem);
    s->mem = store__mem_new(s->tax);
    if (reset_ids) {
        s->pol_seq = s->wh_seq = 0;
        s->job_seq = 0;
    }
    s->ready = 0;
    fake_emit(s, STORE_EV_LOADING, "in-memory fake store dropped its data");
    fake_emit(s, STORE_EV_READY, "in-memory fake store (fuzz build)");
}

void store_fake_reset(store_t *s) {
    if (!s->closing) {
        fake__drop_all(s, 1);
    }
}

void store_set_ent_hook(store_t *s, store_ent_hook_fn fn, void *arg) {
    s->ent_hook = fn;
    s->ent_hook_arg = arg;
}

bool store_ready(const store_t *s) {
    return s->ready && !s->closing;
}

bool store_loaded(const store_t *s) {
    return s->loaded;
}

bool store_redis_up(const store_t *s) {
    return !s->closing;
}

void store_get_stats(const store_t *s, store_stats_t *out) {
    memset(out, 0, sizeof *out);
    out->redis_connects = 1;
    out->redis_commands = s->ops;
    out->redis_inflight = (unsigned)s->nqueued;
}

/* ---------------------------------------------------------------------------
 * Enterprises
 * ------------------------------------------------------------------------- */

static size_t ent_pos(const store_t *s, const char *uscc, int *found) {
    size_t lo = 0;
    size_t hi = s->nents;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(s->ents[mid]->uscc, uscc, 18);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = 0;
    return lo;
}

fake_ent_t *fake__ent_find(const store_t *s, const char *uscc) {
    int found;
    size_t i = ent_pos(s, uscc, &found);
    return found ? s->ents[i] : NULL;
}

/* A new record for 'uscc' at a fresh ordinal (freed ones first, oldest first). */
static fake_ent_t *ent_create(store_t *s, const char *uscc) {
    if (s->nents >= FAKE_MAX_ENTS) {
        fake__drop_all(s, 0);
    }
    int found;
    size_t i = ent_pos(s, uscc, &found);
    if (s->nents == s->capents) {
        s->capents = s->capents ? s->capents * 2 : 64;
        s->ents = xreallocarray(s->ents, s->capents, sizeof *s->ents);
    }
    memmove(s->ents + i + 1, s->ents + i, (s->nents - i) * sizeof *s->ents);
    fake_ent_t *e = xcalloc(1, sizeof *e);
    memcpy(e->uscc, uscc, 18);
    if (s->nfree) {
        e->ord = s->ord_free[0];
        memmove(s->ord_free, s->ord_free + 1, (s->nfree - 1) * sizeof *s->ord_free);
        s->nfree--;
    } else {
        e->ord = s->ord_next++;
    }
    s->ents[i] = e;
    s->nents++;
    return e;
}

static void ent_remove(store_t *s, const char *uscc) {
    int found;
    size_t i = ent_pos(s, uscc, &found);
    if (!found) {
        return;
    }
    fake_ent_t *e = s->ents[i];
    if (s->nfree == s->capfree) {
        s->capfree = s->capfree ? s->capfree * 2 : 64;
        s->ord_free = xreallocarray(s->ord_free, s->capfree, sizeof *s->ord_free);
    }
    s->ord_free[s->nfree++] = e->ord;
    fake__sent_clear_ord(s, e->ord);
    fake_ent_free(e);
    memmove(s->ents + i, s->ents + i + 1, (s->nents - i - 1) * sizeof *s->ents);
    s->nents--;
}

typedef struct ent_op {
    fake_op_t base;
    store_ent_cb cb;
    void *arg;
    int del;
    char uscc[18];
    char *doc;
    size_t doc_len;
    int mode;
    int64_t expect_ver;
    int32_t retag_on;
    char *webhook;
    uint64_t row[MATCHER_MAX_TAGS / 64];
    uint16_t interests[STORE_MAX_INTERESTS];
    unsigned nint;
} ent_op_t;

static void ent_op_free(ent_op_t *op) {
    free(op->doc);
    free(op->webhook);
    free(op);
}

/* Applies a written (or deleted) enterprise to the index, with the change hook. */
static void ent_mirror(store_t *s, const char *uscc, uint32_t ord, const fake_ent_t *e) {
    const uint64_t *cur = matcher_row(s->mem->m, ord);
    uint64_t old[MATCHER_MAX_TAGS / 64];
    if (cur) {
        memcpy(old, cur, matcher_row_words(s->mem->m) * sizeof *old);
    }
    store__mem_ent_apply(s->mem, uscc, ord, e ? e->row : NULL, e ? e->interests : NULL,
                         e ? e->nint : 0);
    if (s->ent_hook) {
        s->ent_hook(s->ent_hook_arg, uscc, ord, cur ? old : NULL, e ? e->row : NULL);
    }
}

/* ENT_PUT: returns 0 with 'out' filled, or the script's refusal. */
static int ent_put_apply(store_t *s, ent_op_t *op, store_ent_out_t *out) {
    size_t words = matcher_row_words(s->mem->m);
    fake_ent_t *e = fake__ent_find(s, op->uscc);
    int64_t now = fake__now_ms();
    if (e) {
        if (op->mode == STORE_CREATE) {
            return -EEXIST;
        }
        if (op->expect_ver >= 0 && (uint64_t)op->expect_ver != e->ver) {
            return -ESTALE;
        }
        /* The same document and record again change nothing, not even the
         * version (and, as in the script, not the re-tag day or webhook). */
        if (e->doc_len == op->doc_len && memcmp(e->doc, op->doc, op->doc_len) == 0 &&
            memcmp(e->row, op->row, words * sizeof *op->row) == 0 && e->nint == op->nint &&
            memcmp(e->interests, op->interests, op->nint * sizeof *op->interests) == 0) {
            *out = (store_ent_out_t){.ord = e->ord,
                                     .ver = e->ver,
                                     .created_ms = e->created_ms,
                                     .updated_ms = e->updated_ms};
            return 0;
        }
        e->ver++;
        out->created = 0;
    } else {
        if (op->mode == STORE_UPDATE) {
            return -ENOENT;
        }
        e = ent_create(s, op->uscc);
        e->ver = 1;
        e->created_ms = now;
        out->created = 1;
    }
    free(e->doc);
    e->doc = op->doc;
    e->doc_len = op->doc_len;
    op->doc = NULL;
    free(e->webhook);
    e->webhook = op->webhook;
    op->webhook = NULL;
    e->updated_ms = now;
    e->retag_on = op->retag_on;
    memcpy(e->row, op->row, sizeof e->row);
    memcpy(e->interests, op->interests, sizeof e->interests);
    e->nint = op->nint;
    out->ord = e->ord;
    out->ver = e->ver;
    out->changed = 1;
    out->created_ms = e->created_ms;
    out->updated_ms = now;
    ent_mirror(s, e->uscc, e->ord, e);
    return 0;
}

static void ent_run(store_t *s, fake_op_t *o) {
    ent_op_t *op = (ent_op_t *)o;
    store_ent_out_t out = {0};
    int rc = -EIO;
    if (s->closing) {
        rc = -EIO;
    } else if (op->del) {
        fake_ent_t *e = fake__ent_find(s, op->uscc);
        rc = e ? 0 : -ENOENT;
        if (e) {
            out.ord = e->ord;
            out.changed = 1;
            char uscc[18];
            memcpy(uscc, e->uscc, 18);
            ent_remove(s, uscc);
            ent_mirror(s, uscc, out.ord, NULL);
        }
    } else {
        rc = ent_put_apply(s, op, &out);
    }
    op->cb(op->arg, rc, rc == 0 ? &out : NULL);
    ent_op_free(op);
}

int store_ent_put(store_t *s, const store_ent_in_t *in, store_ent_cb cb, void *arg) {
    int rc = fake__writable(s);
    if (rc) {
        return rc;
    }
    if (in->ninterests > STORE_MAX_INTERESTS) {
        return -E2BIG;
    }
    ent_op_t *op = xcalloc(1, sizeof *op);
    op->cb = cb;
    op->arg = arg;
    memcpy(op->uscc, in->uscc, 18);
    op->doc = xmemdup(in->doc, in->doc_len);
    op->doc_len = in->doc_len;
    op->mode = in->mode;
    op->expect_ver = in->expect_ver;
    op->retag_on = in->retag_on;
    op->webhook = in->webhook && in->webhook[0] ? xstrdup(in->webhook) : NULL;
    memcpy(op->row, in->row, matcher_row_words(s->mem->m) * sizeof *in->row);
    memcpy(op->interests, in->interests, in->ninterests * sizeof *in->interests);
    op->nint = in->ninterests;
    fake__queue(s, &op->base, ent_run);
    return 0;
}

int store_ent_del(store_t *s, const char *uscc, store_ent_cb cb, void *arg) {
    int rc = fake__writable(s);
    if (rc) {
        return rc;
    }
    ent_op_t *op = xcalloc(1, sizeof *op);
    op->cb = cb;
    op->arg = arg;
    op->del = 1;
    memcpy(op->uscc, uscc, 18);
    fake__queue(s, &op->base, ent_run);
    return 0;
}

typedef struct get_op {
    fake_op_t base;
    store_doc_cb cb;
    void *arg;
    char uscc[18];
} get_op_t;

static void get_run(store_t *s, fake_op_t *o) {
    get_op_t *op = (get_op_t *)o;
    const fake_ent_t *e = s->closing ? NULL : fake__ent_find(s, op->uscc);
    if (e) {
        store_doc_t d = {.doc = e->doc,
                         .len = e->doc_len,
                         .ver = e->ver,
                         .created_ms = e->created_ms,
                         .updated_ms = e->updated_ms};
        op->cb(op->arg, 0, &d);
    } else {
        op->cb(op->arg, s->closing ? -EIO : -ENOENT, NULL);
    }
    free(op);
}

int store_ent_get(store_t *s, const char *uscc, store_doc_cb cb, void *arg) {
    int rc = fake__readable(s);
    if (rc) {
        return rc;
    }
    get_op_t *op = xcalloc(1, sizeof *op);
    op->cb = cb;
    op->arg = arg;
    memcpy(op->uscc, uscc, 18);
    fake__queue(s, &op->base, get_run);
    return 0;
}

typedef struct cards_op {
    fake_op_t base;
    store_hash_cb cb;
    void *arg;
    size_t n;
    char *usccs; /* n codes of 18 bytes */
} cards_op_t;

/* The fake keeps no cards: every record answers with its document ("d"). */
static void cards_run(store_t *s, fake_op_t *o) {
    cards_op_t *op = (cards_op_t *)o;
    if (s->closing) {
        op->cb(op->arg, -EIO, NULL, 0);
    } else {
        store_kv_t *kv = xcalloc(op->n + 1, sizeof *kv);
        for (size_t i = 0; i < op->n; i++) {
            const fake_ent_t *e = fake__ent_find(s, op->usccs + i * 18);
            kv[i].k = e ? "d" : "";
            kv[i].klen = e ? 1 : 0;
            kv[i].v = e ? e->doc : "";
            kv[i].vlen = e ? e->doc_len : 0;
        }
        op->cb(op->arg, 0, kv, op->n);
        free(kv);
    }
    free(op->usccs);
    free(op);
}

int store_ent_cards(store_t *s, const char *const *usccs, size_t n, store_hash_cb cb, void *arg) {
    int rc = fake__readable(s);
    if (rc) {
        return rc;
    }
    if (n == 0 || n > 100000) {
        return -EINVAL;
    }
    cards_op_t *op = xcalloc(1, sizeof *op);
    op->cb = cb;
    op->arg = arg;
    op->n = n;
    op->usccs = xmalloc(n * 18);
    for (size_t i = 0; i < n; i++) {
        memcpy(op->usccs + i * 18, usccs[i], 18);
    }
    fake__queue(s, &op->base, cards_run);
    return 0;
}

typedef struct due_op {
    fake_op_t base;
    store_due_cb cb;
    void *arg;
    int32_t today;
    unsigned skip, max;
} due_op_t;

/* ZRANGEBYSCORE order: by day, then by code. */
static int due_cmp(const void *a, const void *b) {
    const fake_ent_t *x = *(const fake_ent_t *const *)a;
    const fake_ent_t *y = *(const fake_ent_t *const *)b;
    if (x->retag_on != y->retag_on) {
        return x->retag_on < y->retag_on ? -1 : 1;
    }
    return memcmp(x->uscc, y->uscc, 18);
}

static void due_run(store_t *s, fake_op_t *o) {
    due_op_t *op = (due_op_t *)o;
    if (s->closing) {
        op->cb(op->arg, -EIO, NULL, 0);
        free(op);
        return;
    }
    const fake_ent_t **due = xcalloc(s->nents + 1, sizeof *due);
    size_t n = 0;
    for (size_t i = 0; i < s->nents; i++) {
        if (s->ents[i]->retag_on != DATE_NONE && s->ents[i]->retag_on <= op->today) {
            due[n++] = s->ents[i];
        }
    }
    qsort(due, n, sizeof *due, due_cmp);
    size_t from = op->skip < n ? op->skip : n;
    n -= from;
    if (n > op->max) {
        n = op->max;
    }
    char *codes = xmalloc(n * 18 + 1);
    for (size_t i = 0; i < n; i++) {
        memcpy(codes + i * 18, due[from + i]->uscc, 18);
    }
    op->cb(op->arg, 0, codes, n);
    free(codes);
    free(due);
    free(op);
}

int store_retag_due(store_t *s, int32_t today, unsigned skip, unsigned max, store_due_cb cb,
                    void *arg) {
    int rc = fake__writable(s);
    if (rc) {
        return rc;
    }
    due_op_t *op = xcalloc(1, sizeof *op);
    op->cb = cb;
    op->arg = arg;
    op->today = today;
    op->skip = skip;
    op->max = max;
    fake__queue(s, &op->base, due_run);
    return 0;
}

const matcher_t *store_matcher(const store_t *s) {
    return s->mem->m;
}

uint32_t store_relayout(store_t *s, uint32_t min) {
    return store__mem_relayout(s->mem, min);
}

unsigned store_ent_interests(const store_t *s, uint32_t ord, const uint16_t **bits) {
    return store__mem_interests(s->mem, ord, bits);
}

/* ---------------------------------------------------------------------------
 * Policies
 * ------------------------------------------------------------------------- */

enum { POL_CREATE, POL_UPDATE, POL_DELETE, POL_STATUS };

typedef struct pol_op {
    fake_op_t base;
    store_pol_cb cb;
    void *arg;
    int kind;
    uint32_t id;
    int action;
    int64_t expect_ver;
    store_policy_t *p;   /* the new record (create, update) */
    store_pub_cb pub_cb; /* store_pol_publish: 'cb' is unused */
    char job_kind[16];   /* a publish that creates its push job, or "" */
    uint64_t audience;
    uint64_t job; /* the job it created */
} pol_op_t;

static store_policy_t *pol_from_in(const store_pol_in_t *in) {
    store_policy_t *p = xcalloc(1, sizeof *p);
    p->doc = xstrndup(in->doc, in->doc_len);
    p->doc_len = in->doc_len;
    p->rule = *in->rule;
    p->opens = in->opens;
    p->closes = in->closes;
    p->mode = in->mode;
    p->nptags = in->nptags;
    memcpy(p->ptags, in->ptags, in->nptags * sizeof *in->ptags);
    return p;
}

/* The scripts POL_CREATE, POL_UPDATE, POL_DEL and POL_STATUS. Returns 0 with the
 * record now in the mirror in '*res' (NULL after a delete), or the refusal. */
static int pol_apply(store_t *s, pol_op_t *op, const store_policy_t **res) {
    int64_t now = fake__now_ms();
    if (op->kind == POL_CREATE) {
        if (s->mem->npols >= FAKE_MAX_POLS) {
            fake__drop_all(s, 0);
        }
        store_policy_t *p = op->p;
        op->p = NULL;
        p->id = ++s->pol_seq;
        p->ver = 1;
        p->status = STORE_POL_DRAFT;
        p->created_ms = p->updated_ms = now;
        store__mem_pol_apply(s->mem, p->id, p);
        *res = p;
        return 0;
    }
    const store_policy_t *cur = store__mem_policy(s->mem, op->id);
    if (cur == NULL) {
        return -ENOENT;
    }
    store_policy_t *p;
    if (op->kind == POL_DELETE) {
        fake__sent_drop_policy(s, op->id);
        store__mem_pol_apply(s->mem, op->id, NULL);
        return 0;
    }
    if (op->kind == POL_UPDATE) {
        if (op->expect_ver >= 0 && (uint64_t)op->expect_ver != cur->ver) {
            return -ESTALE;
        }
        p = op->p;
        op->p = NULL;
        p->status = cur->status;
        p->published_ms = cur->published_ms;
    } else {
        int to = op->action == STORE_PUBLISH ? STORE_POL_PUBLISHED : STORE_POL_WITHDRAWN;
        if (cur->status == to) {
            *res = cur; /* already done: unchanged */
            return 0;
        }
        if (to == STORE_POL_WITHDRAWN && cur->status != STORE_POL_PUBLISHED) {
            return -EPERM;
        }
        p = xmemdup(cur, sizeof *cur);
        p->doc = xstrndup(cur->doc, cur->doc_len);
        p->status = to;
        if (to == STORE_POL_PUBLISHED) {
            p->published_ms = now;
        }
        /* As the POL_STATUS script: the job in the same step as the publish. */
        if (to == STORE_POL_PUBLISHED && op->job_kind[0]) {
            op->job = fake__job_new(s, op->id, op->job_kind, cur->mode, cur->ver + 1, op->audience);
        }
    }
    p->id = op->id;
    p->ver = cur->ver + 1;
    p->created_ms = cur->created_ms;
    p->updated_ms = now;
    store__mem_pol_apply(s->mem, p->id, p);
    *res = p;
    return 0;
}

static void pol_run(store_t *s, fake_op_t *o) {
    pol_op_t *op = (pol_op_t *)o;
    const store_policy_t *res = NULL;
    /* The job table's bound is kept before a publish that may add a job, since
     * dropping everything afterwards would take the published policy with it. */
    if (!s->closing && op->job_kind[0] && s->jobs.n >= FAKE_MAX_JOBS) {
        fake__drop_all(s, 0);
    }
    int rc = s->closing ? -EIO : pol_apply(s, op, &res);
    if (op->pub_cb) {
        op->pub_cb(op->arg, rc, rc == 0 ? res : NULL, rc == 0 ? op->job : 0);
    } else {
        op->cb(op->arg, rc, rc == 0 ? res : NULL);
    }
    store__policy_free(op->p);
    free(op);
}

static pol_op_t *pol_op_new(int kind, uint32_t id, const store_pol_in_t *in, int action,
                            store_pol_cb cb, void *arg) {
    pol_op_t *op = xcalloc(1, sizeof *op);
    op->cb = cb;
    op->arg = arg;
    op->kind = kind;
    op->id = id;
    op->action = action;
    op->expect_ver = in ? in->expect_ver : -1;
    op->p = in ? pol_from_in(in) : NULL;
    return op;
}

static int pol_queue(store_t *s, int kind, uint32_t id, const store_pol_in_t *in, int action,
                     store_pol_cb cb, void *arg) {
    int rc = fake__writable(s);
    if (rc) {
        return rc;
    }
    fake__queue(s, &pol_op_new(kind, id, in, action, cb, arg)->base, pol_run);
    return 0;
}

int store_pol_create(store_t *s, const store_pol_in_t *in, store_pol_cb cb, void *arg) {
    return pol_queue(s, POL_CREATE, 0, in, 0, cb, arg);
}

int store_pol_update(store_t *s, uint32_t id, const store_pol_in_t *in, store_pol_cb cb,
                     void *arg) {
    return pol_queue(s, POL_UPDATE, id, in, 0, cb, arg);
}

int store_pol_delete(store_t *s, uint32_t id, store_pol_cb cb, void *arg) {
    return pol_queue(s, POL_DELETE, id, NULL, 0, cb, arg);
}

int store_pol_set_status(store_t *s, uint32_t id, int action, store_pol_cb cb, void *arg) {
    return pol_queue(s, POL_STATUS, id, NULL, action, cb, arg);
}

int store_pol_publish(store_t *s, uint32_t id, const char *kind, uint64_t audience, store_pub_cb cb,
                      void *arg) {
    int rc = fake__writable(s);
    if (rc) {
        return rc;
    }
    pol_op_t *op = pol_op_new(POL_STATUS, id, NULL, STORE_PUBLISH, NULL, arg);
    op->pub_cb = cb;
    snprintf(op->job_kind, sizeof op->job_kind, "%s", kind ? kind : "");
    op->audience = audience;
    fake__queue(s, &op->base, pol_run);
    return 0;
}

const store_policy_t *store_policy(const store_t *s, uint32_t id) {
    return store__mem_policy(s->mem, id);
}

const store_policy_t *store_policy_next(const store_t *s, uint32_t after) {
    return store__mem_policy_next(s->mem, after);
}

size_t store_policy_count(const store_t *s) {
    return s->mem->npols;
}

const polset_t *store_polset(const store_t *s) {
    return s->mem->ps;
}

uint64_t store_pol_audience(store_t *s, const store_policy_t *p, uint64_t *groups) {
    return store__mem_audience(s->mem, p, groups);
}

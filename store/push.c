/* Webhooks, jobs, the delivery queue and delivery records in Redis; see the
 * push section of store.h. Every step that must not be half-done (a job step, a
 * delivery outcome with its acknowledgement) is one Lua script. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "store/internal.h"

int64_t store__now_ms(void) {
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int push_writable(const store_t *s) {
    return store__usable(s);
}

size_t store__kv_from_reply(const redisReply *r, store_kv_t *kv, size_t max) {
    size_t n = 0;
    for (size_t i = 0; i + 1 < r->elements && n < max; i += 2) {
        const redisReply *k = r->element[i];
        const redisReply *v = r->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
            continue;
        }
        kv[n].k = k->str;
        kv[n].klen = k->len;
        kv[n].v = v->str;
        kv[n].vlen = v->len;
        n++;
    }
    return n;
}

/* ---------------------------------------------------------------------------
 * Webhook records read from Redis
 * ------------------------------------------------------------------------- */

static char *kv_dup(const store_kv_t *kv, size_t n, const char *k) {
    size_t len;
    const char *v = store_kv_get(kv, n, k, &len);
    return v ? xstrndup(v, len) : xstrdup("");
}

static long long kv_ll(const store_kv_t *kv, size_t n, const char *k) {
    size_t len;
    const char *v = store_kv_get(kv, n, k, &len);
    char buf[32];
    if (v == NULL || len >= sizeof buf) {
        return 0;
    }
    memcpy(buf, v, len);
    buf[len] = '\0';
    return strtoll(buf, NULL, 10);
}

store_webhook_t *store__webhook_from_kv(uint32_t id, const store_kv_t *kv, size_t n) {
    if (store_kv_get(kv, n, "url", NULL) == NULL || store_kv_get(kv, n, "ver", NULL) == NULL) {
        return NULL;
    }
    store_webhook_t *w = xcalloc(1, sizeof *w);
    w->id = id;
    w->doc = kv_dup(kv, n, "doc");
    w->doc_len = strlen(w->doc);
    w->url = kv_dup(kv, n, "url");
    w->secrets = kv_dup(kv, n, "secrets");
    w->sk = kv_dup(kv, n, "sk");
    w->reason = kv_dup(kv, n, "reason");
    w->events = (unsigned)kv_ll(kv, n, "events");
    w->ver = (uint64_t)kv_ll(kv, n, "ver");
    w->inflight = (unsigned)kv_ll(kv, n, "inflight");
    w->batch = (unsigned)kv_ll(kv, n, "batch");
    size_t len;
    const char *rate = store_kv_get(kv, n, "rate", &len);
    char buf[32] = "0";
    if (rate && len < sizeof buf) {
        memcpy(buf, rate, len);
        buf[len] = '\0';
    }
    w->rate = strtod(buf, NULL);
    const char *st = store_kv_get(kv, n, "state", &len);
    w->disabled = st && len == 8 && memcmp(st, "disabled", 8) == 0;
    w->created_ms = kv_ll(kv, n, "created");
    w->updated_ms = kv_ll(kv, n, "updated");
    w->failing_since_ms = kv_ll(kv, n, "failing_since");
    return w;
}

const store_webhook_t *store_webhook(const store_t *s, uint32_t id) {
    return store__mem_webhook(s->mem, id);
}

const store_webhook_t *store_webhook_next(const store_t *s, uint32_t after) {
    return store__mem_webhook_next(s->mem, after);
}

/* ---------------------------------------------------------------------------
 * Webhook writes
 * ------------------------------------------------------------------------- */

typedef struct wh_op {
    store_t *s;
    store_wh_cb cb;
    void *arg;
    uint32_t id;
    store_webhook_t *w; /* the record being written (put) */
} wh_op_t;

static int reply_is(const redisReply *r, const char *status) {
    return r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
           r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, status) == 0;
}

static long long reply_ll(const redisReply *r, size_t i) {
    if (r->type != REDIS_REPLY_ARRAY || i >= r->elements) {
        return 0;
    }
    const redisReply *e = r->element[i];
    if (e->type == REDIS_REPLY_INTEGER) {
        return e->integer;
    }
    return e->type == REDIS_REPLY_STRING ? strtoll(e->str, NULL, 10) : 0;
}

static int reply_rc(const redisReply *r) {
    if (r == NULL) {
        return -EIO;
    }
    if (reply_is(r, "ok")) {
        return 0;
    }
    if (reply_is(r, "missing")) {
        return -ENOENT;
    }
    if (reply_is(r, "stale") || reply_is(r, "cursor")) {
        return -ESTALE;
    }
    if (reply_is(r, "state")) {
        return -EPERM;
    }
    return -EPROTO;
}

static void wh_on_reply(void *arg, redisReply *r) {
    wh_op_t *op = arg;
    int rc = reply_rc(r);
    if (r == NULL) {
        op->s->dirty = 1;
    }
    const store_webhook_t *res = NULL;
    if (rc == 0 && op->w) {
        store_webhook_t *w = op->w;
        op->w = NULL;
        w->id = (uint32_t)reply_ll(r, 1);
        w->ver = (uint64_t)reply_ll(r, 2);
        w->created_ms = reply_ll(r, 3);
        w->updated_ms = reply_ll(r, 4);
        const store_webhook_t *old = store_webhook(op->s, w->id);
        w->failing_since_ms = old ? old->failing_since_ms : 0;
        store__mem_wh_apply(op->s->mem, w->id, w);
        res = w;
    } else if (rc == 0) {
        store__mem_wh_apply(op->s->mem, op->id, NULL);
    }
    op->cb(op->arg, rc, res);
    store__webhook_free(op->w);
    free(op);
}

int store_wh_put(store_t *s, uint32_t id, const store_wh_in_t *in, store_wh_cb cb, void *arg) {
    int rc = push_writable(s);
    if (rc) {
        return rc;
    }
    wh_op_t *op = xcalloc(1, sizeof *op);
    op->s = s;
    op->cb = cb;
    op->arg = arg;
    op->id = id;
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
    char sid[16] = "", ver[24] = "", now[24], ev[16], rate[32], infl[16], batch[16];
    if (id) {
        snprintf(sid, sizeof sid, "%u", id);
    }
    if (in->expect_ver >= 0) {
        snprintf(ver, sizeof ver, "%lld", (long long)in->expect_ver);
    }
    snprintf(now, sizeof now, "%lld", (long long)store__now_ms());
    snprintf(ev, sizeof ev, "%u", in->events);
    snprintf(rate, sizeof rate, "%.3f", in->rate);
    snprintf(infl, sizeof infl, "%u", in->inflight);
    snprintf(batch, sizeof batch, "%u", in->batch);
    const char *args[13] = {sid,      ver,  now,        in->doc,
                            in->url,  ev,   w->secrets, w->sk,
                            rate,     infl, batch,      in->disabled ? "disabled" : "active",
                            w->reason};
    size_t lens[13];
    for (int i = 0; i < 13; i++) {
        lens[i] = strlen(args[i]);
    }
    lens[3] = in->doc_len;
    rc = store__eval(s, STORE_SCRIPT_WH_PUT, 13, args, lens, wh_on_reply, op);
    if (rc) {
        store__webhook_free(op->w);
        free(op);
    }
    return rc;
}

int store_wh_del(store_t *s, uint32_t id, store_wh_cb cb, void *arg) {
    int rc = push_writable(s);
    if (rc) {
        return rc;
    }
    wh_op_t *op = xcalloc(1, sizeof *op);
    op->s = s;
    op->cb = cb;
    op->arg = arg;
    op->id = id;
    char sid[16];
    snprintf(sid, sizeof sid, "%u", id);
    const char *args[1] = {sid};
    size_t lens[1] = {strlen(sid)};
    rc = store__eval(s, STORE_SCRIPT_WH_DEL, 1, args, lens, wh_on_reply, op);
    if (rc) {
        free(op);
    }
    return rc;
}

int store_wh_health(store_t *s, uint32_t id, int64_t failing_since_ms, int disable,
                    const char *reason) {
    store_webhook_t *w = (store_webhook_t *)(uintptr_t)store_webhook(s, id);
    if (w == NULL) {
        return -ENOENT;
    }
    w->failing_since_ms = failing_since_ms;
    char key[32], fs[24];
    snprintf(key, sizeof key, "hq:wh:%u", id);
    snprintf(fs, sizeof fs, "%lld", (long long)failing_since_ms);
    if (disable) {
        w->disabled = 1;
        free(w->reason);
        w->reason = xstrdup(reason ? reason : "");
        /* Unsubscribe at once so jobs stop queueing for it. */
        const char *argv[8] = {"HSET",  key,        "failing_since", fs,
                               "state", "disabled", "reason",        w->reason};
        size_t lens[8];
        for (int i = 0; i < 8; i++) {
            lens[i] = strlen(argv[i]);
        }
        int rc = store__link_command(s->link, NULL, NULL, 8, argv, lens);
        static const char *const evs[] = {"policy.matched", "package.batch", "policy.granted",
                                          "enterprise.package_changed"};
        char sid[16];
        snprintf(sid, sizeof sid, "%u", id);
        for (size_t i = 0; i < 4 && rc == 0; i++) {
            char ek[64];
            snprintf(ek, sizeof ek, "hq:whev:%s", evs[i]);
            const char *a2[3] = {"SREM", ek, sid};
            size_t l2[3] = {4, strlen(ek), strlen(sid)};
            rc = store__link_command(s->link, NULL, NULL, 3, a2, l2);
        }
        return rc;
    }
    const char *argv[4] = {"HSET", key, "failing_since", fs};
    size_t lens[4] = {4, strlen(key), 13, strlen(fs)};
    return store__link_command(s->link, NULL, NULL, 4, argv, lens);
}

/* ---------------------------------------------------------------------------
 * Generic callbacks
 * ------------------------------------------------------------------------- */

typedef struct cb_op {
    store_t *s;
    union {
        store_id_cb id;
        store_hash_cb hash;
        store_step_cb step;
    } cb;
    void *arg;
    int kind;
} cb_op_t;

static cb_op_t *cb_op_new(store_t *s, void *arg) {
    cb_op_t *op = xcalloc(1, sizeof *op);
    op->s = s;
    op->arg = arg;
    return op;
}

static void id_on_reply(void *arg, redisReply *r) {
    cb_op_t *op = arg;
    int rc = reply_rc(r);
    uint64_t v = rc == 0 ? (uint64_t)reply_ll(r, 1) : 0;
    if (rc == 0 && r->type == REDIS_REPLY_INTEGER) {
        v = (uint64_t)r->integer;
    }
    op->cb.id(op->arg, rc, v);
    free(op);
}

static void step_on_reply(void *arg, redisReply *r) {
    cb_op_t *op = arg;
    int rc = reply_rc(r);
    if (r == NULL) {
        op->s->dirty = 1;
    }
    op->cb.step(op->arg, rc, rc == 0 ? (uint64_t)reply_ll(r, 1) : 0,
                rc == 0 ? (uint64_t)reply_ll(r, 2) : 0);
    free(op);
}

/* HGETALL-shaped replies (name, value, ...). */
static void hash_on_reply(void *arg, redisReply *r) {
    cb_op_t *op = arg;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        op->cb.hash(op->arg, r == NULL ? -EIO : -EPROTO, NULL, 0);
        free(op);
        return;
    }
    store_kv_t *kv = xcalloc(r->elements / 2 + 1, sizeof *kv);
    size_t n = store__kv_from_reply(r, kv, r->elements / 2 + 1);
    op->cb.hash(op->arg, n ? 0 : -ENOENT, kv, n);
    free(kv);
    free(op);
}

/* Plain lists of strings (kv[i].v). */
static void list_on_reply(void *arg, redisReply *r) {
    cb_op_t *op = arg;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        op->cb.hash(op->arg,
                    r == NULL                    ? -EIO
                    : r->type == REDIS_REPLY_NIL ? -ENOENT
                                                 : -EPROTO,
                    NULL, 0);
        free(op);
        return;
    }
    store_kv_t *kv = xcalloc(r->elements + 1, sizeof *kv);
    size_t n = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type == REDIS_REPLY_STRING) {
            kv[n].k = "";
            kv[n].v = e->str;
            kv[n].vlen = e->len;
            n++;
        }
    }
    op->cb.hash(op->arg, 0, kv, n);
    free(kv);
    free(op);
}

/* 'bulk': the push engine's own traffic, sent on the bulk connection (see
 * store.bulk) so that API commands never queue behind it. */
enum { ON_MAIN, ON_BULK };

static int send_cmd_on(store_t *s, int bulk, cb_op_t *op, store_link_reply_cb fn, int argc,
                       const char **argv) {
    size_t lens[16];
    for (int i = 0; i < argc; i++) {
        lens[i] = strlen(argv[i]);
    }
    int rc = store__link_command(bulk ? store__bulk_link(s) : s->link, fn, op, argc, argv, lens);
    if (rc) {
        free(op);
    }
    return rc;
}

static int send_cmd(store_t *s, cb_op_t *op, store_link_reply_cb fn, int argc, const char **argv) {
    return send_cmd_on(s, ON_MAIN, op, fn, argc, argv);
}

static int send_eval_on(store_t *s, int bulk, cb_op_t *op, store_link_reply_cb fn, int script,
                        int nargs, const char **args, const size_t *lens) {
    int rc = bulk ? store__eval_bulk(s, script, nargs, args, lens, fn, op)
                  : store__eval(s, script, nargs, args, lens, fn, op);
    if (rc) {
        free(op);
    }
    return rc;
}

static int send_eval(store_t *s, cb_op_t *op, store_link_reply_cb fn, int script, int nargs,
                     const char **args, const size_t *lens) {
    return send_eval_on(s, ON_MAIN, op, fn, script, nargs, args, lens);
}

/* ---------------------------------------------------------------------------
 * Jobs
 * ------------------------------------------------------------------------- */

int store_job_create(store_t *s, uint32_t policy, const char *kind, int mode, uint64_t pver,
                     uint64_t total, store_id_cb cb, void *arg) {
    int rc = push_writable(s);
    if (rc) {
        return rc;
    }
    char pol[16], ver[24], tot[24], now[24];
    snprintf(pol, sizeof pol, "%u", policy);
    snprintf(ver, sizeof ver, "%llu", (unsigned long long)pver);
    snprintf(tot, sizeof tot, "%llu", (unsigned long long)total);
    snprintf(now, sizeof now, "%lld", (long long)store__now_ms());
    const char *md = mode == STORE_MODE_AUTO ? "auto" : "apply";
    const char *args[6] = {pol, kind, md, ver, tot, now};
    size_t lens[6];
    for (int i = 0; i < 6; i++) {
        lens[i] = strlen(args[i]);
    }
    cb_op_t *op = cb_op_new(s, arg);
    op->cb.id = cb;
    return send_eval(s, op, id_on_reply, STORE_SCRIPT_JOB_CREATE, 6, args, lens);
}

int store_job_step(store_t *s, uint64_t job, uint32_t policy, uint32_t cursor, uint32_t next,
                   const uint32_t *ords, const char *keys, size_t n, store_step_cb cb, void *arg) {
    int rc = push_writable(s);
    if (rc) {
        return rc;
    }
    size_t nargs = 5 + 2 * n;
    const char **args = xcalloc(nargs, sizeof *args);
    size_t *lens = xcalloc(nargs, sizeof *lens);
    char fixed[5][24];
    snprintf(fixed[0], 24, "%llu", (unsigned long long)job);
    snprintf(fixed[1], 24, "%u", policy);
    snprintf(fixed[2], 24, "%u", cursor);
    snprintf(fixed[3], 24, "%u", next);
    snprintf(fixed[4], 24, "%lld", (long long)store__now_ms());
    for (int i = 0; i < 5; i++) {
        args[i] = fixed[i];
        lens[i] = strlen(fixed[i]);
    }
    char(*ordtxt)[12] = xcalloc(n + 1, sizeof *ordtxt);
    for (size_t i = 0; i < n; i++) {
        snprintf(ordtxt[i], sizeof ordtxt[i], "%u", ords[i]);
        args[5 + 2 * i] = ordtxt[i];
        lens[5 + 2 * i] = strlen(ordtxt[i]);
        args[6 + 2 * i] = keys + 18 * i;
        lens[6 + 2 * i] = 18;
    }
    cb_op_t *op = cb_op_new(s, arg);
    op->cb.step = cb;
    rc = send_eval_on(s, ON_BULK, op, step_on_reply, STORE_SCRIPT_JOB_STEP, (int)nargs, args, lens);
    free(args);
    free(lens);
    free(ordtxt);
    return rc;
}

int store_job_end(store_t *s, uint64_t job, const char *state, store_id_cb cb, void *arg) {
    int rc = push_writable(s);
    if (rc) {
        return rc;
    }
    char jid[24], now[24];
    snprintf(jid, sizeof jid, "%llu", (unsigned long long)job);
    snprintf(now, sizeof now, "%lld", (long long)store__now_ms());
    const char *args[3] = {jid, state, now};
    size_t lens[3] = {strlen(jid), strlen(state), strlen(now)};
    cb_op_t *op = cb_op_new(s, arg);
    op->cb.id = cb;
    return send_eval(s, op, id_on_reply, STORE_SCRIPT_JOB_END, 3, args, lens);
}

int store_job_get(store_t *s, uint64_t job, store_hash_cb cb, void *arg) {
    int usable = store__usable(s);
    if (usable) {
        return usable; /* -EAGAIN while Redis (or our mirror) is still loading */
    }
    char key[48];
    snprintf(key, sizeof key, "hq:job:%llu", (unsigned long long)job);
    const char *argv[2] = {"HGETALL", key};
    cb_op_t *op = cb_op_new(s, arg);
    op->cb.hash = cb;
    return send_cmd(s, op, hash_on_reply, 2, argv);
}

int store_jobs_running(store_t *s, store_hash_cb cb, void *arg) {
    int usable = store__usable(s);
    if (usable) {
        return usable; /* -EAGAIN while Redis (or our mirror) is still loading */
    }
    const char *argv[2] = {"SMEMBERS", "hq:jobs:running"};
    cb_op_t *op = cb_op_new(s, arg);
    op->cb.hash = cb;
    return send_cmd(s, op, list_on_reply, 2, argv);
}

int store_job_matches(store_t *s, uint64_t job, uint64_t start, unsigned count, store_hash_cb cb,
                      void *arg) {
    int usable = store__usable(s);
    if (usable) {
        return usable; /* -EAGAIN while Redis (or our mirror) is still loading */
    }
    char job_key[48], key[48], a[24], b[24];
    snprintf(job_key, sizeof job_key, "hq:job:%llu", (unsigned long long)job);
    snprintf(key, sizeof key, "hq:job:%llu:m", (unsigned long long)job);
    snprintf(a, sizeof a, "%llu", (unsigned long long)start);
    snprintf(b, sizeof b, "%llu", (unsigned long long)(start + count - 1));
    /* A job that matched no one has no list either: only its record tells an
     * empty job from one that does not exist (nil, -ENOENT). */
    const char *script = "if redis.call('EXISTS', KEYS[1]) == 0 then return false end\n"
                         "return redis.call('LRANGE', KEYS[2], ARGV[1], ARGV[2])\n";
    const char *argv[7] = {"EVAL", script, "2", job_key, key, a, b};
    cb_op_t *op = cb_op_new(s, arg);
    op->cb.hash = cb;
    return send_cmd(s, op, list_on_reply, 7, argv);
}

int store_push_enterprise(store_t *s, const char *uscc, uint32_t ord,
                          const store_push_pol_t *policies, size_t n, const uint32_t *added,
                          size_t nadded, const uint32_t *removed, size_t nremoved, store_step_cb cb,
                          void *arg) {
    int rc = push_writable(s);
    if (rc) {
        return rc;
    }
    size_t nargs = 6 + 3 * n;
    const char **args = xcalloc(nargs, sizeof *args);
    size_t *lens = xcalloc(nargs, sizeof *lens);
    char head[4][24];
    memcpy(head[0], uscc, 18);
    head[0][18] = '\0';
    snprintf(head[1], 24, "%u", ord);
    snprintf(head[2], 24, "%lld", (long long)store__now_ms());
    snprintf(head[3], 24, "%zu", n);
    for (int i = 0; i < 4; i++) {
        args[i] = head[i];
    }
    char(*txt)[24] = xcalloc(3 * n + 1, sizeof *txt);
    for (size_t i = 0; i < n; i++) {
        snprintf(txt[3 * i], 24, "%u", policies[i].id);
        snprintf(txt[3 * i + 1], 24, "%s", policies[i].mode == STORE_MODE_AUTO ? "auto" : "apply");
        snprintf(txt[3 * i + 2], 24, "%llu", (unsigned long long)policies[i].ver);
        args[4 + 3 * i] = txt[3 * i];
        args[5 + 3 * i] = txt[3 * i + 1];
        args[6 + 3 * i] = txt[3 * i + 2];
    }
    char *lists[2];
    const uint32_t *src[2] = {added, removed};
    size_t cnt[2] = {nadded, nremoved};
    for (int k = 0; k < 2; k++) {
        lists[k] = xmalloc(cnt[k] * 11 + 1);
        size_t o = 0;
        lists[k][0] = '\0';
        for (size_t i = 0; i < cnt[k]; i++) {
            o += (size_t)snprintf(lists[k] + o, 12, "%s%u", i ? "," : "", src[k][i]);
        }
        args[4 + 3 * n + (size_t)k] = lists[k];
    }
    for (size_t i = 0; i < nargs; i++) {
        lens[i] = strlen(args[i]);
    }
    cb_op_t *op = cb_op_new(s, arg);
    op->cb.step = cb;
    rc = send_eval_on(s, ON_BULK, op, step_on_reply, STORE_SCRIPT_PUSH_ENT, (int)nargs, args, lens);
    free(args);
    free(lens);
    free(txt);
    free(lists[0]);
    free(lists[1]);
    return rc;
}

/* ---------------------------------------------------------------------------
 * Queue
 * ------------------------------------------------------------------------- */

/* XREADGROUP reply: [[stream, [[id, [f, v, ...]], ...]]] flattened into kv with a
 * separator entry (k == NULL) after each entry. */
static void q_on_reply(void *arg, redisReply *r) {
    cb_op_t *op = arg;
    if (r == NULL) {
        op->cb.hash(op->arg, -EIO, NULL, 0);
        free(op);
        return;
    }
    if (r->type == REDIS_REPLY_NIL) {
        op->cb.hash(op->arg, 0, NULL, 0);
        free(op);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        int missing = strncmp(r->str, "NOGROUP", 7) == 0;
        if (missing) {
            /* Someone deleted the stream (FLUSHALL): make the group again. */
            store__q_ensure_group(op->s);
        }
        op->cb.hash(op->arg, missing ? -ENOENT : -EPROTO, NULL, 0);
        free(op);
        return;
    }
    size_t cap = 0;
    const redisReply *entries = NULL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2) {
        entries = r->element[0]->element[1];
    }
    if (entries == NULL || entries->type != REDIS_REPLY_ARRAY) {
        op->cb.hash(op->arg, 0, NULL, 0);
        free(op);
        return;
    }
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
            e->element[1]->type == REDIS_REPLY_ARRAY) {
            cap += 2 + e->element[1]->elements / 2;
        } else {
            cap += 2;
        }
    }
    store_kv_t *kv = xcalloc(cap + 1, sizeof *kv);
    size_t n = 0;
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING) {
            continue;
        }
        kv[n].k = "sid";
        kv[n].klen = 3;
        kv[n].v = e->element[0]->str;
        kv[n].vlen = e->element[0]->len;
        n++;
        /* A pending entry deleted meanwhile comes back with a nil body. */
        if (e->element[1]->type == REDIS_REPLY_ARRAY) {
            n += store__kv_from_reply(e->element[1], kv + n, cap - n);
        }
        kv[n].k = NULL;
        n++;
    }
    op->cb.hash(op->arg, 0, kv, n);
    free(kv);
    free(op);
}

int store_q_read(store_t *s, unsigned count, int pending, store_hash_cb cb, void *arg) {
    int rc = push_writable(s);
    if (rc) {
        return rc;
    }
    char cnt[16];
    snprintf(cnt, sizeof cnt, "%u", count);
    const char *argv[9] = {"XREADGROUP", "GROUP",   "push", "huiqid",           "COUNT",
                           cnt,          "STREAMS", "hq:q", pending ? "0" : ">"};
    cb_op_t *op = cb_op_new(s, arg);
    op->cb.hash = cb;
    return send_cmd_on(s, ON_BULK, op, q_on_reply, 9, argv);
}

static void group_on_reply(void *arg, redisReply *r) {
    (void)arg;
    (void)r; /* BUSYGROUP: it exists, which is what we wanted */
}

int store__q_ensure_group(store_t *s) {
    const char *argv[6] = {"XGROUP", "CREATE", "hq:q", "push", "0", "MKSTREAM"};
    size_t lens[6];
    for (int i = 0; i < 6; i++) {
        lens[i] = strlen(argv[i]);
    }
    return store__link_command(s->link, group_on_reply, NULL, 6, argv, lens);
}

int store_q_move_due(store_t *s, int64_t now_ms, unsigned max, store_id_cb cb, void *arg) {
    int rc = push_writable(s);
    if (rc) {
        return rc;
    }
    char now[24], mx[16];
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    snprintf(mx, sizeof mx, "%u", max);
    const char *args[2] = {now, mx};
    size_t lens[2] = {strlen(now), strlen(mx)};
    cb_op_t *op = cb_op_new(s, arg);
    op->cb.id = cb;
    return send_eval_on(s, ON_BULK, op, id_on_reply, STORE_SCRIPT_Q_MOVE, 2, args, lens);
}

int store_q_recall(store_t *s, const char *const *ids, const int64_t *due_ms, unsigned n,
                   store_id_cb cb, void *arg) {
    int rc = push_writable(s);
    if (rc) {
        return rc;
    }
    const char **args = xcalloc(2 * (size_t)n + 1, sizeof *args);
    size_t *lens = xcalloc(2 * (size_t)n + 1, sizeof *lens);
    char(*due)[24] = xcalloc((size_t)n + 1, sizeof *due);
    for (unsigned i = 0; i < n; i++) {
        snprintf(due[i], sizeof due[i], "%lld", (long long)due_ms[i]);
        args[2 * i] = ids[i];
        lens[2 * i] = strlen(ids[i]);
        args[2 * i + 1] = due[i];
        lens[2 * i + 1] = strlen(due[i]);
    }
    cb_op_t *op = cb_op_new(s, arg);
    op->cb.id = cb;
    /* The command is formatted before this returns: the arguments may go. */
    rc = send_eval_on(s, ON_BULK, op, id_on_reply, STORE_SCRIPT_Q_RECALL, (int)(2 * n), args, lens);
    free(due);
    free(lens);
    free(args);
    return rc;
}

int store_dlv_record(store_t *s, const store_dlv_rec_t *d, store_id_cb cb, void *arg) {
    int usable = store__usable(s);
    if (usable) {
        return usable; /* -EAGAIN while Redis (or our mirror) is still loading */
    }
    size_t nargs = 13 + d->nfields;
    const char **args = xcalloc(nargs, sizeof *args);
    size_t *lens = xcalloc(nargs, sizeof *lens);
    char now[24], next[24], att[16], st[16], nf[16];
    snprintf(now, sizeof now, "%lld", (long long)d->now_ms);
    snprintf(next, sizeof next, "%lld", (long long)d->next_due_ms);
    snprintf(att, sizeof att, "%u", d->attempts);
    snprintf(st, sizeof st, "%ld", d->status);
    snprintf(nf, sizeof nf, "%u", d->nfields / 2);
    const char *fixed[13] = {d->id,
                             d->sid ? d->sid : "",
                             d->outcome,
                             now,
                             next,
                             att,
                             st,
                             d->error ? d->error : "",
                             d->attempt,
                             d->job ? d->job : "",
                             d->wh ? d->wh : "",
                             d->body ? d->body : "",
                             nf};
    for (int i = 0; i < 13; i++) {
        args[i] = fixed[i];
        /* The body is bytes with a length, not a C string. */
        lens[i] = i == 11 && d->body ? d->body_len : strlen(fixed[i]);
    }
    for (unsigned i = 0; i < d->nfields; i++) {
        args[13 + i] = d->fields[i];
        lens[13 + i] = strlen(d->fields[i]);
    }
    cb_op_t *op = cb_op_new(s, arg);
    op->cb.id = cb;
    int rc = store__eval_bulk(s, STORE_SCRIPT_DLV_RECORD, (int)nargs, args, lens, id_on_reply, op);
    if (rc) {
        free(op);
    }
    free(args);
    free(lens);
    return rc;
}

int store_dlv_get(store_t *s, const char *id, store_hash_cb cb, void *arg) {
    int usable = store__usable(s);
    if (usable) {
        return usable; /* -EAGAIN while Redis (or our mirror) is still loading */
    }
    char key[160];
    snprintf(key, sizeof key, "hq:dlv:%.140s", id);
    const char *argv[2] = {"HGETALL", key};
    cb_op_t *op = cb_op_new(s, arg);
    op->cb.hash = cb;
    return send_cmd(s, op, hash_on_reply, 2, argv);
}

int store_dlv_log(store_t *s, const char *id, store_hash_cb cb, void *arg) {
    int usable = store__usable(s);
    if (usable) {
        return usable; /* -EAGAIN while Redis (or our mirror) is still loading */
    }
    char key[160];
    snprintf(key, sizeof key, "hq:dlv:%.140s:log", id);
    const char *argv[4] = {"LRANGE", key, "0", "-1"};
    cb_op_t *op = cb_op_new(s, arg);
    op->cb.hash = cb;
    return send_cmd(s, op, list_on_reply, 4, argv);
}

int store_dlv_list(store_t *s, uint32_t wh, int64_t since_ms, int64_t until_ms, unsigned max,
                   store_hash_cb cb, void *arg) {
    int usable = store__usable(s);
    if (usable) {
        return usable; /* -EAGAIN while Redis (or our mirror) is still loading */
    }
    char key[48], lo[24], hi[24], mx[16];
    if (wh) {
        snprintf(key, sizeof key, "hq:dlvs:wh:%u", wh);
    } else {
        snprintf(key, sizeof key, "hq:dlvs");
    }
    snprintf(lo, sizeof lo, "%lld", (long long)since_ms);
    if (until_ms > 0) {
        snprintf(hi, sizeof hi, "(%lld", (long long)until_ms);
    } else {
        snprintf(hi, sizeof hi, "+inf");
    }
    snprintf(mx, sizeof mx, "%u", max);
    const char *argv[8] = {"ZRANGEBYSCORE", key, lo, hi, "WITHSCORES", "LIMIT", "0", mx};
    cb_op_t *op = cb_op_new(s, arg);
    op->cb.hash = cb;
    return send_cmd(s, op, hash_on_reply, 8, argv);
}

int store_dlv_requeue(store_t *s, const char *id, store_id_cb cb, void *arg) {
    int rc = push_writable(s);
    if (rc) {
        return rc;
    }
    const char *args[1] = {id};
    size_t lens[1] = {strlen(id)};
    cb_op_t *op = cb_op_new(s, arg);
    op->cb.id = cb;
    return send_eval(s, op, id_on_reply, STORE_SCRIPT_DLV_REQUEUE, 1, args, lens);
}

static void cfg_on_reply(void *arg, redisReply *r) {
    cb_op_t *op = arg;
    int rc = reply_rc(r);
    if (rc || r->elements < 2 || r->element[1]->type != REDIS_REPLY_STRING) {
        op->cb.hash(op->arg, rc ? rc : -EPROTO, NULL, 0);
    } else {
        store_kv_t kv = {
            .k = "value", .klen = 5, .v = r->element[1]->str, .vlen = r->element[1]->len};
        op->cb.hash(op->arg, 0, &kv, 1);
    }
    free(op);
}

int store_cfg_get_or_set(store_t *s, const char *name, const char *init, store_hash_cb cb,
                         void *arg) {
    int rc = push_writable(s);
    if (rc) {
        return rc;
    }
    const char *args[2] = {name, init};
    size_t lens[2] = {strlen(name), strlen(init)};
    cb_op_t *op = cb_op_new(s, arg);
    op->cb.hash = cb;
    return send_eval(s, op, cfg_on_reply, STORE_SCRIPT_CFG_GET, 2, args, lens);
}

static void str_on_reply(void *arg, redisReply *r) {
    cb_op_t *op = arg;
    if (r == NULL || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL)) {
        op->cb.hash(op->arg, r == NULL ? -EIO : -EPROTO, NULL, 0);
    } else if (r->type == REDIS_REPLY_NIL) {
        op->cb.hash(op->arg, -ENOENT, NULL, 0);
    } else {
        store_kv_t kv = {.k = "value", .klen = 5, .v = r->str, .vlen = r->len};
        op->cb.hash(op->arg, 0, &kv, 1);
    }
    free(op);
}

int store_grant_get(store_t *s, uint32_t policy, const char *uscc, store_hash_cb cb, void *arg) {
    int usable = store__usable(s);
    if (usable) {
        return usable; /* -EAGAIN while Redis (or our mirror) is still loading */
    }
    char key[32], u[19];
    snprintf(key, sizeof key, "hq:grant:%u", policy);
    memcpy(u, uscc, 18);
    u[18] = '\0';
    const char *argv[3] = {"HGET", key, u};
    cb_op_t *op = cb_op_new(s, arg);
    op->cb.hash = cb;
    return send_cmd_on(s, ON_BULK, op, str_on_reply, 3, argv);
}

/* ---------------------------------------------------------------------------
 * Statistics
 * ------------------------------------------------------------------------- */

int store_queue_stats(store_t *s, store_hash_cb cb, void *arg) {
    int usable = store__usable(s);
    if (usable) {
        return usable; /* -EAGAIN while Redis (or our mirror) is still loading */
    }
    /* Read-only, one round trip; tostring so the reply is HGETALL-shaped. */
    const char *script = "return {'queued', tostring(redis.call('XLEN', KEYS[1])),\n"
                         "  'retrying', tostring(redis.call('ZCARD', KEYS[2])),\n"
                         "  'jobs_running', tostring(redis.call('SCARD', KEYS[3]))}\n";
    const char *argv[6] = {"EVAL", script, "3", "hq:q", "hq:retry", "hq:jobs:running"};
    cb_op_t *op = cb_op_new(s, arg);
    op->cb.hash = cb;
    return send_cmd(s, op, hash_on_reply, 6, argv);
}

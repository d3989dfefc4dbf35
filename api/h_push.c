/* Jobs (/v1/jobs), deliveries (/v1/deliveries), replays and POST
 * /v1/policies/{id}/push: the operator's view of the push pipeline. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/app.h"
#include "api/ent_input.h"
#include "common/xalloc.h"
#include "push/push.h"
#include "tags/date.h"

#define DLV_LIST_DEFAULT 50
#define DLV_LIST_MAX     500

static int push_path_u64(api_req_t *req, const char *what, uint64_t *id) {
    const char *s = req->param[0];
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] < '1' || s[0] > '9' || *end != '\0' || errno == ERANGE) {
        /* Out of range too: strtoull saturates, and the answer would name an id
         * the client never sent. */
        api_error(req, 404, "not_found", NULL, "no %s '%.40s'", what, s);
        return -1;
    }
    *id = v;
    return 0;
}

static long long kv_num(const store_kv_t *kv, size_t n, const char *k) {
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

static void kv_set_str(json_t *o, const char *key, const store_kv_t *kv, size_t n,
                       const char *field) {
    size_t len;
    const char *v = store_kv_get(kv, n, field, &len);
    if (v) {
        json_object_set_new(o, key, json_stringn(v, len));
    }
}

static void kv_set_time(json_t *o, const char *key, const store_kv_t *kv, size_t n,
                        const char *field) {
    long long ms = kv_num(kv, n, field);
    if (ms > 0) {
        char ts[40];
        ent_time_format(ms, ts, sizeof ts);
        json_object_set_new(o, key, json_string(ts));
    }
}

/* ---------------------------------------------------------------------------
 * Jobs
 * ------------------------------------------------------------------------- */

typedef struct job_ctx {
    app_t *app;
    api_req_t *req;
    uint64_t id;
    int status;
    uint64_t start;
    unsigned limit;
} job_ctx_t;

static json_t *job_render(uint64_t id, const store_kv_t *kv, size_t n) {
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer((json_int_t)id));
    json_object_set_new(o, "policy", json_integer(kv_num(kv, n, "policy")));
    kv_set_str(o, "kind", kv, n, "kind");
    kv_set_str(o, "state", kv, n, "state");
    kv_set_str(o, "mode", kv, n, "mode");
    static const char *const counters[] = {"audience", "scanned",   "matched", "skipped",
                                           "queued",   "delivered", "failed",  "expired"};
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        json_object_set_new(o, counters[i], json_integer(kv_num(kv, n, counters[i])));
    }
    long long audience = kv_num(kv, n, "audience");
    long long scanned = kv_num(kv, n, "scanned");
    long long queued = kv_num(kv, n, "queued");
    long long settled =
        kv_num(kv, n, "delivered") + kv_num(kv, n, "failed") + kv_num(kv, n, "expired");
    size_t len;
    const char *st = store_kv_get(kv, n, "state", &len);
    int running = st && len == 7 && memcmp(st, "running", 7) == 0;
    /* Matching is done when the walk ends; delivering when every queued notice has
     * an outcome. Percent covers both halves. */
    double walk = running ? (audience ? 100.0 * (double)scanned / (double)audience : 0) : 100.0;
    if (walk > 100) {
        walk = 100;
    }
    double dlv = queued ? 100.0 * (double)settled / (double)queued : 100.0;
    json_object_set_new(o, "matching_percent", json_real(walk));
    json_object_set_new(o, "delivery_percent", json_real(dlv));
    json_object_set_new(o, "percent", json_real((walk + (running ? 0 : dlv)) / (running ? 2 : 2)));
    kv_set_time(o, "created_at", kv, n, "created");
    kv_set_time(o, "updated_at", kv, n, "updated");
    kv_set_time(o, "finished_at", kv, n, "finished");
    return o;
}

static void job_on_get(void *arg, int rc, const store_kv_t *kv, size_t n) {
    job_ctx_t *c = arg;
    if (rc == -ENOENT) {
        api_error(c->req, 404, "not_found", NULL, "no job %llu", (unsigned long long)c->id);
    } else if (rc) {
        api_store_error(c->req, rc, "job");
    } else {
        api_reply_json(c->req, c->status ? c->status : 200, job_render(c->id, kv, n), NULL);
    }
    free(c);
}

static void job_reply(app_t *app, api_req_t *req, uint64_t id, int status) {
    job_ctx_t *c = xcalloc(1, sizeof *c);
    c->app = app;
    c->req = req;
    c->id = id;
    c->status = status;
    int rc = store_job_get(app->store, id, job_on_get, c);
    if (rc) {
        api_store_error(req, rc, "job");
        free(c);
    }
}

void h_job_get(app_t *app, api_req_t *req) {
    uint64_t id;
    if (push_path_u64(req, "job", &id) == 0) {
        job_reply(app, req, id, 200);
    }
}

static void job_on_matches(void *arg, int rc, const store_kv_t *kv, size_t n) {
    job_ctx_t *c = arg;
    if (rc == -ENOENT) {
        api_error(c->req, 404, "not_found", NULL, "no job %llu", (unsigned long long)c->id);
    } else if (rc) {
        api_store_error(c->req, rc, "job");
    } else {
        json_t *items = json_array();
        for (size_t i = 0; i < n; i++) {
            json_array_append_new(items, json_stringn(kv[i].v, kv[i].vlen));
        }
        json_t *root = json_object();
        json_object_set_new(root, "job", json_integer((json_int_t)c->id));
        json_object_set_new(root, "items", items);
        char next[24];
        snprintf(next, sizeof next, "%llu", (unsigned long long)(c->start + n));
        json_object_set_new(root, "next", n == c->limit ? json_string(next) : json_null());
        api_reply_json(c->req, 200, root, NULL);
    }
    free(c);
}

void h_job_matches(app_t *app, api_req_t *req) {
    uint64_t id;
    unsigned long long cursor = 0, limit = 100;
    if (push_path_u64(req, "job", &id) ||
        api_query_uint(req, "cursor", 0, UINT64_MAX / 2, &cursor) ||
        api_query_uint(req, "limit", 1, 1000, &limit)) {
        return;
    }
    job_ctx_t *c = xcalloc(1, sizeof *c);
    c->app = app;
    c->req = req;
    c->id = id;
    c->start = cursor;
    c->limit = (unsigned)limit;
    int rc = store_job_matches(app->store, id, cursor, (unsigned)limit, job_on_matches, c);
    if (rc) {
        api_store_error(req, rc, "job");
        free(c);
    }
}

typedef struct cancel_ctx {
    app_t *app;
    api_req_t *req;
} cancel_ctx_t;

static void job_on_cancel(void *arg, int rc, uint64_t id) {
    cancel_ctx_t *c = arg;
    if (rc == -ENOENT) {
        api_error(c->req, 404, "not_found", NULL, "no job %llu", (unsigned long long)id);
    } else if (rc == -EALREADY) {
        api_error(c->req, 409, "invalid_state", "state", "job %llu has already finished",
                  (unsigned long long)id);
    } else if (rc) {
        api_store_error(c->req, rc, "job");
    } else {
        job_reply(c->app, c->req, id, 200);
    }
    free(c);
}

void h_job_cancel(app_t *app, api_req_t *req) {
    uint64_t id;
    if (push_path_u64(req, "job", &id)) {
        return;
    }
    cancel_ctx_t *c = xcalloc(1, sizeof *c);
    c->app = app;
    c->req = req;
    int rc = push_job_cancel(app->push, id, job_on_cancel, c);
    if (rc) {
        api_store_error(req, rc, "job");
        free(c);
    }
}

/* Starting a job for a policy: after a publish, or on POST .../push. */
typedef struct start_ctx {
    app_t *app;
    api_req_t *req;
} start_ctx_t;

static void push_on_started(void *arg, int rc, uint64_t job) {
    start_ctx_t *c = arg;
    if (rc) {
        api_store_error(c->req, rc, "push");
    } else {
        char loc[64];
        snprintf(loc, sizeof loc, "Location: /v1/jobs/%llu\r\n", (unsigned long long)job);
        json_t *o = json_pack("{s:I,s:s}", "job", (json_int_t)job, "state", "running");
        api_reply_json(c->req, 202, o, loc);
    }
    free(c);
}

void h_pol_push(app_t *app, api_req_t *req) {
    const char *s = req->param[0];
    char *end = NULL;
    unsigned long id = strtoul(s, &end, 10);
    if (s[0] < '1' || s[0] > '9' || *end != '\0' || id >= UINT32_MAX) {
        api_error(req, 404, "not_found", NULL, "no policy '%.40s'", s);
        return;
    }
    start_ctx_t *c = xcalloc(1, sizeof *c);
    c->app = app;
    c->req = req;
    int rc = push_job_start(app->push, (uint32_t)id, "push", push_on_started, c);
    if (rc == -ENOENT) {
        api_error(req, 404, "not_found", NULL, "no policy %lu", id);
        free(c);
    } else if (rc == -EPERM) {
        api_error(req, 409, "invalid_state", "status", "only a published policy can be pushed");
        free(c);
    } else if (rc) {
        api_store_error(req, rc, "push");
        free(c);
    }
}

/* ---------------------------------------------------------------------------
 * Deliveries
 * ------------------------------------------------------------------------- */

static json_t *dlv_render(const char *id, size_t idlen, const store_kv_t *kv, size_t n) {
    json_t *o = json_object();
    json_object_set_new(o, "id", json_stringn(id, idlen));
    kv_set_str(o, "event", kv, n, "ev");
    size_t len;
    const char *wh = store_kv_get(kv, n, "wh", &len);
    if (wh && len == 3 && memcmp(wh, "ent", 3) == 0) {
        json_object_set_new(o, "webhook", json_null());
        kv_set_str(o, "url", kv, n, "url");
    } else if (wh) {
        json_object_set_new(o, "webhook", json_integer(kv_num(kv, n, "wh")));
    }
    if (store_kv_get(kv, n, "pol", &len) && len) {
        json_object_set_new(o, "policy", json_integer(kv_num(kv, n, "pol")));
    }
    const char *u = store_kv_get(kv, n, "u", &len);
    if (u && len == 18) {
        json_object_set_new(o, "enterprise", json_stringn(u, len));
    } else if (u && len > 18) {
        json_object_set_new(o, "recipients", json_integer((json_int_t)(len + 1) / 19));
    }
    if (store_kv_get(kv, n, "job", &len) && len) {
        json_object_set_new(o, "job", json_integer(kv_num(kv, n, "job")));
    }
    kv_set_str(o, "state", kv, n, "state");
    json_object_set_new(o, "attempts", json_integer(kv_num(kv, n, "attempts")));
    long long st = kv_num(kv, n, "last_status");
    json_object_set_new(o, "last_status", st ? json_integer(st) : json_null());
    const char *err = store_kv_get(kv, n, "last_error", &len);
    json_object_set_new(o, "last_error", err && len ? json_stringn(err, len) : json_null());
    kv_set_time(o, "created_at", kv, n, "created");
    kv_set_time(o, "last_attempt_at", kv, n, "last_at");
    const char *state = store_kv_get(kv, n, "state", &len);
    if (state && len == 5 && memcmp(state, "retry", 5) == 0) {
        kv_set_time(o, "next_attempt_at", kv, n, "next_at");
    }
    return o;
}

typedef struct dlv_ctx {
    app_t *app;
    api_req_t *req;
    char id[160];
    json_t *obj;
    /* listing */
    json_t **items;
    long long *item_ms; /* each fetched id's time, for a cursor after it */
    size_t n, left;
    unsigned page; /* the client's limit (items answered) */
    size_t last_index;
    int failed;
    char state[16];
    long long last_ms;
    char last_id[160];
    unsigned limit;
    size_t fetched;
    /* replay */
    size_t replayed;
    int all;
} dlv_ctx_t;

static void dlv_on_log(void *arg, int rc, const store_kv_t *kv, size_t n) {
    dlv_ctx_t *c = arg;
    json_t *log = json_array();
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *a = json_loadb(kv[i].v, kv[i].vlen, 0, NULL);
        if (a) {
            json_array_append_new(log, a);
        }
    }
    json_object_set_new(c->obj, "attempt_log", log);
    api_reply_json(c->req, 200, c->obj, NULL);
    free(c);
}

static void dlv_on_get(void *arg, int rc, const store_kv_t *kv, size_t n) {
    dlv_ctx_t *c = arg;
    if (rc == -ENOENT) {
        api_error(c->req, 404, "not_found", NULL, "no delivery %s", c->id);
        free(c);
        return;
    }
    if (rc) {
        api_store_error(c->req, rc, "delivery");
        free(c);
        return;
    }
    c->obj = dlv_render(c->id, strlen(c->id), kv, n);
    if (store_dlv_log(c->app->store, c->id, dlv_on_log, c) != 0) {
        api_reply_json(c->req, 200, c->obj, NULL);
        free(c);
    }
}

static int dlv_path_id(api_req_t *req, char *out, size_t outlen) {
    const char *s = req->param[0];
    size_t n = strlen(s);
    if (n < 5 || n >= outlen || strncmp(s, "msg_", 4) != 0 || strpbrk(s, " .:/") != NULL) {
        api_error(req, 404, "not_found", NULL, "no delivery '%.60s'", s);
        return -1;
    }
    memcpy(out, s, n + 1);
    return 0;
}

void h_dlv_get(app_t *app, api_req_t *req) {
    dlv_ctx_t *c = xcalloc(1, sizeof *c);
    c->app = app;
    c->req = req;
    if (dlv_path_id(req, c->id, sizeof c->id)) {
        free(c);
        return;
    }
    int rc = store_dlv_get(app->store, c->id, dlv_on_get, c);
    if (rc) {
        api_store_error(req, rc, "delivery");
        free(c);
    }
}

static void dlv_on_requeued(void *arg, int rc, uint64_t v) {
    (void)v;
    dlv_ctx_t *c = arg;
    if (rc == -ENOENT) {
        api_error(c->req, 404, "not_found", NULL, "no delivery %s", c->id);
    } else if (rc) {
        api_store_error(c->req, rc, "delivery");
    } else {
        push_kick(c->app->push);
        json_t *o = json_pack("{s:s,s:s}", "id", c->id, "state", "queued");
        api_reply_json(c->req, 202, o, NULL);
    }
    free(c);
}

void h_dlv_retry(app_t *app, api_req_t *req) {
    dlv_ctx_t *c = xcalloc(1, sizeof *c);
    c->app = app;
    c->req = req;
    if (dlv_path_id(req, c->id, sizeof c->id)) {
        free(c);
        return;
    }
    int rc = store_dlv_requeue(app->store, c->id, dlv_on_requeued, c);
    if (rc) {
        api_store_error(req, rc, "delivery");
        free(c);
    }
}

typedef struct dlv_item {
    dlv_ctx_t *c;
    size_t i;
    char id[160];
} dlv_item_t;

static void dlv_list_finish(dlv_ctx_t *c) {
    if (c->failed) {
        api_store_error(c->req, c->failed, "delivery");
    } else {
        json_t *items = json_array();
        int more = c->fetched >= c->limit && c->last_id[0];
        for (size_t i = 0; i < c->n; i++) {
            if (c->items[i] == NULL) {
                continue;
            }
            if (json_array_size(items) == c->page) {
                /* A full page before the ids read ran out: continue after the
                 * last one answered. */
                json_t *last = json_array_get(items, c->page - 1);
                const char *id = json_string_value(json_object_get(last, "id"));
                snprintf(c->last_id, sizeof c->last_id, "%s", id ? id : "");
                c->last_ms = c->item_ms[c->last_index];
                more = 1;
                break;
            }
            json_array_append(items, c->items[i]);
            c->last_index = i;
        }
        json_t *root = json_object();
        json_object_set_new(root, "items", items);
        char next[200];
        snprintf(next, sizeof next, "%lld:%s", c->last_ms, c->last_id);
        json_object_set_new(root, "next", more ? json_string(next) : json_null());
        api_reply_json(c->req, 200, root, NULL);
    }
    for (size_t i = 0; i < c->n; i++) {
        json_decref(c->items[i]);
    }
    free(c->items);
    free(c->item_ms);
    free(c);
}

static void dlv_list_on_item(void *arg, int rc, const store_kv_t *kv, size_t n) {
    dlv_item_t *it = arg;
    dlv_ctx_t *c = it->c;
    if (rc == 0) {
        size_t len;
        const char *st = store_kv_get(kv, n, "state", &len);
        if (c->state[0] == '\0' ||
            (st && strlen(c->state) == len && memcmp(st, c->state, len) == 0)) {
            c->items[it->i] = dlv_render(it->id, strlen(it->id), kv, n);
        }
    } else if (rc != -ENOENT) {
        c->failed = rc;
    }
    free(it);
    if (--c->left == 0) {
        dlv_list_finish(c);
    }
}

/* Orders ids as Redis orders members of equal score: bytewise, a prefix first. */
static int dlv_id_cmp(const char *a, size_t alen, const char *b) {
    size_t blen = strlen(b);
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c) {
        return c;
    }
    return alen < blen ? -1 : alen > blen;
}

static void dlv_list_on_ids(void *arg, int rc, const store_kv_t *kv, size_t n) {
    dlv_ctx_t *c = arg;
    if (rc && rc != -ENOENT) {
        api_store_error(c->req, rc, "delivery");
        free(c);
        return;
    }
    if (rc == -ENOENT) {
        n = 0;
    }
    c->items = xcalloc(n + 1, sizeof *c->items);
    c->item_ms = xcalloc(n + 1, sizeof *c->item_ms);
    c->left = 1;
    /* Skip what the cursor already covered (same millisecond, smaller id). */
    char after[160];
    snprintf(after, sizeof after, "%s", c->last_id);
    long long after_ms = c->last_ms;
    c->last_id[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        char buf[32];
        size_t l = kv[i].vlen < sizeof buf - 1 ? kv[i].vlen : sizeof buf - 1;
        memcpy(buf, kv[i].v, l);
        buf[l] = '\0';
        long long ms = strtoll(buf, NULL, 10);
        if (after[0] && ms == after_ms && dlv_id_cmp(kv[i].k, kv[i].klen, after) <= 0) {
            continue;
        }
        if (c->fetched == c->limit) {
            break;
        }
        dlv_item_t *it = xcalloc(1, sizeof *it);
        it->c = c;
        it->i = c->n++;
        size_t idl = kv[i].klen < sizeof it->id - 1 ? kv[i].klen : sizeof it->id - 1;
        memcpy(it->id, kv[i].k, idl);
        c->fetched++;
        c->last_ms = ms;
        c->item_ms[it->i] = ms;
        memcpy(c->last_id, it->id, idl + 1);
        if (store_dlv_get(c->app->store, it->id, dlv_list_on_item, it) != 0) {
            free(it);
            c->failed = -ENOTCONN;
            break;
        }
        c->left++;
    }
    if (--c->left == 0) {
        dlv_list_finish(c);
    }
}

/* Parses "since"/"until" (RFC 3339 or milliseconds) and the cursor. */
static int dlv_time_param(api_req_t *req, const char *name, long long *ms) {
    char buf[64];
    int q = api_query(req, name, buf, sizeof buf);
    if (q == 0) {
        return 0;
    }
    char *end = NULL;
    long long v = strtoll(buf, &end, 10);
    if (q > 0 && end != buf && *end == '\0' && v >= 0) {
        *ms = v;
        return 0;
    }
    int y, mo, d, h = 0, mi = 0, s = 0;
    int32_t day;
    char date[11];
    if (q > 0 && sscanf(buf, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &s) >= 3 && h >= 0 &&
        h < 24 && mi >= 0 && mi < 60 && s >= 0 && s < 61) {
        memcpy(date, buf, 10);
        date[10] = '\0';
        if (strlen(buf) >= 10 && date_parse(date, 10, &day) == 0) {
            *ms = ((long long)day * 86400 + h * 3600 + mi * 60 + s) * 1000;
            return 0;
        }
    }
    api_error(req, 400, "invalid_parameter", name,
              "%s must be a time (2026-11-22T08:00:00Z) or milliseconds since 1970", name);
    return -1;
}

void h_dlv_list(app_t *app, api_req_t *req) {
    dlv_ctx_t *c = xcalloc(1, sizeof *c);
    c->app = app;
    c->req = req;
    unsigned long long limit = DLV_LIST_DEFAULT, wh = 0;
    long long since = 0, until = 0;
    char cursor[200];
    int cq = api_query(req, "cursor", cursor, sizeof cursor);
    int sq = api_query(req, "state", c->state, sizeof c->state);
    if (api_query_uint(req, "limit", 1, DLV_LIST_MAX, &limit) ||
        api_query_uint(req, "webhook", 1, UINT32_MAX - 1, &wh) ||
        dlv_time_param(req, "since", &since) || dlv_time_param(req, "until", &until)) {
        free(c);
        return;
    }
    if (sq < 0 || (sq > 0 && strcmp(c->state, "delivered") && strcmp(c->state, "retry") &&
                   strcmp(c->state, "dead") && strcmp(c->state, "expired") &&
                   strcmp(c->state, "queued") && strcmp(c->state, "disabled"))) {
        api_error(req, 400, "invalid_parameter", "state",
                  "state must be delivered, retry, queued, dead, expired or disabled");
        free(c);
        return;
    }
    if (cq < 0) {
        api_error(req, 400, "invalid_parameter", "cursor",
                  "cursor is malformed, too long or given more than once");
        free(c);
        return;
    }
    if (cq > 0) {
        char *colon = strchr(cursor, ':');
        if (colon == NULL) {
            api_error(req, 400, "invalid_parameter", "cursor", "malformed cursor");
            free(c);
            return;
        }
        *colon = '\0';
        c->last_ms = strtoll(cursor, NULL, 10);
        snprintf(c->last_id, sizeof c->last_id, "%s", colon + 1);
        since = c->last_ms;
    }
    c->limit = (unsigned)limit;
    c->page = (unsigned)limit;
    /* Read more ids than the page when filtering by state, so a page is rarely
     * short; the cursor still advances over what was read. */
    unsigned fetch = c->state[0] ? (unsigned)limit * 4 : (unsigned)limit + 64;
    if (c->state[0]) {
        c->limit = fetch;
    }
    int rc = store_dlv_list(app->store, (uint32_t)wh, since, until, fetch, dlv_list_on_ids, c);
    if (rc) {
        api_store_error(req, rc, "delivery");
        free(c);
    }
}

/* ---------------------------------------------------------------------------
 * Replay
 * ------------------------------------------------------------------------- */

static void replay_finish(dlv_ctx_t *c) {
    if (c->failed) {
        api_store_error(c->req, c->failed, "replay");
    } else {
        push_kick(c->app->push);
        json_t *o = json_pack("{s:I}", "replayed", (json_int_t)c->replayed);
        api_reply_json(c->req, 202, o, NULL);
    }
    free(c);
}

static void replay_on_requeued(void *arg, int rc, uint64_t v) {
    (void)v;
    dlv_item_t *it = arg;
    dlv_ctx_t *c = it->c;
    if (rc == 0) {
        c->replayed++;
    } else if (rc != -ENOENT) {
        c->failed = rc;
    }
    free(it);
    if (--c->left == 0) {
        replay_finish(c);
    }
}

static void replay_on_item(void *arg, int rc, const store_kv_t *kv, size_t n) {
    dlv_item_t *it = arg;
    dlv_ctx_t *c = it->c;
    size_t len;
    const char *st = rc == 0 ? store_kv_get(kv, n, "state", &len) : NULL;
    int want = st && (c->all || !(len == 9 && memcmp(st, "delivered", 9) == 0)) &&
               !(len == 5 && memcmp(st, "retry", 5) == 0) &&
               !(len == 6 && memcmp(st, "queued", 6) == 0);
    if (want && store_dlv_requeue(c->app->store, it->id, replay_on_requeued, it) == 0) {
        return; /* 'left' is released when the requeue answers */
    }
    if (rc && rc != -ENOENT) {
        c->failed = rc;
    }
    free(it);
    if (--c->left == 0) {
        replay_finish(c);
    }
}

static void replay_on_ids(void *arg, int rc, const store_kv_t *kv, size_t n) {
    dlv_ctx_t *c = arg;
    if (rc && rc != -ENOENT) {
        api_store_error(c->req, rc, "replay");
        free(c);
        return;
    }
    c->left = 1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        dlv_item_t *it = xcalloc(1, sizeof *it);
        it->c = c;
        size_t idl = kv[i].klen < sizeof it->id - 1 ? kv[i].klen : sizeof it->id - 1;
        memcpy(it->id, kv[i].k, idl);
        if (store_dlv_get(c->app->store, it->id, replay_on_item, it) != 0) {
            free(it);
            c->failed = -ENOTCONN;
            break;
        }
        c->left++;
    }
    if (--c->left == 0) {
        replay_finish(c);
    }
}

void h_wh_replay(app_t *app, api_req_t *req) {
    const char *s = req->param[0];
    char *end = NULL;
    unsigned long id = strtoul(s, &end, 10);
    if (s[0] < '1' || s[0] > '9' || *end != '\0' || id >= UINT32_MAX ||
        store_webhook(app->store, (uint32_t)id) == NULL) {
        api_error(req, 404, "not_found", NULL, "no webhook '%.40s'", s);
        return;
    }
    long long since = 0, until = 0;
    unsigned long long all = 0;
    if (dlv_time_param(req, "since", &since) || dlv_time_param(req, "until", &until) ||
        api_query_uint(req, "all", 0, 1, &all)) {
        return;
    }
    dlv_ctx_t *c = xcalloc(1, sizeof *c);
    c->app = app;
    c->req = req;
    c->all = (int)all;
    int rc = store_dlv_list(app->store, (uint32_t)id, since, until, 100000, replay_on_ids, c);
    if (rc) {
        api_store_error(req, rc, "replay");
        free(c);
    }
}

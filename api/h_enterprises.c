/* /v1/enterprises: register, replace, patch, read, list and delete enterprises.
 * Handlers validate (ent_input.c), derive the profile (tags/rules), write through
 * the store, and answer with the stored document. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/access.h"
#include "api/app.h"
#include "api/ent_input.h"
#include "api/ent_lane.h"
#include "api/log.h"
#include "common/xalloc.h"
#include "matcher/matcher.h"
#include "tags/date.h"

#define ENT_PATCH_ATTEMPTS 5
#define ENT_LIST_DEFAULT   50
#define ENT_LIST_MAX       200

typedef struct ent_ctx {
    ent_lane_wait_t wait; /* while waiting for the lane of the code (ent_lane.h) */
    app_t *app;
    api_req_t *req;
    json_t *doc;    /* the document written, for the answer */
    json_t *patch;  /* PATCH: the merge patch */
    json_t *body;   /* PUT: the replacement */
    json_t *stored; /* a guarded write: the document read before it (NULL: none) */
    char uscc[19];
    int mode;
    int attempts;
    int64_t pinned;     /* If-Match version, or -1 */
    int status_created; /* status to answer when the write created the enterprise */
    int read_first;     /* PATCH, guarded PUT: read, then write at the version read */
    int guarded;        /* an enterprise key: explicit tags and overrides stay as stored */
    int signed_ov;      /* the request sets the overrides: each must say who set it */
    int in_lane;        /* holds (or waits for) the lane of 'uscc' */
} ent_ctx_t;

static void ent_ctx_free(ent_ctx_t *c) {
    app_t *app = c->app;
    int in_lane = c->in_lane;
    char uscc[19];
    memcpy(uscc, c->uscc, sizeof uscc);
    json_decref(c->doc);
    json_decref(c->patch);
    json_decref(c->body);
    json_decref(c->stored);
    free(c);
    /* Only once this request is answered and its state gone: the next update of
     * the code may start (and finish) inside the call. */
    if (in_lane) {
        ent_lane_leave(app->lanes, uscc);
    }
}

static void ent_answer_err(api_req_t *req, const ent_err_t *e) {
    api_error(req, e->status, e->code, e->field[0] ? e->field : NULL, "%s", e->msg);
}

/* Adds the fields kept outside the document (version, creation and change times). */
static void ent_decorate(json_t *doc, uint64_t ver, int64_t created_ms, int64_t updated_ms) {
    json_object_set_new(doc, "version", json_integer((json_int_t)ver));
    char ts[40];
    if (created_ms > 0) {
        ent_time_format(created_ms, ts, sizeof ts);
        json_object_set_new(doc, "created_at", json_string(ts));
    }
    if (updated_ms > 0) {
        ent_time_format(updated_ms, ts, sizeof ts);
        json_object_set_new(doc, "updated_at", json_string(ts));
    }
}

/* Reads the {uscc} path parameter; answers and returns -1 when it is invalid. */
static int ent_path_uscc(api_req_t *req, char *out) {
    ent_err_t e;
    if (ent_uscc_parse(req->param[0], req->param_len[0], out, "uscc", &e)) {
        ent_answer_err(req, &e);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Writes
 * ------------------------------------------------------------------------- */

static void ent_read(ent_ctx_t *c);

static void ent_on_written(void *arg, int rc, const store_ent_out_t *out) {
    ent_ctx_t *c = arg;
    api_req_t *req = c->req;
    /* -EEXIST: a guarded PUT found nothing, and someone created it before our write. */
    int raced = rc == -ESTALE || (rc == -EEXIST && c->read_first);
    if (raced && c->read_first && c->pinned < 0 && ++c->attempts < ENT_PATCH_ATTEMPTS) {
        /* A writer outside this process (ours wait in the lane) changed it between
         * our read and write: read again and re-apply. */
        json_decref(c->doc);
        c->doc = NULL;
        ent_read(c);
        return;
    }
    if (rc == -EEXIST && !c->read_first) {
        api_error(req, 409, "conflict", "uscc",
                  "enterprise %s already exists; use PUT /v1/enterprises/%s to replace it", c->uscc,
                  c->uscc);
    } else if (rc == -ENOENT) {
        api_error(req, 404, "not_found", NULL, "no enterprise %s", c->uscc);
    } else if (raced && c->pinned >= 0) {
        api_error(req, 412, "version_mismatch", "If-Match",
                  "enterprise %s is no longer at version %lld; read it again", c->uscc,
                  (long long)c->pinned);
    } else if (raced) {
        api_error(req, 409, "conflict", NULL,
                  "enterprise %s kept changing while this update was applied (another writer "
                  "changed it %d times); retry",
                  c->uscc, ENT_PATCH_ATTEMPTS);
    } else if (rc) {
        api_store_error(req, rc, "write");
    } else {
        ent_decorate(c->doc, out->ver, out->created_ms, out->updated_ms);
        char loc[80];
        snprintf(loc, sizeof loc, "Location: /v1/enterprises/%s\r\n", c->uscc);
        int status = out->created ? c->status_created : 200;
        api_reply_json(req, status, json_incref(c->doc), out->created ? loc : NULL);
    }
    ent_ctx_free(c);
}

/* The same members, in any order: lists of tag codes, or of override objects.
 * NULL (absent) is the empty list. */
static int ent_same_set(const json_t *a, const json_t *b) {
    for (int pass = 0; pass < 2; pass++) {
        const json_t *x = pass ? b : a;
        const json_t *y = pass ? a : b;
        for (size_t i = 0; i < json_array_size(x); i++) {
            size_t j = 0;
            while (j < json_array_size(y) &&
                   !json_equal(json_array_get(x, i), json_array_get(y, j))) {
                j++;
            }
            if (j == json_array_size(y)) {
                return 0;
            }
        }
    }
    return 1;
}

/* An enterprise key writes its own profile, but its explicit tags (negative-list
 * tags from a credit system among them) and overrides are operators': they must
 * come out as stored. Answers 403 and returns -1 when they would not. */
static int ent_guard(ent_ctx_t *c, const json_t *attrs) {
    if (!ent_same_set(json_object_get(c->stored, "explicit_tags"),
                      json_object_get(attrs, "explicit_tags"))) {
        api_error(c->req, 403, "forbidden", "tags",
                  "an enterprise key may not change the explicit tags of %s", c->uscc);
        return -1;
    }
    if (!ent_same_set(json_object_get(c->stored, "overrides"),
                      json_object_get(attrs, "overrides"))) {
        api_error(c->req, 403, "forbidden", "overrides",
                  "an enterprise key may not change the overrides of %s", c->uscc);
        return -1;
    }
    return 0;
}

/* Validates 'body', derives the profile and writes it. Takes over 'c'. */
static void ent_write(ent_ctx_t *c, json_t *body, const char *path_uscc, int64_t expect_ver) {
    app_t *app = c->app;
    api_req_t *req = c->req;
    ent_input_t in;
    ent_err_t e;
    /* A PATCH carries the stored document: the rules newer than it are checked
     * only on the fields the patch sets (ent_input_parse_stored). */
    int rc_parse = c->patch ? ent_input_parse_stored(app, body, path_uscc, c->patch, &in, &e)
                            : ent_input_parse(app, body, path_uscc, &in, &e);
    if (rc_parse) {
        ent_input_free(&in);
        ent_answer_err(req, &e);
        ent_ctx_free(c);
        return;
    }
    /* Before the check of who set the overrides: an enterprise key may not set
     * any, signed or not. */
    if (c->guarded && ent_guard(c, in.attrs)) {
        ent_input_free(&in);
        ent_ctx_free(c);
        return;
    }
    if (c->signed_ov && ent_overrides_signed(body, &e)) {
        ent_input_free(&in);
        ent_answer_err(req, &e);
        ent_ctx_free(c);
        return;
    }
    memcpy(c->uscc, in.uscc, sizeof c->uscc);
    /* On the stack, as in import_line (h_import.c). */
    rules_out_t out;
    rules_derive(app->rules, &in.rin, app_today(app), &out);
    c->doc = ent_build_doc(app, &in, &out);
    int rc = ent_input_store(app, &in, c->doc, &out, c->mode, expect_ver, ent_on_written, c);
    ent_input_free(&in);
    if (rc) {
        api_store_error(req, rc, "write");
        ent_ctx_free(c);
    }
}

static ent_ctx_t *ent_ctx_new(app_t *app, api_req_t *req, int mode) {
    ent_ctx_t *c = xcalloc(1, sizeof *c);
    c->app = app;
    c->req = req;
    c->mode = mode;
    c->pinned = -1;
    c->status_created = 201;
    return c;
}

/* The update's turn in the lane of its code has come. */
static void ent_start(void *arg) {
    ent_ctx_t *c = arg;
    if (c->read_first) {
        ent_read(c);
        return;
    }
    json_t *body = json_incref(c->body);
    ent_write(c, body, c->uscc, c->pinned);
    json_decref(body);
}

/* Runs 'c' (PUT or PATCH of c->uscc) once the updates of the code before it are
 * done, so that this process never races itself on a version. Takes over 'c'. */
static void ent_enqueue(ent_ctx_t *c) {
    c->wait.start = ent_start;
    c->wait.arg = c;
    int rc = ent_lane_enter(c->app->lanes, c->uscc, &c->wait);
    if (rc < 0) {
        api_error(c->req, 503, "overloaded", NULL,
                  "%d updates of enterprise %s are already waiting; retry", ENT_LANE_MAX_WAITING,
                  c->uscc);
        ent_ctx_free(c);
        return;
    }
    c->in_lane = 1;
    if (rc == 0) {
        ent_start(c);
    }
}

void h_ent_create(app_t *app, api_req_t *req) {
    json_t *body;
    if (api_read_object(req, &body, 0)) {
        return;
    }
    ent_ctx_t *c = ent_ctx_new(app, req, STORE_CREATE);
    c->signed_ov = 1;
    ent_write(c, body, NULL, -1);
    json_decref(body);
}

void h_ent_put(app_t *app, api_req_t *req) {
    char uscc[19];
    int64_t ver;
    if (ent_path_uscc(req, uscc) || api_if_match(req, &ver)) {
        return;
    }
    json_t *body;
    if (api_read_object(req, &body, 0)) {
        return;
    }
    ent_ctx_t *c = ent_ctx_new(app, req, ver >= 0 ? STORE_UPDATE : STORE_UPSERT);
    memcpy(c->uscc, uscc, sizeof uscc);
    c->body = body;
    c->pinned = ver;
    c->signed_ov = 1;
    /* A replacement by an enterprise key is compared with what is stored, so it
     * is read first and written only at the version read. */
    c->guarded = c->read_first = access_by_enterprise(req);
    ent_enqueue(c);
}

static void ent_on_read(void *arg, int rc, const store_doc_t *d) {
    ent_ctx_t *c = arg;
    json_decref(c->stored);
    c->stored = NULL;
    if (rc == -ENOENT && c->body && c->pinned < 0) {
        /* A guarded PUT of an enterprise that is not there: it creates it (with
         * no explicit tags or overrides), unless someone else does first. */
        c->mode = STORE_CREATE;
        json_t *body = json_incref(c->body);
        ent_write(c, body, c->uscc, -1);
        json_decref(body);
        return;
    }
    if (rc) {
        if (rc == -ENOENT) {
            api_error(c->req, 404, "not_found", NULL, "no enterprise %s", c->uscc);
        } else {
            api_store_error(c->req, rc, "read");
        }
        ent_ctx_free(c);
        return;
    }
    json_t *doc = json_loadb(d->doc, d->len, 0, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        api_error(c->req, 500, "internal", NULL, "the stored document of %s is damaged", c->uscc);
        ent_ctx_free(c);
        return;
    }
    if (c->pinned >= 0 && (uint64_t)c->pinned != d->ver) {
        json_decref(doc);
        api_error(c->req, 412, "version_mismatch", "If-Match",
                  "enterprise %s is at version %llu, not %lld; read it again", c->uscc,
                  (unsigned long long)d->ver, (long long)c->pinned);
        ent_ctx_free(c);
        return;
    }
    json_t *body;
    if (c->patch) {
        body = ent_doc_to_input(doc);
        ent_merge_patch(body, c->patch);
    } else {
        body = json_incref(c->body);
    }
    if (c->guarded) {
        c->stored = doc;
    } else {
        json_decref(doc);
    }
    c->mode = STORE_UPDATE;
    /* Written only if nobody changed it since this read (or since If-Match). */
    ent_write(c, body, c->uscc, (int64_t)d->ver);
    json_decref(body);
}

static void ent_read(ent_ctx_t *c) {
    int rc = store_ent_get(c->app->store, c->uscc, ent_on_read, c);
    if (rc) {
        api_store_error(c->req, rc, "read");
        ent_ctx_free(c);
    }
}

void h_ent_patch(app_t *app, api_req_t *req) {
    char uscc[19];
    int64_t ver;
    if (ent_path_uscc(req, uscc) || api_if_match(req, &ver)) {
        return;
    }
    json_t *body;
    if (api_read_object(req, &body, 1)) {
        return;
    }
    json_t *u = json_object_get(body, "uscc");
    if (u && (!json_is_string(u) || strcasecmp(json_string_value(u), uscc) != 0)) {
        json_decref(body);
        api_error(req, 400, "uscc_mismatch", "uscc", "the uscc of an enterprise cannot change");
        return;
    }
    if (!app->store || !store_ready(app->store)) {
        json_decref(body);
        api_store_error(req, store_redis_up(app->store) ? -EAGAIN : -ENOTCONN, "update");
        return;
    }
    ent_ctx_t *c = ent_ctx_new(app, req, STORE_UPDATE);
    memcpy(c->uscc, uscc, sizeof uscc);
    c->patch = body;
    c->read_first = 1;
    c->guarded = access_by_enterprise(req);
    /* Overrides kept from the stored document may predate the rule; new ones
     * must say who set them. */
    json_t *ov = json_object_get(body, "overrides");
    c->signed_ov = ov && !json_is_null(ov);
    /* With If-Match the caller pins the version: a mismatch is 412, never a
     * silent retry on newer data. */
    c->pinned = ver;
    ent_enqueue(c);
}

/* ---------------------------------------------------------------------------
 * Reads and delete
 * ------------------------------------------------------------------------- */

static void ent_on_get(void *arg, int rc, const store_doc_t *d) {
    ent_ctx_t *c = arg;
    if (rc == -ENOENT) {
        api_error(c->req, 404, "not_found", NULL, "no enterprise %s", c->uscc);
    } else if (rc) {
        api_store_error(c->req, rc, "read");
    } else {
        json_t *doc = json_loadb(d->doc, d->len, 0, NULL);
        if (!json_is_object(doc)) {
            json_decref(doc);
            api_error(c->req, 500, "internal", NULL, "the stored document of %s is damaged",
                      c->uscc);
        } else {
            ent_decorate(doc, d->ver, d->created_ms, d->updated_ms);
            char etag[48];
            snprintf(etag, sizeof etag, "ETag: \"%llu\"\r\n", (unsigned long long)d->ver);
            api_reply_json(c->req, 200, doc, etag);
        }
    }
    ent_ctx_free(c);
}

void h_ent_get(app_t *app, api_req_t *req) {
    ent_ctx_t *c = ent_ctx_new(app, req, 0);
    if (ent_path_uscc(req, c->uscc)) {
        ent_ctx_free(c);
        return;
    }
    int rc = store_ent_get(app->store, c->uscc, ent_on_get, c);
    if (rc) {
        api_store_error(req, rc, "read");
        ent_ctx_free(c);
    }
}

static void ent_on_deleted(void *arg, int rc, const store_ent_out_t *out) {
    (void)out;
    ent_ctx_t *c = arg;
    if (rc == -ENOENT) {
        api_error(c->req, 404, "not_found", NULL, "no enterprise %s", c->uscc);
    } else if (rc) {
        api_store_error(c->req, rc, "delete");
    } else {
        api_no_content(c->req);
    }
    ent_ctx_free(c);
}

void h_ent_delete(app_t *app, api_req_t *req) {
    ent_ctx_t *c = ent_ctx_new(app, req, 0);
    if (ent_path_uscc(req, c->uscc)) {
        ent_ctx_free(c);
        return;
    }
    int rc = store_ent_del(app->store, c->uscc, ent_on_deleted, c);
    if (rc) {
        api_store_error(req, rc, "delete");
        ent_ctx_free(c);
    }
}

/* ---------------------------------------------------------------------------
 * List
 * ------------------------------------------------------------------------- */

typedef struct list_ctx {
    api_req_t *req;
    json_t **items;
    size_t n;
    size_t left;
    int failed;
    uint32_t next;
} list_ctx_t;

typedef struct list_item {
    list_ctx_t *l;
    size_t i;
} list_item_t;

static void list_finish(list_ctx_t *l) {
    if (l->failed) {
        api_store_error(l->req, l->failed, "read");
    } else {
        json_t *items = json_array();
        for (size_t i = 0; i < l->n; i++) {
            if (l->items[i]) {
                json_array_append(items, l->items[i]);
            }
        }
        json_t *root = json_object();
        json_object_set_new(root, "items", items);
        char cur[16];
        snprintf(cur, sizeof cur, "%u", l->next);
        json_object_set_new(root, "next", l->next == MATCHER_NONE ? json_null() : json_string(cur));
        api_reply_json(l->req, 200, root, NULL);
    }
    for (size_t i = 0; i < l->n; i++) {
        json_decref(l->items[i]);
    }
    free(l->items);
    free(l);
}

static void list_on_doc(void *arg, int rc, const store_doc_t *d) {
    list_item_t *it = arg;
    list_ctx_t *l = it->l;
    if (rc == 0) {
        json_t *doc = json_loadb(d->doc, d->len, 0, NULL);
        if (json_is_object(doc)) {
            ent_decorate(doc, d->ver, d->created_ms, d->updated_ms);
            l->items[it->i] = doc;
        } else {
            json_decref(doc);
        }
    } else if (rc != -ENOENT && !l->failed) {
        l->failed = rc; /* deleted meanwhile is fine; anything else fails the page */
    }
    free(it);
    if (--l->left == 0) {
        list_finish(l);
    }
}

/* Parses "tag=a,b" into an all-of rule; answers and returns -1 on an unknown tag. */
static int list_rule(app_t *app, api_req_t *req, rule_t *r) {
    char buf[1024];
    memset(r, 0, sizeof *r);
    int q = api_query(req, "tag", buf, sizeof buf);
    if (q < 0) {
        api_error(req, 400, "invalid_parameter", "tag", "tag is malformed or too long");
        return -1;
    }
    if (q == 0 || buf[0] == '\0') {
        return 0;
    }
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int bit = taxonomy_find(app->tax, TAX_ENTERPRISE, t, strlen(t));
        if (bit < 0) {
            api_error(req, 400, "unknown_tag", "tag", "unknown enterprise tag '%.64s'", t);
            return -1;
        }
        if (r->nall == RULE_MAX_PART) {
            api_error(req, 400, "too_many", "tag", "at most %d tags", RULE_MAX_PART);
            return -1;
        }
        r->all[r->nall++] = (uint16_t)bit;
    }
    rule_normalize(r, taxonomy_count(app->tax, TAX_ENTERPRISE));
    return 0;
}

void h_ent_list(app_t *app, api_req_t *req) {
    unsigned long long limit = ENT_LIST_DEFAULT;
    unsigned long long cursor = 0;
    rule_t r;
    if (api_query_uint(req, "limit", 1, ENT_LIST_MAX, &limit) ||
        api_query_uint(req, "cursor", 0, MATCHER_MAX_ORD, &cursor) || list_rule(app, req, &r)) {
        return;
    }
    if (!store_loaded(app->store)) {
        api_store_error(req, -EAGAIN, "read");
        return;
    }
    if (!store_redis_up(app->store)) {
        api_store_error(req, -ENOTCONN, "read");
        return;
    }
    const matcher_t *m = store_matcher(app->store);
    uint32_t ords[ENT_LIST_MAX];
    list_ctx_t *l = xcalloc(1, sizeof *l);
    l->req = req;
    l->n = matcher_list(m, &r, app->scratch, (uint32_t)cursor, ords, (size_t)limit, &l->next);
    l->items = xcalloc(l->n + 1, sizeof *l->items);
    if (l->n == 0) {
        list_finish(l);
        return;
    }
    l->left = l->n;
    /* Fetch the page's documents, pipelined on the one connection. Callbacks never
     * run inside store_ent_get, so counting down is safe. */
    for (size_t i = 0; i < l->n; i++) {
        char uscc[19];
        memcpy(uscc, matcher_key(m, ords[i]), 18);
        uscc[18] = '\0';
        list_item_t *it = xmalloc(sizeof *it);
        it->l = l;
        it->i = i;
        int rc = store_ent_get(app->store, uscc, list_on_doc, it);
        if (rc) {
            free(it);
            l->failed = rc;
            /* Items i.. will never be answered. */
            l->left -= l->n - i;
            if (l->left == 0) {
                list_finish(l);
            }
            return;
        }
    }
}

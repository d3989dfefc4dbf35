/* /v1/policies: create, list, read, replace, delete, publish and withdraw. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/access.h"
#include "api/app.h"
#include "api/json_out.h"
#include "api/pol_input.h"
#include "common/xalloc.h"

#define POL_LIST_DEFAULT 50
#define POL_LIST_MAX     500

typedef struct pol_ctx {
    app_t *app;
    api_req_t *req;
    uint32_t id;
    int created;
    int action;
} pol_ctx_t;

/* Reads the {id} path parameter; answers and returns -1 when it is not an id. */
static int pol_path_id(api_req_t *req, uint32_t *id) {
    const char *s = req->param[0];
    char *end = NULL;
    unsigned long v = strtoul(s, &end, 10);
    if (s[0] < '1' || s[0] > '9' || *end != '\0') {
        api_error(req, 404, "not_found", NULL, "no policy '%.40s' (policy ids are numbers)", s);
        return -1;
    }
    if (v >= UINT32_MAX || strlen(s) > 10) {
        /* A number no policy can have: named as sent (strtoul saturates). */
        api_error(req, 404, "not_found", NULL, "no policy %.40s", s);
        return -1;
    }
    *id = (uint32_t)v;
    return 0;
}

/* Answers a failed write. */
static void pol_write_error(pol_ctx_t *c, int rc) {
    api_req_t *req = c->req;
    if (rc == -ENOENT) {
        api_error(req, 404, "not_found", NULL, "no policy %u", c->id);
    } else if (rc == -ESTALE) {
        api_store_error(req, rc, "policy");
    } else if (rc == -EPERM) {
        const store_policy_t *cur = store_policy(c->app->store, c->id);
        api_error(req, 409, "invalid_state", "status", "a %s policy cannot be %s",
                  cur ? pol_status_name(cur->status) : "draft",
                  c->action == STORE_PUBLISH ? "published" : "withdrawn");
    } else {
        api_store_error(req, rc, "policy change");
    }
}

static void pol_on_written(void *arg, int rc, const store_policy_t *p) {
    pol_ctx_t *c = arg;
    if (rc) {
        pol_write_error(c, rc);
    } else if (p == NULL) {
        api_no_content(c->req); /* delete */
    } else {
        char loc[64];
        snprintf(loc, sizeof loc, "Location: /v1/policies/%u\r\n", p->id);
        api_reply_json(c->req, c->created ? 201 : 200, pol_render(c->app, p),
                       c->created ? loc : NULL);
    }
    free(c);
}

/* A publish: the policy and its push job were stored by one script, so "job" is
 * null only when none was due (already published, or notify=false). */
static void pol_on_published(void *arg, int rc, const store_policy_t *p, uint64_t job) {
    pol_ctx_t *c = arg;
    if (rc || p == NULL) {
        pol_write_error(c, rc ? rc : -EPROTO);
    } else {
        json_t *o = pol_render(c->app, p);
        json_object_set_new(o, "job", job ? json_integer((json_int_t)job) : json_null());
        api_reply_json(c->req, 200, o, NULL);
    }
    free(c);
}

static pol_ctx_t *pol_ctx_new(app_t *app, api_req_t *req, uint32_t id) {
    pol_ctx_t *c = xcalloc(1, sizeof *c);
    c->app = app;
    c->req = req;
    c->id = id;
    return c;
}

static void pol_write(app_t *app, api_req_t *req, uint32_t id) {
    json_t *body;
    if (api_read_object(req, &body, 0)) {
        return;
    }
    pol_input_t in;
    ent_err_t e;
    int rc = pol_input_parse(app, body, &in, &e);
    json_decref(body);
    if (rc) {
        pol_input_free(&in);
        api_error(req, e.status, e.code, e.field[0] ? e.field : NULL, "%s", e.msg);
        return;
    }
    size_t text_len;
    int64_t ver = -1;
    if (api_if_match(req, &ver)) {
        pol_input_free(&in);
        return;
    }
    char *text = json_out_str(in.doc, &text_len);
    store_pol_in_t w = {
        .doc = text,
        .doc_len = text_len,
        .rule = &in.rule,
        .opens = in.opens,
        .closes = in.closes,
        .mode = in.mode,
        .ptags = in.ptags,
        .nptags = in.nptags,
        .expect_ver = ver,
    };
    pol_ctx_t *c = pol_ctx_new(app, req, id);
    c->created = id == 0;
    rc = id ? store_pol_update(app->store, id, &w, pol_on_written, c)
            : store_pol_create(app->store, &w, pol_on_written, c);
    free(text);
    pol_input_free(&in);
    if (rc) {
        free(c);
        api_store_error(req, rc, "policy change");
    }
}

void h_pol_create(app_t *app, api_req_t *req) {
    pol_write(app, req, 0);
}

void h_pol_put(app_t *app, api_req_t *req) {
    uint32_t id;
    if (pol_path_id(req, &id)) {
        return;
    }
    pol_write(app, req, id);
}

void h_pol_delete(app_t *app, api_req_t *req) {
    uint32_t id;
    if (pol_path_id(req, &id)) {
        return;
    }
    pol_ctx_t *c = pol_ctx_new(app, req, id);
    int rc = store_pol_delete(app->store, id, pol_on_written, c);
    if (rc) {
        free(c);
        api_store_error(req, rc, "policy change");
    }
}

static void pol_status(app_t *app, api_req_t *req, int action, int quiet) {
    uint32_t id;
    if (pol_path_id(req, &id)) {
        return;
    }
    pol_ctx_t *c = pol_ctx_new(app, req, id);
    c->action = action;
    /* Publishing pushes: a job walks the audience and queues the notices. */
    int rc = action == STORE_PUBLISH
                 ? push_publish(app->push, id, !quiet, pol_on_published, c)
                 : store_pol_set_status(app->store, id, action, pol_on_written, c);
    if (rc) {
        free(c);
        api_store_error(req, rc, "policy change");
    }
}

void h_pol_publish(app_t *app, api_req_t *req) {
    char v[8];
    int has = api_query(req, "notify", v, sizeof v);
    if (has < 0 || (has > 0 && strcmp(v, "true") != 0 && strcmp(v, "false") != 0)) {
        api_error(req, 400, "invalid_parameter", "notify", "notify must be true or false");
        return;
    }
    pol_status(app, req, STORE_PUBLISH, has > 0 && strcmp(v, "false") == 0);
}

void h_pol_withdraw(app_t *app, api_req_t *req) {
    pol_status(app, req, STORE_WITHDRAW, 0);
}

void h_pol_get(app_t *app, api_req_t *req) {
    uint32_t id;
    if (pol_path_id(req, &id)) {
        return;
    }
    if (!store_loaded(app->store)) {
        api_store_error(req, -EAGAIN, "policy");
        return;
    }
    const store_policy_t *p = store_policy(app->store, id);
    /* Enterprise keys see only what could be in a package: a draft or withdrawn
     * policy is as absent for them as an unknown id (the same 404, so the answer
     * does not tell that it exists). */
    if (p && p->status != STORE_POL_PUBLISHED && access_by_enterprise(req)) {
        p = NULL;
    }
    if (p == NULL) {
        api_error(req, 404, "not_found", NULL, "no policy %u", id);
        return;
    }
    char etag[48];
    snprintf(etag, sizeof etag, "ETag: \"%llu\"\r\n", (unsigned long long)p->ver);
    api_reply_json(req, 200, pol_render(app, p), etag);
}

void h_pol_list(app_t *app, api_req_t *req) {
    unsigned long long limit = POL_LIST_DEFAULT;
    unsigned long long cursor = 0;
    if (api_query_uint(req, "limit", 1, POL_LIST_MAX, &limit) ||
        api_query_uint(req, "cursor", 0, UINT32_MAX - 1, &cursor)) {
        return;
    }
    char status[32];
    char tag[64];
    char level[32];
    int has_status = api_query(req, "status", status, sizeof status);
    int has_tag = api_query(req, "tag", tag, sizeof tag);
    int has_level = api_query(req, "level", level, sizeof level);
    int want_status = -1;
    int want_tag = -1;
    if (has_status < 0 || (has_status > 0 && strcmp(status, "draft") != 0 &&
                           strcmp(status, "published") != 0 && strcmp(status, "withdrawn") != 0)) {
        api_error(req, 400, "invalid_parameter", "status",
                  "status must be draft, published or withdrawn");
        return;
    }
    if (has_status > 0) {
        want_status = status[0] == 'd'   ? STORE_POL_DRAFT
                      : status[0] == 'p' ? STORE_POL_PUBLISHED
                                         : STORE_POL_WITHDRAWN;
    }
    if (has_tag < 0) {
        api_error(req, 400, "invalid_parameter", "tag",
                  "tag is malformed, too long or given more than once");
        return;
    }
    if (has_tag > 0 && (want_tag = taxonomy_find(app->tax, TAX_POLICY, tag, strlen(tag))) < 0) {
        api_error(req, 400, "unknown_tag", "tag", "unknown policy tag '%.64s'", tag);
        return;
    }
    /* An unknown level would match nothing: say so rather than answer an empty
     * list, as for status. */
    if (has_level < 0 || (has_level > 0 && !pol_level_valid(level))) {
        api_error(req, 400, "invalid_parameter", "level",
                  "level must be national, provincial, city or district");
        return;
    }
    if (!store_loaded(app->store)) {
        api_store_error(req, -EAGAIN, "policy");
        return;
    }
    json_t *items = json_array();
    const store_policy_t *p = store_policy_next(app->store, (uint32_t)cursor);
    uint32_t last = 0;
    int more = 0;
    for (; p; p = store_policy_next(app->store, p->id)) {
        if (want_status >= 0 && p->status != want_status) {
            continue;
        }
        if (want_tag >= 0) {
            int hit = 0;
            for (uint16_t i = 0; i < p->nptags; i++) {
                hit |= p->ptags[i] == want_tag;
            }
            if (!hit) {
                continue;
            }
        }
        if (has_level > 0) {
            const char *lv = json_string_value(json_object_get(pol_doc(app, p), "level"));
            if (lv == NULL || strcmp(lv, level) != 0) {
                continue;
            }
        }
        if (json_array_size(items) == limit) {
            more = 1;
            break;
        }
        json_array_append_new(items, pol_render(app, p));
        last = p->id;
    }
    json_t *root = json_object();
    json_object_set_new(root, "items", items);
    char next[16];
    snprintf(next, sizeof next, "%u", last);
    json_object_set_new(root, "next", more ? json_string(next) : json_null());
    api_reply_json(req, 200, root, NULL);
}

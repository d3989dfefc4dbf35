/* Builds the JSON body of each webhook delivery for the push engine (which cannot
 * read documents itself): the event type, the time, the policy as published and
 * the enterprises concerned, read from Redis. It also decides that a notice has
 * expired: its policy was withdrawn, deleted or closed before it could go out. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/app.h"
#include "api/ent_input.h"
#include "api/json_out.h"
#include "api/pol_input.h"
#include "common/xalloc.h"
#include "push/push.h"
#include "tags/date.h"

#define RENDER_MAX_RECIPIENTS 2000

typedef struct render {
    app_t *app;
    push_render_done done;
    void *ctx;
    json_t *root;    /* the event being built */
    json_t *targets; /* enterprise objects, in order */
    size_t left;
    int failed;
    int granted; /* also fetch the grant record */
    uint32_t policy;
    char uscc[19];
} render_t;

static json_t *render_policy(app_t *app, const store_policy_t *p) {
    json_t *doc = pol_doc(app, p);
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(p->id));
    static const char *const keep[] = {"title", "issuer", "level", "mode",  "url",
                                       "summary", "tags",  "opens", "closes"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        json_t *x = json_object_get(doc, keep[i]);
        if (x) {
            json_object_set(o, keep[i], x);
        }
    }
    json_object_set_new(o, "version", json_integer((json_int_t)p->ver));
    return o;
}

/* The enterprise as a receiver needs it: code, name, contact. */
static json_t *render_enterprise(const char *uscc, const store_doc_t *d) {
    json_t *o = json_object();
    json_object_set_new(o, "uscc", json_stringn(uscc, 18));
    json_t *doc = d ? json_loadb(d->doc, d->len, 0, NULL) : NULL;
    if (json_is_object(doc)) {
        static const char *const keep[] = {"name", "region", "contact"};
        for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
            json_t *x = json_object_get(doc, keep[i]);
            if (x) {
                json_object_set(o, keep[i], x);
            }
        }
    }
    json_decref(doc);
    return o;
}

static void render_finish(render_t *r) {
    json_t *data = json_object_get(r->root, "data");
    json_t *one = json_object_get(data, "enterprises_");
    if (one) {
        json_t *e = json_array_get(one, 0);
        json_object_set(data, "enterprise", e ? e : json_null());
        json_object_del(data, "enterprises_");
    }
    if (r->failed) {
        r->done(r->ctx, r->failed, NULL, 0, "could not read the enterprises of this notice");
    } else {
        sbuf_t s;
        sbuf_init(&s, 1024);
        json_out(&s, r->root);
        r->done(r->ctx, 0, s.p, s.len, NULL);
        sbuf_free(&s);
    }
    json_decref(r->root);
    free(r);
}

typedef struct render_one {
    render_t *r;
    size_t i;
    char uscc[19];
} render_one_t;

static void render_on_doc(void *arg, int rc, const store_doc_t *d) {
    render_one_t *one = arg;
    render_t *r = one->r;
    if (rc && rc != -ENOENT) {
        r->failed = rc;
    } else {
        json_array_set_new(r->targets, one->i, render_enterprise(one->uscc, rc ? NULL : d));
    }
    free(one);
    if (--r->left == 0) {
        render_finish(r);
    }
}

static void render_on_grant(void *arg, int rc, const store_kv_t *kv, size_t n) {
    (void)n;
    render_t *r = arg;
    json_t *data = json_object_get(r->root, "data");
    if (rc == 0) {
        char buf[64];
        size_t len = kv[0].vlen < sizeof buf - 1 ? kv[0].vlen : sizeof buf - 1;
        memcpy(buf, kv[0].v, len);
        buf[len] = '\0';
        char *colon = strchr(buf, ':');
        int64_t at = strtoll(buf, NULL, 10);
        char ts[40];
        ent_time_format(at, ts, sizeof ts);
        json_object_set_new(data, "granted_at", json_string(ts));
        json_object_set_new(data, "rule_version",
                            json_integer(colon ? strtoll(colon + 1, NULL, 10) : 0));
    } else if (rc != -ENOENT) {
        r->failed = rc;
    }
    if (--r->left == 0) {
        render_finish(r);
    }
}

/* Fetches the documents of 'codes' (a comma list) into r->targets. */
static void render_fetch(render_t *r, const char *codes) {
    app_t *app = r->app;
    size_t n = 0;
    const char *c = codes;
    r->left = 1; /* held until all requests are sent */
    while (*c && n < RENDER_MAX_RECIPIENTS) {
        const char *comma = strchr(c, ',');
        size_t len = comma ? (size_t)(comma - c) : strlen(c);
        if (len == 18) {
            render_one_t *one = xcalloc(1, sizeof *one);
            one->r = r;
            one->i = n;
            memcpy(one->uscc, c, 18);
            json_array_append_new(r->targets, json_null());
            if (store_ent_get(app->store, one->uscc, render_on_doc, one) != 0) {
                free(one);
                r->failed = -ENOTCONN;
            } else {
                r->left++;
                n++;
            }
        }
        c += len + (comma ? 1 : 0);
        if (!comma) {
            break;
        }
    }
    if (r->granted && !r->failed) {
        if (store_grant_get(app->store, r->policy, r->uscc, render_on_grant, r) == 0) {
            r->left++;
        } else {
            r->failed = -ENOTCONN;
        }
    }
    if (--r->left == 0) {
        render_finish(r);
    }
}

/* Whether a notice about 'p' may still go out today; the reason when not. */
static const char *render_expired(app_t *app, const store_policy_t *p) {
    if (p == NULL) {
        return "the policy was deleted";
    }
    if (p->status != STORE_POL_PUBLISHED) {
        return "the policy was withdrawn";
    }
    int32_t today = app_today(app);
    if (p->closes != DATE_NONE && today > p->closes) {
        return "the policy closed";
    }
    return NULL;
}

void app_render(void *arg, const push_item_t *it, const char *stored, size_t stored_len,
                push_render_done done, void *ctx) {
    app_t *app = arg;
    const store_policy_t *p = NULL;
    if (it->pol[0]) {
        p = store_policy(app->store, (uint32_t)strtoul(it->pol, NULL, 10));
        const char *why = render_expired(app, p);
        if (why) {
            done(ctx, -ECANCELED, NULL, 0, why);
            return;
        }
    }
    if (stored) {
        /* A retry: the same bytes as the first attempt. */
        done(ctx, 0, stored, stored_len, NULL);
        return;
    }
    render_t *r = xcalloc(1, sizeof *r);
    r->app = app;
    r->done = done;
    r->ctx = ctx;
    r->root = json_object();
    json_object_set_new(r->root, "type", json_string(it->ev));
    char ts[40];
    int64_t when = it->queued_ms;
    if (when <= 0) {
        uv_timeval64_t tv;
        uv_gettimeofday(&tv);
        when = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    }
    /* The time the notice was queued: stable across a resend after a crash. */
    ent_time_format(when, ts, sizeof ts);
    json_object_set_new(r->root, "timestamp", json_string(ts));
    json_t *data = json_object();
    json_object_set_new(r->root, "data", data);
    if (p) {
        json_object_set_new(data, "policy", render_policy(app, p));
    }
    if (it->job[0]) {
        json_object_set_new(data, "job", json_integer(strtoll(it->job, NULL, 10)));
    }
    r->targets = json_array();
    /* A batch lists its recipients; a single notice's one enterprise lands in
     * data.enterprise once fetched (held in a temporary array until then). */
    json_object_set_new(data, strcmp(it->ev, "package.batch") == 0 ? "recipients" : "enterprises_",
                        r->targets);
    if (strcmp(it->ev, "enterprise.package_changed") == 0) {
        json_t *added = json_array(), *removed = json_array();
        const char *lists[2] = {it->added, it->removed};
        json_t *arrs[2] = {added, removed};
        for (int k = 0; k < 2; k++) {
            const char *c = lists[k];
            while (*c) {
                json_array_append_new(arrs[k], json_integer(strtoll(c, NULL, 10)));
                const char *comma = strchr(c, ',');
                if (!comma) {
                    break;
                }
                c = comma + 1;
            }
        }
        json_object_set_new(data, "added", added);
        json_object_set_new(data, "removed", removed);
    }
    if (strcmp(it->ev, "policy.granted") == 0 && p && strlen(it->u) == 18) {
        r->granted = 1;
        r->policy = p->id;
        memcpy(r->uscc, it->u, 18);
    }
    render_fetch(r, it->u);
}

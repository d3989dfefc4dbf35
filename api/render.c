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
#include "common/sbuf.h"
#include "common/xalloc.h"
#include "push/push.h"
#include "tags/date.h"

#define RENDER_MAX_RECIPIENTS 2000

typedef struct render {
    app_t *app;
    push_render_done done;
    void *ctx;
    json_t *root;      /* the event being built */
    json_t *targets;   /* one enterprise: its object lands here */
    int batch;         /* package.batch: recipients are spliced in as text */
    sbuf_t recipients; /* package.batch: the recipients' cards, comma separated */
    size_t left;
    int failed;
    int granted; /* also fetch the grant record */
    char *codes; /* the codes being fetched, 18 bytes each */
    uint32_t policy;
    char uscc[19];
} render_t;

static json_t *render_policy(app_t *app, const store_policy_t *p) {
    json_t *doc = pol_doc(app, p);
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(p->id));
    static const char *const keep[] = {"title",   "issuer", "level", "mode",  "url",
                                       "summary", "tags",   "opens", "closes"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        json_t *x = json_object_get(doc, keep[i]);
        if (x) {
            json_object_set(o, keep[i], x);
        }
    }
    json_object_set_new(o, "version", json_integer((json_int_t)p->ver));
    return o;
}

/* The enterprise as a receiver needs it, from its stored card or document (the
 * same fields either way: see ent_card). */
static json_t *render_enterprise(const char *uscc, const char *text, size_t len) {
    json_t *doc = text ? json_loadb(text, len, 0, NULL) : NULL;
    json_t *o = ent_card_object(doc, uscc);
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
        sbuf_init(&s, 1024 + r->recipients.len);
        json_out(&s, r->root);
        /* A batch's recipients are the last member of the last member: the text
         * ends in "[]}}", where the cards go. */
        if (r->batch && s.len >= 4 && memcmp(s.p + s.len - 4, "[]}}", 4) == 0) {
            s.len -= 3;
            sbuf_add(&s, r->recipients.p, r->recipients.len);
            sbuf_add(&s, "]}}", 3);
        }
        r->done(r->ctx, 0, s.p, s.len, NULL);
        sbuf_free(&s);
    }
    json_decref(r->root);
    sbuf_free(&r->recipients);
    free(r);
}

static void render_on_cards(void *arg, int rc, const store_kv_t *kv, size_t n) {
    render_t *r = arg;
    if (rc) {
        r->failed = rc;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *uscc = r->codes + i * 18;
        int card = kv[i].klen == 1 && kv[i].k[0] == 'c';
        int doc = kv[i].klen == 1 && kv[i].k[0] == 'd';
        if (r->batch) {
            if (r->recipients.len) {
                sbuf_add(&r->recipients, ",", 1);
            }
            if (card) {
                sbuf_add(&r->recipients, kv[i].v, kv[i].vlen); /* as stored: no parsing */
            } else {
                json_t *o = render_enterprise(uscc, doc ? kv[i].v : NULL, kv[i].vlen);
                json_out(&r->recipients, o);
                json_decref(o);
            }
        } else {
            json_array_append_new(
                r->targets, render_enterprise(uscc, card || doc ? kv[i].v : NULL, kv[i].vlen));
        }
    }
    free(r->codes);
    r->codes = NULL;
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

/* Fetches the cards of 'codes' (a comma list), in one round trip. */
static void render_fetch(render_t *r, const char *codes) {
    app_t *app = r->app;
    size_t n = 0;
    const char *c = codes;
    const char *list[RENDER_MAX_RECIPIENTS];
    r->codes = xmalloc(RENDER_MAX_RECIPIENTS * 18);
    r->left = 1; /* held until all requests are sent */
    while (*c && n < RENDER_MAX_RECIPIENTS) {
        const char *comma = strchr(c, ',');
        size_t len = comma ? (size_t)(comma - c) : strlen(c);
        if (len == 18) {
            memcpy(r->codes + n * 18, c, 18);
            list[n] = r->codes + n * 18;
            n++;
        }
        c += len + (comma ? 1 : 0);
        if (!comma) {
            break;
        }
    }
    if (n == 0) {
        free(r->codes);
        r->codes = NULL;
    } else if (store_ent_cards(app->store, list, n, render_on_cards, r) == 0) {
        r->left++;
    } else {
        free(r->codes);
        r->codes = NULL;
        r->failed = -ENOTCONN;
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
    r->batch = strcmp(it->ev, "package.batch") == 0;
    sbuf_init(&r->recipients, r->batch ? 65536 : 16);
    json_object_set_new(data, r->batch ? "recipients" : "enterprises_", r->targets);
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

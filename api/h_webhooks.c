/* /v1/webhooks: subscriptions to push events, their signing secrets (Standard
 * Webhooks "whsec_" secrets, rotated without downtime; optional ed25519), and
 * replays of past deliveries. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/app.h"
#include "api/ent_input.h"
#include "api/json_out.h"
#include "common/xalloc.h"
#include "push/sign.h"
#include "push/ssrf.h"

#define WH_DEFAULT_INFLIGHT 16
#define WH_DEFAULT_BATCH    500
#define WH_MAX_SECRETS      4

static const char *const wh_events[] = {"policy.matched", "package.batch", "policy.granted",
                                        "enterprise.package_changed"};
#define WH_NEVENTS 4

typedef struct wh_ctx {
    app_t *app;
    api_req_t *req;
    uint32_t id;
    int created;
    char secret[96]; /* shown in the answer when just made */
    char pk[96];
    /* pending write, kept while the host name resolves */
    store_wh_in_t in;
    char *doc, *url, *secrets, *sk;
    int64_t expect_ver;
    uv_getaddrinfo_t gai;
} wh_ctx_t;

static void wh_ctx_free(wh_ctx_t *c) {
    free(c->doc);
    free(c->url);
    free(c->secrets);
    free(c->sk);
    free(c);
}

static int wh_path_id(api_req_t *req, uint32_t *id) {
    const char *s = req->param[0];
    char *end = NULL;
    unsigned long v = strtoul(s, &end, 10);
    if (s[0] < '1' || s[0] > '9' || *end != '\0' || v >= UINT32_MAX) {
        api_error(req, 404, "not_found", NULL, "no webhook '%.40s'", s);
        return -1;
    }
    *id = (uint32_t)v;
    return 0;
}

/* The API view: the stored document plus id, state and times; secrets never. */
static json_t *wh_render(const store_webhook_t *w) {
    json_t *o = json_loadb(w->doc, w->doc_len, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        o = json_object();
    }
    json_object_set_new(o, "id", json_integer(w->id));
    json_object_set_new(o, "state", json_string(w->disabled ? "disabled" : "active"));
    if (w->disabled && w->reason[0]) {
        json_object_set_new(o, "disabled_reason", json_string(w->reason));
    }
    json_object_set_new(o, "version", json_integer((json_int_t)w->ver));
    /* How many secrets sign right now (more than one during a rotation). */
    unsigned n = 0;
    for (const char *c = w->secrets; *c; c++) {
        n += c == w->secrets || c[-1] == ' ';
    }
    json_object_set_new(o, "secrets_active", json_integer(n));
    if (w->sk[0]) {
        char pk[96];
        if (whsig_ed25519_public(w->sk, pk, sizeof pk) == 0) {
            json_object_set_new(o, "public_key", json_string(pk));
        }
    }
    char ts[40];
    ent_time_format(w->created_ms, ts, sizeof ts);
    json_object_set_new(o, "created_at", json_string(ts));
    ent_time_format(w->updated_ms, ts, sizeof ts);
    json_object_set_new(o, "updated_at", json_string(ts));
    if (w->failing_since_ms) {
        ent_time_format(w->failing_since_ms, ts, sizeof ts);
        json_object_set_new(o, "failing_since", json_string(ts));
    }
    return o;
}

static void wh_on_written(void *arg, int rc, const store_webhook_t *w) {
    wh_ctx_t *c = arg;
    if (rc == -ENOENT) {
        api_error(c->req, 404, "not_found", NULL, "no webhook %u", c->id);
    } else if (rc) {
        api_store_error(c->req, rc, "webhook change");
    } else if (w == NULL) {
        api_no_content(c->req);
    } else {
        json_t *o = wh_render(w);
        if (c->secret[0]) {
            /* The secret is shown when it is made, and never again. */
            json_object_set_new(o, "secret", json_string(c->secret));
        }
        char loc[64];
        snprintf(loc, sizeof loc, "Location: /v1/webhooks/%u\r\n", w->id);
        api_reply_json(c->req, c->created ? 201 : 200, o, c->created ? loc : NULL);
    }
    wh_ctx_free(c);
}

static void wh_write(wh_ctx_t *c) {
    c->in.doc = c->doc;
    c->in.doc_len = strlen(c->doc);
    c->in.url = c->url;
    c->in.secrets = c->secrets;
    c->in.sk = c->sk;
    c->in.expect_ver = c->expect_ver;
    int rc = store_wh_put(c->app->store, c->id, &c->in, wh_on_written, c);
    if (rc) {
        api_store_error(c->req, rc, "webhook change");
        wh_ctx_free(c);
    }
}

static void wh_on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res) {
    wh_ctx_t *c = g->data;
    int blocked = 0;
    for (struct addrinfo *a = res; status == 0 && a; a = a->ai_next) {
        blocked |= !ssrf_addr_allowed(&c->app->ssrf, a->ai_addr);
    }
    uv_freeaddrinfo(res);
    if (blocked) {
        api_error(c->req, 400, "invalid_url", "url",
                  "the webhook host resolves to a private, local or reserved address");
        wh_ctx_free(c);
        return;
    }
    /* A name that does not resolve now is accepted: every connection is checked
     * again at connect time, which is the check that counts. */
    wh_write(c);
}

/* Validates a webhook body into c (new: all fields; update: merged onto 'cur'). */
static int wh_parse(app_t *app, api_req_t *req, json_t *body, const store_webhook_t *cur,
                    wh_ctx_t *c, int *resolve) {
    json_t *doc = cur ? json_loadb(cur->doc, cur->doc_len, 0, NULL) : json_object();
    if (!json_is_object(doc)) {
        json_decref(doc);
        doc = json_object();
    }
    const char *k;
    json_t *v;
    const char *secret = NULL;
    const char *signing = NULL;
    json_object_foreach(body, k, v) {
        if (strcmp(k, "url") == 0) {
            ssrf_url_t u;
            char why[160];
            if (!json_is_string(v) ||
                ssrf_check_url(&app->ssrf, json_string_value(v), &u, why, sizeof why) != 0) {
                api_error(req, 400, "invalid_url", "url", "%s",
                          json_is_string(v) ? why : "url must be a string");
                json_decref(doc);
                return -1;
            }
            *resolve = !u.host_is_ip;
            json_object_set(doc, "url", v);
        } else if (strcmp(k, "events") == 0) {
            if (!json_is_array(v) || json_array_size(v) == 0) {
                api_error(req, 400, "invalid_value", "events",
                          "events must be a non-empty list of event types");
                json_decref(doc);
                return -1;
            }
            size_t i;
            json_t *e;
            /* A list of event types is a set: a repeated one is kept once (it would
             * not be delivered twice either). */
            json_t *set = json_array();
            json_array_foreach(v, i, e) {
                int found = 0;
                for (int t = 0; t < WH_NEVENTS; t++) {
                    found |= json_is_string(e) && strcmp(json_string_value(e), wh_events[t]) == 0;
                }
                if (!found) {
                    api_error(req, 400, "invalid_value", "events",
                              "unknown event '%.60s' (use policy.matched, package.batch, "
                              "policy.granted, enterprise.package_changed)",
                              json_is_string(e) ? json_string_value(e) : "?");
                    json_decref(set);
                    json_decref(doc);
                    return -1;
                }
                int seen = 0;
                for (size_t j = 0; j < json_array_size(set); j++) {
                    seen |= json_equal(json_array_get(set, j), e);
                }
                if (!seen) {
                    json_array_append(set, e);
                }
            }
            json_object_set_new(doc, "events", set);
        } else if (strcmp(k, "secret") == 0) {
            whsig_secret_t s;
            if (!json_is_string(v) || whsig_secret_parse(json_string_value(v), &s) != 0) {
                api_error(req, 400, "invalid_value", "secret",
                          "secret must be whsec_ followed by 24 to 64 bytes in base64");
                json_decref(doc);
                return -1;
            }
            secret = json_string_value(v);
        } else if (strcmp(k, "signing") == 0) {
            signing = json_string_value(v);
            if (!signing ||
                (strcmp(signing, "v1") && strcmp(signing, "v1a") && strcmp(signing, "v1+v1a"))) {
                api_error(req, 400, "invalid_value", "signing",
                          "signing must be v1 (HMAC-SHA256), v1a (ed25519) or v1+v1a");
                json_decref(doc);
                return -1;
            }
            json_object_set(doc, "signing", v);
        } else if (strcmp(k, "rate") == 0 || strcmp(k, "inflight") == 0 ||
                   strcmp(k, "batch") == 0) {
            double max = k[0] == 'r' ? 100000 : k[0] == 'i' ? 1000 : 5000;
            if (!json_is_number(v) || json_number_value(v) < (k[0] == 'r' ? 0 : 1) ||
                json_number_value(v) > max || (k[0] != 'r' && !json_is_integer(v))) {
                api_error(req, 400, "invalid_value", k, "%s must be a number from %d to %.0f", k,
                          k[0] == 'r' ? 0 : 1, max);
                json_decref(doc);
                return -1;
            }
            json_object_set(doc, k, v);
        } else if (strcmp(k, "description") == 0) {
            if (!json_is_string(v) || json_string_length(v) > 500) {
                api_error(req, 400, "invalid_value", k, "description is up to 500 characters");
                json_decref(doc);
                return -1;
            }
            json_object_set(doc, k, v);
        } else if (strcmp(k, "enabled") == 0) {
            if (!json_is_boolean(v)) {
                api_error(req, 400, "invalid_type", k, "enabled must be true or false");
                json_decref(doc);
                return -1;
            }
            c->in.disabled = !json_is_true(v);
            c->in.reason = c->in.disabled ? "disabled by an operator" : "";
        } else if (strcmp(k, "id") && strcmp(k, "state") && strcmp(k, "version") &&
                   strcmp(k, "created_at") && strcmp(k, "updated_at") &&
                   strcmp(k, "secrets_active") && strcmp(k, "public_key") &&
                   strcmp(k, "disabled_reason") && strcmp(k, "failing_since")) {
            api_error(req, 400, "unknown_field", k, "unknown field '%.40s'", k);
            json_decref(doc);
            return -1;
        }
    }
    if (json_object_get(doc, "url") == NULL || json_object_get(doc, "events") == NULL) {
        api_error(req, 400, "missing_field", json_object_get(doc, "url") ? "events" : "url",
                  "a webhook needs a url and a list of events");
        json_decref(doc);
        return -1;
    }
    unsigned mask = 0;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(doc, "events"), i, e) {
        for (int t = 0; t < WH_NEVENTS; t++) {
            if (strcmp(json_string_value(e), wh_events[t]) == 0) {
                mask |= 1u << t;
            }
        }
    }
    c->in.events = mask;
    json_t *x;
    c->in.rate = (x = json_object_get(doc, "rate")) ? json_number_value(x) : 0;
    c->in.inflight = (x = json_object_get(doc, "inflight")) ? (unsigned)json_integer_value(x)
                                                            : WH_DEFAULT_INFLIGHT;
    c->in.batch =
        (x = json_object_get(doc, "batch")) ? (unsigned)json_integer_value(x) : WH_DEFAULT_BATCH;
    c->url = xstrdup(json_string_value(json_object_get(doc, "url")));
    /* Secrets: keep the current ones on an update, make or take one when new. */
    if (cur && secret == NULL) {
        c->secrets = xstrdup(cur->secrets);
    } else if (secret) {
        c->secrets = xstrdup(secret);
        snprintf(c->secret, sizeof c->secret, "%s", secret);
    } else {
        whsig_secret_t s;
        if (whsig_secret_generate(&s, c->secret, sizeof c->secret) != 0) {
            api_error(req, 500, "internal", NULL, "no random source for a secret");
            json_decref(doc);
            return -1;
        }
        c->secrets = xstrdup(c->secret);
    }
    const char *sg = json_string_value(json_object_get(doc, "signing"));
    if (sg && strstr(sg, "v1a")) {
        if (cur && cur->sk[0]) {
            c->sk = xstrdup(cur->sk);
        } else {
            char sk[96];
            if (whsig_ed25519_generate(sk, sizeof sk, c->pk, sizeof c->pk) != 0) {
                api_error(req, 500, "internal", NULL, "could not make a signing key");
                json_decref(doc);
                return -1;
            }
            c->sk = xstrdup(sk);
        }
    } else {
        c->sk = xstrdup("");
    }
    if (sg && strcmp(sg, "v1a") == 0) {
        /* ed25519 only: no HMAC secret signs. */
        free(c->secrets);
        c->secrets = xstrdup("");
        c->secret[0] = '\0';
    }
    if (!json_object_get(doc, "signing")) {
        json_object_set_new(doc, "signing", json_string("v1"));
    }
    c->doc = json_out_str(doc, &(size_t){0});
    json_decref(doc);
    return 0;
}

static void wh_submit(wh_ctx_t *c, int resolve) {
    if (!resolve) {
        wh_write(c);
        return;
    }
    ssrf_url_t u;
    char why[64];
    ssrf_check_url(&c->app->ssrf, c->url, &u, why, sizeof why);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    c->gai.data = c;
    if (uv_getaddrinfo(c->app->loop, &c->gai, wh_on_resolved, u.host, NULL, &hints) != 0) {
        wh_write(c);
    }
}

void h_wh_create(app_t *app, api_req_t *req) {
    json_t *body;
    if (api_read_object(req, &body, 0)) {
        return;
    }
    wh_ctx_t *c = xcalloc(1, sizeof *c);
    c->app = app;
    c->req = req;
    c->created = 1;
    c->expect_ver = -1;
    int resolve = 0;
    c->in.reason = "";
    if (wh_parse(app, req, body, NULL, c, &resolve)) {
        json_decref(body);
        wh_ctx_free(c);
        return;
    }
    json_decref(body);
    wh_submit(c, resolve);
}

/* Whether the update parsed into 'c' leaves webhook 'cur' as it is. A stale
 * If-Match ('ver') is never a no-op: the store answers it with 412. */
static int wh_unchanged(const wh_ctx_t *c, const store_webhook_t *cur, int64_t ver) {
    return (ver < 0 || (uint64_t)ver == cur->ver) && strlen(c->doc) == cur->doc_len &&
           memcmp(c->doc, cur->doc, cur->doc_len) == 0 && strcmp(c->secrets, cur->secrets) == 0 &&
           strcmp(c->sk, cur->sk) == 0 && c->in.disabled == cur->disabled;
}

void h_wh_update(app_t *app, api_req_t *req) {
    uint32_t id;
    int64_t ver;
    if (wh_path_id(req, &id) || api_if_match(req, &ver)) {
        return;
    }
    const store_webhook_t *cur = store_webhook(app->store, id);
    if (cur == NULL) {
        api_error(req, 404, "not_found", NULL, "no webhook %u", id);
        return;
    }
    json_t *body;
    if (api_read_object(req, &body, 1)) {
        return;
    }
    wh_ctx_t *c = xcalloc(1, sizeof *c);
    c->app = app;
    c->req = req;
    c->id = id;
    c->expect_ver = ver >= 0 ? ver : (int64_t)cur->ver;
    c->in.disabled = cur->disabled;
    c->in.reason = cur->reason;
    int resolve = 0;
    if (wh_parse(app, req, body, cur, c, &resolve)) {
        json_decref(body);
        wh_ctx_free(c);
        return;
    }
    json_decref(body);
    if (wh_unchanged(c, cur, ver)) {
        /* Nothing to write: the version stays, as for an enterprise PUT that
         * changes nothing. */
        api_reply_json(req, 200, wh_render(cur), NULL);
        wh_ctx_free(c);
        return;
    }
    /* Re-enabling clears the reason; a changed URL is checked again. */
    wh_submit(c, resolve);
}

void h_wh_get(app_t *app, api_req_t *req) {
    uint32_t id;
    if (wh_path_id(req, &id)) {
        return;
    }
    const store_webhook_t *w = store_webhook(app->store, id);
    if (w == NULL) {
        api_error(req, 404, "not_found", NULL, "no webhook %u", id);
        return;
    }
    api_reply_json(req, 200, wh_render(w), NULL);
}

void h_wh_list(app_t *app, api_req_t *req) {
    json_t *items = json_array();
    for (const store_webhook_t *w = store_webhook_next(app->store, 0); w;
         w = store_webhook_next(app->store, w->id)) {
        json_array_append_new(items, wh_render(w));
    }
    json_t *root = json_object();
    json_object_set_new(root, "items", items);
    json_object_set_new(root, "next", json_null());
    api_reply_json(req, 200, root, NULL);
}

void h_wh_delete(app_t *app, api_req_t *req) {
    uint32_t id;
    if (wh_path_id(req, &id)) {
        return;
    }
    wh_ctx_t *c = xcalloc(1, sizeof *c);
    c->app = app;
    c->req = req;
    c->id = id;
    int rc = store_wh_del(app->store, id, wh_on_written, c);
    if (rc) {
        api_store_error(req, rc, "webhook change");
        wh_ctx_free(c);
    }
}

void h_wh_rotate(app_t *app, api_req_t *req) {
    uint32_t id;
    if (wh_path_id(req, &id)) {
        return;
    }
    const store_webhook_t *cur = store_webhook(app->store, id);
    if (cur == NULL) {
        api_error(req, 404, "not_found", NULL, "no webhook %u", id);
        return;
    }
    unsigned long long grace = 86400;
    if (api_query_uint(req, "expire_old_in", 0, 30ULL * 86400, &grace)) {
        return;
    }
    wh_ctx_t *c = xcalloc(1, sizeof *c);
    c->app = app;
    c->req = req;
    c->id = id;
    c->expect_ver = (int64_t)cur->ver;
    whsig_secret_t s;
    if (whsig_secret_generate(&s, c->secret, sizeof c->secret) != 0) {
        api_error(req, 500, "internal", NULL, "no random source for a secret");
        wh_ctx_free(c);
        return;
    }
    /* The new secret signs first; the old ones keep signing until the grace
     * period ends, so receivers can switch without missing a delivery. */
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    long long until = (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000 + (long long)grace * 1000;
    sbuf_t sb;
    sbuf_init(&sb, 256);
    sbuf_adds(&sb, c->secret);
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", cur->secrets);
    char *save = NULL;
    unsigned kept = 1;
    long long now = until - (long long)grace * 1000;
    for (char *t = strtok_r(buf, " ", &save); t && kept < WH_MAX_SECRETS;
         t = strtok_r(NULL, " ", &save)) {
        char *colon = strchr(t, ':');
        if (colon) {
            /* Rotated out before: the sooner of its own deadline and this
             * rotation's (a new rotation never extends it; expire_old_in=0
             * ends every old secret now). */
            *colon = '\0';
            long long own = strtoll(colon + 1, NULL, 10);
            long long end = own < until ? own : until;
            if (end > now) {
                sbuf_addf(&sb, " %s:%lld", t, end);
                kept++;
            }
            continue;
        }
        if (grace) {
            sbuf_addf(&sb, " %s:%lld", t, until); /* the current one, rotated out now */
            kept++;
        }
    }
    c->secrets = sb.p;
    c->doc = xstrndup(cur->doc, cur->doc_len);
    c->url = xstrdup(cur->url);
    c->sk = xstrdup(cur->sk);
    c->in.events = cur->events;
    c->in.rate = cur->rate;
    c->in.inflight = cur->inflight;
    c->in.batch = cur->batch;
    c->in.disabled = cur->disabled;
    c->in.reason = cur->reason;
    wh_write(c);
}

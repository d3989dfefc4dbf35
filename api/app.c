/* The application: routes, request dispatch and access logs, start-up (taxonomy,
 * rules, store, server) and shutdown. */
#include "api/app.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/access.h"
#include "api/ent_lane.h"
#include "api/log.h"
#include "api/metrics.h"
#include "api/pol_input.h"
#include "api/retag.h"
#include "common/xalloc.h"
#include "push/sign.h"
#include "tags/date.h"

extern const char huiqi_default_taxonomy[];
extern const char huiqi_default_taxonomy_end[];
extern const char huiqi_default_rules[];
extern const char huiqi_default_rules_end[];

#define SMALL_BODY (64 * 1024) /* what a route without a body may still send */

/* Who may do what: admins everything; operators policies, publishing, pushes,
 * audiences and all enterprises; integrators enterprises, packages and webhooks;
 * enterprise keys their own record and package (ROUTE_SCOPED), tags and policies. */
#define R_AO  (ROLE_ADMIN | ROLE_OPERATOR)
#define R_AOI (ROLE_ADMIN | ROLE_OPERATOR | ROLE_INTEGRATOR)

static const route_t app_routes[] = {
    {HTTPD_GET, "/healthz", h_healthz, ROUTE_PUBLIC, "healthz", NULL, 0},
    {HTTPD_GET, "/readyz", h_readyz, ROUTE_PUBLIC, "readyz", NULL, 0},
    {HTTPD_GET, "/metrics", h_metrics, ROUTE_METRICS, "metrics", NULL, R_AO},
    {HTTPD_GET, "/v1/tags", h_tags_list, 0, "tags.list", NULL, ROLE_ANY},
    {HTTPD_POST, "/v1/enterprises", h_ent_create, ROUTE_BODY, "enterprises.create", NULL, R_AOI},
    {HTTPD_POST, "/v1/enterprises:import", h_ent_import, 0, "enterprises.import", h_ent_import_body,
     R_AOI},
    {HTTPD_POST, "/v1/enterprises:retag", h_retag_start, 0, "enterprises.retag", NULL, ROLE_ADMIN},
    {HTTPD_GET, "/v1/enterprises:retag", h_retag_status, 0, "enterprises.retag_status", NULL, R_AO},
    {HTTPD_GET, "/v1/enterprises", h_ent_list, 0, "enterprises.list", NULL, R_AOI},
    {HTTPD_GET, "/v1/enterprises/:uscc", h_ent_get, ROUTE_SCOPED, "enterprises.get", NULL, R_AOI},
    {HTTPD_PUT, "/v1/enterprises/:uscc", h_ent_put, ROUTE_BODY | ROUTE_SCOPED, "enterprises.put",
     NULL, R_AOI},
    {HTTPD_PATCH, "/v1/enterprises/:uscc", h_ent_patch, ROUTE_BODY | ROUTE_SCOPED,
     "enterprises.patch", NULL, R_AOI},
    {HTTPD_DELETE, "/v1/enterprises/:uscc", h_ent_delete, 0, "enterprises.delete", NULL, R_AOI},
    {HTTPD_GET, "/v1/enterprises/:uscc/policies", h_ent_package, ROUTE_SCOPED,
     "enterprises.package", NULL, R_AOI},
    {HTTPD_POST, "/v1/policies", h_pol_create, ROUTE_BODY, "policies.create", NULL, R_AO},
    {HTTPD_GET, "/v1/policies", h_pol_list, 0, "policies.list", NULL, R_AOI},
    {HTTPD_GET, "/v1/policies/:id", h_pol_get, 0, "policies.get", NULL, ROLE_ANY},
    {HTTPD_PUT, "/v1/policies/:id", h_pol_put, ROUTE_BODY, "policies.put", NULL, R_AO},
    {HTTPD_DELETE, "/v1/policies/:id", h_pol_delete, 0, "policies.delete", NULL, R_AO},
    {HTTPD_POST, "/v1/policies/:id/publish", h_pol_publish, 0, "policies.publish", NULL, R_AO},
    {HTTPD_POST, "/v1/policies/:id/withdraw", h_pol_withdraw, 0, "policies.withdraw", NULL, R_AO},
    {HTTPD_GET, "/v1/policies/:id/audience", h_pol_audience, 0, "policies.audience", NULL, R_AO},
    {HTTPD_POST, "/v1/audience", h_audience_preview, ROUTE_BODY, "audience.preview", NULL, R_AO},
    {HTTPD_POST, "/v1/policies/:id/push", h_pol_push, 0, "policies.push", NULL, R_AO},
    {HTTPD_POST, "/v1/webhooks", h_wh_create, ROUTE_BODY, "webhooks.create", NULL, R_AOI},
    {HTTPD_GET, "/v1/webhooks", h_wh_list, 0, "webhooks.list", NULL, R_AOI},
    {HTTPD_GET, "/v1/webhooks/:id", h_wh_get, 0, "webhooks.get", NULL, R_AOI},
    {HTTPD_PATCH, "/v1/webhooks/:id", h_wh_update, ROUTE_BODY, "webhooks.update", NULL, R_AOI},
    {HTTPD_DELETE, "/v1/webhooks/:id", h_wh_delete, 0, "webhooks.delete", NULL, R_AOI},
    {HTTPD_POST, "/v1/webhooks/:id/rotate", h_wh_rotate, 0, "webhooks.rotate", NULL, R_AOI},
    {HTTPD_POST, "/v1/webhooks/:id/replay", h_wh_replay, 0, "webhooks.replay", NULL, R_AOI},
    {HTTPD_GET, "/v1/jobs/:id", h_job_get, 0, "jobs.get", NULL, R_AO},
    {HTTPD_GET, "/v1/jobs/:id/matches", h_job_matches, 0, "jobs.matches", NULL, R_AO},
    {HTTPD_POST, "/v1/jobs/:id/cancel", h_job_cancel, 0, "jobs.cancel", NULL, R_AO},
    {HTTPD_GET, "/v1/deliveries", h_dlv_list, 0, "deliveries.list", NULL, R_AOI},
    {HTTPD_GET, "/v1/deliveries/:id", h_dlv_get, 0, "deliveries.get", NULL, R_AOI},
    {HTTPD_POST, "/v1/deliveries/:id/retry", h_dlv_retry, 0, "deliveries.retry", NULL, R_AOI},
    {HTTPD_POST, "/v1/keys", h_key_create, ROUTE_BODY, "keys.create", NULL, ROLE_ADMIN},
    {HTTPD_GET, "/v1/keys", h_key_list, 0, "keys.list", NULL, ROLE_ADMIN},
    {HTTPD_GET, "/v1/keys/:id", h_key_get, 0, "keys.get", NULL, ROLE_ADMIN},
    {HTTPD_DELETE, "/v1/keys/:id", h_key_revoke, 0, "keys.revoke", NULL, ROLE_ADMIN},
};

#define NROUTES (sizeof app_routes / sizeof app_routes[0])

const route_t *app_route_table(void) {
    return app_routes;
}

/* Per-request routing outcome kept between head and request time. */
typedef struct route_miss {
    int status;
    char allow[64];
} route_miss_t;

int32_t app_today(const app_t *app) {
    if (app->cfg->today != DATE_NONE) {
        return app->cfg->today;
    }
    return date_at(time(NULL), app->cfg->utc_offset_min);
}

int64_t app_now_ms(void) {
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* ---------------------------------------------------------------------------
 * Dispatch
 * ------------------------------------------------------------------------- */

int app_route(const config_t *cfg, api_req_t *req, const route_t **out, char *allow,
              size_t allowlen) {
    const route_t *rt = NULL;
    int st = router_match(app_routes, NROUTES, req->http->method, req, &rt, allow, allowlen);
    req->http->body_limit = SMALL_BODY;
    if (st == 0) {
        if (rt->flags & ROUTE_BODY) {
            req->http->body_limit = cfg->max_body;
        }
        if (rt->body_fn) {
            req->http->stream = 1;
        }
        *out = rt;
    }
    return st;
}

static int app_on_head(void *arg, api_req_t *req) {
    app_t *app = arg;
    const route_t *rt = NULL;
    route_miss_t *miss = xcalloc(1, sizeof *miss);
    int st = app_route(app->cfg, req, &rt, miss->allow, sizeof miss->allow);
    if (st == 0) {
        free(miss);
        req->route = rt;
        return access_head(app, req, rt);
    }
    miss->status = st;
    req->ctx = miss;
    return 0;
}

static void app_on_request(void *arg, api_req_t *req) {
    app_t *app = arg;
    app->requests++;
    const route_t *rt = req->route;
    if (rt == NULL) {
        route_miss_t *miss = req->ctx;
        req->ctx = NULL;
        int st = miss ? miss->status : 404;
        if (st == 405) {
            char hdr[96];
            snprintf(hdr, sizeof hdr, "Allow: %s\r\n", miss->allow);
            free(miss);
            /* api_error sets no Allow header; build the answer here. */
            json_t *err =
                json_pack("{s:{s:s,s:s,s:n}}", "error", "code", "method_not_allowed", "message",
                          "this resource does not support that method", "field");
            api_reply_json(req, 405, err, hdr);
            return;
        }
        free(miss);
        if (st == 400) {
            api_error(req, 400, "bad_path", NULL, "the path has a malformed %%-escape");
        } else {
            api_error(req, 404, "not_found", NULL, "no such resource: %s", req->path);
        }
        return;
    }
    access_request(app, req);
}

static int app_on_body(void *arg, api_req_t *req, const char *p, size_t n) {
    const route_t *rt = req->route;
    return rt && rt->body_fn ? access_body(arg, req, p, n) : 0;
}

/* What a request left attached when it ends early (refused or abandoned). */
static void app_release(app_t *app, api_req_t *req) {
    const route_t *rt = req->route;
    if (rt == NULL) {
        free(req->ctx); /* a route_miss */
    } else if (rt->body_fn && req->ctx) {
        h_ent_import_abort(app, req);
    }
    req->ctx = NULL;
    access_release(app, req);
}

static void app_on_abort(void *arg, api_req_t *req) {
    app_release(arg, req);
}

static void app_on_done(void *arg, api_req_t *req, size_t body_len) {
    app_t *app = arg;
    const route_t *rt = req->route;
    double ms = (double)(uv_hrtime() - req->start_ns) / 1e6;
    metrics_request(app->metrics, rt ? (long)(rt - app_routes) : -1, req->status, ms / 1e3);
    if (app->cfg->access_log && log_level() <= LOG_LEVEL_INFO) {
        char path[256];
        log_escape(req->path, strlen(req->path), path, sizeof path);
        const char *kid = access_kid(req);
        /* The key's id only: the secret never reaches a log. */
        log_write(LOG_LEVEL_INFO, "request",
                  "\"rid\":\"%s\",\"method\":\"%s\",\"path\":\"%s\",\"route\":\"%s\","
                  "\"status\":%d,\"bytes\":%zu,\"ms\":%.3f,\"key\":%s%s%s",
                  req->id, httpd_method_name(req->http ? req->http->method : HTTPD_OTHER), path,
                  rt ? rt->name : "-", req->status, body_len, ms, kid ? "\"" : "",
                  kid ? kid : "null", kid ? "\"" : "");
    }
    app_release(app, req);
}

/* ---------------------------------------------------------------------------
 * Store events and signals
 * ------------------------------------------------------------------------- */

static void app_on_ent_secret(void *arg, int rc, const store_kv_t *kv, size_t n) {
    app_t *app = arg;
    if (rc == 0 && n == 1 && kv[0].vlen < sizeof app->ent_secret) {
        memcpy(app->ent_secret, kv[0].v, kv[0].vlen);
        app->ent_secret[kv[0].vlen] = '\0';
    }
}

/* The secret for enterprises' own endpoints lives in Redis, made once. */
static void app_load_ent_secret(app_t *app) {
    whsig_secret_t s;
    char text[96];
    if (whsig_secret_generate(&s, text, sizeof text) == 0) {
        store_cfg_get_or_set(app->store, "ent_webhook_secret", text, app_on_ent_secret, app);
    }
}

static void app_on_bootstrap(void *arg, int rc, const store_kv_t *kv, size_t n) {
    (void)arg;
    (void)kv;
    (void)n;
    if (rc == 0) {
        LOG_INFO("admin key created", "\"from\":\"HUIQI_ADMIN_KEY\"");
    } else if (rc != -EEXIST) {
        LOG_WARN("admin key not created", "\"rc\":%d", rc);
    }
}

/* The admin key given at start exists (created if missing; one revoked stays
 * revoked: an id is never brought back). */
static void app_bootstrap_key(app_t *app) {
    char kid[AUTH_KID_LEN + 1], secret[AUTH_SECRET_LEN + 1], hash[65], now[24];
    if (!app->cfg->admin_key[0] || auth_split(app->cfg->admin_key, kid, secret) != 0) {
        return;
    }
    if (auth_hash_hex(secret, hash) != 0) {
        LOG_WARN("admin key not created", "\"rc\":%d", -EIO);
        return;
    }
    snprintf(now, sizeof now, "%lld", (long long)app_now_ms());
    const char *f[] = {"hash",    hash, "role", "admin", "name", "bootstrap (HUIQI_ADMIN_KEY)",
                       "created", now};
    store_key_put(app->store, kid, f, 8, app_on_bootstrap, app);
}

static const char *app_ent_secret(void *arg) {
    app_t *app = arg;
    return app->ent_secret;
}

static int32_t app_today_cb(void *arg) {
    return app_today(arg);
}

static void app_on_ent_change(void *arg, const char *uscc, uint32_t ord, const uint64_t *old_row,
                              const uint64_t *new_row) {
    app_t *app = arg;
    if (app->push) {
        push_on_enterprise(app->push, uscc, ord, old_row, new_row);
    }
}

static void app_on_store_event(void *arg, int event, const char *detail) {
    app_t *app = arg;
    char d[512];
    log_escape(detail ? detail : "", detail ? strlen(detail) : 0, d, sizeof d);
    switch (event) {
    case STORE_EV_READY:
        /* Policies may have been reloaded with ids and versions that collide with
         * cached views of different content (Redis came back empty). */
        pol_cache_free(app);
        app_load_ent_secret(app);
        app_bootstrap_key(app);
        /* A full load leaves megabytes of freed reply buffers in the heap: give
         * them back to the system rather than keep them resident. */
        malloc_trim(0);
        LOG_INFO("ready", "\"detail\":\"%s\"", d);
        /* Tags that time has changed since they were written are re-derived now,
         * before /readyz admits traffic, not at the re-tag worker's next tick. */
        if (app->retag) {
            retag_on_loaded(app->retag);
        }
        break;
    case STORE_EV_DOWN:
        LOG_WARN("redis down", "\"detail\":\"%s\"", d);
        break;
    case STORE_EV_LOADING:
        LOG_INFO("reloading", "\"detail\":\"%s\"", d);
        break;
    case STORE_EV_FATAL:
        LOG_ERROR("fatal", "\"detail\":\"%s\"", d);
        fprintf(stderr, "huiqid: %s\n", detail ? detail : "fatal error");
        app->exit_code = 1;
        app_stop(app);
        break;
    default:
        break;
    }
}

static void app_on_signal(uv_signal_t *h, int signum) {
    app_t *app = h->data;
    LOG_INFO("stopping", "\"signal\":%d", signum);
    app_stop(app);
}

/* ---------------------------------------------------------------------------
 * Start and stop
 * ------------------------------------------------------------------------- */

static char *app_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    size_t cap = 65536;
    size_t n = 0;
    char *buf = xmalloc(cap);
    size_t k;
    while ((k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            if (cap > (64u << 20)) {
                break; /* no sane taxonomy or rules file is this large */
            }
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static int app_load_text(const char *path, const char *def, const char *def_end, char **buf,
                         size_t *len, const char *what) {
    if (path == NULL) {
        *len = (size_t)(def_end - def);
        *buf = xmemdup(def, *len);
        return 0;
    }
    *buf = app_read_file(path, len);
    if (*buf == NULL) {
        fprintf(stderr, "huiqid: cannot read the %s file %s: %s\n", what, path, strerror(errno));
        return -1;
    }
    return 0;
}

static void app_group_keys(app_t *app) {
    unsigned ntags = taxonomy_count(app->tax, TAX_ENTERPRISE);
    app->group_keys = xcalloc(ntags + 1, sizeof *app->group_keys);
    app->group_keys[0] = xstrdup("unknown");
    unsigned g = 0;
    for (unsigned i = 0; i < ntags && g < MATCHER_MAX_GROUPS; i++) {
        const tax_tag_t *t = taxonomy_tag(app->tax, TAX_ENTERPRISE, i);
        if (strcmp(t->klass->code, "region") != 0) {
            continue;
        }
        const char *key = t->ref[0] ? t->ref : t->code;
        if (!t->ref[0] && strncmp(key, "region.", 7) == 0) {
            key += 7;
        }
        app->group_keys[++g] = xstrdup(key);
    }
    app->ngroups = g;
}

int app_start(app_t *app, uv_loop_t *loop, const config_t *cfg) {
    memset(app, 0, sizeof *app);
    app->loop = loop;
    app->cfg = cfg;
    char err[512];
    char *text;
    size_t len;
    if (app_load_text(cfg->taxonomy_path, huiqi_default_taxonomy, huiqi_default_taxonomy_end, &text,
                      &len, "taxonomy")) {
        return -1;
    }
    int rc = taxonomy_parse(text, len, &app->tax, err, sizeof err);
    free(text);
    if (rc) {
        fprintf(stderr, "huiqid: taxonomy %s: %s\n",
                cfg->taxonomy_path ? cfg->taxonomy_path : "(built-in)", err);
        return -1;
    }
    if (app_load_text(cfg->rules_path, huiqi_default_rules, huiqi_default_rules_end, &text, &len,
                      "rules")) {
        return -1;
    }
    rc = rules_parse(text, len, app->tax, &app->rules, err, sizeof err);
    free(text);
    if (rc) {
        fprintf(stderr, "huiqid: rules %s: %s\n", cfg->rules_path ? cfg->rules_path : "(built-in)",
                err);
        return -1;
    }
    if (cfg->admin_key[0]) {
        char kid[AUTH_KID_LEN + 1], secret[AUTH_SECRET_LEN + 1];
        if (auth_split(cfg->admin_key, kid, secret) != 0) {
            fprintf(stderr, "huiqid: the admin key (HUIQI_ADMIN_KEY or --admin-key-file) is "
                            "malformed: expected hq_<12 lower-case letters or digits>_<32 "
                            "letters or digits>, as 'huiqi keys create' makes\n");
            return -1;
        }
    }
    app_group_keys(app);
    app->scratch = matcher_scratch_new();
    /* Everything that can be refused is checked before the store connects: after
     * that, a failure must close what was opened. */
    if (cfg->webhook_allow[0] && ssrf_allow_parse(&app->ssrf, cfg->webhook_allow) != 0) {
        fprintf(stderr, "huiqid: bad --webhook-allow '%s' (comma-separated CIDRs)\n",
                cfg->webhook_allow);
        return -1;
    }
    app->ssrf.allow_http = cfg->webhook_allow_http != 0;
    push_opts_t po;
    push_opts_default(&po);
    po.ssrf = app->ssrf;
    po.timeout_ms = cfg->webhook_timeout_ms;
    po.max_inflight = cfg->webhook_inflight;
    if (cfg->retry_schedule[0] && push_schedule_parse(&po, cfg->retry_schedule) != 0) {
        fprintf(stderr,
                "huiqid: bad --retry-schedule '%s' (up to 16 delays like 5s,5m,30m,2h, "
                "at most 255 characters)\n",
                cfg->retry_schedule);
        return -1;
    }
    store_opts_t so = {
        .redis_host = cfg->redis_unix[0] ? NULL : cfg->redis_host,
        .redis_port = cfg->redis_port,
        .redis_unix = cfg->redis_unix[0] ? cfg->redis_unix : NULL,
        .connect_timeout_ms = 1000,
        .command_timeout_ms = cfg->redis_timeout_ms,
        .max_inflight = cfg->redis_max_inflight,
    };
    app->store = store_new(loop, &so, app->tax, app_on_store_event, app);
    if (app->store == NULL) {
        fprintf(stderr, "huiqid: bad Redis address\n");
        return -1;
    }
    push_app_t pa = {.app = app,
                     .render = app_render,
                     .today = app_today_cb,
                     .enterprise_secret = app_ent_secret};
    app->push = push_new(loop, app->store, &po, &pa);
    if (app->push == NULL) {
        fprintf(stderr, "huiqid: cannot start the webhook client\n");
        app->exit_code = 1;
        store_close(app->store, NULL, NULL);
        app->store = NULL;
        return -1;
    }
    store_set_ent_hook(app->store, app_on_ent_change, app);
    app->auth = auth_new(app->store, cfg->key_rate, cfg->enterprise_key_rate);
    app->metrics = metrics_new(NROUTES);
    app->lanes = ent_lanes_new(ENT_LANE_MAX_WAITING);
    app->started_ms = app_now_ms();
    server_cbs_t cbs = {.on_head = app_on_head,
                        .on_request = app_on_request,
                        .on_done = app_on_done,
                        .on_body = app_on_body,
                        .on_abort = app_on_abort};
    server_opts_t sopts = {
        .host = cfg->listen_host,
        .port = cfg->listen_port,
        .max_conns = cfg->max_conns,
        .header_timeout_ms = cfg->header_timeout_ms,
        .idle_timeout_ms = cfg->idle_timeout_ms,
    };
    rc = server_start(loop, &sopts, &cbs, app, &app->srv);
    if (rc) {
        fprintf(stderr, "huiqid: cannot listen on %s:%d: %s\n", cfg->listen_host, cfg->listen_port,
                uv_strerror(rc));
        app->exit_code = 1;
        push_close(app->push, NULL, NULL);
        app->push = NULL;
        store_close(app->store, NULL, NULL);
        app->store = NULL;
        return -1;
    }
    app->retag = retag_new(app);
    uv_signal_init(loop, &app->sig_term);
    uv_signal_init(loop, &app->sig_int);
    app->sig_term.data = app->sig_int.data = app;
    uv_signal_start(&app->sig_term, app_on_signal, SIGTERM);
    uv_signal_start(&app->sig_int, app_on_signal, SIGINT);
    char r[300];
    if (cfg->redis_unix[0]) {
        snprintf(r, sizeof r, "%s", cfg->redis_unix);
    } else {
        snprintf(r, sizeof r, "%s:%d", cfg->redis_host, cfg->redis_port);
    }
    LOG_INFO("listening",
             "\"listen\":\"%s:%d\",\"redis\":\"%s\",\"enterprise_tags\":%u,"
             "\"policy_tags\":%u,\"rules\":%u",
             cfg->listen_host, server_port(app->srv), r, taxonomy_count(app->tax, TAX_ENTERPRISE),
             taxonomy_count(app->tax, TAX_POLICY), rules_count(app->rules));
    return 0;
}

void app_stop(app_t *app) {
    if (app->stopping) {
        return;
    }
    app->stopping = 1;
    if (app->srv) {
        server_stop(app->srv, NULL, NULL);
    }
    if (app->retag) {
        retag_close(app->retag);
    }
    if (app->push) {
        push_close(app->push, NULL, NULL);
    }
    if (app->store) {
        store_close(app->store, NULL, NULL);
    }
    if (app->srv) {
        uv_close((uv_handle_t *)&app->sig_term, NULL);
        uv_close((uv_handle_t *)&app->sig_int, NULL);
    }
}

void app_destroy(app_t *app) {
    auth_free(app->auth);
    metrics_free(app->metrics);
    ent_lanes_free(app->lanes);
    pol_cache_free(app);
    for (int v = 0; v < TAX_NVOCAB; v++) {
        free(app->tags_json[v]);
    }
    if (app->group_keys) {
        for (unsigned g = 0; g <= app->ngroups; g++) {
            free(app->group_keys[g]);
        }
        free(app->group_keys);
    }
    matcher_scratch_free(app->scratch);
    rules_free(app->rules);
    taxonomy_free(app->tax);
    memset(app, 0, sizeof *app);
}

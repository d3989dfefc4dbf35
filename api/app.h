/* The application: what handlers share (configuration, taxonomy, rules, store,
 * scratch memory) and the helpers they answer with. One app per process, passed
 * explicitly; nothing here is global. */
#ifndef HUIQI_API_APP_H
#define HUIQI_API_APP_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "api/config.h"
#include "api/router.h"
#include "api/server.h"
#include "matcher/matcher.h"
#include "push/push.h"
#include "push/ssrf.h"
#include "store/store.h"
#include "tags/rules.h"
#include "tags/taxonomy.h"

typedef struct app {
    uv_loop_t *loop;
    const config_t *cfg;
    taxonomy_t *tax;
    rules_t *rules;
    store_t *store;
    server_t *srv;
    matcher_scratch_t *scratch;
    uv_signal_t sig_term, sig_int;
    int stopping;
    int exit_code;
    int fatal;
    uint64_t requests;
    struct pol_cache *pcache; /* policy views, see pol_input.h */
    struct retag *retag;      /* the re-tag worker, see retag.h */
    push_t *push;             /* jobs and webhook deliveries */
    struct auth *auth;        /* API keys, see auth.h */
    struct metrics *metrics;  /* request counters, see metrics.h */
    struct ent_lanes *lanes;  /* one enterprise update at a time per code, see ent_lane.h */
    int64_t started_ms;
    ssrf_policy_t ssrf;  /* where webhooks may go */
    char ent_secret[96]; /* signs deliveries to enterprises' own endpoints */
    /* Audience keys per matcher group: [0] "unknown", then one per region tag. */
    char **group_keys;
    unsigned ngroups;
    /* GET /v1/tags answers, rendered once per vocabulary (optionally per class on
     * demand). */
    char *tags_json[TAX_NVOCAB];
} app_t;

/* Builds the app from 'cfg': loads the taxonomy and rules, starts the store and the
 * HTTP server. Returns 0, or -1 after logging why. */
int app_start(app_t *app, uv_loop_t *loop, const config_t *cfg);
/* Stops serving and closes everything; the loop then ends by itself. */
void app_stop(app_t *app);
/* Frees what app_start allocated (after the loop has ended). */
void app_destroy(app_t *app);

/* Today's date in the configured zone, as days since 1970-01-01. */
int32_t app_today(const app_t *app);
/* Wall-clock milliseconds since 1970. */
int64_t app_now_ms(void);
/* The route table (for metrics). */
const route_t *app_route_table(void);
/* Routes a request whose head has arrived (req->http set, req->path split off the
 * target): router_match over the route table, then the body rules, which hold
 * for a miss too: req->http->body_limit is cfg->max_body for a route that takes a
 * JSON body and 64 KiB otherwise, and req->http->stream is set for a route that
 * streams its body. Returns router_match's answer (0 with '*out' set, 404, 405
 * with 'allow' filled, 400). Pure, no access check: the server's head callback
 * runs it before access_head; the parser fuzz harness (tests/fuzz) alone. */
int app_route(const config_t *cfg, api_req_t *req, const route_t **out, char *allow,
              size_t allowlen);

/* ---- answering --------------------------------------------------------- */

/* Answers with 'body' (a reference is stolen) serialised compactly. */
void api_reply_json(api_req_t *req, int status, json_t *body, const char *headers);
/* {"error":{"code","message","field"}}; 'field' may be NULL. */
void api_error(api_req_t *req, int status, const char *code, const char *field, const char *fmt,
               ...) __attribute__((format(printf, 5, 6)));
/* Maps a store error (-ENOTCONN, -EAGAIN, -ENOBUFS, -EIO, ...) to its answer. */
void api_store_error(api_req_t *req, int rc, const char *what);
/* Answers 204 with no body. */
void api_no_content(api_req_t *req);

/* ---- reading --------------------------------------------------------------- */

/* Parses the request body as a JSON object (content type application/json, or
 * application/merge-patch+json when 'merge_patch'). Returns 0 with a new reference
 * in '*out', or -1 after answering the error. */
int api_read_object(api_req_t *req, json_t **out, int merge_patch);
/* Decodes 'len' bytes of a request body as api_read_object does: jansson with
 * duplicate keys refused (its parser stops at JSON_PARSER_MAX_DEPTH levels of
 * nesting). Returns 0 with a new reference to an object in '*out'; -EBADMSG when
 * the bytes are not JSON ('err' says where); -EINVAL for JSON that is not an
 * object. Pure, no answer: the JSON fuzz harness (tests/fuzz) calls it alone. */
int api_decode_object(const char *body, size_t len, json_t **out, json_error_t *err);
/* The decoded value of query parameter 'name' into 'buf'. Returns 1 when present, 0
 * when absent, -1 when malformed or longer than buflen - 1. */
int api_query(const api_req_t *req, const char *name, char *buf, size_t buflen);
/* Reads an optional unsigned integer query parameter within [min, max]; answers 400
 * and returns -1 when malformed; returns 0 otherwise with '*v' set (default kept). */
int api_query_uint(api_req_t *req, const char *name, unsigned long long min, unsigned long long max,
                   unsigned long long *v);

/* Reads If-Match: "<version>" (or *). Returns 0 with '*ver' set (-1 when absent),
 * or -1 after answering 400. */
int api_if_match(api_req_t *req, int64_t *ver);

/* ---- handlers (api/h_*.c) ------------------------------------------------- */

void h_healthz(app_t *app, api_req_t *req);
void h_metrics(app_t *app, api_req_t *req);
void h_key_create(app_t *app, api_req_t *req);
void h_key_list(app_t *app, api_req_t *req);
void h_key_get(app_t *app, api_req_t *req);
void h_key_revoke(app_t *app, api_req_t *req);
void h_readyz(app_t *app, api_req_t *req);
void h_tags_list(app_t *app, api_req_t *req);
void h_ent_create(app_t *app, api_req_t *req);
void h_ent_list(app_t *app, api_req_t *req);
void h_ent_get(app_t *app, api_req_t *req);
void h_ent_put(app_t *app, api_req_t *req);
void h_ent_patch(app_t *app, api_req_t *req);
void h_ent_delete(app_t *app, api_req_t *req);
void h_ent_package(app_t *app, api_req_t *req);
void h_ent_import(app_t *app, api_req_t *req);
int h_ent_import_body(app_t *app, api_req_t *req, const char *p, size_t n);
void h_ent_import_abort(app_t *app, api_req_t *req);
void h_retag_start(app_t *app, api_req_t *req);
void h_wh_create(app_t *app, api_req_t *req);
void h_wh_update(app_t *app, api_req_t *req);
void h_wh_get(app_t *app, api_req_t *req);
void h_wh_list(app_t *app, api_req_t *req);
void h_wh_delete(app_t *app, api_req_t *req);
void h_wh_rotate(app_t *app, api_req_t *req);
void h_wh_replay(app_t *app, api_req_t *req);
void h_job_get(app_t *app, api_req_t *req);
void h_job_matches(app_t *app, api_req_t *req);
void h_job_cancel(app_t *app, api_req_t *req);
void h_dlv_list(app_t *app, api_req_t *req);
void h_dlv_get(app_t *app, api_req_t *req);
void h_dlv_retry(app_t *app, api_req_t *req);
void h_pol_push(app_t *app, api_req_t *req);
/* The push engine's renderer (api/render.c). */
void app_render(void *app, const push_item_t *item, const char *stored, size_t stored_len,
                push_render_done done, void *ctx);
void h_retag_status(app_t *app, api_req_t *req);
void h_pol_create(app_t *app, api_req_t *req);
void h_pol_list(app_t *app, api_req_t *req);
void h_pol_get(app_t *app, api_req_t *req);
void h_pol_put(app_t *app, api_req_t *req);
void h_pol_delete(app_t *app, api_req_t *req);
void h_pol_publish(app_t *app, api_req_t *req);
void h_pol_withdraw(app_t *app, api_req_t *req);
void h_pol_audience(app_t *app, api_req_t *req);
void h_audience_preview(app_t *app, api_req_t *req);

#endif

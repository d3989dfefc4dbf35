/* /v1/keys: API keys (admin only). A key is shown once, when it is made; Redis
 * keeps only the SHA-256 of its secret. Revoking keeps the record (an id is never
 * reused) and takes effect within the cache lifetime (2 s) on every huiqid, at
 * once on this one. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/access.h"
#include "api/app.h"
#include "api/ent_input.h"
#include "common/xalloc.h"
#include "tags/uscc.h"

#include <openssl/crypto.h>

#define KEY_NAME_MAX     100
#define KEY_RATE_MAX     1000000.0
#define KEY_LIST_DEFAULT 100
#define KEY_LIST_MAX     1000
#define KEY_CURSOR_MAX   (1ULL << 53)

typedef struct key_ctx {
    app_t *app;
    api_req_t *req;
    json_t *view; /* the answer being built (create) */
    char key[AUTH_KEY_LEN + 1];
    char kid[AUTH_KID_LEN + 1];
    int tries;
    const char *fields[14];
    unsigned nfields;
    char hash[65], rate[32], created[24], scope[USCC_LEN + 1], role[16], name[KEY_NAME_MAX + 1];
} key_ctx_t;

static void key_ctx_free(key_ctx_t *c) {
    json_decref(c->view);
    OPENSSL_cleanse(c->key, sizeof c->key);
    free(c);
}

/* One record (fields as stored) as the API shows it: never the hash. */
static json_t *key_render(const char *kid, const store_kv_t *kv, size_t n) {
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(kid));
    char buf[128];
    size_t len;
    const char *v;
    static const char *const strs[] = {"role", "name", "scope"};
    for (size_t i = 0; i < 3; i++) {
        v = store_kv_get(kv, n, strs[i], &len);
        if (v && len && len < sizeof buf) {
            memcpy(buf, v, len);
            buf[len] = '\0';
            json_object_set_new(o, strs[i], json_stringn(buf, len));
        } else {
            json_object_set_new(o, strs[i], json_null());
        }
    }
    v = store_kv_get(kv, n, "rate", &len);
    if (v && len && len < sizeof buf) {
        memcpy(buf, v, len);
        buf[len] = '\0';
        json_object_set_new(o, "rate", json_real(strtod(buf, NULL)));
    } else {
        json_object_set_new(o, "rate", json_null()); /* the server's default */
    }
    static const char *const times[] = {"created", "revoked"};
    for (size_t i = 0; i < 2; i++) {
        v = store_kv_get(kv, n, times[i], &len);
        char key[16];
        snprintf(key, sizeof key, "%s_at", times[i]);
        if (v && len && len < 24) {
            memcpy(buf, v, len);
            buf[len] = '\0';
            char ts[40];
            ent_time_format(strtoll(buf, NULL, 10), ts, sizeof ts);
            json_object_set_new(o, key, json_string(ts));
        } else {
            json_object_set_new(o, key, json_null());
        }
    }
    json_object_set_new(o, "state",
                        json_string(store_kv_get(kv, n, "revoked", NULL) ? "revoked" : "active"));
    return o;
}

/* ---- POST /v1/keys ---------------------------------------------------------- */

static void key_try_create(key_ctx_t *c);

static void key_on_created(void *arg, int rc, const store_kv_t *kv, size_t n) {
    (void)kv;
    (void)n;
    key_ctx_t *c = arg;
    if (rc == -EEXIST && c->tries < 3) {
        key_try_create(c); /* an id collision: 36^12 makes this all but impossible */
        return;
    }
    if (rc) {
        api_store_error(c->req, rc, "key");
        key_ctx_free(c);
        return;
    }
    json_t *o = c->view;
    c->view = NULL;
    json_object_set_new(o, "id", json_string(c->kid));
    /* The key itself is shown here and never again. */
    json_object_set_new(o, "key", json_string(c->key));
    char loc[64];
    snprintf(loc, sizeof loc, "Location: /v1/keys/%s\r\n", c->kid);
    api_reply_json(c->req, 201, o, loc);
    key_ctx_free(c);
}

static void key_try_create(key_ctx_t *c) {
    c->tries++;
    if (auth_make_key(c->key, c->kid, c->hash) != 0) {
        api_error(c->req, 500, "internal", NULL, "no randomness for a new key");
        key_ctx_free(c);
        return;
    }
    int rc = store_key_put(c->app->store, c->kid, c->fields, c->nfields, key_on_created, c);
    if (rc) {
        api_store_error(c->req, rc, "key");
        key_ctx_free(c);
    }
}

void h_key_create(app_t *app, api_req_t *req) {
    json_t *in;
    if (api_read_object(req, &in, 0) != 0) {
        return;
    }
    key_ctx_t *c = xcalloc(1, sizeof *c);
    c->app = app;
    c->req = req;
    const char *bad = NULL;
    const char *why = NULL;
    const char *code = "invalid_value";
    const char *k;
    json_t *v;
    json_object_foreach(in, k, v) {
        if (strcmp(k, "role") && strcmp(k, "name") && strcmp(k, "scope") && strcmp(k, "rate")) {
            bad = k;
            why = "unknown field";
            code = "unknown_field";
            break;
        }
    }
    json_t *role = json_object_get(in, "role");
    json_t *name = json_object_get(in, "name");
    json_t *scope = json_object_get(in, "scope");
    json_t *rate = json_object_get(in, "rate");
    int r = json_is_string(role) ? auth_role_parse(json_string_value(role)) : 0;
    if (bad) {
    } else if (r == 0) {
        bad = "role";
        why = "role must be one of admin, operator, integrator, enterprise";
        code = role == NULL ? "missing_field" : "invalid_value";
    } else if (name && !json_is_null(name) &&
               (!json_is_string(name) || json_string_length(name) > KEY_NAME_MAX ||
                strlen(json_string_value(name)) != json_string_length(name))) {
        bad = "name";
        why = "name must be a string of at most 100 bytes";
    } else if (r == ROLE_ENTERPRISE && !json_is_string(scope)) {
        bad = "scope";
        why = "an enterprise key needs scope: the enterprise's credit code";
        code = scope == NULL ? "missing_field" : "invalid_type";
    } else if (r != ROLE_ENTERPRISE && scope && !json_is_null(scope)) {
        bad = "scope";
        why = "only enterprise keys have a scope";
    } else if (rate && !json_is_null(rate) &&
               (!json_is_number(rate) || !(json_number_value(rate) >= 0) ||
                json_number_value(rate) > KEY_RATE_MAX)) {
        bad = "rate";
        why = "rate must be a number of requests per second from 0 (unlimited) to 1000000";
    }
    if (!bad && r == ROLE_ENTERPRISE) {
        const char *s = json_string_value(scope);
        size_t len = strlen(s);
        if (len == USCC_LEN) {
            for (size_t i = 0; i < len; i++) {
                c->scope[i] = (char)toupper((unsigned char)s[i]);
            }
        }
        if (len != USCC_LEN || uscc_check(c->scope, len, NULL, NULL) != 0) {
            bad = "scope";
            why = "scope is not a valid unified social credit code";
        }
    }
    if (bad) {
        api_error(req, 400, code, bad, "%s", why);
        json_decref(in);
        key_ctx_free(c);
        return;
    }
    snprintf(c->role, sizeof c->role, "%s", auth_role_name(r));
    if (json_is_string(name)) {
        snprintf(c->name, sizeof c->name, "%s", json_string_value(name));
    }
    int64_t now = app_now_ms();
    snprintf(c->created, sizeof c->created, "%lld", (long long)now);
    const char **f = c->fields;
    unsigned nf = 0;
    f[nf++] = "hash";
    f[nf++] = c->hash;
    f[nf++] = "role";
    f[nf++] = c->role;
    f[nf++] = "created";
    f[nf++] = c->created;
    if (c->name[0]) {
        f[nf++] = "name";
        f[nf++] = c->name;
    }
    if (c->scope[0]) {
        f[nf++] = "scope";
        f[nf++] = c->scope;
    }
    if (rate && json_is_number(rate)) {
        snprintf(c->rate, sizeof c->rate, "%.6g", json_number_value(rate));
        f[nf++] = "rate";
        f[nf++] = c->rate;
    }
    c->nfields = nf;
    json_decref(in);
    store_kv_t kv[7];
    size_t n = 0;
    for (unsigned i = 0; i + 1 < nf; i += 2) {
        if (strcmp(f[i], "hash") != 0) {
            kv[n].k = f[i];
            kv[n].klen = strlen(f[i]);
            kv[n].v = f[i + 1];
            kv[n].vlen = strlen(f[i + 1]);
            n++;
        }
    }
    c->view = key_render("", kv, n);
    key_try_create(c);
}

/* ---- GET /v1/keys, GET /v1/keys/{id} ---------------------------------------------- */

typedef struct key_list_ctx {
    api_req_t *req;
    uint64_t offset;
    unsigned limit;
} key_list_ctx_t;

static void key_on_list(void *arg, int rc, const store_kv_t *kv, size_t n) {
    key_list_ctx_t *c = arg;
    api_req_t *req = c->req;
    if (rc || n == 0 || kv[0].klen != 5 || memcmp(kv[0].k, "total", 5) != 0) {
        api_store_error(req, rc ? rc : -EPROTO, "key");
        free(c);
        return;
    }
    uint64_t total = strtoull(kv[0].v, NULL, 10);
    /* The store answers the page in order (oldest first). */
    json_t *arr = json_array();
    for (size_t i = 1; i < n;) {
        size_t j = i + 1;
        while (j < n && !(kv[j].klen == 2 && memcmp(kv[j].k, "id", 2) == 0)) {
            j++;
        }
        if (kv[i].klen == 2 && memcmp(kv[i].k, "id", 2) == 0 && kv[i].vlen <= AUTH_KID_LEN) {
            char kid[AUTH_KID_LEN + 1];
            memcpy(kid, kv[i].v, kv[i].vlen);
            kid[kv[i].vlen] = '\0';
            json_array_append_new(arr, key_render(kid, kv + i + 1, j - i - 1));
        }
        i = j;
    }
    uint64_t end = c->offset + c->limit;
    char next[24];
    snprintf(next, sizeof next, "%llu", (unsigned long long)end);
    json_t *root = json_object();
    json_object_set_new(root, "items", arr);
    json_object_set_new(root, "next", end < total ? json_string(next) : json_null());
    api_reply_json(req, 200, root, NULL);
    free(c);
}

void h_key_list(app_t *app, api_req_t *req) {
    unsigned long long limit = KEY_LIST_DEFAULT, cursor = 0;
    if (api_query_uint(req, "limit", 1, KEY_LIST_MAX, &limit) ||
        api_query_uint(req, "cursor", 0, KEY_CURSOR_MAX, &cursor)) {
        return;
    }
    key_list_ctx_t *c = xmalloc(sizeof *c);
    c->req = req;
    c->offset = cursor;
    c->limit = (unsigned)limit;
    int rc = store_key_list(app->store, c->offset, c->limit, key_on_list, c);
    if (rc) {
        free(c);
        api_store_error(req, rc, "key");
    }
}

static int key_path_id(api_req_t *req) {
    const char *s = req->param[0];
    size_t len = req->param_len[0];
    int ok = len == AUTH_KID_LEN;
    for (size_t i = 0; ok && i < len; i++) {
        ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9');
    }
    if (!ok) {
        api_error(req, 404, "not_found", NULL, "no key '%.40s'", s);
        return -1;
    }
    return 0;
}

static void key_on_get(void *arg, int rc, const store_kv_t *kv, size_t n) {
    api_req_t *req = arg;
    if (rc) {
        api_store_error(req, rc, "key");
        return;
    }
    api_reply_json(req, 200, key_render(req->param[0], kv, n), NULL);
}

void h_key_get(app_t *app, api_req_t *req) {
    if (key_path_id(req) != 0) {
        return;
    }
    int rc = store_key_get(app->store, req->param[0], key_on_get, req);
    if (rc) {
        api_store_error(req, rc, "key");
    }
}

/* ---- DELETE /v1/keys/{id} ------------------------------------------------------ */

typedef struct revoke_ctx {
    app_t *app;
    api_req_t *req;
} revoke_ctx_t;

static void key_on_revoked(void *arg, int rc, const store_kv_t *kv, size_t n) {
    (void)kv;
    (void)n;
    revoke_ctx_t *c = arg;
    if (rc) {
        api_store_error(c->req, rc, "key");
    } else {
        auth_forget(c->app->auth, c->req->param[0]);
        api_no_content(c->req);
    }
    free(c);
}

void h_key_revoke(app_t *app, api_req_t *req) {
    if (key_path_id(req) != 0) {
        return;
    }
    revoke_ctx_t *c = xcalloc(1, sizeof *c);
    c->app = app;
    c->req = req;
    int rc = store_key_revoke(app->store, req->param[0], app_now_ms(), key_on_revoked, c);
    if (rc) {
        api_store_error(req, rc, "key");
        free(c);
    }
}

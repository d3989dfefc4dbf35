/* Access control for each request: the key is checked when the headers arrive
 * (so its record is read from Redis while the body is still coming), the route
 * decides which roles may pass, and the key's bucket is charged. A request whose
 * key is still being looked up waits; a streamed body waits with it (reading is
 * paused and what was already read is held). See access.h. */
#include "api/access.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/sbuf.h"
#include "common/xalloc.h"

enum { AS_PENDING, AS_OK, AS_REFUSED };

struct access {
    app_t *app;
    api_req_t *req;
    const route_t *rt;
    int state;
    int ready;  /* the request is complete and waits for the check */
    int paused; /* we paused the streamed body */
    int status; /* when refused */
    auth_id_t id;
    char hdr[128];
    char msg[160];
    sbuf_t held; /* streamed body bytes read while the check was pending */
};

static void access_refuse(access_t *ac, int status, const char *hdr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void access_refuse(access_t *ac, int status, const char *hdr, const char *fmt, ...) {
    ac->state = AS_REFUSED;
    ac->status = status;
    snprintf(ac->hdr, sizeof ac->hdr, "%s", hdr ? hdr : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ac->msg, sizeof ac->msg, fmt, ap);
    va_end(ap);
}

/* The credit code in the path equals the key's scope (the path may use lower
 * case; handlers normalise it the same way). */
static int access_in_scope(const access_t *ac) {
    const api_req_t *req = ac->req;
    return ac->id.scope[0] && req->nparams >= 1 && req->param_len[0] == 18 &&
           strcasecmp(req->param[0], ac->id.scope) == 0;
}

/* Role, scope and rate, once the key is known to be valid. */
static void access_decide(access_t *ac, int result) {
    if (result == AUTH_UNAVAILABLE) {
        access_refuse(ac, 503, "Retry-After: 1\r\n",
                      "the API key cannot be checked now: Redis is unavailable");
        return;
    }
    if (result != AUTH_OK) {
        access_refuse(ac, 401, "WWW-Authenticate: Bearer realm=\"huiqi\"\r\n",
                      "a valid API key is required: Authorization: Bearer hq_...");
        return;
    }
    const route_t *rt = ac->rt;
    int allowed = (rt->roles & (unsigned)ac->id.role) != 0;
    if (!allowed && ac->id.role == ROLE_ENTERPRISE && (rt->flags & ROUTE_SCOPED)) {
        allowed = access_in_scope(ac);
        if (!allowed) {
            access_refuse(ac, 403, NULL, "this enterprise key may act only on %s", ac->id.scope);
            return;
        }
    }
    if (!allowed) {
        access_refuse(ac, 403, NULL, "a key with the role %s may not use %s",
                      auth_role_name(ac->id.role), rt->name);
        return;
    }
    double wait = 0;
    if (auth_take(ac->app->auth, &ac->id, &wait) != 0) {
        char hdr[48];
        snprintf(hdr, sizeof hdr, "Retry-After: %.0f\r\n", ceil(wait) < 1 ? 1 : ceil(wait));
        access_refuse(ac, 429, hdr, "this key's rate limit is exceeded");
        return;
    }
    ac->state = AS_OK;
}

static void access_answer(access_t *ac) {
    static const char *const codes[] = {
        [1] = "unauthorized", [3] = "forbidden", [9] = "unavailable", [5] = "rate_limited"};
    int k = ac->status == 401 ? 1 : ac->status == 403 ? 3 : ac->status == 429 ? 5 : 9;
    json_t *body =
        json_pack("{s:{s:s,s:s,s:n}}", "error", "code", codes[k], "message", ac->msg, "field");
    api_reply_json(ac->req, ac->status, body, ac->hdr[0] ? ac->hdr : NULL);
}

/* Runs the request (or its refusal). 'ac' may be gone afterwards. */
static void access_run(access_t *ac) {
    api_req_t *req = ac->req;
    if (ac->state == AS_OK) {
        ac->rt->fn(ac->app, req);
    } else {
        access_answer(ac);
    }
}

static void access_on_auth(void *arg, int result, const auth_id_t *id) {
    access_t *ac = arg;
    if (result == AUTH_OK) {
        ac->id = *id;
    }
    access_decide(ac, result);
    if (ac->state == AS_REFUSED && !ac->ready) {
        /* The body is still coming (or never will be read): answer now and close
         * rather than read what will be thrown away. */
        server_close_after(ac->req);
        access_answer(ac);
        return;
    }
    if (ac->held.len && ac->state == AS_OK) {
        /* Bytes that arrived while we waited go first, in order. */
        int st = ac->rt->body_fn(ac->app, ac->req, ac->held.p, ac->held.len);
        sbuf_free(&ac->held);
        if (st >= 400) {
            server_close_after(ac->req);
            access_refuse(ac, st, NULL, "the request body was refused");
            access_answer(ac);
            return;
        }
    }
    if (ac->ready) {
        access_run(ac);
        return;
    }
    if (ac->paused) {
        ac->paused = 0;
        server_resume_body(ac->req);
    }
}

int access_head(app_t *app, api_req_t *req, const route_t *rt) {
    if ((rt->flags & ROUTE_PUBLIC) || ((rt->flags & ROUTE_METRICS) && app->cfg->metrics_public)) {
        return 0;
    }
    access_t *ac = xcalloc(1, sizeof *ac);
    ac->app = app;
    ac->req = req;
    ac->rt = rt;
    req->auth = ac;
    int r = auth_check(app->auth, req->http->authorization, &ac->id, access_on_auth, ac);
    if (r == AUTH_PENDING) {
        ac->state = AS_PENDING;
        if (rt->body_fn) {
            ac->paused = 1;
            sbuf_init(&ac->held, 0);
            server_pause_body(req);
        }
        return 0;
    }
    access_decide(ac, r);
    if (ac->state == AS_REFUSED && rt->body_fn) {
        /* Refuse a streamed body before it is read. */
        snprintf(req->refuse_hdr, sizeof req->refuse_hdr, "%s", ac->hdr);
        req->refuse_msg = ac->msg;
        return ac->status;
    }
    return 0;
}

int access_body(app_t *app, api_req_t *req, const char *p, size_t n) {
    access_t *ac = req->auth;
    if (ac && ac->state == AS_PENDING) {
        sbuf_add(&ac->held, p, n);
        return 0;
    }
    if (ac && ac->state == AS_REFUSED) {
        return 0;
    }
    const route_t *rt = req->route;
    return rt->body_fn(app, req, p, n);
}

void access_request(app_t *app, api_req_t *req) {
    access_t *ac = req->auth;
    const route_t *rt = req->route;
    if (ac == NULL) {
        rt->fn(app, req); /* a public route */
        return;
    }
    if (ac->state == AS_PENDING) {
        ac->ready = 1;
        return;
    }
    access_run(ac);
}

void access_release(app_t *app, api_req_t *req) {
    access_t *ac = req->auth;
    if (ac == NULL) {
        return;
    }
    if (ac->state == AS_PENDING) {
        auth_cancel(app->auth, ac);
    }
    sbuf_free(&ac->held);
    free(ac);
    req->auth = NULL;
}

const char *access_kid(const api_req_t *req) {
    const access_t *ac = req->auth;
    return ac && ac->id.kid[0] ? ac->id.kid : NULL;
}

const auth_id_t *access_id(const api_req_t *req) {
    const access_t *ac = req->auth;
    return ac && ac->state == AS_OK ? &ac->id : NULL;
}

int access_by_enterprise(const api_req_t *req) {
    const auth_id_t *id = access_id(req);
    return id && id->role == ROLE_ENTERPRISE;
}

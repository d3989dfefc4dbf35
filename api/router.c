/* Route matching; see router.h. */
#include "api/router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

static int router_hex(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

char *router_decode(const char *s, size_t len, size_t *outlen) {
    char *out = xmalloc(len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < len ? router_hex(s[i + 1]) : -1;
            int lo = i + 2 < len ? router_hex(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    if (outlen) {
        *outlen = o;
    }
    return out;
}

/* A path parameter before decoding: where it is in the path. */
typedef struct router_span {
    const char *p;
    size_t n;
} router_span_t;

/* The length of the segment at 's' (up to the next '/' or the end). */
static size_t router_seg(const char *s) {
    size_t n = 0;
    while (s[n] && s[n] != '/') {
        n++;
    }
    return n;
}

/* Matches one pattern against the path, segment by segment, without copying or
 * allocating (but to check a parameter with a '%'): most routes fail on a literal
 * segment, and the router tries every route in turn. Returns the number of ':name'
 * parameters with their spans in 'spans', or -1 when the path does not have the
 * pattern's shape; a parameter reached that is badly percent-encoded also sets
 * *bad (a 400 unless another route matches). */
static int router_try(const char *pattern, const char *path, router_span_t *spans, int *bad) {
    const char *p = pattern;
    const char *s = path;
    int np = 0;
    while (*p && *s) {
        if (*p != '/' || *s != '/') {
            return -1;
        }
        p++;
        s++;
        if (p[0] == ':') {
            size_t sl = router_seg(s);
            if (sl == 0 || np == API_MAX_PARAMS) {
                return -1;
            }
            if (memchr(s, '%', sl)) {
                char *d = router_decode(s, sl, NULL);
                if (d == NULL) {
                    *bad = 1;
                    return -1;
                }
                free(d);
            }
            spans[np].p = s;
            spans[np].n = sl;
            np++;
            p += router_seg(p);
            s += sl;
            continue;
        }
        /* A literal segment: compare as we go, so that a route fails at the
         * first differing byte. */
        while (*p && *p != '/' && *p == *s) {
            p++;
            s++;
        }
        if ((*p && *p != '/') || (*s && *s != '/')) {
            return -1;
        }
    }
    return *p || *s ? -1 : np;
}

/* Decodes the parameters of a matched route (router_try checked their encoding)
 * into 'params'/'lens'. */
static void router_params(const router_span_t *spans, int np, char **params, size_t *lens) {
    for (int i = 0; i < np; i++) {
        params[i] = router_decode(spans[i].p, spans[i].n, &lens[i]);
    }
}

/* Whether 'r' serves 'method' (a HEAD is served by the GET route). */
static int router_method_ok(const route_t *r, int method) {
    return r->method == method || (method == HTTPD_HEAD && r->method == HTTPD_GET);
}

/* Appends method 'm' to the Allow list unless it is there already. */
static void router_allow_add(char *allow, size_t allowlen, size_t *alen, const char *m) {
    if (allowlen && strstr(allow, m) == NULL && *alen + strlen(m) + 3 < allowlen) {
        *alen += (size_t)snprintf(allow + *alen, allowlen - *alen, "%s%s", *alen ? ", " : "", m);
    }
}

int router_match(const route_t *routes, size_t n, int method, api_req_t *req, const route_t **out,
                 char *allow, size_t allowlen) {
    char *path = req->path;
    size_t len = strlen(path);
    /* "/v1/tags/" is "/v1/tags". */
    if (len > 1 && path[len - 1] == '/') {
        path[len - 1] = '\0';
    }
    if (allowlen) {
        allow[0] = '\0';
    }
    /* First only the routes of the request's method, in table order: a request
     * that has a route stops there, having tried about half as many patterns
     * (callgrind, bench/gate_http.sh). A badly encoded parameter met on the way
     * does not matter when a route matches. */
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (!router_method_ok(&routes[i], method)) {
            continue;
        }
        router_span_t spans[API_MAX_PARAMS];
        int np = router_try(routes[i].pattern, path, spans, &bad);
        if (np < 0) {
            continue;
        }
        for (int k = 0; k < req->nparams; k++) {
            free(req->param[k]);
        }
        char *params[API_MAX_PARAMS];
        size_t lens[API_MAX_PARAMS];
        router_params(spans, np, params, lens);
        for (int k = 0; k < API_MAX_PARAMS; k++) {
            req->param[k] = k < np ? params[k] : NULL;
            req->param_len[k] = k < np ? lens[k] : 0;
        }
        req->nparams = np;
        *out = &routes[i];
        return 0;
    }
    /* No route for this method: the other methods' routes tell a 405 (with the
     * methods the path has, for Allow) from a 404, and a badly encoded parameter
     * met in any route makes it a 400. */
    int found_path = 0;
    size_t alen = 0;
    bad = 0;
    for (size_t i = 0; i < n; i++) {
        router_span_t spans[API_MAX_PARAMS];
        if (router_try(routes[i].pattern, path, spans, &bad) < 0) {
            continue;
        }
        found_path = 1;
        router_allow_add(allow, allowlen, &alen, httpd_method_name(routes[i].method));
        if (routes[i].method == HTTPD_GET) {
            /* A GET route answers HEAD too (router_method_ok). */
            router_allow_add(allow, allowlen, &alen, "HEAD");
        }
    }
    if (bad) {
        return 400;
    }
    return found_path ? 405 : 404;
}

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

/* Matches one pattern against the path; fills params on success. */
static int router_try(const char *pattern, const char *path, api_req_t *req, int *bad) {
    const char *p = pattern;
    const char *s = path;
    int np = 0;
    char *params[API_MAX_PARAMS];
    size_t lens[API_MAX_PARAMS];
    while (*p && *s) {
        if (*p != '/' || *s != '/') {
            goto fail;
        }
        p++;
        s++;
        const char *pe = strchr(p, '/');
        const char *se = strchr(s, '/');
        size_t pl = pe ? (size_t)(pe - p) : strlen(p);
        size_t sl = se ? (size_t)(se - s) : strlen(s);
        if (pl > 0 && p[0] == ':') {
            if (sl == 0 || np == API_MAX_PARAMS) {
                goto fail;
            }
            size_t dl = 0;
            char *d = router_decode(s, sl, &dl);
            if (d == NULL) {
                *bad = 1;
                goto fail;
            }
            params[np] = d;
            lens[np] = dl;
            np++;
        } else if (pl != sl || memcmp(p, s, pl) != 0) {
            goto fail;
        }
        p += pl;
        s += sl;
    }
    if (*p || *s) {
        goto fail;
    }
    for (int i = 0; i < np; i++) {
        req->param[i] = params[i];
        req->param_len[i] = lens[i];
    }
    req->nparams = np;
    return 1;
fail:
    for (int i = 0; i < np; i++) {
        free(params[i]);
    }
    return 0;
}

int router_match(const route_t *routes, size_t n, int method, api_req_t *req, const route_t **out,
                 char *allow, size_t allowlen) {
    char *path = req->path;
    size_t len = strlen(path);
    /* "/v1/tags/" is "/v1/tags". */
    if (len > 1 && path[len - 1] == '/') {
        path[len - 1] = '\0';
    }
    int found_path = 0;
    int bad = 0;
    size_t alen = 0;
    if (allowlen) {
        allow[0] = '\0';
    }
    for (size_t i = 0; i < n; i++) {
        api_req_t probe = {0};
        if (!router_try(routes[i].pattern, path, &probe, &bad)) {
            continue;
        }
        int hit =
            routes[i].method == method || (method == HTTPD_HEAD && routes[i].method == HTTPD_GET);
        if (hit) {
            for (int k = 0; k < req->nparams; k++) {
                free(req->param[k]);
            }
            memcpy(req->param, probe.param, sizeof req->param);
            memcpy(req->param_len, probe.param_len, sizeof req->param_len);
            req->nparams = probe.nparams;
            *out = &routes[i];
            return 0;
        }
        for (int k = 0; k < probe.nparams; k++) {
            free(probe.param[k]);
        }
        found_path = 1;
        const char *m = httpd_method_name(routes[i].method);
        if (strstr(allow, m) == NULL && alen + strlen(m) + 3 < allowlen) {
            alen += (size_t)snprintf(allow + alen, allowlen - alen, "%s%s", alen ? ", " : "", m);
        }
    }
    if (bad) {
        return 400;
    }
    return found_path ? 405 : 404;
}

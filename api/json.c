/* Answering and reading helpers shared by the handlers; see app.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/app.h"
#include "api/json_out.h"
#include "api/log.h"
#include "common/xalloc.h"

void api_reply_json(api_req_t *req, int status, json_t *body, const char *headers) {
    sbuf_t s;
    sbuf_init(&s, 1024);
    json_out(&s, body);
    json_decref(body);
    server_respond_take(req, status, "application/json", headers, s.p, s.len);
}

void api_error(api_req_t *req, int status, const char *code, const char *field, const char *fmt,
               ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *err = json_object();
    json_object_set_new(err, "code", json_string(code));
    /* A message may quote client input that is not valid UTF-8; never lose the
     * error over it. */
    json_t *m = json_string(msg);
    json_object_set_new(err, "message", m ? m : json_string("invalid input"));
    json_t *f = field ? json_string(field) : NULL;
    json_object_set_new(err, "field", f ? f : json_null());
    json_t *root = json_object();
    json_object_set_new(root, "error", err);
    const char *headers = NULL;
    if (status == 503) {
        headers = "Retry-After: 1\r\n";
    }
    api_reply_json(req, status, root, headers);
}

void api_store_error(api_req_t *req, int rc, const char *what) {
    switch (rc) {
    case -ENOTCONN:
        api_error(req, 503, "unavailable", NULL, "the data store (Redis) is unreachable; retry");
        break;
    case -EAGAIN:
        api_error(req, 503, "loading", NULL, "the service is loading its data; retry shortly");
        break;
    case -ENOBUFS:
        api_error(req, 503, "overloaded", NULL, "too many requests in flight; retry");
        break;
    case -EIO:
        api_error(req, 503, "outcome_unknown", NULL,
                  "the data store did not answer; the %s may or may not have been applied, "
                  "check and retry",
                  what);
        break;
    case -ENOENT:
        api_error(req, 404, "not_found", NULL, "no such %s", what);
        break;
    case -EEXIST:
        api_error(req, 409, "conflict", NULL, "the %s already exists", what);
        break;
    case -ESTALE:
        api_error(req, 412, "version_mismatch", NULL,
                  "the %s was changed by someone else; read it again and retry", what);
        break;
    default:
        LOG_ERROR("store error", "\"rid\":\"%s\",\"rc\":%d", req->id, rc);
        api_error(req, 500, "internal", NULL, "unexpected data store answer");
        break;
    }
}

void api_no_content(api_req_t *req) {
    server_respond(req, 204, NULL, NULL, NULL, 0);
}

/* Compares a media type, ignoring parameters such as charset. */
static int api_media_is(const char *ct, const char *want) {
    size_t n = strcspn(ct, ";");
    while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t')) {
        n--;
    }
    return strlen(want) == n && strncasecmp(ct, want, n) == 0;
}

int api_read_object(api_req_t *req, json_t **out, int merge_patch) {
    httpd_req_t *h = req->http;
    if (h->body_len == 0) {
        api_error(req, 400, "body_required", NULL, "this request needs a JSON body");
        return -1;
    }
    const char *ct = h->content_type;
    if (!api_media_is(ct, "application/json") &&
        !(merge_patch && api_media_is(ct, "application/merge-patch+json"))) {
        api_error(req, 415, "unsupported_media_type", NULL,
                  "send the body as application/json%s (got '%s')",
                  merge_patch ? " or application/merge-patch+json" : "", ct[0] ? ct : "nothing");
        return -1;
    }
    json_error_t err;
    int rc = api_decode_object(h->body, h->body_len, out, &err);
    if (rc == -EBADMSG) {
        api_error(req, 400, "invalid_json", NULL, "malformed JSON at line %d column %d: %s",
                  err.line, err.column, err.text);
        return -1;
    }
    if (rc != 0) {
        api_error(req, 400, "invalid_json", NULL, "the body must be a JSON object");
        return -1;
    }
    return 0;
}

int api_decode_object(const char *body, size_t len, json_t **out, json_error_t *err) {
    json_t *v = json_loadb(body, len, JSON_REJECT_DUPLICATES, err);
    if (v == NULL) {
        return -EBADMSG;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

int api_query(const api_req_t *req, const char *name, char *buf, size_t buflen) {
    const char *q = req->query;
    size_t nlen = strlen(name);
    int found = 0;
    while (q && *q) {
        const char *amp = strchr(q, '&');
        size_t plen = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', plen);
        size_t klen = eq ? (size_t)(eq - q) : plen;
        if (klen == nlen && memcmp(q, name, nlen) == 0) {
            /* A parameter given twice is refused rather than resolved one way or
             * the other (limit=1&limit=2): callers answer it as malformed. */
            if (found) {
                return -1;
            }
            found = 1;
            const char *v = eq ? eq + 1 : q + plen;
            size_t vlen = eq ? plen - klen - 1 : 0;
            /* Forms encode spaces as '+'. */
            char *tmp = xmalloc(vlen + 1);
            for (size_t i = 0; i < vlen; i++) {
                tmp[i] = v[i] == '+' ? ' ' : v[i];
            }
            size_t dlen = 0;
            char *d = router_decode(tmp, vlen, &dlen);
            free(tmp);
            if (d == NULL || dlen + 1 > buflen) {
                free(d);
                return -1;
            }
            memcpy(buf, d, dlen + 1);
            free(d);
        }
        q = amp ? amp + 1 : NULL;
    }
    return found;
}

int api_query_uint(api_req_t *req, const char *name, unsigned long long min, unsigned long long max,
                   unsigned long long *v) {
    char buf[32];
    int rc = api_query(req, name, buf, sizeof buf);
    if (rc == 0) {
        return 0;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long x = rc > 0 ? strtoull(buf, &end, 10) : 0;
    if (rc < 0 || errno || end == buf || *end != '\0' || buf[0] == '-' || x < min || x > max) {
        api_error(req, 400, "invalid_parameter", name,
                  "%s must be a whole number from %llu to %llu", name, min, max);
        return -1;
    }
    *v = x;
    return 0;
}

int api_if_match(api_req_t *req, int64_t *ver) {
    const char *m = req->http->if_match;
    *ver = -1;
    if (m[0] == '\0' || strcmp(m, "*") == 0) {
        return 0;
    }
    char buf[32];
    size_t n = strlen(m);
    if (n >= 2 && m[0] == '"' && m[n - 1] == '"') {
        m++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof buf) {
        goto bad;
    }
    memcpy(buf, m, n);
    buf[n] = '\0';
    char *end = NULL;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end != '\0' || v < 1 || buf[0] == '+' || buf[0] == ' ') {
        goto bad;
    }
    *ver = v;
    return 0;
bad:
    api_error(req, 400, "invalid_header", "If-Match",
              "If-Match must hold a version number as returned in \"version\"");
    return -1;
}

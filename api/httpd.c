/* HTTP/1.1 parsing with llhttp behind a raw-byte filter; see httpd.h. */
#include "api/httpd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <llhttp.h>

#include "common/xalloc.h"

enum { MODE_HEAD, MODE_BODY };
/* The parts of a request line as llhttp splits it: the method, one or more
 * spaces, the target (every byte up to the next space, a tab included), the rest. */
enum { LINE_METHOD, LINE_SPACES, LINE_TARGET, LINE_REST };

struct httpd {
    llhttp_t p;
    llhttp_settings_t settings;
    const httpd_cbs_t *cbs;
    void *arg;
    httpd_req_t req;
    int mode;
    int started; /* bytes of the current request were seen */
    /* raw-byte filter state over the header section */
    int line_len;
    int prev_cr;
    int in_name;
    int first_line;
    size_t head_bytes;
    int line_part;       /* where the request line is: a LINE_* */
    size_t target_bytes; /* of the request-target so far */
    unsigned nheaders;
    /* header being assembled */
    char field[64];
    size_t field_len;
    int field_long;
    char value[HTTPD_MAX_HDRVAL];
    size_t value_len;
    int value_long;
    int cl_count;
    int has_host;
    int has_auth;
    size_t body_cap;
    int err_status;
    const char *err_reason;
};

static int httpd_fail(httpd_t *h, int status, const char *reason) {
    if (h->err_status == 0) {
        h->err_status = status;
        h->err_reason = reason;
    }
    return -1;
}

static void httpd_req_reset(httpd_t *h) {
    httpd_req_t *r = &h->req;
    free(r->target);
    free(r->body);
    memset(r, 0, sizeof *r);
    r->content_length = -1;
    h->line_len = 0;
    h->prev_cr = 0;
    h->in_name = 0;
    h->first_line = 1;
    h->head_bytes = 0;
    h->line_part = LINE_METHOD;
    h->target_bytes = 0;
    h->nheaders = 0;
    h->field_len = h->value_len = 0;
    h->field_long = h->value_long = 0;
    h->cl_count = 0;
    h->has_host = 0;
    h->has_auth = 0;
    h->body_cap = 0;
    h->started = 0;
}

/* ---------------------------------------------------------------------------
 * llhttp callbacks
 * ------------------------------------------------------------------------- */

static int on_url(llhttp_t *p, const char *at, size_t n) {
    httpd_t *h = p->data;
    httpd_req_t *r = &h->req;
    if (r->target_len + n > HTTPD_MAX_TARGET) {
        return httpd_fail(h, 414, "request target too long");
    }
    r->target = xrealloc(r->target, r->target_len + n + 1);
    memcpy(r->target + r->target_len, at, n);
    r->target_len += n;
    r->target[r->target_len] = '\0';
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
    httpd_t *h = p->data;
    if (h->field_len + n >= sizeof h->field) {
        h->field_long = 1;
        return 0;
    }
    memcpy(h->field + h->field_len, at, n);
    h->field_len += n;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
    httpd_t *h = p->data;
    if (h->value_len + n >= sizeof h->value) {
        h->value_long = 1;
        return 0;
    }
    memcpy(h->value + h->value_len, at, n);
    h->value_len += n;
    return 0;
}

static int field_is(const httpd_t *h, const char *name) {
    return !h->field_long && strlen(name) == h->field_len &&
           strncasecmp(h->field, name, h->field_len) == 0;
}

static void httpd_keep_value(const httpd_t *h, char *dst) {
    size_t n = h->value_len;
    /* Trim the optional whitespace around a field value. */
    const char *v = h->value;
    while (n && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) {
        n--;
    }
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static int on_header_value_complete(llhttp_t *p) {
    httpd_t *h = p->data;
    httpd_req_t *r = &h->req;
    if (++h->nheaders > HTTPD_MAX_HEADERS) {
        return httpd_fail(h, 431, "too many header fields");
    }
    h->value[h->value_len] = '\0';
    if (field_is(h, "host")) {
        if (h->has_host++) {
            return httpd_fail(h, 400, "duplicate Host");
        }
    } else if (field_is(h, "content-length")) {
        if (++h->cl_count > 1) {
            return httpd_fail(h, 400, "duplicate Content-Length");
        }
    } else if (field_is(h, "transfer-encoding")) {
        char v[HTTPD_MAX_HDRVAL];
        httpd_keep_value(h, v);
        /* Only a lone "chunked" is accepted: any list or other coding is a classic
         * smuggling shape. */
        if (h->value_long || strcasecmp(v, "chunked") != 0 || r->chunked) {
            return httpd_fail(h, 400, "unsupported Transfer-Encoding");
        }
        r->chunked = 1;
    } else if (field_is(h, "authorization")) {
        /* Two credentials are ambiguous: which one would be checked depends on the
         * reader (one proxy keeps the first, another the last). */
        if (h->has_auth++) {
            return httpd_fail(h, 400, "duplicate Authorization");
        }
        /* No key is this long: an over-long one is simply not a valid key, and
         * gets the same 401 as any unknown key (left empty here), not a 431 that
         * would tell a prober about the header's size. */
        if (!h->value_long) {
            httpd_keep_value(h, r->authorization);
        }
    } else if (h->value_long) {
        if (field_is(h, "content-type") || field_is(h, "x-request-id") || field_is(h, "if-match")) {
            return httpd_fail(h, 431, "header field value too long");
        }
    } else if (field_is(h, "content-type")) {
        httpd_keep_value(h, r->content_type);
    } else if (field_is(h, "x-request-id")) {
        httpd_keep_value(h, r->request_id);
    } else if (field_is(h, "if-match")) {
        httpd_keep_value(h, r->if_match);
    } else if (field_is(h, "expect")) {
        char v[HTTPD_MAX_HDRVAL];
        httpd_keep_value(h, v);
        if (strcasecmp(v, "100-continue") != 0) {
            return httpd_fail(h, 417, "unsupported Expect");
        }
        r->expect_continue = 1;
    }
    h->field_len = h->value_len = 0;
    h->field_long = h->value_long = 0;
    return 0;
}

static int httpd_method_map(uint8_t m) {
    switch (m) {
    case HTTP_GET:
        return HTTPD_GET;
    case HTTP_HEAD:
        return HTTPD_HEAD;
    case HTTP_POST:
        return HTTPD_POST;
    case HTTP_PUT:
        return HTTPD_PUT;
    case HTTP_PATCH:
        return HTTPD_PATCH;
    case HTTP_DELETE:
        return HTTPD_DELETE;
    case HTTP_OPTIONS:
        return HTTPD_OPTIONS;
    default:
        return HTTPD_OTHER;
    }
}

static int on_headers_complete(llhttp_t *p) {
    httpd_t *h = p->data;
    httpd_req_t *r = &h->req;
    if (p->http_major != 1 || p->http_minor > 1) {
        return httpd_fail(h, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
    }
    if (r->target == NULL) {
        return httpd_fail(h, 400, "missing request target");
    }
    if (p->http_minor == 1 && !h->has_host) {
        return httpd_fail(h, 400, "an HTTP/1.1 request needs a Host header");
    }
    r->method = httpd_method_map(p->method);
    r->keep_alive = llhttp_should_keep_alive(p);
    if (h->cl_count) {
        r->content_length = (int64_t)p->content_length;
    }
    int st = h->cbs->on_head(h->arg, r);
    if (st) {
        return httpd_fail(h, st, NULL);
    }
    if (!r->stream && r->content_length > 0 && (uint64_t)r->content_length > r->body_limit) {
        return httpd_fail(h, 413, "request body too large");
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
    httpd_t *h = p->data;
    httpd_req_t *r = &h->req;
    if (r->stream) {
        int st = h->cbs->on_body(h->arg, r, at, n);
        return st ? httpd_fail(h, st, NULL) : 0;
    }
    if (r->body_len + n > r->body_limit) {
        return httpd_fail(h, 413, "request body too large");
    }
    if (r->body_len + n + 1 > h->body_cap) {
        size_t cap = h->body_cap ? h->body_cap : 1024;
        while (cap < r->body_len + n + 1) {
            cap *= 2;
        }
        r->body = xrealloc(r->body, cap);
        h->body_cap = cap;
    }
    memcpy(r->body + r->body_len, at, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return 0;
}

static int on_message_complete(llhttp_t *p) {
    (void)p;
    /* One request at a time: stop here until the response is out, so pipelined
     * requests are answered in order. */
    return HPE_PAUSED;
}

httpd_t *httpd_new(const httpd_cbs_t *cbs, void *arg) {
    httpd_t *h = xcalloc(1, sizeof *h);
    llhttp_settings_init(&h->settings);
    h->settings.on_url = on_url;
    h->settings.on_header_field = on_header_field;
    h->settings.on_header_value = on_header_value;
    h->settings.on_header_value_complete = on_header_value_complete;
    h->settings.on_headers_complete = on_headers_complete;
    h->settings.on_body = on_body;
    h->settings.on_message_complete = on_message_complete;
    llhttp_init(&h->p, HTTP_REQUEST, &h->settings);
    h->p.data = h;
    h->cbs = cbs;
    h->arg = arg;
    httpd_req_reset(h);
    return h;
}

void httpd_free(httpd_t *h) {
    if (h) {
        free(h->req.target);
        free(h->req.body);
        free(h);
    }
}

/* ---------------------------------------------------------------------------
 * The raw-byte filter over the header section
 * ------------------------------------------------------------------------- */

/* Follows one byte of the request line; -1 when it makes the target too long. */
static int httpd_line_byte(httpd_t *h, unsigned char c) {
    if (c == ' ') {
        if (h->line_part == LINE_METHOD || h->line_part == LINE_TARGET) {
            h->line_part++;
        }
        return 0;
    }
    if (h->line_part == LINE_SPACES) {
        h->line_part = LINE_TARGET;
    }
    return h->line_part == LINE_TARGET && ++h->target_bytes > HTTPD_MAX_TARGET ? -1 : 0;
}

/* Byte classes for the filter's fast path: which bytes may follow, with nothing
 * to check but the caps, in a header name (HC_NAME), a header value (HC_VALUE)
 * or the request line's method, target or version (HC_LINE). CR, LF, DEL and
 * the control characters other than tab are in none; a space is in values only
 * (it ends a part of the request line), a colon not in names, a tab not in names
 * (it is whitespace there). Bytes from 0x80 pass the filter everywhere, as in
 * the per-byte path; llhttp judges them. */
enum { HC_NAME = 1, HC_VALUE = 2, HC_LINE = 4 };
static const unsigned char httpd_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 */
    2, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 0x20 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 7, 7, 7, 7, 7, /* 0x30 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 0x40 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 0x50 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 0x60 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 0, /* 0x70 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 0x80 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 0x90 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 0xa0 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 0xb0 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 0xc0 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 0xd0 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 0xe0 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 0xf0 */
};

/* Under libFuzzer every compare is traced (-fsanitize=fuzzer's trace-cmp), and
 * this one loop runs over nearly every header byte: traced, it was most of the
 * parser harness's time. Its single decision is a table lookup that coverage
 * cannot steer, so it is left out; the per-byte path stays instrumented. */
#if defined(__clang__)
/* noinline: once inlined, the loop would be instrumented as part of its caller. */
#define HTTPD_NO_COVERAGE __attribute__((no_sanitize("coverage"), noinline))
#else
#define HTTPD_NO_COVERAGE
#endif

/* The length of the run of bytes at 'p' (at most 'n') in class 'mask'. */
HTTPD_NO_COVERAGE static size_t httpd_run(const unsigned char *p, size_t n, unsigned mask) {
    size_t i = 0;
    while (i < n && (httpd_class[p[i]] & mask)) {
        i++;
    }
    return i;
}

/* The fast path: inside a line (not at its start, not after a CR), a run of
 * bytes that the per-byte path below would only count. Takes them in one step
 * and returns how many; stops short of the caps, so that the byte that crosses
 * one goes through the per-byte path and gets its answer there. */
static size_t httpd_filter_run(httpd_t *h, const unsigned char *p, size_t n) {
    if (h->prev_cr || h->line_len == 0) {
        return 0;
    }
    size_t cap = HTTPD_MAX_HEAD - h->head_bytes;
    unsigned mask;
    int target = 0;
    if (!h->first_line) {
        mask = h->in_name ? HC_NAME : HC_VALUE;
    } else if (h->line_part == LINE_SPACES) {
        return 0; /* the first byte after the spaces starts the target */
    } else {
        mask = HC_LINE;
        if (h->line_part == LINE_TARGET) {
            target = 1;
            if (HTTPD_MAX_TARGET - h->target_bytes < cap) {
                cap = HTTPD_MAX_TARGET - h->target_bytes;
            }
        }
    }
    size_t k = httpd_run(p, n < cap ? n : cap, mask);
    if (k) {
        h->head_bytes += k;
        h->line_len += (int)k;
        h->target_bytes += target ? k : 0;
        h->started = 1;
    }
    return k;
}

/* Scans header-section bytes. Returns 1 when the section ended ('*used' bytes,
 * including the final LF), 0 when all bytes were fine and more are needed, -1 on a
 * forbidden shape. '*skip' counts leading empty lines before the request line,
 * which RFC 9112 lets a server ignore and which are not passed to llhttp. */
static int httpd_filter(httpd_t *h, const char *p, size_t n, size_t *used, size_t *skip) {
    *skip = 0;
    size_t i = 0;
    while (i < n) {
        i += httpd_filter_run(h, (const unsigned char *)p + i, n - i);
        if (i == n) {
            break;
        }
        unsigned char c = (unsigned char)p[i++];
        if (++h->head_bytes > HTTPD_MAX_HEAD) {
            *used = i - 1;
            return httpd_fail(h, 431, "request header section too large");
        }
        if (h->prev_cr) {
            h->prev_cr = 0;
            if (c != '\n') {
                *used = i - 1;
                return httpd_fail(h, 400, "bare CR in the header section");
            }
            if (h->line_len == 0) {
                if (h->first_line) {
                    /* An empty line before the request line. */
                    *skip = i;
                    h->head_bytes = 0;
                    continue;
                }
                *used = i;
                return 1;
            }
            h->line_len = 0;
            h->first_line = 0;
            h->in_name = 1;
            continue;
        }
        if (c == '\r') {
            h->prev_cr = 1;
            continue;
        }
        if (c == '\n') {
            *used = i - 1;
            return httpd_fail(h, 400, "bare LF in the header section");
        }
        if (h->line_len == 0 && (c == ' ' || c == '\t')) {
            *used = i - 1;
            return httpd_fail(h, 400, "line folding or leading whitespace in the header section");
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            *used = i - 1;
            return httpd_fail(h, 400, "control character in the header section");
        }
        /* The target cap is counted here, byte by byte like the header cap, and
         * not only when llhttp hands over a piece of the target: then a target
         * that is too long gets 414 wherever the network cut it, not 431 when it
         * came in one read longer than the header cap. */
        if (h->first_line && httpd_line_byte(h, c) < 0) {
            *used = i - 1;
            return httpd_fail(h, 414, "request target too long");
        }
        if (!h->first_line && h->in_name) {
            if (c == ':' && h->line_len == 0) {
                *used = i - 1;
                return httpd_fail(h, 400, "a header field with an empty name");
            }
            if (c == ':') {
                h->in_name = 0;
            } else if (c == ' ' || c == '\t') {
                *used = i - 1;
                return httpd_fail(h, 400, "whitespace in a header field name");
            }
        }
        h->line_len++;
        h->started = 1;
    }
    *used = n;
    return 0;
}

static int httpd_exec(httpd_t *h, const char *p, size_t n, size_t *eaten) {
    llhttp_errno_t e = llhttp_execute(&h->p, p, n);
    if (e == HPE_PAUSED_UPGRADE) {
        /* llhttp pauses an Upgrade request twice: at its end, where
         * on_message_complete pauses like for any request, and again as soon as
         * it is resumed, before the first byte of what follows. We never switch
         * protocols: that request was answered like any other and the connection
         * stays HTTP/1.1, so go on parsing the same bytes. (Taking this second
         * pause for a request handed the server one that never had a head, and
         * it crashed: tests/fuzz/crashes/upgrade-phantom-request.) */
        size_t at = (size_t)(llhttp_get_error_pos(&h->p) - p);
        llhttp_resume_after_upgrade(&h->p);
        e = llhttp_execute(&h->p, p + at, n - at);
    }
    if (e == HPE_OK) {
        *eaten = n;
        return HTTPD_MORE;
    }
    if (e == HPE_PAUSED) {
        *eaten = (size_t)(llhttp_get_error_pos(&h->p) - p);
        return HTTPD_DONE;
    }
    if (h->err_status == 0) {
        httpd_fail(h, 400, llhttp_get_error_reason(&h->p));
    }
    return -1;
}

/* The filter refused a byte: llhttp first parses the 'n' bytes before it, and an
 * error it finds there is the earlier one and the one answered, as it would
 * have been had the network delivered those bytes in a read of their own. The
 * answer to a request then never depends on how its bytes were cut. */
static void httpd_refuse(httpd_t *h, const char *p, size_t n) {
    int status = h->err_status;
    const char *reason = h->err_reason;
    size_t eaten;
    h->err_status = 0;
    if (httpd_exec(h, p, n, &eaten) >= 0) {
        h->err_status = status;
        h->err_reason = reason;
    }
}

int httpd_feed(httpd_t *h, const char *p, size_t n, size_t *consumed) {
    size_t used = 0;
    if (h->err_status) {
        return -1;
    }
    while (used < n) {
        size_t eaten = 0;
        int rc;
        if (h->mode == MODE_HEAD) {
            size_t k = 0;
            size_t skip = 0;
            int f = httpd_filter(h, p + used, n - used, &k, &skip);
            if (f < 0) {
                httpd_refuse(h, p + used + skip, k - skip);
                return -1;
            }
            rc = httpd_exec(h, p + used + skip, k - skip, &eaten);
            if (rc < 0) {
                return -1;
            }
            if (rc == HTTPD_DONE) {
                h->mode = MODE_HEAD;
                *consumed = used + skip + eaten;
                return HTTPD_DONE;
            }
            used += k;
            if (f == 1) {
                h->mode = MODE_BODY;
            }
        } else {
            rc = httpd_exec(h, p + used, n - used, &eaten);
            if (rc < 0) {
                return -1;
            }
            if (rc == HTTPD_DONE) {
                h->mode = MODE_HEAD;
                *consumed = used + eaten;
                return HTTPD_DONE;
            }
            used = n;
        }
    }
    *consumed = n;
    return HTTPD_MORE;
}

httpd_req_t *httpd_request(httpd_t *h) {
    return &h->req;
}

void httpd_next(httpd_t *h) {
    httpd_req_reset(h);
    h->mode = MODE_HEAD;
    llhttp_resume(&h->p);
}

int httpd_in_request(const httpd_t *h) {
    return h->started || h->mode == MODE_BODY;
}

int httpd_error(const httpd_t *h, const char **reason) {
    if (reason) {
        *reason = h->err_reason;
    }
    return h->err_status;
}

int httpd_split_target(const httpd_req_t *r, char **path, char **query) {
    const char *t = r->target;
    if (t == NULL || t[0] != '/') {
        return 400;
    }
    const char *q = strchr(t, '?');
    *path = xstrndup(t, q ? (size_t)(q - t) : strlen(t));
    *query = xstrdup(q ? q + 1 : "");
    return 0;
}

const char *httpd_method_name(int method) {
    static const char *const names[HTTPD_NMETHODS] = {"GET",   "HEAD",   "POST",    "PUT",
                                                      "PATCH", "DELETE", "OPTIONS", "OTHER"};
    return method >= 0 && method < HTTPD_NMETHODS ? names[method] : "OTHER";
}

const char *httpd_status_text(int status) {
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

/* HTTP/1.1 request parsing for one connection: llhttp (from Debian's node-llhttp
 * sources) behind a raw-byte filter. Both Debian parsers accept request-smuggling
 * shapes they hide from their callbacks (bare CR, obs-fold; shared/reliability.md
 * section 2.3), so every header byte is checked here before the parser sees it. No
 * I/O: the server feeds bytes and gets whole requests back. The only file that
 * includes llhttp.h. */
#ifndef HUIQI_API_HTTPD_H
#define HUIQI_API_HTTPD_H

#include <stddef.h>
#include <stdint.h>

enum httpd_method {
    HTTPD_GET,
    HTTPD_HEAD,
    HTTPD_POST,
    HTTPD_PUT,
    HTTPD_PATCH,
    HTTPD_DELETE,
    HTTPD_OPTIONS,
    HTTPD_OTHER,
    HTTPD_NMETHODS
};

#define HTTPD_MAX_TARGET  8192  /* request-target bytes (414 beyond) */
#define HTTPD_MAX_HEAD    16384 /* header section bytes (431 beyond) */
#define HTTPD_MAX_HEADERS 100   /* header lines (431 beyond) */
#define HTTPD_MAX_HDRVAL  256   /* bytes kept of an interesting header */

typedef struct httpd_req {
    int method;
    char *target; /* NUL-terminated raw request-target */
    size_t target_len;
    int keep_alive;
    int expect_continue;
    int64_t content_length; /* -1 when absent */
    int chunked;
    char content_type[HTTPD_MAX_HDRVAL];
    char request_id[HTTPD_MAX_HDRVAL];
    char authorization[HTTPD_MAX_HDRVAL];
    char if_match[HTTPD_MAX_HDRVAL];
    char *body; /* buffered body (NUL-terminated), unless streamed */
    size_t body_len;
    size_t body_limit; /* set by on_head; 413 beyond */
    int stream;        /* set by on_head: deliver the body through on_body */
    void *route;       /* set by on_head for the caller's use */
} httpd_req_t;

typedef struct httpd_cbs {
    /* Headers are complete. Returns 0 to read the body (after setting body_limit
     * or stream), or an HTTP status >= 400 to refuse the request. */
    int (*on_head)(void *arg, httpd_req_t *req);
    /* A piece of a streamed body. Returns 0, or an HTTP status to refuse. */
    int (*on_body)(void *arg, httpd_req_t *req, const char *p, size_t n);
} httpd_cbs_t;

typedef struct httpd httpd_t;

httpd_t *httpd_new(const httpd_cbs_t *cbs, void *arg);
void httpd_free(httpd_t *h);

enum { HTTPD_MORE = 0, HTTPD_DONE = 1 };

/* Feeds 'n' bytes. Returns HTTPD_MORE when all were consumed and more are needed;
 * HTTPD_DONE when a request is complete ('*consumed' bytes were used; keep the rest
 * and call httpd_next after answering); or a negative value on an error, after
 * which httpd_error gives the status and reason to answer before closing. */
int httpd_feed(httpd_t *h, const char *p, size_t n, size_t *consumed);
httpd_req_t *httpd_request(httpd_t *h);
/* Readies the parser for the next request on the connection. */
void httpd_next(httpd_t *h);
/* True when a request has started but is not complete (EOF now is an error). */
int httpd_in_request(const httpd_t *h);
/* The status (400, 413, 414, 431, 505...) and a short reason of the last error. */
int httpd_error(const httpd_t *h, const char **reason);

/* Splits the request-target of 'r' (complete once on_head runs) into '*path', the
 * bytes before the first '?', and '*query', those after it ("" when there is no
 * '?'): new NUL-terminated strings, nothing decoded; free both with free(). Only
 * origin-form is served, so a target that does not start with '/' (absolute-form,
 * authority-form, "*") gives 400 and sets neither. Returns 0 or 400. Pure: the
 * server calls it from on_head, the parser fuzz harness (tests/fuzz) without one. */
int httpd_split_target(const httpd_req_t *r, char **path, char **query);

const char *httpd_method_name(int method);
/* The standard reason phrase of a status code. */
const char *httpd_status_text(int status);

#endif

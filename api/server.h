/* The HTTP server: a libuv TCP listener, connections with keep-alive and pipelining
 * (answered strictly in order, one request at a time per connection), header, idle
 * and slow-client timeouts, a connection cap, and responses. It knows nothing of
 * routes: the app decides at head time what to do with a request and answers it
 * later, from any callback, with server_respond. */
#ifndef HUIQI_API_SERVER_H
#define HUIQI_API_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "api/httpd.h"

typedef struct server server_t;

#define API_MAX_PARAMS 3

typedef struct api_req {
    httpd_req_t *http;
    char *path;  /* percent-decoded path, NUL-terminated */
    char *query; /* raw query string after '?', "" when none */
    char id[40]; /* request id: the client's X-Request-Id when sane, else generated */
    uint64_t start_ns;
    const void *route;           /* set by the app's head callback */
    char *param[API_MAX_PARAMS]; /* decoded path parameters */
    size_t param_len[API_MAX_PARAMS];
    int nparams;
    int status; /* the status answered (for logs and metrics) */
    void *ctx;  /* handler's per-request state */
    void *auth; /* the app's authorisation state */
    /* When the head callback refuses a request: extra header lines and the message
     * of the error answer (both optional). */
    char refuse_hdr[128];
    const char *refuse_msg;
    struct server_conn *conn;
} api_req_t;

typedef struct server_cbs {
    /* Headers received: resolve the route, set req->http->body_limit (or stream).
     * Returns 0 to continue, or a status >= 400 to refuse. */
    int (*on_head)(void *app, api_req_t *req);
    /* The request is complete: handle it and eventually call server_respond. */
    void (*on_request)(void *app, api_req_t *req);
    /* The response to 'req' was queued (for access logs and metrics). */
    void (*on_done)(void *app, api_req_t *req, size_t body_len);
    /* A piece of a streamed body (the head callback set req->http->stream); the
     * request itself still arrives through on_request once the body ends. Returns
     * 0, or a status >= 400 to refuse the request. */
    int (*on_body)(void *app, api_req_t *req, const char *p, size_t n);
    /* The connection closed after on_head but before on_request: release whatever
     * the app attached to 'req' (req->ctx); the request will never be handled. */
    void (*on_abort)(void *app, api_req_t *req);
} server_cbs_t;

typedef struct server_opts {
    const char *host;
    int port;
    unsigned max_conns;
    unsigned header_timeout_ms;
    unsigned idle_timeout_ms;
} server_opts_t;

/* Binds and listens. Returns 0 or a libuv error; '*out' is set on success. */
int server_start(uv_loop_t *loop, const server_opts_t *opts, const server_cbs_t *cbs, void *app,
                 server_t **out);
/* Stops accepting and closes every connection; done(arg) runs once all handles
 * are closed. Requests still being handled get their responses dropped. */
void server_stop(server_t *srv, void (*done)(void *), void *arg);
/* Serves 'fd', an already connected stream socket (e.g. one end of socketpair(2)),
 * exactly like an accepted TCP connection, through a libuv pipe. Lets tests and
 * the fuzzer (tests/fuzz) drive the server without a network. Returns 0 (the
 * server now owns 'fd' and closes it with the connection), UV_EMFILE at the
 * connection cap, UV_ECANCELED while stopping, or the libuv error of
 * uv_pipe_open; on an error 'fd' stays the caller's. */
int server_adopt_fd(server_t *srv, int fd);
/* The bound port (useful with port 0). */
int server_port(const server_t *srv);
unsigned server_conns(const server_t *srv);

/* Frees what the head of a request attached to 'req' (its path, query and path
 * parameters) and zeroes it for the next request. The server does this after
 * each answer; the parser fuzz harness (tests/fuzz) uses it without a server. */
void server_req_clear(api_req_t *req);

/* Closes the connection after the next response (e.g. a request refused while
 * its body is still arriving). */
void server_close_after(api_req_t *req);

/* Backpressure for a streamed body: stop reading from the client until resumed.
 * Bytes already read are still delivered. Pauses count: reading resumes when each
 * pause has been resumed (the app's access check and a handler may both pause). */
void server_pause_body(api_req_t *req);
void server_resume_body(api_req_t *req);

/* Sends the response to 'req' and finishes it. 'headers' holds extra header lines
 * (each ending in CRLF) or is NULL. The body is copied. After this call 'req' is
 * gone. */
void server_respond(api_req_t *req, int status, const char *content_type, const char *headers,
                    const char *body, size_t body_len);
/* The same, taking the body (from malloc; freed once written): a large body is
 * written as it is, not copied. */
void server_respond_take(api_req_t *req, int status, const char *content_type, const char *headers,
                         char *body_take, size_t body_len);

#endif

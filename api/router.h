/* Routing: a fixed table of (method, pattern) -> handler. A pattern segment ":x"
 * matches one non-empty path segment, which is percent-decoded into a parameter. */
#ifndef HUIQI_API_ROUTER_H
#define HUIQI_API_ROUTER_H

#include <stddef.h>

#include "api/server.h"

struct app;
typedef void (*api_handler_fn)(struct app *app, api_req_t *req);
/* Receives a streamed body piece by piece (see server_cbs_t.on_body). */
typedef int (*api_body_fn)(struct app *app, api_req_t *req, const char *p, size_t n);

enum {
    ROUTE_BODY = 1 << 0,    /* takes a JSON body */
    ROUTE_PUBLIC = 1 << 1,  /* no key needed (health probes) */
    ROUTE_SCOPED = 1 << 2,  /* an enterprise key may use it on its own credit code
                               (the first path parameter) */
    ROUTE_METRICS = 1 << 3, /* public when the server runs with --metrics-public */
};

typedef struct route {
    int method;
    const char *pattern;
    api_handler_fn fn;
    unsigned flags;
    const char *name;    /* for logs and metrics, e.g. "enterprises.get" */
    api_body_fn body_fn; /* set: the body is streamed to it instead of buffered */
    unsigned roles;      /* the key roles (ROLE_* of auth.h) allowed */
} route_t;

/* Finds the route for 'method' and 'path' in 'routes' and fills req->param. Returns
 * 0 with '*out' set; 404 when no pattern matches; 405 when patterns match but not
 * the method ('allow' then lists the methods, e.g. "GET, PUT"); 400 on a bad
 * percent-encoding. */
int router_match(const route_t *routes, size_t n, int method, api_req_t *req, const route_t **out,
                 char *allow, size_t allowlen);

/* Percent-decodes 'len' bytes into a new NUL-terminated string ('+' is kept; a
 * path is not a form). Returns NULL on a bad escape or a decoded NUL byte. */
char *router_decode(const char *s, size_t len, size_t *outlen);

#endif

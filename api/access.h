/* Per-request access control between the server and the handlers: every route
 * that is not public needs "Authorization: Bearer <key>" of a role the route
 * allows (enterprise keys only on their own credit code), within the key's rate.
 * Refusals are 401 (no valid key, with WWW-Authenticate), 403 (role or scope),
 * 429 (rate, with Retry-After) and 503 (the key cannot be checked: Redis is down
 * and the key is not cached). */
#ifndef HUIQI_API_ACCESS_H
#define HUIQI_API_ACCESS_H

#include <stddef.h>

#include "api/app.h"
#include "api/auth.h"

typedef struct access access_t;

/* At head time, for a matched route: starts the check. Returns 0, or a status to
 * refuse a streamed request before its body is read. */
int access_head(app_t *app, api_req_t *req, const route_t *rt);
/* A piece of a streamed body: held while the check is pending, else passed on. */
int access_body(app_t *app, api_req_t *req, const char *p, size_t n);
/* The request is complete: runs the handler once the check passes, or answers
 * the refusal. */
void access_request(app_t *app, api_req_t *req);
/* The request is answered or abandoned: frees the check. */
void access_release(app_t *app, api_req_t *req);

/* The id of the key that made the request (for logs), or NULL. */
const char *access_kid(const api_req_t *req);
/* Who made the request, once allowed; NULL on public routes. */
const auth_id_t *access_id(const api_req_t *req);
/* Whether the request was made with an enterprise key (scoped to one credit code;
 * access_head checked the scope). */
int access_by_enterprise(const api_req_t *req);

#endif

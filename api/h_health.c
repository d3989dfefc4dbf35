/* Liveness and readiness. /healthz answers while the process runs; /readyz only
 * when data is loaded and Redis is reachable, so a load balancer sends no traffic
 * that would fail. */
#include "api/app.h"
#include "api/retag.h"

void h_healthz(app_t *app, api_req_t *req) {
    (void)app;
    static const char ok[] = "{\"status\":\"ok\"}";
    server_respond(req, 200, "application/json", NULL, ok, sizeof ok - 1);
}

void h_readyz(app_t *app, api_req_t *req) {
    if (app->stopping) {
        api_error(req, 503, "stopping", NULL, "the service is shutting down");
    } else if (!store_redis_up(app->store)) {
        api_error(req, 503, "redis_unavailable", NULL, "Redis is unreachable");
    } else if (!store_ready(app->store)) {
        api_error(req, 503, "loading", NULL, "loading data from Redis");
    } else if (app->retag && retag_catching_up(app->retag)) {
        /* Until then packages could still hold policies whose conditions lapsed
         * while the service was down (a certificate expired at midnight). */
        api_error(req, 503, "loading", NULL, "re-tagging the enterprises due today");
    } else {
        static const char ok[] = "{\"status\":\"ready\"}";
        server_respond(req, 200, "application/json", NULL, ok, sizeof ok - 1);
    }
}

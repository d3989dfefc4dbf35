/* /v1/enterprises:retag: start a full re-derivation after a rules change (POST)
 * and follow its progress (GET). */
#include <errno.h>

#include "api/app.h"
#include "api/retag.h"

void h_retag_start(app_t *app, api_req_t *req) {
    if (!store_ready(app->store)) {
        api_store_error(req, store_redis_up(app->store) ? -EAGAIN : -ENOTCONN, "re-tag");
        return;
    }
    if (retag_start_full(app->retag) == -EBUSY) {
        json_t *st = retag_status(app->retag);
        json_t *err = json_pack("{s:{s:s,s:s,s:n},s:o}", "error", "code", "conflict", "message",
                                "a full re-tag is already running", "field", "retag", st);
        api_reply_json(req, 409, err, NULL);
        return;
    }
    api_reply_json(req, 202, retag_status(app->retag), "Location: /v1/enterprises:retag\r\n");
}

void h_retag_status(app_t *app, api_req_t *req) {
    api_reply_json(req, 200, retag_status(app->retag), NULL);
}

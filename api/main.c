/* huiqid: the huiqi service. Reads its configuration, starts the app on a libuv
 * loop and runs until SIGTERM or SIGINT, then closes every handle and exits. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "api/app.h"
#include "api/config.h"
#include "api/log.h"
#include "push/http.h"

int main(int argc, char **argv) {
    config_t cfg;
    int rc = config_load(&cfg, argc, argv);
    if (rc != 0) {
        return rc > 0 ? 0 : 2;
    }
    /* Writes to a closed socket must fail with EPIPE, not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    if (pushhttp_global_init() != 0) {
        fprintf(stderr, "huiqid: libcurl failed to initialise\n");
        return 1;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    app_t app;
    int exit_code = 0;
    if (app_start(&app, &loop, &cfg) != 0) {
        exit_code = 1;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (app.exit_code) {
        exit_code = app.exit_code;
    }
    app_destroy(&app);
    /* Every handle is closed by now; a non-zero result here is a leak to fix. */
    if (uv_loop_close(&loop) != 0) {
        fprintf(stderr, "huiqid: handles left open at exit\n");
        uv_walk(&loop, NULL, NULL);
        exit_code = exit_code ? exit_code : 1;
    }
    pushhttp_global_cleanup();
    LOG_INFO("stopped", "\"exit\":%d", exit_code);
    return exit_code;
}

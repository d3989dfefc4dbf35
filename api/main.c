/* huiqid: the huiqi service. Reads its configuration, starts the app on a libuv
 * loop and runs until SIGTERM or SIGINT, then closes every handle and exits. */
#include <jansson.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "api/app.h"
#include "api/config.h"
#include "api/log.h"
#include "common/xalloc.h"
#include "push/http.h"

/* OpenSSL's allocator hooks carry the caller's file and line, which we do not need. */
static void *main_crypto_malloc(size_t n, const char *file, int line) {
    (void)file;
    (void)line;
    return xmalloc(n);
}

static void *main_crypto_realloc(void *p, size_t n, const char *file, int line) {
    (void)file;
    (void)line;
    if (n == 0) {
        /* CRYPTO_realloc(p, 0) frees, as OpenSSL's own implementation does. */
        free(p);
        return NULL;
    }
    return xrealloc(p, n);
}

static void main_crypto_free(void *p, const char *file, int line) {
    (void)file;
    (void)line;
    free(p);
}

int main(int argc, char **argv) {
    /* Out of memory is one policy for the whole process: the x*alloc wrappers log and
     * abort. jansson, libuv and OpenSSL would otherwise call malloc themselves and
     * report a NULL as some other failure (an OpenSSL digest that fails turned a
     * valid API key into a 401), so they allocate through the wrappers too; libcurl
     * does in pushhttp_global_init. hiredis 0.14 has no hook: its hi_* allocators
     * abort on their own and the rest of it reports out-of-memory as an error (see
     * store/link.c). Each call must come before the library's first allocation. */
    json_set_alloc_funcs(xmalloc, free);
    if (uv_replace_allocator(xmalloc, xrealloc, xcalloc, free) != 0 ||
        CRYPTO_set_mem_functions(main_crypto_malloc, main_crypto_realloc, main_crypto_free) != 1) {
        fprintf(stderr, "huiqid: a library refused the allocator\n");
        return 1;
    }
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

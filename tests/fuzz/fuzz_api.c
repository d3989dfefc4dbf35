/* libFuzzer harness: raw bytes through the HTTP server, parser, router, access
 * control and JSON handlers of huiqid, with no network. The app runs as in
 * production except that the in-memory fake store (store/fake.c) stands in for
 * Redis; each input is written into one end of a socketpair whose other end the
 * server serves as a connection (server_adopt_fd). Built by `make fuzz`. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "api/app.h"
#include "api/config.h"
#include "api/log.h"
#include "push/http.h"
#include "store/fake.h"
#include "tags/date.h"

/* The admin key the app bootstraps at every (re)start of the fake store; the seed
 * corpus and the dictionary carry it, so mutated inputs get past access control. */
#define FUZZ_ADMIN_KEY "hq_fuzzadmin001_0123456789abcdefghijklmnopqrstuv"
/* Pretend today is fixed, so policy windows and ages do not drift between runs. */
#define FUZZ_TODAY "2026-03-02"
/* A connection that has not closed this long after the client's EOF is a hang in
 * the server (or its handlers): abort, so libFuzzer keeps the input. Below the
 * -timeout of `make fuzz` so the message says what hung. */
#define FUZZ_HANG_NS (8ull * 1000 * 1000 * 1000)
/* Loop passes with nothing queued in the store before an input counts as done:
 * zero-delay timers (job steps) run in the pass after they are started. */
#define FUZZ_QUIET_PASSES 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uv_loop_t fuzz_loop;
static config_t fuzz_cfg;
static app_t fuzz_app;
static int fuzz_started;
/* Commands the store had run when it was last reset and settled. An input that
 * sends it none (most are refused before a handler asks it anything) leaves it
 * exactly as it was reset, so the next input skips the reset: rebuilding the
 * empty mirror, matcher and indexes was the largest cost of an input. */
static uint64_t fuzz_clean_ops = UINT64_MAX;
/* HUIQI_FUZZ_ECHO=1 copies the server's answers to stderr (for writing seeds:
 * `build-fuzz/fuzz_api tests/fuzz/corpus/<seed>` shows what it got). */
static int fuzz_echo;

/* ---------------------------------------------------------------------------
 * No DNS
 * ------------------------------------------------------------------------- */

/* Webhook URLs with a host name are resolved when they are registered
 * (uv_getaddrinfo in api/h_webhooks.c). A fuzzer must not send DNS queries to
 * anyone, so this binary answers them itself, replacing the C library's resolver:
 * names under "example.net" resolve to 10.1.2.3 (a private address, refused),
 * names under "example.com" to 93.184.216.34 (an accepted one), and any other
 * name does not exist. */
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res) {
    (void)service;
    (void)hints;
    *res = NULL;
    if (node == NULL) {
        return EAI_NONAME;
    }
    size_t n = strlen(node);
    uint32_t ip;
    if (strcmp(node, "example.net") == 0 ||
        (n >= 12 && strcmp(node + n - 12, ".example.net") == 0)) {
        ip = 0x0a010203u;
    } else if (strcmp(node, "example.com") == 0 ||
               (n >= 12 && strcmp(node + n - 12, ".example.com") == 0)) {
        ip = 0x5db8d822u;
    } else {
        return EAI_NONAME;
    }
    /* One block, as the C library allocates it, so freeaddrinfo is one free. */
    struct {
        struct addrinfo ai;
        struct sockaddr_in sin;
    } *blk = calloc(1, sizeof *blk);
    if (blk == NULL) {
        return EAI_MEMORY;
    }
    blk->sin.sin_family = AF_INET;
    blk->sin.sin_addr.s_addr = htonl(ip);
    blk->ai.ai_family = AF_INET;
    blk->ai.ai_socktype = SOCK_STREAM;
    blk->ai.ai_addrlen = sizeof blk->sin;
    blk->ai.ai_addr = (struct sockaddr *)&blk->sin;
    *res = &blk->ai;
    return 0;
}

void freeaddrinfo(struct addrinfo *res) {
    free(res);
}

/* ---------------------------------------------------------------------------
 * The app, started once
 * ------------------------------------------------------------------------- */

/* Runs the loop until the store is ready and has nothing queued. */
static void fuzz_settle(void) {
    unsigned quiet = 0;
    for (unsigned i = 0; i < 100000 && quiet < FUZZ_QUIET_PASSES; i++) {
        uv_run(&fuzz_loop, UV_RUN_NOWAIT);
        int done = store_ready(fuzz_app.store) && store_fake_pending(fuzz_app.store) == 0;
        quiet = done ? quiet + 1 : 0;
    }
    if (quiet < FUZZ_QUIET_PASSES) {
        fprintf(stderr, "fuzz_api: the store never settled\n");
        abort();
    }
}

static uint64_t fuzz_store_ops(void) {
    store_stats_t st;
    store_get_stats(fuzz_app.store, &st);
    return st.redis_commands;
}

static void fuzz_init(void) {
    /* A write to a connection the server closed must fail, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    if (pushhttp_global_init() != 0) {
        abort();
    }
    char arg0[] = "fuzz_api";
    char *argv[] = {arg0, NULL};
    if (config_load(&fuzz_cfg, 1, argv) != 0) {
        abort();
    }
    fuzz_echo = getenv("HUIQI_FUZZ_ECHO") != NULL;
    if (getenv("HUIQI_LOG_LEVEL") == NULL) {
        log_set_level(LOG_LEVEL_OFF);
    }
    /* Port 0: the listener binds a free loopback port nobody connects to; every
     * input comes through server_adopt_fd. */
    snprintf(fuzz_cfg.listen_host, sizeof fuzz_cfg.listen_host, "127.0.0.1");
    fuzz_cfg.listen_port = 0;
    fuzz_cfg.access_log = 0;
    fuzz_cfg.key_rate = 0;
    snprintf(fuzz_cfg.admin_key, sizeof fuzz_cfg.admin_key, "%s", FUZZ_ADMIN_KEY);
    if (date_parse(FUZZ_TODAY, strlen(FUZZ_TODAY), &fuzz_cfg.today) != 0) {
        abort();
    }
    uv_loop_init(&fuzz_loop);
    /* libFuzzer handles SIGINT and SIGTERM (final statistics, crash files); the
     * app would take them over to stop serving. Give them back. */
    struct sigaction old_int, old_term;
    sigaction(SIGINT, NULL, &old_int);
    sigaction(SIGTERM, NULL, &old_term);
    if (app_start(&fuzz_app, &fuzz_loop, &fuzz_cfg) != 0) {
        abort();
    }
    uv_signal_stop(&fuzz_app.sig_int);
    uv_signal_stop(&fuzz_app.sig_term);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    fuzz_settle();
    fuzz_started = 1;
}

/* ---------------------------------------------------------------------------
 * One input
 * ------------------------------------------------------------------------- */

/* Reads and discards what the server answered. Returns 1 once it closed. */
static int fuzz_drain(int fd) {
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) {
            if (fuzz_echo) {
                fwrite(buf, 1, (size_t)n, stderr);
            }
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
    }
}

/* Writes all of 'p', letting the loop run when the socket is full. Stops early
 * when the server has closed the connection. */
static void fuzz_send(int fd, const uint8_t *p, size_t len) {
    size_t off = 0;
    uint64_t start = uv_hrtime();
    while (off < len) {
        ssize_t n = write(fd, p + off, len - off);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            return; /* EPIPE: it closed on us */
        }
        uv_run(&fuzz_loop, UV_RUN_NOWAIT);
        if (fuzz_drain(fd)) {
            return;
        }
        if (uv_hrtime() - start > FUZZ_HANG_NS) {
            fprintf(stderr, "fuzz_api: the server stopped reading a request\n");
            abort();
        }
    }
}

/* Where the input is cut in two writes: derived from the bytes (FNV-1a), so the
 * same input always splits the same way and a mutation moves the cut. The
 * server then sees requests arrive in pieces, with bytes left over. */
static size_t fuzz_split(const uint8_t *data, size_t size) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; i++) {
        h = (h ^ data[i]) * 16777619u;
    }
    return size ? h % (size + 1) : 0;
}

/* Runs the loop until the server has closed the connection and the store and
 * timers have nothing left to do. */
static void fuzz_finish(int fd) {
    uint64_t start = uv_hrtime();
    int closed = 0;
    unsigned quiet = 0;
    while (quiet < FUZZ_QUIET_PASSES) {
        uv_run(&fuzz_loop, UV_RUN_NOWAIT);
        closed = closed || fuzz_drain(fd);
        int done =
            closed && server_conns(fuzz_app.srv) == 0 && store_fake_pending(fuzz_app.store) == 0;
        quiet = done ? quiet + 1 : 0;
        if (uv_hrtime() - start > FUZZ_HANG_NS) {
            fprintf(stderr, "fuzz_api: %s 8 s after the client's EOF\n",
                    closed ? "work still queued" : "the connection is still open");
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!fuzz_started) {
        fuzz_init();
    }
    /* Every input starts from an empty store (ids from 1), so a crash reproduces
     * from its input alone. */
    if (fuzz_store_ops() != fuzz_clean_ops) {
        store_fake_reset(fuzz_app.store);
        fuzz_settle();
        fuzz_clean_ops = fuzz_store_ops();
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        abort();
    }
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    if (server_adopt_fd(fuzz_app.srv, sv[1]) != 0) {
        abort();
    }
    size_t cut = fuzz_split(data, size);
    fuzz_send(sv[0], data, cut);
    for (int i = 0; i < FUZZ_QUIET_PASSES; i++) {
        uv_run(&fuzz_loop, UV_RUN_NOWAIT);
        fuzz_drain(sv[0]);
    }
    fuzz_send(sv[0], data + cut, size - cut);
    shutdown(sv[0], SHUT_WR);
    fuzz_finish(sv[0]);
    close(sv[0]);
    return 0;
}

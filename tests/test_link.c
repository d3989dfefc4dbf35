/* Re-entrancy tests of the Redis connection (shared/reliability.md section 8, A4),
 * against a real redis-server on a free loopback port. A context is freed or
 * disconnected while many replies are pending: from a libuv timer, from the timer
 * that follows the connect callback (H4), and from inside a reply callback; first
 * through our hiredis adapter alone (store/redis_uv.c), then through the link
 * (store/link.c), whose own deadline kill is the production path. Every scenario
 * checks that each command's callback ran exactly once (with its reply, or with NULL
 * when the context went first), that a command sent from a NULL callback is refused
 * (so no callback is left to run), that the loop closes with no handle left
 * (uv_loop_close() == 0) and that the heap is back where it was. */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include <hiredis/async.h>

#include "store/link.h"
#include "store/redis_uv.h"
#include "tests/redis_proc.h"
#include "tests/unit.h"

#define TEST(name) int test_##name(void);
#include "tests/link_list.h"
#undef TEST

#define LT_N        1200            /* commands per scenario */
#define LT_K        200             /* the reply whose arrival triggers the kill */
#define LT_GUARD_S  60              /* a scenario that hangs ends its process (SIGALRM) */
#define LT_KEY      "hq:test:never" /* nobody pushes to it, so a BLPOP on it blocks */
#define LT_DEADLINE 500u            /* command deadline of the deadline scenario, ms */

/* When the connection is killed: in the 0 ms timer that follows the connect callback
 * (right after sending), in a 0 ms timer started by reply LT_K, inside reply LT_K's
 * callback, or never by the test (the link's command deadline does it). */
typedef enum { LT_AT_CONNECT, LT_AFTER_REPLY, LT_IN_REPLY, LT_BY_DEADLINE } lt_when_t;
/* How: redisAsyncFree, redisAsyncDisconnect (adapter), store__link_close,
 * store__link_reset (link). */
typedef enum { LT_FREE, LT_DISCONNECT, LT_CLOSE, LT_RESET } lt_how_t;

typedef struct lt lt_t;

typedef struct lt_cmd {
    lt_t *t;
    int idx;
    int calls;
    int replied;
} lt_cmd_t;

struct lt {
    uv_loop_t loop;
    uv_timer_t timer;
    test_redis_t redis;
    lt_when_t when;
    lt_how_t how;
    int block_at;           /* index of the BLPOP that holds back every reply after it */
    const char *block_secs; /* its timeout */
    redisAsyncContext *ac;  /* adapter scenarios */
    store_link_t *link;     /* link scenarios */
    int sent, calls, replies, nulls, dups;
    int late_refused, late_accepted, late_called; /* commands sent from NULL callbacks */
    int connects, disconnects, disc_status, done;
    int probe_replied;
    uint64_t sent_ms, first_null_ms;
    store_link_stats_t stats; /* the link's, taken just before its final close */
    size_t heap_before;
    lt_cmd_t cmd[LT_N];
};

/* Bytes allocated from glibc's heap, or 0 when that figure cannot be exact: glibc
 * counts the chunks parked in its per-thread cache as in use, so it is taken only
 * with that cache off (make link-test sets GLIBC_TUNABLES=glibc.malloc.tcache_count=0).
 * Under ASan this is glibc's unused arena; LeakSanitizer checks that build. */
static size_t lt_heap(void) {
    const char *tun = getenv("GLIBC_TUNABLES");
    if (tun == NULL || strstr(tun, "glibc.malloc.tcache_count=0") == NULL) {
        return 0;
    }
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

static lt_t *lt_new(lt_when_t when, lt_how_t how, int block_at, const char *block_secs) {
    lt_t *t = calloc(1, sizeof *t);
    if (t == NULL) {
        return NULL;
    }
    if (test_redis_start(&t->redis) != 0) {
        free(t);
        return NULL;
    }
    t->when = when;
    t->how = how;
    t->block_at = block_at;
    t->block_secs = block_secs;
    for (int i = 0; i < LT_N; i++) {
        t->cmd[i].t = t;
        t->cmd[i].idx = i;
    }
    alarm(LT_GUARD_S);
    /* Taken after the server's readiness check, whose connect warmed up the
     * resolver's one-time allocations. */
    t->heap_before = lt_heap();
    uv_loop_init(&t->loop);
    uv_timer_init(&t->loop, &t->timer);
    t->timer.data = t;
    return t;
}

static void lt_free(lt_t *t) {
    alarm(0);
    test_redis_stop(&t->redis);
    free(t);
}

/* Runs the loop until every handle is gone; 0 when the loop closed and the heap is
 * back to what it was before the loop was made. */
static int lt_finish(lt_t *t) {
    uv_run(&t->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t->timer, NULL);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    ASSERT_OK(uv_loop_close(&t->loop));
    ASSERT_EQ(lt_heap(), t->heap_before);
    return 0;
}

/* Records one callback of command 'c'. */
static void lt_count(lt_t *t, lt_cmd_t *c, const void *reply) {
    c->calls++;
    t->calls++;
    t->dups += c->calls > 1;
    if (reply != NULL) {
        c->replied = 1;
        t->replies++;
    } else {
        t->nulls++;
        if (t->first_null_ms == 0) {
            t->first_null_ms = uv_now(&t->loop);
        }
    }
}

/* Every scenario's ledger: all commands sent, each answered exactly once, 'replies'
 * with a reply (-1: not checked), every command at or after the BLPOP with NULL
 * when the kill cannot wait for it, and no command accepted from a NULL callback. */
static int lt_check_ledger(const lt_t *t, int replies, int blocked_null) {
    ASSERT_EQ(t->sent, LT_N);
    ASSERT_EQ(t->calls, LT_N);
    ASSERT_EQ(t->dups, 0);
    for (int i = 0; i < LT_N; i++) {
        ASSERT_EQ(t->cmd[i].calls, 1);
    }
    if (replies >= 0) {
        ASSERT_EQ(t->replies, replies);
    }
    ASSERT_EQ(t->replies + t->nulls, LT_N);
    if (blocked_null) {
        for (int i = t->block_at; i < LT_N; i++) {
            ASSERT_EQ(t->cmd[i].replied, 0);
        }
    }
    ASSERT_EQ(t->late_accepted, 0);
    ASSERT_EQ(t->late_refused, t->nulls);
    ASSERT_EQ(t->late_called, 0);
    return 0;
}

static void lt_never_cb(redisAsyncContext *ac, void *reply, void *priv) {
    (void)ac;
    (void)reply;
    ((lt_t *)priv)->late_called++;
}

/* ---- The adapter alone: hiredis with store/redis_uv.c ---- */

static void lt_ac_kill(lt_t *t) {
    if (t->how == LT_FREE) {
        redisAsyncFree(t->ac);
    } else {
        redisAsyncDisconnect(t->ac);
    }
}

static void lt_ac_on_kill_timer(uv_timer_t *h) {
    lt_ac_kill(h->data);
}

static void lt_ac_on_reply(redisAsyncContext *ac, void *reply, void *priv) {
    lt_cmd_t *c = priv;
    lt_t *t = c->t;
    lt_count(t, c, reply);
    if (reply == NULL) {
        /* A context that is failing its callbacks must refuse a new command; were it
         * queued, its callback would never run. */
        if (redisAsyncCommand(ac, lt_never_cb, t, "PING") == REDIS_OK) {
            t->late_accepted++;
        } else {
            t->late_refused++;
        }
    } else if (c->idx == LT_K - 1 && t->when == LT_IN_REPLY) {
        lt_ac_kill(t);
    } else if (c->idx == LT_K - 1 && t->when == LT_AFTER_REPLY) {
        uv_timer_start(&t->timer, lt_ac_on_kill_timer, 0, 0);
    }
}

static void lt_ac_on_connected(uv_timer_t *h) {
    lt_t *t = h->data;
    t->sent_ms = uv_now(&t->loop);
    for (int i = 0; i < LT_N; i++) {
        int rc = i == t->block_at ? redisAsyncCommand(t->ac, lt_ac_on_reply, &t->cmd[i],
                                                      "BLPOP %s %s", LT_KEY, t->block_secs)
                                  : redisAsyncCommand(t->ac, lt_ac_on_reply, &t->cmd[i], "PING");
        t->sent += rc == REDIS_OK;
    }
    if (t->when == LT_AT_CONNECT) {
        lt_ac_kill(t);
    }
}

static void lt_ac_on_connect(const redisAsyncContext *ac, int status) {
    lt_t *t = ac->data;
    if (status != REDIS_OK) {
        t->ac = NULL; /* hiredis frees a context whose connect failed */
        return;
    }
    t->connects++;
    /* Nothing is sent from inside the connect callback (H4): from a 0 ms timer. */
    uv_timer_start(&t->timer, lt_ac_on_connected, 0, 0);
}

static void lt_ac_on_disconnect(const redisAsyncContext *ac, int status) {
    lt_t *t = ac->data;
    t->disconnects++;
    t->disc_status = status;
    t->ac = NULL;
}

static int lt_ac_run(lt_t *t) {
    t->ac = redisAsyncConnect("127.0.0.1", t->redis.port);
    ASSERT_NOT_NULL(t->ac);
    ASSERT_EQ(t->ac->err, 0);
    ASSERT_OK(store__redis_uv_attach(&t->loop, t->ac));
    t->ac->data = t;
    redisAsyncSetConnectCallback(t->ac, lt_ac_on_connect);
    redisAsyncSetDisconnectCallback(t->ac, lt_ac_on_disconnect);
    if (lt_finish(t)) {
        return 1;
    }
    ASSERT_EQ(t->connects, 1);
    ASSERT_EQ(t->disconnects, 1);
    ASSERT_EQ(t->disc_status, REDIS_OK);
    ASSERT_NULL(t->ac);
    return 0;
}

/* One adapter scenario; 'replies' is the exact number of commands that must be
 * answered before the kill. */
static int lt_ac_case(lt_when_t when, lt_how_t how, int block_at, const char *block_secs,
                      int replies) {
    lt_t *t = lt_new(when, how, block_at, block_secs);
    ASSERT_NOT_NULL(t);
    int rc = lt_ac_run(t) || lt_check_ledger(t, replies, how == LT_FREE);
    lt_free(t);
    return rc;
}

int test_adapter_free_from_connect_timer(void) {
    /* Freed in the same timer that sent them: nothing was written yet, all NULL. */
    return lt_ac_case(LT_AT_CONNECT, LT_FREE, LT_K, "5", 0);
}

int test_adapter_free_from_timer_with_replies_pending(void) {
    /* LT_K answered, then a 5 s BLPOP holds back the other 1,000 in Redis. */
    return lt_ac_case(LT_AFTER_REPLY, LT_FREE, LT_K, "5", LT_K);
}

int test_adapter_free_inside_reply(void) {
    /* hiredis defers the free to the end of the callback, and the adapter's read loop
     * must stop there even though the next 400 replies are already in the socket. */
    return lt_ac_case(LT_IN_REPLY, LT_FREE, 3 * LT_K, "5", LT_K);
}

int test_adapter_disconnect_from_connect_timer_and_inside_reply(void) {
    /* A graceful disconnect waits for every reply, the BLPOP's nil included. */
    if (lt_ac_case(LT_AT_CONNECT, LT_DISCONNECT, LT_K, "0.2", LT_N)) {
        return 1;
    }
    return lt_ac_case(LT_IN_REPLY, LT_DISCONNECT, 3 * LT_K, "0.2", LT_N);
}

/* ---- The link: store/link.c over the adapter ---- */

static int lt_link_ping(lt_t *t, store_link_reply_cb cb, void *arg) {
    const char *argv[1] = {"PING"};
    size_t len[1] = {4};
    return store__link_command(t->link, cb, arg, 1, argv, len);
}

static void lt_link_never(void *arg, redisReply *reply) {
    (void)reply;
    ((lt_t *)arg)->late_called++;
}

static void lt_link_on_done(void *arg) {
    lt_t *t = arg;
    t->done++;
    t->link = NULL;
}

static void lt_link_close(lt_t *t) {
    store__link_stats(t->link, &t->stats);
    store__link_close(t->link, lt_link_on_done, t);
}

static void lt_link_kill(lt_t *t) {
    if (t->how == LT_CLOSE) {
        lt_link_close(t);
    } else {
        store__link_reset(t->link);
    }
}

static void lt_link_on_kill_timer(uv_timer_t *h) {
    lt_link_kill(h->data);
}

static void lt_link_on_reply(void *arg, redisReply *reply) {
    lt_cmd_t *c = arg;
    lt_t *t = c->t;
    lt_count(t, c, reply);
    if (reply == NULL) {
        /* The link is failing its commands: a new one must be refused, not queued. */
        int rc = lt_link_ping(t, lt_link_never, t);
        t->late_refused += rc == -ENOTCONN;
        t->late_accepted += rc == 0;
    } else if (c->idx == LT_K - 1 && t->when == LT_IN_REPLY) {
        lt_link_kill(t);
    } else if (c->idx == LT_K - 1 && t->when == LT_AFTER_REPLY) {
        uv_timer_start(&t->timer, lt_link_on_kill_timer, 0, 0);
    }
}

/* The first command on a new connection after a reset or a deadline kill. */
static void lt_link_on_probe(void *arg, redisReply *reply) {
    lt_t *t = arg;
    t->probe_replied = reply != NULL && reply->type == REDIS_REPLY_STATUS;
    lt_link_close(t);
}

static void lt_link_send_all(lt_t *t) {
    t->sent_ms = uv_now(&t->loop);
    for (int i = 0; i < LT_N; i++) {
        const char *argv[3] = {"BLPOP", LT_KEY, t->block_secs};
        size_t len[3] = {5, strlen(LT_KEY), strlen(t->block_secs)};
        int rc = i == t->block_at
                     ? store__link_command(t->link, lt_link_on_reply, &t->cmd[i], 3, argv, len)
                     : lt_link_ping(t, lt_link_on_reply, &t->cmd[i]);
        t->sent += rc == 0;
    }
}

/* The link announces a connection from a 0 ms timer after hiredis's connect
 * callback (H4), so this runs in that deferred timer. */
static void lt_link_on_state(void *arg, int up) {
    lt_t *t = arg;
    if (!up) {
        t->disconnects++;
        return;
    }
    t->connects++;
    if (t->connects == 1) {
        lt_link_send_all(t);
        if (t->when == LT_AT_CONNECT) {
            lt_link_kill(t);
        }
    } else if (lt_link_ping(t, lt_link_on_probe, t)) {
        lt_link_close(t);
    }
}

static int lt_link_run(lt_t *t, unsigned command_timeout_ms) {
    store_link_opts_t o = {
        .host = "127.0.0.1",
        .port = t->redis.port,
        .connect_timeout_ms = 1000,
        .command_timeout_ms = command_timeout_ms,
        .max_inflight = 2 * LT_N,
        .ping_interval_ms = 60000, /* no idle ping in the ledger */
    };
    t->link = store__link_new(&t->loop, &o, lt_link_on_state, t);
    if (lt_finish(t)) {
        return 1;
    }
    ASSERT_EQ(t->done, 1);
    ASSERT_NULL(t->link);
    return 0;
}

/* store__link_close from the deferred connect timer, a 0 ms timer or a reply
 * callback: 'replies' answered exactly, the rest NULL, one connection. */
static int lt_link_close_case(lt_when_t when, int block_at, int replies) {
    lt_t *t = lt_new(when, LT_CLOSE, block_at, "5");
    ASSERT_NOT_NULL(t);
    int rc = lt_link_run(t, 3000) || lt_check_ledger(t, replies, 1);
    if (rc == 0 && (t->connects != 1 || t->disconnects != 0)) {
        fprintf(stderr, "  connects %d, disconnects %d\n", t->connects, t->disconnects);
        rc = 1;
    }
    lt_free(t);
    return rc;
}

int test_link_close_from_connect_timer(void) {
    return lt_link_close_case(LT_AT_CONNECT, LT_K, 0);
}

int test_link_close_from_timer_with_replies_pending(void) {
    return lt_link_close_case(LT_AFTER_REPLY, LT_K, LT_K);
}

int test_link_close_inside_reply(void) {
    return lt_link_close_case(LT_IN_REPLY, 3 * LT_K, LT_K);
}

/* After a kill by reset or deadline: one disconnect, a reconnect whose first
 * command is answered, and the link's counters agree with the ledger. */
static int lt_check_reconnected(const lt_t *t, uint64_t timeouts) {
    ASSERT_EQ(t->connects, 2);
    ASSERT_EQ(t->disconnects, 1);
    ASSERT_EQ(t->probe_replied, 1);
    ASSERT_EQ(t->stats.commands, LT_N + 1);
    ASSERT_EQ(t->stats.failed, t->nulls);
    ASSERT_EQ(t->stats.timeouts, timeouts);
    return 0;
}

/* store__link_reset from the deferred connect timer or a reply callback: the link
 * drops at its next tick (so how many were answered by then is not fixed, but
 * nothing behind the 5 s BLPOP can be), then reconnects. */
static int lt_link_reset_case(lt_when_t when, int block_at, int min_replies) {
    lt_t *t = lt_new(when, LT_RESET, block_at, "5");
    ASSERT_NOT_NULL(t);
    int rc = lt_link_run(t, 3000) || lt_check_ledger(t, -1, 1) || lt_check_reconnected(t, 0);
    if (rc == 0 && t->replies < min_replies) {
        fprintf(stderr, "  %d replies, at least %d expected\n", t->replies, min_replies);
        rc = 1;
    }
    lt_free(t);
    return rc;
}

int test_link_reset_from_connect_timer(void) {
    return lt_link_reset_case(LT_AT_CONNECT, LT_K, 0);
}

int test_link_reset_inside_reply(void) {
    return lt_link_reset_case(LT_IN_REPLY, 3 * LT_K, LT_K);
}

int test_link_deadline_kill_with_replies_pending(void) {
    /* The production path: the link's tick timer finds the BLPOP older than the
     * command deadline and frees the context with 1,000 commands queued behind it. */
    lt_t *t = lt_new(LT_BY_DEADLINE, LT_RESET, LT_K, "5");
    ASSERT_NOT_NULL(t);
    int rc = lt_link_run(t, LT_DEADLINE) || lt_check_ledger(t, -1, 1) || lt_check_reconnected(t, 1);
    uint64_t after = t->first_null_ms - t->sent_ms;
    /* At the deadline, plus at most one tick (100 ms); 1 s more for a loaded machine. */
    if (rc == 0 && (after < LT_DEADLINE || after > LT_DEADLINE + 100 + 1000)) {
        fprintf(stderr, "  killed %llu ms after sending, deadline %u ms\n",
                (unsigned long long)after, LT_DEADLINE);
        rc = 1;
    }
    if (rc == 0) {
        printf("  deadline %u ms: killed after %llu ms, %d answered, %d NULL\n", LT_DEADLINE,
               (unsigned long long)after, t->replies, t->nulls);
    }
    lt_free(t);
    return rc;
}

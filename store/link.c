/* A self-healing Redis connection on libuv; see link.h and shared/reliability.md
 * section 1.4 for the recipe it follows. */
#include "store/link.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>

#include "common/sbuf.h"
#include "common/xalloc.h"
#include "store/redis_uv.h"

enum { LINK_DOWN, LINK_CONNECTING, LINK_UP, LINK_CLOSING };

#define LINK_TICK_MS     100u
#define LINK_BACKOFF_MIN 50u
/* With +25% jitter the next attempt comes at most 1.25 s after Redis is back, which
 * leaves room for the reload and a busy loop within the 2 s of reliability.md A1
 * (a 1.5 s cap measured up to 1.80 s from Redis answering PING to /readyz 200). */
#define LINK_BACKOFF_MAX 1000u

typedef struct link_cmd {
    struct link_cmd *prev, *next;
    store_link_t *link;
    store_link_reply_cb cb;
    void *arg;
    uint64_t sent_ms;
    uint64_t sent_ns;
} link_cmd_t;

struct store_link {
    uv_loop_t *loop;
    store_link_opts_t o;
    char *host, *unix_path;
    store_link_state_cb state_cb;
    void *arg;
    redisAsyncContext *ac;
    int state;
    int announced; /* state_cb(1) was called for the current connection */
    int reset;     /* store__link_reset asked for a reconnect */
    uint64_t connect_started;
    uint64_t last_activity;
    unsigned backoff;
    uint64_t rng;
    link_cmd_t head; /* circular list of unanswered commands, oldest first */
    unsigned inflight;
    uv_timer_t tick, retry, defer;
    int open_handles;
    void (*done)(void *);
    void *done_arg;
    store_link_stats_t stats;
};

static void link_connect(store_link_t *l);

static void link_on_retry(uv_timer_t *t) {
    link_connect(t->data);
}

static void link_cmd_unlink(link_cmd_t *c) {
    c->prev->next = c->next;
    c->next->prev = c->prev;
}

static void link_set_down(store_link_t *l) {
    int was = l->announced;
    l->announced = 0;
    if (l->state != LINK_CLOSING) {
        l->state = LINK_DOWN;
    }
    if (was) {
        l->stats.disconnects++;
        l->state_cb(l->arg, 0);
    }
}

static void link_schedule_retry(store_link_t *l) {
    if (l->state == LINK_CLOSING) {
        return;
    }
    /* Capped exponential backoff with +-25% jitter, so a fleet of services does
     * not reconnect in lockstep after a Redis restart. */
    unsigned base = l->backoff ? l->backoff : LINK_BACKOFF_MIN;
    l->rng ^= l->rng << 13;
    l->rng ^= l->rng >> 7;
    l->rng ^= l->rng << 17;
    unsigned jitter = base / 2 ? (unsigned)(l->rng % (base / 2)) : 0;
    unsigned delay = base - base / 4 + jitter;
    l->backoff = base * 2 > LINK_BACKOFF_MAX ? LINK_BACKOFF_MAX : base * 2;
    uv_timer_start(&l->retry, link_on_retry, delay, 0);
}

/* Drops the current context from a timer (never from a hiredis callback): every
 * pending command gets a NULL reply. */
static void link_kill(store_link_t *l) {
    redisAsyncContext *ac = l->ac;
    if (ac == NULL) {
        return;
    }
    l->ac = NULL;
    link_set_down(l);
    redisAsyncFree(ac);
    link_schedule_retry(l);
}

static void link_on_reply(redisAsyncContext *ac, void *reply, void *priv) {
    (void)ac;
    link_cmd_t *c = priv;
    store_link_t *l = c->link;
    link_cmd_unlink(c);
    l->inflight--;
    l->last_activity = uv_now(l->loop);
    if (reply != NULL) {
        histo_add(&l->stats.rtt, (double)(uv_hrtime() - c->sent_ns) / 1e9);
        l->stats.errors += ((redisReply *)reply)->type == REDIS_REPLY_ERROR;
    }
    if (reply == NULL) {
        l->stats.failed++;
        /* The context is going away; refuse new commands from here on. */
        if (l->state == LINK_UP) {
            l->state = LINK_DOWN;
        }
    }
    if (c->cb) {
        c->cb(c->arg, reply);
    }
    free(c);
}

static void link_on_defer(uv_timer_t *t) {
    store_link_t *l = t->data;
    /* Announce from a fresh loop turn: hiredis 0.14 is not safe to drive from
     * inside its connect callback (reliability.md H4). */
    if (l->state == LINK_UP && !l->announced) {
        l->announced = 1;
        l->stats.connects++;
        l->state_cb(l->arg, 1);
    }
}

static void link_on_connect(const redisAsyncContext *ac, int status) {
    store_link_t *l = ac->data;
    if (l == NULL || l->ac != ac) {
        return;
    }
    if (status != REDIS_OK) {
        /* hiredis frees a context whose connect failed (H5). */
        l->ac = NULL;
        link_set_down(l);
        link_schedule_retry(l);
        return;
    }
    l->state = LINK_UP;
    l->backoff = 0;
    l->last_activity = uv_now(l->loop);
    uv_timer_start(&l->defer, link_on_defer, 0, 0);
}

static void link_on_disconnect(const redisAsyncContext *ac, int status) {
    (void)status;
    store_link_t *l = ac->data;
    /* Only record state here: hiredis frees the context right after this returns,
     * and freeing it ourselves would be a double free (H3). */
    if (l == NULL || l->ac != ac) {
        return;
    }
    l->ac = NULL;
    link_set_down(l);
    link_schedule_retry(l);
}

static void link_connect(store_link_t *l) {
    if (l->state == LINK_CLOSING || l->ac != NULL) {
        return;
    }
    redisAsyncContext *ac =
        l->unix_path ? redisAsyncConnectUnix(l->unix_path) : redisAsyncConnect(l->host, l->o.port);
    if (ac == NULL || ac->err) {
        if (ac) {
            redisAsyncFree(ac);
        }
        link_schedule_retry(l);
        return;
    }
    if (store__redis_uv_attach(l->loop, ac) != 0) {
        redisAsyncFree(ac);
        link_schedule_retry(l);
        return;
    }
    ac->data = l;
    redisAsyncSetConnectCallback(ac, link_on_connect);
    redisAsyncSetDisconnectCallback(ac, link_on_disconnect);
    l->ac = ac;
    l->state = LINK_CONNECTING;
    /* The loop's cached time is stale when this runs before uv_run (at start, after
     * loading the taxonomy and rules: 0.55 s under valgrind), which would cut the
     * first attempt short by as much. */
    uv_update_time(l->loop);
    l->connect_started = uv_now(l->loop);
}

static void link_on_tick(uv_timer_t *t) {
    store_link_t *l = t->data;
    uint64_t now = uv_now(l->loop);
    if (l->reset) {
        l->reset = 0;
        if (l->ac) {
            link_kill(l);
            return;
        }
    }
    if (l->state == LINK_CONNECTING && l->ac &&
        now - l->connect_started >= l->o.connect_timeout_ms) {
        l->stats.timeouts++;
        link_kill(l);
        return;
    }
    if (l->inflight && l->ac && now - l->head.next->sent_ms >= l->o.command_timeout_ms) {
        l->stats.timeouts++;
        link_kill(l);
        return;
    }
    if (l->state == LINK_UP && l->announced && l->inflight == 0 &&
        now - l->last_activity >= l->o.ping_interval_ms) {
        const char *argv[1] = {"PING"};
        size_t len[1] = {4};
        store__link_command(l, NULL, NULL, 1, argv, len);
    }
}

store_link_t *store__link_new(uv_loop_t *loop, const store_link_opts_t *opts,
                              store_link_state_cb state_cb, void *arg) {
    store_link_t *l = xcalloc(1, sizeof *l);
    l->loop = loop;
    l->o = *opts;
    l->host = opts->host ? xstrdup(opts->host) : NULL;
    l->unix_path = opts->unix_path ? xstrdup(opts->unix_path) : NULL;
    l->state_cb = state_cb;
    l->arg = arg;
    l->head.next = l->head.prev = &l->head;
    l->rng = (uint64_t)(uintptr_t)l ^ uv_hrtime() ^ UINT64_C(0x9e3779b97f4a7c15);
    if (l->rng == 0) {
        l->rng = 1;
    }
    uv_timer_init(loop, &l->tick);
    uv_timer_init(loop, &l->retry);
    uv_timer_init(loop, &l->defer);
    l->tick.data = l->retry.data = l->defer.data = l;
    l->open_handles = 3;
    l->state = LINK_DOWN;
    uv_timer_start(&l->tick, link_on_tick, LINK_TICK_MS, LINK_TICK_MS);
    link_connect(l);
    return l;
}

/* Writes the decimal digits of 'v' at 'p'; returns the end. */
static char *link_put_uint(char *p, size_t v) {
    return p + sbuf_utoa(p, v);
}

/* The command in Redis's protocol (RESP) in one buffer, NUL-terminated (hiredis
 * reads one byte past a one-word command to see whether more follow); caller
 * frees. Formatted here, not by hiredis 0.14, whose redisFormatSdsCommandArgv
 * leaks when it runs out of memory; here that is the usual abort. */
static char *link_format(int argc, const char **argv, const size_t *argvlen, size_t *len) {
    size_t n = 1 + 20 + 2 + 1; /* "*<argc>\r\n" and the NUL */
    for (int i = 0; i < argc; i++) {
        n += 1 + 20 + 2 + argvlen[i] + 2; /* "$<len>\r\n<arg>\r\n" */
    }
    char *cmd = xmalloc(n);
    char *p = cmd;
    *p++ = '*';
    p = link_put_uint(p, (size_t)argc);
    *p++ = '\r';
    *p++ = '\n';
    for (int i = 0; i < argc; i++) {
        *p++ = '$';
        p = link_put_uint(p, argvlen[i]);
        *p++ = '\r';
        *p++ = '\n';
        if (argvlen[i]) {
            memcpy(p, argv[i], argvlen[i]);
            p += argvlen[i];
        }
        *p++ = '\r';
        *p++ = '\n';
    }
    *p = '\0';
    *len = (size_t)(p - cmd);
    return cmd;
}

int store__link_command(store_link_t *l, store_link_reply_cb cb, void *arg, int argc,
                        const char **argv, const size_t *argvlen) {
    if (l->state != LINK_UP || l->ac == NULL) {
        return -ENOTCONN;
    }
    if (l->inflight >= l->o.max_inflight) {
        return -ENOBUFS;
    }
    link_cmd_t *c = xcalloc(1, sizeof *c);
    c->link = l;
    c->cb = cb;
    c->arg = arg;
    c->sent_ms = uv_now(l->loop);
    c->sent_ns = uv_hrtime();
    size_t len;
    char *cmd = link_format(argc, argv, argvlen, &len);
    int ok = redisAsyncFormattedCommand(l->ac, link_on_reply, c, cmd, len) == REDIS_OK;
    free(cmd);
    if (!ok) {
        free(c);
        return -ENOTCONN;
    }
    /* hiredis 0.14 ignores a failed malloc of the callback record: the command goes
     * out with no callback, and its reply would be handed to the next command's
     * callback (or trip an assert in hiredis). Out of memory is an abort here too.
     * (A failed append of the command is safe: it sets c.err, so the next read or
     * write drops the connection and every pending callback gets NULL.) */
    if (l->ac->replies.tail == NULL || l->ac->replies.tail->privdata != c) {
        xalloc_fail(sizeof(redisCallback));
    }
    c->prev = l->head.prev;
    c->next = &l->head;
    l->head.prev->next = c;
    l->head.prev = c;
    l->inflight++;
    l->stats.commands++;
    return 0;
}

void store__link_reset(store_link_t *l) {
    l->reset = 1;
    if (l->state == LINK_UP) {
        l->state = LINK_DOWN; /* refuse new commands until reconnected */
    }
}

bool store__link_up(const store_link_t *l) {
    return l->state == LINK_UP && l->announced;
}

unsigned store__link_inflight(const store_link_t *l) {
    return l->inflight;
}

void store__link_stats(const store_link_t *l, store_link_stats_t *out) {
    *out = l->stats;
}

static void link_on_handle_close(uv_handle_t *h) {
    store_link_t *l = h->data;
    if (--l->open_handles == 0) {
        void (*done)(void *) = l->done;
        void *arg = l->done_arg;
        free(l->host);
        free(l->unix_path);
        free(l);
        if (done) {
            done(arg);
        }
    }
}

void store__link_close(store_link_t *l, void (*done)(void *), void *arg) {
    l->done = done;
    l->done_arg = arg;
    l->state = LINK_CLOSING;
    redisAsyncContext *ac = l->ac;
    l->ac = NULL;
    l->announced = 0;
    if (ac) {
        redisAsyncFree(ac);
    }
    uv_close((uv_handle_t *)&l->tick, link_on_handle_close);
    uv_close((uv_handle_t *)&l->retry, link_on_handle_close);
    uv_close((uv_handle_t *)&l->defer, link_on_handle_close);
}

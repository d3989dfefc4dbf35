/* Module-internal: one Redis connection that stays up. It connects without
 * blocking (the host must be an IP literal or a unix socket path: hiredis 0.14
 * resolves names with a blocking call), enforces a connect deadline and a command
 * deadline with its own libuv timers (hiredis 0.14 has none), pings when idle,
 * reconnects with capped exponential backoff and jitter, and answers every command
 * it accepted exactly once: with the reply, or with NULL when the connection failed
 * before the reply came (the command may or may not have run). */
#ifndef HUIQI_STORE_LINK_H
#define HUIQI_STORE_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/histo.h"

#include <hiredis/hiredis.h>

typedef struct store_link store_link_t;

/* 'reply' is borrowed for the call (hiredis frees it); NULL means no answer. */
typedef void (*store_link_reply_cb)(void *arg, redisReply *reply);
/* Called with up = 1 once a connection is usable, up = 0 when it is lost. */
typedef void (*store_link_state_cb)(void *arg, int up);

typedef struct store_link_opts {
    const char *host; /* IP literal, or NULL with unix_path */
    int port;
    const char *unix_path; /* or NULL */
    unsigned connect_timeout_ms;
    unsigned command_timeout_ms; /* oldest unanswered command older than this kills the link */
    unsigned max_inflight;       /* commands accepted but unanswered */
    unsigned ping_interval_ms;   /* idle ping, so a dead peer is noticed without traffic */
} store_link_opts_t;

/* A new link that starts connecting at once. 'opts' strings are copied. */
store_link_t *store__link_new(uv_loop_t *loop, const store_link_opts_t *opts,
                              store_link_state_cb state_cb, void *arg);

/* Sends a command. Returns 0 (then 'cb' runs exactly once, never from inside this
 * call), -ENOTCONN while the link is down, or -ENOBUFS when max_inflight commands
 * are waiting. On an error 'cb' is never called. Arguments are copied. */
int store__link_command(store_link_t *l, store_link_reply_cb cb, void *arg, int argc,
                        const char **argv, const size_t *argvlen);

/* Drops the connection at the next tick (within LINK_TICK_MS) and reconnects with
 * backoff, as after a failure: for a server that answered but cannot serve yet
 * (LOADING). Safe from inside a reply callback. */
void store__link_reset(store_link_t *l);

bool store__link_up(const store_link_t *l);
unsigned store__link_inflight(const store_link_t *l);

typedef struct store_link_stats {
    uint64_t connects, disconnects, timeouts, commands, failed;
    uint64_t errors; /* error replies */
    histo_t rtt;     /* send to reply, answered commands */
} store_link_stats_t;
void store__link_stats(const store_link_t *l, store_link_stats_t *out);

/* Fails pending commands (NULL replies), closes the connection and handles, then
 * calls 'done(arg)' from the loop and frees the link. Safe from inside a reply
 * callback and from the state callback (tests/test_link.c): inside a reply callback
 * hiredis defers the free until that callback returns, and every later command gets
 * NULL, even one whose reply was already read. */
void store__link_close(store_link_t *l, void (*done)(void *), void *arg);

#endif

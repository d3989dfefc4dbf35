/* Persistence in Redis, and the in-memory mirror that matching reads. Redis is the
 * source of truth: every write is one Lua script that checks and changes the data
 * atomically, and its reply is applied to the in-memory index in reply order, so
 * memory follows Redis exactly. At start (and after Redis lost data) the index is
 * rebuilt from compact per-chunk records, not from the documents.
 *
 * Redis layout (prefix "hq:"):
 *   hq:tax:<vocab>    hash  tag code -> bit (the persisted bit map)
 *   hq:ent:<uscc>     hash  doc (JSON), ver, ord
 *   hq:idx:<ord/128>  hash  ord -> packed record (code, tag bits, interest bits)
 *   hq:ord:next, hq:ord:free   ordinal allocation (counter, list of freed ordinals)
 *   hq:pol:<id>       hash  doc, meta (packed rule and window), ver, status, times
 *   hq:pols, hq:pol:seq        set of policy ids, id counter
 *
 * All functions run on the loop thread. Callbacks run exactly once when the call
 * returned 0, never from inside the call; on an error return they never run. */
#ifndef HUIQI_STORE_STORE_H
#define HUIQI_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "matcher/matcher.h"
#include "matcher/polset.h"
#include "matcher/rule.h"
#include "tags/taxonomy.h"

typedef struct store store_t;

typedef struct store_opts {
    const char *redis_host; /* IP literal; or NULL with redis_unix */
    int redis_port;
    const char *redis_unix;
    unsigned connect_timeout_ms;
    unsigned command_timeout_ms;
    unsigned max_inflight;
} store_opts_t;

enum store_event {
    STORE_EV_READY,   /* data loaded and Redis reachable: serving */
    STORE_EV_DOWN,    /* Redis became unreachable */
    STORE_EV_LOADING, /* Redis is back but lost or changed data: reloading */
    STORE_EV_FATAL,   /* cannot go on (e.g. the taxonomy would remap stored tags) */
};
/* 'detail' is a human-readable reason (borrowed, may be NULL). */
typedef void (*store_event_cb)(void *arg, int event, const char *detail);

/* Starts connecting to Redis and loading. 'tax' is borrowed and must outlive the
 * store. Returns NULL when the options are unusable. */
store_t *store_new(uv_loop_t *loop, const store_opts_t *opts, const taxonomy_t *tax,
                   store_event_cb cb, void *arg);
/* Fails what is pending, closes the Redis connection and calls done(arg). */
void store_close(store_t *s, void (*done)(void *), void *arg);

/* Loaded and connected: writes are accepted. */
bool store_ready(const store_t *s);
/* The in-memory data has been loaded at least once (reads can be served). */
bool store_loaded(const store_t *s);
bool store_redis_up(const store_t *s);

/* Errors from the asynchronous calls below:
 *   -ENOTCONN  Redis is unreachable            -EAGAIN   loading, try again shortly
 *   -ENOBUFS   too many commands in flight     -EIO      no reply: outcome unknown
 *   -EEXIST    exists (create)                 -ENOENT   no such resource
 *   -ESTALE    version mismatch                -EPERM    not allowed in this state
 *   -EPROTO    unexpected answer from Redis */

/* ---- Enterprises --------------------------------------------------------- */

enum { STORE_CREATE, STORE_UPSERT, STORE_UPDATE };

typedef struct store_ent_in {
    const char *uscc; /* 18 bytes */
    const char *doc;  /* the JSON document to keep */
    size_t doc_len;
    const uint64_t *row;        /* profile bits, matcher_row_words words */
    const uint16_t *interests;  /* policy tag bits */
    unsigned ninterests;        /* at most STORE_MAX_INTERESTS */
    int mode;                   /* STORE_CREATE / UPSERT / UPDATE */
    int64_t expect_ver;         /* -1: any version */
    int32_t retag_on;           /* day its tags change with time, or DATE_NONE */
} store_ent_in_t;

#define STORE_MAX_INTERESTS 64

typedef struct store_ent_out {
    uint32_t ord;
    uint64_t ver;
    int created;        /* this write created the enterprise */
    int changed;        /* 0 when the stored document and profile were identical */
    int64_t created_ms; /* when it was first created */
    int64_t updated_ms; /* when its document last changed */
} store_ent_out_t;

typedef struct store_doc {
    const char *doc; /* borrowed for the callback */
    size_t len;
    uint64_t ver;
    int64_t created_ms, updated_ms;
} store_doc_t;

typedef void (*store_ent_cb)(void *arg, int rc, const store_ent_out_t *out);
/* 'd' is NULL on error. */
typedef void (*store_doc_cb)(void *arg, int rc, const store_doc_t *d);

/* Creates, replaces or updates an enterprise; on success the index already holds
 * the new row when 'cb' runs. */
int store_ent_put(store_t *s, const store_ent_in_t *in, store_ent_cb cb, void *arg);
int store_ent_del(store_t *s, const char *uscc, store_ent_cb cb, void *arg);
/* Reads the stored document ('doc' is borrowed for the callback). */
int store_ent_get(store_t *s, const char *uscc, store_doc_cb cb, void *arg);

/* Credit codes of enterprises whose tags are due to change by 'today' (at most
 * 'max'). 'usccs' is an array of n 18-byte codes, borrowed for the callback. */
typedef void (*store_due_cb)(void *arg, int rc, const char *usccs, size_t n);
int store_retag_due(store_t *s, int32_t today, unsigned max, store_due_cb cb, void *arg);

/* Read-only views of the mirror, valid until the next write or reload. */
const matcher_t *store_matcher(const store_t *s);
/* The interests (policy tag bits) of a live ordinal; returns the count. */
unsigned store_ent_interests(const store_t *s, uint32_t ord, const uint16_t **bits);

/* ---- Policies ------------------------------------------------------------ */

enum { STORE_POL_DRAFT, STORE_POL_PUBLISHED, STORE_POL_WITHDRAWN };
enum { STORE_MODE_APPLY, STORE_MODE_AUTO };
enum { STORE_PUBLISH, STORE_WITHDRAW };

#define STORE_MAX_PTAGS 64

typedef struct store_policy {
    uint32_t id;
    uint64_t ver;
    int status;
    char *doc;
    size_t doc_len;
    rule_t rule;
    int32_t opens, closes; /* inclusive days since epoch; DATE_NONE when open-ended */
    uint8_t mode;
    uint16_t nptags;
    uint16_t ptags[STORE_MAX_PTAGS]; /* policy tag bits */
    int64_t created_ms, updated_ms, published_ms;
} store_policy_t;

typedef struct store_pol_in {
    const char *doc;
    size_t doc_len;
    const rule_t *rule;
    int32_t opens, closes;
    uint8_t mode;
    const uint16_t *ptags;
    uint16_t nptags;
    int64_t expect_ver; /* -1: any */
} store_pol_in_t;

/* 'p' is borrowed for the callback (NULL on error and after a delete). */
typedef void (*store_pol_cb)(void *arg, int rc, const store_policy_t *p);

int store_pol_create(store_t *s, const store_pol_in_t *in, store_pol_cb cb, void *arg);
int store_pol_update(store_t *s, uint32_t id, const store_pol_in_t *in, store_pol_cb cb,
                     void *arg);
int store_pol_delete(store_t *s, uint32_t id, store_pol_cb cb, void *arg);
/* Publishes (from draft or withdrawn) or withdraws (from published); doing what is
 * already done succeeds without change; anything else is -EPERM. */
int store_pol_set_status(store_t *s, uint32_t id, int action, store_pol_cb cb, void *arg);

/* The policy with this id, or NULL. Borrowed until the next write or reload. */
const store_policy_t *store_policy(const store_t *s, uint32_t id);
/* The policy with the smallest id > 'after' (0 starts), or NULL. */
const store_policy_t *store_policy_next(const store_t *s, uint32_t after);
size_t store_policy_count(const store_t *s);
/* Published policies, for matching one enterprise against them all. */
const polset_t *store_polset(const store_t *s);

/* ---- Statistics ------------------------------------------------------------ */

typedef struct store_stats {
    uint64_t redis_connects, redis_disconnects, redis_timeouts, redis_commands, redis_failed;
    unsigned redis_inflight;
    uint64_t reloads;
    uint64_t load_ms; /* duration of the last full load */
} store_stats_t;
void store_get_stats(const store_t *s, store_stats_t *out);

#endif

/* Module-internal: the store's state, shared by store.c (writes and reads),
 * store_load.c (loading, resync) and codec.c (record formats). */
#ifndef HUIQI_STORE_INTERNAL_H
#define HUIQI_STORE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "store/link.h"
#include "store/mirror.h"
#include "store/store.h"

#define STORE_CHUNK       128u /* ordinals per hq:idx:<n> hash: small enough for listpack */
#define STORE_KEY_MAX     96u
#define STORE_LOAD_WINDOW 64u /* chunk reads in flight while loading */

enum {
    STORE_SCRIPT_ENT_PUT,
    STORE_SCRIPT_ENT_DEL,
    STORE_SCRIPT_POL_CREATE,
    STORE_SCRIPT_POL_UPDATE,
    STORE_SCRIPT_POL_DEL,
    STORE_SCRIPT_POL_STATUS,
    STORE_SCRIPT_TAX_APPEND,
    STORE_SCRIPT_WH_PUT,
    STORE_SCRIPT_WH_DEL,
    STORE_SCRIPT_JOB_CREATE,
    STORE_SCRIPT_JOB_STEP,
    STORE_SCRIPT_JOB_END,
    STORE_SCRIPT_PUSH_ENT,
    STORE_SCRIPT_Q_MOVE,
    STORE_SCRIPT_Q_RECALL,
    STORE_SCRIPT_DLV_RECORD,
    STORE_SCRIPT_DLV_REQUEUE,
    STORE_SCRIPT_CFG_GET,
    STORE_NSCRIPTS
};

extern const char *const store__script_text[STORE_NSCRIPTS];

enum { ST_DOWN, ST_SYNCING, ST_LOADING, ST_READY, ST_FATAL, ST_CLOSING };

/* An in-progress full load. */
typedef struct store_load store_load_t;

struct store {
    uv_loop_t *loop;
    const taxonomy_t *tax;
    store_event_cb cb;
    void *arg;
    store_link_t *link;
    /* A second connection for the push engine's bulk traffic (job steps, queue
     * reads, delivery records, rendering reads): Redis answers a connection's
     * commands in order, so on one connection an API read would wait behind
     * dozens of queued delivery records. Falls back to 'link' while down. */
    store_link_t *bulk;
    int closing_links;
    int state;
    int loaded;
    uint64_t gen; /* bumped on every connection; stale load replies are dropped */
    store_mem_t *mem;
    store_load_t *load;
    char run_id[48];
    char script_sha[STORE_NSCRIPTS][41];
    int syncing_left;
    char pending_run_id[48];
    /* A write got no reply (its outcome is unknown), so memory may differ from
     * Redis: the next connection reloads everything. */
    int dirty;
    uint64_t reloads;
    uint64_t load_ms;
    store_ent_hook_fn ent_hook;
    void *ent_hook_arg;
    void (*close_done)(void *);
    void *close_arg;
};

/* ---- codec.c ---- */
/* Packs an index record; returns its length (at most store__rec_max(...)). */
size_t store__rec_encode(char *out, const char *uscc, const uint64_t *row, size_t words,
                         const uint16_t *interests, unsigned nint);
size_t store__rec_max(size_t words);
/* Unpacks a record into uscc (18 bytes), row (words, zeroed here) and interests
 * (up to STORE_MAX_INTERESTS). Returns 0 or -EINVAL on a malformed record or a bit
 * at or above 'ntags' / 'nptags'. */
int store__rec_decode(const char *p, size_t len, char *uscc, uint64_t *row, size_t words,
                      unsigned ntags, uint16_t *interests, unsigned *nint, unsigned nptags);
size_t store__meta_encode(char *out, const store_pol_in_t *in);
#define STORE_META_MAX (32 + 2 * (3 * RULE_MAX_PART + STORE_MAX_PTAGS))
int store__meta_decode(const char *p, size_t len, store_policy_t *pol, unsigned ntags,
                       unsigned nptags);

/* ---- store.c helpers used by store_load.c ---- */
int store__status_parse(const char *s, size_t len);
/* Builds a webhook from HGETALL fields; NULL when they are incomplete. */
store_webhook_t *store__webhook_from_kv(uint32_t id, const store_kv_t *kv, size_t n);
/* Turns a Redis array of alternating names and values into kv pairs (borrowed
 * from the reply); returns the count. */
size_t store__kv_from_reply(const redisReply *r, store_kv_t *kv, size_t max);
int64_t store__now_ms(void);
void store__emit(store_t *s, int event, const char *detail);
/* 0 when commands may be sent for the API (connected and loaded), -EAGAIN while
 * connecting or loading, -ENOTCONN while Redis is down. */
int store__usable(const store_t *s);
/* Sends an EVALSHA (falling back to EVAL on NOSCRIPT). Same contract as
 * store__link_command. */
int store__eval(store_t *s, int script, int nargs, const char **args, const size_t *lens,
                store_link_reply_cb cb, void *arg);
/* The same on the bulk connection (see store.bulk). */
int store__eval_bulk(store_t *s, int script, int nargs, const char **args, const size_t *lens,
                     store_link_reply_cb cb, void *arg);
/* The connection for bulk traffic: the bulk one when up, else the main one. */
store_link_t *store__bulk_link(const store_t *s);

/* Creates the delivery queue's consumer group if it does not exist. */
int store__q_ensure_group(store_t *s);

/* ---- store_load.c ---- */
void store__on_link_state(void *arg, int up);
void store__load_abort(store_t *s);

#endif

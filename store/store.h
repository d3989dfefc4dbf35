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

#include "common/histo.h"
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
    const uint64_t *row;       /* profile bits, matcher_row_words words */
    const uint16_t *interests; /* policy tag bits */
    unsigned ninterests;       /* at most STORE_MAX_INTERESTS */
    int mode;                  /* STORE_CREATE / UPSERT / UPDATE */
    int64_t expect_ver;        /* -1: any version */
    int32_t retag_on;          /* day its tags change with time, or DATE_NONE */
    const char *webhook;       /* its own webhook URL (contact.webhook), or NULL */
    /* What a webhook receiver is told of it (JSON: uscc, name, region, contact),
     * kept beside the document so a batch of 500 is built without parsing 500
     * documents; NULL for none. */
    const char *card;
    size_t card_len;
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

/* Credit codes of enterprises whose tags are due to change by 'today', oldest day
 * first, after skipping the first 'skip' (at most 'max'). 'usccs' is an array of n
 * 18-byte codes, borrowed for the callback. */
typedef void (*store_due_cb)(void *arg, int rc, const char *usccs, size_t n);
int store_retag_due(store_t *s, int32_t today, unsigned skip, unsigned max, store_due_cb cb,
                    void *arg);

/* Called after each enterprise write that changed something, with its profile
 * before (NULL when it was just created) and after (NULL when deleted). Rows are
 * borrowed for the call. Not called while loading. */
typedef void (*store_ent_hook_fn)(void *arg, const char *uscc, uint32_t ord,
                                  const uint64_t *old_row, const uint64_t *new_row);
void store_set_ent_hook(store_t *s, store_ent_hook_fn fn, void *arg);

/* Read-only views of the mirror, valid until the next write or reload. */
const matcher_t *store_matcher(const store_t *s);
/* Lays the in-memory index out again by region, entity type and industry
 * (matcher_relayout) when at least 'min' enterprises, and a quarter of all, were
 * added since the last layout (a load lays it out anyway). Runs on the caller's
 * thread: about 0.3 s a million enterprises. Returns how many enterprises were laid
 * out, 0 when nothing was done. */
uint32_t store_relayout(store_t *s, uint32_t min);
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
int store_pol_update(store_t *s, uint32_t id, const store_pol_in_t *in, store_pol_cb cb, void *arg);
int store_pol_delete(store_t *s, uint32_t id, store_pol_cb cb, void *arg);
/* Publishes (from draft or withdrawn) or withdraws (from published); doing what is
 * already done succeeds without change; anything else is -EPERM. A publish made
 * here starts no push job: store_pol_publish does both. */
int store_pol_set_status(store_t *s, uint32_t id, int action, store_pol_cb cb, void *arg);

/* 'p' is borrowed for the callback (NULL on error); 'job' is the push job created
 * with the publish, or 0 when none was. */
typedef void (*store_pub_cb)(void *arg, int rc, const store_policy_t *p, uint64_t job);
/* Publishes like store_pol_set_status and, when 'kind' is not NULL and the policy
 * becomes published, creates its push job (kind 'kind', e.g. "publish"; 'audience'
 * is the caller's count, for progress only) in the same Redis script: the publish
 * and its job are stored together or not at all, so no crash or Redis failure can
 * leave a published policy without its job. The job takes the policy's mode and
 * new version as Redis has them. Already published: unchanged, 'job' 0. Returns 0
 * or a store error (then 'cb' is never called); 'cb' gets -ENOENT, -EPERM, -EIO
 * (outcome unknown: the job, if made, resumes with the jobs that were running) or
 * -EPROTO (a script error: nothing is published). */
int store_pol_publish(store_t *s, uint32_t id, const char *kind, uint64_t audience, store_pub_cb cb,
                      void *arg);

/* The policy with this id, or NULL. Borrowed until the next write or reload. */
const store_policy_t *store_policy(const store_t *s, uint32_t id);
/* The policy with the smallest id > 'after' (0 starts), or NULL. */
const store_policy_t *store_policy_next(const store_t *s, uint32_t after);
size_t store_policy_count(const store_t *s);
/* Published policies, for matching one enterprise against them all. */
const polset_t *store_polset(const store_t *s);
/* The audience of policy 'p' (a record of this store): its matches per group in
 * 'groups' (matcher_ngroups + 1 entries, as matcher_count_groups) and their total.
 * A published policy's counts are kept in step with every enterprise write, so this
 * costs no evaluation; any other is evaluated now. Same answer either way. */
uint64_t store_pol_audience(store_t *s, const store_policy_t *p, uint64_t *groups);

/* ---- Webhooks, jobs and the delivery queue (store/push.c) --------------------
 *
 * Redis layout:
 *   hq:wh:<id>        hash  doc, url, events, secrets, sk, state, reason, ver, ...
 *   hq:whs, hq:wh:seq       webhook ids, id counter
 *   hq:whev:<event>   set   webhook ids subscribed to an event
 *   hq:entwh          hash  uscc -> the enterprise's own webhook URL
 *   hq:job:<id>       hash  policy, kind, state, cursor, counters, times
 *   hq:job:<id>:m     list  who this job newly matched, in order
 *   hq:jobs:running, hq:jobs (zset by creation), hq:job:seq
 *   hq:sent:<policy>  bitmap by ordinal: notified about this policy (never doubled)
 *   hq:grant:<policy> hash  uscc -> "<ms>:<policy version>" (granted without applying)
 *   hq:q              stream of deliveries to make, consumer group "push"
 *   hq:retry          zset  delivery id -> due time (ms)
 *   hq:dlv:<id>       hash  one delivery: event, target, state, attempts, body, ...
 *   hq:dlv:<id>:log   list  its attempts (JSON), newest last
 *   hq:dlvs, hq:dlvs:wh:<id>   zsets of delivery ids by creation time */

enum {
    STORE_EVM_MATCHED = 1,     /* policy.matched: one call per enterprise */
    STORE_EVM_BATCH = 2,       /* package.batch: up to 'batch' recipients per call */
    STORE_EVM_GRANTED = 4,     /* policy.granted: auto-mode grants */
    STORE_EVM_PKG_CHANGED = 8, /* enterprise.package_changed */
};

typedef struct store_webhook {
    uint32_t id;
    uint64_t ver;
    char *doc; /* the JSON the API shows (without secrets) */
    size_t doc_len;
    char *url;
    unsigned events;   /* STORE_EVM_* */
    char *secrets;     /* "whsec_..[:expires_ms] ..", newest first */
    char *sk;          /* "whsk_..." when ed25519 signing is on, else "" */
    double rate;       /* requests per second, 0 = unlimited */
    unsigned inflight; /* concurrent requests */
    unsigned batch;    /* recipients per package.batch call */
    int disabled;
    char *reason; /* why it was disabled */
    int64_t created_ms, updated_ms, failing_since_ms;
} store_webhook_t;

typedef struct store_wh_in {
    const char *doc;
    size_t doc_len;
    const char *url;
    unsigned events;
    const char *secrets;
    const char *sk;
    double rate;
    unsigned inflight, batch;
    int disabled;
    const char *reason;
    int64_t expect_ver; /* -1: any */
} store_wh_in_t;

/* 'w' is borrowed for the callback (NULL on error and after a delete). */
typedef void (*store_wh_cb)(void *arg, int rc, const store_webhook_t *w);
int store_wh_put(store_t *s, uint32_t id, const store_wh_in_t *in, store_wh_cb cb, void *arg);
int store_wh_del(store_t *s, uint32_t id, store_wh_cb cb, void *arg);
/* Marks a webhook healthy (failing_since 0), failing since a time, or disabled
 * with a reason; not versioned (the delivery engine calls it). */
int store_wh_health(store_t *s, uint32_t id, int64_t failing_since_ms, int disable,
                    const char *reason);
const store_webhook_t *store_webhook(const store_t *s, uint32_t id);
const store_webhook_t *store_webhook_next(const store_t *s, uint32_t after);

/* A field of a Redis hash or stream entry, borrowed for the callback. */
typedef struct store_kv {
    const char *k, *v;
    size_t klen, vlen;
} store_kv_t;
typedef void (*store_hash_cb)(void *arg, int rc, const store_kv_t *kv, size_t n);
/* The value of field 'k' in kv[0..n), or NULL (then *len is 0). */
const char *store_kv_get(const store_kv_t *kv, size_t n, const char *k, size_t *len);

/* For each of 'n' credit codes, in order, one kv: k "c" with its card, "d" with its
 * document (a record written before cards existed), or "" when it does not exist.
 * One round trip for all of them. */
int store_ent_cards(store_t *s, const char *const *usccs, size_t n, store_hash_cb cb, void *arg);

/* Jobs. 'total' is the audience when the job starts. Answers the new id. */
typedef void (*store_id_cb)(void *arg, int rc, uint64_t id);
int store_job_create(store_t *s, uint32_t policy, const char *kind, int mode, uint64_t pver,
                     uint64_t total, store_id_cb cb, void *arg);
/* One step of job 'job' over policy 'policy': the enterprises (ordinal, 18-byte
 * code) matched from 'cursor' up to 'next'. Atomically marks the new ones sent,
 * records them as matched, queues their deliveries (and grants, in auto mode) and
 * advances the cursor. rc: 0 with 'newly' and 'queued'; -EPERM when the job is no
 * longer running; -ESTALE when its cursor is not 'cursor' (another step ran). */
typedef void (*store_step_cb)(void *arg, int rc, uint64_t newly, uint64_t queued);
int store_job_step(store_t *s, uint64_t job, uint32_t policy, uint32_t cursor, uint32_t next,
                   const uint32_t *ords, const char *keys, size_t n, store_step_cb cb, void *arg);
/* Ends a running job as "done", "failed" or "cancelled" (cancel works from the
 * API at any time; the runner stops at its next step). */
int store_job_end(store_t *s, uint64_t job, const char *state, store_id_cb cb, void *arg);
int store_job_get(store_t *s, uint64_t job, store_hash_cb cb, void *arg);
/* Running jobs: ids (as decimal strings in kv[i].k) with their cursor in kv[i].v,
 * and their policy, in a second call... see push/jobs.c for the resume path. */
int store_jobs_running(store_t *s, store_hash_cb cb, void *arg);
/* Up to 'count' codes the job matched, from position 'start'. kv[i].v holds them;
 * -ENOENT when there is no such job. */
int store_job_matches(store_t *s, uint64_t job, uint64_t start, unsigned count, store_hash_cb cb,
                      void *arg);

/* An enterprise now matches published policies it did not match before: queue
 * its notices (same never-doubled rule as jobs). 'policies' holds ids with their
 * mode and version. */
typedef struct store_push_pol {
    uint32_t id;
    int mode;
    uint64_t ver;
} store_push_pol_t;
int store_push_enterprise(store_t *s, const char *uscc, uint32_t ord,
                          const store_push_pol_t *policies, size_t n, const uint32_t *added,
                          size_t nadded, const uint32_t *removed, size_t nremoved, store_step_cb cb,
                          void *arg);

/* The queue. Reads up to 'count' deliveries: first those this consumer took but
 * never finished (after a crash), then new ones. Each entry: kv[0].k is the
 * stream id, the rest its fields; entries are separated by a kv with k == NULL. */
int store_q_read(store_t *s, unsigned count, int pending, store_hash_cb cb, void *arg);
/* Moves retries that are due by 'now_ms' back into the queue; answers how many. */
int store_q_move_due(store_t *s, int64_t now_ms, unsigned max, store_id_cb cb, void *arg);
/* Moves the 'n' deferred deliveries ids[i] back into the queue now, each only if
 * its retry is still the one due at due_ms[i] (one that was moved meanwhile, or
 * has become a later attempt's retry with its own backoff, stays); answers how
 * many moved. The arrays are borrowed. */
int store_q_recall(store_t *s, const char *const *ids, const int64_t *due_ms, unsigned n,
                   store_id_cb cb, void *arg);

typedef struct store_dlv_rec {
    const char *id;            /* delivery (webhook-id) */
    const char *sid;           /* stream entry id, or NULL when not from the stream */
    const char *outcome;       /* "delivered", "retry", "dead", "expired", "disabled" */
    const char *const *fields; /* event fields to keep on the first attempt (k, v, ...) */
    unsigned nfields;
    const char *body; /* kept on the first attempt, or NULL */
    size_t body_len;
    const char *attempt; /* the attempt, as a JSON object */
    int64_t next_due_ms; /* for "retry" */
    unsigned attempts;
    int64_t now_ms;
    const char *job; /* job id, or NULL */
    const char *wh;  /* webhook id ("ent" for an enterprise's own endpoint) */
    long status;
    const char *error;
} store_dlv_rec_t;
/* Records a delivery attempt and its outcome, and only then acknowledges the
 * stream entry, in one step: an entry leaves the queue only with its outcome. */
int store_dlv_record(store_t *s, const store_dlv_rec_t *r, store_id_cb cb, void *arg);
int store_dlv_get(store_t *s, const char *id, store_hash_cb cb, void *arg);
/* The attempt log of a delivery (kv[i].v are JSON objects). */
int store_dlv_log(store_t *s, const char *id, store_hash_cb cb, void *arg);
/* Delivery ids (kv[i].k) with their creation time (kv[i].v), oldest first, created
 * at or after 'since_ms' (and before 'until_ms' when > 0), for one webhook (id > 0)
 * or all. */
int store_dlv_list(store_t *s, uint32_t wh, int64_t since_ms, int64_t until_ms, unsigned max,
                   store_hash_cb cb, void *arg);
/* Puts a recorded delivery back in the queue (a replay). -ENOENT when unknown. */
int store_dlv_requeue(store_t *s, const char *id, store_id_cb cb, void *arg);
/* The grant record of an enterprise under an auto-mode policy: kv[0].v is
 * "<granted ms>:<policy version>"; -ENOENT when none. */
int store_grant_get(store_t *s, uint32_t policy, const char *uscc, store_hash_cb cb, void *arg);
/* A value kept in hq:cfg (created with 'init' if absent), e.g. a service secret. */
int store_cfg_get_or_set(store_t *s, const char *name, const char *init, store_hash_cb cb,
                         void *arg);

/* ---- API keys (store/keys.c) ------------------------------------------------ */

/* The record of key 'kid' (fields: hash, role, name, scope, rate, created,
 * revoked); -ENOENT when none. */
int store_key_get(store_t *s, const char *kid, store_hash_cb cb, void *arg);
/* Creates key 'kid' with 'nfields' strings (name, value pairs; at most 20) and
 * indexes it; -EEXIST (through cb) when the id exists, revoked or not. */
int store_key_put(store_t *s, const char *kid, const char *const *fields, unsigned nfields,
                  store_hash_cb cb, void *arg);
/* A page of key records, oldest first (creation time, then id), flat: the pair
 * ("total", <number of keys>), then for each of at most 'limit' (> 0) keys from
 * position 'offset' the pair ("id", <kid>) followed by its fields. */
int store_key_list(store_t *s, uint64_t offset, unsigned limit, store_hash_cb cb, void *arg);
/* Marks a key revoked; -ENOENT when it does not exist. */
int store_key_revoke(store_t *s, const char *kid, int64_t now_ms, store_hash_cb cb, void *arg);

/* ---- Statistics ------------------------------------------------------------ */

typedef struct store_stats {
    uint64_t redis_connects, redis_disconnects, redis_timeouts, redis_commands, redis_failed;
    uint64_t redis_errors; /* error replies */
    histo_t redis_rtt;     /* round trips of answered commands */
    unsigned redis_inflight;
    uint64_t reloads;
    uint64_t load_ms; /* duration of the last full load */
} store_stats_t;
void store_get_stats(const store_t *s, store_stats_t *out);

/* The delivery queue in Redis: entries not yet done (XLEN hq:q), retries waiting
 * (ZCARD hq:retry) and jobs in the running state; kv holds "queued", "retrying",
 * "jobs_running" with decimal values. */
int store_queue_stats(store_t *s, store_hash_cb cb, void *arg);

#endif

/* Module-internal: the in-memory fake store of the fuzz build (store/fake.c,
 * fake_rec.c, fake_push.c, fake_read.c). It implements store.h without Redis: records live in small
 * sorted tables, matching reads the same mirror as the real store (mirror.c), and
 * every callback runs later from the loop, never inside the call, as store.h
 * promises. Test-only: never linked into huiqid. */
#ifndef HUIQI_STORE_FAKE_INTERNAL_H
#define HUIQI_STORE_FAKE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "store/mirror.h"
#include "store/store.h"

/* Caps that keep a long fuzzing run's memory flat. Creating past one of the
 * first five drops everything, as if Redis had come back empty (store/fake.h);
 * deliveries and grants past theirs are simply not recorded. */
#define FAKE_MAX_ENTS   4096u
#define FAKE_MAX_POLS   512u
#define FAKE_MAX_WHS    64u
#define FAKE_MAX_JOBS   256u
#define FAKE_MAX_KEYS   256u
#define FAKE_MAX_DLVS   4096u
#define FAKE_MAX_GRANTS 4096u
#define FAKE_MAX_CFG    64u
#define FAKE_LOG_MAX    20u /* attempts kept per delivery, like LTRIM -20 -1 */

/* A record of string fields (a Redis hash) with an optional list of strings. */
typedef struct fake_rec {
    char *id;
    char **keys, **vals;
    size_t *vlens;
    size_t n, cap;
    char **list; /* NUL-terminated strings */
    size_t *list_lens;
    size_t nlist, caplist;
    int64_t score; /* deliveries: creation time */
    uint32_t wh;   /* deliveries: the webhook, 0 for an enterprise's own */
} fake_rec_t;

/* Records sorted by id. */
typedef struct fake_tab {
    fake_rec_t **r;
    size_t n, cap;
} fake_tab_t;

/* One enterprise: its document and what the index holds for it. */
typedef struct fake_ent {
    char uscc[18];
    char *doc;
    size_t doc_len;
    uint64_t ver;
    uint32_t ord;
    int64_t created_ms, updated_ms;
    int32_t retag_on;
    char *webhook; /* its own endpoint, or NULL */
    uint64_t row[MATCHER_MAX_TAGS / 64];
    uint16_t interests[STORE_MAX_INTERESTS];
    unsigned nint;
} fake_ent_t;

/* Ordinals notified about one policy (the hq:sent:<policy> bitmap). */
typedef struct fake_sent {
    uint32_t policy;
    uint8_t *bits;
    size_t nbytes;
} fake_sent_t;

/* A completion waiting for the loop. Each kind of call embeds this first. */
typedef struct fake_op fake_op_t;
typedef void (*fake_run_fn)(store_t *s, fake_op_t *op);
struct fake_op {
    fake_op_t *next;
    fake_run_fn run; /* does the work, calls the callback and frees the op */
};

struct store {
    uv_loop_t *loop;
    const taxonomy_t *tax;
    store_event_cb cb;
    void *arg;
    store_ent_hook_fn ent_hook;
    void *ent_hook_arg;
    store_mem_t *mem;
    int ready;  /* writes accepted (like ST_READY) */
    int loaded; /* the first READY went out */
    int closing;
    void (*close_done)(void *);
    void *close_arg;
    uv_idle_t idle; /* fires the queued completions */
    fake_op_t *head, *tail;
    size_t nqueued;
    uint64_t ops; /* calls accepted (the stats' "commands") */
    /* enterprises, sorted by code, and ordinal allocation */
    fake_ent_t **ents;
    size_t nents, capents;
    uint32_t ord_next;
    uint32_t *ord_free; /* FIFO of freed ordinals, reused oldest first */
    size_t nfree, capfree;
    /* id counters */
    uint32_t pol_seq, wh_seq;
    uint64_t job_seq;
    /* hashes */
    fake_tab_t keys, jobs, dlvs, grants, cfg;
    fake_sent_t *sent;
    size_t nsent, capsent;
};

/* ---- fake.c: queue and shared helpers ---- */
/* Queues 'op' to run from the loop. */
void fake__queue(store_t *s, fake_op_t *op, fake_run_fn run);
int64_t fake__now_ms(void);
/* 0 when writes are accepted, else -ENOTCONN (closing) or -EAGAIN (reloading). */
int fake__writable(const store_t *s);
/* 0, or -ENOTCONN once closing: what reads need ("Redis is reachable"). */
int fake__readable(const store_t *s);
/* Drops every record, as after a Redis restart without data, and announces the
 * reload: writes get -EAGAIN until the queued READY event runs. 'reset_ids' also
 * restarts the id counters. */
void fake__drop_all(store_t *s, int reset_ids);
fake_ent_t *fake__ent_find(const store_t *s, const char *uscc);

/* ---- fake_rec.c: record tables ---- */
fake_rec_t *fake__tab_find(const fake_tab_t *t, const char *id);
/* The record 'id', created empty when absent. */
fake_rec_t *fake__tab_get(fake_tab_t *t, const char *id);
void fake__tab_del(fake_tab_t *t, const char *id);
void fake__tab_clear(fake_tab_t *t);
void fake__rec_set(fake_rec_t *r, const char *k, const char *v, size_t vlen);
void fake__rec_setf(fake_rec_t *r, const char *k, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *fake__rec_get(const fake_rec_t *r, const char *k, size_t *len);
long long fake__rec_num(const fake_rec_t *r, const char *k);
void fake__rec_incr(fake_rec_t *r, const char *k, long long by);
void fake__rec_push(fake_rec_t *r, const char *v, size_t len);
/* The record's fields as kv pairs, after 'lead' pairs left for the caller to
 * fill; caller frees. Sets *n to lead + fields. */
store_kv_t *fake__rec_kv(const fake_rec_t *r, size_t lead, size_t *n);

/* ---- fake_push.c ---- */
/* Job 'id', or NULL. */
fake_rec_t *fake__job_find(store_t *s, uint64_t id);
/* A new running job (JOB_CREATE's record); returns its id. The caller has kept
 * the job table under FAKE_MAX_JOBS. */
uint64_t fake__job_new(store_t *s, uint32_t policy, const char *kind, int mode, uint64_t pver,
                       uint64_t total);
/* Forgets what policy 'id' was sent to (it was deleted). */
void fake__sent_drop_policy(store_t *s, uint32_t id);
/* An ordinal was freed: whoever gets it next was notified of nothing. */
void fake__sent_clear_ord(store_t *s, uint32_t ord);
void fake__push_clear(store_t *s);

#endif

/* Module-internal: the in-memory mirror of the store (store/mirror.c). Pure C over
 * matcher/ and tags/: no Redis, no loop, so both the Redis-backed store and the
 * in-memory fake of the fuzz build (store/fake.c) keep their data in it. */
#ifndef HUIQI_STORE_MIRROR_H
#define HUIQI_STORE_MIRROR_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* Interests of enterprises that have any: ordinal -> bits. Most enterprises name
 * a handful, so up to IMAP_INLINE live in the slot itself (no allocation, 16 bytes
 * a slot); more go to a separate array. */
#define IMAP_INLINE 5
typedef struct imap_slot {
    uint32_t key; /* an ordinal; UINT32_MAX: empty */
    uint16_t n;
    /* n <= IMAP_INLINE: the bits; else the bytes of a pointer to all n of them
     * (read and written with memcpy: the field is not pointer-aligned). */
    uint16_t bits[IMAP_INLINE];
} imap_slot_t;

typedef struct store_imap {
    imap_slot_t *slots;
    uint32_t mask, n;
} store_imap_t;

/* Everything matching reads; replaced as a whole by a full reload. */
typedef struct store_mem {
    matcher_t *m;
    polset_t *ps;
    store_policy_t **pols; /* sorted by id */
    size_t npols, cappols;
    store_policy_t **by_id; /* by_id[id], for ids below cap_by_id (ids are dense) */
    uint32_t cap_by_id;
    store_imap_t imap;
    /* Audience tallies: tally[id] (ids below cap_by_id) holds a published policy's
     * matches per group (ngroups + 1 counters), kept in step on every enterprise
     * write, so that an audience answer evaluates nothing. NULL: not kept (not
     * published, an id past the table, or tallies off while a load fills the
     * index: then every write would pay two package evaluations for nothing). */
    uint64_t **tally;
    int tally_on;
    matcher_scratch_t *scratch; /* for building tallies and answering untallied */
    uint32_t *tids;             /* polset_match output, polset_size() entries */
    size_t tids_cap;
    store_webhook_t **whs; /* sorted by id */
    size_t nwhs, capwhs;
} store_mem_t;

store_mem_t *store__mem_new(const taxonomy_t *tax);
void store__mem_free(store_mem_t *mem);
/* Mirrors one enterprise record (or its absence, when row is NULL) into 'mem'. */
void store__mem_ent_apply(store_mem_t *mem, const char *uscc, uint32_t ord, const uint64_t *row,
                          const uint16_t *interests, unsigned nint);
/* Inserts or replaces a policy (takes ownership of 'p'), or removes 'id' when p is
 * NULL. */
void store__mem_pol_apply(store_mem_t *mem, uint32_t id, store_policy_t *p);
void store__policy_free(store_policy_t *p);
/* Tallies off (dropped) while a full load fills 'mem'; on again (every published
 * policy counted once, matcher_count_groups) when the load is done. A new mirror
 * has them on. */
/* store_relayout on the mirror. */
uint32_t store__mem_relayout(store_mem_t *mem, uint32_t min);
void store__mem_tally_off(store_mem_t *mem);
void store__mem_tally_on(store_mem_t *mem);
/* Behind store_pol_audience (same contract). */
uint64_t store__mem_audience(store_mem_t *mem, const store_policy_t *p, uint64_t *groups);
/* Inserts or replaces a webhook (takes 'w'), or removes 'id' when w is NULL. */
void store__mem_wh_apply(store_mem_t *mem, uint32_t id, store_webhook_t *w);
void store__webhook_free(store_webhook_t *w);

/* Reads behind store_policy, store_policy_next, store_ent_interests, store_webhook
 * and store_webhook_next (same contracts). */
const store_policy_t *store__mem_policy(const store_mem_t *mem, uint32_t id);
const store_policy_t *store__mem_policy_next(const store_mem_t *mem, uint32_t after);
unsigned store__mem_interests(const store_mem_t *mem, uint32_t ord, const uint16_t **bits);
const store_webhook_t *store__mem_webhook(const store_mem_t *mem, uint32_t id);
const store_webhook_t *store__mem_webhook_next(const store_mem_t *mem, uint32_t after);

#endif

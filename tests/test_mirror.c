/* The store's in-memory mirror (store/mirror.c): the audience tallies it keeps for
 * published policies must always equal a fresh evaluation, through creations,
 * updates, deletions, an enterprise moving to another ordinal, refused puts,
 * policy publishes, rule changes and withdrawals, and a load with tallies off. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "store/mirror.h"
#include "tests/test_list_decl.h"
#include "tests/unit.h"

extern const char huiqi_default_taxonomy[];
extern const char huiqi_default_taxonomy_end[];

#define MT_ENTS 600u
#define MT_POLS 40u

typedef struct mt {
    taxonomy_t *tax;
    store_mem_t *mem;
    unsigned ntags, words;
    uint16_t pool[24]; /* tags the rows and rules draw from: regions first */
    unsigned npool, nregion;
    uint32_t ord[MT_ENTS]; /* enterprise k's ordinal, or UINT32_MAX when absent */
    uint32_t next_ord;
    matcher_scratch_t *s;
} mt_t;

static void mt_key(unsigned k, char key[19]) {
    snprintf(key, 19, "91320200MA%08u", k);
}

static void mt_row(mt_t *t, unsigned long long *seed, uint64_t *row) {
    memset(row, 0, t->words * sizeof *row);
    if (unit_rand(seed) % 10 < 8) { /* most in a district, some in none */
        unsigned b = t->pool[unit_rand(seed) % t->nregion];
        row[b >> 6] |= 1ull << (b & 63);
    }
    unsigned n = 1 + (unsigned)(unit_rand(seed) % 6);
    for (unsigned i = 0; i < n; i++) {
        unsigned b = t->pool[t->nregion + unit_rand(seed) % (t->npool - t->nregion)];
        row[b >> 6] |= 1ull << (b & 63);
    }
}

static store_policy_t *mt_policy(mt_t *t, unsigned long long *seed, uint32_t id) {
    store_policy_t *p = xcalloc(1, sizeof *p);
    p->id = id;
    p->ver = 1;
    p->status = unit_rand(seed) % 3 ? STORE_POL_PUBLISHED : STORE_POL_DRAFT;
    rule_t *r = &p->rule;
    r->nall = (uint16_t)(unit_rand(seed) % 3);
    r->nany = (uint16_t)(unit_rand(seed) % 3);
    r->nnone = (uint16_t)(unit_rand(seed) % 2);
    for (unsigned i = 0; i < r->nall; i++) {
        r->all[i] = t->pool[unit_rand(seed) % t->npool];
    }
    for (unsigned i = 0; i < r->nany; i++) {
        r->any[i] = t->pool[unit_rand(seed) % t->npool];
    }
    for (unsigned i = 0; i < r->nnone; i++) {
        r->none[i] = t->pool[t->nregion + unit_rand(seed) % (t->npool - t->nregion)];
    }
    rule_normalize(r, t->ntags);
    return p;
}

/* Every policy's answer against a fresh count; returns the number that differ. */
static int mt_check(mt_t *t) {
    int bad = 0;
    unsigned ng = matcher_ngroups(t->mem->m);
    uint64_t got[MATCHER_MAX_GROUPS + 1], want[MATCHER_MAX_GROUPS + 1];
    for (size_t i = 0; i < t->mem->npols; i++) {
        const store_policy_t *p = t->mem->pols[i];
        uint64_t n = store__mem_audience(t->mem, p, got);
        uint64_t w = matcher_count_groups(t->mem->m, &p->rule, t->s, want);
        if (n != w || memcmp(got, want, (ng + 1) * sizeof *got) != 0) {
            fprintf(stderr, "  policy %u: audience %llu, evaluated %llu\n", p->id,
                    (unsigned long long)n, (unsigned long long)w);
            bad++;
        }
    }
    return bad;
}

static void mt_ent_op(mt_t *t, unsigned long long *seed, uint64_t *row) {
    unsigned k = (unsigned)(unit_rand(seed) % MT_ENTS);
    char key[19];
    mt_key(k, key);
    unsigned op = (unsigned)(unit_rand(seed) % 10);
    if (t->ord[k] != UINT32_MAX && op < 2) { /* delete */
        store__mem_ent_apply(t->mem, key, t->ord[k], NULL, NULL, 0);
        t->ord[k] = UINT32_MAX;
        return;
    }
    if (t->ord[k] != UINT32_MAX && op == 2) {
        /* Redis moved it (deleted and created again while we were away). */
        t->ord[k] = t->next_ord++;
    } else if (t->ord[k] == UINT32_MAX) {
        t->ord[k] = t->next_ord++;
    }
    mt_row(t, seed, row);
    if (op == 3) {
        /* A bit past ntags: matcher_put refuses it, and nothing may change. */
        unsigned b = t->ntags;
        if (b < t->words * 64) {
            row[b >> 6] |= 1ull << (b & 63);
        }
    }
    store__mem_ent_apply(t->mem, key, t->ord[k], row, NULL, 0);
    if (op == 3 && matcher_find(t->mem->m, key) != t->ord[k]) {
        t->ord[k] = matcher_find(t->mem->m, key);
    }
}

int test_mirror_audience_tallies(void) {
    mt_t t;
    memset(&t, 0, sizeof t);
    char err[256];
    size_t len = (size_t)(huiqi_default_taxonomy_end - huiqi_default_taxonomy);
    ASSERT_OK(taxonomy_parse(huiqi_default_taxonomy, len, &t.tax, err, sizeof err));
    t.ntags = taxonomy_count(t.tax, TAX_ENTERPRISE);
    for (unsigned i = 0; i < t.ntags && t.nregion < 6; i++) {
        if (strcmp(taxonomy_tag(t.tax, TAX_ENTERPRISE, i)->klass->code, "region") == 0) {
            t.pool[t.nregion++] = (uint16_t)i;
        }
    }
    ASSERT_GE(t.nregion, 3);
    t.npool = t.nregion;
    for (unsigned i = 0; i < t.ntags && t.npool < 24; i += 13) {
        if (strcmp(taxonomy_tag(t.tax, TAX_ENTERPRISE, i)->klass->code, "region") != 0) {
            t.pool[t.npool++] = (uint16_t)i;
        }
    }
    t.s = matcher_scratch_new();
    unsigned long long seed = 0x7a11e5;
    int bad = 0;
    for (int round = 0; round < 2; round++) {
        /* Round 0: tallies on from the start; round 1: off while loading, as a
         * full reload does, then on. */
        t.mem = store__mem_new(t.tax);
        t.words = (unsigned)matcher_row_words(t.mem->m);
        uint64_t *row = xcalloc(t.words, sizeof *row);
        for (unsigned k = 0; k < MT_ENTS; k++) {
            t.ord[k] = UINT32_MAX;
        }
        t.next_ord = 0;
        if (round == 1) {
            store__mem_tally_off(t.mem);
        }
        for (uint32_t id = 1; id <= MT_POLS; id++) {
            store__mem_pol_apply(t.mem, id, mt_policy(&t, &seed, id));
        }
        for (int step = 0; step < 4000; step++) {
            if (step == 1000 && round == 1) {
                store__mem_tally_on(t.mem);
                bad += mt_check(&t);
            }
            if (unit_rand(&seed) % 40 == 0) {
                /* A policy created, edited, published, withdrawn or deleted. */
                uint32_t id = 1 + (uint32_t)(unit_rand(&seed) % (MT_POLS + 5));
                if (unit_rand(&seed) % 8 == 0) {
                    store__mem_pol_apply(t.mem, id, NULL);
                } else {
                    store__mem_pol_apply(t.mem, id, mt_policy(&t, &seed, id));
                }
            } else {
                mt_ent_op(&t, &seed, row);
            }
            if (step % 250 == 249) {
                bad += mt_check(&t);
            }
        }
        ASSERT_GT(matcher_live(t.mem->m), MT_ENTS / 2);
        free(row);
        store__mem_free(t.mem);
    }
    matcher_scratch_free(t.s);
    taxonomy_free(t.tax);
    ASSERT_EQ(bad, 0);
    return 0;
}

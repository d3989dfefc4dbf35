/* Unit tests for matcher/: bitsets, rules, containers, the column index and the
 * policy set, the latter two against a brute-force oracle on random data. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "matcher/bitset.h"
#include "matcher/cont.h"
#include "matcher/internal.h"
#include "matcher/matcher.h"
#include "matcher/polset.h"
#include "matcher/rule.h"
#include "tests/test_list_decl.h"
#include "tests/unit.h"

int test_bitset_set_test_clear(void) {
    uint64_t w[3] = {0};
    bitset_set(w, 0);
    bitset_set(w, 63);
    bitset_set(w, 64);
    bitset_set(w, 190);
    ASSERT_TRUE(bitset_test(w, 0));
    ASSERT_TRUE(bitset_test(w, 63));
    ASSERT_TRUE(bitset_test(w, 64));
    ASSERT_FALSE(bitset_test(w, 65));
    ASSERT_EQ(bitset_popcount(w, 3), 4);
    bitset_clear(w, 63);
    ASSERT_FALSE(bitset_test(w, 63));
    ASSERT_EQ(bitset_next(w, 3, 0), 0);
    ASSERT_EQ(bitset_next(w, 3, 1), 64);
    ASSERT_EQ(bitset_next(w, 3, 65), 190);
    ASSERT_EQ(bitset_next(w, 3, 191), -1);
    ASSERT_EQ(bitset_next(w, 3, 500), -1);
    ASSERT_EQ(bitset_words(0), 0);
    ASSERT_EQ(bitset_words(64), 1);
    ASSERT_EQ(bitset_words(330), 6);
    return 0;
}

int test_rule_normalize_and_match(void) {
    rule_t r = {0};
    r.nall = 3;
    r.all[0] = 5;
    r.all[1] = 2;
    r.all[2] = 5;
    r.nany = 2;
    r.any[0] = 70;
    r.any[1] = 9;
    r.nnone = 1;
    r.none[0] = 100;
    ASSERT_OK(rule_normalize(&r, 128));
    ASSERT_EQ(r.nall, 2);
    ASSERT_EQ(r.all[0], 2);
    ASSERT_EQ(r.all[1], 5);
    ASSERT_EQ(r.any[0], 9);
    uint64_t row[2] = {0};
    bitset_set(row, 2);
    bitset_set(row, 5);
    ASSERT_FALSE(rule_match_row(&r, row, 2)); /* no 'any' bit */
    bitset_set(row, 70);
    ASSERT_TRUE(rule_match_row(&r, row, 2));
    bitset_set(row, 100);
    ASSERT_FALSE(rule_match_row(&r, row, 2)); /* a 'none' bit */
    rule_t empty = {0};
    ASSERT_TRUE(rule_match_row(&empty, row, 2));
    rule_t bad = {0};
    bad.nall = 1;
    bad.all[0] = 128;
    ASSERT_ERR(rule_normalize(&bad, 128), -ERANGE);
    return 0;
}

int test_cont_array_bitmap_transitions(void) {
    cont_t c = {0};
    /* Fill past the array limit in a scattered order, then empty it again. */
    for (uint32_t i = 0; i < 6000; i++) {
        uint16_t x = (uint16_t)((i * 7919u) % 60000u);
        ASSERT_TRUE(matcher__cont_add(&c, x));
        ASSERT_FALSE(matcher__cont_add(&c, x));
    }
    ASSERT_EQ(c.kind, CONT_BITMAP);
    ASSERT_EQ(c.card, 6000);
    for (uint32_t i = 0; i < 6000; i++) {
        ASSERT_TRUE(matcher__cont_test(&c, (uint16_t)((i * 7919u) % 60000u)));
    }
    /* Down to just under the bitmap-to-array threshold. */
    uint32_t drop = 6000 - (CONT_ARRAY_MIN - 1);
    for (uint32_t i = 0; i < drop; i++) {
        ASSERT_TRUE(matcher__cont_remove(&c, (uint16_t)((i * 7919u) % 60000u)));
    }
    ASSERT_EQ(c.kind, CONT_ARRAY);
    ASSERT_EQ(c.card, CONT_ARRAY_MIN - 1);
    ASSERT_FALSE(matcher__cont_remove(&c, (uint16_t)((1u * 7919u) % 60000u)));
    uint32_t cur = 0;
    uint64_t words = 0;
    for (unsigned w = 0; w < CONT_WORDS; w++) {
        words += (uint64_t)__builtin_popcountll(matcher__cont_array_word(&c, w, &cur));
    }
    ASSERT_EQ(words, CONT_ARRAY_MIN - 1);
    matcher__cont_free(&c);
    return 0;
}

/* ---------------------------------------------------------------------------
 * Randomized oracle over the index and the policy set
 * ------------------------------------------------------------------------- */

#define ORA_KEY 18

typedef struct oracle {
    unsigned ntags;
    size_t words;
    uint32_t span;
    uint64_t *rows;
    uint8_t *live;
    double *p; /* tag probabilities */
} oracle_t;

static void ora_key(uint32_t ord, unsigned gen, char *key) {
    snprintf(key, ORA_KEY + 1, "K%08u-%08u", ord % 100000000u, gen % 100000000u);
}

static void ora_row(oracle_t *o, unsigned long long *seed, uint64_t *row) {
    memset(row, 0, o->words * 8);
    for (unsigned t = 0; t < o->ntags; t++) {
        if ((double)(unit_rand(seed) % 1000000) / 1e6 < o->p[t]) {
            bitset_set(row, t);
        }
    }
    /* One group tag at most most of the time, sometimes two. */
    unsigned g = (unsigned)(unit_rand(seed) % 9);
    if (g < 7) {
        bitset_set(row, g);
    }
    if (unit_rand(seed) % 50 == 0) {
        bitset_set(row, (unsigned)(unit_rand(seed) % 7));
    }
}

static unsigned ora_pick_tag(oracle_t *o, unsigned long long *seed) {
    return (unsigned)(unit_rand(seed) % o->ntags);
}

static void ora_rule(oracle_t *o, unsigned long long *seed, rule_t *r) {
    memset(r, 0, sizeof *r);
    r->nall = (uint16_t)(unit_rand(seed) % 4);
    r->nany = (uint16_t)(unit_rand(seed) % 5);
    r->nnone = (uint16_t)(unit_rand(seed) % 3);
    for (unsigned i = 0; i < r->nall; i++) {
        r->all[i] = (uint16_t)ora_pick_tag(o, seed);
    }
    for (unsigned i = 0; i < r->nany; i++) {
        r->any[i] = (uint16_t)ora_pick_tag(o, seed);
    }
    for (unsigned i = 0; i < r->nnone; i++) {
        r->none[i] = (uint16_t)ora_pick_tag(o, seed);
    }
    rule_normalize(r, o->ntags);
}

static int ora_check_rules(oracle_t *o, matcher_t *m, matcher_scratch_t *s,
                           unsigned long long *seed, int nrules) {
    uint32_t *out = malloc(sizeof(uint32_t) * (o->span + 1));
    uint64_t groups[8];
    for (int k = 0; k < nrules; k++) {
        rule_t r;
        ora_rule(o, seed, &r);
        uint64_t want = 0;
        uint64_t wantg[8] = {0};
        for (uint32_t i = 0; i < o->span; i++) {
            if (o->live[i] && rule_match_row(&r, o->rows + (size_t)i * o->words, o->words)) {
                want++;
                wantg[matcher_group(m, i)]++;
            }
        }
        ASSERT_EQ(matcher_count(m, &r, s), want);
        ASSERT_EQ(matcher_count_groups(m, &r, s, groups), want);
        for (unsigned g = 0; g < 8; g++) {
            if (groups[g] != wantg[g]) {
                free(out);
                UNIT_FAIL_("rule %d group %u: %llu vs %llu", k, g, (unsigned long long)groups[g],
                           (unsigned long long)wantg[g]);
            }
        }
        /* List in pages of a random size and check order and membership. Every
         * page evaluates the whole rule, so at most about 60 pages a rule. */
        size_t page = 1 + (size_t)(unit_rand(seed) % 700);
        if (want / page > 60) {
            page = (size_t)(want / 60) + 1;
        }
        uint32_t from = 0;
        uint64_t got = 0;
        uint32_t last = 0;
        for (;;) {
            uint32_t next;
            size_t n = matcher_list(m, &r, s, from, out, page, &next);
            for (size_t i = 0; i < n; i++) {
                uint32_t ord = out[i];
                if ((got && ord <= last) || !o->live[ord] ||
                    !rule_match_row(&r, o->rows + (size_t)ord * o->words, o->words)) {
                    free(out);
                    UNIT_FAIL_("rule %d: bad listed ordinal %u", k, ord);
                }
                last = out[i];
                got++;
            }
            if (next == MATCHER_NONE) {
                break;
            }
            ASSERT_EQ(n, page);
            from = next;
        }
        ASSERT_EQ(got, want);
    }
    free(out);
    return 0;
}

/* Every rule check also checks the extent summaries against the rows. */
static int ora_check(oracle_t *o, matcher_t *m, matcher_scratch_t *s, unsigned long long *seed,
                     int nrules) {
    ASSERT_EQ(matcher__check_extents(m), 0);
    return ora_check_rules(o, m, s, seed, nrules);
}

/* 'layout': declare a cluster key over the first tags (the groups, then two more
 * levels) and lay the index out by it after the first inserts and after churn;
 * 2: the first inserts are a bulk load (matcher_load_begin), with a few updates,
 * deletes and a refused duplicate key among them. */
static int ora_run(unsigned ntags, uint32_t n, uint32_t spread, unsigned long long seed,
                   int layout) {
    oracle_t o = {0};
    o.ntags = ntags;
    o.words = bitset_words(ntags);
    o.span = n * spread;
    o.rows = calloc((size_t)o.span * o.words, 8);
    o.live = calloc(o.span, 1);
    o.p = calloc(ntags, sizeof *o.p);
    for (unsigned t = 0; t < ntags; t++) {
        unsigned c = (unsigned)(unit_rand(&seed) % 10);
        o.p[t] = t < 7 ? 0.0 : c < 2 ? 0.5 : c < 4 ? 0.12 : c < 6 ? 0.03 : 0.005;
    }
    matcher_t *m = matcher_new(ntags, ORA_KEY);
    ASSERT_NOT_NULL(m);
    uint16_t gt[7] = {0, 1, 2, 3, 4, 5, 6};
    ASSERT_OK(matcher_set_groups(m, gt, 7));
    matcher_scratch_t *s = matcher_scratch_new();
    char key[ORA_KEY + 1];
    if (layout == 2) {
        ASSERT_OK(matcher_load_begin(m));
    }
    /* Insert at scattered ordinals so several blocks (and gaps) exist. */
    uint32_t first = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t ord = i * spread + (uint32_t)(unit_rand(&seed) % spread);
        uint64_t *row = o.rows + (size_t)ord * o.words;
        ora_row(&o, &seed, row);
        ora_key(ord, 0, key);
        ASSERT_OK(matcher_put(m, ord, key, row));
        o.live[ord] = 1;
        if (i == 0) {
            first = ord;
        }
    }
    ASSERT_EQ(matcher_live(m), n);
    if (layout == 2) {
        /* Still filling: rows, keys and the key map answer. */
        ora_key(first, 0, key);
        ASSERT_EQ(matcher_find(m, key), first);
        ASSERT_ERR(matcher_put(m, first + 1, key, o.rows), -EEXIST);
        ASSERT_MEMEQ(matcher_row(m, first), o.rows + (size_t)first * o.words, o.words * 8);
        for (uint32_t k = 0; k < n / 10; k++) {
            uint32_t ord = (uint32_t)(unit_rand(&seed) % o.span);
            uint64_t *row = o.rows + (size_t)ord * o.words;
            if (!o.live[ord]) {
                continue;
            }
            if (k % 3 == 0) {
                ASSERT_OK(matcher_del(m, ord));
                o.live[ord] = 0;
                memset(row, 0, o.words * 8);
                n--;
            } else {
                ora_row(&o, &seed, row);
                ASSERT_OK(matcher_put(m, ord, matcher_key(m, ord), row));
            }
        }
        ASSERT_ERR(matcher_load_begin(m), -EBUSY);
    }
    if (layout) {
        /* Level 0: the group tags; level 1: tags 7-9; level 2: tags 10-12. */
        uint16_t ct[13];
        uint8_t cl[13];
        for (unsigned i = 0; i < 13; i++) {
            ct[i] = (uint16_t)i;
            cl[i] = (uint8_t)(i < 7 ? 0 : i < 10 ? 1 : 2);
        }
        ASSERT_OK(matcher_set_cluster(m, ct, cl, 13));
        ASSERT_ERR(matcher_set_cluster(m, ct, (const uint8_t *)"\x09", 1), -ERANGE);
        if (layout == 1 && ora_check(&o, m, s, &seed, 20)) {
            return 1;
        }
        matcher_relayout(m);
        ASSERT_EQ(matcher_layout_count(m), 1);
        ASSERT_EQ(matcher_unsorted(m), 0);
        ASSERT_EQ(matcher_live(m), n);
    }
    /* The same rules through every set of word loops this CPU has (the baseline,
     * AVX2, AVX-512, AVX-512 with VBMI2): each must agree with the oracle. */
    for (int isa = MATCHER_ISA_BASE; isa <= MATCHER_ISA_VBMI2; isa++) {
        unsigned long long rs = seed;
        matcher_scratch_t *si = matcher__scratch_new_isa(isa);
        int bad = ora_check(&o, m, si, &rs, 60);
        matcher_scratch_free(si);
        if (bad) {
            return 1;
        }
    }
    if (ora_check(&o, m, s, &seed, 60)) {
        return 1;
    }
    /* Churn: updates, deletes, and reuse of deleted ordinals with new keys. */
    for (uint32_t k = 0; k < n; k++) {
        uint32_t ord = (uint32_t)(unit_rand(&seed) % o.span);
        uint64_t *row = o.rows + (size_t)ord * o.words;
        unsigned op = (unsigned)(unit_rand(&seed) % 3);
        if (o.live[ord] && op == 0) {
            ASSERT_OK(matcher_del(m, ord));
            ASSERT_ERR(matcher_del(m, ord), -ENOENT);
            o.live[ord] = 0;
            memset(row, 0, o.words * 8);
        } else {
            ora_row(&o, &seed, row);
            ora_key(ord, o.live[ord] ? 0 : k + 1, key);
            if (o.live[ord]) {
                ASSERT_OK(matcher_put(m, ord, matcher_key(m, ord), row));
            } else {
                ASSERT_OK(matcher_put(m, ord, key, row));
            }
            o.live[ord] = 1;
        }
    }
    uint32_t live = 0;
    for (uint32_t i = 0; i < o.span; i++) {
        live += o.live[i];
        if (o.live[i]) {
            ASSERT_EQ(matcher_find(m, matcher_key(m, i)), i);
        } else {
            ASSERT_NULL(matcher_row(m, i));
        }
    }
    ASSERT_EQ(matcher_live(m), live);
    for (unsigned t = 0; t < ntags; t++) {
        uint32_t c = 0;
        for (uint32_t i = 0; i < o.span; i++) {
            c += o.live[i] && bitset_test(o.rows + (size_t)i * o.words, t);
        }
        ASSERT_EQ(matcher_tag_card(m, t), c);
    }
    if (ora_check(&o, m, s, &seed, 60)) {
        return 1;
    }
    if (layout) {
        /* Laid out again after the churn: the same answers, and then more
         * arrivals on the positions left free. */
        matcher_relayout(m);
        ASSERT_EQ(matcher_layout_count(m), 2);
        for (uint32_t i = 0; i < o.span; i++) {
            if (o.live[i]) {
                ASSERT_EQ(matcher_find(m, matcher_key(m, i)), i);
                ASSERT_MEMEQ(matcher_row(m, i), o.rows + (size_t)i * o.words, o.words * 8);
            }
        }
        if (ora_check(&o, m, s, &seed, 40)) {
            return 1;
        }
        uint32_t added = 0;
        for (uint32_t k = 0; k < n / 4; k++) {
            uint32_t ord = (uint32_t)(unit_rand(&seed) % o.span);
            uint64_t *row = o.rows + (size_t)ord * o.words;
            if (o.live[ord] && k % 2) {
                ASSERT_OK(matcher_del(m, ord));
                o.live[ord] = 0;
                memset(row, 0, o.words * 8);
            } else if (!o.live[ord]) {
                ora_row(&o, &seed, row);
                ora_key(ord, 1000000 + k, key);
                ASSERT_OK(matcher_put(m, ord, key, row));
                o.live[ord] = 1;
                added++;
            }
        }
        ASSERT_TRUE(matcher_unsorted(m) <= added);
        if (ora_check(&o, m, s, &seed, 40)) {
            return 1;
        }
    }
    /* The policy set against the same oracle, for random rows. */
    polset_t *ps = polset_new(ntags);
    uint32_t *card = calloc(ntags, sizeof *card);
    for (unsigned t = 0; t < ntags; t++) {
        card[t] = matcher_tag_card(m, t);
    }
    enum { NPOL = 400 };
    rule_t *rules = calloc(NPOL, sizeof *rules);
    for (uint32_t i = 0; i < NPOL; i++) {
        ora_rule(&o, &seed, &rules[i]);
        ASSERT_OK(polset_put(ps, i * 3 + 1, &rules[i], i % 2 ? NULL : card));
    }
    for (uint32_t i = 0; i < NPOL; i += 7) {
        ASSERT_OK(polset_del(ps, i * 3 + 1));
    }
    ASSERT_ERR(polset_del(ps, 0), -ENOENT);
    polset_reanchor(ps, card);
    uint32_t ids[NPOL];
    for (int k = 0; k < 500; k++) {
        uint32_t ord = (uint32_t)(unit_rand(&seed) % o.span);
        const uint64_t *row = o.rows + (size_t)ord * o.words;
        size_t got = polset_match(ps, row, ids, NPOL);
        uint8_t seen[NPOL] = {0};
        for (size_t i = 0; i < got; i++) {
            uint32_t p = (ids[i] - 1) / 3;
            ASSERT_TRUE(p < NPOL && p % 7 != 0 && !seen[p]);
            seen[p] = 1;
        }
        for (uint32_t p = 0; p < NPOL; p++) {
            int want = p % 7 != 0 && rule_match_row(&rules[p], row, o.words);
            ASSERT_EQ(seen[p], want);
        }
    }
    free(rules);
    free(card);
    polset_free(ps);
    matcher_scratch_free(s);
    matcher_free(m);
    free(o.rows);
    free(o.live);
    free(o.p);
    return 0;
}

int test_matcher_oracle_one_word(void) {
    return ora_run(60, 30000, 5, 42, 0);
}

int test_matcher_oracle_wide_rows(void) {
    return ora_run(330, 20000, 9, 7, 1);
}

int test_matcher_oracle_dense_block(void) {
    /* Everyone in one block: the dense (bitmap) paths dominate. */
    return ora_run(70, 60000, 1, 99, 1);
}

int test_matcher_oracle_clustered_blocks(void) {
    /* Several blocks laid out by the cluster key, so that whole blocks and extents
     * hold one group: the extent masks and dropped conditions at work. */
    return ora_run(40, 100000, 2, 1234, 2);
}

/* matcher_reserve sizes the key map once: puts up to what that size holds do not
 * grow it, keys put before and after stay found, and it never shrinks. */
int test_matcher_reserve(void) {
    matcher_t *m = matcher_new(10, 8);
    uint64_t row[1] = {0x5};
    char key[16]; /* 8 bytes used: "K" and 7 digits */
    for (uint32_t i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "K%07u", i);
        ASSERT_OK(matcher_put(m, i, key, row));
    }
    matcher_reserve(m, 20000);
    uint32_t mask = m->mask;
    ASSERT_TRUE((uint64_t)20000 * 10 <= ((uint64_t)mask + 1) * 7);
    ASSERT_TRUE((uint64_t)20000 * 10 > ((uint64_t)mask + 1) / 2 * 7); /* the smallest such */
    /* The 70% bound: this many keys fit without growing. */
    uint32_t fit = (uint32_t)(((uint64_t)mask + 1) * 7 / 10);
    for (uint32_t i = 100; i < fit; i++) {
        snprintf(key, sizeof key, "K%07u", i);
        ASSERT_OK(matcher_put(m, i, key, row));
    }
    ASSERT_EQ(m->mask, mask);
    matcher_reserve(m, 10);
    ASSERT_EQ(m->mask, mask);
    for (uint32_t i = 0; i < fit; i++) {
        snprintf(key, sizeof key, "K%07u", i);
        ASSERT_EQ(matcher_find(m, key), i);
    }
    snprintf(key, sizeof key, "K%07u", fit);
    ASSERT_EQ(matcher_find(m, key), MATCHER_NONE);
    ASSERT_OK(matcher_put(m, fit, key, row)); /* one more: grows as before */
    ASSERT_TRUE(m->mask > mask);
    ASSERT_EQ(matcher_find(m, key), fit);
    ASSERT_EQ(matcher_find(m, "K0000007"), 7);
    matcher_free(m);
    return 0;
}

int test_matcher_put_errors(void) {
    matcher_t *m = matcher_new(10, 4);
    uint64_t row[1] = {0x3};
    ASSERT_OK(matcher_put(m, 5, "AAAA", row));
    ASSERT_ERR(matcher_put(m, 6, "AAAA", row), -EEXIST);
    uint64_t bad[1] = {UINT64_C(1) << 10};
    ASSERT_ERR(matcher_put(m, 6, "BBBB", bad), -EINVAL);
    ASSERT_ERR(matcher_put(m, MATCHER_MAX_ORD, "BBBB", row), -ERANGE);
    ASSERT_EQ(matcher_find(m, "BBBB"), MATCHER_NONE);
    ASSERT_EQ(matcher_find(m, "AAAA"), 5);
    uint16_t g[1] = {0};
    ASSERT_ERR(matcher_set_groups(m, g, 1), -EBUSY);
    ASSERT_NULL(matcher_new(0, 4));
    matcher_free(m);
    return 0;
}

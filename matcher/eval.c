/* Rule evaluation over the columns. For each block the plan starts from the
 * cheapest driver: the sparsest 'all' tag, or the union of the 'any' tags when that
 * is smaller. A sparse driver is walked word by word and each candidate word is
 * probed in the other columns, stopping as soon as it empties; a dense driver is
 * evaluated with whole-block word loops that the compiler vectorises. Counting,
 * grouping and listing share the walk through a small sink. */
#include "matcher/matcher.h"

#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "matcher/internal.h"

struct matcher_scratch {
    uint64_t acc[CONT_WORDS];
    uint64_t tmp[CONT_WORDS];
    uint64_t uni[CONT_WORDS];
};

matcher_scratch_t *matcher_scratch_new(void) {
    return xcalloc(1, sizeof(matcher_scratch_t));
}

void matcher_scratch_free(matcher_scratch_t *s) {
    free(s);
}

/* One operand of the probe walk: a bitmap to index or an array with its cursor. */
typedef struct operand {
    const uint64_t *bm;
    const cont_t *c;
    uint32_t cur;
} operand_t;

enum { SINK_COUNT, SINK_GROUPS, SINK_LIST };

typedef struct sink {
    int mode;
    uint64_t count;
    uint64_t *groups; /* SINK_GROUPS: ngroups + 1 counters */
    uint32_t *out;    /* SINK_LIST */
    size_t max, n;
    uint32_t next; /* SINK_LIST: first ordinal not emitted when full */
    int full;
} sink_t;

static inline uint64_t operand_word(operand_t *o, unsigned w) {
    if (o->bm) {
        return o->bm[w];
    }
    return matcher__cont_array_word(o->c, w, &o->cur);
}

static inline void operand_init(operand_t *o, const cont_t *c) {
    o->c = c;
    o->cur = 0;
    o->bm = c->kind == CONT_BITMAP ? c->p : NULL;
}

/* Delivers the matches 'm' of word 'w' of block 'b' (number 'bi'). */
static inline void sink_word(sink_t *k, const matcher_blk_t *b, uint32_t bi, unsigned w,
                             uint64_t m) {
    if (k->mode == SINK_COUNT) {
        k->count += (uint64_t)__builtin_popcountll(m);
        return;
    }
    if (k->mode == SINK_GROUPS) {
        k->count += (uint64_t)__builtin_popcountll(m);
        while (m) {
            unsigned off = w * 64 + (unsigned)__builtin_ctzll(m);
            m &= m - 1;
            k->groups[b->groups[off]]++;
        }
        return;
    }
    while (m) {
        uint32_t ord = (bi << CONT_BITS) | (w * 64 + (unsigned)__builtin_ctzll(m));
        m &= m - 1;
        if (k->n == k->max) {
            k->full = 1;
            k->next = ord;
            return;
        }
        k->out[k->n++] = ord;
    }
}

/* ---------------------------------------------------------------------------
 * Whole-block word loops (dense path)
 * ------------------------------------------------------------------------- */

static void block_and_bitmap(uint64_t *restrict acc, const uint64_t *restrict b) {
    for (unsigned i = 0; i < CONT_WORDS; i++) {
        acc[i] &= b[i];
    }
}

static void block_andnot_bitmap(uint64_t *restrict acc, const uint64_t *restrict b) {
    for (unsigned i = 0; i < CONT_WORDS; i++) {
        acc[i] &= ~b[i];
    }
}

static void block_or_bitmap(uint64_t *restrict acc, const uint64_t *restrict b) {
    for (unsigned i = 0; i < CONT_WORDS; i++) {
        acc[i] |= b[i];
    }
}

static uint64_t block_popcount(const uint64_t *acc) {
    uint64_t n = 0;
    for (unsigned i = 0; i < CONT_WORDS; i++) {
        n += (uint64_t)__builtin_popcountll(acc[i]);
    }
    return n;
}

static uint64_t block_and_popcount(const uint64_t *restrict a, const uint64_t *restrict b) {
    uint64_t n = 0;
    for (unsigned i = 0; i < CONT_WORDS; i++) {
        n += (uint64_t)__builtin_popcountll(a[i] & b[i]);
    }
    return n;
}

/* acc &= members of c, for any container kind. */
static void block_and_cont(uint64_t *acc, const cont_t *c, uint64_t *tmp) {
    if (c->kind == CONT_BITMAP) {
        block_and_bitmap(acc, c->p);
        return;
    }
    memset(tmp, 0, CONT_WORDS * sizeof *tmp);
    const uint16_t *a = c->p;
    for (uint32_t i = 0; i < c->card; i++) {
        uint64_t bit = UINT64_C(1) << (a[i] & 63);
        tmp[a[i] >> 6] |= acc[a[i] >> 6] & bit;
    }
    memcpy(acc, tmp, CONT_WORDS * sizeof *acc);
}

static void block_andnot_cont(uint64_t *acc, const cont_t *c) {
    if (c->kind == CONT_BITMAP) {
        block_andnot_bitmap(acc, c->p);
        return;
    }
    const uint16_t *a = c->p;
    for (uint32_t i = 0; i < c->card; i++) {
        acc[a[i] >> 6] &= ~(UINT64_C(1) << (a[i] & 63));
    }
}

static void block_or_cont(uint64_t *acc, const cont_t *c) {
    if (c->kind == CONT_BITMAP) {
        block_or_bitmap(acc, c->p);
        return;
    }
    const uint16_t *a = c->p;
    for (uint32_t i = 0; i < c->card; i++) {
        acc[a[i] >> 6] |= UINT64_C(1) << (a[i] & 63);
    }
}

/* Counts the matches in a finished dense accumulator, per group when asked. */
static void sink_block(sink_t *k, const matcher_t *m, const matcher_blk_t *b, uint32_t bi,
                       const uint64_t *acc, unsigned from_w) {
    if (k->mode == SINK_COUNT && from_w == 0) {
        k->count += block_popcount(acc);
        return;
    }
    if (k->mode == SINK_GROUPS && b->multi == 0 && from_w == 0) {
        /* Every enterprise here holds at most one group tag, so the groups partition
         * the matches and each is one AND-popcount away. */
        uint64_t total = block_popcount(acc);
        uint64_t grouped = 0;
        for (unsigned g = 0; g < m->ngroups; g++) {
            const cont_t *c = &b->cols[m->group_tags[g]];
            uint64_t n = 0;
            if (c->kind == CONT_BITMAP) {
                n = block_and_popcount(acc, c->p);
            } else {
                const uint16_t *a = c->p;
                for (uint32_t i = 0; i < c->card; i++) {
                    n += (acc[a[i] >> 6] >> (a[i] & 63)) & 1;
                }
            }
            k->groups[g + 1] += n;
            grouped += n;
        }
        k->groups[0] += total - grouped;
        k->count += total;
        return;
    }
    for (unsigned w = from_w; w < CONT_WORDS && !k->full; w++) {
        if (acc[w]) {
            sink_word(k, b, bi, w, acc[w]);
        }
    }
}

/* ---------------------------------------------------------------------------
 * Per-block plan
 * ------------------------------------------------------------------------- */

typedef struct plan {
    const cont_t *all[RULE_MAX_PART];
    const cont_t *any[RULE_MAX_PART];
    const cont_t *none[RULE_MAX_PART];
    unsigned nall, nany, nnone;
    uint64_t any_card;
} plan_t;

/* Gathers the block's containers for the rule. Returns 0 when the block cannot
 * hold a match. */
static int plan_block(plan_t *p, const rule_t *r, const matcher_blk_t *b) {
    p->nall = p->nany = p->nnone = 0;
    p->any_card = 0;
    for (unsigned i = 0; i < r->nall; i++) {
        const cont_t *c = &b->cols[r->all[i]];
        if (c->card == 0) {
            return 0;
        }
        /* Insertion keeps the list sorted by cardinality, sparsest first. */
        unsigned j = p->nall++;
        while (j > 0 && p->all[j - 1]->card > c->card) {
            p->all[j] = p->all[j - 1];
            j--;
        }
        p->all[j] = c;
    }
    for (unsigned i = 0; i < r->nany; i++) {
        const cont_t *c = &b->cols[r->any[i]];
        if (c->card) {
            p->any[p->nany++] = c;
            p->any_card += c->card;
        }
    }
    if (r->nany && p->nany == 0) {
        return 0;
    }
    for (unsigned i = 0; i < r->nnone; i++) {
        const cont_t *c = &b->cols[r->none[i]];
        if (c->card) {
            p->none[p->nnone++] = c;
        }
    }
    return 1;
}

/* Probe walk: 'drv' words in increasing order, each checked against the other
 * operands. 'skip_all' is the index of the 'all' operand that is the driver (or
 * -1), 'any_done' says whether the driver already implies the 'any' part. */
typedef struct probe {
    operand_t all[RULE_MAX_PART];
    operand_t any[RULE_MAX_PART];
    operand_t none[RULE_MAX_PART];
    unsigned nall, nany, nnone;
} probe_t;

static void probe_init(probe_t *q, const plan_t *p, int skip_all, int any_done) {
    q->nall = q->nany = q->nnone = 0;
    for (unsigned i = 0; i < p->nall; i++) {
        if ((int)i != skip_all) {
            operand_init(&q->all[q->nall++], p->all[i]);
        }
    }
    if (!any_done) {
        for (unsigned i = 0; i < p->nany; i++) {
            operand_init(&q->any[q->nany++], p->any[i]);
        }
    }
    for (unsigned i = 0; i < p->nnone; i++) {
        operand_init(&q->none[q->nnone++], p->none[i]);
    }
}

static inline uint64_t probe_word(probe_t *q, unsigned w, uint64_t m) {
    for (unsigned i = 0; i < q->nall && m; i++) {
        m &= operand_word(&q->all[i], w);
    }
    if (m && q->nany) {
        uint64_t y = 0;
        for (unsigned i = 0; i < q->nany; i++) {
            y |= operand_word(&q->any[i], w);
            if ((m & y) == m) {
                break;
            }
        }
        m &= y;
    }
    for (unsigned i = 0; i < q->nnone && m; i++) {
        m &= ~operand_word(&q->none[i], w);
    }
    return m;
}

/* Walks a sparse driver container. */
static void probe_cont(sink_t *k, const matcher_blk_t *b, uint32_t bi, const cont_t *drv,
                       probe_t *q, unsigned from_w, uint64_t from_mask) {
    if (drv->kind == CONT_BITMAP) {
        const uint64_t *bm = drv->p;
        for (unsigned w = from_w; w < CONT_WORDS && !k->full; w++) {
            uint64_t m = bm[w];
            if (w == from_w) {
                m &= from_mask;
            }
            if (m && (m = probe_word(q, w, m)) != 0) {
                sink_word(k, b, bi, w, m);
            }
        }
        return;
    }
    const uint16_t *a = drv->p;
    uint32_t n = drv->card;
    uint32_t i = 0;
    while (i < n && (unsigned)(a[i] >> 6) < from_w) {
        i++;
    }
    while (i < n && !k->full) {
        unsigned w = a[i] >> 6;
        uint64_t m = 0;
        while (i < n && (unsigned)(a[i] >> 6) == w) {
            m |= UINT64_C(1) << (a[i] & 63);
            i++;
        }
        if (w == from_w) {
            m &= from_mask;
        }
        if (m && (m = probe_word(q, w, m)) != 0) {
            sink_word(k, b, bi, w, m);
        }
    }
}

/* Walks a dense accumulator word by word with the probe operands (used when the
 * driver is the union of several 'any' columns). */
static void probe_acc(sink_t *k, const matcher_blk_t *b, uint32_t bi, const uint64_t *acc,
                      probe_t *q, unsigned from_w, uint64_t from_mask) {
    for (unsigned w = from_w; w < CONT_WORDS && !k->full; w++) {
        uint64_t m = acc[w];
        if (w == from_w) {
            m &= from_mask;
        }
        if (m && (m = probe_word(q, w, m)) != 0) {
            sink_word(k, b, bi, w, m);
        }
    }
}

/* Dense evaluation into s->acc, starting from 'start' (a copy of the driver). */
static void dense_block(const plan_t *p, const rule_t *r, int drv_all, int any_done,
                        matcher_scratch_t *s) {
    for (unsigned i = 0; i < p->nall; i++) {
        if ((int)i != drv_all) {
            block_and_cont(s->acc, p->all[i], s->tmp);
        }
    }
    if (r->nany && !any_done) {
        if (p->nany == 1) {
            block_and_cont(s->acc, p->any[0], s->tmp);
        } else {
            memset(s->uni, 0, sizeof s->uni);
            for (unsigned i = 0; i < p->nany; i++) {
                block_or_cont(s->uni, p->any[i]);
            }
            block_and_bitmap(s->acc, s->uni);
        }
    }
    for (unsigned i = 0; i < p->nnone; i++) {
        block_andnot_cont(s->acc, p->none[i]);
    }
}

static void acc_load(uint64_t *acc, const cont_t *c) {
    if (c->kind == CONT_BITMAP) {
        memcpy(acc, c->p, CONT_WORDS * sizeof *acc);
        return;
    }
    memset(acc, 0, CONT_WORDS * sizeof *acc);
    block_or_cont(acc, c);
}

/* A driver this dense is cheaper to evaluate with whole-block loops than to probe. */
#define DENSE_DRIVER (CONT_SPAN / 32)

static void eval_block(const matcher_t *m, const rule_t *r, matcher_scratch_t *s, sink_t *k,
                       uint32_t bi, unsigned from_off) {
    const matcher_blk_t *b = m->blk[bi];
    if (b == NULL || b->nlive == 0) {
        return;
    }
    plan_t p;
    if (!plan_block(&p, r, b)) {
        return;
    }
    unsigned from_w = from_off >> 6;
    uint64_t from_mask = ~UINT64_C(0) << (from_off & 63);
    probe_t q;
    if (p.nall == 0 && r->nany == 0) {
        /* No positive condition: everyone alive, minus the 'none' tags. */
        memcpy(s->acc, b->live, sizeof s->acc);
        dense_block(&p, r, -1, 1, s);
        if (from_off) {
            memset(s->acc, 0, from_w * sizeof *s->acc);
            s->acc[from_w] &= from_mask;
        }
        sink_block(k, m, b, bi, s->acc, from_w);
        return;
    }
    int any_driven = p.nall == 0 || (r->nany && p.any_card * 2 < p.all[0]->card);
    if (!any_driven) {
        const cont_t *drv = p.all[0];
        if (drv->card >= DENSE_DRIVER) {
            acc_load(s->acc, drv);
            dense_block(&p, r, 0, 0, s);
            if (from_off) {
                memset(s->acc, 0, from_w * sizeof *s->acc);
                s->acc[from_w] &= from_mask;
            }
            sink_block(k, m, b, bi, s->acc, from_w);
            return;
        }
        probe_init(&q, &p, 0, 0);
        probe_cont(k, b, bi, drv, &q, from_w, from_mask);
        return;
    }
    if (p.nany == 1) {
        probe_init(&q, &p, -1, 1);
        probe_cont(k, b, bi, p.any[0], &q, from_w, from_mask);
        return;
    }
    memset(s->uni, 0, sizeof s->uni);
    for (unsigned i = 0; i < p.nany; i++) {
        block_or_cont(s->uni, p.any[i]);
    }
    if (p.any_card >= DENSE_DRIVER) {
        memcpy(s->acc, s->uni, sizeof s->acc);
        dense_block(&p, r, -1, 1, s);
        if (from_off) {
            memset(s->acc, 0, from_w * sizeof *s->acc);
            s->acc[from_w] &= from_mask;
        }
        sink_block(k, m, b, bi, s->acc, from_w);
        return;
    }
    probe_init(&q, &p, -1, 1);
    probe_acc(k, b, bi, s->uni, &q, from_w, from_mask);
}

static void eval_rule(const matcher_t *m, const rule_t *r, matcher_scratch_t *s, sink_t *k,
                      uint32_t from) {
    uint32_t nb = (m->span + CONT_SPAN - 1) >> CONT_BITS;
    for (uint32_t bi = from >> CONT_BITS; bi < nb && !k->full; bi++) {
        unsigned off = bi == (from >> CONT_BITS) ? (from & (CONT_SPAN - 1)) : 0;
        eval_block(m, r, s, k, bi, off);
    }
}

uint64_t matcher_count(const matcher_t *m, const rule_t *r, matcher_scratch_t *s) {
    sink_t k = {.mode = SINK_COUNT};
    eval_rule(m, r, s, &k, 0);
    return k.count;
}

uint64_t matcher_count_groups(const matcher_t *m, const rule_t *r, matcher_scratch_t *s,
                              uint64_t *groups) {
    memset(groups, 0, (m->ngroups + 1) * sizeof *groups);
    sink_t k = {.mode = SINK_GROUPS, .groups = groups};
    eval_rule(m, r, s, &k, 0);
    return k.count;
}

size_t matcher_list(const matcher_t *m, const rule_t *r, matcher_scratch_t *s, uint32_t from,
                    uint32_t *out, size_t max, uint32_t *next) {
    sink_t k = {.mode = SINK_LIST, .out = out, .max = max, .next = MATCHER_NONE};
    if (from < m->span) {
        eval_rule(m, r, s, &k, from);
    }
    *next = k.full ? k.next : MATCHER_NONE;
    return k.n;
}

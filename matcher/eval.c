/* Rule evaluation over the columns, one block of 65,536 ordinals at a time.
 *
 * Each block gets its own plan. The driver is the sparsest 'all' column, or the
 * union of the 'any' columns when that is smaller. When the driver is sparse, its
 * members become a candidate list that each remaining condition filters in turn,
 * most selective first, with branch-free compaction (a condition costs a load, a
 * shift and an add per candidate, never a mispredicted branch); array operands are
 * spread into a scratch bitmap first so every test is one load. When the driver is
 * dense, whole-block word loops (AND, OR, AND-NOT, popcount) win, and the
 * compiler vectorises them. The choice is made per block from the cardinalities.
 *
 * Counting, grouping and listing share the walk through a small sink. */
#include "matcher/matcher.h"

#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "matcher/internal.h"

struct matcher_scratch {
    const eval_kern_t *kx; /* the word loops for this CPU */
    uint64_t acc[CONT_WORDS];
    uint64_t tmp[CONT_WORDS];
    uint64_t uni[CONT_WORDS];
    uint64_t bm_all[CONT_WORDS]; /* an 'all' array spread out (kept zeroed) */
    uint64_t bm_any[CONT_WORDS]; /* the 'any' arrays spread out (kept zeroed) */
    uint64_t bm_none[CONT_WORDS]; /* the 'none' arrays spread out (kept zeroed) */
    uint16_t cand[CONT_SPAN];
};

matcher_scratch_t *matcher__scratch_new_isa(int isa) {
    matcher_scratch_t *s = xcalloc(1, sizeof(matcher_scratch_t));
    s->kx = matcher__kernels(isa);
    return s;
}

matcher_scratch_t *matcher_scratch_new(void) {
    return matcher__scratch_new_isa(-1);
}

void matcher_scratch_free(matcher_scratch_t *s) {
    free(s);
}

enum { SINK_COUNT, SINK_GROUPS, SINK_LIST };

/* Above this many matches in a block, counting by group columns beats a lookup
 * per match (about ngroups x 1,024 word operations against one load per match). */
#define SINK_GROUPS_BY_COLUMN 4096u

typedef struct sink {
    int mode;
    const eval_kern_t *kx;
    uint64_t count;
    uint64_t *groups; /* SINK_GROUPS: ngroups + 1 counters */
    uint32_t *out;    /* SINK_LIST */
    size_t max, n;
    uint32_t next; /* SINK_LIST: first ordinal not emitted when full */
    int full;
} sink_t;

/* ---------------------------------------------------------------------------
 * Whole-block word loops (dense path)
 *
 * Plain C loops that the compiler vectorises. The build targets baseline x86-64
 * (SSE4.2 and POPCNT: two words an instruction, popcount one word at a time); on
 * x86-64 the same loops are also compiled for AVX2 and for AVX-512 with VPOPCNTDQ
 * (eight words an instruction, popcount included), and each scratch takes the best
 * set the CPU has. Elsewhere the plain loops are all there is.
 * ------------------------------------------------------------------------- */

/* The kernels, once per instruction set. */
#define EVAL_KERNELS(SFX, ATTR)                                                                \
    ATTR static uint64_t popcount_##SFX(const uint64_t *restrict a, unsigned from_w) {         \
        uint64_t n = 0;                                                                        \
        for (unsigned i = from_w; i < CONT_WORDS; i++) {                                       \
            n += (uint64_t)__builtin_popcountll(a[i]);                                         \
        }                                                                                      \
        return n;                                                                              \
    }                                                                                          \
    ATTR static uint64_t and_popcount_##SFX(const uint64_t *restrict a,                       \
                                            const uint64_t *restrict b) {                      \
        uint64_t n = 0;                                                                        \
        for (unsigned i = 0; i < CONT_WORDS; i++) {                                            \
            n += (uint64_t)__builtin_popcountll(a[i] & b[i]);                                  \
        }                                                                                      \
        return n;                                                                              \
    }                                                                                          \
    ATTR static void and_##SFX(uint64_t *restrict a, const uint64_t *restrict b) {            \
        for (unsigned i = 0; i < CONT_WORDS; i++) {                                            \
            a[i] &= b[i];                                                                      \
        }                                                                                      \
    }                                                                                          \
    ATTR static void andnot_##SFX(uint64_t *restrict a, const uint64_t *restrict b) {         \
        for (unsigned i = 0; i < CONT_WORDS; i++) {                                            \
            a[i] &= ~b[i];                                                                     \
        }                                                                                      \
    }                                                                                          \
    ATTR static void or_##SFX(uint64_t *restrict a, const uint64_t *restrict b) {             \
        for (unsigned i = 0; i < CONT_WORDS; i++) {                                            \
            a[i] |= b[i];                                                                      \
        }                                                                                      \
    }                                                                                          \
    static const eval_kern_t kern_##SFX = {popcount_##SFX, and_popcount_##SFX, and_##SFX,      \
                                           andnot_##SFX, or_##SFX};

EVAL_KERNELS(base, )
#if EVAL_X86
#if defined(__clang__)
#define EVAL_AVX512 __attribute__((target("avx512f,avx512vpopcntdq")))
#else
#define EVAL_AVX512 __attribute__((target("avx512f,avx512vpopcntdq,prefer-vector-width=512")))
#endif
EVAL_KERNELS(avx2, __attribute__((target("avx2"))))
EVAL_KERNELS(avx512, EVAL_AVX512)
#endif

const eval_kern_t *matcher__kernels(int isa) {
#if EVAL_X86
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq");
    int avx2 = __builtin_cpu_supports("avx2");
    if ((isa < 0 || isa >= MATCHER_ISA_AVX512) && avx512) {
        return &kern_avx512;
    }
    if ((isa < 0 || isa >= MATCHER_ISA_AVX2) && avx2) {
        return &kern_avx2;
    }
#else
    (void)isa;
#endif
    return &kern_base;
}

/* acc &= members of c, for any container kind. */
static void block_and_cont(const eval_kern_t *kx, uint64_t *acc, const cont_t *c,
                           uint64_t *tmp) {
    if (c->kind == CONT_BITMAP) {
        kx->and_(acc, c->p);
        return;
    }
    memset(tmp, 0, CONT_WORDS * sizeof *tmp);
    const uint16_t *a = c->p;
    for (uint32_t i = 0; i < c->card; i++) {
        tmp[a[i] >> 6] |= acc[a[i] >> 6] & (UINT64_C(1) << (a[i] & 63));
    }
    memcpy(acc, tmp, CONT_WORDS * sizeof *acc);
}

static void block_andnot_cont(const eval_kern_t *kx, uint64_t *acc, const cont_t *c) {
    if (c->kind == CONT_BITMAP) {
        kx->andnot(acc, c->p);
        return;
    }
    const uint16_t *a = c->p;
    for (uint32_t i = 0; i < c->card; i++) {
        acc[a[i] >> 6] &= ~(UINT64_C(1) << (a[i] & 63));
    }
}

static void block_or_cont(const eval_kern_t *kx, uint64_t *acc, const cont_t *c) {
    if (c->kind == CONT_BITMAP) {
        kx->or_(acc, c->p);
        return;
    }
    const uint16_t *a = c->p;
    for (uint32_t i = 0; i < c->card; i++) {
        acc[a[i] >> 6] |= UINT64_C(1) << (a[i] & 63);
    }
}

static void block_clear_cont(uint64_t *acc, const cont_t *c) {
    const uint16_t *a = c->p;
    for (uint32_t i = 0; i < c->card; i++) {
        acc[a[i] >> 6] = 0;
    }
}

static void acc_load(const eval_kern_t *kx, uint64_t *acc, const cont_t *c) {
    if (c->kind == CONT_BITMAP) {
        memcpy(acc, c->p, CONT_WORDS * sizeof *acc);
        return;
    }
    memset(acc, 0, CONT_WORDS * sizeof *acc);
    block_or_cont(kx, acc, c);
}

/* ---------------------------------------------------------------------------
 * Sinks
 * ------------------------------------------------------------------------- */

/* Writes the positions of the set bits of 'm' (plus 'base') to 'out' and returns
 * how many. Writes up to 64 entries whatever the count: callers leave room. The
 * loop runs a fixed number of times per 8 bits found, so it does not mispredict on
 * every bit the way a plain ctz loop does. */
static inline size_t emit_bits(uint32_t *out, uint32_t base, uint64_t m) {
    size_t cnt = (size_t)__builtin_popcountll(m);
    for (size_t i = 0; i < cnt; i += 8) {
        for (int k = 0; k < 8; k++) {
            /* OR-ing the top bit keeps ctz defined once m runs out; the extra
             * writes land past cnt and are overwritten or ignored. */
            out[i + (size_t)k] = base + (uint32_t)__builtin_ctzll(m | (UINT64_C(1) << 63));
            m &= m - 1;
        }
    }
    return cnt;
}

static void sink_list_word(sink_t *k, uint32_t base, uint64_t m) {
    if (k->n + 72 <= k->max) {
        k->n += emit_bits(k->out + k->n, base, m);
        return;
    }
    while (m) {
        uint32_t ord = base + (uint32_t)__builtin_ctzll(m);
        m &= m - 1;
        if (k->n == k->max) {
            k->full = 1;
            k->next = ord;
            return;
        }
        k->out[k->n++] = ord;
    }
}

/* Delivers a finished dense accumulator of block 'bi'. */
static void sink_block(sink_t *k, const matcher_t *m, const matcher_blk_t *b, uint32_t bi,
                       const uint64_t *acc, unsigned from_w) {
    if (k->mode == SINK_COUNT) {
        k->count += k->kx->popcount(acc, from_w);
        return;
    }
    if (k->mode == SINK_GROUPS) {
        uint64_t total = k->kx->popcount(acc, 0);
        k->count += total;
        if (total == 0) {
            return;
        }
        /* Few matches: look each one's group up (one byte per ordinal). Many, and
         * the groups partition the block: one AND-popcount per group is cheaper
         * than a lookup per match. */
        if (b->multi == 0 && total > SINK_GROUPS_BY_COLUMN) {
            /* Every enterprise here holds at most one group tag, so the groups
             * partition the matches and each is one AND-popcount away. */
            uint64_t grouped = 0;
            for (unsigned g = 0; g < m->ngroups; g++) {
                const cont_t *c = &b->cols[m->group_tags[g]];
                uint64_t n = 0;
                if (c->kind == CONT_BITMAP) {
                    n = k->kx->and_popcount(acc, c->p);
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
            return;
        }
        for (unsigned w = 0; w < CONT_WORDS; w++) {
            uint64_t x = acc[w];
            while (x) {
                unsigned off = w * 64 + (unsigned)__builtin_ctzll(x);
                x &= x - 1;
                k->groups[b->groups[off]]++;
            }
        }
        return;
    }
    uint32_t base = bi << CONT_BITS;
    for (unsigned w = from_w; w < CONT_WORDS && !k->full; w++) {
        if (acc[w]) {
            sink_list_word(k, base + w * 64, acc[w]);
        }
    }
}

/* Delivers a finished candidate list (sorted offsets) of block 'bi'. */
static void sink_cands(sink_t *k, const matcher_blk_t *b, uint32_t bi, const uint16_t *c,
                       size_t n) {
    if (k->mode == SINK_COUNT) {
        k->count += n;
        return;
    }
    if (k->mode == SINK_GROUPS) {
        k->count += n;
        for (size_t i = 0; i < n; i++) {
            k->groups[b->groups[c[i]]]++;
        }
        return;
    }
    uint32_t base = bi << CONT_BITS;
    size_t room = k->max - k->n;
    size_t take = n < room ? n : room;
    for (size_t i = 0; i < take; i++) {
        k->out[k->n + i] = base | c[i];
    }
    k->n += take;
    if (take < n) {
        k->full = 1;
        k->next = base | c[take];
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

/* ---------------------------------------------------------------------------
 * Sparse path: candidate lists filtered branch-free
 * ------------------------------------------------------------------------- */

enum { F_ALL, F_ANY, F_NONE };

typedef struct filter {
    int kind;
    double keep;                        /* estimated fraction of candidates kept */
    const uint64_t *bm[RULE_MAX_PART];  /* bitmaps to test (any: OR, none: OR) */
    unsigned nbm;
    const cont_t *spread[RULE_MAX_PART]; /* arrays spread into a scratch bitmap */
    unsigned nspread;
    uint64_t *scratch;
} filter_t;

/* Copies the members of a container into 'out' as sorted offsets. */
static size_t cands_from(const cont_t *c, uint16_t *out) {
    if (c->kind != CONT_BITMAP) {
        memcpy(out, c->p, c->card * sizeof *out);
        return c->card;
    }
    const uint64_t *bm = c->p;
    size_t n = 0;
    for (unsigned w = 0; w < CONT_WORDS; w++) {
        uint64_t m = bm[w];
        while (m) {
            out[n++] = (uint16_t)(w * 64 + (unsigned)__builtin_ctzll(m));
            m &= m - 1;
        }
    }
    return n;
}

static size_t cands_from_bitmap(const uint64_t *bm, uint16_t *out) {
    size_t n = 0;
    for (unsigned w = 0; w < CONT_WORDS; w++) {
        uint64_t m = bm[w];
        while (m) {
            out[n++] = (uint16_t)(w * 64 + (unsigned)__builtin_ctzll(m));
            m &= m - 1;
        }
    }
    return n;
}

static size_t filter_run(const filter_t *f, uint16_t *c, size_t n) {
    size_t k = 0;
    if (f->kind == F_ALL) {
        const uint64_t *bm = f->nbm ? f->bm[0] : f->scratch;
        for (size_t i = 0; i < n; i++) {
            uint16_t e = c[i];
            c[k] = e;
            k += (bm[e >> 6] >> (e & 63)) & 1;
        }
        return k;
    }
    /* any / none: OR of several bitmaps (arrays already spread into one). */
    const uint64_t *bms[RULE_MAX_PART + 1];
    unsigned nb = 0;
    for (unsigned j = 0; j < f->nbm; j++) {
        bms[nb++] = f->bm[j];
    }
    if (f->nspread) {
        bms[nb++] = f->scratch;
    }
    uint64_t want = f->kind == F_ANY ? 1 : 0;
    if (nb == 1) {
        const uint64_t *bm = bms[0];
        for (size_t i = 0; i < n; i++) {
            uint16_t e = c[i];
            c[k] = e;
            k += ((bm[e >> 6] >> (e & 63)) & 1) == want;
        }
        return k;
    }
    for (size_t i = 0; i < n; i++) {
        uint16_t e = c[i];
        uint64_t hit = 0;
        for (unsigned j = 0; j < nb; j++) {
            hit |= bms[j][e >> 6] >> (e & 63);
        }
        c[k] = e;
        k += (hit & 1) == want;
    }
    return k;
}

/* Whether offset 'e' is in the sorted array 'a[*cur..n)'; '*cur' only moves
 * forward, so a sweep over increasing offsets costs O(k log(n/k)). */
static inline int array_has(const uint16_t *a, uint32_t n, uint32_t *cur, uint16_t e) {
    uint32_t i = *cur;
    if (i < n && a[i] < e) {
        uint32_t step = 1;
        uint32_t lo = i;
        uint32_t hi = i + 1;
        while (hi < n && a[hi] < e) {
            lo = hi;
            step <<= 1;
            hi = lo + step;
        }
        if (hi > n) {
            hi = n;
        }
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (a[mid] < e) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        i = lo;
    }
    *cur = i;
    return i < n && a[i] == e;
}

/* The filter by searching its arrays instead of spreading them: cheaper when the
 * candidates are few next to the arrays. */
static size_t filter_search(const filter_t *f, uint16_t *c, size_t n) {
    uint32_t cur[RULE_MAX_PART] = {0};
    size_t k = 0;
    uint64_t want = f->kind == F_NONE ? 0 : 1;
    for (size_t i = 0; i < n; i++) {
        uint16_t e = c[i];
        uint64_t hit = 0;
        for (unsigned j = 0; j < f->nbm; j++) {
            hit |= f->bm[j][e >> 6] >> (e & 63);
        }
        for (unsigned j = 0; j < f->nspread && !(hit & 1); j++) {
            const cont_t *a = f->spread[j];
            hit |= (uint64_t)array_has(a->p, a->card, &cur[j], e);
        }
        c[k] = e;
        k += (hit & 1) == want;
    }
    return k;
}

static uint64_t filter_spread_cost(const filter_t *f) {
    uint64_t cost = 0;
    for (unsigned j = 0; j < f->nspread; j++) {
        cost += f->spread[j]->card;
    }
    return 2 * cost;
}

static void filter_spread(filter_t *f) {
    for (unsigned j = 0; j < f->nspread; j++) {
        block_or_cont(&kern_base, f->scratch, f->spread[j]);
    }
}

static void filter_unspread(filter_t *f) {
    for (unsigned j = 0; j < f->nspread; j++) {
        block_clear_cont(f->scratch, f->spread[j]);
    }
}

/* Only the counters and the scalars: clearing the pointer slots too cost more than
 * the filtering itself on small blocks. */
static filter_t *filter_init(filter_t *x, int kind) {
    x->kind = kind;
    x->keep = 0;
    x->nbm = 0;
    x->nspread = 0;
    x->scratch = NULL;
    return x;
}

/* Builds the filters for the conditions left after the driver, sorted so the one
 * expected to keep the fewest candidates runs first. 'skip_all' is the index of the
 * 'all' column used as driver (or -1); 'any_done' when the driver is the 'any'
 * union. Array-backed 'all' columns beyond one scratch slot are tested through a
 * bitmap built on the fly in 'tmp'. */
static unsigned filters_build(filter_t *f, uint8_t *order, const plan_t *p, int skip_all,
                              int any_done, matcher_scratch_t *s) {
    unsigned nf = 0;
    const double span = (double)CONT_SPAN;
    int all_scratch_used = 0;
    for (unsigned i = 0; i < p->nall; i++) {
        if ((int)i == skip_all) {
            continue;
        }
        filter_t *x = filter_init(&f[nf++], F_ALL);
        x->keep = p->all[i]->card / span;
        if (p->all[i]->kind == CONT_BITMAP) {
            x->bm[x->nbm++] = p->all[i]->p;
        } else {
            x->spread[x->nspread++] = p->all[i];
            x->scratch = all_scratch_used++ ? NULL : s->bm_all;
        }
    }
    if (p->nany && !any_done) {
        filter_t *x = filter_init(&f[nf++], F_ANY);
        x->keep = p->any_card / span > 1 ? 1 : p->any_card / span;
        x->scratch = s->bm_any;
        for (unsigned i = 0; i < p->nany; i++) {
            if (p->any[i]->kind == CONT_BITMAP) {
                x->bm[x->nbm++] = p->any[i]->p;
            } else {
                x->spread[x->nspread++] = p->any[i];
            }
        }
    }
    if (p->nnone) {
        filter_t *x = filter_init(&f[nf++], F_NONE);
        double out = 0;
        x->scratch = s->bm_none;
        for (unsigned i = 0; i < p->nnone; i++) {
            out += p->none[i]->card / span;
            if (p->none[i]->kind == CONT_BITMAP) {
                x->bm[x->nbm++] = p->none[i]->p;
            } else {
                x->spread[x->nspread++] = p->none[i];
            }
        }
        x->keep = out > 1 ? 0 : 1 - out;
    }
    /* Sort an index, not the filters: a filter is a kilobyte of pointer slots. */
    for (unsigned i = 0; i < nf; i++) {
        unsigned j = i;
        while (j > 0 && f[order[j - 1]].keep > f[i].keep) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = (uint8_t)i;
    }
    return nf;
}

/* Filters candidates 'c[0..n)' through every filter; returns the survivors. */
static size_t filters_apply(filter_t *f, const uint8_t *order, unsigned nf, uint16_t *c,
                            size_t n, matcher_scratch_t *s) {
    for (unsigned i = 0; i < nf && n; i++) {
        filter_t *x = &f[order[i]];
        /* Spreading costs about two steps per array member, searching about
         * sixteen per candidate and array. */
        if (x->nspread && 16 * n * x->nspread < filter_spread_cost(x)) {
            n = filter_search(x, c, n);
            continue;
        }
        if (x->kind == F_ALL && x->nspread && x->scratch == NULL) {
            /* A second array-backed 'all' column: spread it into tmp for now. */
            x->scratch = s->tmp;
            memset(s->tmp, 0, sizeof s->tmp);
        }
        filter_spread(x);
        n = filter_run(x, c, n);
        filter_unspread(x);
    }
    return n;
}

/* ---------------------------------------------------------------------------
 * Dense path
 * ------------------------------------------------------------------------- */

/* What a count leaves out of the accumulator: one bitmap to AND (fused with the
 * popcount) and one 'none' array to subtract, each a whole pass saved. */
typedef struct defer {
    int on;
    const uint64_t *f;       /* AND this bitmap while counting, or NULL */
    const cont_t *none_last; /* subtract the members of this array, or NULL */
} defer_t;

/* dst = the union of the block's 'any' columns. */
static void any_union(const eval_kern_t *kx, uint64_t *dst, const plan_t *p) {
    memset(dst, 0, CONT_WORDS * sizeof *dst);
    for (unsigned i = 0; i < p->nany; i++) {
        block_or_cont(kx, dst, p->any[i]);
    }
}

/* Dense evaluation into s->acc, which holds the driver on entry. With 'd' on, one
 * bitmap operand and the last 'none' array may be left for dense_count. */
static void dense_block(const plan_t *p, const rule_t *r, int drv_all, int any_done,
                        matcher_scratch_t *s, defer_t *d) {
    for (unsigned i = 0; i < p->nall; i++) {
        if ((int)i == drv_all) {
            continue;
        }
        if (d->on && d->f == NULL && p->all[i]->kind == CONT_BITMAP) {
            d->f = p->all[i]->p;
            continue;
        }
        block_and_cont(s->kx, s->acc, p->all[i], s->tmp);
    }
    if (r->nany && !any_done) {
        if (p->nany == 1) {
            if (d->on && d->f == NULL && p->any[0]->kind == CONT_BITMAP) {
                d->f = p->any[0]->p;
            } else {
                block_and_cont(s->kx, s->acc, p->any[0], s->tmp);
            }
        } else {
            any_union(s->kx, s->uni, p);
            if (d->on && d->f == NULL) {
                d->f = s->uni;
            } else {
                s->kx->and_(s->acc, s->uni);
            }
        }
    }
    for (unsigned i = 0; i < p->nnone; i++) {
        if (d->on && i + 1 == p->nnone && p->none[i]->kind != CONT_BITMAP) {
            d->none_last = p->none[i];
            continue;
        }
        block_andnot_cont(s->kx, s->acc, p->none[i]);
    }
}

/* The matches of a block evaluated with 'd' on: popcount(acc & f), less the
 * members of the deferred 'none' array that would have survived. */
static uint64_t dense_count(const matcher_scratch_t *s, const defer_t *d) {
    const uint64_t *acc = s->acc;
    uint64_t n = d->f ? s->kx->and_popcount(acc, d->f) : s->kx->popcount(acc, 0);
    if (d->none_last) {
        const uint16_t *a = d->none_last->p;
        for (uint32_t i = 0; i < d->none_last->card; i++) {
            uint64_t bit = acc[a[i] >> 6] >> (a[i] & 63);
            if (d->f) {
                bit &= d->f[a[i] >> 6] >> (a[i] & 63);
            }
            n -= bit & 1;
        }
    }
    return n;
}

/* Finishes a block on the dense path, s->acc holding the driver: a count is fused
 * (dense_count), anything else is delivered from 'from_off' on. */
static void dense_finish(const matcher_t *m, const rule_t *r, matcher_scratch_t *s, sink_t *k,
                         const plan_t *p, uint32_t bi, int drv_all, int any_done,
                         unsigned from_off) {
    defer_t d = {.on = k->mode == SINK_COUNT};
    dense_block(p, r, drv_all, any_done, s, &d);
    if (d.on) {
        k->count += dense_count(s, &d);
        return;
    }
    unsigned from_w = from_off >> 6;
    if (from_off) {
        memset(s->acc, 0, from_w * sizeof *s->acc);
        s->acc[from_w] &= ~UINT64_C(0) << (from_off & 63);
    }
    sink_block(k, m, m->blk[bi], bi, s->acc, from_w);
}

/* Cost model, in rough cycles: a sparse filter pass costs about 2 per candidate, a
 * dense pass about 0.5 per word per column (vectorised). Measured on the bench
 * data set; only the choice between paths depends on it, never a result. */
static int prefer_sparse(uint64_t drv, const plan_t *p) {
    unsigned passes = p->nall + (p->nany ? 1 : 0) + (p->nnone ? 1 : 0);
    unsigned cols = p->nall + p->nany + p->nnone;
    return drv * 2 * (passes ? passes : 1) < (uint64_t)CONT_WORDS * cols / 2 + 256;
}

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
    if (k->mode == SINK_COUNT && p.nall == 1 && r->nany == 0 && p.nnone == 0) {
        /* One tag and nothing else: its column already knows. */
        k->count += p.all[0]->card;
        return;
    }
    if (p.nall == 0 && r->nany == 0) {
        /* No positive condition: everyone alive, minus the 'none' tags. */
        memcpy(s->acc, b->live, sizeof s->acc);
        dense_finish(m, r, s, k, &p, bi, -1, 1, from_off);
        return;
    }
    int any_driven = p.nall == 0 || (r->nany && p.any_card * 2 < p.all[0]->card);
    uint64_t drv = any_driven ? p.any_card : p.all[0]->card;
    if (!prefer_sparse(drv, &p)) {
        if (any_driven) {
            any_union(s->kx, s->acc, &p);
        } else {
            acc_load(s->kx, s->acc, p.all[0]);
        }
        dense_finish(m, r, s, k, &p, bi, any_driven ? -1 : 0, any_driven, from_off);
        return;
    }
    size_t n;
    if (!any_driven) {
        n = cands_from(p.all[0], s->cand);
    } else if (p.nany == 1) {
        n = cands_from(p.any[0], s->cand);
    } else {
        any_union(s->kx, s->uni, &p);
        n = cands_from_bitmap(s->uni, s->cand);
    }
    if (from_off) {
        size_t lo = 0;
        while (lo < n && s->cand[lo] < from_off) {
            lo++;
        }
        memmove(s->cand, s->cand + lo, (n - lo) * sizeof *s->cand);
        n -= lo;
    }
    filter_t f[RULE_MAX_PART + 2];
    uint8_t order[RULE_MAX_PART + 2];
    unsigned nf = filters_build(f, order, &p, any_driven ? -1 : 0, any_driven, s);
    n = filters_apply(f, order, nf, s->cand, n, s);
    sink_cands(k, b, bi, s->cand, n);
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
    sink_t k = {.mode = SINK_COUNT, .kx = s->kx};
    eval_rule(m, r, s, &k, 0);
    return k.count;
}

uint64_t matcher_count_groups(const matcher_t *m, const rule_t *r, matcher_scratch_t *s,
                              uint64_t *groups) {
    memset(groups, 0, (m->ngroups + 1) * sizeof *groups);
    sink_t k = {.mode = SINK_GROUPS, .kx = s->kx, .groups = groups};
    eval_rule(m, r, s, &k, 0);
    return k.count;
}

size_t matcher_list(const matcher_t *m, const rule_t *r, matcher_scratch_t *s, uint32_t from,
                    uint32_t *out, size_t max, uint32_t *next) {
    sink_t k = {.mode = SINK_LIST, .kx = s->kx, .out = out, .max = max, .next = MATCHER_NONE};
    if (from < m->span) {
        eval_rule(m, r, s, &k, from);
    }
    *next = k.full ? k.next : MATCHER_NONE;
    return k.n;
}

/* Rule evaluation over the columns, one block of 65,536 ordinals at a time.
 *
 * Each block gets its own plan. First the extent summaries (cont.h) say which of
 * the block's 64 extents can hold a match at all, and which conditions hold for
 * every live ordinal of those extents: such a condition is dropped, and a block
 * with no such extent is skipped, without reading a member. The store gives out
 * ordinals an extent at a time to enterprises alike in region, entity type and
 * industry, so rules over those tags mostly end here. What is left runs only over
 * the extents kept. The driver is the sparsest 'all' column, or the
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
    uint64_t bm_all[CONT_WORDS];  /* an 'all' array spread out (kept zeroed) */
    uint64_t bm_any[CONT_WORDS];  /* the 'any' arrays spread out (kept zeroed) */
    uint64_t bm_none[CONT_WORDS]; /* the 'none' arrays spread out (kept zeroed) */
    uint16_t cand[CONT_SPAN];
    /* matcher_list: the matches as a bitmap over positions, then (when that is the
     * cheaper way to order them) over ordinals; all 0 between calls. */
    uint64_t *pbm;
    uint32_t pbm_words;
    uint64_t *obm;
    uint32_t obm_words;
    uint8_t *touched; /* blocks with bits in pbm */
    uint32_t touched_cap;
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
    if (s) {
        free(s->pbm);
        free(s->obm);
        free(s->touched);
    }
    free(s);
}

enum { SINK_COUNT, SINK_GROUPS, SINK_POS, SINK_ORDS };

/* Above this many matches in a block, counting by group columns beats a lookup
 * per match (about ngroups x 1,024 word operations against one load per match). */
#define SINK_GROUPS_BY_COLUMN 4096u

typedef struct sink {
    int mode;
    const eval_kern_t *kx;
    const matcher_t *m;
    uint64_t count;
    uint64_t *groups; /* SINK_GROUPS: ngroups + 1 counters */
    uint64_t *pbm;    /* SINK_POS: matching positions are set here */
    uint8_t *touched; /* SINK_POS: blocks that set bits in pbm */
    uint64_t *obm;    /* SINK_ORDS: matching ordinals are set here */
} sink_t;

/* ---------------------------------------------------------------------------
 * Whole-block word loops (dense path)
 *
 * Plain C loops that the compiler vectorises. The build targets baseline x86-64
 * (SSE4.2 and POPCNT: two words an instruction, popcount one word at a time); on
 * x86-64 the same loops are also compiled for AVX2 and for AVX-512 with VPOPCNTDQ
 * (eight words an instruction, popcount included), and each scratch takes the best
 * set the CPU has. Elsewhere the plain loops are all there is. Two kernels that
 * listing uses, turning bits into ordinals, have AVX-512 versions written with
 * compress intrinsics, which no compiler derives from a loop.
 * ------------------------------------------------------------------------- */

/* Writes the positions of the set bits of 'm' (plus 'base') to 'out' and returns
 * how many. Writes up to 4 entries past the count.
 * Four at a time, the second four only when there are more than four: a plain
 * ctz loop mispredicts its exit on every word, and most words here hold a few
 * bits. */
static inline size_t emit_bits(uint32_t *out, uint32_t base, uint64_t m) {
    size_t cnt = (size_t)__builtin_popcountll(m);
    /* OR-ing the top bit keeps ctz defined once m runs out; the extra writes land
     * past cnt and are overwritten or ignored. */
    const uint64_t top = UINT64_C(1) << 63;
    for (size_t i = 0; i < cnt; i += 4) {
        out[i] = base + (uint32_t)__builtin_ctzll(m | top);
        m &= m - 1;
        out[i + 1] = base + (uint32_t)__builtin_ctzll(m | top);
        m &= m - 1;
        out[i + 2] = base + (uint32_t)__builtin_ctzll(m | top);
        m &= m - 1;
        out[i + 3] = base + (uint32_t)__builtin_ctzll(m | top);
        m &= m - 1;
    }
    return cnt;
}

/* Marks an ordinal in a bitmap, one read-modify-write a mark: gathering the marks
 * of one word in a register first costs a mispredicted branch whenever the word
 * changes, which in a laid-out index is every second mark or so. Marks below a
 * listing's 'from' are set too and skipped by list_read, which costs less than a
 * test per mark. */
static inline void marks_add(uint64_t *obm, uint32_t ord) {
    obm[ord >> 6] |= UINT64_C(1) << (ord & 63);
}

/* The 'mark' kernel without SIMD. (Buffering the positions of a few words first,
 * as the AVX-512 kernel does, made it slower: 191 against 154 µs.) */
static void mark_base(uint64_t *obm, const uint32_t *p2o, const uint64_t *a, unsigned n) {
    for (unsigned w = 0; w < n; w++) {
        for (uint64_t x = a[w]; x; x &= x - 1) {
            marks_add(obm, p2o[w * 64 + (unsigned)__builtin_ctzll(x)]);
        }
    }
}

/* The 'emit' kernel without SIMD. */
static size_t emit_base(uint32_t *out, const uint64_t *a, unsigned n, uint32_t base) {
    size_t c = 0;
    for (unsigned w = 0; w < n; w++) {
        c += emit_bits(out + c, base + w * 64, a[w]);
    }
    return c;
}

#if EVAL_X86
#include <immintrin.h>

/* Stores base + the low 16 bytes of 'offs', widened, at 'out'. */
__attribute__((target("avx512f"))) static inline void emit_store16(uint32_t *out, __m512i base,
                                                                   __m512i offs) {
    __m512i wide = _mm512_cvtepu8_epi32(_mm512_castsi512_si128(offs));
    _mm512_storeu_si512(out, _mm512_add_epi32(base, wide));
}

/* The 'emit' kernel with AVX-512 VBMI2: one byte compress turns a word into the
 * offsets of its bits, whatever their number, where emit_bits spends a ctz on
 * each. */
__attribute__((target("avx512f,avx512bw,avx512vbmi2"))) static size_t
emit_vbmi2(uint32_t *out, const uint64_t *a, unsigned n, uint32_t base) {
    /* Byte i holds i. */
    const __m512i iota = _mm512_set_epi64(
        0x3f3e3d3c3b3a3938, 0x3736353433323130, 0x2f2e2d2c2b2a2928, 0x2726252423222120,
        0x1f1e1d1c1b1a1918, 0x1716151413121110, 0x0f0e0d0c0b0a0908, 0x0706050403020100);
    size_t c = 0;
    /* The base goes up by a vector add: a broadcast from a general register each
     * word costs Zen 4 nearly half the loop. */
    __m512i b = _mm512_set1_epi32((int)base);
    const __m512i step = _mm512_set1_epi32(64);
    for (unsigned w = 0; w < n; w++) {
        uint64_t x = a[w];
        unsigned cnt = (unsigned)__builtin_popcountll(x);
        __m512i offs = _mm512_maskz_compress_epi8(x, iota);
        emit_store16(out + c, b, offs);
        /* More than 16 bits in a word is rare in a listing; 16 more a turn. */
        if (__builtin_expect(cnt > 16, 0)) {
            for (unsigned i = 16; i < cnt; i += 16) {
                offs = _mm512_alignr_epi32(offs, offs, 4);
                emit_store16(out + c + i, b, offs);
            }
        }
        b = _mm512_add_epi32(b, step);
        c += cnt;
    }
    return c;
}

/* The 'mark' kernel with AVX-512: sixteen positions at a time, compress picks
 * the ordinals of the matches straight out of p2o (no ctz, no index arithmetic)
 * into a buffer, and a plain loop marks them. */
__attribute__((target("avx512f"))) static void mark_avx512(uint64_t *obm, const uint32_t *p2o,
                                                           const uint64_t *a, unsigned n) {
    uint32_t buf[16 * 64 + 16];
    for (unsigned w = 0; w < n;) {
        unsigned end = n - w > 16 ? w + 16 : n;
        size_t c = 0;
        for (; w < end; w++) {
            uint64_t x = a[w];
            for (unsigned q = 0; q < 64; q += 16) {
                __mmask16 k = (__mmask16)(x >> q);
                __m512i o = _mm512_maskz_loadu_epi32(k, p2o + w * 64 + q);
                _mm512_storeu_si512(buf + c, _mm512_maskz_compress_epi32(k, o));
                c += (size_t)__builtin_popcount(k);
            }
        }
        /* Four to a turn: the loop's own counting was a third of its work. */
        size_t i = 0;
        for (; i + 4 <= c; i += 4) {
            marks_add(obm, buf[i]);
            marks_add(obm, buf[i + 1]);
            marks_add(obm, buf[i + 2]);
            marks_add(obm, buf[i + 3]);
        }
        for (; i < c; i++) {
            marks_add(obm, buf[i]);
        }
    }
}
#endif

/* The kernels, once per instruction set; 'n' words, a multiple of 16 (whole
 * extents). The inner loops have a constant trip count: GCC's -O2 vectorises only
 * loops it needs no remainder for. */
#define EVAL_KERNELS(SFX, ATTR)                                                                   \
    ATTR static uint64_t popcount_##SFX(const uint64_t *restrict a, unsigned n) {                 \
        uint64_t c = 0;                                                                           \
        for (; n; n -= CONT_EXT_WORDS, a += CONT_EXT_WORDS) {                                     \
            for (unsigned i = 0; i < CONT_EXT_WORDS; i++) {                                       \
                c += (uint64_t)__builtin_popcountll(a[i]);                                        \
            }                                                                                     \
        }                                                                                         \
        return c;                                                                                 \
    }                                                                                             \
    ATTR static uint64_t and_popcount_##SFX(const uint64_t *restrict a,                           \
                                            const uint64_t *restrict b, unsigned n) {             \
        uint64_t c = 0;                                                                           \
        for (; n; n -= CONT_EXT_WORDS, a += CONT_EXT_WORDS, b += CONT_EXT_WORDS) {                \
            for (unsigned i = 0; i < CONT_EXT_WORDS; i++) {                                       \
                c += (uint64_t)__builtin_popcountll(a[i] & b[i]);                                 \
            }                                                                                     \
        }                                                                                         \
        return c;                                                                                 \
    }                                                                                             \
    ATTR static void and_##SFX(uint64_t *restrict a, const uint64_t *restrict b, unsigned n) {    \
        for (; n; n -= CONT_EXT_WORDS, a += CONT_EXT_WORDS, b += CONT_EXT_WORDS) {                \
            for (unsigned i = 0; i < CONT_EXT_WORDS; i++) {                                       \
                a[i] &= b[i];                                                                     \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
    ATTR static void andnot_##SFX(uint64_t *restrict a, const uint64_t *restrict b, unsigned n) { \
        for (; n; n -= CONT_EXT_WORDS, a += CONT_EXT_WORDS, b += CONT_EXT_WORDS) {                \
            for (unsigned i = 0; i < CONT_EXT_WORDS; i++) {                                       \
                a[i] &= ~b[i];                                                                    \
            }                                                                                     \
        }                                                                                         \
    }                                                                                             \
    ATTR static void or_##SFX(uint64_t *restrict a, const uint64_t *restrict b, unsigned n) {     \
        for (; n; n -= CONT_EXT_WORDS, a += CONT_EXT_WORDS, b += CONT_EXT_WORDS) {                \
            for (unsigned i = 0; i < CONT_EXT_WORDS; i++) {                                       \
                a[i] |= b[i];                                                                     \
            }                                                                                     \
        }                                                                                         \
    }

#define EVAL_KERN(SFX, EMIT, MARK) \
    { popcount_##SFX, and_popcount_##SFX, and_##SFX, andnot_##SFX, or_##SFX, EMIT, MARK }

EVAL_KERNELS(base, )
static const eval_kern_t kern_base = EVAL_KERN(base, emit_base, mark_base);
#if EVAL_X86
#if defined(__clang__)
#define EVAL_AVX512 __attribute__((target("avx512f,avx512vpopcntdq")))
#else
#define EVAL_AVX512 __attribute__((target("avx512f,avx512vpopcntdq,prefer-vector-width=512")))
#endif
EVAL_KERNELS(avx2, __attribute__((target("avx2"))))
EVAL_KERNELS(avx512, EVAL_AVX512)
static const eval_kern_t kern_avx2 = EVAL_KERN(avx2, emit_base, mark_base);
static const eval_kern_t kern_avx512 = EVAL_KERN(avx512, emit_base, mark_avx512);
/* AVX-512 with VBMI2 as well (Ice Lake, Zen 4 and later) emits with compress. */
static const eval_kern_t kern_avx512_vbmi2 = EVAL_KERN(avx512, emit_vbmi2, mark_avx512);
#endif

const eval_kern_t *matcher__kernels(int isa) {
#if EVAL_X86
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq");
    int avx2 = __builtin_cpu_supports("avx2");
    int vbmi2 =
        avx512 && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vbmi2");
    if ((isa < 0 || isa >= MATCHER_ISA_VBMI2) && vbmi2) {
        return &kern_avx512_vbmi2;
    }
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

/* ---------------------------------------------------------------------------
 * Extent masks
 *
 * A mask holds one bit per extent of 16 words. The word loops run over its runs
 * of consecutive extents, so a block whose rule keeps a few extents reads only
 * those parts of its bitmaps.
 * ------------------------------------------------------------------------- */

/* Takes the lowest run of consecutive extents off '*mask' and gives it as words
 * [*w0, *w0 + *nw); returns 0 when the mask is empty. */
static inline int ext_run(uint64_t *mask, unsigned *w0, unsigned *nw) {
    uint64_t x = *mask;
    if (x == 0) {
        return 0;
    }
    unsigned lo = (unsigned)__builtin_ctzll(x);
    uint64_t gap = ~(x >> lo);
    unsigned len = gap ? (unsigned)__builtin_ctzll(gap) : 64 - lo;
    *mask = lo + len >= 64 ? 0 : x & ~(((UINT64_C(1) << len) - 1) << lo);
    *w0 = lo * CONT_EXT_WORDS;
    *nw = len * CONT_EXT_WORDS;
    return 1;
}

static uint64_t mpopcount(const eval_kern_t *kx, const uint64_t *a, uint64_t mask) {
    uint64_t n = 0;
    unsigned w0, nw;
    while (ext_run(&mask, &w0, &nw)) {
        n += kx->popcount(a + w0, nw);
    }
    return n;
}

static uint64_t mand_popcount(const eval_kern_t *kx, const uint64_t *a, const uint64_t *b,
                              uint64_t mask) {
    uint64_t n = 0;
    unsigned w0, nw;
    while (ext_run(&mask, &w0, &nw)) {
        n += kx->and_popcount(a + w0, b + w0, nw);
    }
    return n;
}

/* a op= b over the extents of 'mask'; 'op' is one of the kernels' word loops. */
static void mop(void (*op)(uint64_t *, const uint64_t *, unsigned), uint64_t *a, const uint64_t *b,
                uint64_t mask) {
    unsigned w0, nw;
    while (ext_run(&mask, &w0, &nw)) {
        op(a + w0, b + w0, nw);
    }
}

/* dst = src on the extents of 'mask', 0 elsewhere. */
static void mload(uint64_t *dst, const uint64_t *src, uint64_t mask) {
    if (mask == UINT64_MAX) {
        memcpy(dst, src, CONT_WORDS * sizeof *dst);
        return;
    }
    memset(dst, 0, CONT_WORDS * sizeof *dst);
    unsigned w0, nw;
    while (ext_run(&mask, &w0, &nw)) {
        memcpy(dst + w0, src + w0, nw * sizeof *dst);
    }
}

/* Clears 'a' on the extents outside 'mask'. */
static void mclear_outside(uint64_t *a, uint64_t mask) {
    uint64_t out = ~mask;
    unsigned w0, nw;
    while (ext_run(&out, &w0, &nw)) {
        memset(a + w0, 0, nw * sizeof *a);
    }
}

/* Whether offset 'x' lies in an extent of 'mask', as 0 or 1. */
static inline unsigned in_mask(uint64_t mask, uint16_t x) {
    return (unsigned)(mask >> (x >> CONT_EXT_BITS)) & 1u;
}

/* Members of 'c' in the extents of 'mask'. */
static uint64_t cont_count(const eval_kern_t *kx, const cont_t *c, uint64_t mask) {
    if ((c->ext_any & ~mask) == 0) {
        return c->card;
    }
    if (c->kind == CONT_BITMAP) {
        return mpopcount(kx, c->p, mask);
    }
    const uint16_t *a = c->p;
    uint64_t n = 0;
    for (uint32_t i = 0; i < c->card; i++) {
        n += in_mask(mask, a[i]);
    }
    return n;
}

/* ---------------------------------------------------------------------------
 * Container operations on a block accumulator that is 0 outside the mask
 * ------------------------------------------------------------------------- */

/* acc &= members of c, for any container kind. */
static void block_and_cont(const eval_kern_t *kx, uint64_t *acc, const cont_t *c, uint64_t *tmp,
                           uint64_t mask) {
    if (c->kind == CONT_BITMAP) {
        mop(kx->and_, acc, c->p, mask);
        return;
    }
    memset(tmp, 0, CONT_WORDS * sizeof *tmp);
    const uint16_t *a = c->p;
    for (uint32_t i = 0; i < c->card; i++) {
        tmp[a[i] >> 6] |= acc[a[i] >> 6] & (UINT64_C(1) << (a[i] & 63));
    }
    memcpy(acc, tmp, CONT_WORDS * sizeof *acc);
}

static void block_andnot_cont(const eval_kern_t *kx, uint64_t *acc, const cont_t *c,
                              uint64_t mask) {
    if (c->kind == CONT_BITMAP) {
        mop(kx->andnot, acc, c->p, mask);
        return;
    }
    const uint16_t *a = c->p;
    for (uint32_t i = 0; i < c->card; i++) {
        acc[a[i] >> 6] &= ~(UINT64_C(1) << (a[i] & 63));
    }
}

/* acc |= members of c: bitmaps over the extents of 'mask', arrays whole (callers
 * that need acc to stay 0 outside the mask clear it afterwards). */
static void block_or_cont(const eval_kern_t *kx, uint64_t *acc, const cont_t *c, uint64_t mask) {
    if (c->kind == CONT_BITMAP) {
        mop(kx->or_, acc, c->p, mask);
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

/* acc = members of c in the extents of 'mask', 0 elsewhere. */
static void acc_load(uint64_t *acc, const cont_t *c, uint64_t mask) {
    if (c->kind == CONT_BITMAP) {
        mload(acc, c->p, mask);
        return;
    }
    memset(acc, 0, CONT_WORDS * sizeof *acc);
    const uint16_t *a = c->p;
    for (uint32_t i = 0; i < c->card; i++) {
        acc[a[i] >> 6] |= (uint64_t)in_mask(mask, a[i]) << (a[i] & 63);
    }
}

/* ---------------------------------------------------------------------------
 * Sinks
 * ------------------------------------------------------------------------- */

/* Delivers a finished dense accumulator of block 'bi', which is 0 outside the
 * extents of 'mask'. */
static void sink_block(sink_t *k, const matcher_t *m, const matcher_blk_t *b, uint32_t bi,
                       const uint64_t *acc, uint64_t mask) {
    if (k->mode == SINK_COUNT) {
        k->count += mpopcount(k->kx, acc, mask);
        return;
    }
    unsigned w0, nw;
    if (k->mode == SINK_GROUPS) {
        uint64_t total = mpopcount(k->kx, acc, mask);
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
                if ((c->ext_any & mask) == 0) {
                    continue;
                }
                if (c->kind == CONT_BITMAP) {
                    n = mand_popcount(k->kx, acc, c->p, mask & c->ext_any);
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
        uint64_t runs = mask;
        while (ext_run(&runs, &w0, &nw)) {
            for (unsigned w = w0; w < w0 + nw; w++) {
                uint64_t x = acc[w];
                while (x) {
                    unsigned off = w * 64 + (unsigned)__builtin_ctzll(x);
                    x &= x - 1;
                    k->groups[b->groups[off]]++;
                }
            }
        }
        return;
    }
    uint64_t runs = mask;
    if (k->mode == SINK_ORDS) {
        const uint32_t *p2o = m->p2o + ((size_t)bi << CONT_BITS);
        while (ext_run(&runs, &w0, &nw)) {
            k->kx->mark(k->obm, p2o + w0 * 64, acc + w0, nw);
        }
        return;
    }
    uint64_t *pbm = k->pbm + (size_t)bi * CONT_WORDS;
    while (ext_run(&runs, &w0, &nw)) {
        for (unsigned w = w0; w < w0 + nw; w++) {
            pbm[w] |= acc[w];
            k->count += (uint64_t)__builtin_popcountll(acc[w]);
        }
    }
    k->touched[bi] = 1;
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
    if (k->mode == SINK_ORDS) {
        const uint32_t *p2o = k->m->p2o + ((size_t)bi << CONT_BITS);
        for (size_t i = 0; i < n; i++) {
            marks_add(k->obm, p2o[c[i]]);
        }
        return;
    }
    uint64_t *pbm = k->pbm + (size_t)bi * CONT_WORDS;
    for (size_t i = 0; i < n; i++) {
        pbm[c[i] >> 6] |= UINT64_C(1) << (c[i] & 63);
    }
    k->count += n;
    k->touched[bi] |= n != 0;
}

/* ---------------------------------------------------------------------------
 * Per-block plan
 * ------------------------------------------------------------------------- */

typedef struct plan {
    const cont_t *all[RULE_MAX_PART];
    const cont_t *any[RULE_MAX_PART];
    const cont_t *none[RULE_MAX_PART];
    unsigned nall, nany, nnone;
    int has_any; /* the 'any' part is still to be checked */
    uint64_t any_card;
    uint64_t any_ext; /* extents where an 'any' column has members */
    uint64_t mask;    /* extents that may hold a match */
} plan_t;

/* Gathers the block's containers for the rule. An extent stays in the mask only
 * if every 'all' column
 * and some 'any' column has members there and no 'none' column holds all of it; a
 * condition that every live ordinal of the kept extents meets is left out of the
 * plan. Returns 0 when the block cannot hold a match. */
static int plan_block(plan_t *p, const rule_t *r, const matcher_blk_t *b) {
    uint64_t mask = b->ext_live;
    uint64_t any_full = 0;
    p->any_ext = 0;
    for (unsigned i = 0; i < r->nall; i++) {
        mask &= b->cols[r->all[i]].ext_any;
    }
    for (unsigned i = 0; i < r->nany; i++) {
        p->any_ext |= b->cols[r->any[i]].ext_any;
        any_full |= b->cols[r->any[i]].ext_full;
    }
    if (r->nany) {
        mask &= p->any_ext;
    }
    for (unsigned i = 0; i < r->nnone; i++) {
        mask &= ~b->cols[r->none[i]].ext_full;
    }
    if (mask == 0) {
        return 0;
    }
    p->mask = mask;
    p->nall = p->nany = p->nnone = 0;
    p->any_card = 0;
    for (unsigned i = 0; i < r->nall; i++) {
        const cont_t *c = &b->cols[r->all[i]];
        if ((mask & ~c->ext_full) == 0) {
            continue;
        }
        /* Insertion keeps the list sorted by cardinality, sparsest first. */
        unsigned j = p->nall++;
        while (j > 0 && p->all[j - 1]->card > c->card) {
            p->all[j] = p->all[j - 1];
            j--;
        }
        p->all[j] = c;
    }
    p->has_any = r->nany && (mask & ~any_full) != 0;
    for (unsigned i = 0; p->has_any && i < r->nany; i++) {
        const cont_t *c = &b->cols[r->any[i]];
        if (c->ext_any & mask) {
            p->any[p->nany++] = c;
            p->any_card += c->card;
        }
    }
    for (unsigned i = 0; i < r->nnone; i++) {
        const cont_t *c = &b->cols[r->none[i]];
        if (c->ext_any & mask) {
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
    double keep;                       /* estimated fraction of candidates kept */
    const uint64_t *bm[RULE_MAX_PART]; /* bitmaps to test (any: OR, none: OR) */
    unsigned nbm;
    const cont_t *spread[RULE_MAX_PART]; /* arrays spread into a scratch bitmap */
    unsigned nspread;
    uint64_t *scratch;
} filter_t;

/* The members of bitmap 'bm' in the extents of 'mask', as sorted offsets. */
static size_t cands_from_bitmap(const uint64_t *bm, uint16_t *out, uint64_t mask) {
    size_t n = 0;
    unsigned w0, nw;
    while (ext_run(&mask, &w0, &nw)) {
        for (unsigned w = w0; w < w0 + nw; w++) {
            uint64_t m = bm[w];
            while (m) {
                out[n++] = (uint16_t)(w * 64 + (unsigned)__builtin_ctzll(m));
                m &= m - 1;
            }
        }
    }
    return n;
}

/* The members of a container in the extents of 'mask', as sorted offsets. */
static size_t cands_from(const cont_t *c, uint16_t *out, uint64_t mask) {
    if (c->kind == CONT_BITMAP) {
        return cands_from_bitmap(c->p, out, mask);
    }
    const uint16_t *a = c->p;
    if ((c->ext_any & ~mask) == 0) {
        memcpy(out, a, c->card * sizeof *out);
        return c->card;
    }
    size_t n = 0;
    for (uint32_t i = 0; i < c->card; i++) {
        out[n] = a[i];
        n += in_mask(mask, a[i]);
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
        block_or_cont(&kern_base, f->scratch, f->spread[j], UINT64_MAX);
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
static size_t filters_apply(filter_t *f, const uint8_t *order, unsigned nf, uint16_t *c, size_t n,
                            matcher_scratch_t *s) {
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

/* dst = the union of the block's 'any' columns (bitmaps over the mask's extents;
 * arrays whole, so dst may hold bits outside the mask). */
static void any_union(const eval_kern_t *kx, uint64_t *dst, const plan_t *p) {
    memset(dst, 0, CONT_WORDS * sizeof *dst);
    for (unsigned i = 0; i < p->nany; i++) {
        block_or_cont(kx, dst, p->any[i], p->mask);
    }
}

/* Dense evaluation into s->acc, which holds the driver on entry (0 outside the
 * mask). With 'd' on, one bitmap operand and the last 'none' array may be left for
 * dense_count. */
static void dense_block(const plan_t *p, int drv_all, int any_done, matcher_scratch_t *s,
                        defer_t *d) {
    for (unsigned i = 0; i < p->nall; i++) {
        if ((int)i == drv_all) {
            continue;
        }
        if (d->on && d->f == NULL && p->all[i]->kind == CONT_BITMAP) {
            d->f = p->all[i]->p;
            continue;
        }
        block_and_cont(s->kx, s->acc, p->all[i], s->tmp, p->mask);
    }
    if (p->has_any && !any_done) {
        if (p->nany == 1) {
            if (d->on && d->f == NULL && p->any[0]->kind == CONT_BITMAP) {
                d->f = p->any[0]->p;
            } else {
                block_and_cont(s->kx, s->acc, p->any[0], s->tmp, p->mask);
            }
        } else {
            any_union(s->kx, s->uni, p);
            if (d->on && d->f == NULL) {
                d->f = s->uni;
            } else {
                mop(s->kx->and_, s->acc, s->uni, p->mask);
            }
        }
    }
    for (unsigned i = 0; i < p->nnone; i++) {
        if (d->on && i + 1 == p->nnone && p->none[i]->kind != CONT_BITMAP) {
            d->none_last = p->none[i];
            continue;
        }
        block_andnot_cont(s->kx, s->acc, p->none[i], p->mask);
    }
}

/* The matches of a block evaluated with 'd' on: popcount(acc & f), less the
 * members of the deferred 'none' array that would have survived. */
static uint64_t dense_count(const matcher_scratch_t *s, const defer_t *d, uint64_t mask) {
    const uint64_t *acc = s->acc;
    uint64_t n = d->f ? mand_popcount(s->kx, acc, d->f, mask) : mpopcount(s->kx, acc, mask);
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
 * (dense_count), anything else is delivered. */
static void dense_finish(const matcher_t *m, matcher_scratch_t *s, sink_t *k, const plan_t *p,
                         uint32_t bi, int drv_all, int any_done) {
    defer_t d = {.on = k->mode == SINK_COUNT};
    dense_block(p, drv_all, any_done, s, &d);
    if (d.on) {
        k->count += dense_count(s, &d, p->mask);
        return;
    }
    sink_block(k, m, m->blk[bi], bi, s->acc, p->mask);
}

/* Cost model, in rough cycles: a sparse filter pass costs about 2 per candidate, a
 * dense pass about 0.5 per word per column over the kept extents (vectorised).
 * Measured on the bench data set; only the choice between paths depends on it,
 * never a result. */
static int prefer_sparse(uint64_t drv, const plan_t *p) {
    unsigned passes = p->nall + (p->has_any ? 1 : 0) + (p->nnone ? 1 : 0);
    unsigned cols = p->nall + p->nany + p->nnone;
    uint64_t words = (uint64_t)CONT_EXT_WORDS * (uint64_t)__builtin_popcountll(p->mask);
    return drv * 2 * (passes ? passes : 1) < words * cols / 2 + 256;
}

/* The expected members of a driver with 'card' members over extents 'ext' that
 * fall in the mask (members spread evenly over their extents). */
static uint64_t drv_in_mask(uint64_t card, uint64_t ext, uint64_t mask) {
    int all = __builtin_popcountll(ext);
    int kept = __builtin_popcountll(ext & mask);
    return all ? card * (uint64_t)kept / (uint64_t)all : 0;
}

/* Evaluates block 'bi' by its plan 'pp' (from plan_block). */
static void eval_block(const matcher_t *m, const plan_t *pp, matcher_scratch_t *s, sink_t *k,
                       uint32_t bi) {
    const matcher_blk_t *b = m->blk[bi];
    plan_t p = *pp;
    if (p.nall == 0 && !p.has_any) {
        /* Every positive condition holds throughout the kept extents: their live
         * ordinals, minus the 'none' tags still in play. */
        if (k->mode == SINK_COUNT && p.nnone == 0) {
            k->count += mpopcount(s->kx, b->live, p.mask);
            return;
        }
        mload(s->acc, b->live, p.mask);
        dense_finish(m, s, k, &p, bi, -1, 1);
        return;
    }
    if (k->mode == SINK_COUNT && p.nall == 1 && !p.has_any && p.nnone == 0) {
        /* One column left: its members in the kept extents. */
        k->count += cont_count(s->kx, p.all[0], p.mask);
        return;
    }
    int any_driven = p.nall == 0 || (p.has_any && p.any_card * 2 < p.all[0]->card);
    uint64_t drv = any_driven ? drv_in_mask(p.any_card, p.any_ext, p.mask)
                              : drv_in_mask(p.all[0]->card, p.all[0]->ext_any, p.mask);
    if (!prefer_sparse(drv, &p)) {
        if (any_driven) {
            any_union(s->kx, s->acc, &p);
            mclear_outside(s->acc, p.mask);
        } else {
            acc_load(s->acc, p.all[0], p.mask);
        }
        dense_finish(m, s, k, &p, bi, any_driven ? -1 : 0, any_driven);
        return;
    }
    size_t n;
    if (!any_driven) {
        n = cands_from(p.all[0], s->cand, p.mask);
    } else if (p.nany == 1) {
        n = cands_from(p.any[0], s->cand, p.mask);
    } else {
        any_union(s->kx, s->uni, &p);
        n = cands_from_bitmap(s->uni, s->cand, p.mask);
    }
    filter_t f[RULE_MAX_PART + 2];
    uint8_t order[RULE_MAX_PART + 2];
    unsigned nf = filters_build(f, order, &p, any_driven ? -1 : 0, any_driven, s);
    n = filters_apply(f, order, nf, s->cand, n, s);
    sink_cands(k, b, bi, s->cand, n);
}

/* Asks for block 'bi''s plan inputs ahead of time: the line with its extent mask
 * and the rule's container headers. A block far from the cache otherwise costs a
 * chain of dependent misses (block, header, members) that nothing overlaps. */
static void prefetch_heads(const matcher_t *m, const rule_t *r, uint32_t bi, uint32_t nb) {
    if (bi >= nb || m->blk[bi] == NULL) {
        return;
    }
    const matcher_blk_t *b = m->blk[bi];
    __builtin_prefetch(b);
    for (unsigned i = 0; i < r->nall; i++) {
        __builtin_prefetch(&b->cols[r->all[i]]);
    }
    for (unsigned i = 0; i < r->nany; i++) {
        __builtin_prefetch(&b->cols[r->any[i]]);
    }
    for (unsigned i = 0; i < r->nnone; i++) {
        __builtin_prefetch(&b->cols[r->none[i]]);
    }
}

/* Above this many kept extents a bitmap is read in long runs, which the hardware
 * prefetcher follows by itself. */
#define PREFETCH_MAX_EXT 16

static void prefetch_cont(const cont_t *c, uint64_t mask) {
    const char *p = c->p;
    if (c->kind == CONT_ARRAY) {
        for (size_t at = 0; at < c->card * sizeof(uint16_t); at += 64) {
            __builtin_prefetch(p + at);
        }
    } else if (c->kind == CONT_BITMAP && __builtin_popcountll(mask) <= PREFETCH_MAX_EXT) {
        while (mask) {
            unsigned e = (unsigned)__builtin_ctzll(mask);
            mask &= mask - 1;
            __builtin_prefetch(p + e * CONT_EXT_WORDS * 8);
            __builtin_prefetch(p + e * CONT_EXT_WORDS * 8 + 64);
        }
    }
}

/* Asks for the members a planned block will read: whole arrays, and the kept
 * extents of bitmaps. */
static void prefetch_plan(const plan_t *p) {
    for (unsigned i = 0; i < p->nall; i++) {
        prefetch_cont(p->all[i], p->mask);
    }
    for (unsigned i = 0; i < p->nany; i++) {
        prefetch_cont(p->any[i], p->mask);
    }
    for (unsigned i = 0; i < p->nnone; i++) {
        prefetch_cont(p->none[i], p->mask);
    }
}

/* Plans block 'bi' into 'p' and asks for what it will read; returns 0 when the
 * block cannot hold a match. */
static int plan_ahead(const matcher_t *m, const rule_t *r, uint32_t bi, uint32_t nb, plan_t *p) {
    if (bi >= nb || m->blk[bi] == NULL || m->blk[bi]->nlive == 0 || !plan_block(p, r, m->blk[bi])) {
        return 0;
    }
    prefetch_plan(p);
    return 1;
}

/* The blocks in a software pipeline: while block i is evaluated, block i+1 is
 * planned and its members requested, and block i+2's headers are requested. */
static void eval_rule(const matcher_t *m, const rule_t *r, matcher_scratch_t *s, sink_t *k) {
    uint32_t nb = (m->pspan + CONT_SPAN - 1) >> CONT_BITS;
    plan_t plans[2];
    prefetch_heads(m, r, 0, nb);
    prefetch_heads(m, r, 1, nb);
    int ok = plan_ahead(m, r, 0, nb, &plans[0]);
    for (uint32_t bi = 0; bi < nb; bi++) {
        prefetch_heads(m, r, bi + 2, nb);
        int ok_next = plan_ahead(m, r, bi + 1, nb, &plans[(bi + 1) & 1]);
        if (ok) {
            eval_block(m, &plans[bi & 1], s, k, bi);
        }
        ok = ok_next;
    }
}

uint64_t matcher_count(const matcher_t *m, const rule_t *r, matcher_scratch_t *s) {
    sink_t k = {.mode = SINK_COUNT, .kx = s->kx, .m = m};
    eval_rule(m, r, s, &k);
    return k.count;
}

uint64_t matcher_count_groups(const matcher_t *m, const rule_t *r, matcher_scratch_t *s,
                              uint64_t *groups) {
    memset(groups, 0, (m->ngroups + 1) * sizeof *groups);
    sink_t k = {.mode = SINK_GROUPS, .kx = s->kx, .m = m, .groups = groups};
    eval_rule(m, r, s, &k);
    return k.count;
}

/* Grows a zeroed scratch array to at least 'n' elements of 'size' bytes. */
static void *scratch_grow(void *p, uint32_t *cap, uint32_t n, size_t size) {
    if (*cap >= n) {
        return p;
    }
    free(p);
    *cap = n + n / 4;
    return xcalloc(*cap, size);
}

/* matcher_list by walking the ordinals from 'from' and testing each one's
 * position in s->pbm: cheap when the matches are many and few are wanted. */
static size_t list_walk(const matcher_t *m, const matcher_scratch_t *s, uint32_t from,
                        uint32_t *out, size_t max, uint32_t *next) {
    const uint64_t *pbm = s->pbm;
    size_t n = 0;
    uint32_t end = m->span < m->o2p_cap ? m->span : m->o2p_cap;
    for (uint32_t ord = from; ord < end; ord++) {
        uint32_t pos = m->o2p[ord];
        if (pos == MATCHER_NONE || !((pbm[pos >> 6] >> (pos & 63)) & 1)) {
            continue;
        }
        if (n == max) {
            *next = ord;
            break;
        }
        out[n++] = ord;
    }
    return n;
}

/* Reads the marks in s->obm in ordinal order from 'from', and clears them all
 * (marks below 'from' are set too, see marks_add); past the max-th, the next one
 * found is where to resume. */
static size_t list_read(const matcher_t *m, matcher_scratch_t *s, uint32_t from, uint32_t *out,
                        size_t max, uint32_t *next) {
    uint32_t words = (m->span + 63) / 64;
    uint64_t *obm = s->obm;
    size_t n = 0;
    uint32_t w = from >> 6;
    obm[w] &= ~UINT64_C(0) << (from & 63);
    /* While room for 64 entries a word plus the kernel's 64 is left, whole words
     * go out at once. */
    while (w < words && max - n >= 128) {
        uint32_t k = (uint32_t)((max - n) / 64 - 1);
        k = k < words - w ? k : words - w;
        n += s->kx->emit(out + n, obm + w, k, w * 64);
        w += k;
    }
    for (; w < words; w++) {
        for (uint64_t x = obm[w]; x; x &= x - 1) {
            uint32_t ord = w * 64 + (uint32_t)__builtin_ctzll(x);
            if (n == max) {
                *next = ord;
                goto out;
            }
            out[n++] = ord;
        }
    }
out:
    memset(obm, 0, (size_t)words * sizeof *obm);
    return n;
}

/* matcher_list by marking the ordinal of every match in s->pbm in s->obm, then
 * reading the marks back in order: cheap when all or most of the matches are
 * wanted. */
static size_t list_sort(const matcher_t *m, matcher_scratch_t *s, uint32_t from, uint32_t *out,
                        size_t max, uint32_t *next) {
    uint32_t nb = (m->pspan + CONT_SPAN - 1) >> CONT_BITS;
    for (uint32_t bi = 0; bi < nb; bi++) {
        if (s->touched[bi]) {
            s->kx->mark(s->obm, m->p2o + ((size_t)bi << CONT_BITS),
                        s->pbm + (size_t)bi * CONT_WORDS, CONT_WORDS);
        }
    }
    return list_read(m, s, from, out, max, next);
}

size_t matcher_list(const matcher_t *m, const rule_t *r, matcher_scratch_t *s, uint32_t from,
                    uint32_t *out, size_t max, uint32_t *next) {
    *next = MATCHER_NONE;
    if (from >= m->span || max == 0) {
        return 0;
    }
    s->obm = scratch_grow(s->obm, &s->obm_words, (m->span + 63) / 64, sizeof *s->obm);
    if (max >= (m->span - from) / 64) {
        /* Most of the matches wanted: mark their ordinals as they are found. */
        sink_t k = {.mode = SINK_ORDS, .kx = s->kx, .m = m, .obm = s->obm};
        eval_rule(m, r, s, &k);
        return list_read(m, s, from, out, max, next);
    }
    uint32_t nb = (m->pspan + CONT_SPAN - 1) >> CONT_BITS;
    s->pbm = scratch_grow(s->pbm, &s->pbm_words, nb * CONT_WORDS, sizeof *s->pbm);
    s->touched = scratch_grow(s->touched, &s->touched_cap, nb, 1);
    sink_t k = {.mode = SINK_POS, .kx = s->kx, .m = m, .pbm = s->pbm, .touched = s->touched};
    eval_rule(m, r, s, &k);
    /* Walking tests about max * (span - from) / matches ordinals (those before
     * 'from' are in the count, so that overestimates); marking costs about 1.5
     * walking steps a match. */
    size_t n;
    if (k.count &&
        (double)max * (double)(m->span - from) < 1.5 * (double)k.count * (double)k.count) {
        n = list_walk(m, s, from, out, max, next);
    } else {
        n = list_sort(m, s, from, out, max, next);
    }
    for (uint32_t bi = 0; bi < nb; bi++) {
        if (s->touched[bi]) {
            memset(s->pbm + (size_t)bi * CONT_WORDS, 0, CONT_WORDS * sizeof *s->pbm);
            s->touched[bi] = 0;
        }
    }
    return n;
}

/* Module-internal: the layout shared by matcher.c (storage and updates) and
 * eval.c (rule evaluation). Not part of the public API. */
#ifndef HUIQI_MATCHER_INTERNAL_H
#define HUIQI_MATCHER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "matcher/cont.h"

typedef struct matcher_blk {
    uint64_t live[CONT_WORDS]; /* ordinals stored in this block */
    uint64_t *rows;            /* CONT_SPAN rows of row_words words */
    char *keys;                /* CONT_SPAN keys of keylen bytes */
    uint8_t *groups;           /* CONT_SPAN group numbers (0 = none) */
    cont_t *cols;              /* one container per tag */
    uint32_t nlive;
    uint32_t multi; /* live ordinals holding more than one group tag */
} matcher_blk_t;

struct matcher {
    unsigned ntags;
    unsigned keylen;
    size_t words; /* row words */
    matcher_blk_t **blk;
    uint32_t nblk; /* entries in blk[] (some may be NULL) */
    uint32_t span;
    uint32_t live;
    uint32_t *card; /* per tag */
    uint16_t *group_tags;
    unsigned ngroups;
    /* Key map: open addressing with linear probing over ordinals; MATCHER_NONE is an
     * empty slot. Deletion shifts entries back, so there are no tombstones. */
    uint32_t *slots;
    uint32_t mask;
    uint32_t nkeys;
};

/* The whole-block word loops (1,024 words each), compiled for several instruction
 * sets; eval.c picks one per scratch from what the CPU has. */
typedef struct eval_kern {
    uint64_t (*popcount)(const uint64_t *a, unsigned from_w); /* bits of a[from_w..] */
    uint64_t (*and_popcount)(const uint64_t *a, const uint64_t *b);
    void (*and_)(uint64_t *a, const uint64_t *b);
    void (*andnot)(uint64_t *a, const uint64_t *b);
    void (*or_)(uint64_t *a, const uint64_t *b);
} eval_kern_t;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define EVAL_X86 1
#else
#define EVAL_X86 0
#endif

enum { MATCHER_ISA_BASE = 0, MATCHER_ISA_AVX2 = 1, MATCHER_ISA_AVX512 = 2 };

/* The best kernels the CPU runs, at most 'isa' (-1: no limit). */
const eval_kern_t *matcher__kernels(int isa);

typedef struct matcher_scratch matcher_scratch_t;
/* A scratch whose kernels are at most 'isa' (tests compare the variants). */
matcher_scratch_t *matcher__scratch_new_isa(int isa);

#endif

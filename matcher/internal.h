/* Module-internal: the layout shared by matcher.c (storage and updates), layout.c
 * (the sorted rebuild) and eval.c (rule evaluation). Not part of the public API.
 *
 * Positions and ordinals: the store names an enterprise by its ordinal; the index
 * keeps it at a position. Blocks, rows, keys, groups and columns are by position;
 * o2p and p2o translate. A rebuild (layout.c) puts positions in the order of the
 * cluster key (region, entity type, industry), so that enterprises alike share
 * blocks and extents and a rule over those tags skips most of the index. */
#ifndef HUIQI_MATCHER_INTERNAL_H
#define HUIQI_MATCHER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "matcher/cont.h"

typedef struct matcher_blk {
    uint32_t nlive;
    uint32_t multi;    /* live positions holding more than one group tag */
    uint64_t ext_live; /* extents holding a live position */
    /* Per extent, row_words words each: the OR and the AND of its live rows (the
     * AND is every tag bit while the extent is empty). The columns' ext_any and
     * ext_full bits are these, transposed. */
    uint64_t *ext_or;
    uint64_t *ext_and;
    uint64_t *rows;            /* CONT_SPAN rows of row_words words */
    char *keys;                /* CONT_SPAN keys of keylen bytes */
    uint8_t *groups;           /* CONT_SPAN group numbers (0 = none) */
    uint64_t live[CONT_WORDS]; /* positions in use in this block */
    /* One container per tag, in the block's own allocation: a plan finds a tag's
     * container from the block's address alone, one memory access fewer on the
     * way to its members (at 11 million enterprises the index is far larger than
     * the cache, and these accesses are what a count waits for). */
    cont_t cols[];
} matcher_blk_t;

/* The cluster key is MATCHER_CLUSTER_LEVELS bytes, most significant first: per
 * level, the rank (1-based) of the lowest tag of that level a row holds, 0 for
 * none. */
#define MATCHER_CLUSTER_LEVELS 4

struct matcher {
    unsigned ntags;
    unsigned keylen;
    size_t words; /* row words */
    matcher_blk_t **blk;
    uint32_t nblk;  /* entries in blk[] (some may be NULL) */
    uint32_t span;  /* one past the highest ordinal ever stored */
    uint32_t pspan; /* one past the highest position ever used */
    uint32_t live;
    uint32_t *card; /* per tag */
    uint16_t *group_tags;
    unsigned ngroups;
    /* Ordinal -> position and back; MATCHER_NONE where nothing is stored. */
    uint32_t *o2p, *p2o;
    uint32_t o2p_cap, p2o_cap;
    /* Positions freed by deletes, reused last-in first-out before pspan grows. */
    uint32_t *pfree;
    uint32_t npfree, pfree_cap;
    /* Cluster levels: per level, a mask over row words of the tags in it. */
    uint64_t *cl_mask; /* MATCHER_CLUSTER_LEVELS * words */
    unsigned ncluster; /* levels in use */
    uint64_t layout;   /* count of rebuilds (matcher_relayout) */
    uint32_t sorted;   /* positions below this were placed by the last rebuild */
    int bulk;          /* matcher_load_begin: rows and keys only until the rebuild */
    /* Key map: open addressing with linear probing over positions; MATCHER_NONE is
     * an empty slot. Deletion shifts entries back, so there are no tombstones. */
    uint32_t *slots;
    uint32_t mask;
    uint32_t nkeys;
};

/* The word loops over 'n' words (a multiple of 16: whole extents), compiled for
 * several instruction sets; eval.c picks one per scratch from what the CPU has. */
typedef struct eval_kern {
    uint64_t (*popcount)(const uint64_t *a, unsigned n);
    uint64_t (*and_popcount)(const uint64_t *a, const uint64_t *b, unsigned n);
    void (*and_)(uint64_t *a, const uint64_t *b, unsigned n);
    void (*andnot)(uint64_t *a, const uint64_t *b, unsigned n);
    void (*or_)(uint64_t *a, const uint64_t *b, unsigned n);
    /* Writes base + i for every set bit i of the 'n' words at 'a' (any n), in order,
     * to 'out' and returns how many; may write up to 64 entries past the last,
     * so 'out' needs room for the count plus 64. */
    size_t (*emit)(uint32_t *out, const uint64_t *a, unsigned n, uint32_t base);
    /* Sets bit p2o[i] in 'obm' for every set bit i of the 'n' words at 'a'. */
    void (*mark)(uint64_t *obm, const uint32_t *p2o, const uint64_t *a, unsigned n);
} eval_kern_t;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define EVAL_X86 1
#else
#define EVAL_X86 0
#endif

enum { MATCHER_ISA_BASE = 0, MATCHER_ISA_AVX2 = 1, MATCHER_ISA_AVX512 = 2, MATCHER_ISA_VBMI2 = 3 };

/* Checks every extent summary of 'm' against its rows; returns 0 or the number of
 * disagreements (for tests). */
unsigned matcher__check_extents(const struct matcher *m);

/* Storage primitives shared by matcher.c and layout.c. */
matcher_blk_t *matcher__blk_new(const struct matcher *m);
void matcher__blk_free(matcher_blk_t *b, unsigned ntags);
/* Adds a position that was not in use to block 'b' at offset 'off', with row, key
 * and group; with 'cols', also its columns, counts and extent summaries, and
 * 'card' (per tag) when not NULL. Not the key map. */
void matcher__blk_add(const struct matcher *m, matcher_blk_t *b, uint16_t off, const uint64_t *row,
                      const char *key, int cols, uint32_t *card);
/* The cluster key of 'row' (see MATCHER_CLUSTER_LEVELS). */
uint32_t matcher__cluster_key(const struct matcher *m, const uint64_t *row);
/* Rewrites every position in the key map through 'newpos' (old -> new). */
void matcher__keymap_remap(struct matcher *m, const uint32_t *newpos);

/* The best kernels the CPU runs, at most 'isa' (-1: no limit). */
const eval_kern_t *matcher__kernels(int isa);

typedef struct matcher_scratch matcher_scratch_t;
/* A scratch whose kernels are at most 'isa' (tests compare the variants). */
matcher_scratch_t *matcher__scratch_new_isa(int isa);

#endif

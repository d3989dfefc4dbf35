/* Module-internal: one tag's members inside one block of 65,536 ordinals, held as a
 * sorted array of 16-bit offsets while sparse and as a 1,024-word bitmap once dense
 * (the Roaring layout, written for our access pattern), with a summary over the
 * block's 64 extents of 1,024 ordinals that lets evaluation skip extents without
 * reading the members. Not part of the public API. */
#ifndef HUIQI_MATCHER_CONT_H
#define HUIQI_MATCHER_CONT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONT_BITS      16
#define CONT_SPAN      (1u << CONT_BITS) /* ordinals per block */
#define CONT_WORDS     (CONT_SPAN / 64)  /* 1,024 words in a bitmap container */
#define CONT_ARRAY_MAX 512u              /* an array above this becomes a bitmap */
#define CONT_ARRAY_MIN 384u              /* a bitmap below this becomes an array */
/* Extents: the block's ordinals in 64 runs of 1,024 (16 bitmap words). The store
 * hands out ordinals an extent at a time to enterprises alike in region, entity
 * type and industry, so a tag is often all or nothing inside an extent. */
#define CONT_EXT_BITS  10
#define CONT_EXT       (1u << CONT_EXT_BITS)  /* ordinals per extent */
#define CONT_EXT_WORDS (CONT_EXT / 64)        /* 16 bitmap words per extent */
#define CONT_NEXT      (CONT_SPAN / CONT_EXT) /* 64 extents per block */

enum { CONT_EMPTY = 0, CONT_ARRAY = 1, CONT_BITMAP = 2 };

typedef struct cont {
    void *p;       /* uint16_t[cap] when ARRAY, uint64_t[CONT_WORDS] when BITMAP */
    uint32_t card; /* members */
    uint16_t cap;  /* array capacity in entries; 0 otherwise */
    uint8_t kind;
    /* Bit e of ext_any: some live ordinal of extent e holds the tag. Bit e of
     * ext_full: every live ordinal of extent e holds it (set for an empty extent).
     * Both exact at all times: matcher.c keeps them with the rows. They sit here
     * so that the one cache line a plan reads for the container brings them. */
    uint64_t ext_any;
    uint64_t ext_full;
} cont_t;

/* Adds offset 'x'; returns true when it was not present. */
bool matcher__cont_add(cont_t *c, uint16_t x);
/* Removes offset 'x'; returns true when it was present. */
bool matcher__cont_remove(cont_t *c, uint16_t x);
bool matcher__cont_test(const cont_t *c, uint16_t x);
void matcher__cont_free(cont_t *c);
/* Bytes of heap the container holds. */
size_t matcher__cont_bytes(const cont_t *c);

/* The 64 bits of word 'w' of an array container. '*cur' is a forward-only cursor
 * into the array (start at 0) so that a sweep over increasing words costs
 * O(card) in all. */
static inline uint64_t matcher__cont_array_word(const cont_t *c, unsigned w, uint32_t *cur) {
    const uint16_t *a = c->p;
    uint32_t i = *cur;
    uint32_t n = c->card;
    /* Gallop forward to the first entry whose word is >= w. */
    if (i < n && (unsigned)(a[i] >> 6) < w) {
        uint32_t step = 1;
        uint32_t lo = i;
        uint32_t hi = i + step;
        while (hi < n && (unsigned)(a[hi] >> 6) < w) {
            lo = hi;
            step <<= 1;
            hi = lo + step;
        }
        if (hi > n) {
            hi = n;
        }
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if ((unsigned)(a[mid] >> 6) < w) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        i = lo;
    }
    uint64_t m = 0;
    while (i < n && (unsigned)(a[i] >> 6) == w) {
        m |= UINT64_C(1) << (a[i] & 63);
        i++;
    }
    *cur = i;
    return m;
}

#endif

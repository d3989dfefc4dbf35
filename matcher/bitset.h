/* Fixed-width bitsets over 64-bit words: the profile row of one enterprise, or a
 * rule's masks. Bit i lives in word i / 64 at position i % 64. Callers pass the
 * word count; nothing here allocates. Pure C. */
#ifndef HUIQI_MATCHER_BITSET_H
#define HUIQI_MATCHER_BITSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BITSET_WORD_BITS 64

/* Number of 64-bit words needed to hold 'nbits' bits. */
static inline size_t bitset_words(size_t nbits) {
    return (nbits + BITSET_WORD_BITS - 1) / BITSET_WORD_BITS;
}

static inline void bitset_set(uint64_t *w, unsigned bit) {
    w[bit / 64] |= UINT64_C(1) << (bit % 64);
}

static inline void bitset_clear(uint64_t *w, unsigned bit) {
    w[bit / 64] &= ~(UINT64_C(1) << (bit % 64));
}

static inline bool bitset_test(const uint64_t *w, unsigned bit) {
    return (w[bit / 64] >> (bit % 64)) & 1;
}

/* Number of set bits in the first 'nwords' words. */
static inline size_t bitset_popcount(const uint64_t *w, size_t nwords) {
    size_t n = 0;
    for (size_t i = 0; i < nwords; i++) {
        n += (size_t)__builtin_popcountll(w[i]);
    }
    return n;
}

/* The lowest set bit at or above 'from', or -1 when there is none below
 * nwords * 64. */
static inline long bitset_next(const uint64_t *w, size_t nwords, size_t from) {
    size_t i = from / 64;
    if (i >= nwords) {
        return -1;
    }
    uint64_t cur = w[i] & (~UINT64_C(0) << (from % 64));
    for (;;) {
        if (cur) {
            return (long)(i * 64 + (size_t)__builtin_ctzll(cur));
        }
        if (++i >= nwords) {
            return -1;
        }
        cur = w[i];
    }
}

#endif

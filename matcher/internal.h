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

#endif

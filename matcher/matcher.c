/* Storage and updates of the enterprise index: blocks, rows, columns, keys and
 * groups. Evaluation lives in eval.c. */
#include "matcher/matcher.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "matcher/bitset.h"
#include "matcher/internal.h"

matcher_t *matcher_new(unsigned ntags, unsigned keylen) {
    if (ntags == 0 || ntags > MATCHER_MAX_TAGS || keylen == 0 || keylen > MATCHER_MAX_KEY) {
        return NULL;
    }
    matcher_t *m = xcalloc(1, sizeof *m);
    m->ntags = ntags;
    m->keylen = keylen;
    m->words = bitset_words(ntags);
    m->card = xcalloc(ntags, sizeof *m->card);
    m->mask = 1023;
    m->slots = xmalloc((m->mask + 1) * sizeof *m->slots);
    memset(m->slots, 0xff, (m->mask + 1) * sizeof *m->slots);
    return m;
}

static void matcher_blk_free(matcher_blk_t *b, unsigned ntags) {
    if (b == NULL) {
        return;
    }
    for (unsigned t = 0; t < ntags; t++) {
        matcher__cont_free(&b->cols[t]);
    }
    free(b->cols);
    free(b->rows);
    free(b->keys);
    free(b->groups);
    free(b);
}

void matcher_free(matcher_t *m) {
    if (m == NULL) {
        return;
    }
    for (uint32_t i = 0; i < m->nblk; i++) {
        matcher_blk_free(m->blk[i], m->ntags);
    }
    free(m->blk);
    free(m->card);
    free(m->group_tags);
    free(m->slots);
    free(m);
}

unsigned matcher_ntags(const matcher_t *m) {
    return m->ntags;
}

size_t matcher_row_words(const matcher_t *m) {
    return m->words;
}

uint32_t matcher_live(const matcher_t *m) {
    return m->live;
}

uint32_t matcher_span(const matcher_t *m) {
    return m->span;
}

uint32_t matcher_tag_card(const matcher_t *m, unsigned tag) {
    return tag < m->ntags ? m->card[tag] : 0;
}

unsigned matcher_ngroups(const matcher_t *m) {
    return m->ngroups;
}

size_t matcher_bytes(const matcher_t *m) {
    size_t n = sizeof *m + (size_t)(m->mask + 1) * sizeof *m->slots;
    for (uint32_t i = 0; i < m->nblk; i++) {
        const matcher_blk_t *b = m->blk[i];
        if (b == NULL) {
            continue;
        }
        n += sizeof *b + (size_t)CONT_SPAN * (m->words * 8 + m->keylen + 1) +
             m->ntags * sizeof(cont_t);
        for (unsigned t = 0; t < m->ntags; t++) {
            n += matcher__cont_bytes(&b->cols[t]);
        }
    }
    return n;
}

int matcher_set_groups(matcher_t *m, const uint16_t *tags, unsigned n) {
    if (m->live != 0) {
        return -EBUSY;
    }
    if (n > MATCHER_MAX_GROUPS) {
        return -ERANGE;
    }
    for (unsigned i = 0; i < n; i++) {
        if (tags[i] >= m->ntags) {
            return -ERANGE;
        }
    }
    free(m->group_tags);
    m->group_tags = n ? xmemdup(tags, n * sizeof *tags) : NULL;
    m->ngroups = n;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Key map
 * ------------------------------------------------------------------------- */

static uint32_t matcher_hash(const char *key, unsigned len) {
    /* FNV-1a, folded: keys are short and already well spread (credit codes). */
    uint64_t h = UINT64_C(1469598103934665603);
    for (unsigned i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= UINT64_C(1099511628211);
    }
    return (uint32_t)(h ^ (h >> 32));
}

static const char *matcher_key_at(const matcher_t *m, uint32_t ord) {
    const matcher_blk_t *b = m->blk[ord >> CONT_BITS];
    return b->keys + (size_t)(ord & (CONT_SPAN - 1)) * m->keylen;
}

static void matcher_keymap_grow(matcher_t *m) {
    uint32_t oldn = m->mask + 1;
    uint32_t *old = m->slots;
    m->mask = oldn * 2 - 1;
    m->slots = xmalloc((size_t)(m->mask + 1) * sizeof *m->slots);
    memset(m->slots, 0xff, (size_t)(m->mask + 1) * sizeof *m->slots);
    for (uint32_t i = 0; i < oldn; i++) {
        if (old[i] == MATCHER_NONE) {
            continue;
        }
        uint32_t h = matcher_hash(matcher_key_at(m, old[i]), m->keylen) & m->mask;
        while (m->slots[h] != MATCHER_NONE) {
            h = (h + 1) & m->mask;
        }
        m->slots[h] = old[i];
    }
    free(old);
}

/* The slot holding 'key', or the empty slot where it would go. */
static uint32_t matcher_keymap_slot(const matcher_t *m, const char *key) {
    uint32_t h = matcher_hash(key, m->keylen) & m->mask;
    while (m->slots[h] != MATCHER_NONE &&
           memcmp(matcher_key_at(m, m->slots[h]), key, m->keylen) != 0) {
        h = (h + 1) & m->mask;
    }
    return h;
}

static void matcher_keymap_remove(matcher_t *m, uint32_t slot) {
    /* Backward-shift deletion keeps every probe chain unbroken without tombstones. */
    uint32_t i = slot;
    uint32_t j = slot;
    for (;;) {
        j = (j + 1) & m->mask;
        if (m->slots[j] == MATCHER_NONE) {
            break;
        }
        uint32_t home = matcher_hash(matcher_key_at(m, m->slots[j]), m->keylen) & m->mask;
        /* Move j back into i unless its home lies cyclically in (i, j]. */
        int keep = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
        if (!keep) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i] = MATCHER_NONE;
    m->nkeys--;
}

uint32_t matcher_find(const matcher_t *m, const char *key) {
    return m->slots[matcher_keymap_slot(m, key)];
}

/* ---------------------------------------------------------------------------
 * Rows and columns
 * ------------------------------------------------------------------------- */

static matcher_blk_t *matcher_blk_get(matcher_t *m, uint32_t ord, int create) {
    uint32_t bi = ord >> CONT_BITS;
    if (bi >= m->nblk) {
        if (!create) {
            return NULL;
        }
        uint32_t n = m->nblk ? m->nblk : 4;
        while (n <= bi) {
            n *= 2;
        }
        m->blk = xreallocarray(m->blk, n, sizeof *m->blk);
        memset(m->blk + m->nblk, 0, (n - m->nblk) * sizeof *m->blk);
        m->nblk = n;
    }
    if (m->blk[bi] == NULL && create) {
        matcher_blk_t *b = xcalloc(1, sizeof *b);
        /* calloc of these large arrays maps zero pages lazily, so a block that is
         * only partly used costs memory only for the part that is touched. */
        b->rows = xcalloc((size_t)CONT_SPAN * m->words, sizeof *b->rows);
        b->keys = xcalloc(CONT_SPAN, m->keylen);
        b->groups = xcalloc(CONT_SPAN, 1);
        b->cols = xcalloc(m->ntags, sizeof *b->cols);
        m->blk[bi] = b;
    }
    return m->blk[bi];
}

static int matcher_blk_live(const matcher_blk_t *b, uint32_t off) {
    return (b->live[off >> 6] >> (off & 63)) & 1;
}

static unsigned matcher_row_group(const matcher_t *m, const uint64_t *row, int *multi) {
    unsigned g = 0;
    int n = 0;
    for (unsigned i = 0; i < m->ngroups; i++) {
        if (bitset_test(row, m->group_tags[i])) {
            if (g == 0) {
                g = i + 1;
            }
            n++;
        }
    }
    *multi = n > 1;
    return g;
}

/* Applies the column changes between 'old' and 'new' rows of one ordinal. */
static void matcher_apply_cols(matcher_t *m, matcher_blk_t *b, uint16_t off, const uint64_t *old,
                               const uint64_t *new) {
    for (size_t w = 0; w < m->words; w++) {
        uint64_t add = new[w] & ~old[w];
        uint64_t del = old[w] & ~new[w];
        while (add) {
            unsigned t = (unsigned)(w * 64 + (size_t)__builtin_ctzll(add));
            add &= add - 1;
            if (matcher__cont_add(&b->cols[t], off)) {
                m->card[t]++;
            }
        }
        while (del) {
            unsigned t = (unsigned)(w * 64 + (size_t)__builtin_ctzll(del));
            del &= del - 1;
            if (matcher__cont_remove(&b->cols[t], off)) {
                m->card[t]--;
            }
        }
    }
}

static int matcher_row_valid(const matcher_t *m, const uint64_t *row) {
    unsigned rem = m->ntags % 64;
    if (rem == 0) {
        return 1;
    }
    return (row[m->words - 1] >> rem) == 0;
}

int matcher_put(matcher_t *m, uint32_t ord, const char *key, const uint64_t *row) {
    if (ord >= MATCHER_MAX_ORD) {
        return -ERANGE;
    }
    if (!matcher_row_valid(m, row)) {
        return -EINVAL;
    }
    uint32_t at = matcher_find(m, key);
    if (at != MATCHER_NONE && at != ord) {
        return -EEXIST;
    }
    matcher_blk_t *b = matcher_blk_get(m, ord, 1);
    uint16_t off = (uint16_t)(ord & (CONT_SPAN - 1));
    uint64_t *cur = b->rows + (size_t)off * m->words;
    char *curkey = b->keys + (size_t)off * m->keylen;
    int was_live = matcher_blk_live(b, off);
    if (was_live && memcmp(curkey, key, m->keylen) != 0) {
        /* The ordinal changes hands: forget the old key first. */
        matcher_keymap_remove(m, matcher_keymap_slot(m, curkey));
    }
    if (was_live && b->groups[off] != 0) {
        int multi;
        matcher_row_group(m, cur, &multi);
        b->multi -= (uint32_t)multi;
    }
    matcher_apply_cols(m, b, off, cur, row);
    memcpy(cur, row, m->words * sizeof *row);
    int multi;
    b->groups[off] = (uint8_t)matcher_row_group(m, row, &multi);
    b->multi += (uint32_t)multi;
    if (!was_live) {
        b->live[off >> 6] |= UINT64_C(1) << (off & 63);
        b->nlive++;
        m->live++;
    }
    if (!was_live || at == MATCHER_NONE) {
        memcpy(curkey, key, m->keylen);
        /* Grow at 70% full: a lookup then probes about 2 slots on average, and
         * the table is half the size it would be at 50% (at 1.11M keys: 8 MiB,
         * not 16). */
        if ((uint64_t)(m->nkeys + 1) * 10 > (uint64_t)(m->mask + 1) * 7) {
            matcher_keymap_grow(m);
        }
        m->slots[matcher_keymap_slot(m, key)] = ord;
        m->nkeys++;
    }
    if (ord >= m->span) {
        m->span = ord + 1;
    }
    return 0;
}

int matcher_del(matcher_t *m, uint32_t ord) {
    matcher_blk_t *b = matcher_blk_get(m, ord, 0);
    uint16_t off = (uint16_t)(ord & (CONT_SPAN - 1));
    if (b == NULL || !matcher_blk_live(b, off)) {
        return -ENOENT;
    }
    uint64_t *cur = b->rows + (size_t)off * m->words;
    char *curkey = b->keys + (size_t)off * m->keylen;
    matcher_keymap_remove(m, matcher_keymap_slot(m, curkey));
    int multi;
    matcher_row_group(m, cur, &multi);
    b->multi -= (uint32_t)multi;
    uint64_t zero[MATCHER_MAX_TAGS / 64] = {0};
    matcher_apply_cols(m, b, off, cur, zero);
    memset(cur, 0, m->words * sizeof *cur);
    memset(curkey, 0, m->keylen);
    b->groups[off] = 0;
    b->live[off >> 6] &= ~(UINT64_C(1) << (off & 63));
    b->nlive--;
    m->live--;
    return 0;
}

const uint64_t *matcher_row(const matcher_t *m, uint32_t ord) {
    uint32_t bi = ord >> CONT_BITS;
    if (bi >= m->nblk || m->blk[bi] == NULL) {
        return NULL;
    }
    const matcher_blk_t *b = m->blk[bi];
    uint32_t off = ord & (CONT_SPAN - 1);
    return matcher_blk_live(b, off) ? b->rows + (size_t)off * m->words : NULL;
}

const char *matcher_key(const matcher_t *m, uint32_t ord) {
    return matcher_row(m, ord) ? matcher_key_at(m, ord) : NULL;
}

unsigned matcher_group(const matcher_t *m, uint32_t ord) {
    if (matcher_row(m, ord) == NULL) {
        return 0;
    }
    return m->blk[ord >> CONT_BITS]->groups[ord & (CONT_SPAN - 1)];
}

/* Storage and updates of the enterprise index: blocks, rows, columns, keys,
 * groups, extent summaries and the ordinal <-> position maps. Evaluation lives in
 * eval.c, the sorted rebuild in layout.c. */
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
    m->cl_mask = xcalloc(MATCHER_CLUSTER_LEVELS * m->words, sizeof *m->cl_mask);
    m->mask = 1023;
    m->slots = xmalloc((m->mask + 1) * sizeof *m->slots);
    memset(m->slots, 0xff, (m->mask + 1) * sizeof *m->slots);
    return m;
}

void matcher__blk_free(matcher_blk_t *b, unsigned ntags) {
    if (b == NULL) {
        return;
    }
    for (unsigned t = 0; t < ntags; t++) {
        matcher__cont_free(&b->cols[t]);
    }
    free(b->ext_or);
    free(b->ext_and);
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
        matcher__blk_free(m->blk[i], m->ntags);
    }
    free(m->blk);
    free(m->card);
    free(m->group_tags);
    free(m->cl_mask);
    free(m->o2p);
    free(m->p2o);
    free(m->pfree);
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

uint64_t matcher_layout_count(const matcher_t *m) {
    return m->layout;
}

uint32_t matcher_unsorted(const matcher_t *m) {
    uint32_t n = 0;
    for (uint32_t p = m->sorted; p < m->pspan; p++) {
        n += m->p2o[p] != MATCHER_NONE;
    }
    return n;
}

size_t matcher_bytes(const matcher_t *m) {
    size_t n = sizeof *m + (size_t)(m->mask + 1) * sizeof *m->slots +
               ((size_t)m->o2p_cap + m->p2o_cap + m->pfree_cap) * sizeof(uint32_t);
    for (uint32_t i = 0; i < m->nblk; i++) {
        const matcher_blk_t *b = m->blk[i];
        if (b == NULL) {
            continue;
        }
        n += sizeof *b + (size_t)CONT_SPAN * (m->words * 8 + m->keylen + 1) +
             m->ntags * sizeof(cont_t) + 2 * (size_t)CONT_NEXT * m->words * 8;
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

int matcher_set_cluster(matcher_t *m, const uint16_t *tags, const uint8_t *levels, unsigned n) {
    uint64_t *mask = xcalloc(MATCHER_CLUSTER_LEVELS * m->words, sizeof *mask);
    unsigned per[MATCHER_CLUSTER_LEVELS] = {0};
    unsigned nlev = 0;
    for (unsigned i = 0; i < n; i++) {
        if (tags[i] >= m->ntags || levels[i] >= MATCHER_CLUSTER_LEVELS || ++per[levels[i]] > 255) {
            free(mask);
            return -ERANGE;
        }
        bitset_set(mask + levels[i] * m->words, tags[i]);
        if (levels[i] + 1u > nlev) {
            nlev = levels[i] + 1u;
        }
    }
    free(m->cl_mask);
    m->cl_mask = mask;
    m->ncluster = nlev;
    return 0;
}

uint32_t matcher__cluster_key(const matcher_t *m, const uint64_t *row) {
    uint32_t key = 0;
    for (unsigned l = 0; l < MATCHER_CLUSTER_LEVELS; l++) {
        const uint64_t *mask = m->cl_mask + l * m->words;
        unsigned rank = 0;
        unsigned below = 0;
        for (size_t w = 0; l < m->ncluster && w < m->words; w++) {
            uint64_t hit = row[w] & mask[w];
            if (hit) {
                /* The rank counts the level's tags below the lowest one held. */
                uint64_t under = mask[w] & ((hit & -hit) - 1);
                rank = below + (unsigned)__builtin_popcountll(under) + 1;
                break;
            }
            below += (unsigned)__builtin_popcountll(mask[w]);
        }
        key = key << 8 | rank;
    }
    return key;
}

/* ---------------------------------------------------------------------------
 * Ordinals and positions
 * ------------------------------------------------------------------------- */

/* Grows a MATCHER_NONE-filled array so that index 'i' exists. By an eighth at a
 * time (these two maps are 8 bytes an enterprise, and a power of two would waste
 * up to half of it); large reallocations move pages, not bytes. */
static uint32_t *matcher_grow_map(uint32_t *a, uint32_t *cap, uint32_t i) {
    if (i < *cap) {
        return a;
    }
    uint32_t n = *cap + *cap / 8;
    if (n <= i) {
        n = i + 1;
    }
    n = (n + 4095) & ~4095u;
    a = xreallocarray(a, n, sizeof *a);
    memset(a + *cap, 0xff, (size_t)(n - *cap) * sizeof *a);
    *cap = n;
    return a;
}

static uint32_t matcher_pos_of(const matcher_t *m, uint32_t ord) {
    return ord < m->o2p_cap ? m->o2p[ord] : MATCHER_NONE;
}

/* A position for a new ordinal: one freed by a delete, else the next unused. */
static uint32_t matcher_pos_take(matcher_t *m, uint32_t ord) {
    uint32_t pos = m->npfree ? m->pfree[--m->npfree] : m->pspan++;
    m->o2p = matcher_grow_map(m->o2p, &m->o2p_cap, ord);
    m->p2o = matcher_grow_map(m->p2o, &m->p2o_cap, pos);
    m->o2p[ord] = pos;
    m->p2o[pos] = ord;
    return pos;
}

static void matcher_pos_give(matcher_t *m, uint32_t ord, uint32_t pos) {
    m->o2p[ord] = MATCHER_NONE;
    m->p2o[pos] = MATCHER_NONE;
    if (m->npfree == m->pfree_cap) {
        m->pfree_cap = m->pfree_cap ? m->pfree_cap * 2 : 256;
        m->pfree = xreallocarray(m->pfree, m->pfree_cap, sizeof *m->pfree);
    }
    m->pfree[m->npfree++] = pos;
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

static const char *matcher_key_at(const matcher_t *m, uint32_t pos) {
    const matcher_blk_t *b = m->blk[pos >> CONT_BITS];
    return b->keys + (size_t)(pos & (CONT_SPAN - 1)) * m->keylen;
}

/* Re-hashes the key map into 'size' slots (a power of two, larger than now). */
static void matcher_keymap_resize(matcher_t *m, uint32_t size) {
    uint32_t oldn = m->mask + 1;
    uint32_t *old = m->slots;
    m->mask = size - 1;
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

static void matcher_keymap_grow(matcher_t *m) {
    matcher_keymap_resize(m, (m->mask + 1) * 2);
}

/* Whether 'nkeys' keys overfill a key map of 'size' slots. 70%: a lookup then
 * probes about 2 slots on average, and the table is half the size it would be at
 * 50% (at 1.11M keys: 8 MiB, not 16). */
static int matcher_keymap_over(uint64_t nkeys, uint64_t size) {
    return nkeys * 10 > size * 7;
}

void matcher_reserve(matcher_t *m, uint32_t nkeys) {
    uint64_t size = (uint64_t)m->mask + 1;
    /* The same bound as a put's growth, so the reserved table is the one growth
     * would have reached, without re-hashing every key on the way. */
    while (matcher_keymap_over(nkeys, size) && size < (UINT64_C(1) << 31)) {
        size *= 2;
    }
    if (size > (uint64_t)m->mask + 1) {
        matcher_keymap_resize(m, (uint32_t)size);
    }
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
    uint32_t pos = m->slots[matcher_keymap_slot(m, key)];
    return pos == MATCHER_NONE ? MATCHER_NONE : m->p2o[pos];
}

void matcher__keymap_remap(matcher_t *m, const uint32_t *newpos) {
    for (uint32_t i = 0; i <= m->mask; i++) {
        if (m->slots[i] != MATCHER_NONE) {
            m->slots[i] = newpos[m->slots[i]];
        }
    }
}

/* ---------------------------------------------------------------------------
 * Blocks
 * ------------------------------------------------------------------------- */

/* Every tag bit: the AND of the rows of an empty extent. */
static void matcher_row_all(const matcher_t *m, uint64_t *out) {
    for (size_t w = 0; w < m->words; w++) {
        out[w] = UINT64_MAX;
    }
    if (m->ntags % 64) {
        out[m->words - 1] = (UINT64_C(1) << (m->ntags % 64)) - 1;
    }
}

matcher_blk_t *matcher__blk_new(const matcher_t *m) {
    matcher_blk_t *b = xcalloc(1, sizeof *b + m->ntags * sizeof(cont_t));
    /* calloc of these large arrays maps zero pages lazily, so a block that is
     * only partly used costs memory only for the part that is touched. */
    b->rows = xcalloc((size_t)CONT_SPAN * m->words, sizeof *b->rows);
    b->keys = xcalloc(CONT_SPAN, m->keylen);
    b->groups = xcalloc(CONT_SPAN, 1);
    b->ext_or = xcalloc((size_t)CONT_NEXT * m->words, sizeof *b->ext_or);
    b->ext_and = xmalloc((size_t)CONT_NEXT * m->words * sizeof *b->ext_and);
    for (unsigned e = 0; e < CONT_NEXT; e++) {
        matcher_row_all(m, b->ext_and + (size_t)e * m->words);
    }
    /* Every extent is empty, so every tag is held by all of its (no) members. */
    for (unsigned t = 0; t < m->ntags; t++) {
        b->cols[t].ext_full = UINT64_MAX;
    }
    return b;
}

static matcher_blk_t *matcher_blk_get(matcher_t *m, uint32_t pos, int create) {
    uint32_t bi = pos >> CONT_BITS;
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
        m->blk[bi] = matcher__blk_new(m);
    }
    return m->blk[bi];
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

/* Applies the column changes between 'old' and 'new' rows of one position;
 * 'card' (per tag) follows when not NULL. */
static void matcher_apply_cols(const matcher_t *m, matcher_blk_t *b, uint16_t off,
                               const uint64_t *old, const uint64_t *new, uint32_t *card) {
    for (size_t w = 0; w < m->words; w++) {
        uint64_t add = new[w] & ~old[w];
        uint64_t del = old[w] & ~new[w];
        while (add) {
            unsigned t = (unsigned)(w * 64 + (size_t)__builtin_ctzll(add));
            add &= add - 1;
            if (matcher__cont_add(&b->cols[t], off) && card) {
                card[t]++;
            }
        }
        while (del) {
            unsigned t = (unsigned)(w * 64 + (size_t)__builtin_ctzll(del));
            del &= del - 1;
            if (matcher__cont_remove(&b->cols[t], off) && card) {
                card[t]--;
            }
        }
    }
}

/* ---------------------------------------------------------------------------
 * Extent summaries
 *
 * Per extent the OR and the AND of its live rows, and per tag the same facts
 * transposed into the container's ext_any / ext_full bits. A new position only
 * widens the OR and narrows the AND, so joining is a few word operations; a row
 * that changes or leaves may do either, so its extent is summed again from its
 * rows (at most 1,024 of them, a few microseconds).
 * ------------------------------------------------------------------------- */

/* Flips bit 'e' of ext_any ('full' 0) or ext_full ('full' 1) for every tag in 'diff'. */
static void matcher_ext_flip(const matcher_t *m, matcher_blk_t *b, const uint64_t *diff, unsigned e,
                             int full) {
    uint64_t bit = UINT64_C(1) << e;
    for (size_t w = 0; w < m->words; w++) {
        uint64_t d = diff[w];
        while (d) {
            cont_t *c = &b->cols[w * 64 + (size_t)__builtin_ctzll(d)];
            d &= d - 1;
            if (full) {
                c->ext_full ^= bit;
            } else {
                c->ext_any ^= bit;
            }
        }
    }
}

/* A new live position with profile 'row' joined extent 'e'. */
static void matcher_ext_join(const matcher_t *m, matcher_blk_t *b, unsigned e,
                             const uint64_t *row) {
    uint64_t *sum_or = b->ext_or + (size_t)e * m->words;
    uint64_t *sum_and = b->ext_and + (size_t)e * m->words;
    uint64_t gained[MATCHER_MAX_TAGS / 64];
    uint64_t lost[MATCHER_MAX_TAGS / 64];
    for (size_t w = 0; w < m->words; w++) {
        gained[w] = row[w] & ~sum_or[w];
        lost[w] = sum_and[w] & ~row[w];
        sum_or[w] |= row[w];
        sum_and[w] &= row[w];
    }
    matcher_ext_flip(m, b, gained, e, 0);
    matcher_ext_flip(m, b, lost, e, 1);
    b->ext_live |= UINT64_C(1) << e;
}

/* Sums extent 'e' of block 'b' from its live rows into 'sum_or' and 'sum_and';
 * returns whether it holds a live position. */
static int matcher_ext_sum(const matcher_t *m, const matcher_blk_t *b, unsigned e, uint64_t *sum_or,
                           uint64_t *sum_and) {
    memset(sum_or, 0, m->words * sizeof *sum_or);
    matcher_row_all(m, sum_and);
    int any = 0;
    for (unsigned w = e * CONT_EXT_WORDS; w < (e + 1) * CONT_EXT_WORDS; w++) {
        uint64_t x = b->live[w];
        any |= x != 0;
        while (x) {
            const uint64_t *row =
                b->rows + (size_t)(w * 64 + (unsigned)__builtin_ctzll(x)) * m->words;
            x &= x - 1;
            for (size_t i = 0; i < m->words; i++) {
                sum_or[i] |= row[i];
                sum_and[i] &= row[i];
            }
        }
    }
    return any;
}

/* Extent 'e' again from its rows, after a row in it changed or left. */
static void matcher_ext_rebuild(const matcher_t *m, matcher_blk_t *b, unsigned e) {
    uint64_t sum_or[MATCHER_MAX_TAGS / 64];
    uint64_t sum_and[MATCHER_MAX_TAGS / 64];
    int any = matcher_ext_sum(m, b, e, sum_or, sum_and);
    uint64_t *cur_or = b->ext_or + (size_t)e * m->words;
    uint64_t *cur_and = b->ext_and + (size_t)e * m->words;
    for (size_t w = 0; w < m->words; w++) {
        cur_or[w] ^= sum_or[w]; /* now the difference */
        cur_and[w] ^= sum_and[w];
    }
    matcher_ext_flip(m, b, cur_or, e, 0);
    matcher_ext_flip(m, b, cur_and, e, 1);
    memcpy(cur_or, sum_or, m->words * sizeof *sum_or);
    memcpy(cur_and, sum_and, m->words * sizeof *sum_and);
    if (any) {
        b->ext_live |= UINT64_C(1) << e;
    } else {
        b->ext_live &= ~(UINT64_C(1) << e);
    }
}

unsigned matcher__check_extents(const matcher_t *m) {
    unsigned bad = 0;
    uint64_t sum_or[MATCHER_MAX_TAGS / 64];
    uint64_t sum_and[MATCHER_MAX_TAGS / 64];
    for (uint32_t bi = 0; bi < m->nblk; bi++) {
        const matcher_blk_t *b = m->blk[bi];
        if (b == NULL) {
            continue;
        }
        for (unsigned e = 0; e < CONT_NEXT; e++) {
            int any = matcher_ext_sum(m, b, e, sum_or, sum_and);
            bad += any != (int)((b->ext_live >> e) & 1);
            bad += memcmp(sum_or, b->ext_or + (size_t)e * m->words, m->words * 8) != 0;
            bad += memcmp(sum_and, b->ext_and + (size_t)e * m->words, m->words * 8) != 0;
            for (unsigned t = 0; t < m->ntags; t++) {
                const cont_t *c = &b->cols[t];
                bad += ((c->ext_any >> e) & 1) != ((sum_or[t / 64] >> (t % 64)) & 1);
                bad += ((c->ext_full >> e) & 1) != ((sum_and[t / 64] >> (t % 64)) & 1);
            }
        }
    }
    return bad;
}

/* ---------------------------------------------------------------------------
 * Rows and columns
 * ------------------------------------------------------------------------- */

void matcher__blk_add(const matcher_t *m, matcher_blk_t *b, uint16_t off, const uint64_t *row,
                      const char *key, int cols, uint32_t *card) {
    static const uint64_t zero[MATCHER_MAX_TAGS / 64];
    memcpy(b->rows + (size_t)off * m->words, row, m->words * sizeof *row);
    memcpy(b->keys + (size_t)off * m->keylen, key, m->keylen);
    int multi;
    b->groups[off] = (uint8_t)matcher_row_group(m, row, &multi);
    b->multi += (uint32_t)multi;
    b->live[off >> 6] |= UINT64_C(1) << (off & 63);
    b->nlive++;
    if (cols) {
        matcher_apply_cols(m, b, off, zero, row, card);
        matcher_ext_join(m, b, off >> CONT_EXT_BITS, row);
    }
}

int matcher_load_begin(matcher_t *m) {
    if (m->live != 0 || m->pspan != 0) {
        return -EBUSY;
    }
    m->bulk = 1;
    return 0;
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
    uint32_t pos = matcher_pos_of(m, ord);
    if (pos == MATCHER_NONE) {
        /* A new enterprise: it takes a free position and joins the key map. */
        pos = matcher_pos_take(m, ord);
        matcher_blk_t *b = matcher_blk_get(m, pos, 1);
        uint16_t off = (uint16_t)(pos & (CONT_SPAN - 1));
        matcher__blk_add(m, b, off, row, key, !m->bulk, m->card);
        m->live++;
        if (matcher_keymap_over((uint64_t)m->nkeys + 1, (uint64_t)m->mask + 1)) {
            matcher_keymap_grow(m);
        }
        m->slots[matcher_keymap_slot(m, key)] = pos;
        m->nkeys++;
        if (ord >= m->span) {
            m->span = ord + 1;
        }
        return 0;
    }
    matcher_blk_t *b = matcher_blk_get(m, pos, 0);
    uint16_t off = (uint16_t)(pos & (CONT_SPAN - 1));
    uint64_t *cur = b->rows + (size_t)off * m->words;
    char *curkey = b->keys + (size_t)off * m->keylen;
    if (at == MATCHER_NONE) {
        /* The ordinal changes hands: forget the old key, then learn the new one. */
        matcher_keymap_remove(m, matcher_keymap_slot(m, curkey));
        memcpy(curkey, key, m->keylen);
        if (matcher_keymap_over((uint64_t)m->nkeys + 1, (uint64_t)m->mask + 1)) {
            matcher_keymap_grow(m);
        }
        m->slots[matcher_keymap_slot(m, key)] = pos;
        m->nkeys++;
    }
    if (memcmp(cur, row, m->words * sizeof *row) == 0) {
        return 0;
    }
    if (b->groups[off] != 0) {
        int multi;
        matcher_row_group(m, cur, &multi);
        b->multi -= (uint32_t)multi;
    }
    if (!m->bulk) {
        matcher_apply_cols(m, b, off, cur, row, m->card);
    }
    memcpy(cur, row, m->words * sizeof *row);
    int multi;
    b->groups[off] = (uint8_t)matcher_row_group(m, row, &multi);
    b->multi += (uint32_t)multi;
    if (!m->bulk) {
        matcher_ext_rebuild(m, b, off >> CONT_EXT_BITS);
    }
    return 0;
}

int matcher_del(matcher_t *m, uint32_t ord) {
    uint32_t pos = matcher_pos_of(m, ord);
    if (pos == MATCHER_NONE) {
        return -ENOENT;
    }
    matcher_blk_t *b = matcher_blk_get(m, pos, 0);
    uint16_t off = (uint16_t)(pos & (CONT_SPAN - 1));
    uint64_t *cur = b->rows + (size_t)off * m->words;
    char *curkey = b->keys + (size_t)off * m->keylen;
    matcher_keymap_remove(m, matcher_keymap_slot(m, curkey));
    int multi;
    matcher_row_group(m, cur, &multi);
    b->multi -= (uint32_t)multi;
    static const uint64_t zero[MATCHER_MAX_TAGS / 64];
    if (!m->bulk) {
        matcher_apply_cols(m, b, off, cur, zero, m->card);
    }
    memset(cur, 0, m->words * sizeof *cur);
    memset(curkey, 0, m->keylen);
    b->groups[off] = 0;
    b->live[off >> 6] &= ~(UINT64_C(1) << (off & 63));
    b->nlive--;
    m->live--;
    if (!m->bulk) {
        matcher_ext_rebuild(m, b, off >> CONT_EXT_BITS);
    }
    matcher_pos_give(m, ord, pos);
    return 0;
}

const uint64_t *matcher_row(const matcher_t *m, uint32_t ord) {
    uint32_t pos = matcher_pos_of(m, ord);
    if (pos == MATCHER_NONE) {
        return NULL;
    }
    const matcher_blk_t *b = m->blk[pos >> CONT_BITS];
    return b->rows + (size_t)(pos & (CONT_SPAN - 1)) * m->words;
}

const char *matcher_key(const matcher_t *m, uint32_t ord) {
    uint32_t pos = matcher_pos_of(m, ord);
    return pos == MATCHER_NONE ? NULL : matcher_key_at(m, pos);
}

unsigned matcher_group(const matcher_t *m, uint32_t ord) {
    uint32_t pos = matcher_pos_of(m, ord);
    if (pos == MATCHER_NONE) {
        return 0;
    }
    return m->blk[pos >> CONT_BITS]->groups[pos & (CONT_SPAN - 1)];
}

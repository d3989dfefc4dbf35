/* The sorted rebuild of the index (matcher_relayout): positions in the order of
 * (cluster key, ordinal), so that enterprises alike in region, entity type and
 * industry sit together. The rebuild writes new blocks in position order, which
 * makes every container append at its end, then drops the old ones. */
#include "matcher/matcher.h"

#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "matcher/internal.h"

/* Sorts 'a[0..n)' by the high 32 bits (the cluster key), keeping the order of
 * equal keys (the ordinals, already ascending): a byte at a time from the least
 * significant level, skipping levels that are 0 everywhere. */
static void layout_sort(uint64_t *a, uint64_t *tmp, size_t n) {
    for (unsigned shift = 32; shift < 64; shift += 8) {
        size_t count[257] = {0};
        for (size_t i = 0; i < n; i++) {
            count[((a[i] >> shift) & 0xff) + 1]++;
        }
        if (count[1] == n) {
            continue; /* this level is 0 for everyone */
        }
        for (unsigned d = 0; d < 256; d++) {
            count[d + 1] += count[d];
        }
        for (size_t i = 0; i < n; i++) {
            tmp[count[(a[i] >> shift) & 0xff]++] = a[i];
        }
        memcpy(a, tmp, n * sizeof *a);
    }
}

/* How far ahead the rebuild asks for the rows it will copy. */
#define LAYOUT_AHEAD 16

void matcher_relayout(matcher_t *m) {
    uint64_t *order = xmalloc(((size_t)m->live + 1) * sizeof *order);
    uint64_t *tmp = xmalloc(((size_t)m->live + 1) * sizeof *tmp);
    size_t k = 0;
    for (uint32_t ord = 0; ord < m->span && ord < m->o2p_cap; ord++) {
        uint32_t pos = m->o2p[ord];
        if (pos == MATCHER_NONE) {
            continue;
        }
        const matcher_blk_t *b = m->blk[pos >> CONT_BITS];
        const uint64_t *row = b->rows + (size_t)(pos & (CONT_SPAN - 1)) * m->words;
        order[k++] = (uint64_t)matcher__cluster_key(m, row) << 32 | ord;
    }
    layout_sort(order, tmp, k);
    free(tmp);
    /* Counted again as the columns are rebuilt (a bulk load never counted). */
    memset(m->card, 0, m->ntags * sizeof *m->card);

    uint32_t nblk = (uint32_t)((k + CONT_SPAN - 1) >> CONT_BITS);
    uint32_t cap = 4;
    while (cap < nblk) {
        cap *= 2;
    }
    matcher_blk_t **blk = xcalloc(cap, sizeof *blk);
    uint32_t p2o_cap = (uint32_t)((k + 4095) & ~(size_t)4095);
    uint32_t *p2o = xmalloc(p2o_cap * sizeof *p2o);
    memset(p2o, 0xff, p2o_cap * sizeof *p2o);
    uint32_t *newpos = xmalloc(((size_t)m->pspan + 1) * sizeof *newpos);
    for (uint32_t i = 0; i < k; i++) {
        if (i + LAYOUT_AHEAD < k) {
            /* The old positions come in no useful order: ask for them ahead. */
            uint32_t ahead = m->o2p[(uint32_t)order[i + LAYOUT_AHEAD]];
            const matcher_blk_t *ab = m->blk[ahead >> CONT_BITS];
            uint32_t aoff = ahead & (CONT_SPAN - 1);
            __builtin_prefetch(ab->rows + (size_t)aoff * m->words);
            __builtin_prefetch(ab->keys + (size_t)aoff * m->keylen);
        }
        uint32_t ord = (uint32_t)order[i];
        uint32_t old = m->o2p[ord];
        const matcher_blk_t *ob = m->blk[old >> CONT_BITS];
        uint32_t ooff = old & (CONT_SPAN - 1);
        matcher_blk_t *nb = blk[i >> CONT_BITS];
        if (nb == NULL) {
            nb = blk[i >> CONT_BITS] = matcher__blk_new(m);
        }
        matcher__blk_add(m, nb, (uint16_t)(i & (CONT_SPAN - 1)), ob->rows + (size_t)ooff * m->words,
                         ob->keys + (size_t)ooff * m->keylen, 1, m->card);
        newpos[old] = i;
        m->o2p[ord] = i;
        p2o[i] = ord;
    }
    free(order);
    matcher__keymap_remap(m, newpos);
    free(newpos);
    for (uint32_t i = 0; i < m->nblk; i++) {
        matcher__blk_free(m->blk[i], m->ntags);
    }
    free(m->blk);
    m->blk = blk;
    m->nblk = cap;
    free(m->p2o);
    m->p2o = p2o;
    m->p2o_cap = p2o_cap;
    m->pspan = (uint32_t)k;
    m->sorted = (uint32_t)k;
    m->npfree = 0;
    m->bulk = 0;
    m->layout++;
}

/* The in-memory mirror that matching reads: the enterprise index with its interests,
 * the published-policy set, and the policy and webhook records. Pure: it knows
 * nothing of Redis, so the Redis-backed store and the in-memory fake used by the
 * fuzzer (store/fake.c) share it. */
#include "store/mirror.h"

#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

/* ---------------------------------------------------------------------------
 * Interests map
 * ------------------------------------------------------------------------- */

static uint32_t imap_hash(uint32_t k) {
    k *= 2654435761u;
    return k ^ (k >> 15);
}

static void imap_init(store_imap_t *im) {
    im->mask = 63;
    im->slots = xmalloc((im->mask + 1) * sizeof *im->slots);
    for (uint32_t i = 0; i <= im->mask; i++) {
        im->slots[i].key = UINT32_MAX;
    }
    im->n = 0;
}

_Static_assert(sizeof(uint16_t *) <= sizeof(((imap_slot_t *)0)->bits), "a pointer fits in a slot");

static uint16_t *imap_ext(const imap_slot_t *sl) {
    uint16_t *p;
    memcpy(&p, sl->bits, sizeof p);
    return p;
}

static void imap_slot_clear(imap_slot_t *sl) {
    if (sl->n > IMAP_INLINE) {
        free(imap_ext(sl));
    }
    sl->key = UINT32_MAX;
    sl->n = 0;
}

static void imap_destroy(store_imap_t *im) {
    for (uint32_t i = 0; i <= im->mask; i++) {
        if (im->slots[i].key != UINT32_MAX) {
            imap_slot_clear(&im->slots[i]);
        }
    }
    free(im->slots);
}

static uint32_t imap_pos(const store_imap_t *im, uint32_t k) {
    uint32_t h = imap_hash(k) & im->mask;
    while (im->slots[h].key != UINT32_MAX && im->slots[h].key != k) {
        h = (h + 1) & im->mask;
    }
    return h;
}

static void imap_grow(store_imap_t *im) {
    store_imap_t old = *im;
    im->mask = old.mask * 2 + 1;
    im->slots = xmalloc(((size_t)im->mask + 1) * sizeof *im->slots);
    for (uint32_t i = 0; i <= im->mask; i++) {
        im->slots[i].key = UINT32_MAX;
    }
    for (uint32_t i = 0; i <= old.mask; i++) {
        if (old.slots[i].key != UINT32_MAX) {
            im->slots[imap_pos(im, old.slots[i].key)] = old.slots[i]; /* moves a pointer too */
        }
    }
    free(old.slots);
}

static void imap_remove_at(store_imap_t *im, uint32_t i) {
    imap_slot_clear(&im->slots[i]);
    /* Shift back the run after i so that no lookup stops early (no tombstones). */
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & im->mask;
        if (im->slots[j].key == UINT32_MAX) {
            break;
        }
        uint32_t home = imap_hash(im->slots[j].key) & im->mask;
        int keep = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
        if (!keep) {
            im->slots[i] = im->slots[j];
            im->slots[j].key = UINT32_MAX;
            im->slots[j].n = 0;
            i = j;
        }
    }
    im->n--;
}

static void imap_set(store_imap_t *im, uint32_t ord, const uint16_t *bits, unsigned n) {
    uint32_t h = imap_pos(im, ord);
    if (n == 0) {
        if (im->slots[h].key == ord) {
            imap_remove_at(im, h);
        }
        return;
    }
    if (im->slots[h].key != ord) {
        /* At 70% full a lookup probes about two slots. */
        if ((uint64_t)(im->n + 1) * 10 > (uint64_t)(im->mask + 1) * 7) {
            imap_grow(im);
            h = imap_pos(im, ord);
        }
        im->slots[h].key = ord;
        im->slots[h].n = 0;
        im->n++;
    }
    imap_slot_t *sl = &im->slots[h];
    if (sl->n > IMAP_INLINE) {
        free(imap_ext(sl));
    }
    sl->n = (uint16_t)n;
    if (n <= IMAP_INLINE) {
        memcpy(sl->bits, bits, n * sizeof *bits);
    } else {
        uint16_t *ext = xmemdup(bits, n * sizeof *bits);
        memcpy(sl->bits, &ext, sizeof ext);
    }
}

static unsigned imap_get(const store_imap_t *im, uint32_t ord, const uint16_t **bits) {
    const imap_slot_t *sl = &im->slots[imap_pos(im, ord)];
    if (sl->key != ord) {
        *bits = NULL;
        return 0;
    }
    *bits = sl->n > IMAP_INLINE ? imap_ext(sl) : sl->bits;
    return sl->n;
}

/* ---------------------------------------------------------------------------
 * The mirror
 * ------------------------------------------------------------------------- */

store_mem_t *store__mem_new(const taxonomy_t *tax) {
    store_mem_t *mem = xcalloc(1, sizeof *mem);
    unsigned ntags = taxonomy_count(tax, TAX_ENTERPRISE);
    mem->m = matcher_new(ntags, 18);
    mem->ps = polset_new(ntags);
    /* Group matches by district: the tags of class "region", in taxonomy order. */
    uint16_t groups[MATCHER_MAX_GROUPS];
    unsigned ng = 0;
    for (unsigned i = 0; i < ntags && ng < MATCHER_MAX_GROUPS; i++) {
        const tax_tag_t *t = taxonomy_tag(tax, TAX_ENTERPRISE, i);
        if (strcmp(t->klass->code, "region") == 0) {
            groups[ng++] = (uint16_t)i;
        }
    }
    matcher_set_groups(mem->m, groups, ng);
    /* Lay the index out by region, entity type and industry (see matcher.h). */
    uint16_t ct[TAX_CLUSTER_MAX];
    uint8_t cl[TAX_CLUSTER_MAX];
    unsigned nc = taxonomy_cluster_tags(tax, ct, cl, TAX_CLUSTER_MAX);
    matcher_set_cluster(mem->m, ct, cl, nc);
    imap_init(&mem->imap);
    mem->scratch = matcher_scratch_new();
    mem->tally_on = 1; /* nothing to count yet */
    return mem;
}

uint32_t store__mem_relayout(store_mem_t *mem, uint32_t min) {
    uint32_t added = matcher_unsorted(mem->m);
    if (added < min || added < matcher_live(mem->m) / 4) {
        return 0;
    }
    matcher_relayout(mem->m);
    return matcher_live(mem->m);
}

void store__policy_free(store_policy_t *p) {
    if (p) {
        free(p->doc);
        free(p);
    }
}

void store__mem_free(store_mem_t *mem) {
    if (mem == NULL) {
        return;
    }
    for (size_t i = 0; i < mem->nwhs; i++) {
        store__webhook_free(mem->whs[i]);
    }
    free(mem->whs);
    matcher_free(mem->m);
    polset_free(mem->ps);
    for (size_t i = 0; i < mem->npols; i++) {
        store__policy_free(mem->pols[i]);
    }
    free(mem->pols);
    for (uint32_t id = 0; id < mem->cap_by_id; id++) {
        free(mem->tally[id]);
    }
    free(mem->tally);
    free(mem->by_id);
    matcher_scratch_free(mem->scratch);
    free(mem->tids);
    imap_destroy(&mem->imap);
    free(mem);
}

/* ---------------------------------------------------------------------------
 * Audience tallies
 * ------------------------------------------------------------------------- */

/* Adds 'delta' (+1 or -1) to the tally of every published policy that the
 * enterprise now at 'ord' matches, in its group; nothing when 'ord' is not live. */
static void tally_ent(store_mem_t *mem, uint32_t ord, int delta) {
    const uint64_t *row = mem->tally_on ? matcher_row(mem->m, ord) : NULL;
    if (row == NULL || polset_size(mem->ps) == 0) {
        return;
    }
    size_t need = polset_size(mem->ps);
    if (need > mem->tids_cap) {
        mem->tids_cap = need * 2;
        mem->tids = xreallocarray(mem->tids, mem->tids_cap, sizeof *mem->tids);
    }
    size_t n = polset_match(mem->ps, row, mem->tids, mem->tids_cap);
    unsigned g = matcher_group(mem->m, ord);
    for (size_t i = 0; i < n; i++) {
        uint32_t id = mem->tids[i];
        uint64_t *t = id < mem->cap_by_id ? mem->tally[id] : NULL;
        if (t) {
            t[g] += (uint64_t)(int64_t)delta; /* wraps back for -1 */
        }
    }
}

static void tally_drop(store_mem_t *mem, uint32_t id) {
    if (id < mem->cap_by_id) {
        free(mem->tally[id]);
        mem->tally[id] = NULL;
    }
}

/* Counts published policy 'p' afresh. */
static void tally_build(store_mem_t *mem, const store_policy_t *p) {
    if (!mem->tally_on || p->id >= mem->cap_by_id) {
        return;
    }
    uint64_t **t = &mem->tally[p->id];
    if (*t == NULL) {
        *t = xmalloc((matcher_ngroups(mem->m) + 1) * sizeof **t);
    }
    matcher_count_groups(mem->m, &p->rule, mem->scratch, *t);
}

void store__mem_tally_off(store_mem_t *mem) {
    for (uint32_t id = 0; id < mem->cap_by_id; id++) {
        tally_drop(mem, id);
    }
    mem->tally_on = 0;
}

void store__mem_tally_on(store_mem_t *mem) {
    mem->tally_on = 1;
    for (size_t i = 0; i < mem->npols; i++) {
        if (mem->pols[i]->status == STORE_POL_PUBLISHED) {
            tally_build(mem, mem->pols[i]);
        }
    }
}

uint64_t store__mem_audience(store_mem_t *mem, const store_policy_t *p, uint64_t *groups) {
    unsigned ng = matcher_ngroups(mem->m);
    const uint64_t *t = p->id < mem->cap_by_id ? mem->tally[p->id] : NULL;
    if (t == NULL || p->status != STORE_POL_PUBLISHED) {
        return matcher_count_groups(mem->m, &p->rule, mem->scratch, groups);
    }
    uint64_t total = 0;
    for (unsigned g = 0; g <= ng; g++) {
        groups[g] = t[g];
        total += t[g];
    }
    return total;
}

void store__mem_ent_apply(store_mem_t *mem, const char *uscc, uint32_t ord, const uint64_t *row,
                          const uint16_t *interests, unsigned nint) {
    uint32_t at = matcher_find(mem->m, uscc);
    if (row == NULL) {
        if (at != MATCHER_NONE) {
            tally_ent(mem, at, -1);
            matcher_del(mem->m, at);
            imap_set(&mem->imap, at, NULL, 0);
        }
        return;
    }
    if (at != MATCHER_NONE && at != ord) {
        /* Memory had the code at another ordinal (it was deleted and created again
         * while we were not listening): follow Redis. */
        tally_ent(mem, at, -1);
        matcher_del(mem->m, at);
        imap_set(&mem->imap, at, NULL, 0);
    }
    /* Out with whatever 'ord' holds, in with what it holds after the put (the old
     * row again when the put is refused). */
    tally_ent(mem, ord, -1);
    int rc = matcher_put(mem->m, ord, uscc, row);
    tally_ent(mem, ord, +1);
    if (rc == 0) {
        imap_set(&mem->imap, ord, interests, nint);
    }
}

static size_t mem_pol_pos(const store_mem_t *mem, uint32_t id) {
    size_t lo = 0;
    size_t hi = mem->npols;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (mem->pols[mid]->id < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static void mem_polset_sync(store_mem_t *mem, const store_policy_t *p, uint32_t id) {
    if (p && p->status == STORE_POL_PUBLISHED) {
        unsigned ntags = matcher_ntags(mem->m);
        uint32_t card[MATCHER_MAX_TAGS];
        for (unsigned t = 0; t < ntags; t++) {
            card[t] = matcher_tag_card(mem->m, t);
        }
        polset_put(mem->ps, id, &p->rule, card);
        tally_build(mem, p);
    } else {
        if (polset_has(mem->ps, id)) {
            polset_del(mem->ps, id);
        }
        tally_drop(mem, id);
    }
}

/* Keeps by_id in step. Ids come from a counter, so they are dense: the table
 * grows to the largest id, up to a bound past which lookups search 'pols'. */
#define MEM_BY_ID_MAX (1u << 22)
static void mem_by_id_set(store_mem_t *mem, uint32_t id, store_policy_t *p) {
    if (id >= mem->cap_by_id) {
        if (p == NULL || id >= MEM_BY_ID_MAX) {
            return;
        }
        uint32_t cap = mem->cap_by_id ? mem->cap_by_id : 256;
        while (cap <= id) {
            cap *= 2;
        }
        mem->by_id = xreallocarray(mem->by_id, cap, sizeof *mem->by_id);
        memset(mem->by_id + mem->cap_by_id, 0, (cap - mem->cap_by_id) * sizeof *mem->by_id);
        mem->tally = xreallocarray(mem->tally, cap, sizeof *mem->tally);
        memset(mem->tally + mem->cap_by_id, 0, (cap - mem->cap_by_id) * sizeof *mem->tally);
        mem->cap_by_id = cap;
    }
    mem->by_id[id] = p;
}

void store__mem_pol_apply(store_mem_t *mem, uint32_t id, store_policy_t *p) {
    mem_by_id_set(mem, id, p);
    size_t i = mem_pol_pos(mem, id);
    int found = i < mem->npols && mem->pols[i]->id == id;
    if (p == NULL) {
        if (found) {
            store__policy_free(mem->pols[i]);
            memmove(mem->pols + i, mem->pols + i + 1, (mem->npols - i - 1) * sizeof *mem->pols);
            mem->npols--;
        }
        mem_polset_sync(mem, NULL, id);
        return;
    }
    if (found) {
        store__policy_free(mem->pols[i]);
        mem->pols[i] = p;
    } else {
        if (mem->npols == mem->cappols) {
            mem->cappols = mem->cappols ? mem->cappols * 2 : 64;
            mem->pols = xreallocarray(mem->pols, mem->cappols, sizeof *mem->pols);
        }
        memmove(mem->pols + i + 1, mem->pols + i, (mem->npols - i) * sizeof *mem->pols);
        mem->pols[i] = p;
        mem->npols++;
    }
    mem_polset_sync(mem, p, id);
}

const store_policy_t *store__mem_policy(const store_mem_t *mem, uint32_t id) {
    if (id < mem->cap_by_id) {
        return mem->by_id[id];
    }
    size_t i = mem_pol_pos(mem, id);
    return i < mem->npols && mem->pols[i]->id == id ? mem->pols[i] : NULL;
}

const store_policy_t *store__mem_policy_next(const store_mem_t *mem, uint32_t after) {
    if (after == UINT32_MAX) {
        return NULL;
    }
    size_t i = mem_pol_pos(mem, after + 1);
    return i < mem->npols ? mem->pols[i] : NULL;
}

unsigned store__mem_interests(const store_mem_t *mem, uint32_t ord, const uint16_t **bits) {
    return imap_get(&mem->imap, ord, bits);
}

/* ---------------------------------------------------------------------------
 * Webhooks
 * ------------------------------------------------------------------------- */

void store__webhook_free(store_webhook_t *w) {
    if (w) {
        free(w->doc);
        free(w->url);
        free(w->secrets);
        free(w->sk);
        free(w->reason);
        free(w);
    }
}

static size_t mem_wh_pos(const store_mem_t *mem, uint32_t id) {
    size_t lo = 0;
    size_t hi = mem->nwhs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (mem->whs[mid]->id < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

void store__mem_wh_apply(store_mem_t *mem, uint32_t id, store_webhook_t *w) {
    size_t i = mem_wh_pos(mem, id);
    int found = i < mem->nwhs && mem->whs[i]->id == id;
    if (w == NULL) {
        if (found) {
            store__webhook_free(mem->whs[i]);
            memmove(mem->whs + i, mem->whs + i + 1, (mem->nwhs - i - 1) * sizeof *mem->whs);
            mem->nwhs--;
        }
        return;
    }
    if (found) {
        store__webhook_free(mem->whs[i]);
        mem->whs[i] = w;
        return;
    }
    if (mem->nwhs == mem->capwhs) {
        mem->capwhs = mem->capwhs ? mem->capwhs * 2 : 16;
        mem->whs = xreallocarray(mem->whs, mem->capwhs, sizeof *mem->whs);
    }
    memmove(mem->whs + i + 1, mem->whs + i, (mem->nwhs - i) * sizeof *mem->whs);
    mem->whs[i] = w;
    mem->nwhs++;
}

const store_webhook_t *store__mem_webhook(const store_mem_t *mem, uint32_t id) {
    size_t i = mem_wh_pos(mem, id);
    return i < mem->nwhs && mem->whs[i]->id == id ? mem->whs[i] : NULL;
}

const store_webhook_t *store__mem_webhook_next(const store_mem_t *mem, uint32_t after) {
    if (after == UINT32_MAX) {
        return NULL;
    }
    size_t i = mem_wh_pos(mem, after + 1);
    return i < mem->nwhs ? mem->whs[i] : NULL;
}

/* ---------------------------------------------------------------------------
 * Fields
 * ------------------------------------------------------------------------- */

const char *store_kv_get(const store_kv_t *kv, size_t n, const char *k, size_t *len) {
    size_t kl = strlen(k);
    for (size_t i = 0; i < n; i++) {
        if (kv[i].k && kv[i].klen == kl && memcmp(kv[i].k, k, kl) == 0) {
            if (len) {
                *len = kv[i].vlen;
            }
            return kv[i].v;
        }
    }
    if (len) {
        *len = 0;
    }
    return NULL;
}

/* Policy set with anchor lists; see polset.h. */
#include "matcher/polset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "matcher/bitset.h"

#define POLSET_NONE UINT32_MAX

typedef struct plist {
    uint32_t *v;
    uint32_t n, cap;
} plist_t;

typedef struct pslot {
    uint32_t id;    /* POLSET_NONE when the slot is free */
    int32_t anchor; /* the 'all' tag it is filed under, -1 for any-filed, -2 always */
    uint8_t has_any;
    rule_t rule;
} pslot_t;

struct polset {
    unsigned ntags;
    size_t words;
    pslot_t *slot;
    uint64_t *masks; /* 3 * words per slot: all, any, none */
    uint32_t nslot, capslot;
    uint32_t *freelist;
    uint32_t nfree;
    uint32_t size;
    plist_t *by_all; /* per tag: slots anchored on that 'all' tag */
    plist_t *by_any; /* per tag: any-only slots holding that 'any' tag */
    plist_t always;
    /* id -> slot: open addressing, linear probing, backward-shift deletion. */
    uint32_t *map_id;
    uint32_t *map_slot;
    uint32_t map_mask;
};

polset_t *polset_new(unsigned ntags) {
    if (ntags == 0 || ntags > 4096) {
        return NULL;
    }
    polset_t *ps = xcalloc(1, sizeof *ps);
    ps->ntags = ntags;
    ps->words = bitset_words(ntags);
    ps->by_all = xcalloc(ntags, sizeof *ps->by_all);
    ps->by_any = xcalloc(ntags, sizeof *ps->by_any);
    ps->map_mask = 63;
    ps->map_id = xmalloc((ps->map_mask + 1) * sizeof *ps->map_id);
    ps->map_slot = xmalloc((ps->map_mask + 1) * sizeof *ps->map_slot);
    memset(ps->map_id, 0xff, (ps->map_mask + 1) * sizeof *ps->map_id);
    return ps;
}

void polset_free(polset_t *ps) {
    if (ps == NULL) {
        return;
    }
    for (unsigned t = 0; t < ps->ntags; t++) {
        free(ps->by_all[t].v);
        free(ps->by_any[t].v);
    }
    free(ps->by_all);
    free(ps->by_any);
    free(ps->always.v);
    free(ps->slot);
    free(ps->masks);
    free(ps->freelist);
    free(ps->map_id);
    free(ps->map_slot);
    free(ps);
}

size_t polset_size(const polset_t *ps) {
    return ps->size;
}

/* ---------------------------------------------------------------------------
 * id map
 * ------------------------------------------------------------------------- */

static uint32_t polset_hash(uint32_t id) {
    uint32_t h = id * 2654435761u;
    return h ^ (h >> 16);
}

static uint32_t polset_map_pos(const polset_t *ps, uint32_t id) {
    uint32_t h = polset_hash(id) & ps->map_mask;
    while (ps->map_id[h] != POLSET_NONE && ps->map_id[h] != id) {
        h = (h + 1) & ps->map_mask;
    }
    return h;
}

static uint32_t polset_find(const polset_t *ps, uint32_t id) {
    uint32_t h = polset_map_pos(ps, id);
    return ps->map_id[h] == id ? ps->map_slot[h] : POLSET_NONE;
}

bool polset_has(const polset_t *ps, uint32_t id) {
    return id != POLSET_NONE && polset_find(ps, id) != POLSET_NONE;
}

static void polset_map_grow(polset_t *ps) {
    uint32_t oldn = ps->map_mask + 1;
    uint32_t *oid = ps->map_id;
    uint32_t *oslot = ps->map_slot;
    ps->map_mask = oldn * 2 - 1;
    ps->map_id = xmalloc((size_t)(ps->map_mask + 1) * sizeof *ps->map_id);
    ps->map_slot = xmalloc((size_t)(ps->map_mask + 1) * sizeof *ps->map_slot);
    memset(ps->map_id, 0xff, (size_t)(ps->map_mask + 1) * sizeof *ps->map_id);
    for (uint32_t i = 0; i < oldn; i++) {
        if (oid[i] != POLSET_NONE) {
            uint32_t h = polset_map_pos(ps, oid[i]);
            ps->map_id[h] = oid[i];
            ps->map_slot[h] = oslot[i];
        }
    }
    free(oid);
    free(oslot);
}

static void polset_map_remove(polset_t *ps, uint32_t id) {
    uint32_t i = polset_map_pos(ps, id);
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & ps->map_mask;
        if (ps->map_id[j] == POLSET_NONE) {
            break;
        }
        uint32_t home = polset_hash(ps->map_id[j]) & ps->map_mask;
        int keep = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
        if (!keep) {
            ps->map_id[i] = ps->map_id[j];
            ps->map_slot[i] = ps->map_slot[j];
            i = j;
        }
    }
    ps->map_id[i] = POLSET_NONE;
}

/* ---------------------------------------------------------------------------
 * Anchor lists
 * ------------------------------------------------------------------------- */

static void plist_add(plist_t *l, uint32_t s) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4;
        l->v = xreallocarray(l->v, l->cap, sizeof *l->v);
    }
    l->v[l->n++] = s;
}

static void plist_remove(plist_t *l, uint32_t s) {
    for (uint32_t i = 0; i < l->n; i++) {
        if (l->v[i] == s) {
            l->v[i] = l->v[--l->n];
            return;
        }
    }
}

static void polset_file(polset_t *ps, uint32_t s, const uint32_t *card) {
    pslot_t *p = &ps->slot[s];
    const rule_t *r = &p->rule;
    if (r->nall) {
        uint16_t best = r->all[0];
        for (uint16_t i = 1; card && i < r->nall; i++) {
            if (card[r->all[i]] < card[best]) {
                best = r->all[i];
            }
        }
        p->anchor = best;
        plist_add(&ps->by_all[best], s);
    } else if (r->nany) {
        p->anchor = -1;
        for (uint16_t i = 0; i < r->nany; i++) {
            plist_add(&ps->by_any[r->any[i]], s);
        }
    } else {
        p->anchor = -2;
        plist_add(&ps->always, s);
    }
}

static void polset_unfile(polset_t *ps, uint32_t s) {
    pslot_t *p = &ps->slot[s];
    if (p->anchor >= 0) {
        plist_remove(&ps->by_all[p->anchor], s);
    } else if (p->anchor == -1) {
        for (uint16_t i = 0; i < p->rule.nany; i++) {
            plist_remove(&ps->by_any[p->rule.any[i]], s);
        }
    } else {
        plist_remove(&ps->always, s);
    }
}

static int polset_rule_ok(const polset_t *ps, const rule_t *r) {
    const uint16_t *parts[3] = {r->all, r->any, r->none};
    const uint16_t lens[3] = {r->nall, r->nany, r->nnone};
    for (int k = 0; k < 3; k++) {
        if (lens[k] > RULE_MAX_PART) {
            return 0;
        }
        for (uint16_t i = 0; i < lens[k]; i++) {
            if (parts[k][i] >= ps->ntags) {
                return 0;
            }
        }
    }
    return 1;
}

int polset_put(polset_t *ps, uint32_t id, const rule_t *r, const uint32_t *card) {
    if (id == POLSET_NONE || !polset_rule_ok(ps, r)) {
        return -ERANGE;
    }
    uint32_t s = polset_find(ps, id);
    if (s != POLSET_NONE) {
        polset_unfile(ps, s);
    } else {
        if (ps->nfree) {
            s = ps->freelist[--ps->nfree];
        } else {
            if (ps->nslot == ps->capslot) {
                ps->capslot = ps->capslot ? ps->capslot * 2 : 16;
                ps->slot = xreallocarray(ps->slot, ps->capslot, sizeof *ps->slot);
                ps->masks = xreallocarray(ps->masks, (size_t)ps->capslot * 3 * ps->words,
                                          sizeof *ps->masks);
            }
            s = ps->nslot++;
        }
        if ((ps->size + 1) * 2 > ps->map_mask + 1) {
            polset_map_grow(ps);
        }
        uint32_t h = polset_map_pos(ps, id);
        ps->map_id[h] = id;
        ps->map_slot[h] = s;
        ps->size++;
    }
    pslot_t *p = &ps->slot[s];
    p->id = id;
    p->rule = *r;
    p->has_any = r->nany > 0;
    uint64_t *mk = ps->masks + (size_t)s * 3 * ps->words;
    rule_masks(r, mk, mk + ps->words, mk + 2 * ps->words, ps->words);
    polset_file(ps, s, card);
    return 0;
}

int polset_del(polset_t *ps, uint32_t id) {
    uint32_t s = polset_find(ps, id);
    if (s == POLSET_NONE) {
        return -ENOENT;
    }
    polset_unfile(ps, s);
    polset_map_remove(ps, id);
    ps->slot[s].id = POLSET_NONE;
    ps->freelist = xreallocarray(ps->freelist, ps->nfree + 1, sizeof *ps->freelist);
    ps->freelist[ps->nfree++] = s;
    ps->size--;
    return 0;
}

void polset_reanchor(polset_t *ps, const uint32_t *card) {
    for (uint32_t s = 0; s < ps->nslot; s++) {
        if (ps->slot[s].id != POLSET_NONE && ps->slot[s].anchor >= 0) {
            polset_unfile(ps, s);
            polset_file(ps, s, card);
        }
    }
}

/* ---------------------------------------------------------------------------
 * Matching
 * ------------------------------------------------------------------------- */

/* Full check of slot 's' against 'row'. For an any-filed slot reached through tag
 * 'via', it also insists that 'via' is the lowest of its 'any' tags the row holds,
 * so the slot is reported once however many of its lists the row visits. */
static inline int polset_eval(const polset_t *ps, uint32_t s, const uint64_t *row, long via) {
    const uint64_t *a = ps->masks + (size_t)s * 3 * ps->words;
    const uint64_t *y = a + ps->words;
    const uint64_t *n = y + ps->words;
    long first = -1;
    for (size_t w = 0; w < ps->words; w++) {
        if ((row[w] & a[w]) != a[w] || (row[w] & n[w])) {
            return 0;
        }
        uint64_t hit = row[w] & y[w];
        if (hit && first < 0) {
            first = (long)(w * 64 + (size_t)__builtin_ctzll(hit));
        }
    }
    if (!ps->slot[s].has_any) {
        return 1;
    }
    return first >= 0 && (via < 0 || first == via);
}

size_t polset_match(const polset_t *ps, const uint64_t *row, uint32_t *out, size_t max) {
    size_t n = 0;
    for (size_t w = 0; w < ps->words; w++) {
        uint64_t bits = row[w];
        while (bits) {
            unsigned t = (unsigned)(w * 64 + (size_t)__builtin_ctzll(bits));
            bits &= bits - 1;
            if (t >= ps->ntags) {
                break;
            }
            const plist_t *l = &ps->by_all[t];
            for (uint32_t i = 0; i < l->n; i++) {
                if (polset_eval(ps, l->v[i], row, -1)) {
                    if (n < max) {
                        out[n] = ps->slot[l->v[i]].id;
                    }
                    n++;
                }
            }
            l = &ps->by_any[t];
            for (uint32_t i = 0; i < l->n; i++) {
                if (polset_eval(ps, l->v[i], row, (long)t)) {
                    if (n < max) {
                        out[n] = ps->slot[l->v[i]].id;
                    }
                    n++;
                }
            }
        }
    }
    for (uint32_t i = 0; i < ps->always.n; i++) {
        if (polset_eval(ps, ps->always.v[i], row, -1)) {
            if (n < max) {
                out[n] = ps->slot[ps->always.v[i]].id;
            }
            n++;
        }
    }
    return n;
}

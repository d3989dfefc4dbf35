/* Array/bitmap containers for one tag inside one block; see cont.h. */
#include "matcher/cont.h"

#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

/* First index in the sorted array whose value is >= x. */
static uint32_t cont_lower_bound(const uint16_t *a, uint32_t n, uint16_t x) {
    uint32_t lo = 0;
    uint32_t hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (a[mid] < x) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static void cont_to_bitmap(cont_t *c) {
    uint64_t *b = xcalloc(CONT_WORDS, sizeof *b);
    const uint16_t *a = c->p;
    for (uint32_t i = 0; i < c->card; i++) {
        b[a[i] >> 6] |= UINT64_C(1) << (a[i] & 63);
    }
    free(c->p);
    c->p = b;
    c->cap = 0;
    c->kind = CONT_BITMAP;
}

static void cont_to_array(cont_t *c) {
    /* Keep some headroom so a container hovering near the threshold does not
     * reallocate on every change. */
    uint32_t cap = c->card + c->card / 4 + 8;
    if (cap > CONT_ARRAY_MAX) {
        cap = CONT_ARRAY_MAX;
    }
    uint16_t *a = xmalloc(cap * sizeof *a);
    const uint64_t *b = c->p;
    uint32_t n = 0;
    for (unsigned w = 0; w < CONT_WORDS; w++) {
        uint64_t m = b[w];
        while (m) {
            a[n++] = (uint16_t)(w * 64 + (unsigned)__builtin_ctzll(m));
            m &= m - 1;
        }
    }
    free(c->p);
    c->p = a;
    c->cap = (uint16_t)cap;
    c->kind = CONT_ARRAY;
}

bool matcher__cont_add(cont_t *c, uint16_t x) {
    if (c->kind == CONT_BITMAP) {
        uint64_t *b = c->p;
        uint64_t bit = UINT64_C(1) << (x & 63);
        if (b[x >> 6] & bit) {
            return false;
        }
        b[x >> 6] |= bit;
        c->card++;
        return true;
    }
    uint16_t *a = c->p;
    uint32_t n = c->card;
    uint32_t i;
    /* Loading walks ordinals upwards, so the common case is an append. */
    if (n == 0 || a[n - 1] < x) {
        i = n;
    } else {
        i = cont_lower_bound(a, n, x);
        if (a[i] == x) {
            return false;
        }
    }
    if (n == CONT_ARRAY_MAX) {
        cont_to_bitmap(c);
        return matcher__cont_add(c, x);
    }
    if (n == c->cap) {
        uint32_t cap = c->cap ? c->cap * 2u : 4u;
        if (cap > CONT_ARRAY_MAX) {
            cap = CONT_ARRAY_MAX;
        }
        c->p = a = xreallocarray(c->p, cap, sizeof *a);
        c->cap = (uint16_t)cap;
    }
    memmove(a + i + 1, a + i, (n - i) * sizeof *a);
    a[i] = x;
    c->card++;
    c->kind = CONT_ARRAY;
    return true;
}

bool matcher__cont_remove(cont_t *c, uint16_t x) {
    if (c->kind == CONT_EMPTY || c->card == 0) {
        return false;
    }
    if (c->kind == CONT_BITMAP) {
        uint64_t *b = c->p;
        uint64_t bit = UINT64_C(1) << (x & 63);
        if (!(b[x >> 6] & bit)) {
            return false;
        }
        b[x >> 6] &= ~bit;
        if (--c->card < CONT_ARRAY_MIN) {
            cont_to_array(c);
        }
        return true;
    }
    uint16_t *a = c->p;
    uint32_t i = cont_lower_bound(a, c->card, x);
    if (i == c->card || a[i] != x) {
        return false;
    }
    memmove(a + i, a + i + 1, (c->card - i - 1) * sizeof *a);
    c->card--;
    return true;
}

bool matcher__cont_test(const cont_t *c, uint16_t x) {
    if (c->kind == CONT_BITMAP) {
        const uint64_t *b = c->p;
        return (b[x >> 6] >> (x & 63)) & 1;
    }
    if (c->card == 0) {
        return false;
    }
    const uint16_t *a = c->p;
    uint32_t i = cont_lower_bound(a, c->card, x);
    return i < c->card && a[i] == x;
}

void matcher__cont_free(cont_t *c) {
    free(c->p);
    c->p = NULL;
    c->card = 0;
    c->cap = 0;
    c->kind = CONT_EMPTY;
}

size_t matcher__cont_bytes(const cont_t *c) {
    if (c->kind == CONT_BITMAP) {
        return CONT_WORDS * sizeof(uint64_t);
    }
    return (size_t)c->cap * sizeof(uint16_t);
}

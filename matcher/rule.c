/* Rule normalisation and the reference row evaluation; see rule.h. */
#include "matcher/rule.h"

#include <errno.h>
#include <string.h>

#include "matcher/bitset.h"

/* Sorts a small array in place and drops duplicates; returns the new length. */
static uint16_t rule_sort_unique(uint16_t *v, uint16_t n) {
    for (uint16_t i = 1; i < n; i++) {
        uint16_t x = v[i];
        uint16_t j = i;
        while (j > 0 && v[j - 1] > x) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
    uint16_t out = 0;
    for (uint16_t i = 0; i < n; i++) {
        if (out == 0 || v[out - 1] != v[i]) {
            v[out++] = v[i];
        }
    }
    return out;
}

static int rule_check_part(const uint16_t *v, uint16_t n, unsigned nbits) {
    for (uint16_t i = 0; i < n; i++) {
        if (v[i] >= nbits) {
            return -ERANGE;
        }
    }
    return 0;
}

int rule_normalize(rule_t *r, unsigned nbits) {
    if (r->nall > RULE_MAX_PART || r->nany > RULE_MAX_PART || r->nnone > RULE_MAX_PART) {
        return -ERANGE;
    }
    if (rule_check_part(r->all, r->nall, nbits) || rule_check_part(r->any, r->nany, nbits) ||
        rule_check_part(r->none, r->nnone, nbits)) {
        return -ERANGE;
    }
    r->nall = rule_sort_unique(r->all, r->nall);
    r->nany = rule_sort_unique(r->any, r->nany);
    r->nnone = rule_sort_unique(r->none, r->nnone);
    return 0;
}

bool rule_match_row(const rule_t *r, const uint64_t *row, size_t nwords) {
    for (uint16_t i = 0; i < r->nall; i++) {
        if (r->all[i] / 64 >= nwords || !bitset_test(row, r->all[i])) {
            return false;
        }
    }
    for (uint16_t i = 0; i < r->nnone; i++) {
        if (r->none[i] / 64 < nwords && bitset_test(row, r->none[i])) {
            return false;
        }
    }
    if (r->nany == 0) {
        return true;
    }
    for (uint16_t i = 0; i < r->nany; i++) {
        if (r->any[i] / 64 < nwords && bitset_test(row, r->any[i])) {
            return true;
        }
    }
    return false;
}

void rule_masks(const rule_t *r, uint64_t *all, uint64_t *any, uint64_t *none, size_t nwords) {
    memset(all, 0, nwords * sizeof *all);
    memset(any, 0, nwords * sizeof *any);
    memset(none, 0, nwords * sizeof *none);
    for (uint16_t i = 0; i < r->nall; i++) {
        if (r->all[i] / 64 < nwords) {
            bitset_set(all, r->all[i]);
        }
    }
    for (uint16_t i = 0; i < r->nany; i++) {
        if (r->any[i] / 64 < nwords) {
            bitset_set(any, r->any[i]);
        }
    }
    for (uint16_t i = 0; i < r->nnone; i++) {
        if (r->none[i] / 64 < nwords) {
            bitset_set(none, r->none[i]);
        }
    }
}

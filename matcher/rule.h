/* A targeting rule over enterprise tag bits: an enterprise matches when its profile
 * holds every bit of 'all', at least one bit of 'any' (when 'any' is not empty) and
 * no bit of 'none'. An empty rule matches every enterprise. Pure C. */
#ifndef HUIQI_MATCHER_RULE_H
#define HUIQI_MATCHER_RULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RULE_MAX_PART 64 /* cap on the tags in each of all / any / none */

typedef struct rule {
    uint16_t nall, nany, nnone;
    uint16_t all[RULE_MAX_PART];
    uint16_t any[RULE_MAX_PART];
    uint16_t none[RULE_MAX_PART];
} rule_t;

/* Sorts each part and removes duplicates. Returns 0, or -ERANGE when a bit is not
 * below 'nbits'. */
int rule_normalize(rule_t *r, unsigned nbits);

/* The reference evaluation against one profile row of 'nwords' words: slow and
 * obviously right, used by tests as the oracle and by callers with a single row. */
bool rule_match_row(const rule_t *r, const uint64_t *row, size_t nwords);

/* Fills the three masks (each 'nwords' words, zeroed here) from the rule. */
void rule_masks(const rule_t *r, uint64_t *all, uint64_t *any, uint64_t *none, size_t nwords);

#endif

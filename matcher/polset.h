/* The policy side of matching: a set of rules, indexed by tag so that one
 * enterprise's row is checked only against the policies that could fit it. Each
 * policy is filed under one "anchor": the rarest of its 'all' tags; a policy with no
 * 'all' tag is filed under each of its 'any' tags; one with neither is checked for
 * every row. A row then visits only the lists of the tags it holds.
 * Threading: polset_match may run on several threads when none writes. Pure C. */
#ifndef HUIQI_MATCHER_POLSET_H
#define HUIQI_MATCHER_POLSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "matcher/rule.h"

typedef struct polset polset_t;

/* A new empty set for rows of 'ntags' bits (1..4096). Free with polset_free. */
polset_t *polset_new(unsigned ntags);
void polset_free(polset_t *ps);

/* Inserts or replaces policy 'id' with rule 'r' (normalised, bits below ntags).
 * 'card', when not NULL, holds ntags tag frequencies used to pick the anchor.
 * Returns 0 or -ERANGE on a bit out of range. */
int polset_put(polset_t *ps, uint32_t id, const rule_t *r, const uint32_t *card);
/* Removes policy 'id'. Returns 0 or -ENOENT. */
int polset_del(polset_t *ps, uint32_t id);
bool polset_has(const polset_t *ps, uint32_t id);
size_t polset_size(const polset_t *ps);

/* Re-files every policy under the anchor that 'card' (ntags entries) now makes the
 * rarest. Results never depend on anchors; only speed does. */
void polset_reanchor(polset_t *ps, const uint32_t *card);

/* Writes to 'out' the ids (up to 'max', in no particular order) of the policies
 * whose rule 'row' (ceil(ntags / 64) words) satisfies, and returns how many match
 * in all (which may exceed 'max'). */
size_t polset_match(const polset_t *ps, const uint64_t *row, uint32_t *out, size_t max);

#endif

/* The enterprise index: every enterprise is an ordinal (a small integer handed out
 * by the store) with a profile row of tag bits, and every tag is a column over the
 * enterprises. Rows answer "which policies fit this enterprise"; columns answer
 * "which enterprises fit this rule". Both views are updated together by matcher_put
 * and matcher_del, so a reader never sees them disagree.
 *
 * Layout: the index keeps each enterprise at a position of its own, cut into
 * blocks of 65,536. Each block holds its rows, keys, a live bitmap and, per tag, a
 * container that is a sorted 16-bit array while the tag is sparse in the block and
 * a 1,024-word bitmap once it is dense, with a summary over the block's 64 extents
 * of 1,024 positions. matcher_relayout sorts the positions by a cluster key
 * (matcher_set_cluster: region, entity type, industry), so that a rule over those
 * tags reads a few blocks and extents instead of all of them; enterprises that
 * arrive later take free positions until the next relayout. Rule evaluation walks
 * the blocks, skipping what the summaries rule out, starting from the sparsest
 * required tag.
 *
 * Threading: reads (count, list, find, row) may run on several threads at once when
 * no thread writes. Pure C: libc only, no I/O, no logging. */
#ifndef HUIQI_MATCHER_MATCHER_H
#define HUIQI_MATCHER_MATCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "matcher/rule.h"

#define MATCHER_NONE       UINT32_MAX
#define MATCHER_MAX_ORD    (1u << 30) /* ordinals are below this */
#define MATCHER_MAX_TAGS   4096u      /* column count cap */
#define MATCHER_MAX_KEY    64u        /* key length cap, bytes */
#define MATCHER_MAX_GROUPS 250u       /* group-by tags (e.g. districts) cap */

typedef struct matcher matcher_t;

/* A new empty index for 'ntags' tag bits (1..MATCHER_MAX_TAGS) and keys of exactly
 * 'keylen' bytes (1..MATCHER_MAX_KEY). Free with matcher_free. */
matcher_t *matcher_new(unsigned ntags, unsigned keylen);
void matcher_free(matcher_t *m);

unsigned matcher_ntags(const matcher_t *m);
/* Words in a profile row: ceil(ntags / 64). */
size_t matcher_row_words(const matcher_t *m);
/* Live enterprises. */
uint32_t matcher_live(const matcher_t *m);
/* One past the highest ordinal ever stored. */
uint32_t matcher_span(const matcher_t *m);
/* Members of tag column 'tag' (0 when out of range). */
uint32_t matcher_tag_card(const matcher_t *m, unsigned tag);
/* Heap bytes held by rows, keys, columns and the key map. */
size_t matcher_bytes(const matcher_t *m);

/* Declares the group-by tags (e.g. one per district), in order; group g+1 is the
 * first of 'tags[g]' an enterprise holds, group 0 means none of them. Must be called
 * while the index is empty. Returns 0, -EBUSY when not empty, -ERANGE on a bad tag
 * or more than MATCHER_MAX_GROUPS tags. The array is copied. */
int matcher_set_groups(matcher_t *m, const uint16_t *tags, unsigned n);
unsigned matcher_ngroups(const matcher_t *m);

/* Declares the cluster key used by matcher_relayout: 'n' tags, tag 'tags[i]' at
 * level 'levels[i]' (0 .. 3, most significant first). An enterprise's key is, per
 * level, which of that level's tags it holds first (in tag order). At most 255 tags
 * a level. Returns 0 or -ERANGE. The arrays are copied; takes effect at the next
 * relayout. */
int matcher_set_cluster(matcher_t *m, const uint16_t *tags, const uint8_t *levels, unsigned n);
/* Lays every enterprise out again, sorted by (cluster key, ordinal). Ordinals,
 * keys, rows and every answer stay the same; only speed changes. Costs about
 * 150 ns an enterprise, and for a moment twice the memory of rows and keys. */
void matcher_relayout(matcher_t *m);
/* Starts filling an empty index from storage: until the next matcher_relayout,
 * puts and deletes keep only rows, keys, groups and the key map (find, row, key and
 * group answer; counts, lists and tag cardinalities do not), and the relayout then
 * builds the columns once, in order. Returns 0, or -EBUSY when not empty. */
int matcher_load_begin(matcher_t *m);
/* Sizes the key map for 'nkeys' enterprises at once (never shrinks it), so that a
 * load that knows how many are coming does not re-hash the keys as it grows. */
void matcher_reserve(matcher_t *m, uint32_t nkeys);
/* How many relayouts have run; enterprises added since the last one. */
uint64_t matcher_layout_count(const matcher_t *m);
uint32_t matcher_unsorted(const matcher_t *m);

/* Stores enterprise 'key' at ordinal 'ord' with profile 'row' (matcher_row_words
 * words; bits at or above ntags must be 0), replacing what 'ord' held. Returns 0,
 * -ERANGE when ord >= MATCHER_MAX_ORD, -EEXIST when the key is live at another
 * ordinal, -EINVAL when the row has bits beyond ntags. On error nothing changes. */
int matcher_put(matcher_t *m, uint32_t ord, const char *key, const uint64_t *row);
/* Removes ordinal 'ord'. Returns 0 or -ENOENT. */
int matcher_del(matcher_t *m, uint32_t ord);

/* The ordinal of 'key' (keylen bytes), or MATCHER_NONE. */
uint32_t matcher_find(const matcher_t *m, const char *key);
/* Borrowed, valid until the next write: the row / key (keylen bytes, not
 * NUL-terminated) of a live ordinal, or NULL. */
const uint64_t *matcher_row(const matcher_t *m, uint32_t ord);
const char *matcher_key(const matcher_t *m, uint32_t ord);
/* The group (0..ngroups) of a live ordinal; 0 when not live. */
unsigned matcher_group(const matcher_t *m, uint32_t ord);

/* Per-thread working memory for evaluation (about 180 KiB, and span / 8 bytes
 * more once it has listed). */
typedef struct matcher_scratch matcher_scratch_t;
matcher_scratch_t *matcher_scratch_new(void);
void matcher_scratch_free(matcher_scratch_t *s);

/* Number of live enterprises matching 'r' (normalised, bits below ntags). */
uint64_t matcher_count(const matcher_t *m, const rule_t *r, matcher_scratch_t *s);
/* Like matcher_count, and also fills 'groups[0..ngroups]' (ngroups + 1 entries,
 * zeroed here) with the matches per group. */
uint64_t matcher_count_groups(const matcher_t *m, const rule_t *r, matcher_scratch_t *s,
                              uint64_t *groups);
/* Writes up to 'max' matching ordinals >= 'from', in increasing order, to 'out' and
 * returns how many. '*next' is set to the ordinal to resume from, or MATCHER_NONE
 * when the walk reached the end. Positions are not in ordinal order, so every call
 * evaluates the whole rule and sorts the matches through a bitmap over the
 * ordinals in 's' (span / 8 bytes, kept for the next call): a count's cost plus a
 * few nanoseconds a match, whatever 'max'. */
size_t matcher_list(const matcher_t *m, const rule_t *r, matcher_scratch_t *s, uint32_t from,
                    uint32_t *out, size_t max, uint32_t *next);

#endif

/* The tag taxonomy: two vocabularies (enterprise profile tags and policy tags),
 * each an ordered list of tags with a stable code, Chinese and English names, a
 * major class and an optional external reference (a GB/T 2260 region code, a
 * GB/T 4754 industry code). A tag's position in its vocabulary is its bit, forever:
 * files may append tags but never move or drop one that stored data uses.
 *
 * The file format (tags/taxonomy.tsv) is UTF-8 text, TAB-separated, '#' comments:
 *   class <vocab> <class_code> <name> <name_en>
 *   tag   <vocab> <class_code> <code> <name> <name_en> <ref>
 * Pure C: the caller reads the file; this module parses bytes. */
#ifndef HUIQI_TAGS_TAXONOMY_H
#define HUIQI_TAGS_TAXONOMY_H

#include <stddef.h>
#include <stdint.h>

#define TAX_MAX_TAGS  4096 /* per vocabulary */
#define TAX_MAX_CODE  40   /* bytes in a code */
#define TAX_MAX_FIELD 200  /* bytes in a name or reference */

typedef enum tax_vocab { TAX_ENTERPRISE = 0, TAX_POLICY = 1, TAX_NVOCAB = 2 } tax_vocab_t;

typedef struct tax_class {
    const char *code, *name, *name_en;
} tax_class_t;

typedef struct tax_tag {
    const char *code, *name, *name_en, *ref;
    const tax_class_t *klass;
    uint16_t bit;
} tax_tag_t;

typedef struct taxonomy taxonomy_t;

/* Parses 'len' bytes. On success returns 0 and a new taxonomy in '*out' (free with
 * taxonomy_free). On a format error returns -EINVAL and writes "line N: reason" to
 * 'err' ('errlen' bytes). Both vocabularies must be non-empty. */
int taxonomy_parse(const char *buf, size_t len, taxonomy_t **out, char *err, size_t errlen);
void taxonomy_free(taxonomy_t *t);

/* "enterprise" / "policy" and back; -1 for an unknown name. */
const char *taxonomy_vocab_name(tax_vocab_t v);
int taxonomy_vocab_parse(const char *s, size_t len);

unsigned taxonomy_count(const taxonomy_t *t, tax_vocab_t v);
/* Borrowed, valid for the taxonomy's life; NULL when 'bit' is out of range. */
const tax_tag_t *taxonomy_tag(const taxonomy_t *t, tax_vocab_t v, unsigned bit);
/* The bit of 'code' ('len' bytes), or -ENOENT. */
int taxonomy_find(const taxonomy_t *t, tax_vocab_t v, const char *code, size_t len);
/* The first tag of class 'klass' whose ref equals 'ref', as a bit, or -ENOENT. */
int taxonomy_find_ref(const taxonomy_t *t, tax_vocab_t v, const char *klass, const char *ref,
                      size_t reflen);
unsigned taxonomy_class_count(const taxonomy_t *t, tax_vocab_t v);

#define TAX_CLUSTER_MAX 1024u /* entries taxonomy_cluster_tags may write */
/* The enterprise tags that order the in-memory index (matcher_set_cluster), in
 * taxonomy order: level 0 the class "region", 1 the class "entity", 2 industry
 * sections (class "industry", a one-letter ref), 3 industry divisions (a letter
 * and digits), at most 255 a level. These describe what an enterprise is rather
 * than how it is doing, so they rarely change, and most policies name one.
 * Writes up to 'max' tags with their levels and returns how many. */
unsigned taxonomy_cluster_tags(const taxonomy_t *t, uint16_t *tags, uint8_t *levels, unsigned max);
const tax_class_t *taxonomy_class_at(const taxonomy_t *t, tax_vocab_t v, unsigned i);

/* Checks the file against the bit map stored with the data: 'codes[i]' is the code
 * stored at bit i, for i < n. Returns 0 when every stored code sits at the same bit
 * in this taxonomy (new tags after them are fine), else -EINVAL with a message
 * naming the first offending tag in 'err'. */
int taxonomy_check_map(const taxonomy_t *t, tax_vocab_t v, const char *const *codes, unsigned n,
                       char *err, size_t errlen);

#endif

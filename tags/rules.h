/* Tagging rules: how an enterprise's attributes become profile tags. A rules file
 * (tags/rules.conf, replaceable with --rules) is read once into a small program:
 *
 *   let NAME = EXPR                       a named condition
 *   validity TAG Ny                       a qualification certificate lasts N years
 *   rule NAME: TAG when EXPR              derive TAG when EXPR holds
 *   rule NAME: lookup CLASS FIELD         the CLASS tag whose ref equals FIELD
 *   rule NAME: prefix CLASS FIELD         every CLASS tag whose ref prefixes FIELD
 *   rule NAME: qualifications             each valid qualification naming a tag
 *
 * EXPR: || && ! ( ) and comparisons == != < <= > >= ^= (starts with) over numbers,
 * "strings", fields (uscc region district industry employees revenue_10k age
 * entity) and functions has("tag"), has_class("class"), known(field),
 * qual("tag"). A comparison involving a missing field is false. Rules run in file
 * order; has() and has_class() see the explicit tags and what earlier rules
 * derived. Operator overrides apply last. Pure C. */
#ifndef HUIQI_TAGS_RULES_H
#define HUIQI_TAGS_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "tags/taxonomy.h"

#define RULES_MAX_QUALS     32
#define RULES_MAX_EXPLICIT  128
#define RULES_MAX_OVERRIDES 64
#define RULES_MAX_WORDS     (TAX_MAX_TAGS / 64)

typedef struct rules rules_t;

typedef struct rules_qual {
    uint16_t bit;   /* enterprise tag the certificate stands for */
    int32_t issued; /* DATE_NONE when not given */
    int32_t expires;
} rules_qual_t;

typedef struct rules_override {
    uint16_t bit;
    uint8_t value; /* 1: the tag is set, 0: the tag is removed */
} rules_override_t;

typedef struct rules_in {
    char uscc[19];        /* valid code, NUL-terminated */
    const char *region;   /* GB/T 2260 code or NULL */
    const char *industry; /* normalised GB/T 4754 code (e.g. "C3976") or NULL */
    int has_employees;
    double employees;
    int has_revenue;
    double revenue_10k;
    int32_t founded; /* DATE_NONE when unknown */
    const rules_qual_t *quals;
    unsigned nquals;
    const uint16_t *explicit_tags;
    unsigned nexplicit;
    const rules_override_t *overrides;
    unsigned noverrides;
} rules_in_t;

enum { RULES_SRC_RULE, RULES_SRC_EXPLICIT, RULES_SRC_OVERRIDE };

typedef struct rules_src {
    uint16_t bit;
    uint8_t kind;  /* RULES_SRC_* */
    uint16_t rule; /* RULES_SRC_RULE: index for rules_rule_name */
} rules_src_t;

typedef struct rules_out {
    uint64_t row[RULES_MAX_WORDS];
    rules_src_t src[TAX_MAX_TAGS];
    unsigned nsrc; /* one entry per set tag, in bit order */
    /* The first day after 'today' on which the derived tags may change by the
     * passing of time alone (an anniversary of founding, a certificate starting or
     * expiring), or DATE_NONE. */
    int32_t next_change;
} rules_out_t;

/* Parses a rules file against 'tax' (every tag and class named must exist). On
 * error returns -EINVAL with "line N: reason" in 'err'. */
int rules_parse(const char *buf, size_t len, const taxonomy_t *tax, rules_t **out, char *err,
                size_t errlen);
void rules_free(rules_t *r);
unsigned rules_count(const rules_t *r);
const char *rules_rule_name(const rules_t *r, unsigned i);
/* Years a qualification certificate for 'bit' lasts, or 0 when unlimited. */
int rules_validity_years(const rules_t *r, unsigned bit);

/* Derives the profile of one enterprise as of 'today'. */
void rules_derive(const rules_t *r, const rules_in_t *in, int32_t today, rules_out_t *out);

/* Whether a certificate is in force on 'today' under the rules' validity periods. */
int rules_qual_valid(const rules_t *r, const rules_qual_t *q, int32_t today);

/* Normalises a GB/T 4754 industry code: a section letter (any case) followed by
 * 2 to 4 digits, or 2 to 4 digits alone (the section is then inferred
 * from the division). Writes e.g. "C3976" to 'out' (at least 6 bytes). Returns 0 or
 * -EINVAL. */
int rules_industry_normalize(const char *in, size_t len, char *out);

#endif

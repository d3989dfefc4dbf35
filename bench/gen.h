/* The deterministic synthetic city for benchmarks: enterprises with realistic
 * attributes (valid credit codes, districts, industries, sizes, founding dates,
 * qualifications, explicit tags) whose profile rows come from the service's own
 * rules, so the in-process bench, the peers and an import into huiqid all see the
 * same profiles. Enterprise i and policy j depend only on (seed, i) / (seed, j):
 * the same bytes every run, generated in any order or in parallel. */
#ifndef HUIQI_BENCH_GEN_H
#define HUIQI_BENCH_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "matcher/rule.h"
#include "tags/rules.h"
#include "tags/taxonomy.h"

#define GEN_MAX_EXPLICIT 16
#define GEN_MAX_QUALS    4
#define GEN_MAX_INTEREST 4

typedef struct gen gen_t;

typedef struct gen_ent {
    char uscc[19];
    char name[96];
    char region[7]; /* "" when the enterprise did not report it */
    char industry[6];
    int employees;
    double revenue_10k;
    int32_t founded;
    rules_qual_t quals[GEN_MAX_QUALS];
    unsigned nquals;
    uint16_t explicit_tags[GEN_MAX_EXPLICIT];
    unsigned nexplicit;
    uint16_t interests[GEN_MAX_INTEREST];
    unsigned ninterests;
} gen_ent_t;

/* A generator over 'tax' and 'rules' (borrowed) for the given seed. 'today' fixes
 * the date used for ages and certificate validity (so output is reproducible). */
gen_t *gen_new(const taxonomy_t *tax, const rules_t *rules, uint64_t seed, int32_t today);
void gen_free(gen_t *g);

/* Enterprise 'i': its attributes, and its derived profile row in 'row' (the
 * matcher's width). */
void gen_enterprise(const gen_t *g, uint32_t i, gen_ent_t *e, uint64_t *row);
/* Policy 'j': a rule (1-4 all, 0-8 any, 0-2 none tags) and 1-3 policy tags. */
void gen_policy(const gen_t *g, uint32_t j, rule_t *r, uint16_t *ptags, unsigned *nptags);
/* Writes enterprise 'e' as one NDJSON line (with the trailing newline) into 'out'
 * (at least 2048 bytes); returns its length. */
size_t gen_ndjson(const gen_t *g, const gen_ent_t *e, char *out, size_t outlen);

#endif

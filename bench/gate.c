/* The work behind the performance gate (bench/gate.sh, `make perf-gate`): on a
 * data set written by build/bench/bench (--only-data), builds the index as huiqid
 * does once loaded (a put per enterprise, then the layout), then runs each measured
 * phase in a function of its own, so that callgrind can count the instructions of
 * each (--toggle-collect=gate_*). Instruction counts, unlike times, repeat exactly
 * for the same binary and data whatever else the machine does: a regression in the
 * hot paths shows as a larger count, and the gate compares it with a baseline. The
 * checksums printed guard against measuring a broken build. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/data.h"
#include "common/xalloc.h"
#include "matcher/matcher.h"
#include "matcher/polset.h"
#include "tags/date.h"
#include "tags/taxonomy.h"

extern const char huiqi_default_taxonomy[];
extern const char huiqi_default_taxonomy_end[];

/* The functions below are the gate's phases; noinline keeps each one a separate
 * function for callgrind to toggle on. */
#define GATE_PHASE __attribute__((noinline))
void gate_counts(const matcher_t *m, const bench_data_t *d, matcher_scratch_t *s, uint64_t *sum);
void gate_groups(const matcher_t *m, const bench_data_t *d, matcher_scratch_t *s, uint64_t *sum);
void gate_packages(const polset_t *ps, const bench_data_t *d, uint64_t *sum);
void gate_lists(const matcher_t *m, const bench_data_t *d, matcher_scratch_t *s, uint64_t *sum);

/* Every policy's audience count. */
GATE_PHASE void gate_counts(const matcher_t *m, const bench_data_t *d, matcher_scratch_t *s,
                            uint64_t *sum) {
    for (uint32_t p = 0; p < d->np; p++) {
        *sum += matcher_count(m, &d->rules[p], s);
    }
}

/* Every policy's audience by district. */
GATE_PHASE void gate_groups(const matcher_t *m, const bench_data_t *d, matcher_scratch_t *s,
                            uint64_t *sum) {
    uint64_t groups[MATCHER_MAX_GROUPS + 1];
    for (uint32_t p = 0; p < d->np; p++) {
        *sum += matcher_count_groups(m, &d->rules[p], s, groups) + groups[1];
    }
}

/* The packages of 20,000 enterprises (every n/20,000-th). */
GATE_PHASE void gate_packages(const polset_t *ps, const bench_data_t *d, uint64_t *sum) {
    uint32_t *ids = xmalloc(d->np * sizeof *ids);
    uint32_t step = d->n / 20000 ? d->n / 20000 : 1;
    for (uint32_t i = 0; i < d->n; i += step) {
        *sum += polset_match(ps, d->rows + (size_t)i * d->words, ids, d->np);
    }
    free(ids);
}

/* Every 20th policy's audience listed in ordinal order, 1,000 at a time, as a
 * push job walks it, and in one call. */
GATE_PHASE void gate_lists(const matcher_t *m, const bench_data_t *d, matcher_scratch_t *s,
                           uint64_t *sum) {
    uint32_t *out = xmalloc(((size_t)d->n + 1) * sizeof *out);
    for (uint32_t p = 0; p < d->np; p += 20) {
        uint32_t from = 0;
        uint32_t next = 0;
        while (next != MATCHER_NONE) {
            size_t k = matcher_list(m, &d->rules[p], s, from, out, 1000, &next);
            *sum += k ? out[k - 1] : 0;
            from = next;
        }
        *sum += matcher_list(m, &d->rules[p], s, 0, out, (size_t)d->n + 1, &next);
    }
    free(out);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: gate DATA_DIR N   (the data set of build/bench/bench)\n");
        return 2;
    }
    uint32_t n = (uint32_t)strtoul(argv[2], NULL, 10);
    bench_data_t d;
    if (bench_data_load(argv[1], 20230610, n, 2000, date_from_ymd(2026, 11, 22), &d) != 0) {
        fprintf(stderr, "gate: no data set for %u enterprises under %s\n", n, argv[1]);
        return 1;
    }
    taxonomy_t *tax;
    char err[256];
    if (taxonomy_parse(huiqi_default_taxonomy,
                       (size_t)(huiqi_default_taxonomy_end - huiqi_default_taxonomy), &tax, err,
                       sizeof err) != 0) {
        fprintf(stderr, "gate: %s\n", err);
        return 1;
    }
    unsigned ntags = taxonomy_count(tax, TAX_ENTERPRISE);
    matcher_t *m = matcher_new(ntags, 18);
    uint16_t ct[TAX_CLUSTER_MAX];
    uint8_t cl[TAX_CLUSTER_MAX];
    unsigned nct = taxonomy_cluster_tags(tax, ct, cl, TAX_CLUSTER_MAX);
    matcher_set_cluster(m, ct, cl, nct);
    uint16_t groups[MATCHER_MAX_GROUPS];
    unsigned ng = 0;
    for (unsigned i = 0; i < ntags && ng < MATCHER_MAX_GROUPS; i++) {
        if (strcmp(taxonomy_tag(tax, TAX_ENTERPRISE, i)->klass->code, "region") == 0) {
            groups[ng++] = (uint16_t)i;
        }
    }
    matcher_set_groups(m, groups, ng);
    for (uint32_t i = 0; i < n; i++) {
        matcher_put(m, i, d.keys + (size_t)i * 18, d.rows + (size_t)i * d.words);
    }
    matcher_relayout(m);
    uint32_t *card = xcalloc(ntags, sizeof *card);
    for (unsigned t = 0; t < ntags; t++) {
        card[t] = matcher_tag_card(m, t);
    }
    polset_t *ps = polset_new(ntags);
    for (uint32_t p = 0; p < d.np; p++) {
        polset_put(ps, p + 1, &d.rules[p], card);
    }
    matcher_scratch_t *s = matcher_scratch_new();
    uint64_t counts = 0, grouped = 0, packages = 0, lists = 0;
    gate_counts(m, &d, s, &counts);
    gate_groups(m, &d, s, &grouped);
    gate_packages(ps, &d, &packages);
    gate_lists(m, &d, s, &lists);
    uint64_t truth = 0;
    for (uint32_t p = 0; p < d.np; p++) {
        truth += d.truth[p];
    }
    printf("checksum counts %llu (truth %llu) groups %llu packages %llu lists %llu\n",
           (unsigned long long)counts, (unsigned long long)truth, (unsigned long long)grouped,
           (unsigned long long)packages, (unsigned long long)lists);
    int ok = counts == truth;
    matcher_scratch_free(s);
    polset_free(ps);
    free(card);
    matcher_free(m);
    taxonomy_free(tax);
    bench_data_free(&d);
    return ok ? 0 : 1;
}

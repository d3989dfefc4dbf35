/* huiqi in-process matching benchmark. Generates (or reloads) the synthetic city,
 * builds the column index and the policy set, checks every policy's count against
 * a row scan, then measures: one policy's audience count (median, p99), listing a
 * ~100k audience, all audiences on two threads, one enterprise's package. Writes
 * the data set for the peers (bench/peers) and, on request, the NDJSON for import.
 * Prints "key value" lines that bench/run.sh turns into docs/benchmarks.md. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/data.h"
#include "bench/gen.h"
#include "common/xalloc.h"
#include "matcher/bitset.h"
#include "matcher/matcher.h"
#include "matcher/polset.h"
#include "tags/date.h"
#include "tags/rules.h"
#include "tags/taxonomy.h"

extern const char huiqi_default_taxonomy[];
extern const char huiqi_default_taxonomy_end[];
extern const char huiqi_default_rules[];
extern const char huiqi_default_rules_end[];

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t pct(uint64_t *v, size_t n, double p) {
    qsort(v, n, sizeof *v, cmp_u64);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

/* Times every policy's count (one warm-up pass, then the best of three passes
 * over all policies) into 'lat'; returns how many counts disagree with 'truth'. */
static int time_counts(const matcher_t *m, const bench_data_t *d, const uint64_t *truth,
                       uint64_t *lat) {
    matcher_scratch_t *s = matcher_scratch_new();
    uint32_t np = d->np;
    for (uint32_t p = 0; p < np; p++) {
        matcher_count(m, &d->rules[p], s); /* warm-up */
    }
    int bad = 0;
    for (int rep = 0; rep < 3; rep++) {
        for (uint32_t p = 0; p < np; p++) {
            uint64_t a = now_ns();
            uint64_t c = matcher_count(m, &d->rules[p], s);
            uint64_t b = now_ns();
            if (rep == 0 || b - a < lat[p]) {
                lat[p] = b - a;
            }
            if (c != truth[p]) {
                if (bad++ < 5) {
                    fprintf(stderr, "MISMATCH policy %u: columns %llu, row scan %llu\n", p + 1,
                            (unsigned long long)c, (unsigned long long)truth[p]);
                }
            }
        }
    }
    matcher_scratch_free(s);
    return bad;
}

static long rss_kb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, field, strlen(field)) == 0) {
            v = strtol(line + strlen(field) + 1, NULL, 10);
        }
    }
    if (f) {
        fclose(f);
    }
    return v;
}

/* ---------------------------------------------------------------------------
 * Generation on two threads
 * ------------------------------------------------------------------------- */

typedef struct gen_job {
    const gen_t *g;
    bench_data_t *d;
    uint32_t from, to;
    FILE *ndjson; /* only with one thread */
} gen_job_t;

static void *gen_worker(void *arg) {
    gen_job_t *j = arg;
    gen_ent_t e;
    for (uint32_t i = j->from; i < j->to; i++) {
        gen_enterprise(j->g, i, &e, j->d->rows + (size_t)i * j->d->words);
        memcpy(j->d->keys + (size_t)i * 18, e.uscc, 18);
    }
    return NULL;
}

static void gen_all(const gen_t *g, bench_data_t *d) {
    pthread_t t[2];
    gen_job_t jobs[2];
    uint32_t half = d->n / 2;
    for (int k = 0; k < 2; k++) {
        jobs[k] = (gen_job_t){g, d, k ? half : 0, k ? d->n : half, NULL};
        pthread_create(&t[k], NULL, gen_worker, &jobs[k]);
    }
    for (int k = 0; k < 2; k++) {
        pthread_join(t[k], NULL);
    }
}

static int write_ndjson(const gen_t *g, uint32_t n, const char *path) {
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "bench: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    uint64_t row[MATCHER_MAX_TAGS / 64];
    gen_ent_t e;
    char line[4096];
    for (uint32_t i = 0; i < n; i++) {
        gen_enterprise(g, i, &e, row);
        size_t len = gen_ndjson(g, &e, line, sizeof line);
        fwrite(line, 1, len, f);
    }
    return fclose(f);
}

/* ---------------------------------------------------------------------------
 * Parallel audiences
 * ------------------------------------------------------------------------- */

typedef struct count_job {
    const matcher_t *m;
    const rule_t *rules;
    uint64_t *counts;
    uint32_t from, to;
} count_job_t;

static void *count_worker(void *arg) {
    count_job_t *j = arg;
    matcher_scratch_t *s = matcher_scratch_new();
    for (uint32_t p = j->from; p < j->to; p++) {
        j->counts[p] = matcher_count(j->m, &j->rules[p], s);
    }
    matcher_scratch_free(s);
    return NULL;
}

static double count_all_parallel(const matcher_t *m, const rule_t *rules, uint32_t np,
                                 uint64_t *counts, int threads) {
    pthread_t t[8];
    count_job_t jobs[8];
    double t0 = now_s();
    for (int k = 0; k < threads; k++) {
        /* Interleave by halves of a shuffled order would be fairer; policies are in
         * random order already, so contiguous halves balance well. */
        jobs[k] = (count_job_t){m, rules, counts, np * (uint32_t)k / (uint32_t)threads,
                                np * (uint32_t)(k + 1) / (uint32_t)threads};
        pthread_create(&t[k], NULL, count_worker, &jobs[k]);
    }
    for (int k = 0; k < threads; k++) {
        pthread_join(t[k], NULL);
    }
    return now_s() - t0;
}

/* ---------------------------------------------------------------------------
 * Main
 * ------------------------------------------------------------------------- */

static void usage(void) {
    fprintf(stderr, "usage: bench [--n N] [--policies P] [--seed S] [--data DIR] [--ndjson FILE]\n"
                    "             [--policies-json FILE] [--today YYYY-MM-DD] [--only-data]\n");
}

/* Writes the policies as a JSON array of POST /v1/policies bodies. */
static int write_policies_json(const taxonomy_t *tax, const gen_t *g, uint32_t np,
                               const char *path) {
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "bench: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    fputs("[\n", f);
    for (uint32_t p = 0; p < np; p++) {
        rule_t r;
        uint16_t pt[4];
        unsigned nt;
        gen_policy(g, p, &r, pt, &nt);
        fprintf(f, "{\"title\":\"bench policy %u\",\"level\":\"city\",\"tags\":[", p + 1);
        for (unsigned k = 0; k < nt; k++) {
            fprintf(f, "%s\"%s\"", k ? "," : "", taxonomy_tag(tax, TAX_POLICY, pt[k])->code);
        }
        fputs("],\"rule\":{", f);
        const uint16_t *parts[3] = {r.all, r.any, r.none};
        const uint16_t lens[3] = {r.nall, r.nany, r.nnone};
        static const char *const names[3] = {"all", "any", "none"};
        for (int k = 0; k < 3; k++) {
            fprintf(f, "%s\"%s\":[", k ? "," : "", names[k]);
            for (uint16_t i = 0; i < lens[k]; i++) {
                fprintf(f, "%s\"%s\"", i ? "," : "",
                        taxonomy_tag(tax, TAX_ENTERPRISE, parts[k][i])->code);
            }
            fputs("]", f);
        }
        fprintf(f, "}}%s\n", p + 1 < np ? "," : "");
    }
    fputs("]\n", f);
    return fclose(f);
}

int main(int argc, char **argv) {
    uint32_t n = 1110000;
    uint32_t np = 2000;
    uint64_t seed = 20230610; /* the day the Wuxi platform launched */
    const char *dir = "var/bench";
    const char *ndjson = NULL;
    const char *pjson = NULL;
    int only_data = 0;
    int32_t today = date_from_ymd(2026, 11, 22);
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--n") == 0 && a + 1 < argc) {
            n = (uint32_t)strtoul(argv[++a], NULL, 10);
        } else if (strcmp(argv[a], "--policies") == 0 && a + 1 < argc) {
            np = (uint32_t)strtoul(argv[++a], NULL, 10);
        } else if (strcmp(argv[a], "--seed") == 0 && a + 1 < argc) {
            seed = strtoull(argv[++a], NULL, 10);
        } else if (strcmp(argv[a], "--data") == 0 && a + 1 < argc) {
            dir = argv[++a];
        } else if (strcmp(argv[a], "--ndjson") == 0 && a + 1 < argc) {
            ndjson = argv[++a];
        } else if (strcmp(argv[a], "--policies-json") == 0 && a + 1 < argc) {
            pjson = argv[++a];
        } else if (strcmp(argv[a], "--only-data") == 0) {
            only_data = 1;
        } else if (strcmp(argv[a], "--today") == 0 && a + 1 < argc) {
            if (date_parse(argv[a + 1], strlen(argv[a + 1]), &today)) {
                usage();
                return 2;
            }
            a++;
        } else {
            usage();
            return 2;
        }
    }
    if (n < 1000 || np < 10) {
        usage();
        return 2;
    }
    taxonomy_t *tax;
    rules_t *rules;
    char err[256];
    if (taxonomy_parse(huiqi_default_taxonomy,
                       (size_t)(huiqi_default_taxonomy_end - huiqi_default_taxonomy), &tax, err,
                       sizeof err) ||
        rules_parse(huiqi_default_rules, (size_t)(huiqi_default_rules_end - huiqi_default_rules),
                    tax, &rules, err, sizeof err)) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    unsigned ntags = taxonomy_count(tax, TAX_ENTERPRISE);
    gen_t *g = gen_new(tax, rules, seed, today);
    bench_data_t d;
    double t0 = now_s();
    int cached = bench_data_load(dir, seed, n, np, today, &d) == 0;
    if (!cached) {
        bench_data_init(&d, seed, n, np, (uint32_t)bitset_words(ntags), today);
        gen_all(g, &d);
        for (uint32_t p = 0; p < np; p++) {
            unsigned nt;
            uint16_t pt[4];
            gen_policy(g, p, &d.rules[p], pt, &nt);
        }
    }
    double t_gen = now_s() - t0;
    printf("data_enterprises %u\ndata_policies %u\ndata_seed %llu\ndata_generate_s %.2f%s\n", n, np,
           (unsigned long long)seed, t_gen, cached ? " (cached)" : "");
    if (ndjson && write_ndjson(g, n, ndjson) != 0) {
        return 1;
    }
    if (pjson && write_policies_json(tax, g, np, pjson) != 0) {
        return 1;
    }

    /* Build the index as the service does, one put per enterprise. */
    long rss0 = rss_kb("VmRSS:");
    t0 = now_s();
    matcher_t *m = matcher_new(ntags, 18);
    uint16_t groups[16];
    unsigned ng = 0;
    for (unsigned i = 0; i < ntags && ng < 16; i++) {
        if (strcmp(taxonomy_tag(tax, TAX_ENTERPRISE, i)->klass->code, "region") == 0) {
            groups[ng++] = (uint16_t)i;
        }
    }
    matcher_set_groups(m, groups, ng);
    for (uint32_t i = 0; i < n; i++) {
        matcher_put(m, i, d.keys + (size_t)i * 18, d.rows + (size_t)i * d.words);
    }
    double t_build = now_s() - t0;
    uint32_t *card = xcalloc(ntags, sizeof *card);
    uint64_t tagsum = 0;
    unsigned above10 = 0;
    for (unsigned t = 0; t < ntags; t++) {
        card[t] = matcher_tag_card(m, t);
        tagsum += card[t];
        above10 += card[t] * 10u > n;
    }
    polset_t *ps = polset_new(ntags);
    for (uint32_t p = 0; p < np; p++) {
        polset_put(ps, p + 1, &d.rules[p], card);
    }
    printf("index_build_s %.2f\nindex_bytes %zu\nindex_rss_growth_kb %ld\n", t_build,
           matcher_bytes(m), rss_kb("VmRSS:") - rss0);
    printf("tags_per_enterprise %.2f\ntags_above_10pct %u\n", (double)tagsum / n, above10);

    /* Ground truth: every row against every policy through the policy set. */
    uint64_t *truth = xcalloc(np, sizeof *truth);
    uint32_t *ids = xmalloc(np * sizeof *ids);
    t0 = now_s();
    for (uint32_t i = 0; i < n; i++) {
        size_t k = polset_match(ps, d.rows + (size_t)i * d.words, ids, np);
        for (size_t q = 0; q < k; q++) {
            truth[ids[q] - 1]++;
        }
    }
    double t_scan = now_s() - t0;
    printf("rowscan_all_policies_s %.3f\n", t_scan);
    if (only_data) {
        if (!cached && bench_data_save(dir, &d, truth) != 0) {
            fprintf(stderr, "bench: could not save the data set under %s\n", dir);
            return 1;
        }
        printf("data_file %s\n", bench_data_path(dir, seed, n, np));
        return 0;
    }

    /* One policy at a time: first over the index as it filled (ordinal order), for
     * comparison, then laid out by the cluster key as huiqid does once loaded. */
    uint64_t *lat = xcalloc(np, sizeof *lat);
    uint64_t *tmp = xmalloc(np * sizeof *tmp);
    if (time_counts(m, &d, truth, lat)) {
        fprintf(stderr, "bench: policies disagree between columns and rows\n");
        return 1;
    }
    memcpy(tmp, lat, np * sizeof *tmp);
    printf("count_unsorted_median_ns %llu\n", (unsigned long long)pct(tmp, np, 0.5));
    uint16_t ct[TAX_CLUSTER_MAX];
    uint8_t cl[TAX_CLUSTER_MAX];
    unsigned nct = taxonomy_cluster_tags(tax, ct, cl, TAX_CLUSTER_MAX);
    matcher_set_cluster(m, ct, cl, nct);
    t0 = now_s();
    matcher_relayout(m);
    printf("index_layout_s %.3f\nindex_bytes_laid_out %zu\n", now_s() - t0, matcher_bytes(m));
    if (time_counts(m, &d, truth, lat)) {
        fprintf(stderr, "bench: policies disagree between columns and rows after the layout\n");
        return 1;
    }
    matcher_scratch_t *s = matcher_scratch_new();
    uint64_t sorted[4];
    memcpy(tmp, truth, np * sizeof *tmp);
    sorted[0] = pct(tmp, np, 0.5);
    sorted[1] = pct(tmp, np, 0.9);
    sorted[2] = tmp[np - 1];
    printf("audience_median %llu\naudience_p90 %llu\naudience_max %llu\n",
           (unsigned long long)sorted[0], (unsigned long long)sorted[1],
           (unsigned long long)sorted[2]);
    memcpy(tmp, lat, np * sizeof *tmp);
    /* Percentiles first: pct() sorts, and the maximum is the last after sorting
     * (arguments of one call are evaluated in no fixed order). */
    uint64_t c50 = pct(tmp, np, 0.5), c99 = pct(tmp, np, 0.99), cmax = tmp[np - 1];
    printf("count_median_ns %llu\ncount_p99_ns %llu\ncount_max_ns %llu\n", (unsigned long long)c50,
           (unsigned long long)c99, (unsigned long long)cmax);
    uint64_t serial = 0;
    for (uint32_t p = 0; p < np; p++) {
        serial += lat[p];
    }
    printf("count_all_serial_ms %.2f\n", (double)serial / 1e6);

    /* All audiences on both cores (best of five). */
    double best = 1e9;
    uint64_t *pc = xcalloc(np, sizeof *pc);
    for (int rep = 0; rep < 5; rep++) {
        double t = count_all_parallel(m, d.rules, np, pc, 2);
        best = t < best ? t : best;
    }
    for (uint32_t p = 0; p < np; p++) {
        if (pc[p] != truth[p]) {
            fprintf(stderr, "bench: parallel count differs for policy %u\n", p + 1);
            return 1;
        }
    }
    printf("count_all_2threads_ms %.2f\n", best * 1e3);

    /* Listing the audience closest to 100,000. */
    uint32_t pl = 0;
    for (uint32_t p = 0; p < np; p++) {
        uint64_t dp = truth[p] > 100000 ? truth[p] - 100000 : 100000 - truth[p];
        uint64_t dl = truth[pl] > 100000 ? truth[pl] - 100000 : 100000 - truth[pl];
        if (dp < dl) {
            pl = p;
        }
    }
    uint32_t *out = xmalloc((truth[pl] + 1) * sizeof *out);
    uint64_t lbest = UINT64_MAX;
    for (int rep = 0; rep < 7; rep++) {
        uint32_t next;
        uint64_t a = now_ns();
        size_t k = matcher_list(m, &d.rules[pl], s, 0, out, truth[pl] + 1, &next);
        uint64_t b = now_ns();
        if (k != truth[pl] || next != MATCHER_NONE) {
            fprintf(stderr, "bench: listing returned %zu of %llu\n", k,
                    (unsigned long long)truth[pl]);
            return 1;
        }
        lbest = b - a < lbest ? b - a : lbest;
    }
    printf("list_policy %u\nlist_matches %llu\nlist_us %.1f\n", pl + 1,
           (unsigned long long)truth[pl], (double)lbest / 1e3);

    /* One enterprise's package: per-call time, minus the clock's own cost. */
    enum { SAMPLES = 200000 };
    uint64_t *pl_ns = xmalloc(SAMPLES * sizeof *pl_ns);
    uint64_t *clk = xmalloc(SAMPLES * sizeof *clk);
    uint64_t x = 88172645463325252ull;
    uint64_t matched = 0;
    for (int k = 0; k < SAMPLES; k++) {
        uint64_t a = now_ns();
        uint64_t b = now_ns();
        clk[k] = b - a;
    }
    uint64_t clock_cost = pct(clk, SAMPLES, 0.5);
    for (int k = 0; k < SAMPLES; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        const uint64_t *row = d.rows + (size_t)(x % n) * d.words;
        uint64_t a = now_ns();
        size_t c = polset_match(ps, row, ids, np);
        uint64_t b = now_ns();
        matched += c;
        pl_ns[k] = b - a > clock_cost ? b - a - clock_cost : 0;
    }
    uint64_t p50 = pct(pl_ns, SAMPLES, 0.5), p99 = pct(pl_ns, SAMPLES, 0.99);
    printf("package_median_ns %llu\npackage_p99_ns %llu\npackage_avg_matches %.1f\n"
           "clock_overhead_ns %llu\n",
           (unsigned long long)p50, (unsigned long long)p99, (double)matched / SAMPLES,
           (unsigned long long)clock_cost);
    printf("process_rss_kb %ld\nprocess_hwm_kb %ld\n", rss_kb("VmRSS:"), rss_kb("VmHWM:"));

    if (!cached && bench_data_save(dir, &d, truth) != 0) {
        fprintf(stderr, "bench: could not save the data set under %s\n", dir);
    }
    matcher_scratch_free(s);
    polset_free(ps);
    matcher_free(m);
    gen_free(g);
    rules_free(rules);
    taxonomy_free(tax);
    bench_data_free(&d);
    free(card);
    free(truth);
    free(ids);
    free(lat);
    free(tmp);
    free(pc);
    free(out);
    free(pl_ns);
    free(clk);
    return 0;
}

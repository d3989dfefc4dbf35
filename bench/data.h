/* The benchmark data set on disk, shared by the in-process bench and the peers:
 * rows (profile bits), keys (credit codes), policies (rules) and the expected
 * audience count of every policy, under one directory. */
#ifndef HUIQI_BENCH_DATA_H
#define HUIQI_BENCH_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "matcher/rule.h"

typedef struct bench_data {
    uint64_t seed;
    uint32_t n, np, words;
    int32_t today;
    uint64_t *rows;  /* n * words */
    char *keys;      /* n * 18 */
    rule_t *rules;   /* np */
    uint64_t *truth; /* np expected counts (after load; NULL before save) */
} bench_data_t;

void bench_data_init(bench_data_t *d, uint64_t seed, uint32_t n, uint32_t np, uint32_t words,
                     int32_t today);
/* Loads DIR/data-<seed>-<n>-<np>.bin; returns 0, or -1 when absent or different. */
int bench_data_load(const char *dir, uint64_t seed, uint32_t n, uint32_t np, int32_t today,
                    bench_data_t *d);
int bench_data_save(const char *dir, const bench_data_t *d, const uint64_t *truth);
void bench_data_free(bench_data_t *d);
/* The path of the data file for these parameters (static buffer). */
const char *bench_data_path(const char *dir, uint64_t seed, uint32_t n, uint32_t np);

#endif

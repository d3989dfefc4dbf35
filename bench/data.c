/* Benchmark data file; see data.h. Layout: a header of eight 64-bit fields
 * (magic, seed, n, np, words, today, 0, 0), rows, keys, rules, counts. */
#include "bench/data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/xalloc.h"

#define DATA_MAGIC UINT64_C(0x31544144495148) /* "HQIDAT1" */

void bench_data_init(bench_data_t *d, uint64_t seed, uint32_t n, uint32_t np, uint32_t words,
                     int32_t today) {
    memset(d, 0, sizeof *d);
    d->seed = seed;
    d->n = n;
    d->np = np;
    d->words = words;
    d->today = today;
    d->rows = xcalloc((size_t)n * words, sizeof *d->rows);
    d->keys = xcalloc((size_t)n, 18);
    d->rules = xcalloc(np, sizeof *d->rules);
}

const char *bench_data_path(const char *dir, uint64_t seed, uint32_t n, uint32_t np) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/data-%llu-%u-%u.bin", dir, (unsigned long long)seed, n, np);
    return path;
}

static int data_read(FILE *f, void *p, size_t n) {
    return fread(p, 1, n, f) == n ? 0 : -1;
}

int bench_data_load(const char *dir, uint64_t seed, uint32_t n, uint32_t np, int32_t today,
                    bench_data_t *d) {
    FILE *f = fopen(bench_data_path(dir, seed, n, np), "rb");
    if (f == NULL) {
        return -1;
    }
    uint64_t h[8];
    if (data_read(f, h, sizeof h) || h[0] != DATA_MAGIC || h[1] != seed || h[2] != n ||
        h[3] != np || (int32_t)h[5] != today) {
        fclose(f);
        return -1;
    }
    bench_data_init(d, seed, n, np, (uint32_t)h[4], today);
    d->truth = xcalloc(np, sizeof *d->truth);
    int rc = data_read(f, d->rows, (size_t)n * d->words * sizeof *d->rows) ||
             data_read(f, d->keys, (size_t)n * 18) ||
             data_read(f, d->rules, (size_t)np * sizeof *d->rules) ||
             data_read(f, d->truth, (size_t)np * sizeof *d->truth);
    fclose(f);
    if (rc) {
        bench_data_free(d);
        return -1;
    }
    return 0;
}

int bench_data_save(const char *dir, const bench_data_t *d, const uint64_t *truth) {
    mkdir(dir, 0755);
    const char *path = bench_data_path(dir, d->seed, d->n, d->np);
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (f == NULL) {
        return -1;
    }
    uint64_t h[8] = {DATA_MAGIC, d->seed, d->n, d->np, d->words, (uint64_t)(uint32_t)d->today,
                     0,          0};
    int bad =
        fwrite(h, sizeof h, 1, f) != 1 ||
        fwrite(d->rows, sizeof *d->rows, (size_t)d->n * d->words, f) != (size_t)d->n * d->words ||
        fwrite(d->keys, 18, d->n, f) != d->n ||
        fwrite(d->rules, sizeof *d->rules, d->np, f) != d->np ||
        fwrite(truth, sizeof *truth, d->np, f) != d->np;
    if (fclose(f) != 0 || bad) {
        remove(tmp);
        return -1;
    }
    return rename(tmp, path);
}

void bench_data_free(bench_data_t *d) {
    free(d->rows);
    free(d->keys);
    free(d->rules);
    free(d->truth);
    memset(d, 0, sizeof *d);
}

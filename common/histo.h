/* A fixed-bucket latency histogram (seconds), as Prometheus histograms count:
 * buckets here are per interval; the exporter makes them cumulative. Pure libc. */
#ifndef HUIQI_COMMON_HISTO_H
#define HUIQI_COMMON_HISTO_H

#include <stdint.h>

#define HISTO_NB 16 /* the last bucket is +Inf */

/* Upper bounds of the buckets, in seconds (the last is unused: +Inf). */
extern const double histo_bounds[HISTO_NB];

typedef struct histo {
    uint64_t n[HISTO_NB];
    uint64_t count;
    double sum;
} histo_t;

void histo_add(histo_t *h, double seconds);

#endif

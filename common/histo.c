/* Latency histogram; see histo.h. */
#include "common/histo.h"

/* From 100 µs (a Redis round trip on loopback, a cached read) to 10 s (a slow
 * import batch): roughly 1-2.5-5 steps. */
const double histo_bounds[HISTO_NB] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                       0.05,   0.1,     0.25,   0.5,   1,      2.5,   10,   0};

void histo_add(histo_t *h, double seconds) {
    unsigned i = 0;
    while (i < HISTO_NB - 1 && seconds > histo_bounds[i]) {
        i++;
    }
    h->n[i]++;
    h->count++;
    h->sum += seconds;
}

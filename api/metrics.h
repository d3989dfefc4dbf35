/* Request metrics for GET /metrics (Prometheus text format 0.0.4): requests by
 * route and status, latency histograms by route. Plain counters updated on the
 * loop thread; nothing global. */
#ifndef HUIQI_API_METRICS_H
#define HUIQI_API_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "api/router.h"
#include "common/histo.h"
#include "common/sbuf.h"

typedef struct metrics metrics_t;

/* Counters for 'nroutes' routes (index = position in the route table). */
metrics_t *metrics_new(size_t nroutes);
void metrics_free(metrics_t *m);

/* One answered request: route index, or -1 when no route matched. */
void metrics_request(metrics_t *m, long route, int status, double seconds);

/* Appends the HTTP families (huiqi_http_requests_total,
 * huiqi_http_request_duration_seconds). */
void metrics_render_http(const metrics_t *m, sbuf_t *b, const route_t *routes);

/* Appends one histogram family member: name_bucket{labels,le=...}, _sum, _count.
 * 'labels' is "" or e.g. "route=\"x\"". */
void metrics_histo(sbuf_t *b, const char *name, const char *labels, const histo_t *h);

#endif

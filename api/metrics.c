/* Request metrics; see metrics.h. */
#include "api/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

#define METRICS_STATUSES 24 /* distinct statuses kept per route; the rest go to 0 */

typedef struct route_stats {
    struct {
        int status;
        uint64_t n;
    } st[METRICS_STATUSES];
    histo_t lat;
} route_stats_t;

struct metrics {
    size_t nroutes;
    route_stats_t *r; /* nroutes + 1: the last is "no route" */
};

metrics_t *metrics_new(size_t nroutes) {
    metrics_t *m = xcalloc(1, sizeof *m);
    m->nroutes = nroutes;
    m->r = xcalloc(nroutes + 1, sizeof *m->r);
    return m;
}

void metrics_free(metrics_t *m) {
    if (m) {
        free(m->r);
        free(m);
    }
}

void metrics_request(metrics_t *m, long route, int status, double seconds) {
    route_stats_t *r = &m->r[route < 0 || (size_t)route >= m->nroutes ? m->nroutes : (size_t)route];
    histo_add(&r->lat, seconds);
    for (int i = 0; i < METRICS_STATUSES; i++) {
        if (r->st[i].status == status || r->st[i].status == 0) {
            r->st[i].status = status;
            r->st[i].n++;
            return;
        }
    }
    /* Never reached with the statuses huiqid answers; counted somewhere anyway. */
    r->st[METRICS_STATUSES - 1].n++;
}

static void metrics_le(char *out, size_t len, unsigned i) {
    if (i == HISTO_NB - 1) {
        snprintf(out, len, "+Inf");
    } else {
        snprintf(out, len, "%g", histo_bounds[i]);
    }
}

void metrics_histo(sbuf_t *b, const char *name, const char *labels, const histo_t *h) {
    uint64_t cum = 0;
    const char *sep = labels[0] ? "," : "";
    for (unsigned i = 0; i < HISTO_NB; i++) {
        char le[24];
        metrics_le(le, sizeof le, i);
        cum += h->n[i];
        sbuf_addf(b, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels, sep, le,
                  (unsigned long long)cum);
    }
    const char *o = labels[0] ? "{" : "", *c = labels[0] ? "}" : "";
    sbuf_addf(b, "%s_sum%s%s%s %.9g\n", name, o, labels, c, h->sum);
    sbuf_addf(b, "%s_count%s%s%s %llu\n", name, o, labels, c, (unsigned long long)h->count);
}

void metrics_render_http(const metrics_t *m, sbuf_t *b, const route_t *routes) {
    sbuf_adds(b, "# HELP huiqi_http_requests_total Requests answered, by route and status.\n"
                 "# TYPE huiqi_http_requests_total counter\n");
    for (size_t i = 0; i <= m->nroutes; i++) {
        const char *name = i < m->nroutes ? routes[i].name : "none";
        for (int k = 0; k < METRICS_STATUSES && m->r[i].st[k].status; k++) {
            sbuf_addf(b, "huiqi_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n", name,
                      m->r[i].st[k].status, (unsigned long long)m->r[i].st[k].n);
        }
    }
    sbuf_adds(b, "# HELP huiqi_http_request_duration_seconds From the request's headers "
                 "to its answer being queued, by route.\n"
                 "# TYPE huiqi_http_request_duration_seconds histogram\n");
    for (size_t i = 0; i <= m->nroutes; i++) {
        if (m->r[i].lat.count == 0) {
            continue;
        }
        char labels[96];
        snprintf(labels, sizeof labels, "route=\"%s\"", i < m->nroutes ? routes[i].name : "none");
        metrics_histo(b, "huiqi_http_request_duration_seconds", labels, &m->r[i].lat);
    }
}

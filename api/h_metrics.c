/* GET /metrics: what the service is doing, in the Prometheus text format. Most
 * figures are counters kept in memory; the queue depth is read from Redis (one
 * read-only script) and left out while Redis is down. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "api/app.h"
#include "api/metrics.h"
#include "common/sbuf.h"
#include "common/xalloc.h"

static void mx_gauge(sbuf_t *b, const char *name, const char *help, const char *type, double v) {
    sbuf_addf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.15g\n", name, help, name, type, name, v);
}

static void mx_process(sbuf_t *b, const app_t *app) {
    long page = sysconf(_SC_PAGESIZE);
    unsigned long size = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &rss) != 2) {
            rss = size = 0;
        }
        fclose(f);
    }
    mx_gauge(b, "process_resident_memory_bytes", "Resident memory.", "gauge",
             (double)rss * (double)page);
    mx_gauge(b, "process_virtual_memory_bytes", "Virtual memory.", "gauge",
             (double)size * (double)page);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        mx_gauge(b, "process_cpu_seconds_total", "User and system CPU time.", "counter",
                 (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
    }
    unsigned fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        while (readdir(d)) {
            fds++;
        }
        closedir(d);
        mx_gauge(b, "process_open_fds", "Open file descriptors.", "gauge",
                 fds > 3 ? fds - 3 : 0); /* ".", ".." and the directory's own */
    }
    mx_gauge(b, "process_start_time_seconds", "Start time, seconds since 1970.", "gauge",
             (double)app->started_ms / 1000.0);
}

typedef struct mx_ctx {
    app_t *app;
    api_req_t *req;
} mx_ctx_t;

static void mx_render(app_t *app, api_req_t *req, const store_kv_t *q, size_t nq) {
    sbuf_t b;
    sbuf_init(&b, 32768);
    sbuf_addf(&b,
              "# HELP huiqi_build_info The running version.\n# TYPE huiqi_build_info gauge\n"
              "huiqi_build_info{version=\"%s\"} 1\n",
              HUIQI_VERSION);
    metrics_render_http(app->metrics, &b, app_route_table());
    mx_gauge(&b, "huiqi_http_connections", "Open client connections.", "gauge",
             app->srv ? server_conns(app->srv) : 0);

    store_stats_t ss;
    store_get_stats(app->store, &ss);
    mx_gauge(&b, "huiqi_redis_up", "1 while the Redis connection is up.", "gauge",
             store_redis_up(app->store) ? 1 : 0);
    mx_gauge(&b, "huiqi_redis_commands_total", "Commands sent to Redis.", "counter",
             (double)ss.redis_commands);
    sbuf_addf(&b,
              "# HELP huiqi_redis_errors_total Redis failures: error replies, commands "
              "lost with a connection, deadlines missed.\n"
              "# TYPE huiqi_redis_errors_total counter\n"
              "huiqi_redis_errors_total{kind=\"reply\"} %llu\n"
              "huiqi_redis_errors_total{kind=\"lost\"} %llu\n"
              "huiqi_redis_errors_total{kind=\"timeout\"} %llu\n",
              (unsigned long long)ss.redis_errors, (unsigned long long)ss.redis_failed,
              (unsigned long long)ss.redis_timeouts);
    mx_gauge(&b, "huiqi_redis_connects_total", "Connections made to Redis.", "counter",
             (double)ss.redis_connects);
    mx_gauge(&b, "huiqi_redis_disconnects_total", "Redis connections lost.", "counter",
             (double)ss.redis_disconnects);
    mx_gauge(&b, "huiqi_redis_inflight", "Redis commands awaiting a reply.", "gauge",
             ss.redis_inflight);
    sbuf_adds(&b, "# HELP huiqi_redis_roundtrip_seconds Send to reply of Redis commands.\n"
                  "# TYPE huiqi_redis_roundtrip_seconds histogram\n");
    metrics_histo(&b, "huiqi_redis_roundtrip_seconds", "", &ss.redis_rtt);
    mx_gauge(&b, "huiqi_store_reloads_total", "Full reloads of the mirror from Redis.", "counter",
             (double)ss.reloads);
    mx_gauge(&b, "huiqi_store_load_seconds", "Duration of the last full load.", "gauge",
             (double)ss.load_ms / 1000.0);

    const matcher_t *m = store_matcher(app->store);
    mx_gauge(&b, "huiqi_enterprises", "Enterprises registered.", "gauge", m ? matcher_live(m) : 0);
    unsigned nst[3] = {0, 0, 0};
    for (const store_policy_t *p = store_policy_next(app->store, 0); p;
         p = store_policy_next(app->store, p->id)) {
        if (p->status >= 0 && p->status < 3) {
            nst[p->status]++;
        }
    }
    sbuf_addf(&b,
              "# HELP huiqi_policies Policies by status.\n# TYPE huiqi_policies gauge\n"
              "huiqi_policies{status=\"draft\"} %u\nhuiqi_policies{status=\"published\"} %u\n"
              "huiqi_policies{status=\"withdrawn\"} %u\n",
              nst[0], nst[1], nst[2]);

    push_stats_t ps;
    push_get_stats(app->push, &ps);
    mx_gauge(&b, "huiqi_jobs_running", "Push jobs running in this process.", "gauge",
             ps.jobs_running);
    if (nq) {
        const char *v;
        sbuf_adds(&b, "# HELP huiqi_push_queue_depth Deliveries waiting in Redis: queued to "
                      "send, or waiting for a retry.\n# TYPE huiqi_push_queue_depth gauge\n");
        v = store_kv_get(q, nq, "queued", NULL);
        sbuf_addf(&b, "huiqi_push_queue_depth{state=\"queued\"} %s\n", v ? v : "0");
        v = store_kv_get(q, nq, "retrying", NULL);
        sbuf_addf(&b, "huiqi_push_queue_depth{state=\"retrying\"} %s\n", v ? v : "0");
    }
    mx_gauge(&b, "huiqi_push_inflight", "Webhook requests in flight.", "gauge", ps.inflight);
    mx_gauge(&b, "huiqi_push_pending", "Deliveries read from the queue, not yet settled.", "gauge",
             ps.pending);
    mx_gauge(&b, "huiqi_webhook_attempts_total", "Webhook requests made.", "counter",
             (double)ps.attempts);
    sbuf_addf(&b,
              "# HELP huiqi_deliveries_total Deliveries settled or rescheduled, by "
              "outcome.\n# TYPE huiqi_deliveries_total counter\n"
              "huiqi_deliveries_total{outcome=\"delivered\"} %llu\n"
              "huiqi_deliveries_total{outcome=\"retry\"} %llu\n"
              "huiqi_deliveries_total{outcome=\"dead\"} %llu\n"
              "huiqi_deliveries_total{outcome=\"expired\"} %llu\n",
              (unsigned long long)ps.delivered, (unsigned long long)ps.retried,
              (unsigned long long)ps.dead, (unsigned long long)ps.expired);
    mx_gauge(&b, "huiqi_webhooks_disabled_total", "Endpoints disabled (410 or failing).", "counter",
             (double)ps.disabled_endpoints);
    mx_process(&b, app);
    server_respond_take(req, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, b.p, b.len);
}

static void mx_on_queue(void *arg, int rc, const store_kv_t *kv, size_t n) {
    mx_ctx_t *c = arg;
    mx_render(c->app, c->req, rc == 0 ? kv : NULL, rc == 0 ? n : 0);
    free(c);
}

void h_metrics(app_t *app, api_req_t *req) {
    mx_ctx_t *c = xcalloc(1, sizeof *c);
    c->app = app;
    c->req = req;
    if (store_queue_stats(app->store, mx_on_queue, c) != 0) {
        free(c);
        mx_render(app, req, NULL, 0); /* Redis is down: what is known locally */
    }
}

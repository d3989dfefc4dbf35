/* The delivery engine; see push.h. Each tick reads a batch from the queue (first
 * the entries this consumer took before a crash or a dropped connection), files
 * them under their endpoint, and starts as many requests as the per-endpoint
 * limits, rates and the global cap allow. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/sbuf.h"
#include "common/xalloc.h"
#include "push/internal.h"
#include "push/sign.h"

/* PUSH_MOVE_EVERY_MS: due retries are moved back into the queue this often, so
 * one comes late by at most that and a tick, well inside the schedule's +-10%
 * jitter. Congestion (see defer_congested): an endpoint's throughput is measured
 * over periods of PUSH_RATE_PERIOD_MS; while the read window is full it may hold
 * about PUSH_HOLD_MS of it in memory (and at least its in-flight limit); the rest
 * waits in the retry set, the first of it PUSH_DEFER_MS from now. */
#define PUSH_TICK_MS        20
#define PUSH_MOVE_EVERY_MS  100
#define PUSH_ENT_INFLIGHT   4
#define PUSH_RATE_PERIOD_MS 250
#define PUSH_HOLD_MS        1000
#define PUSH_DEFER_MS       1000
/* Deferred items this process remembers, all endpoints together (about 100
 * bytes each), so it can call them back early (see recall_deferred); the rest
 * come back when due. */
#define PUSH_RECALL_KNOWN    65536
#define PUSH_RECALL_EVERY_MS 100

typedef struct pitem {
    struct pitem *next;
    push_t *p;
    push_ep_t *ep;
    char *sid;
    char *f[9]; /* id ev wh pol u job url added removed */
    int retry;
    unsigned attempts; /* attempts before this one */
    char *body;
    size_t body_len;
    int first; /* no record yet: keep the body and the fields */
    int sent;  /* a request was made in this attempt */
    uint64_t start_ms;
    int64_t due_ms; /* when deferred (congestion): when it is due again */
} pitem_t;

enum { F_ID, F_EV, F_WH, F_POL, F_U, F_JOB, F_URL, F_ADDED, F_REMOVED, F_N };
static const char *const item_fields[F_N] = {"id",  "ev",  "wh",    "pol",    "u",
                                             "job", "url", "added", "removed"};

typedef struct push_deferred {
    char *id;
    int64_t due_ms;
} push_deferred_t;

struct push_ep {
    char *key;
    pitem_t *head, *tail;
    unsigned queued; /* items from head to tail */
    unsigned inflight;
    double tokens;
    uint64_t last_ns;
    /* Throughput: items settled in the period that began at period_ns; 'rate'
     * (per second) is that of the last full period, known once one has passed
     * since the endpoint became busy. */
    uint64_t period_ns;
    unsigned period_done;
    double rate;
    int rate_known;
    unsigned max; /* its in-flight limit, as last seen */
    /* Its deferred items, oldest first: ids with the due time each was given. */
    push_deferred_t *dq;
    size_t dq_head, dq_n, dq_cap;
    int64_t recall_ms;
    unsigned recall_n; /* how many the next recall takes back */
};

void push_opts_default(push_opts_t *o) {
    memset(o, 0, sizeof *o);
    static const int64_t sched[] = {5000, 300000, 1800000, 7200000, 18000000, 36000000, 36000000};
    memcpy(o->schedule_ms, sched, sizeof sched);
    o->nschedule = sizeof sched / sizeof sched[0];
    o->timeout_ms = 15000;
    o->disable_after_ms = 5LL * 86400 * 1000;
    o->max_inflight = 256;
    o->endpoint_inflight = 16;
}

int push_schedule_parse(push_opts_t *o, const char *text) {
    char buf[256];
    if (strlen(text) >= sizeof buf) {
        return -EINVAL;
    }
    strcpy(buf, text);
    unsigned n = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *end = NULL;
        double v = strtod(t, &end);
        int64_t mul = 1000;
        if (*end == 'm' && end[1] == 's') {
            mul = 1;
            end += 2;
        } else if (*end == 's') {
            end++;
        } else if (*end == 'm') {
            mul = 60000;
            end++;
        } else if (*end == 'h') {
            mul = 3600000;
            end++;
        } else if (*end == 'd') {
            mul = 86400000;
            end++;
        }
        if (end == t || *end != '\0' || v < 0 || n == 16) {
            return -EINVAL;
        }
        o->schedule_ms[n++] = (int64_t)(v * (double)mul);
    }
    o->nschedule = n;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Endpoints
 * ------------------------------------------------------------------------- */

static uint64_t ep_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    }
    return h;
}

static push_ep_t *ep_get(push_t *p, const char *key) {
    if ((p->neps + 1) * 2 > p->capeps) {
        size_t cap = p->capeps ? p->capeps * 2 : 64;
        push_ep_t **t = xcalloc(cap, sizeof *t);
        for (size_t i = 0; i < p->capeps; i++) {
            if (p->eps[i]) {
                size_t h = ep_hash(p->eps[i]->key) & (cap - 1);
                while (t[h]) {
                    h = (h + 1) & (cap - 1);
                }
                t[h] = p->eps[i];
            }
        }
        free(p->eps);
        p->eps = t;
        p->capeps = cap;
    }
    size_t h = ep_hash(key) & (p->capeps - 1);
    while (p->eps[h] && strcmp(p->eps[h]->key, key) != 0) {
        h = (h + 1) & (p->capeps - 1);
    }
    if (p->eps[h] == NULL) {
        push_ep_t *e = xcalloc(1, sizeof *e);
        e->key = xstrdup(key);
        e->tokens = 1;
        e->last_ns = uv_hrtime();
        p->eps[h] = e;
        p->neps++;
    }
    return p->eps[h];
}

static void ep_limits(push_t *p, const pitem_t *it, unsigned *max, double *rate) {
    *max = p->o.endpoint_inflight;
    *rate = 0;
    if (strcmp(it->f[F_WH], "ent") == 0) {
        *max = PUSH_ENT_INFLIGHT;
        return;
    }
    const store_webhook_t *w = store_webhook(p->store, (uint32_t)strtoul(it->f[F_WH], NULL, 10));
    if (w) {
        *max = w->inflight ? w->inflight : p->o.endpoint_inflight;
        *rate = w->rate;
    }
}

/* Closes the endpoint's measuring period once it is PUSH_RATE_PERIOD_MS old. */
static void ep_rate_update(push_ep_t *ep, uint64_t now_ns) {
    uint64_t span = now_ns - ep->period_ns;
    if (span >= (uint64_t)PUSH_RATE_PERIOD_MS * 1000000u) {
        ep->rate = (double)ep->period_done * 1e9 / (double)span;
        ep->rate_known = 1;
        ep->period_ns = now_ns;
        ep->period_done = 0;
    }
}

static void ep_append(push_ep_t *ep, pitem_t *it) {
    if (ep->head == NULL && ep->inflight == 0) {
        /* Idle until now: how fast it went before says nothing of how fast it
         * goes, so measure afresh. */
        ep->period_ns = uv_hrtime();
        ep->period_done = 0;
        ep->rate_known = 0;
    }
    it->next = NULL;
    if (ep->tail) {
        ep->tail->next = it;
    } else {
        ep->head = it;
    }
    ep->tail = it;
    ep->queued++;
}

static pitem_t *ep_pop(push_ep_t *ep) {
    pitem_t *it = ep->head;
    ep->head = it->next;
    if (ep->head == NULL) {
        ep->tail = NULL;
    }
    ep->queued--;
    return it;
}

/* ---------------------------------------------------------------------------
 * Items
 * ------------------------------------------------------------------------- */

static void item_free(pitem_t *it) {
    for (int i = 0; i < F_N; i++) {
        free(it->f[i]);
    }
    free(it->sid);
    free(it->body);
    free(it);
}

static int64_t now_ms(void) {
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void json_esc(sbuf_t *s, const char *str) {
    for (; *str; str++) {
        unsigned char c = (unsigned char)*str;
        if (c == '"' || c == '\\') {
            sbuf_add(s, "\\", 1);
            sbuf_add(s, str, 1);
        } else if (c < 0x20) {
            sbuf_addf(s, "\\u%04x", c);
        } else {
            sbuf_add(s, str, 1);
        }
    }
}

static void item_done_record(void *arg, int rc, uint64_t v) {
    (void)v;
    pitem_t *it = arg;
    push_t *p = it->p;
    /* On failure to record, the entry stays pending in Redis and comes back with
     * the next recovery read: a delivery is never dropped here. */
    if (rc) {
        p->recover = 1;
    }
    p->pending--;
    item_free(it);
}

/* One line of a delivery's attempt log, as JSON, into 'a' (initialised here). */
static void attempt_line(sbuf_t *a, unsigned attempt, const char *outcome, long status,
                         double latency_ms, const char *error) {
    sbuf_init(a, 256);
    time_t t = (time_t)(now_ms() / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    sbuf_addf(a, "{\"attempt\":%u,\"at\":\"%04d-%02d-%02dT%02d:%02d:%02dZ\",\"outcome\":\"%s\"",
              attempt, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
              tm.tm_sec, outcome);
    if (status) {
        sbuf_addf(a, ",\"status\":%ld", status);
    }
    if (latency_ms > 0) {
        sbuf_addf(a, ",\"latency_ms\":%.1f", latency_ms);
    }
    if (error && *error) {
        sbuf_adds(a, ",\"error\":\"");
        json_esc(a, error);
        sbuf_adds(a, "\"");
    }
    sbuf_adds(a, "}");
}

/* Writes the delivery's 'state', 'attempts', last 'status' and 'error' and the
 * attempt log 'line', and acknowledges the queue entry in the same step. */
static void item_record(pitem_t *it, const char *state, const char *line, unsigned attempts,
                        long status, const char *error, int64_t next_due) {
    push_t *p = it->p;
    const char *fields[2 * F_N];
    unsigned nf = 0;
    if (it->first) {
        for (int i = 1; i < F_N; i++) {
            if (it->f[i][0]) {
                fields[nf++] = item_fields[i];
                fields[nf++] = it->f[i];
            }
        }
    }
    store_dlv_rec_t r = {
        .id = it->f[F_ID],
        .sid = it->sid,
        .outcome = state,
        .fields = fields,
        .nfields = nf,
        /* The body is kept for the attempts still to come, so they send the same
         * bytes. A notice delivered at once needs no copy (a batch is ~150 KB):
         * replaying it later renders it afresh. */
        .body = it->first && strcmp(state, "delivered") != 0 ? it->body : NULL,
        .body_len = it->body_len,
        .attempt = line,
        .next_due_ms = next_due,
        .attempts = attempts,
        .now_ms = now_ms(),
        .job = it->f[F_JOB],
        .wh = it->f[F_WH],
        .status = status,
        .error = error,
    };
    if (store_dlv_record(p->store, &r, item_done_record, it) != 0) {
        item_done_record(it, -EIO, 0);
    }
}

/* Records the outcome of an attempt (or of a notice that never needed one). */
static void item_finish(pitem_t *it, const char *outcome, long status, double latency_ms,
                        const char *error, int64_t next_due) {
    push_t *p = it->p;
    if (strcmp(outcome, "delivered") == 0) {
        p->stats.delivered++;
    } else if (strcmp(outcome, "retry") == 0) {
        p->stats.retried++;
    } else if (strcmp(outcome, "expired") == 0) {
        p->stats.expired++;
    } else {
        p->stats.dead++;
    }
    /* Only a request that was made counts (an expired or disabled notice that
     * never left has made none). */
    unsigned attempts = it->attempts + (it->sent ? 1 : 0);
    sbuf_t a;
    attempt_line(&a, attempts, outcome, status, latency_ms, error);
    item_record(it, outcome, a.p, attempts, status, error, next_due);
    sbuf_free(&a);
}

static void ep_release(push_t *p, push_ep_t *ep) {
    ep->inflight--;
    p->inflight--;
    ep->period_done++;
    ep_rate_update(ep, uv_hrtime());
    if (ep->head) {
        /* More is waiting for this endpoint: send it on the next loop turn, not
         * the next tick (the tick alone would cap an endpoint at inflight / 20 ms). */
        push_kick(p);
    }
}

/* Marks a webhook healthy or failing, disabling it after too long. */
static void health(push_t *p, const pitem_t *it, int ok, const char *disable_reason) {
    if (strcmp(it->f[F_WH], "ent") == 0) {
        return;
    }
    uint32_t id = (uint32_t)strtoul(it->f[F_WH], NULL, 10);
    const store_webhook_t *w = store_webhook(p->store, id);
    if (w == NULL) {
        return;
    }
    int64_t now = now_ms();
    if (disable_reason) {
        p->stats.disabled_endpoints++;
        store_wh_health(p->store, id, w->failing_since_ms ? w->failing_since_ms : now, 1,
                        disable_reason);
    } else if (ok) {
        if (w->failing_since_ms) {
            store_wh_health(p->store, id, 0, 0, NULL);
        }
    } else if (w->failing_since_ms == 0) {
        store_wh_health(p->store, id, now, 0, NULL);
    } else if (now - w->failing_since_ms > p->o.disable_after_ms) {
        char why[128];
        snprintf(why, sizeof why, "failing for more than %lld hours",
                 (long long)(p->o.disable_after_ms / 3600000));
        p->stats.disabled_endpoints++;
        store_wh_health(p->store, id, w->failing_since_ms, 1, why);
    }
}

static int64_t jittered(push_t *p, int64_t ms) {
    p->rng ^= p->rng << 13;
    p->rng ^= p->rng >> 7;
    p->rng ^= p->rng << 17;
    /* +-10%, so retries from one outage do not arrive as one wave. */
    int64_t span = ms / 5;
    return span ? ms - ms / 10 + (int64_t)(p->rng % (uint64_t)span) : ms;
}

static void on_http(void *arg, const pushhttp_result_t *r) {
    pitem_t *it = arg;
    push_t *p = it->p;
    ep_release(p, it->ep);
    if (r->outcome == PUSHHTTP_OK && r->status >= 200 && r->status < 300) {
        health(p, it, 1, NULL);
        item_finish(it, "delivered", r->status, r->latency_ms, NULL, 0);
        return;
    }
    char err[200];
    if (r->outcome == PUSHHTTP_OK) {
        snprintf(err, sizeof err, "the receiver answered %ld", r->status);
    } else {
        snprintf(err, sizeof err, "%s", r->error);
    }
    if (r->outcome == PUSHHTTP_OK && r->status == 410) {
        health(p, it, 0, "the receiver answered 410 Gone");
        item_finish(it, "dead", r->status, r->latency_ms, err, 0);
        return;
    }
    if (r->outcome == PUSHHTTP_BLOCKED) {
        /* A policy refusal, not a passing fault: retrying cannot help. */
        item_finish(it, "dead", 0, r->latency_ms, err, 0);
        return;
    }
    health(p, it, 0, NULL);
    unsigned done = it->attempts + 1;
    if (done > p->o.nschedule) {
        item_finish(it, "dead", r->status, r->latency_ms, err, 0);
        return;
    }
    int64_t delay = jittered(p, p->o.schedule_ms[done - 1]);
    if (r->retry_after_s >= 0 && (r->status == 429 || r->status == 503)) {
        int64_t ra = r->retry_after_s * 1000;
        if (ra > delay) {
            delay = ra;
        }
    }
    item_finish(it, "retry", r->status, r->latency_ms, err, now_ms() + delay);
}

/* Builds the signature header for webhook 'w' (or the enterprise secret). */
static int sign_all(push_t *p, const pitem_t *it, int64_t ts, char *out, size_t outlen) {
    out[0] = '\0';
    const char *secrets;
    const char *sk = "";
    if (strcmp(it->f[F_WH], "ent") == 0) {
        secrets = p->app.enterprise_secret(p->app.app);
    } else {
        const store_webhook_t *w =
            store_webhook(p->store, (uint32_t)strtoul(it->f[F_WH], NULL, 10));
        if (w == NULL) {
            return -ENOENT;
        }
        secrets = w->secrets;
        sk = w->sk;
    }
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", secrets ? secrets : "");
    char *save = NULL;
    int64_t now = now_ms();
    size_t used = 0;
    for (char *tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *colon = strchr(tok, ':');
        if (colon) {
            *colon = '\0';
            if (strtoll(colon + 1, NULL, 10) < now) {
                continue; /* a rotated-out secret past its grace period */
            }
        }
        whsig_secret_t s;
        char sig[128];
        if (whsig_secret_parse(tok, &s) != 0 ||
            whsig_sign_v1(&s, it->f[F_ID], ts, it->body, it->body_len, sig, sizeof sig) != 0) {
            continue;
        }
        used += (size_t)snprintf(out + used, outlen - used, "%s%s", used ? " " : "", sig);
        if (used >= outlen) {
            return -ENOSPC;
        }
    }
    if (sk && sk[0]) {
        char sig[160];
        if (whsig_sign_v1a(sk, it->f[F_ID], ts, it->body, it->body_len, sig, sizeof sig) == 0) {
            used += (size_t)snprintf(out + used, outlen - used, "%s%s", used ? " " : "", sig);
        }
    }
    return used ? 0 : -EINVAL;
}

static void item_send(pitem_t *it) {
    push_t *p = it->p;
    const char *url = it->f[F_URL];
    if (strcmp(it->f[F_WH], "ent") != 0) {
        const store_webhook_t *w =
            store_webhook(p->store, (uint32_t)strtoul(it->f[F_WH], NULL, 10));
        if (w == NULL || w->disabled) {
            ep_release(p, it->ep);
            item_finish(it, w ? "disabled" : "dead", 0, 0,
                        w ? "the endpoint is disabled" : "the webhook was deleted", 0);
            return;
        }
        url = w->url;
    }
    int64_t ts = now_ms() / 1000;
    char sig[WHSIG_MAX_HEADER + 16];
    if (sign_all(p, it, ts, sig, sizeof sig) != 0) {
        ep_release(p, it->ep);
        item_finish(it, "dead", 0, 0, "no usable signing secret", 0);
        return;
    }
    char h_id[200], h_ts[64], h_sig[WHSIG_MAX_HEADER + 40], h_ev[96];
    snprintf(h_id, sizeof h_id, "webhook-id: %s", it->f[F_ID]);
    snprintf(h_ts, sizeof h_ts, "webhook-timestamp: %lld", (long long)ts);
    snprintf(h_sig, sizeof h_sig, "webhook-signature: %s", sig);
    snprintf(h_ev, sizeof h_ev, "huiqi-event: %s", it->f[F_EV]);
    const char *hdrs[4] = {h_id, h_ts, h_sig, h_ev};
    p->stats.attempts++;
    it->sent = 1;
    if (pushhttp_post(p->http, url, hdrs, 4, it->body, it->body_len, p->o.timeout_ms, on_http,
                      it) != 0) {
        it->sent = 0;
        ep_release(p, it->ep);
        item_finish(it, "retry", 0, 0, "could not start the request",
                    now_ms() + p->o.schedule_ms[0]);
    }
}

static void on_rendered(void *ctx, int rc, const char *body, size_t len, const char *why) {
    pitem_t *it = ctx;
    push_t *p = it->p;
    if (rc == -ECANCELED) {
        ep_release(p, it->ep);
        item_finish(it, "expired", 0, 0, why ? why : "the policy is no longer open", 0);
        return;
    }
    if (rc) {
        ep_release(p, it->ep);
        item_finish(it, "retry", 0, 0, why ? why : "could not build the notice",
                    now_ms() + (p->o.nschedule ? p->o.schedule_ms[0] : 5000));
        return;
    }
    if (it->body == NULL) {
        it->body = xmemdup(body, len);
        it->body_len = len;
    }
    item_send(it);
}

/* What the renderer sees of a queue entry. */
static push_item_t item_view(const pitem_t *it) {
    push_item_t pi = {it->f[F_ID],  it->f[F_EV],  it->f[F_WH],    it->f[F_POL],     it->f[F_U],
                      it->f[F_JOB], it->f[F_URL], it->f[F_ADDED], it->f[F_REMOVED], 0};
    if (it->sid) {
        pi.queued_ms = strtoll(it->sid, NULL, 10); /* "<ms>-<seq>" */
    }
    return pi;
}

static void on_record(void *arg, int rc, const store_kv_t *kv, size_t n) {
    pitem_t *it = arg;
    push_t *p = it->p;
    size_t blen = 0;
    const char *body = rc == 0 ? store_kv_get(kv, n, "body", &blen) : NULL;
    const char *att = rc == 0 ? store_kv_get(kv, n, "attempts", NULL) : NULL;
    if (rc == 0 && body) {
        it->body = xmemdup(body, blen);
        it->body_len = blen;
        it->attempts = att ? (unsigned)strtoul(att, NULL, 10) : 0;
        it->first = 0;
    } else if (rc == 0 || rc == -ENOENT) {
        it->first = 1; /* a replayed entry whose record expired: start afresh */
    } else {
        ep_release(p, it->ep);
        p->pending--;
        p->recover = 1; /* leave it pending; read it again later */
        item_free(it);
        return;
    }
    push_item_t pi = item_view(it);
    p->app.render(p->app.app, &pi, it->body, it->body_len, on_rendered, it);
}

static void item_begin(pitem_t *it) {
    push_t *p = it->p;
    it->ep->inflight++;
    p->inflight++;
    it->start_ms = (uint64_t)now_ms();
    if (it->retry) {
        /* Retries and replays send the body kept from the first attempt, so the
         * receiver sees the same bytes under the same webhook-id. */
        if (store_dlv_get(p->store, it->f[F_ID], on_record, it) != 0) {
            ep_release(p, it->ep);
            p->pending--;
            p->recover = 1;
            item_free(it);
        }
        return;
    }
    it->first = 1;
    push_item_t pi = item_view(it);
    p->app.render(p->app.app, &pi, NULL, 0, on_rendered, it);
}

/* ---------------------------------------------------------------------------
 * Congestion
 *
 * Entries are read from one queue in order, at most 4 x max_inflight of them
 * held in memory. An endpoint that cannot keep up (hanging, slow, rate-limited)
 * would fill that window with its own backlog, and nothing behind it, for any
 * other endpoint, would be read. So while the window is full, an endpoint held
 * back by its own limits (in-flight or rate) and holding more than about
 * PUSH_HOLD_MS of its measured throughput (and more than its in-flight limit)
 * hands the excess back to Redis: recorded as a retry that is not an attempt
 * ("deferred" in its log), due about when the endpoint could have sent it. An
 * endpoint that drains faster than that is never deferred.
 * ------------------------------------------------------------------------- */

#define PUSH_DEFER_WHY "deferred: its endpoint is congested"

/* Records a deferral of 'it' with 'attempts', last 'status' and 'error' kept. */
static void defer_record(pitem_t *it, unsigned attempts, long status, const char *error) {
    sbuf_t a;
    attempt_line(&a, attempts, "deferred", 0, 0, PUSH_DEFER_WHY);
    item_record(it, "retry", a.p, attempts, status, error, it->due_ms);
    sbuf_free(&a);
}

static void on_defer_fetched(void *arg, int rc, const store_kv_t *kv, size_t n) {
    pitem_t *it = arg;
    push_t *p = it->p;
    const char *att = rc == 0 ? store_kv_get(kv, n, "attempts", NULL) : NULL;
    if (rc != 0 && rc != -ENOENT) {
        p->pending--;
        p->recover = 1; /* leave it pending; read it again later */
        item_free(it);
    } else if (att == NULL) {
        it->first = 1; /* no record (it expired): make one from the queue entry */
        defer_record(it, 0, 0, PUSH_DEFER_WHY);
    } else {
        size_t elen = 0;
        const char *st = store_kv_get(kv, n, "last_status", NULL);
        const char *err = store_kv_get(kv, n, "last_error", &elen);
        char ebuf[200];
        snprintf(ebuf, sizeof ebuf, "%.*s", (int)elen, err ? err : "");
        defer_record(it, (unsigned)strtoul(att, NULL, 10), st ? strtol(st, NULL, 10) : 0, ebuf);
    }
}

static void item_defer(pitem_t *it) {
    if (it->retry) {
        /* Its record holds the attempts made so far, which the deferral keeps. */
        if (store_dlv_get(it->p->store, it->f[F_ID], on_defer_fetched, it) != 0) {
            on_defer_fetched(it, -EIO, NULL, 0);
        }
        return;
    }
    it->first = 1;
    defer_record(it, 0, 0, PUSH_DEFER_WHY);
}

/* Remembers that 'id' of 'ep' was deferred until 'due_ms'. */
static void ep_remember(push_t *p, push_ep_t *ep, const char *id, int64_t due_ms) {
    if (p->deferred_known >= PUSH_RECALL_KNOWN) {
        return;
    }
    if (ep->dq_head + ep->dq_n == ep->dq_cap) {
        if (ep->dq_head > 0) {
            memmove(ep->dq, ep->dq + ep->dq_head, ep->dq_n * sizeof *ep->dq);
            ep->dq_head = 0;
        } else {
            ep->dq_cap = ep->dq_cap ? ep->dq_cap * 2 : 64;
            ep->dq = xrealloc(ep->dq, ep->dq_cap * sizeof *ep->dq);
        }
    }
    ep->dq[ep->dq_head + ep->dq_n++] = (push_deferred_t){xstrdup(id), due_ms};
    p->deferred_known++;
}

/* Forgets the oldest remembered deferred item of 'ep'. */
static void ep_forget(push_t *p, push_ep_t *ep) {
    free(ep->dq[ep->dq_head].id);
    ep->dq_head++;
    ep->dq_n--;
    p->deferred_known--;
    if (ep->dq_n == 0) {
        ep->dq_head = 0;
    }
}

/* Keeps the oldest 'keep' (at least 1) of the endpoint's queued items and defers
 * the rest, due PUSH_DEFER_MS from now and then 'per_s' a second. */
static void ep_defer_excess(push_ep_t *ep, unsigned keep, double per_s) {
    pitem_t *last = ep->head;
    for (unsigned i = 1; i < keep; i++) {
        last = last->next;
    }
    pitem_t *it = last->next;
    last->next = NULL;
    ep->tail = last;
    ep->queued = keep;
    int64_t now = now_ms();
    for (unsigned k = 0; it; k++) {
        pitem_t *next = it->next;
        it->next = NULL;
        it->due_ms = now + PUSH_DEFER_MS + (int64_t)((double)k * 1000.0 / per_s);
        ep_remember(it->p, ep, it->f[F_ID], it->due_ms);
        item_defer(it);
        it = next;
    }
}

/* How many items 'ep' may hold: about PUSH_HOLD_MS of its throughput, and at
 * least its in-flight limit 'max'. */
static unsigned ep_keep(const push_ep_t *ep, unsigned max) {
    double hold = ep->rate_known ? ep->rate * PUSH_HOLD_MS / 1000.0 : 0;
    return hold > (double)max ? (unsigned)hold : max;
}

/* Called while the read window is full. */
static void defer_congested(push_t *p) {
    uint64_t now = uv_hrtime();
    for (size_t i = 0; i < p->capeps; i++) {
        push_ep_t *ep = p->eps[i];
        if (ep == NULL || ep->head == NULL) {
            continue;
        }
        ep_rate_update(ep, now);
        if (!ep->rate_known) {
            continue;
        }
        unsigned max;
        double rate;
        ep_limits(p, ep->head, &max, &rate);
        if (ep->inflight < max && (rate <= 0 || ep->tokens >= 1)) {
            continue; /* held back by the global cap, not by its own limits */
        }
        ep->max = max;
        unsigned keep = ep_keep(ep, max);
        if (ep->queued > keep) {
            ep->recall_n = 0; /* congested again: recalls start small again */
            /* A hanging endpoint (no throughput) gets its items back at the pace
             * of its in-flight limit per second. */
            ep_defer_excess(ep, keep, ep->rate >= 1.0 ? ep->rate : (double)max);
        }
    }
}

static void on_recalled(void *arg, int rc, uint64_t n) {
    (void)arg;
    (void)rc;
    (void)n;
}

/* The pace of a deferral is a guess from a quarter of a second of throughput
 * (the first, while the endpoint was still warming up, can be far too low). So
 * an endpoint that has room again (fewer items held and in flight than its
 * in-flight limit) while the read window has room too calls back its oldest
 * deferred items now instead of idling until they fall due: about a second of
 * its throughput (at least its in-flight limit) at first, twice as many each
 * time it has room again (up to 1,000 every PUSH_RECALL_EVERY_MS), as slow start.
 * Items about to fall due are left to the mover. */
static void recall_deferred(push_t *p) {
    if (p->deferred_known == 0 || p->pending >= p->o.max_inflight * 2) {
        return;
    }
    int64_t now = now_ms();
    for (size_t i = 0; i < p->capeps; i++) {
        push_ep_t *ep = p->eps[i];
        if (ep == NULL || ep->dq_n == 0) {
            continue;
        }
        while (ep->dq_n && ep->dq[ep->dq_head].due_ms <= now + PUSH_MOVE_EVERY_MS) {
            ep_forget(p, ep);
        }
        if (ep->dq_n == 0 || ep->queued + ep->inflight >= ep->max ||
            now - ep->recall_ms < PUSH_RECALL_EVERY_MS) {
            continue;
        }
        ep->recall_ms = now;
        unsigned keep = ep_keep(ep, ep->max);
        if (ep->recall_n < keep) {
            ep->recall_n = keep;
        } else {
            ep->recall_n = ep->recall_n * 2 > 1000 ? 1000 : ep->recall_n * 2;
        }
        unsigned n = ep->recall_n;
        if (n > ep->dq_n) {
            n = (unsigned)ep->dq_n;
        }
        const char **ids = xcalloc(n, sizeof *ids);
        int64_t *dues = xcalloc(n, sizeof *dues);
        for (unsigned k = 0; k < n; k++) {
            ids[k] = ep->dq[ep->dq_head + k].id;
            dues[k] = ep->dq[ep->dq_head + k].due_ms;
        }
        /* On failure they simply come back when due. */
        (void)store_q_recall(p->store, ids, dues, n, on_recalled, p);
        free(dues);
        free(ids);
        for (unsigned k = 0; k < n; k++) {
            ep_forget(p, ep);
        }
    }
}

/* ---------------------------------------------------------------------------
 * Reading the queue and dispatching
 * ------------------------------------------------------------------------- */

static void dispatch(push_t *p) {
    for (size_t i = 0; i < p->capeps && p->inflight < p->o.max_inflight; i++) {
        push_ep_t *ep = p->eps[i];
        if (ep == NULL || ep->head == NULL) {
            continue;
        }
        unsigned max;
        double rate;
        ep_limits(p, ep->head, &max, &rate);
        uint64_t now = uv_hrtime();
        if (rate > 0) {
            ep->tokens += (double)(now - ep->last_ns) / 1e9 * rate;
            double burst = rate < 1 ? 1 : rate;
            if (ep->tokens > burst) {
                ep->tokens = burst;
            }
        }
        ep->last_ns = now;
        while (ep->head && ep->inflight < max && p->inflight < p->o.max_inflight &&
               (rate <= 0 || ep->tokens >= 1)) {
            pitem_t *it = ep_pop(ep);
            if (rate > 0) {
                ep->tokens -= 1;
            }
            item_begin(it);
        }
    }
}

static void on_read(void *arg, int rc, const store_kv_t *kv, size_t n) {
    push_t *p = arg;
    p->reading = 0;
    if (p->closing) {
        return;
    }
    if (rc) {
        /* The next tick tries again, from our pending entries: Redis may have run
         * the read and lost only its answer (a dropped connection), and entries it
         * handed out then are ours until acknowledged; '>' never returns them. */
        p->recover = 1;
        return;
    }
    size_t got = 0;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && kv[j].k) {
            j++;
        }
        /* kv[i..j) is one entry: sid then fields. */
        pitem_t *it = xcalloc(1, sizeof *it);
        it->p = p;
        it->sid = xstrndup(kv[i].v, kv[i].vlen);
        for (int f = 0; f < F_N; f++) {
            size_t len;
            const char *v = store_kv_get(kv + i + 1, j - i - 1, item_fields[f], &len);
            it->f[f] = v ? xstrndup(v, len) : xstrdup("");
        }
        it->retry = store_kv_get(kv + i + 1, j - i - 1, "retry", NULL) != NULL || p->recover;
        p->pending++;
        got++;
        if (it->f[F_ID][0] == '\0' || it->f[F_WH][0] == '\0') {
            /* An entry without an id (deleted meanwhile): acknowledge and drop. */
            it->first = 0;
            free(it->f[F_ID]);
            it->f[F_ID] = xstrdup("msg_unknown");
            item_finish(it, "dead", 0, 0, "malformed queue entry", 0);
        } else {
            char key[300];
            if (strcmp(it->f[F_WH], "ent") == 0) {
                snprintf(key, sizeof key, "ent:%.280s", it->f[F_URL]);
            } else {
                snprintf(key, sizeof key, "wh:%.20s", it->f[F_WH]);
            }
            it->ep = ep_get(p, key);
            ep_append(it->ep, it);
        }
        i = j + 1;
    }
    if (p->recover && got == 0) {
        p->recover = 0; /* nothing of ours was left pending */
    }
    dispatch(p);
}

static void on_moved(void *arg, int rc, uint64_t n) {
    push_t *p = arg;
    p->moving = 0;
    (void)rc;
    (void)n;
}

static void on_tick(uv_timer_t *t) {
    push_t *p = t->data;
    if (p->closing) {
        return;
    }
    int ready = store_ready(p->store);
    if (!ready) {
        p->was_ready = 0;
        return;
    }
    if (!p->was_ready) {
        /* (Re)connected: entries taken before may be waiting for us, and jobs may
         * have been interrupted. */
        p->was_ready = 1;
        p->recover = 1;
        push_jobs_resume(p);
    }
    uint64_t now = (uint64_t)now_ms();
    if (!p->moving && now - p->last_move_ms >= PUSH_MOVE_EVERY_MS) {
        p->last_move_ms = now;
        if (store_q_move_due(p->store, (int64_t)now, 1000, on_moved, p) == 0) {
            p->moving = 1;
        }
    }
    unsigned cap = p->o.max_inflight * 4;
    if (!p->reading && p->pending < cap / 2 && (!p->recover || p->pending == 0)) {
        if (store_q_read(p->store, cap - p->pending, p->recover, on_read, p) == 0) {
            p->reading = 1;
        }
    } else if (p->pending >= cap / 2) {
        defer_congested(p);
    }
    dispatch(p);
    recall_deferred(p);
}

void push_kick(push_t *p) {
    if (!p->closing) {
        uv_timer_start(&p->tick, on_tick, 0, PUSH_TICK_MS);
    }
}

push_t *push_new(uv_loop_t *loop, store_t *store, const push_opts_t *opts, const push_app_t *app) {
    push_t *p = xcalloc(1, sizeof *p);
    p->loop = loop;
    p->store = store;
    p->o = *opts;
    p->app = *app;
    p->http = pushhttp_new(loop, &opts->ssrf);
    if (p->http == NULL) {
        free(p);
        return NULL;
    }
    p->rng = uv_hrtime() | 1;
    p->scratch = matcher_scratch_new();
    uv_timer_init(loop, &p->tick);
    p->tick.data = p;
    p->open_handles = 2; /* the tick timer and the HTTP client */
    uv_timer_start(&p->tick, on_tick, PUSH_TICK_MS, PUSH_TICK_MS);
    return p;
}

static void push_release(push_t *p) {
    if (--p->open_handles > 0) {
        return;
    }
    for (size_t i = 0; i < p->capeps; i++) {
        push_ep_t *ep = p->eps[i];
        if (ep == NULL) {
            continue;
        }
        while (ep->head) {
            pitem_t *it = ep->head;
            ep->head = it->next;
            item_free(it);
        }
        while (ep->dq_n) {
            ep_forget(p, ep);
        }
        free(ep->dq);
        free(ep->key);
        free(ep);
    }
    free(p->eps);
    matcher_scratch_free(p->scratch);
    void (*done)(void *) = p->done;
    void *arg = p->done_arg;
    free(p);
    if (done) {
        done(arg);
    }
}

static void on_tick_close(uv_handle_t *h) {
    push_release(h->data);
}

static void on_http_closed(void *arg) {
    push_release(arg);
}

void push_close(push_t *p, void (*done)(void *), void *arg) {
    p->closing = 1;
    p->done = done;
    p->done_arg = arg;
    push__jobs_close(p);
    uv_timer_stop(&p->tick);
    uv_close((uv_handle_t *)&p->tick, on_tick_close);
    /* Aborted requests finish as retries; their records may not reach a closing
     * store, in which case the entries stay pending for the next start. */
    pushhttp_close(p->http, on_http_closed, p);
}

void push_get_stats(const push_t *p, push_stats_t *out) {
    *out = p->stats;
    out->inflight = p->inflight;
    out->pending = p->pending;
    out->jobs_running = push__jobs_running(p);
}

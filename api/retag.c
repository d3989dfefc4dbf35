/* The re-tag worker; see retag.h. */
#include "api/retag.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/app.h"
#include "api/ent_input.h"
#include "api/log.h"
#include "common/xalloc.h"
#include "tags/date.h"

#define RETAG_WINDOW 64    /* enterprises in flight */
#define RETAG_BATCH  256   /* due enterprises fetched at a time */
#define RETAG_TICK   30000 /* ms between checks for due enterprises (a fallback) */
/* How long /readyz waits for the pass that follows a load: long enough for the
 * enterprises due on an ordinary day, short enough that a backlog after a long
 * outage does not keep the instance out of rotation (the pass goes on). */
#define RETAG_READY_WAIT 30000
/* Slack after the day boundary, so the wall clock surely shows the new day. */
#define RETAG_DAY_SLACK 50

struct retag {
    app_t *app;
    uv_timer_t timer;
    uv_timer_t day_timer; /* fires when the service's day changes */
    int closing;
    int nclosed; /* handles whose close callback has run */
    /* A daily pass was asked for while one could not start (one running, a full
     * pass running, the store not ready): start one when that ends. */
    int kick;
    /* The pass after a load has not finished: /readyz waits (RETAG_READY_WAIT). */
    int catching_up;
    uint64_t catchup_since; /* uv_now when the load finished */
    unsigned inflight;
    /* daily pass */
    int due_running;
    char *due; /* a batch of 18-byte codes */
    size_t ndue, due_next;
    uint64_t due_progress; /* writes in the current batch */
    /* Due enterprises this pass could not re-tag (their data no longer validates, a
     * write failed): they stay due, first in the order, so each next batch skips
     * them instead of fetching them again and stopping the pass for everyone. */
    unsigned due_skip, due_failed;
    uint64_t daily_done, daily_changed;
    int32_t daily_day;
    /* full pass */
    int full_running;
    uint32_t cursor;
    uint64_t total, done, changed, unchanged, failed;
    int64_t started_ms, finished_ms;
};

typedef struct retag_op {
    retag_t *r;
    char uscc[19];
    int full; /* part of the full pass (else the daily pass) */
    uint64_t ver;
    json_t *doc;
} retag_op_t;

static void retag_pump(retag_t *r);
static void retag_start_daily(retag_t *r);

/* The daily pass has stopped (finished, or failed; the tick retries a failure). */
static void retag_daily_stopped(retag_t *r) {
    r->due_running = 0;
    if (r->kick) {
        retag_start_daily(r);
    }
    if (!r->due_running) {
        r->catching_up = 0;
    }
}

static int64_t retag_now_ms(void) {
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void retag_op_done(retag_op_t *op, int changed, int failed) {
    retag_t *r = op->r;
    r->inflight--;
    if (op->full) {
        r->done++;
        r->changed += changed != 0;
        r->unchanged += !changed && !failed;
        r->failed += failed != 0;
    } else {
        r->daily_done++;
        r->daily_changed += changed != 0;
        r->due_progress += changed != 0;
        r->due_failed += failed != 0;
        r->due_skip += failed != 0;
    }
    json_decref(op->doc);
    free(op);
    retag_pump(r);
}

static void retag_on_written(void *arg, int rc, const store_ent_out_t *out) {
    (void)out;
    retag_op_t *op = arg;
    /* A concurrent change (or delete) already used the current rules. */
    int ok = rc == 0 || rc == -ESTALE || rc == -ENOENT;
    retag_op_done(op, rc == 0 && out->changed, !ok);
}

/* Whether re-deriving changed anything a reader sees. */
static int retag_same(json_t *a, json_t *b) {
    static const char *const keys[] = {"tags", "tag_sources", "retag_on", "entity"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *x = json_object_get(a, keys[i]);
        json_t *y = json_object_get(b, keys[i]);
        if ((x == NULL) != (y == NULL) || (x && !json_equal(x, y))) {
            return 0;
        }
    }
    return 1;
}

static void retag_on_read(void *arg, int rc, const store_doc_t *d) {
    retag_op_t *op = arg;
    app_t *app = op->r->app;
    if (rc) {
        retag_op_done(op, 0, rc != -ENOENT);
        return;
    }
    json_t *old = json_loadb(d->doc, d->len, 0, NULL);
    if (!json_is_object(old)) {
        json_decref(old);
        retag_op_done(op, 0, 1);
        return;
    }
    json_t *body = ent_doc_to_input(old);
    ent_input_t in;
    ent_err_t e;
    /* Stored data: rules added since it was written do not stop its re-tag. */
    if (ent_input_parse_stored(app, body, op->uscc, NULL, &in, &e)) {
        /* Stored data the current taxonomy no longer accepts: leave it, report it. */
        LOG_WARN("retag skipped", "\"uscc\":\"%s\",\"reason\":\"%s\"", op->uscc, e.code);
        ent_input_free(&in);
        json_decref(body);
        json_decref(old);
        retag_op_done(op, 0, 1);
        return;
    }
    json_decref(body);
    /* On the stack, as in import_line (h_import.c). */
    rules_out_t out;
    rules_derive(app->rules, &in.rin, app_today(app), &out);
    json_t *doc = ent_build_doc(app, &in, &out);
    int same = retag_same(old, doc);
    json_decref(old);
    if (same && op->full) {
        ent_input_free(&in);
        json_decref(doc);
        retag_op_done(op, 0, 0);
        return;
    }
    rc = ent_input_store(app, &in, doc, &out, STORE_UPDATE, (int64_t)d->ver, retag_on_written, op);
    json_decref(doc);
    ent_input_free(&in);
    if (rc) {
        retag_op_done(op, 0, 1);
    }
}

static int retag_one(retag_t *r, const char *uscc, int full) {
    retag_op_t *op = xcalloc(1, sizeof *op);
    op->r = r;
    op->full = full;
    memcpy(op->uscc, uscc, 18);
    int rc = store_ent_get(r->app->store, op->uscc, retag_on_read, op);
    if (rc) {
        free(op);
        return rc;
    }
    r->inflight++;
    return 0;
}

static void retag_on_due(void *arg, int rc, const char *codes, size_t n) {
    retag_t *r = arg;
    r->inflight--;
    free(r->due);
    r->due = NULL;
    r->ndue = r->due_next = 0;
    r->due_progress = 0;
    r->due_failed = 0;
    if (rc || n == 0 || r->closing) {
        if (rc == 0 && n == 0) {
            r->daily_day = app_today(r->app);
        }
        retag_daily_stopped(r);
        retag_pump(r);
        return;
    }
    r->due = xmemdup(codes, n * 18);
    r->ndue = n;
    retag_pump(r);
}

/* Starts as much work as the window allows. */
static void retag_pump(retag_t *r) {
    if (r->closing) {
        return;
    }
    store_t *st = r->app->store;
    if (!store_ready(st)) {
        return; /* the timer tries again */
    }
    /* The daily pass first: its enterprises are wrong until re-tagged. */
    while (r->due_running && r->due && r->due_next < r->ndue && r->inflight < RETAG_WINDOW) {
        if (retag_one(r, r->due + r->due_next * 18, 0) != 0) {
            return;
        }
        r->due_next++;
    }
    if (r->due_running && r->due && r->due_next == r->ndue && r->inflight == 0) {
        /* A batch is finished; fetch the next one, past those that failed, unless
         * this one did nothing at all. */
        int progress = r->due_progress > 0 || r->due_failed > 0;
        free(r->due);
        r->due = NULL;
        if (progress && store_retag_due(st, app_today(r->app), r->due_skip, RETAG_BATCH,
                                        retag_on_due, r) == 0) {
            r->inflight++;
            return;
        }
        retag_daily_stopped(r);
        if (r->due_running) {
            return; /* a kicked pass has started */
        }
    }
    if (r->full_running) {
        const matcher_t *m = store_matcher(st);
        uint32_t span = matcher_span(m);
        while (r->cursor < span && r->inflight < RETAG_WINDOW) {
            const char *key = matcher_key(m, r->cursor);
            if (key && retag_one(r, key, 1) != 0) {
                return;
            }
            r->cursor++;
        }
        if (r->cursor >= span && r->inflight == 0) {
            r->full_running = 0;
            if (r->kick) {
                retag_start_daily(r);
            }
            r->finished_ms = retag_now_ms();
            LOG_INFO("retag finished", "\"enterprises\":%llu,\"changed\":%llu,\"failed\":%llu",
                     (unsigned long long)r->done, (unsigned long long)r->changed,
                     (unsigned long long)r->failed);
        }
    }
}

/* Starts a daily pass over the enterprises due today, or remembers to start one
 * when that becomes possible. */
static void retag_start_daily(retag_t *r) {
    if (r->closing) {
        return;
    }
    if (r->due_running || r->inflight != 0 || r->full_running || !store_ready(r->app->store)) {
        r->kick = 1;
        return;
    }
    r->kick = 0;
    r->due_skip = 0;
    if (store_retag_due(r->app->store, app_today(r->app), 0, RETAG_BATCH, retag_on_due, r) == 0) {
        r->due_running = 1;
        r->inflight++;
    }
}

static void retag_on_timer(uv_timer_t *t) {
    retag_t *r = t->data;
    if (r->closing || !store_ready(r->app->store)) {
        return;
    }
    if (!r->due_running && r->inflight == 0 && !r->full_running) {
        retag_start_daily(r);
        return;
    }
    retag_pump(r);
}

static void retag_arm_day(retag_t *r);

static void retag_on_day(uv_timer_t *t) {
    retag_t *r = t->data;
    if (r->closing) {
        return;
    }
    /* A day's enterprises are wrong from its first moment: re-tag them now rather
     * than at the next tick. An early wake-up (the wall clock was set back) finds
     * the day unchanged and only re-arms; a pass on the same day finds nothing. */
    if (app_today(r->app) != r->daily_day) {
        retag_start_daily(r);
    }
    retag_arm_day(r);
}

/* Arms the day timer for the next change of the service's day. uv timers follow
 * the monotonic clock and the day follows the wall clock: the periodic tick covers
 * a clock that jumps ahead, and each firing re-computes from the wall clock. */
static void retag_arm_day(retag_t *r) {
    const config_t *cfg = r->app->cfg;
    if (cfg->today != DATE_NONE) {
        return; /* a fixed day never changes */
    }
    int64_t now = app_now_ms();
    int64_t local = now + (int64_t)cfg->utc_offset_min * 60000;
    int64_t into = local % 86400000;
    if (into < 0) {
        into += 86400000;
    }
    uv_timer_start(&r->day_timer, retag_on_day, (uint64_t)(86400000 - into + RETAG_DAY_SLACK), 0);
}

void retag_on_loaded(retag_t *r) {
    if (r->closing) {
        return;
    }
    /* The data may have been written on an earlier day (the service was down at
     * midnight, or Redis came back with older data): re-tag what is due before
     * /readyz says ready. An operator's full pass is not waited for. */
    if (!r->full_running) {
        r->catching_up = 1;
        r->catchup_since = uv_now(r->app->loop);
    }
    retag_start_daily(r);
    if (!r->due_running && !r->kick) {
        r->catching_up = 0; /* could not start; the tick retries */
    }
    /* A pass cut short by the outage continues now rather than at the next tick
     * (its writes failed while the store was down; /readyz waits for it). */
    retag_pump(r);
}

int retag_catching_up(const retag_t *r) {
    return r->catching_up && uv_now(r->app->loop) - r->catchup_since < RETAG_READY_WAIT;
}

retag_t *retag_new(app_t *app) {
    retag_t *r = xcalloc(1, sizeof *r);
    r->app = app;
    uv_timer_init(app->loop, &r->timer);
    uv_timer_init(app->loop, &r->day_timer);
    r->timer.data = r;
    r->day_timer.data = r;
    /* The load starts a pass (retag_on_loaded) and so does each new day; the tick
     * is a fallback (a pass that failed, a clock that jumped). */
    uv_timer_start(&r->timer, retag_on_timer, RETAG_TICK, RETAG_TICK);
    retag_arm_day(r);
    return r;
}

static void retag_on_close(uv_handle_t *h) {
    retag_t *r = h->data;
    if (++r->nclosed < 2) {
        return; /* the other timer's callback frees */
    }
    free(r->due);
    free(r);
}

void retag_close(retag_t *r) {
    r->closing = 1;
    uv_timer_stop(&r->timer);
    uv_timer_stop(&r->day_timer);
    /* Operations in flight hold 'r'; the store fails them when it closes, before
     * the loop runs these close callbacks, so 'r' outlives them. */
    uv_close((uv_handle_t *)&r->timer, retag_on_close);
    uv_close((uv_handle_t *)&r->day_timer, retag_on_close);
}

int retag_start_full(retag_t *r) {
    if (r->full_running) {
        return -EBUSY;
    }
    r->full_running = 1;
    r->cursor = 0;
    r->total = matcher_live(store_matcher(r->app->store));
    r->done = r->changed = r->unchanged = r->failed = 0;
    r->started_ms = retag_now_ms();
    r->finished_ms = 0;
    retag_pump(r);
    return 0;
}

json_t *retag_status(const retag_t *r) {
    json_t *o = json_object();
    json_object_set_new(o, "state",
                        json_string(r->full_running ? "running"
                                    : r->started_ms ? "done"
                                                    : "idle"));
    json_object_set_new(o, "total", json_integer((json_int_t)r->total));
    json_object_set_new(o, "done", json_integer((json_int_t)r->done));
    json_object_set_new(o, "changed", json_integer((json_int_t)r->changed));
    json_object_set_new(o, "unchanged", json_integer((json_int_t)r->unchanged));
    json_object_set_new(o, "failed", json_integer((json_int_t)r->failed));
    json_object_set_new(o, "percent",
                        json_real(r->total ? 100.0 * (double)r->done / (double)r->total
                                           : (r->started_ms ? 100.0 : 0.0)));
    char ts[40];
    if (r->started_ms) {
        ent_time_format(r->started_ms, ts, sizeof ts);
        json_object_set_new(o, "started_at", json_string(ts));
    }
    if (r->finished_ms) {
        ent_time_format(r->finished_ms, ts, sizeof ts);
        json_object_set_new(o, "finished_at", json_string(ts));
    }
    json_t *daily = json_object();
    json_object_set_new(daily, "running", json_boolean(r->due_running));
    json_object_set_new(daily, "retagged", json_integer((json_int_t)r->daily_done));
    json_object_set_new(daily, "changed", json_integer((json_int_t)r->daily_changed));
    if (r->daily_day) {
        char d[11];
        date_format(r->daily_day, d);
        json_object_set_new(daily, "last_completed", json_string(d));
    }
    json_object_set_new(o, "daily", daily);
    return o;
}

/* POST /v1/enterprises:import: NDJSON, one enterprise per line, streamed. Lines
 * are validated and written as they arrive, with at most IMPORT_WINDOW writes in
 * flight; when the window is full the server stops reading the body, so memory
 * stays flat however large the file. A bad line is reported with its number and
 * reason and never stops its neighbours. */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/app.h"
#include "api/ent_input.h"
#include "api/log.h"
#include "common/sbuf.h"
#include "common/xalloc.h"

#define IMPORT_WINDOW     2048      /* writes in flight */
#define IMPORT_MAX_LINE   (1 << 20) /* longer lines are rejected */
#define IMPORT_MAX_ERRORS 10000     /* error details kept; the rest are counted */
/* After an import, the index is laid out again once this many enterprises (and a
 * quarter of all) arrived since the last layout: below, the gain is small. */
#define IMPORT_RELAYOUT_MIN 50000u

typedef struct import {
    app_t *app;
    api_req_t *req;
    sbuf_t buf;      /* bytes not yet split into lines */
    size_t scan;     /* where to resume looking for a newline in buf */
    uint64_t lineno; /* lines seen so far */
    int skipping;    /* discarding the rest of an over-long line */
    int body_done;
    int paused;
    int answered;
    int bad_type;
    unsigned inflight;
    uint64_t lines, created, updated, unchanged, rejected;
    json_t *errors;
    uint64_t nerrors;
} import_t;

typedef struct import_op {
    import_t *im;
    uint64_t line;
    char uscc[19];
} import_op_t;

static void import_error(import_t *im, uint64_t line, const char *uscc, const char *code,
                         const char *field, const char *msg) {
    im->rejected++;
    if (im->nerrors++ >= IMPORT_MAX_ERRORS) {
        return;
    }
    json_t *e = json_object();
    json_object_set_new(e, "line", json_integer((json_int_t)line));
    if (uscc && uscc[0]) {
        json_object_set_new(e, "uscc", json_string(uscc));
    }
    json_object_set_new(e, "code", json_string(code));
    json_t *m = json_string(msg);
    json_object_set_new(e, "message", m ? m : json_string("invalid input"));
    json_object_set_new(e, "field", field && field[0] ? json_string(field) : json_null());
    json_array_append_new(im->errors, e);
}

static void import_free(import_t *im) {
    sbuf_free(&im->buf);
    json_decref(im->errors);
    free(im);
}

static void import_finish(import_t *im) {
    if (im->req == NULL) {
        /* The client went away: nothing to answer, only writes to wait for. */
        if (im->inflight == 0) {
            import_free(im);
        }
        return;
    }
    if (im->answered || !im->body_done || im->inflight) {
        return;
    }
    im->answered = 1;
    api_req_t *req = im->req;
    if (im->bad_type) {
        api_error(req, 415, "unsupported_media_type", NULL,
                  "send NDJSON as application/x-ndjson (one enterprise per line)");
    } else {
        json_t *r = json_object();
        json_object_set_new(r, "lines", json_integer((json_int_t)im->lines));
        json_object_set_new(r, "accepted",
                            json_integer((json_int_t)(im->created + im->updated + im->unchanged)));
        json_object_set_new(r, "created", json_integer((json_int_t)im->created));
        json_object_set_new(r, "updated", json_integer((json_int_t)im->updated));
        json_object_set_new(r, "unchanged", json_integer((json_int_t)im->unchanged));
        json_object_set_new(r, "rejected", json_integer((json_int_t)im->rejected));
        json_object_set(r, "errors", im->errors);
        json_object_set_new(r, "errors_truncated", json_boolean(im->nerrors > IMPORT_MAX_ERRORS));
        api_reply_json(req, 200, r, NULL);
    }
    int big = im->lines > 10000;
    app_t *app = im->app;
    import_free(im);
    if (big) {
        /* Enterprises added since the last layout sit at the end of the index,
         * in arrival order; after a large import, sort them in with the rest. */
        uint64_t t0 = uv_hrtime();
        uint32_t n = store_relayout(app->store, IMPORT_RELAYOUT_MIN);
        if (n) {
            LOG_INFO("index laid out", "\"enterprises\":%u,\"ms\":%.1f", n,
                     (double)(uv_hrtime() - t0) / 1e6);
        }
        /* A large import leaves freed buffers in the heap: give them back. */
        malloc_trim(0);
    }
}

static void import_pump(import_t *im);

static void import_on_written(void *arg, int rc, const store_ent_out_t *out) {
    import_op_t *op = arg;
    import_t *im = op->im;
    im->inflight--;
    if (rc == 0) {
        if (out->created) {
            im->created++;
        } else if (out->changed) {
            im->updated++;
        } else {
            im->unchanged++;
        }
    } else {
        const char *code = rc == -ENOTCONN  ? "unavailable"
                           : rc == -EAGAIN  ? "loading"
                           : rc == -ENOBUFS ? "overloaded"
                           : rc == -EIO     ? "outcome_unknown"
                                            : "internal";
        import_error(im, op->line, op->uscc, code, NULL,
                     "the data store did not take this line; send it again");
    }
    free(op);
    if (im->req) {
        import_pump(im);
    }
    import_finish(im);
}

/* Validates one line and starts its write. */
static void import_line(import_t *im, const char *p, size_t n) {
    uint64_t line = im->lineno;
    size_t k = 0;
    while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r')) {
        k++;
    }
    if (k == n) {
        return; /* blank lines are allowed and not counted */
    }
    im->lines++;
    json_error_t jerr;
    json_t *obj = json_loadb(p, n, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(obj)) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 obj ? "the line is not a JSON object" : "malformed JSON at column %d: %s",
                 jerr.column, jerr.text);
        json_decref(obj);
        import_error(im, line, NULL, "invalid_json", NULL, msg);
        return;
    }
    app_t *app = im->app;
    ent_input_t in;
    ent_err_t e;
    if (ent_input_parse(app, obj, NULL, &in, &e) || ent_overrides_signed(obj, &e)) {
        json_t *u = json_object_get(obj, "uscc");
        import_error(im, line, json_is_string(u) ? json_string_value(u) : NULL, e.code, e.field,
                     e.msg);
        ent_input_free(&in);
        json_decref(obj);
        return;
    }
    json_decref(obj);
    /* The derived profile on the stack: it is 24 KiB, and a malloc that large
     * makes glibc consolidate its free lists first. With it and rules_derive's
     * scratch (tags/rules.c) allocated per line, malloc_consolidate was 4.3% of
     * huiqid's time in an import; without, 2.1% (perf, 200,000 lines). */
    rules_out_t out;
    rules_derive(app->rules, &in.rin, app_today(app), &out);
    json_t *doc = ent_build_doc(app, &in, &out);
    import_op_t *op = xmalloc(sizeof *op);
    op->im = im;
    op->line = line;
    memcpy(op->uscc, in.uscc, sizeof op->uscc);
    int rc = ent_input_store(app, &in, doc, &out, STORE_UPSERT, -1, import_on_written, op);
    json_decref(doc);
    ent_input_free(&in);
    if (rc) {
        free(op);
        import_error(im, line, in.uscc,
                     rc == -ENOTCONN ? "unavailable"
                     : rc == -EAGAIN ? "loading"
                                     : "overloaded",
                     NULL, "the data store did not take this line; send it again");
        return;
    }
    im->inflight++;
}

/* Splits buffered bytes into lines and starts their writes while the window
 * allows; pauses or resumes reading the body accordingly. */
static void import_pump(import_t *im) {
    sbuf_t *b = &im->buf;
    size_t start = 0;
    while (im->inflight < IMPORT_WINDOW) {
        char *nl = memchr(b->p + im->scan, '\n', b->len - im->scan);
        if (nl == NULL) {
            break;
        }
        size_t end = (size_t)(nl - b->p);
        im->lineno++;
        if (im->skipping) {
            im->skipping = 0;
        } else {
            import_line(im, b->p + start, end - start);
        }
        start = end + 1;
        im->scan = start;
    }
    if (start) {
        memmove(b->p, b->p + start, b->len - start);
        b->len -= start;
        im->scan -= start;
    }
    if (!im->skipping && b->len - im->scan > 0 &&
        memchr(b->p + im->scan, '\n', b->len - im->scan) == NULL) {
        im->scan = b->len; /* no newline yet: look only at new bytes next time */
    }
    if (b->len > IMPORT_MAX_LINE) {
        /* One line longer than we accept: report it and drop it up to its end. */
        import_error(im, im->lineno + 1, NULL, "line_too_long", NULL,
                     "the line is longer than 1 MiB");
        im->lines++;
        im->skipping = 1;
        b->len = 0;
        im->scan = 0;
    }
    if (im->skipping && b->len) {
        char *nl = memchr(b->p, '\n', b->len);
        if (nl) {
            /* The rest of the long line arrived: continue after it. */
            size_t end = (size_t)(nl - b->p);
            memmove(b->p, nl, b->len - end);
            b->len -= end;
            im->scan = 0;
        } else {
            b->len = 0;
            im->scan = 0;
        }
    }
    if (im->body_done) {
        if (im->inflight < IMPORT_WINDOW && b->len && memchr(b->p, '\n', b->len) == NULL) {
            /* The last line had no newline. */
            im->lineno++;
            if (!im->skipping) {
                import_line(im, b->p, b->len);
            }
            b->len = 0;
            im->scan = 0;
        }
        return;
    }
    if (im->req == NULL) {
        return;
    }
    int backlog = im->inflight >= IMPORT_WINDOW;
    if (backlog && !im->paused) {
        im->paused = 1;
        server_pause_body(im->req);
    } else if (!backlog && im->paused && im->inflight < IMPORT_WINDOW / 2) {
        im->paused = 0;
        server_resume_body(im->req);
    }
}

static int import_type_ok(const char *ct) {
    static const char *const ok[] = {"application/x-ndjson", "application/ndjson",
                                     "application/jsonl", "application/json", "text/plain"};
    size_t n = strcspn(ct, ";");
    while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t')) {
        n--;
    }
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        if (strlen(ok[i]) == n && strncasecmp(ct, ok[i], n) == 0) {
            return 1;
        }
    }
    return 0;
}

static import_t *import_get(app_t *app, api_req_t *req) {
    import_t *im = req->ctx;
    if (im == NULL) {
        im = xcalloc(1, sizeof *im);
        im->app = app;
        im->req = req;
        sbuf_init(&im->buf, 65536);
        im->errors = json_array();
        im->bad_type = !import_type_ok(req->http->content_type);
        req->ctx = im;
    }
    return im;
}

int h_ent_import_body(app_t *app, api_req_t *req, const char *p, size_t n) {
    import_t *im = import_get(app, req);
    if (im->bad_type) {
        return 0; /* drained; answered 415 at the end */
    }
    sbuf_add(&im->buf, p, n);
    import_pump(im);
    return 0;
}

void h_ent_import(app_t *app, api_req_t *req) {
    import_t *im = import_get(app, req);
    req->ctx = NULL;
    im->body_done = 1;
    im->paused = 0;
    while (!im->bad_type && im->buf.len && im->inflight < IMPORT_WINDOW) {
        size_t before = im->buf.len;
        import_pump(im);
        if (im->buf.len == before) {
            break;
        }
    }
    import_finish(im);
}

void h_ent_import_abort(app_t *app, api_req_t *req) {
    (void)app;
    import_t *im = req->ctx;
    if (im == NULL) {
        return;
    }
    /* Lines already written stay written; the rest of the file never came. */
    im->req = NULL;
    im->buf.len = 0;
    import_finish(im);
}

/* libFuzzer harness for huiqid's request parsing alone: raw bytes through
 * api/httpd.c (the raw-byte pre-filter, llhttp, the target, header and body caps)
 * and the head-time routing of the app (app_route: the route table, path
 * parameters, body limits), as the server's head callback runs them, with no
 * loop, store or socket. Each input is parsed twice, in one piece and cut into
 * pieces at points derived from its bytes; both must give the same requests and
 * the same refusal, since a server gets whatever segmentation the network makes.
 * Built by `make fuzz-build`; see tests/fuzz/README.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/app.h"
#include "api/config.h"
#include "api/httpd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Query parameters the handlers read with api_query (two are enough to run its
 * decoding over any query string; each name costs a pass). */
static const char *const fh_query_names[] = {"limit", "cursor"};

/* One parse of one input: what the server would have acted on, folded into a
 * hash, so that two parses of the same bytes can be compared. */
typedef struct fh_run {
    const config_t *cfg;
    httpd_t *http;
    api_req_t req;
    uint64_t hash;
    unsigned requests;
} fh_run_t;

static config_t fh_cfg;
static int fh_started;
/* HUIQI_FUZZ_ECHO=1 prints each parsed request (to see what an input does). */
static int fh_echo;

/* FNV-1a, fed piece by piece: the hash of bytes does not depend on how they
 * were cut, so a streamed body hashes the same in one piece or many. Not
 * instrumented: the harness's own loop is not what is fuzzed, and it runs over
 * every byte. */
__attribute__((no_sanitize("coverage"))) static void fh_mix(fh_run_t *r, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        r->hash = (r->hash ^ b[i]) * UINT64_C(0x100000001b3);
    }
}

static void fh_mix_str(fh_run_t *r, const char *s) {
    fh_mix(r, s, strlen(s) + 1);
}

static void fh_mix_int(fh_run_t *r, int64_t v) {
    fh_mix(r, &v, sizeof v);
}

/* The server's head callback without the access check: split the target,
 * route, set the body limit. */
static int fh_on_head(void *arg, httpd_req_t *h) {
    fh_run_t *r = arg;
    api_req_t *req = &r->req;
    req->http = h;
    int st = httpd_split_target(h, &req->path, &req->query);
    if (st != 0) {
        return st;
    }
    const route_t *rt = NULL;
    char allow[64];
    st = app_route(r->cfg, req, &rt, allow, sizeof allow);
    req->route = rt;
    fh_mix_int(r, st);
    fh_mix_str(r, st == 405 ? allow : "");
    fh_mix_str(r, rt ? rt->name : "-");
    fh_mix_int(r, (int64_t)h->body_limit);
    return 0;
}

static int fh_on_body(void *arg, httpd_req_t *h, const char *p, size_t n) {
    (void)h;
    fh_mix(arg, p, n);
    return 0;
}

static const httpd_cbs_t fh_cbs = {.on_head = fh_on_head, .on_body = fh_on_body};

/* Folds a complete request into the hash, decodes its query as the handlers
 * would, and releases it. */
static void fh_request(fh_run_t *r) {
    api_req_t *req = &r->req;
    const httpd_req_t *h = httpd_request(r->http);
    if (h->target == NULL || req->path == NULL) {
        /* The server would hand the app a request it never saw the head of. */
        fprintf(stderr, "fuzz_http: a request completed without a head\n");
        abort();
    }
    r->requests++;
    fh_mix_int(r, h->method);
    fh_mix_str(r, h->target);
    fh_mix_int(r, h->keep_alive);
    fh_mix_int(r, h->expect_continue);
    fh_mix_int(r, h->content_length);
    fh_mix_int(r, h->chunked);
    fh_mix_str(r, h->content_type);
    fh_mix_str(r, h->request_id);
    fh_mix_str(r, h->authorization);
    fh_mix_str(r, h->if_match);
    fh_mix_int(r, (int64_t)h->body_len);
    if (h->body) {
        fh_mix(r, h->body, h->body_len);
    }
    for (int i = 0; i < req->nparams; i++) {
        fh_mix(r, req->param[i], req->param_len[i]);
    }
    for (size_t i = 0; i < sizeof fh_query_names / sizeof fh_query_names[0]; i++) {
        char v[64];
        int q = api_query(req, fh_query_names[i], v, sizeof v);
        fh_mix_int(r, q);
        fh_mix_str(r, q > 0 ? v : "");
    }
    if (fh_echo) {
        fprintf(stderr, "fuzz_http: %s %s -> %s, body %zu bytes\n", httpd_method_name(h->method),
                h->target, req->route ? ((const route_t *)req->route)->name : "no route",
                h->body_len);
    }
    server_req_clear(req);
}

/* Feeds one piece as the server does with each read: requests are handled as
 * they complete, and the rest of the piece is fed again after httpd_next.
 * Returns 0 to go on, 1 when the connection would be closed (an error, or a
 * request without keep-alive). */
static int fh_feed(fh_run_t *r, const uint8_t *p, size_t n) {
    while (n > 0) {
        size_t used = 0;
        int rc = httpd_feed(r->http, (const char *)p, n, &used);
        if (rc < 0) {
            const char *reason = NULL;
            int st = httpd_error(r->http, &reason);
            if (st < 400 || st > 599) {
                fprintf(stderr, "fuzz_http: an error without an error status (%d)\n", st);
                abort();
            }
            fh_mix_int(r, st);
            if (fh_echo) {
                fprintf(stderr, "fuzz_http: error %d %s\n", st, reason ? reason : "");
            }
            return 1;
        }
        if (used > n) {
            fprintf(stderr, "fuzz_http: httpd_feed used %zu of %zu bytes\n", used, n);
            abort();
        }
        if (rc == HTTPD_MORE) {
            return 0;
        }
        int keep = httpd_request(r->http)->keep_alive;
        fh_request(r);
        httpd_next(r->http);
        if (!keep) {
            return 1;
        }
        p += used;
        n -= used;
    }
    return 0;
}

/* Parses 'data' in one piece when 'seed' is 0, else cut into pieces whose
 * lengths are drawn from 'seed'. Returns the run's hash. */
static uint64_t fh_parse(const uint8_t *data, size_t size, uint64_t seed) {
    fh_run_t r = {.cfg = &fh_cfg, .hash = UINT64_C(0xcbf29ce484222325)};
    r.http = httpd_new(&fh_cbs, &r);
    size_t off = 0;
    int closed = 0;
    while (!closed && off < size) {
        size_t n = size - off;
        if (seed) {
            /* xorshift64: the same input always cuts the same way. Each piece
             * takes a uniform share of what is left: a few cuts (about the log
             * of the length), which over many inputs fall on every boundary. */
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            n = 1 + (size_t)(seed % n);
        }
        closed = fh_feed(&r, data + off, n);
        off += n;
    }
    /* EOF: a request cut short is dropped by the server, without an answer. */
    fh_mix_int(&r, closed ? -1 : httpd_in_request(r.http));
    fh_mix_int(&r, r.requests);
    /* A request that failed after its head (413, say) is still attached. */
    server_req_clear(&r.req);
    httpd_free(r.http);
    return r.hash;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!fh_started) {
        char arg0[] = "fuzz_http";
        char *argv[] = {arg0, NULL};
        if (config_load(&fh_cfg, 1, argv) != 0) {
            abort();
        }
        fh_echo = getenv("HUIQI_FUZZ_ECHO") != NULL;
        fh_started = 1;
    }
    uint64_t whole = fh_parse(data, size, 0);
    fh_run_t seed = {.hash = UINT64_C(0x9e3779b97f4a7c15) ^ size};
    fh_mix(&seed, data, size);
    uint64_t cut = fh_parse(data, size, seed.hash | 1);
    if (whole != cut) {
        fprintf(stderr, "fuzz_http: the requests differ when the bytes arrive in pieces\n");
        abort();
    }
    return 0;
}

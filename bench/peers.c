/* The peers of the in-process benchmark: the same policies over the same data set
 * (the file bench/bench writes) on Redis bitmaps (BITOP + BITCOUNT), CRoaring,
 * PostgreSQL (int[] with a GIN index) and plain dense bitsets. Each peer is timed
 * exactly as bench.c times huiqi: one warm-up pass over the policies, then three
 * passes keeping each policy's best; median, p99 and the sum of the bests. Every
 * count is checked against the data set's truth: a mismatch prints the policy and
 * both counts and the program exits 1. A peer whose library or server is missing
 * prints "<peer>_status skipped: <reason>" and no numbers. Prints "key value"
 * lines that bench/run.sh turns into docs/benchmarks.md. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#ifdef HAVE_ROARING
#include <roaring/roaring.h>
#endif
#ifdef HAVE_LIBPQ
#include <libpq-fe.h>
#endif

#include "bench/data.h"
#include "common/xalloc.h"
#include "matcher/rule.h"
#include "tags/date.h"

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double now_s(void) {
    return (double)now_ns() * 1e-9;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The same percentile as bench.c (sorts 'v'). */
static uint64_t pct(uint64_t *v, size_t n, double p) {
    qsort(v, n, sizeof *v, cmp_u64);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

/* The largest tag bit any row or rule uses, plus one. */
static unsigned tag_bits(const bench_data_t *d) {
    return d->words * 64u;
}

/* ---------------------------------------------------------------------------
 * The measurement loop shared by every peer
 * ------------------------------------------------------------------------- */

/* Counts the audience of 'r'; returns 0, or -1 with a message in 'err'. */
typedef int (*count_fn)(void *ctx, const rule_t *r, uint64_t *count, char *err, size_t errlen);

enum { RUN_OK = 0, RUN_MISMATCH = 1, RUN_ERROR = 2 };

/* Runs 'fn' over the policies in 'sel' (indexes into d->rules) like bench.c runs
 * huiqi, verifies every count and prints <name>_* lines. */
static int run_peer(const char *name, count_fn fn, void *ctx, const bench_data_t *d,
                    const uint32_t *sel, uint32_t nsel) {
    uint64_t *lat = xcalloc(nsel, sizeof *lat);
    uint8_t *wrong = xcalloc(nsel, 1);
    char err[512] = "";
    int bad = 0;
    for (uint32_t k = 0; k < nsel; k++) { /* warm-up */
        uint64_t c;
        if (fn(ctx, &d->rules[sel[k]], &c, err, sizeof err) != 0) {
            goto fail;
        }
    }
    for (int rep = 0; rep < 3; rep++) {
        for (uint32_t k = 0; k < nsel; k++) {
            uint32_t p = sel[k];
            uint64_t c = 0;
            uint64_t a = now_ns();
            int rc = fn(ctx, &d->rules[p], &c, err, sizeof err);
            uint64_t b = now_ns();
            if (rc != 0) {
                goto fail;
            }
            if (rep == 0 || b - a < lat[k]) {
                lat[k] = b - a;
            }
            if (c != d->truth[p] && !wrong[k]) {
                wrong[k] = 1;
                bad++;
                if (bad <= 10) {
                    fprintf(stderr, "MISMATCH %s policy %u: %s counts %llu, truth %llu\n", name,
                            p + 1, name, (unsigned long long)c, (unsigned long long)d->truth[p]);
                }
            }
        }
    }
    if (bad) {
        fprintf(stderr, "peers: %s disagrees with the truth on %d policies\n", name, bad);
        printf("%s_status failed: %d policies' counts differ from the truth (see stderr)\n", name,
               bad);
        free(lat);
        free(wrong);
        return RUN_MISMATCH;
    }
    uint64_t total = 0;
    for (uint32_t k = 0; k < nsel; k++) {
        total += lat[k];
    }
    uint64_t med = pct(lat, nsel, 0.5);
    uint64_t p99 = pct(lat, nsel, 0.99);
    printf("%s_policies_run %u\n%s_count_median_ns %llu\n%s_count_p99_ns %llu\n"
           "%s_count_max_ns %llu\n%s_count_all_ms %.2f\n%s_status ok\n",
           name, nsel, name, (unsigned long long)med, name, (unsigned long long)p99, name,
           (unsigned long long)lat[nsel - 1], name, (double)total / 1e6, name);
    fflush(stdout);
    free(lat);
    free(wrong);
    return RUN_OK;
fail:
    fprintf(stderr, "peers: %s: %s\n", name, err);
    printf("%s_status failed: %s\n", name, err);
    free(lat);
    free(wrong);
    return RUN_ERROR;
}

/* ---------------------------------------------------------------------------
 * Plain dense bitsets: one bit per enterprise per tag, a word loop per policy
 * ------------------------------------------------------------------------- */

typedef struct dense {
    uint64_t **col; /* per tag bit, nwords words */
    size_t nwords;
    uint64_t last_mask; /* live bits of the last word */
} dense_t;

static void dense_build(dense_t *ds, const bench_data_t *d) {
    unsigned nb = tag_bits(d);
    ds->nwords = ((size_t)d->n + 63) / 64;
    ds->last_mask = d->n % 64 ? (UINT64_C(1) << (d->n % 64)) - 1 : ~UINT64_C(0);
    ds->col = xcalloc(nb, sizeof *ds->col);
    for (unsigned t = 0; t < nb; t++) {
        ds->col[t] = xcalloc(ds->nwords, sizeof **ds->col);
    }
    for (uint32_t i = 0; i < d->n; i++) {
        const uint64_t *row = d->rows + (size_t)i * d->words;
        for (uint32_t w = 0; w < d->words; w++) {
            uint64_t x = row[w];
            while (x) {
                unsigned t = w * 64u + (unsigned)__builtin_ctzll(x);
                x &= x - 1;
                ds->col[t][i / 64] |= UINT64_C(1) << (i % 64);
            }
        }
    }
}

static int dense_count(void *ctx, const rule_t *r, uint64_t *count, char *err, size_t errlen) {
    (void)err;
    (void)errlen;
    const dense_t *ds = ctx;
    uint64_t c = 0;
    for (size_t w = 0; w < ds->nwords; w++) {
        uint64_t a = w + 1 == ds->nwords ? ds->last_mask : ~UINT64_C(0);
        for (uint16_t k = 0; k < r->nall; k++) {
            a &= ds->col[r->all[k]][w];
        }
        if (r->nany) {
            uint64_t o = 0;
            for (uint16_t k = 0; k < r->nany; k++) {
                o |= ds->col[r->any[k]][w];
            }
            a &= o;
        }
        for (uint16_t k = 0; k < r->nnone; k++) {
            a &= ~ds->col[r->none[k]][w];
        }
        c += (uint64_t)__builtin_popcountll(a);
    }
    *count = c;
    return 0;
}

static int peer_dense(const bench_data_t *d, const uint32_t *sel, uint32_t nsel) {
    dense_t ds;
    double t0 = now_s();
    dense_build(&ds, d);
    printf("dense_build_s %.2f\ndense_bytes %zu\n", now_s() - t0,
           (size_t)tag_bits(d) * ds.nwords * 8u);
    int rc = run_peer("dense", dense_count, &ds, d, sel, nsel);
    for (unsigned t = 0; t < tag_bits(d); t++) {
        free(ds.col[t]);
    }
    free(ds.col);
    return rc;
}

/* ---------------------------------------------------------------------------
 * Redis 7: one bitmap string per tag, BITOP + BITCOUNT, one round trip a policy
 * ------------------------------------------------------------------------- */

typedef struct rpeer {
    redisContext *c;
} rpeer_t;

#define RKEY_LIVE "bench:live"
#define RKEY_ALL  "bench:tmp:all"
#define RKEY_ANY  "bench:tmp:any"
#define RKEY_NONE "bench:tmp:none"

static const char *rtag_key(unsigned bit, char *buf, size_t len) {
    snprintf(buf, len, "bench:tag:%u", bit);
    return buf;
}

/* One command of up to 3 + 2 * RULE_MAX_PART + 1 arguments, queued. */
typedef struct rcmd {
    int argc;
    const char *argv[3 + 3 * RULE_MAX_PART];
    char keys[3 * RULE_MAX_PART][24];
    int nkeys;
} rcmd_t;

static void rcmd_start(rcmd_t *m, const char *a, const char *b, const char *dst) {
    m->argc = 0;
    m->nkeys = 0;
    m->argv[m->argc++] = a;
    if (b) {
        m->argv[m->argc++] = b;
    }
    if (dst) {
        m->argv[m->argc++] = dst;
    }
}

static void rcmd_key(rcmd_t *m, const char *k) {
    m->argv[m->argc++] = k;
}

static void rcmd_tags(rcmd_t *m, const uint16_t *bits, uint16_t n) {
    for (uint16_t i = 0; i < n; i++) {
        char *k = m->keys[m->nkeys++];
        rcmd_key(m, rtag_key(bits[i], k, sizeof m->keys[0]));
    }
}

static void rcmd_send(redisContext *c, rcmd_t *m) {
    redisAppendCommandArgv(c, m->argc, m->argv, NULL);
}

static int redis_replies(redisContext *c, int sent, uint64_t *count, char *err, size_t errlen);

/* Per policy, pipelined in one round trip:
 *   BITOP OR  tmp:any  <any tags>              (when any is given)
 *   BITOP OR  tmp:none <none tags>             (when none is given)
 *   BITOP NOT tmp:none tmp:none                (Redis 7.0 has no ANDNOT)
 *   BITOP AND tmp:all  <all tags> [tmp:any] [tmp:none]   (bench:live when no all
 *                                                         and no any)
 *   BITCOUNT tmp:all
 * The three ANDs of the textbook plan (all, then any, then not-none) are one
 * BITOP AND over all the operands: fewer commands, the same result. */
static int redis_count(void *ctx, const rule_t *r, uint64_t *count, char *err, size_t errlen) {
    rpeer_t *rp = ctx;
    redisContext *c = rp->c;
    rcmd_t m;
    int sent = 0;
    if (r->nany) {
        rcmd_start(&m, "BITOP", "OR", RKEY_ANY);
        rcmd_tags(&m, r->any, r->nany);
        rcmd_send(c, &m);
        sent++;
    }
    if (r->nnone) {
        rcmd_start(&m, "BITOP", "OR", RKEY_NONE);
        rcmd_tags(&m, r->none, r->nnone);
        rcmd_send(c, &m);
        rcmd_start(&m, "BITOP", "NOT", RKEY_NONE);
        rcmd_key(&m, RKEY_NONE);
        rcmd_send(c, &m);
        sent += 2;
    }
    rcmd_start(&m, "BITOP", "AND", RKEY_ALL);
    rcmd_tags(&m, r->all, r->nall);
    if (r->nany) {
        rcmd_key(&m, RKEY_ANY);
    }
    if (r->nnone) {
        rcmd_key(&m, RKEY_NONE);
    }
    if (r->nall == 0 && r->nany == 0) {
        rcmd_key(&m, RKEY_LIVE); /* NOT pads with ones beyond n; live has zeros there */
    }
    rcmd_send(c, &m);
    rcmd_start(&m, "BITCOUNT", RKEY_ALL, NULL);
    rcmd_send(c, &m);
    sent += 2;
    return redis_replies(c, sent, count, err, errlen);
}

/* Reads the 'sent' replies of one policy; the last is BITCOUNT's. */
static int redis_replies(redisContext *c, int sent, uint64_t *count, char *err, size_t errlen) {
    int rc = 0;
    for (int k = 0; k < sent; k++) {
        redisReply *rep = NULL;
        if (redisGetReply(c, (void **)&rep) != REDIS_OK || rep == NULL) {
            snprintf(err, errlen, "redis: %s", c->errstr[0] ? c->errstr : "no reply");
            return -1; /* the connection is unusable now */
        }
        if (rep->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "redis: %s", rep->str);
            rc = -1;
        } else if (k == sent - 1) {
            if (rep->type != REDIS_REPLY_INTEGER) {
                snprintf(err, errlen, "redis: BITCOUNT answered type %d", rep->type);
                rc = -1;
            } else {
                *count = (uint64_t)rep->integer;
            }
        }
        freeReplyObject(rep);
    }
    return rc;
}

/* The step-by-step plan, for comparison: the all tags ANDed into tmp:all (or
 * bench:live when there are none), then the any union ANDed in, then the negated
 * none union ANDed in, then BITCOUNT: one BITOP AND per part. */
static int redis_count_steps(void *ctx, const rule_t *r, uint64_t *count, char *err,
                             size_t errlen) {
    rpeer_t *rp = ctx;
    redisContext *c = rp->c;
    rcmd_t m;
    int sent = 0;
    const char *base = RKEY_LIVE;
    if (r->nall) {
        rcmd_start(&m, "BITOP", "AND", RKEY_ALL);
        rcmd_tags(&m, r->all, r->nall);
        rcmd_send(c, &m);
        sent++;
        base = RKEY_ALL;
    }
    if (r->nany) {
        rcmd_start(&m, "BITOP", "OR", RKEY_ANY);
        rcmd_tags(&m, r->any, r->nany);
        rcmd_send(c, &m);
        rcmd_start(&m, "BITOP", "AND", RKEY_ALL);
        rcmd_key(&m, base);
        rcmd_key(&m, RKEY_ANY);
        rcmd_send(c, &m);
        sent += 2;
        base = RKEY_ALL;
    }
    if (r->nnone) {
        rcmd_start(&m, "BITOP", "OR", RKEY_NONE);
        rcmd_tags(&m, r->none, r->nnone);
        rcmd_send(c, &m);
        rcmd_start(&m, "BITOP", "NOT", RKEY_NONE);
        rcmd_key(&m, RKEY_NONE);
        rcmd_send(c, &m);
        rcmd_start(&m, "BITOP", "AND", RKEY_ALL);
        rcmd_key(&m, base);
        rcmd_key(&m, RKEY_NONE);
        rcmd_send(c, &m);
        sent += 3;
        base = RKEY_ALL;
    }
    rcmd_start(&m, "BITCOUNT", base, NULL);
    rcmd_send(c, &m);
    sent++;
    return redis_replies(c, sent, count, err, errlen);
}

static redisReply *rcall(redisContext *c, char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (rep == NULL) {
        snprintf(err, errlen, "%s", c->errstr[0] ? c->errstr : "no reply");
        return NULL;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "%s", rep->str);
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

/* A "field:value" line of an INFO answer, as a number (or -1). */
static long long info_field(const char *info, const char *field) {
    size_t fl = strlen(field);
    for (const char *p = info; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, field, fl) == 0 && p[fl] == ':') {
            return strtoll(p + fl + 1, NULL, 10);
        }
    }
    return -1;
}

static int peer_redis(const char *addr, int steps, const bench_data_t *d, const uint32_t *sel,
                      uint32_t nsel) {
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || (size_t)(colon - addr) >= sizeof host) {
        printf("redis_status skipped: bad address '%s' (want HOST:PORT)\n", addr);
        return RUN_OK;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    int port = atoi(colon + 1);
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (c == NULL || c->err) {
        printf("redis_status skipped: cannot connect to %s: %s\n", addr,
               c ? c->errstr : "out of memory");
        if (c) {
            redisFree(c);
        }
        return RUN_OK;
    }
    redisSetTimeout(c, (struct timeval){60, 0});
    char err[512];
    redisReply *rep = rcall(c, err, sizeof err, "INFO server");
    if (rep == NULL) {
        printf("redis_status skipped: %s does not answer INFO: %s\n", addr, err);
        redisFree(c);
        return RUN_OK;
    }
    char ver[32] = "?";
    const char *v = strstr(rep->str, "redis_version:");
    if (v) {
        sscanf(v + 14, "%31[0-9.]", ver);
    }
    freeReplyObject(rep);
    printf("redis_version %s\n", ver);
    if (atoi(ver) < 7) {
        printf("redis_status skipped: Redis %s at %s; the peer is defined on Redis 7\n", ver, addr);
        redisFree(c);
        return RUN_OK;
    }

    /* Load: every tag's bitmap built in memory (MSB-first bit order within a byte,
     * exactly ceil(n/8) bytes so BITOP NOT pads nothing) and SET whole. */
    double t0 = now_s();
    unsigned nb = tag_bits(d);
    size_t nbytes = ((size_t)d->n + 7) / 8;
    uint8_t *bm = xcalloc((size_t)nb * nbytes, 1);
    for (uint32_t i = 0; i < d->n; i++) {
        const uint64_t *row = d->rows + (size_t)i * d->words;
        for (uint32_t w = 0; w < d->words; w++) {
            uint64_t x = row[w];
            while (x) {
                unsigned t = w * 64u + (unsigned)__builtin_ctzll(x);
                x &= x - 1;
                bm[(size_t)t * nbytes + i / 8] |= (uint8_t)(0x80u >> (i % 8));
            }
        }
    }
    int rc = RUN_OK;
    rep = rcall(c, err, sizeof err, "DEL %s %s %s %s", RKEY_LIVE, RKEY_ALL, RKEY_ANY, RKEY_NONE);
    if (rep == NULL) {
        goto fail;
    }
    freeReplyObject(rep);
    for (unsigned t = 0; t < nb; t++) {
        char key[24];
        rtag_key(t, key, sizeof key);
        rep = rcall(c, err, sizeof err, "SET %s %b", key, bm + (size_t)t * nbytes, nbytes);
        if (rep == NULL) {
            goto fail;
        }
        freeReplyObject(rep);
    }
    /* bench:live: the n enterprises, zeros in the padding bits of the last byte. */
    memset(bm, 0xff, nbytes);
    if (d->n % 8) {
        bm[nbytes - 1] = (uint8_t)(0xffu << (8 - d->n % 8));
    }
    rep = rcall(c, err, sizeof err, "SET %s %b", RKEY_LIVE, bm, nbytes);
    if (rep == NULL) {
        goto fail;
    }
    freeReplyObject(rep);
    free(bm);
    bm = NULL;
    printf("redis_load_s %.2f\nredis_bitmap_bytes %zu\n", now_s() - t0, (size_t)(nb + 1) * nbytes);

    rpeer_t rp = {c};
    rc = run_peer("redis", redis_count, &rp, d, sel, nsel);
    if (rc != RUN_ERROR && steps) {
        rc |= run_peer("redis_steps", redis_count_steps, &rp, d, sel, nsel);
    }
    if (rc & RUN_ERROR) {
        redisFree(c);
        return rc;
    }
    rep = rcall(c, err, sizeof err, "DEL %s %s %s", RKEY_ALL, RKEY_ANY, RKEY_NONE);
    if (rep) {
        freeReplyObject(rep);
    }
    rep = rcall(c, err, sizeof err, "INFO memory");
    if (rep) {
        printf("redis_used_memory %lld\n", info_field(rep->str, "used_memory"));
        freeReplyObject(rep);
    }
    redisFree(c);
    return rc;
fail:
    fprintf(stderr, "peers: redis: %s\n", err);
    printf("redis_status failed: %s\n", err);
    free(bm);
    redisFree(c);
    return RUN_ERROR;
}

/* ---------------------------------------------------------------------------
 * CRoaring: one compressed bitmap per tag
 * ------------------------------------------------------------------------- */

#ifdef HAVE_ROARING
typedef struct rrpeer {
    roaring_bitmap_t **tag;
    uint64_t *card; /* per tag */
    roaring_bitmap_t *live;
    uint64_t n;
} rrpeer_t;

/* Bitmaps made while evaluating one rule, freed together (roaring_bitmap_free(NULL)
 * crashes in 0.2.66). */
typedef struct rown {
    roaring_bitmap_t *b[RULE_MAX_PART + 4];
    unsigned n;
} rown_t;

static roaring_bitmap_t *rown_keep(rown_t *o, roaring_bitmap_t *b) {
    o->b[o->n++] = b;
    return b;
}

/* Evaluated the way one would hand-write it for CRoaring: the all tags intersected
 * smallest first; the any part as the union of (current & any_k) when the current
 * set is small, else as (current & union(any)); the none tags removed one by one;
 * the last operation of the rule a *_cardinality call that materializes nothing.
 * ("Small" is under n/256: tried against n/16..n/1024 on the reference city.) */
static int roaring_count(void *ctx, const rule_t *r, uint64_t *count, char *err, size_t errlen) {
    (void)err;
    (void)errlen;
    const rrpeer_t *rr = ctx;
    rown_t own = {.n = 0};
    const roaring_bitmap_t *cur = NULL;
    roaring_bitmap_t *mine = NULL; /* cur, when we may modify it in place */
    int done = 0;
    uint16_t all[RULE_MAX_PART];
    memcpy(all, r->all, r->nall * sizeof *all);
    /* Insertion sort by cardinality (at most 4 or so tags). */
    for (uint16_t i = 1; i < r->nall; i++) {
        uint16_t t = all[i];
        uint16_t j = i;
        while (j > 0 && rr->card[all[j - 1]] > rr->card[t]) {
            all[j] = all[j - 1];
            j--;
        }
        all[j] = t;
    }
    for (uint16_t k = 0; k < r->nall; k++) {
        const roaring_bitmap_t *t = rr->tag[all[k]];
        if (cur == NULL) {
            cur = t;
        } else if (k + 1 == r->nall && r->nany == 0 && r->nnone == 0) {
            *count = roaring_bitmap_and_cardinality(cur, t);
            done = 1;
        } else if (mine) {
            roaring_bitmap_and_inplace(mine, t);
        } else {
            cur = mine = rown_keep(&own, roaring_bitmap_and(cur, t));
        }
    }
    if (r->nany && !done) {
        const roaring_bitmap_t *v[RULE_MAX_PART];
        for (uint16_t k = 0; k < r->nany; k++) {
            v[k] = rr->tag[r->any[k]];
        }
        if (cur == NULL) {
            cur = r->nany == 1 ? v[0] : rown_keep(&own, roaring_bitmap_or_many(r->nany, v));
            mine = NULL;
        } else if (r->nany == 1 && r->nnone == 0) {
            *count = roaring_bitmap_and_cardinality(cur, v[0]);
            done = 1;
        } else if (roaring_bitmap_get_cardinality(cur) * 256 < rr->n) {
            roaring_bitmap_t *u = rown_keep(&own, roaring_bitmap_and(cur, v[0]));
            for (uint16_t k = 1; k < r->nany; k++) {
                roaring_bitmap_t *x = roaring_bitmap_and(cur, v[k]);
                roaring_bitmap_or_inplace(u, x);
                roaring_bitmap_free(x);
            }
            cur = mine = u;
        } else {
            const roaring_bitmap_t *u =
                r->nany == 1 ? v[0] : rown_keep(&own, roaring_bitmap_or_many(r->nany, v));
            if (r->nnone == 0) {
                *count = roaring_bitmap_and_cardinality(cur, u);
                done = 1;
            } else if (mine) {
                roaring_bitmap_and_inplace(mine, u);
            } else {
                cur = mine = rown_keep(&own, roaring_bitmap_and(cur, u));
            }
        }
    }
    if (r->nnone && !done) {
        if (cur == NULL) {
            cur = rr->live;
        }
        for (uint16_t k = 0; k + 1 < r->nnone; k++) {
            if (mine) {
                roaring_bitmap_andnot_inplace(mine, rr->tag[r->none[k]]);
            } else {
                cur = mine = rown_keep(&own, roaring_bitmap_andnot(cur, rr->tag[r->none[k]]));
            }
        }
        *count = roaring_bitmap_andnot_cardinality(cur, rr->tag[r->none[r->nnone - 1]]);
        done = 1;
    }
    if (!done) {
        *count = cur ? roaring_bitmap_get_cardinality(cur) : rr->n;
    }
    for (unsigned k = 0; k < own.n; k++) {
        roaring_bitmap_free(own.b[k]);
    }
    return 0;
}

static int peer_roaring(const bench_data_t *d, const uint32_t *sel, uint32_t nsel) {
    enum { CHUNK = 4096 };
    double t0 = now_s();
    unsigned nb = tag_bits(d);
    rrpeer_t rr;
    rr.tag = xcalloc(nb, sizeof *rr.tag);
    uint32_t *buf = xmalloc((size_t)nb * CHUNK * sizeof *buf);
    unsigned *fill = xcalloc(nb, sizeof *fill);
    for (unsigned t = 0; t < nb; t++) {
        rr.tag[t] = roaring_bitmap_create();
    }
    for (uint32_t i = 0; i < d->n; i++) {
        const uint64_t *row = d->rows + (size_t)i * d->words;
        for (uint32_t w = 0; w < d->words; w++) {
            uint64_t x = row[w];
            while (x) {
                unsigned t = w * 64u + (unsigned)__builtin_ctzll(x);
                x &= x - 1;
                buf[(size_t)t * CHUNK + fill[t]++] = i;
                if (fill[t] == CHUNK) {
                    roaring_bitmap_add_many(rr.tag[t], CHUNK, buf + (size_t)t * CHUNK);
                    fill[t] = 0;
                }
            }
        }
    }
    size_t bytes = 0;
    for (unsigned t = 0; t < nb; t++) {
        roaring_bitmap_add_many(rr.tag[t], fill[t], buf + (size_t)t * CHUNK);
        roaring_bitmap_run_optimize(rr.tag[t]);
        roaring_bitmap_shrink_to_fit(rr.tag[t]);
        bytes += roaring_bitmap_portable_size_in_bytes(rr.tag[t]);
    }
    free(buf);
    free(fill);
    rr.card = xcalloc(nb, sizeof *rr.card);
    for (unsigned t = 0; t < nb; t++) {
        rr.card[t] = roaring_bitmap_get_cardinality(rr.tag[t]);
    }
    rr.n = d->n;
    rr.live = roaring_bitmap_from_range(0, d->n, 1);
    roaring_bitmap_run_optimize(rr.live);
    printf("roaring_build_s %.2f\nroaring_bytes %zu\n", now_s() - t0, bytes);
    int rc = run_peer("roaring", roaring_count, &rr, d, sel, nsel);
    for (unsigned t = 0; t < nb; t++) {
        roaring_bitmap_free(rr.tag[t]);
    }
    roaring_bitmap_free(rr.live);
    free(rr.tag);
    free(rr.card);
    return rc;
}
#endif

/* ---------------------------------------------------------------------------
 * PostgreSQL: ent(id int, tags int[]) with a GIN index
 * ------------------------------------------------------------------------- */

#ifdef HAVE_LIBPQ
static int row_has(const bench_data_t *d, uint32_t i, unsigned bit) {
    return (int)((d->rows[(size_t)i * d->words + bit / 64] >> (bit % 64)) & 1u);
}

typedef struct pgpeer {
    PGconn *c;
} pgpeer_t;

static int pg_ok(PGresult *res, ExecStatusType want, char *err, size_t errlen) {
    if (res == NULL || PQresultStatus(res) != want) {
        snprintf(err, errlen, "%s", res ? PQresultErrorMessage(res) : "no result");
        size_t l = strlen(err);
        while (l && (err[l - 1] == '\n' || err[l - 1] == ' ')) {
            err[--l] = '\0';
        }
        PQclear(res);
        return -1;
    }
    PQclear(res);
    return 0;
}

static int pg_exec(PGconn *c, const char *sql, char *err, size_t errlen) {
    PGresult *res = PQexec(c, sql);
    ExecStatusType want =
        res && PQresultStatus(res) == PGRES_TUPLES_OK ? PGRES_TUPLES_OK : PGRES_COMMAND_OK;
    return pg_ok(res, want, err, errlen);
}

/* The one-value answer of 'sql' as a number, or -1. */
static long long pg_value(PGconn *c, const char *sql) {
    PGresult *res = PQexec(c, sql);
    long long v = -1;
    if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    }
    PQclear(res);
    return v;
}

static void pg_array(char *out, size_t len, const uint16_t *bits, uint16_t n) {
    size_t o = (size_t)snprintf(out, len, "{");
    for (uint16_t k = 0; k < n && o < len; k++) {
        o += (size_t)snprintf(out + o, len - o, "%s%u", k ? "," : "", bits[k]);
    }
    if (o < len) {
        snprintf(out + o, len - o, "}");
    }
}

static int pg_count(void *ctx, const rule_t *r, uint64_t *count, char *err, size_t errlen) {
    pgpeer_t *pp = ctx;
    char sql[256] = "SELECT count(*) FROM ent";
    char arr[3][RULE_MAX_PART * 6 + 4];
    const char *params[3];
    int np = 0;
    const uint16_t *parts[3] = {r->all, r->any, r->none};
    const uint16_t lens[3] = {r->nall, r->nany, r->nnone};
    static const char *const ops[3] = {"tags @>", "tags &&", "NOT tags &&"};
    for (int k = 0; k < 3; k++) {
        if (lens[k] == 0) {
            continue;
        }
        pg_array(arr[np], sizeof arr[np], parts[k], lens[k]);
        params[np] = arr[np];
        np++;
        size_t o = strlen(sql);
        o += (size_t)snprintf(sql + o, sizeof sql - o, "%s", np == 1 ? " WHERE " : " AND ");
        snprintf(sql + o, sizeof sql - o, "%s $%d::int[]", ops[k], np);
    }
    PGresult *res = PQexecParams(pp->c, sql, np, NULL, params, NULL, NULL, 0);
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        return pg_ok(res, PGRES_TUPLES_OK, err, errlen);
    }
    if (PQntuples(res) != 1) {
        snprintf(err, errlen, "count(*) answered %d rows", PQntuples(res));
        PQclear(res);
        return -1;
    }
    *count = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return 0;
}

static int pg_copy(PGconn *c, const bench_data_t *d, char *err, size_t errlen) {
    if (pg_exec(c, "DROP TABLE IF EXISTS ent", err, errlen) ||
        pg_exec(c, "CREATE TABLE ent (id int, tags int[])", err, errlen)) {
        return -1;
    }
    PGresult *res = PQexec(c, "COPY ent (id, tags) FROM STDIN");
    if (pg_ok(res, PGRES_COPY_IN, err, errlen)) {
        return -1;
    }
    enum { BUF = 1 << 16 };
    char *buf = xmalloc(BUF);
    size_t o = 0;
    int rc = 0;
    for (uint32_t i = 0; i < d->n && rc == 0; i++) {
        if (o > BUF - 4096) {
            rc = PQputCopyData(c, buf, (int)o) == 1 ? 0 : -1;
            o = 0;
        }
        o += (size_t)snprintf(buf + o, BUF - o, "%u\t{", i);
        int first = 1;
        for (unsigned t = 0; t < tag_bits(d); t++) {
            if (row_has(d, i, t)) {
                o += (size_t)snprintf(buf + o, BUF - o, first ? "%u" : ",%u", t);
                first = 0;
            }
        }
        buf[o++] = '}';
        buf[o++] = '\n';
    }
    if (rc == 0 && o) {
        rc = PQputCopyData(c, buf, (int)o) == 1 ? 0 : -1;
    }
    free(buf);
    if (PQputCopyEnd(c, rc ? "aborted" : NULL) != 1) {
        rc = -1;
    }
    res = PQgetResult(c);
    if (pg_ok(res, PGRES_COMMAND_OK, err, errlen)) {
        return -1;
    }
    while ((res = PQgetResult(c)) != NULL) {
        PQclear(res);
    }
    if (rc) {
        snprintf(err, errlen, "COPY: %s", PQerrorMessage(c));
    }
    return rc;
}

static int peer_pg(const char *conninfo, int keep, const bench_data_t *d, const uint32_t *sel,
                   uint32_t nsel) {
    PGconn *c = PQconnectdb(conninfo);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", c ? PQerrorMessage(c) : "out of memory");
        for (char *p = msg; *p; p++) {
            if (*p == '\n' || *p == '\t') {
                *p = ' ';
            }
        }
        for (size_t l = strlen(msg); l && msg[l - 1] == ' '; l--) {
            msg[l - 1] = '\0';
        }
        printf("pg_status skipped: cannot connect (%s): %s\n", conninfo, msg);
        PQfinish(c);
        return RUN_OK;
    }
    printf("pg_server_version %d\n", PQserverVersion(c));
    char err[512];
    double t0 = now_s();
    long long have = keep ? pg_value(c, "SELECT count(*) FROM ent") : -1;
    if (have != (long long)d->n) {
        if (pg_copy(c, d, err, sizeof err)) {
            goto fail;
        }
        double t1 = now_s();
        printf("pg_copy_s %.2f\n", t1 - t0);
        fflush(stdout);
        if (pg_exec(c, "SET maintenance_work_mem = '1GB'", err, sizeof err) ||
            pg_exec(c, "CREATE INDEX ent_tags_gin ON ent USING gin (tags)", err, sizeof err)) {
            goto fail;
        }
        double t2 = now_s();
        printf("pg_index_s %.2f\n", t2 - t1);
        if (pg_exec(c, "VACUUM ANALYZE ent", err, sizeof err)) {
            goto fail;
        }
        printf("pg_load_s %.2f\n", now_s() - t0);
    } else {
        printf("pg_load_s 0 (reused the loaded table)\n");
    }
    printf("pg_table_bytes %lld\npg_index_bytes %lld\n", pg_value(c, "SELECT pg_table_size('ent')"),
           pg_value(c, "SELECT pg_indexes_size('ent')"));
    fflush(stdout);
    pgpeer_t pp = {c};
    int rc = run_peer("pg", pg_count, &pp, d, sel, nsel);
    PQfinish(c);
    return rc;
fail:
    fprintf(stderr, "peers: pg: %s\n", err);
    printf("pg_status failed: %s\n", err);
    PQfinish(c);
    return RUN_ERROR;
}
#endif

/* ---------------------------------------------------------------------------
 * The HTTP plan: a typical package and a typical audience for bench/run.sh
 * ------------------------------------------------------------------------- */

/* Writes: the truth of every policy ("truth <policy> <count>", 1-based), a uscc
 * with the median package size over a sample of enterprises ("package_uscc",
 * "package_size") and the policy whose audience is closest to the median
 * ("audience_policy", "audience_count"). */
static int write_plan(const char *path, const bench_data_t *d) {
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "peers: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (uint32_t p = 0; p < d->np; p++) {
        fprintf(f, "truth %u %llu\n", p + 1, (unsigned long long)d->truth[p]);
    }
    enum { SAMPLE = 2001 };
    uint32_t ns = d->n < SAMPLE ? d->n : SAMPLE;
    uint64_t *size = xcalloc(ns, sizeof *size);
    uint64_t *sorted = xcalloc(ns, sizeof *sorted);
    for (uint32_t s = 0; s < ns; s++) {
        uint32_t i = (uint32_t)((uint64_t)s * d->n / ns);
        for (uint32_t p = 0; p < d->np; p++) {
            size[s] += rule_match_row(&d->rules[p], d->rows + (size_t)i * d->words, d->words);
        }
        sorted[s] = size[s];
    }
    uint64_t med = pct(sorted, ns, 0.5);
    for (uint32_t s = 0; s < ns; s++) {
        if (size[s] == med) {
            uint32_t i = (uint32_t)((uint64_t)s * d->n / ns);
            fprintf(f, "package_uscc %.18s\npackage_index %u\npackage_size %llu\n",
                    d->keys + (size_t)i * 18, i, (unsigned long long)med);
            break;
        }
    }
    uint64_t *t = xmalloc(d->np * sizeof *t);
    memcpy(t, d->truth, d->np * sizeof *t);
    uint64_t amed = pct(t, d->np, 0.5);
    uint32_t best = 0;
    for (uint32_t p = 1; p < d->np; p++) {
        uint64_t dp = d->truth[p] > amed ? d->truth[p] - amed : amed - d->truth[p];
        uint64_t db = d->truth[best] > amed ? d->truth[best] - amed : amed - d->truth[best];
        if (dp < db) {
            best = p;
        }
    }
    fprintf(f, "audience_policy %u\naudience_count %llu\n", best + 1,
            (unsigned long long)d->truth[best]);
    free(size);
    free(sorted);
    free(t);
    return fclose(f);
}

/* ---------------------------------------------------------------------------
 * Main
 * ------------------------------------------------------------------------- */

static void usage(void) {
    fprintf(stderr,
            "usage: peers [--data DIR] [--n N] [--policies P] [--seed S] [--today YYYY-MM-DD]\n"
            "             [--redis HOST:PORT [--redis-steps]] [--roaring] [--dense]\n"
            "             [--pg CONNINFO [--pg-all] [--pg-keep]] [--plan FILE]\n"
            "Reads the data set bench/bench wrote (same --data/--n/--policies/--seed/--today)\n"
            "and runs its policies on each peer given, checking every count.\n");
}

int main(int argc, char **argv) {
    uint32_t n = 1110000;
    uint32_t np = 2000;
    uint64_t seed = 20230610;
    const char *dir = "var/bench";
    const char *redis = NULL;
    const char *pg = NULL;
    const char *plan = NULL;
    int roaring = 0, dense = 0, pg_all = 0, pg_keep = 0, redis_steps = 0;
    int32_t today = date_from_ymd(2026, 11, 22);
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--n") == 0 && a + 1 < argc) {
            n = (uint32_t)strtoul(argv[++a], NULL, 10);
        } else if (strcmp(argv[a], "--policies") == 0 && a + 1 < argc) {
            np = (uint32_t)strtoul(argv[++a], NULL, 10);
        } else if (strcmp(argv[a], "--seed") == 0 && a + 1 < argc) {
            seed = strtoull(argv[++a], NULL, 10);
        } else if (strcmp(argv[a], "--data") == 0 && a + 1 < argc) {
            dir = argv[++a];
        } else if (strcmp(argv[a], "--today") == 0 && a + 1 < argc) {
            if (date_parse(argv[a + 1], strlen(argv[a + 1]), &today)) {
                usage();
                return 2;
            }
            a++;
        } else if (strcmp(argv[a], "--redis") == 0 && a + 1 < argc) {
            redis = argv[++a];
        } else if (strcmp(argv[a], "--pg") == 0 && a + 1 < argc) {
            pg = argv[++a];
        } else if (strcmp(argv[a], "--plan") == 0 && a + 1 < argc) {
            plan = argv[++a];
        } else if (strcmp(argv[a], "--redis-steps") == 0) {
            redis_steps = 1;
        } else if (strcmp(argv[a], "--roaring") == 0) {
            roaring = 1;
        } else if (strcmp(argv[a], "--dense") == 0) {
            dense = 1;
        } else if (strcmp(argv[a], "--pg-all") == 0) {
            pg_all = 1;
        } else if (strcmp(argv[a], "--pg-keep") == 0) {
            pg_keep = 1;
        } else {
            usage();
            return 2;
        }
    }
    bench_data_t d;
    if (bench_data_load(dir, seed, n, np, today, &d) != 0) {
        fprintf(stderr,
                "peers: no data set %s (run build/bench/bench --data %s --n %u "
                "--policies %u first)\n",
                bench_data_path(dir, seed, n, np), dir, n, np);
        return 1;
    }
    for (uint32_t p = 0; p < np; p++) {
        const rule_t *r = &d.rules[p];
        for (uint16_t k = 0; k < r->nall + r->nany + r->nnone; k++) {
            uint16_t b = k < r->nall             ? r->all[k]
                         : k < r->nall + r->nany ? r->any[k - r->nall]
                                                 : r->none[k - r->nall - r->nany];
            if (b >= tag_bits(&d)) {
                fprintf(stderr, "peers: policy %u uses tag bit %u beyond the rows\n", p + 1, b);
                return 1;
            }
        }
    }
    uint32_t *all = xmalloc(np * sizeof *all);
    for (uint32_t p = 0; p < np; p++) {
        all[p] = p;
    }
    printf("peers_enterprises %u\npeers_policies %u\n", n, np);
    fflush(stdout);
    int rc = 0;
    if (plan && write_plan(plan, &d) != 0) {
        rc = RUN_ERROR;
    }
    if (dense) {
        rc |= peer_dense(&d, all, np);
    }
    if (redis) {
        rc |= peer_redis(redis, redis_steps, &d, all, np);
    }
    if (roaring) {
#ifdef HAVE_ROARING
        rc |= peer_roaring(&d, all, np);
#else
        printf("roaring_status skipped: peers was built without CRoaring (install "
               "libroaring-dev and rebuild)\n");
#endif
    }
    if (pg) {
#ifdef HAVE_LIBPQ
        /* Every 10th policy unless --pg-all: deterministic, the same set each run. */
        uint32_t *sel = xmalloc(np * sizeof *sel);
        uint32_t nsel = 0;
        for (uint32_t p = 0; p < np; p++) {
            if (pg_all || p % 10 == 0) {
                sel[nsel++] = p;
            }
        }
        printf("pg_sample %s\n", pg_all ? "all policies" : "every 10th policy (1, 11, 21, ...)");
        uint64_t *t = xmalloc(nsel * sizeof *t);
        for (uint32_t k = 0; k < nsel; k++) {
            t[k] = d.truth[sel[k]];
        }
        printf("pg_sample_audience_median %llu\n", (unsigned long long)pct(t, nsel, 0.5));
        free(t);
        fflush(stdout);
        rc |= peer_pg(pg, pg_keep, &d, sel, nsel);
        free(sel);
#else
        (void)pg_all;
        (void)pg_keep;
        printf("pg_status skipped: peers was built without libpq (install libpq-dev and "
               "rebuild)\n");
#endif
    }
    free(all);
    bench_data_free(&d);
    return rc ? 1 : 0;
}

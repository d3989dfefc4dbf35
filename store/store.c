/* Store: writes through Lua scripts, applied to the in-memory mirror (mirror.c) when
 * their replies arrive, and reads. Loading and resynchronisation live in
 * store_load.c. */
#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/xalloc.h"
#include "matcher/bitset.h"
#include "store/internal.h"
#include "tags/date.h"

int store__status_parse(const char *s, size_t len) {
    if (len == 5 && memcmp(s, "draft", 5) == 0) {
        return STORE_POL_DRAFT;
    }
    if (len == 9 && memcmp(s, "published", 9) == 0) {
        return STORE_POL_PUBLISHED;
    }
    if (len == 9 && memcmp(s, "withdrawn", 9) == 0) {
        return STORE_POL_WITHDRAWN;
    }
    return -1;
}

/* ---------------------------------------------------------------------------
 * Lifecycle
 * ------------------------------------------------------------------------- */

void store__emit(store_t *s, int event, const char *detail) {
    if (s->cb) {
        s->cb(s->arg, event, detail);
    }
}

static void store_sha1_hex(const char *text, char *out) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(text, strlen(text), md, &n, EVP_sha1(), NULL) != 1 || n != 20) {
        /* No digest: a SHA that matches no script, so that every call takes the
         * NOSCRIPT fallback to EVAL instead of naming uninitialised bytes. */
        memset(out, '0', 40);
        out[40] = '\0';
        return;
    }
    for (unsigned i = 0; i < 20; i++) {
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    }
    out[40] = '\0';
}

/* The bulk connection needs no setup of its own: scripts are loaded server-wide
 * by the main one (and EVALSHA falls back to EVAL). */
static void store_on_bulk_state(void *arg, int up) {
    (void)arg;
    (void)up;
}

store_t *store_new(uv_loop_t *loop, const store_opts_t *opts, const taxonomy_t *tax,
                   store_event_cb cb, void *arg) {
    if ((opts->redis_host == NULL) == (opts->redis_unix == NULL)) {
        return NULL;
    }
    store_t *s = xcalloc(1, sizeof *s);
    s->loop = loop;
    s->tax = tax;
    s->cb = cb;
    s->arg = arg;
    s->state = ST_DOWN;
    for (int i = 0; i < STORE_NSCRIPTS; i++) {
        store_sha1_hex(store__script_text[i], s->script_sha[i]);
    }
    s->mem = store__mem_new(tax);
    store_link_opts_t lo = {
        .host = opts->redis_host,
        .port = opts->redis_port,
        .unix_path = opts->redis_unix,
        .connect_timeout_ms = opts->connect_timeout_ms ? opts->connect_timeout_ms : 1000,
        .command_timeout_ms = opts->command_timeout_ms ? opts->command_timeout_ms : 2000,
        .max_inflight = opts->max_inflight ? opts->max_inflight : 10000,
        .ping_interval_ms = 1000,
    };
    s->link = store__link_new(loop, &lo, store__on_link_state, s);
    s->bulk = store__link_new(loop, &lo, store_on_bulk_state, s);
    return s;
}

static void store_on_link_closed(void *arg) {
    store_t *s = arg;
    if (--s->closing_links > 0) {
        return; /* the other connection is still closing */
    }
    void (*done)(void *) = s->close_done;
    void *darg = s->close_arg;
    store__mem_free(s->mem);
    free(s);
    if (done) {
        done(darg);
    }
}

void store_close(store_t *s, void (*done)(void *), void *arg) {
    s->state = ST_CLOSING;
    s->close_done = done;
    s->close_arg = arg;
    store__load_abort(s);
    s->closing_links = 2;
    store__link_close(s->link, store_on_link_closed, s);
    store__link_close(s->bulk, store_on_link_closed, s);
}

void store_set_ent_hook(store_t *s, store_ent_hook_fn fn, void *arg) {
    s->ent_hook = fn;
    s->ent_hook_arg = arg;
}

bool store_ready(const store_t *s) {
    return s->state == ST_READY;
}

bool store_loaded(const store_t *s) {
    return s->loaded;
}

bool store_redis_up(const store_t *s) {
    return store__link_up(s->link);
}

void store_get_stats(const store_t *s, store_stats_t *out) {
    store_link_stats_t ls, lb;
    store__link_stats(s->link, &ls);
    store__link_stats(s->bulk, &lb);
    memset(out, 0, sizeof *out);
    /* Both connections together; connects and disconnects are the main one's
     * (the bulk one follows it). */
    out->redis_connects = ls.connects;
    out->redis_disconnects = ls.disconnects;
    out->redis_timeouts = ls.timeouts + lb.timeouts;
    out->redis_commands = ls.commands + lb.commands;
    out->redis_failed = ls.failed + lb.failed;
    out->redis_errors = ls.errors + lb.errors;
    out->redis_rtt = ls.rtt;
    for (unsigned b = 0; b < HISTO_NB; b++) {
        out->redis_rtt.n[b] += lb.rtt.n[b];
    }
    out->redis_rtt.count += lb.rtt.count;
    out->redis_rtt.sum += lb.rtt.sum;
    out->redis_inflight = store__link_inflight(s->link) + store__link_inflight(s->bulk);
    out->reloads = s->reloads;
    out->load_ms = s->load_ms;
}

/* ---------------------------------------------------------------------------
 * Script calls with NOSCRIPT fallback
 * ------------------------------------------------------------------------- */

typedef struct eval_call {
    store_t *s;
    int bulk;
    int script;
    int argc;
    char **argv;
    size_t *lens;
    store_link_reply_cb cb;
    void *arg;
} eval_call_t;

static void eval_call_free(eval_call_t *e) {
    for (int i = 0; i < e->argc; i++) {
        free(e->argv[i]);
    }
    free(e->argv);
    free(e->lens);
    free(e);
}

static void eval_on_reply(void *arg, redisReply *r);

static int eval_send(eval_call_t *e) {
    const char **cargv = xcalloc((size_t)e->argc, sizeof *cargv);
    for (int i = 0; i < e->argc; i++) {
        cargv[i] = e->argv[i];
    }
    /* hiredis formats the command into its buffer at once, so the temporary
     * pointer array can go right after. */
    int rc = store__link_command(e->bulk ? store__bulk_link(e->s) : e->s->link, eval_on_reply, e,
                                 e->argc, cargv, e->lens);
    free(cargv);
    return rc;
}

static void eval_on_reply(void *arg, redisReply *r) {
    eval_call_t *e = arg;
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0 &&
        strcmp(e->argv[0], "EVALSHA") == 0) {
        /* Redis lost its script cache (restart, SCRIPT FLUSH): send the body. */
        free(e->argv[0]);
        free(e->argv[1]);
        e->argv[0] = xstrdup("EVAL");
        e->lens[0] = 4;
        e->argv[1] = xstrdup(store__script_text[e->script]);
        e->lens[1] = strlen(e->argv[1]);
        if (eval_send(e) == 0) {
            return;
        }
        r = NULL;
    }
    e->cb(e->arg, r);
    eval_call_free(e);
}

store_link_t *store__bulk_link(const store_t *s) {
    return s->bulk && store__link_up(s->bulk) ? s->bulk : s->link;
}

static int store_eval_on(store_t *s, int bulk, int script, int nargs, const char **args,
                         const size_t *lens, store_link_reply_cb cb, void *arg);

int store__eval(store_t *s, int script, int nargs, const char **args, const size_t *lens,
                store_link_reply_cb cb, void *arg) {
    return store_eval_on(s, 0, script, nargs, args, lens, cb, arg);
}

int store__eval_bulk(store_t *s, int script, int nargs, const char **args, const size_t *lens,
                     store_link_reply_cb cb, void *arg) {
    return store_eval_on(s, 1, script, nargs, args, lens, cb, arg);
}

static int store_eval_on(store_t *s, int bulk, int script, int nargs, const char **args,
                         const size_t *lens, store_link_reply_cb cb, void *arg) {
    eval_call_t *e = xcalloc(1, sizeof *e);
    e->s = s;
    e->bulk = bulk;
    e->script = script;
    e->argc = nargs + 3;
    e->argv = xcalloc((size_t)e->argc, sizeof *e->argv);
    e->lens = xcalloc((size_t)e->argc, sizeof *e->lens);
    e->argv[0] = xstrdup("EVALSHA");
    e->lens[0] = 7;
    e->argv[1] = xstrdup(s->script_sha[script]);
    e->lens[1] = 40;
    e->argv[2] = xstrdup("0");
    e->lens[2] = 1;
    for (int i = 0; i < nargs; i++) {
        e->argv[3 + i] = xmemdup(args[i], lens[i]);
        e->lens[3 + i] = lens[i];
    }
    e->cb = cb;
    e->arg = arg;
    int rc = eval_send(e);
    if (rc != 0) {
        eval_call_free(e);
    }
    return rc;
}

/* ---------------------------------------------------------------------------
 * Reply helpers
 * ------------------------------------------------------------------------- */

static int reply_status_is(const redisReply *r, const char *s) {
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        return 0;
    }
    const redisReply *e = r->element[0];
    return (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS) &&
           strlen(s) == e->len && memcmp(e->str, s, e->len) == 0;
}

static int reply_int(const redisReply *r, size_t i, long long *v) {
    if (r->type != REDIS_REPLY_ARRAY || i >= r->elements ||
        r->element[i]->type != REDIS_REPLY_INTEGER) {
        return -EPROTO;
    }
    *v = r->element[i]->integer;
    return 0;
}

/* Maps a script's non-ok answer to an error. */
static int reply_error(const redisReply *r) {
    if (r == NULL) {
        return -EIO;
    }
    if (reply_status_is(r, "exists")) {
        return -EEXIST;
    }
    if (reply_status_is(r, "missing")) {
        return -ENOENT;
    }
    if (reply_status_is(r, "stale")) {
        return -ESTALE;
    }
    if (reply_status_is(r, "state")) {
        return -EPERM;
    }
    return -EPROTO;
}

int store__usable(const store_t *s) {
    if (s->state == ST_READY) {
        return 0;
    }
    return store__link_up(s->link) ? -EAGAIN : -ENOTCONN;
}

static int store_writable(const store_t *s) {
    return store__usable(s);
}

/* ---------------------------------------------------------------------------
 * Enterprises
 * ------------------------------------------------------------------------- */

static int64_t store_now_ms(const store_t *s) {
    (void)s;
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

typedef struct ent_op {
    store_t *s;
    store_ent_cb cb;
    void *arg;
    char uscc[18];
    uint64_t row[MATCHER_MAX_TAGS / 64];
    uint16_t interests[STORE_MAX_INTERESTS];
    unsigned nint;
    int del;
} ent_op_t;

static void ent_on_reply(void *arg, redisReply *r) {
    ent_op_t *op = arg;
    store_t *s = op->s;
    store_ent_out_t out = {0};
    int rc;
    if (r == NULL) {
        s->dirty = 1;
        rc = -EIO;
    } else if (!reply_status_is(r, "ok")) {
        rc = reply_error(r);
    } else {
        long long ord = 0, ver = 0, created = 0, cms = 0, ums = 0, changed = 0;
        rc = reply_int(r, 1, &ord);
        if (rc == 0 && !op->del &&
            (reply_int(r, 2, &ver) || reply_int(r, 3, &created) || reply_int(r, 4, &cms) ||
             reply_int(r, 5, &ums) || reply_int(r, 6, &changed))) {
            rc = -EPROTO;
        }
        if (rc == 0 && (ord < 0 || ord >= MATCHER_MAX_ORD)) {
            rc = -EPROTO;
        }
        if (rc == 0) {
            out.ord = (uint32_t)ord;
            out.ver = (uint64_t)ver;
            out.created = (int)created;
            out.changed = op->del ? 1 : (int)changed;
            out.created_ms = cms;
            out.updated_ms = ums;
            uint64_t old[MATCHER_MAX_TAGS / 64];
            const uint64_t *cur = matcher_row(s->mem->m, out.ord);
            int had = cur != NULL;
            if (had) {
                memcpy(old, cur, matcher_row_words(s->mem->m) * sizeof *old);
            }
            store__mem_ent_apply(s->mem, op->uscc, out.ord, op->del ? NULL : op->row, op->interests,
                                 op->nint);
            if (s->ent_hook && out.changed) {
                s->ent_hook(s->ent_hook_arg, op->uscc, out.ord, had ? old : NULL,
                            op->del ? NULL : op->row);
            }
        }
    }
    op->cb(op->arg, rc, rc == 0 ? &out : NULL);
    free(op);
}

int store_ent_put(store_t *s, const store_ent_in_t *in, store_ent_cb cb, void *arg) {
    int rc = store_writable(s);
    if (rc) {
        return rc;
    }
    if (in->ninterests > STORE_MAX_INTERESTS) {
        return -E2BIG;
    }
    size_t words = matcher_row_words(s->mem->m);
    ent_op_t *op = xcalloc(1, sizeof *op);
    op->s = s;
    op->cb = cb;
    op->arg = arg;
    memcpy(op->uscc, in->uscc, 18);
    memcpy(op->row, in->row, words * sizeof *in->row);
    memcpy(op->interests, in->interests, in->ninterests * sizeof *in->interests);
    op->nint = in->ninterests;
    char *rec = xmalloc(store__rec_max(words));
    size_t reclen = store__rec_encode(rec, in->uscc, in->row, words, in->interests, in->ninterests);
    static const char *const modes[] = {"create", "upsert", "update"};
    char ver[24] = "";
    if (in->expect_ver >= 0) {
        snprintf(ver, sizeof ver, "%lld", (long long)in->expect_ver);
    }
    char now[24];
    snprintf(now, sizeof now, "%lld", (long long)store_now_ms(s));
    char retag[16] = "";
    if (in->retag_on != DATE_NONE) {
        snprintf(retag, sizeof retag, "%ld", (long)in->retag_on);
    }
    const char *wh = in->webhook ? in->webhook : "";
    const char *args[9] = {in->uscc, modes[in->mode],         ver, in->doc, rec, now, retag,
                           wh,       in->card ? in->card : ""};
    size_t lens[9] = {18,
                      strlen(modes[in->mode]),
                      strlen(ver),
                      in->doc_len,
                      reclen,
                      strlen(now),
                      strlen(retag),
                      strlen(wh),
                      in->card ? in->card_len : 0};
    rc = store__eval(s, STORE_SCRIPT_ENT_PUT, 9, args, lens, ent_on_reply, op);
    free(rec);
    if (rc) {
        free(op);
    }
    return rc;
}

int store_ent_del(store_t *s, const char *uscc, store_ent_cb cb, void *arg) {
    int rc = store_writable(s);
    if (rc) {
        return rc;
    }
    ent_op_t *op = xcalloc(1, sizeof *op);
    op->s = s;
    op->cb = cb;
    op->arg = arg;
    op->del = 1;
    memcpy(op->uscc, uscc, 18);
    const char *args[1] = {uscc};
    size_t lens[1] = {18};
    rc = store__eval(s, STORE_SCRIPT_ENT_DEL, 1, args, lens, ent_on_reply, op);
    if (rc) {
        free(op);
    }
    return rc;
}

typedef struct cards_op {
    store_hash_cb cb;
    void *arg;
} cards_op_t;

static void cards_on_reply(void *arg, redisReply *r) {
    cards_op_t *op = arg;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        op->cb(op->arg, r == NULL ? -EIO : -EPROTO, NULL, 0);
    } else {
        store_kv_t *kv = xcalloc(r->elements / 2 + 1, sizeof *kv);
        size_t n = store__kv_from_reply(r, kv, r->elements / 2 + 1);
        op->cb(op->arg, n * 2 == r->elements ? 0 : -EPROTO, kv, n);
        free(kv);
    }
    free(op);
}

int store_ent_cards(store_t *s, const char *const *usccs, size_t n, store_hash_cb cb, void *arg) {
    int usable = store__usable(s);
    if (usable) {
        return usable;
    }
    if (n == 0 || n > 100000) {
        return -EINVAL;
    }
    /* Read-only: the card, else the document, of each code in ARGV. */
    static const char script[] = "local out = {}\n"
                                 "for i = 1, #ARGV do\n"
                                 "  local k = 'hq:ent:' .. ARGV[i]\n"
                                 "  local c = redis.call('HGET', k, 'card')\n"
                                 "  if c then out[#out + 1] = 'c'; out[#out + 1] = c\n"
                                 "  else\n"
                                 "    local d = redis.call('HGET', k, 'doc')\n"
                                 "    if d then out[#out + 1] = 'd'; out[#out + 1] = d\n"
                                 "    else out[#out + 1] = ''; out[#out + 1] = '' end\n"
                                 "  end\n"
                                 "end\n"
                                 "return out\n";
    const char **argv = xcalloc(n + 3, sizeof *argv);
    size_t *lens = xcalloc(n + 3, sizeof *lens);
    argv[0] = "EVAL";
    argv[1] = script;
    argv[2] = "0";
    lens[0] = 4;
    lens[1] = sizeof script - 1;
    lens[2] = 1;
    for (size_t i = 0; i < n; i++) {
        argv[3 + i] = usccs[i];
        lens[3 + i] = 18;
    }
    cards_op_t *op = xcalloc(1, sizeof *op);
    op->cb = cb;
    op->arg = arg;
    int rc = store__link_command(store__bulk_link(s), cards_on_reply, op, (int)(n + 3), argv, lens);
    if (rc) {
        free(op);
    }
    free(argv);
    free(lens);
    return rc;
}

typedef struct doc_op {
    store_doc_cb cb;
    void *arg;
} doc_op_t;

static void doc_on_reply(void *arg, redisReply *r) {
    doc_op_t *op = arg;
    if (r == NULL) {
        op->cb(op->arg, -EIO, NULL);
    } else if (r->type != REDIS_REPLY_ARRAY || r->elements != 4) {
        op->cb(op->arg, -EPROTO, NULL);
    } else if (r->element[0]->type != REDIS_REPLY_STRING) {
        op->cb(op->arg, -ENOENT, NULL);
    } else {
        store_doc_t d = {.doc = r->element[0]->str, .len = r->element[0]->len};
        if (r->element[1]->type == REDIS_REPLY_STRING) {
            d.ver = strtoull(r->element[1]->str, NULL, 10);
        }
        if (r->element[2]->type == REDIS_REPLY_STRING) {
            d.created_ms = strtoll(r->element[2]->str, NULL, 10);
        }
        d.updated_ms = d.created_ms;
        if (r->element[3]->type == REDIS_REPLY_STRING) {
            d.updated_ms = strtoll(r->element[3]->str, NULL, 10);
        }
        op->cb(op->arg, 0, &d);
    }
    free(op);
}

int store_ent_get(store_t *s, const char *uscc, store_doc_cb cb, void *arg) {
    int usable = store__usable(s);
    if (usable) {
        return usable;
    }
    char key[STORE_KEY_MAX];
    int n = snprintf(key, sizeof key, "hq:ent:%.18s", uscc);
    doc_op_t *op = xcalloc(1, sizeof *op);
    op->cb = cb;
    op->arg = arg;
    const char *argv[6] = {"HMGET", key, "doc", "ver", "created", "updated"};
    size_t lens[6] = {5, (size_t)n, 3, 3, 7, 7};
    int rc = store__link_command(s->link, doc_on_reply, op, 6, argv, lens);
    if (rc) {
        free(op);
    }
    return rc;
}

typedef struct due_op {
    store_due_cb cb;
    void *arg;
} due_op_t;

static void due_on_reply(void *arg, redisReply *r) {
    due_op_t *op = arg;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        op->cb(op->arg, r == NULL ? -EIO : -EPROTO, NULL, 0);
        free(op);
        return;
    }
    char *codes = xmalloc(r->elements * 18 + 1);
    size_t n = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type == REDIS_REPLY_STRING && e->len == 18) {
            memcpy(codes + n * 18, e->str, 18);
            n++;
        }
    }
    op->cb(op->arg, 0, codes, n);
    free(codes);
    free(op);
}

int store_retag_due(store_t *s, int32_t today, unsigned skip, unsigned max, store_due_cb cb,
                    void *arg) {
    int rc = store_writable(s);
    if (rc) {
        return rc;
    }
    char day[16], off[16], lim[16];
    snprintf(day, sizeof day, "%ld", (long)today);
    snprintf(off, sizeof off, "%u", skip);
    snprintf(lim, sizeof lim, "%u", max);
    const char *argv[7] = {"ZRANGEBYSCORE", "hq:retag", "-inf", day, "LIMIT", off, lim};
    size_t lens[7];
    for (int i = 0; i < 7; i++) {
        lens[i] = strlen(argv[i]);
    }
    due_op_t *op = xmalloc(sizeof *op);
    op->cb = cb;
    op->arg = arg;
    rc = store__link_command(s->link, due_on_reply, op, 7, argv, lens);
    if (rc) {
        free(op);
    }
    return rc;
}

const matcher_t *store_matcher(const store_t *s) {
    return s->mem->m;
}

uint32_t store_relayout(store_t *s, uint32_t min) {
    return store__mem_relayout(s->mem, min);
}

unsigned store_ent_interests(const store_t *s, uint32_t ord, const uint16_t **bits) {
    return store__mem_interests(s->mem, ord, bits);
}

/* ---------------------------------------------------------------------------
 * Policies
 * ------------------------------------------------------------------------- */

typedef struct pol_op {
    store_t *s;
    store_pol_cb cb;
    void *arg;
    uint32_t id;
    int kind;            /* 0 create/update, 1 delete, 2 status */
    store_policy_t *p;   /* prepared record for create/update */
    store_pub_cb pub_cb; /* a publish that asked for its push job: 'cb' is unused */
} pol_op_t;

static store_policy_t *pol_from_in(const store_pol_in_t *in) {
    store_policy_t *p = xcalloc(1, sizeof *p);
    p->doc = xstrndup(in->doc, in->doc_len);
    p->doc_len = in->doc_len;
    p->rule = *in->rule;
    p->opens = in->opens;
    p->closes = in->closes;
    p->mode = in->mode;
    p->nptags = in->nptags;
    memcpy(p->ptags, in->ptags, in->nptags * sizeof *in->ptags);
    return p;
}

static store_policy_t *pol_copy(const store_policy_t *src) {
    store_policy_t *p = xmemdup(src, sizeof *src);
    p->doc = xstrndup(src->doc, src->doc_len);
    return p;
}

/* Reads {'ok', id, ver, status, created, updated, published[, job]} into 'p'. */
static int pol_fill(store_policy_t *p, const redisReply *r) {
    long long id, ver, created, updated, published;
    if (r->elements < 7 || r->elements > 8 || reply_int(r, 1, &id) || reply_int(r, 2, &ver) ||
        reply_int(r, 4, &created) || reply_int(r, 5, &updated) || reply_int(r, 6, &published) ||
        r->element[3]->type != REDIS_REPLY_STRING || id <= 0 || id >= UINT32_MAX) {
        return -EPROTO;
    }
    int st = store__status_parse(r->element[3]->str, r->element[3]->len);
    if (st < 0) {
        return -EPROTO;
    }
    p->id = (uint32_t)id;
    p->ver = (uint64_t)ver;
    p->status = st;
    p->created_ms = created;
    p->updated_ms = updated;
    p->published_ms = published;
    return 0;
}

static void pol_on_reply(void *arg, redisReply *r) {
    pol_op_t *op = arg;
    store_t *s = op->s;
    const store_policy_t *result = NULL;
    long long job = 0;
    int rc;
    if (r == NULL) {
        s->dirty = 1;
        rc = -EIO;
    } else if (!reply_status_is(r, "ok")) {
        rc = reply_error(r);
    } else if (op->kind == 1) {
        store__mem_pol_apply(s->mem, op->id, NULL);
        rc = 0;
    } else {
        store_policy_t *p = op->p;
        if (p == NULL) {
            const store_policy_t *cur = store_policy(s, op->id);
            p = cur ? pol_copy(cur) : NULL;
        }
        rc = p ? pol_fill(p, r) : -EPROTO;
        if (rc == 0 && op->kind == 2 && (r->elements != 8 || reply_int(r, 7, &job) || job < 0)) {
            rc = -EPROTO;
        }
        if (rc == 0) {
            store__mem_pol_apply(s->mem, p->id, p);
            result = p;
        } else {
            store__policy_free(p);
        }
        op->p = NULL;
    }
    if (op->pub_cb) {
        op->pub_cb(op->arg, rc, result, rc == 0 ? (uint64_t)job : 0);
    } else {
        op->cb(op->arg, rc, result);
    }
    store__policy_free(op->p);
    free(op);
}

static int pol_send(store_t *s, pol_op_t *op, int script, int nargs, const char **args,
                    const size_t *lens) {
    int rc = store__eval(s, script, nargs, args, lens, pol_on_reply, op);
    if (rc) {
        store__policy_free(op->p);
        free(op);
    }
    return rc;
}

static pol_op_t *pol_op_new(store_t *s, store_pol_cb cb, void *arg, uint32_t id, int kind) {
    pol_op_t *op = xcalloc(1, sizeof *op);
    op->s = s;
    op->cb = cb;
    op->arg = arg;
    op->id = id;
    op->kind = kind;
    return op;
}

int store_pol_create(store_t *s, const store_pol_in_t *in, store_pol_cb cb, void *arg) {
    int rc = store_writable(s);
    if (rc) {
        return rc;
    }
    pol_op_t *op = pol_op_new(s, cb, arg, 0, 0);
    op->p = pol_from_in(in);
    char meta[STORE_META_MAX];
    size_t mlen = store__meta_encode(meta, in);
    char now[24];
    snprintf(now, sizeof now, "%lld", (long long)store_now_ms(s));
    const char *args[3] = {in->doc, meta, now};
    size_t lens[3] = {in->doc_len, mlen, strlen(now)};
    return pol_send(s, op, STORE_SCRIPT_POL_CREATE, 3, args, lens);
}

int store_pol_update(store_t *s, uint32_t id, const store_pol_in_t *in, store_pol_cb cb,
                     void *arg) {
    int rc = store_writable(s);
    if (rc) {
        return rc;
    }
    pol_op_t *op = pol_op_new(s, cb, arg, id, 0);
    op->p = pol_from_in(in);
    char meta[STORE_META_MAX];
    size_t mlen = store__meta_encode(meta, in);
    char sid[16], ver[24] = "", now[24];
    snprintf(sid, sizeof sid, "%u", id);
    if (in->expect_ver >= 0) {
        snprintf(ver, sizeof ver, "%lld", (long long)in->expect_ver);
    }
    snprintf(now, sizeof now, "%lld", (long long)store_now_ms(s));
    const char *args[5] = {sid, in->doc, meta, ver, now};
    size_t lens[5] = {strlen(sid), in->doc_len, mlen, strlen(ver), strlen(now)};
    return pol_send(s, op, STORE_SCRIPT_POL_UPDATE, 5, args, lens);
}

int store_pol_delete(store_t *s, uint32_t id, store_pol_cb cb, void *arg) {
    int rc = store_writable(s);
    if (rc) {
        return rc;
    }
    pol_op_t *op = pol_op_new(s, cb, arg, id, 1);
    char sid[16];
    snprintf(sid, sizeof sid, "%u", id);
    const char *args[1] = {sid};
    size_t lens[1] = {strlen(sid)};
    return pol_send(s, op, STORE_SCRIPT_POL_DEL, 1, args, lens);
}

/* POL_STATUS; with 'kind' (a publish only) it also creates the push job. */
static int pol_status_send(store_t *s, pol_op_t *op, int action, const char *kind,
                           uint64_t audience) {
    char sid[16], now[24], aud[24];
    snprintf(sid, sizeof sid, "%u", op->id);
    snprintf(now, sizeof now, "%lld", (long long)store_now_ms(s));
    snprintf(aud, sizeof aud, "%llu", (unsigned long long)audience);
    const char *act = action == STORE_PUBLISH ? "publish" : "withdraw";
    const char *args[5] = {sid, act, now, kind, aud};
    size_t lens[5] = {strlen(sid), strlen(act), strlen(now), kind ? strlen(kind) : 0, strlen(aud)};
    return pol_send(s, op, STORE_SCRIPT_POL_STATUS, kind ? 5 : 3, args, lens);
}

int store_pol_set_status(store_t *s, uint32_t id, int action, store_pol_cb cb, void *arg) {
    int rc = store_writable(s);
    if (rc) {
        return rc;
    }
    return pol_status_send(s, pol_op_new(s, cb, arg, id, 2), action, NULL, 0);
}

int store_pol_publish(store_t *s, uint32_t id, const char *kind, uint64_t audience, store_pub_cb cb,
                      void *arg) {
    int rc = store_writable(s);
    if (rc) {
        return rc;
    }
    pol_op_t *op = pol_op_new(s, NULL, arg, id, 2);
    op->pub_cb = cb;
    return pol_status_send(s, op, STORE_PUBLISH, kind, audience);
}

const store_policy_t *store_policy(const store_t *s, uint32_t id) {
    return store__mem_policy(s->mem, id);
}

const store_policy_t *store_policy_next(const store_t *s, uint32_t after) {
    return store__mem_policy_next(s->mem, after);
}

size_t store_policy_count(const store_t *s) {
    return s->mem->npols;
}

const polset_t *store_polset(const store_t *s) {
    return s->mem->ps;
}

uint64_t store_pol_audience(store_t *s, const store_policy_t *p, uint64_t *groups) {
    return store__mem_audience(s->mem, p, groups);
}

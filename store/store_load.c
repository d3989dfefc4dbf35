/* Connecting and loading. On every new connection the store loads its scripts and
 * asks Redis for its run id. When memory already mirrors this Redis instance (same
 * run id, no write with an unknown outcome since), it is ready at once; otherwise
 * it rebuilds the whole mirror from Redis while the old one keeps serving reads:
 * the taxonomy bit map is checked (and extended with appended tags), policies are
 * read, then the enterprise index records are fetched chunk by chunk with a window
 * of requests in flight, never one key per enterprise. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "store/internal.h"

struct store_load {
    store_t *s;
    uint64_t gen;
    store_mem_t *mem;
    int aborted;
    unsigned pending; /* replies still to come */
    int phase;
    uint64_t started;
    /* taxonomy */
    int tax_left;
    /* policies */
    uint32_t *pol_ids;
    size_t npol, pol_next, pol_done;
    /* enterprises */
    uint32_t nchunks, chunk_next, chunk_done;
    uint64_t bad;
    uint64_t ents;
    unsigned wh_left;
    char detail[512];
};

typedef struct load_req {
    store_load_t *ld;
    uint32_t item;
    int vocab;
} load_req_t;

static void load_next_phase(store_load_t *ld);

/* ---------------------------------------------------------------------------
 * Plumbing
 * ------------------------------------------------------------------------- */

static void load_free(store_load_t *ld) {
    store__mem_free(ld->mem);
    free(ld->pol_ids);
    free(ld);
}

/* Called at the start of every reply: returns 0 when the reply should be used. */
static int load_reply_begin(store_load_t *ld) {
    ld->pending--;
    if (ld->aborted) {
        if (ld->pending == 0) {
            load_free(ld);
        }
        return -1;
    }
    return 0;
}

static void load_fail(store_load_t *ld, int fatal, const char *why) {
    store_t *s = ld->s;
    if (s->load == ld) {
        s->load = NULL;
    }
    ld->aborted = 1;
    if (fatal) {
        s->state = ST_FATAL;
        store__emit(s, STORE_EV_FATAL, why);
    }
    /* A non-fatal failure is a dropped link: the next connection starts over. */
    if (ld->pending == 0) {
        load_free(ld);
    }
}

void store__load_abort(store_t *s) {
    if (s->load) {
        load_fail(s->load, 0, NULL);
    }
}

static int load_send(store_load_t *ld, store_link_reply_cb cb, uint32_t item, int vocab, int argc,
                     const char **argv, const size_t *lens) {
    load_req_t *rq = xcalloc(1, sizeof *rq);
    rq->ld = ld;
    rq->item = item;
    rq->vocab = vocab;
    int rc = store__link_command(ld->s->link, cb, rq, argc, argv, lens);
    if (rc) {
        free(rq);
        return rc;
    }
    ld->pending++;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Phase 1: the taxonomy bit map
 * ------------------------------------------------------------------------- */

static void load_on_tax_append(void *arg, redisReply *r) {
    load_req_t *rq = arg;
    store_load_t *ld = rq->ld;
    free(rq);
    if (load_reply_begin(ld)) {
        return;
    }
    if (r == NULL) {
        load_fail(ld, 0, NULL);
        return;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
        r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "conflict") == 0) {
        snprintf(ld->detail, sizeof ld->detail,
                 "taxonomy conflict in Redis: tag '%s' and bit %s are already assigned "
                 "differently",
                 r->element[1]->type == REDIS_REPLY_STRING ? r->element[1]->str : "?",
                 r->element[2]->type == REDIS_REPLY_STRING ? r->element[2]->str : "?");
        load_fail(ld, 1, ld->detail);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(ld->detail, sizeof ld->detail, "Redis refused the taxonomy update: %s", r->str);
        load_fail(ld, 1, ld->detail);
        return;
    }
    if (--ld->tax_left == 0) {
        load_next_phase(ld);
    }
}

static void load_on_tax_map(void *arg, redisReply *r) {
    load_req_t *rq = arg;
    store_load_t *ld = rq->ld;
    tax_vocab_t v = (tax_vocab_t)rq->vocab;
    free(rq);
    if (load_reply_begin(ld)) {
        return;
    }
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        if (r && r->type == REDIS_REPLY_ERROR) {
            snprintf(ld->detail, sizeof ld->detail, "Redis error reading the taxonomy: %s", r->str);
            load_fail(ld, 1, ld->detail);
        } else {
            load_fail(ld, 0, NULL);
        }
        return;
    }
    store_t *s = ld->s;
    unsigned nfile = taxonomy_count(s->tax, v);
    /* Stored codes by bit; a stored bit beyond what this build can hold is an
     * error in itself. */
    unsigned nstored = 0;
    const char **codes = xcalloc(TAX_MAX_TAGS, sizeof *codes);
    int bad = 0;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i];
        const redisReply *b = r->element[i + 1];
        char *end = NULL;
        unsigned long bit = strtoul(b->str ? b->str : "", &end, 10);
        if (k->type != REDIS_REPLY_STRING || b->type != REDIS_REPLY_STRING || end == b->str ||
            *end != '\0' || bit >= TAX_MAX_TAGS || codes[bit] != NULL) {
            bad = 1;
            break;
        }
        codes[bit] = k->str;
        if (bit + 1 > nstored) {
            nstored = (unsigned)bit + 1;
        }
    }
    char err[240];
    if (bad) {
        snprintf(ld->detail, sizeof ld->detail, "the stored %s tag map hq:tax:%s is corrupt",
                 taxonomy_vocab_name(v), taxonomy_vocab_name(v));
        free(codes);
        load_fail(ld, 1, ld->detail);
        return;
    }
    if (taxonomy_check_map(s->tax, v, codes, nstored, err, sizeof err) != 0) {
        snprintf(ld->detail, sizeof ld->detail, "taxonomy refused: %s", err);
        free(codes);
        load_fail(ld, 1, ld->detail);
        return;
    }
    free(codes);
    if (nfile == nstored) {
        if (--ld->tax_left == 0) {
            load_next_phase(ld);
        }
        return;
    }
    /* Persist the appended tags (and, on first start, all of them). */
    unsigned nnew = nfile - nstored;
    int argc = 4 + 2 * (int)nnew;
    const char **argv = xcalloc((size_t)argc, sizeof *argv);
    size_t *lens = xcalloc((size_t)argc, sizeof *lens);
    char(*bits)[8] = xcalloc(nnew, sizeof *bits);
    argv[0] = "EVAL";
    argv[1] = store__script_text[STORE_SCRIPT_TAX_APPEND];
    argv[2] = "0";
    argv[3] = taxonomy_vocab_name(v);
    for (unsigned i = 0; i < nnew; i++) {
        const tax_tag_t *t = taxonomy_tag(s->tax, v, nstored + i);
        snprintf(bits[i], sizeof bits[i], "%u", nstored + i);
        argv[4 + 2 * i] = t->code;
        argv[5 + 2 * i] = bits[i];
    }
    for (int i = 0; i < argc; i++) {
        lens[i] = strlen(argv[i]);
    }
    if (load_send(ld, load_on_tax_append, 0, (int)v, argc, argv, lens) != 0) {
        load_fail(ld, 0, NULL);
    }
    free(argv);
    free(lens);
    free(bits);
}

static void load_start_tax(store_load_t *ld) {
    ld->tax_left = TAX_NVOCAB;
    for (int v = 0; v < TAX_NVOCAB; v++) {
        char key[64];
        int n = snprintf(key, sizeof key, "hq:tax:%s", taxonomy_vocab_name((tax_vocab_t)v));
        const char *argv[2] = {"HGETALL", key};
        size_t lens[2] = {7, (size_t)n};
        if (load_send(ld, load_on_tax_map, 0, v, 2, argv, lens) != 0) {
            load_fail(ld, 0, NULL);
            return;
        }
    }
}

/* ---------------------------------------------------------------------------
 * Phase 2: policies
 * ------------------------------------------------------------------------- */

static void load_send_policies(store_load_t *ld);

static void load_on_policy(void *arg, redisReply *r) {
    load_req_t *rq = arg;
    store_load_t *ld = rq->ld;
    uint32_t id = ld->pol_ids ? ld->pol_ids[rq->item] : 0;
    free(rq);
    if (load_reply_begin(ld)) {
        return;
    }
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 7) {
        load_fail(ld, 0, NULL);
        return;
    }
    store_t *s = ld->s;
    redisReply **e = r->element;
    int ok = 1;
    for (int i = 0; i < 7; i++) {
        ok &= e[i]->type == REDIS_REPLY_STRING;
    }
    store_policy_t *p = xcalloc(1, sizeof *p);
    if (ok) {
        p->id = id;
        p->doc = xstrndup(e[0]->str, e[0]->len);
        p->doc_len = e[0]->len;
        ok = store__meta_decode(e[1]->str, e[1]->len, p, taxonomy_count(s->tax, TAX_ENTERPRISE),
                                taxonomy_count(s->tax, TAX_POLICY)) == 0;
        p->ver = strtoull(e[2]->str, NULL, 10);
        p->status = store__status_parse(e[3]->str, e[3]->len);
        p->created_ms = strtoll(e[4]->str, NULL, 10);
        p->updated_ms = strtoll(e[5]->str, NULL, 10);
        p->published_ms = strtoll(e[6]->str, NULL, 10);
        ok &= p->status >= 0;
    }
    if (ok) {
        store__mem_pol_apply(ld->mem, id, p);
    } else {
        /* A policy deleted between SMEMBERS and HMGET, or a damaged record. */
        free(p->doc);
        free(p);
        if (e[0]->type == REDIS_REPLY_STRING) {
            ld->bad++;
        }
    }
    ld->pol_done++;
    load_send_policies(ld);
}

static void load_send_policies(store_load_t *ld) {
    while (ld->pol_next < ld->npol && ld->pol_next - ld->pol_done < STORE_LOAD_WINDOW) {
        char key[32];
        int n = snprintf(key, sizeof key, "hq:pol:%u", ld->pol_ids[ld->pol_next]);
        const char *argv[9] = {"HMGET",  key,       "doc",     "meta",     "ver",
                               "status", "created", "updated", "published"};
        size_t lens[9];
        for (int i = 0; i < 9; i++) {
            lens[i] = strlen(argv[i]);
        }
        lens[1] = (size_t)n;
        if (load_send(ld, load_on_policy, (uint32_t)ld->pol_next, 0, 9, argv, lens) != 0) {
            load_fail(ld, 0, NULL);
            return;
        }
        ld->pol_next++;
    }
    if (ld->pol_done == ld->npol) {
        load_next_phase(ld);
    }
}

static void load_on_policy_ids(void *arg, redisReply *r) {
    load_req_t *rq = arg;
    store_load_t *ld = rq->ld;
    free(rq);
    if (load_reply_begin(ld)) {
        return;
    }
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        load_fail(ld, 0, NULL);
        return;
    }
    ld->pol_ids = xcalloc(r->elements + 1, sizeof *ld->pol_ids);
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        unsigned long v = e->type == REDIS_REPLY_STRING ? strtoul(e->str, NULL, 10) : 0;
        if (v > 0 && v < UINT32_MAX) {
            ld->pol_ids[ld->npol++] = (uint32_t)v;
        }
    }
    load_send_policies(ld);
}

static void load_start_policies(store_load_t *ld) {
    const char *argv[2] = {"SMEMBERS", "hq:pols"};
    size_t lens[2] = {8, 7};
    if (load_send(ld, load_on_policy_ids, 0, 0, 2, argv, lens) != 0) {
        load_fail(ld, 0, NULL);
    }
}

/* ---------------------------------------------------------------------------
 * Phase 3: webhooks (few; read one by one)
 * ------------------------------------------------------------------------- */

static void load_on_webhook(void *arg, redisReply *r) {
    load_req_t *rq = arg;
    store_load_t *ld = rq->ld;
    uint32_t id = rq->item;
    free(rq);
    if (load_reply_begin(ld)) {
        return;
    }
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        load_fail(ld, 0, NULL);
        return;
    }
    store_kv_t *kv = xcalloc(r->elements / 2 + 1, sizeof *kv);
    size_t n = store__kv_from_reply(r, kv, r->elements / 2 + 1);
    store_webhook_t *w = store__webhook_from_kv(id, kv, n);
    free(kv);
    if (w) {
        store__mem_wh_apply(ld->mem, id, w);
    }
    if (--ld->wh_left == 0) {
        load_next_phase(ld);
    }
}

static void load_on_webhook_ids(void *arg, redisReply *r) {
    load_req_t *rq = arg;
    store_load_t *ld = rq->ld;
    free(rq);
    if (load_reply_begin(ld)) {
        return;
    }
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        load_fail(ld, 0, NULL);
        return;
    }
    ld->wh_left = 1; /* held until every request is sent */
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        unsigned long id = e->type == REDIS_REPLY_STRING ? strtoul(e->str, NULL, 10) : 0;
        if (id == 0 || id >= UINT32_MAX) {
            continue;
        }
        char key[32];
        int n = snprintf(key, sizeof key, "hq:wh:%lu", id);
        const char *argv[2] = {"HGETALL", key};
        size_t lens[2] = {7, (size_t)n};
        if (load_send(ld, load_on_webhook, (uint32_t)id, 0, 2, argv, lens) != 0) {
            load_fail(ld, 0, NULL);
            return;
        }
        ld->wh_left++;
    }
    if (--ld->wh_left == 0) {
        load_next_phase(ld);
    }
}

static void load_start_webhooks(store_load_t *ld) {
    const char *argv[2] = {"SMEMBERS", "hq:whs"};
    size_t lens[2] = {8, 6};
    if (load_send(ld, load_on_webhook_ids, 0, 0, 2, argv, lens) != 0) {
        load_fail(ld, 0, NULL);
    }
}

/* ---------------------------------------------------------------------------
 * Phase 4: the enterprise index, chunk by chunk
 * ------------------------------------------------------------------------- */

static void load_send_chunks(store_load_t *ld);

static void load_on_chunk(void *arg, redisReply *r) {
    load_req_t *rq = arg;
    store_load_t *ld = rq->ld;
    uint32_t chunk = rq->item;
    free(rq);
    if (load_reply_begin(ld)) {
        return;
    }
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        load_fail(ld, 0, NULL);
        return;
    }
    store_t *s = ld->s;
    unsigned ntags = taxonomy_count(s->tax, TAX_ENTERPRISE);
    unsigned nptags = taxonomy_count(s->tax, TAX_POLICY);
    size_t words = matcher_row_words(ld->mem->m);
    uint64_t row[MATCHER_MAX_TAGS / 64];
    uint16_t interests[STORE_MAX_INTERESTS];
    char uscc[18];
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i];
        const redisReply *v = r->element[i + 1];
        char *end = NULL;
        unsigned long ord = k->type == REDIS_REPLY_STRING ? strtoul(k->str, &end, 10) : 0;
        unsigned nint = 0;
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || end == k->str ||
            *end != '\0' || ord / STORE_CHUNK != chunk || ord >= MATCHER_MAX_ORD ||
            store__rec_decode(v->str, v->len, uscc, row, words, ntags, interests, &nint, nptags) !=
                0) {
            ld->bad++;
            continue;
        }
        store__mem_ent_apply(ld->mem, uscc, (uint32_t)ord, row, interests, nint);
        ld->ents++;
    }
    ld->chunk_done++;
    load_send_chunks(ld);
}

static void load_send_chunks(store_load_t *ld) {
    while (ld->chunk_next < ld->nchunks && ld->chunk_next - ld->chunk_done < STORE_LOAD_WINDOW) {
        char key[32];
        int n = snprintf(key, sizeof key, "hq:idx:%u", ld->chunk_next);
        const char *argv[2] = {"HGETALL", key};
        size_t lens[2] = {7, (size_t)n};
        if (load_send(ld, load_on_chunk, ld->chunk_next, 0, 2, argv, lens) != 0) {
            load_fail(ld, 0, NULL);
            return;
        }
        ld->chunk_next++;
    }
    if (ld->chunk_done == ld->nchunks) {
        load_next_phase(ld);
    }
}

static void load_on_ord_next(void *arg, redisReply *r) {
    load_req_t *rq = arg;
    store_load_t *ld = rq->ld;
    free(rq);
    if (load_reply_begin(ld)) {
        return;
    }
    if (r == NULL || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL)) {
        load_fail(ld, 0, NULL);
        return;
    }
    unsigned long long next = r->type == REDIS_REPLY_STRING ? strtoull(r->str, NULL, 10) : 0;
    if (next > MATCHER_MAX_ORD) {
        load_fail(ld, 1, "hq:ord:next is beyond the largest ordinal this build supports");
        return;
    }
    ld->nchunks = (uint32_t)((next + STORE_CHUNK - 1) / STORE_CHUNK);
    /* Ordinals are reused, so 'next' is about the number of enterprises. */
    matcher_reserve(ld->mem->m, (uint32_t)next);
    load_send_chunks(ld);
}

static void load_start_enterprises(store_load_t *ld) {
    const char *argv[2] = {"GET", "hq:ord:next"};
    size_t lens[2] = {3, 11};
    if (load_send(ld, load_on_ord_next, 0, 0, 2, argv, lens) != 0) {
        load_fail(ld, 0, NULL);
    }
}

/* ---------------------------------------------------------------------------
 * Driving the phases
 * ------------------------------------------------------------------------- */

static void load_finish(store_load_t *ld) {
    store_t *s = ld->s;
    store_mem_t *mem = ld->mem;
    /* The index filled with rows and keys only (matcher_load_begin): build its
     * columns, laid out by region, entity type and industry, before it serves. */
    matcher_relayout(mem->m);
    /* Anchors chosen while the index was still filling are re-picked now that
     * tag frequencies are known. */
    unsigned ntags = matcher_ntags(mem->m);
    uint32_t *card = xcalloc(ntags, sizeof *card);
    for (unsigned t = 0; t < ntags; t++) {
        card[t] = matcher_tag_card(mem->m, t);
    }
    polset_reanchor(mem->ps, card);
    free(card);
    store__mem_tally_on(mem);
    store__mem_free(s->mem);
    s->mem = mem;
    ld->mem = NULL;
    s->load = NULL;
    s->loaded = 1;
    s->dirty = 0;
    s->reloads++;
    s->load_ms = uv_now(s->loop) - ld->started;
    memcpy(s->run_id, s->pending_run_id, sizeof s->run_id);
    s->state = ST_READY;
    snprintf(ld->detail, sizeof ld->detail,
             "loaded %llu enterprises and %zu policies in %llu ms (%llu damaged records skipped)",
             (unsigned long long)ld->ents, mem->npols, (unsigned long long)s->load_ms,
             (unsigned long long)ld->bad);
    store__emit(s, STORE_EV_READY, ld->detail);
    ld->aborted = 1;
    if (ld->pending == 0) {
        load_free(ld);
    }
}

static void load_next_phase(store_load_t *ld) {
    switch (ld->phase++) {
    case 0:
        load_start_tax(ld);
        break;
    case 1:
        load_start_policies(ld);
        break;
    case 2:
        load_start_webhooks(ld);
        break;
    case 3:
        load_start_enterprises(ld);
        break;
    default:
        load_finish(ld);
        break;
    }
}

static void store_start_load(store_t *s) {
    store_load_t *ld = xcalloc(1, sizeof *ld);
    ld->s = s;
    ld->gen = s->gen;
    ld->mem = store__mem_new(s->tax);
    store__mem_tally_off(ld->mem); /* counted once at the end: load_finish */
    /* Rows and keys only while filling; load_finish lays the columns out once. */
    matcher_load_begin(ld->mem->m);
    ld->started = uv_now(s->loop);
    s->load = ld;
    s->state = ST_LOADING;
    if (s->loaded) {
        store__emit(s, STORE_EV_LOADING, "Redis data changed; reloading the index");
    }
    load_next_phase(ld);
}

/* ---------------------------------------------------------------------------
 * Connection setup: scripts and run id
 * ------------------------------------------------------------------------- */

typedef struct sync_req {
    store_t *s;
    uint64_t gen;
    int info;
} sync_req_t;

static void sync_done(store_t *s) {
    if (s->loaded && !s->dirty && strcmp(s->run_id, s->pending_run_id) == 0) {
        s->state = ST_READY;
        store__emit(s, STORE_EV_READY, "reconnected to Redis; data unchanged");
        return;
    }
    store_start_load(s);
}

static void sync_on_reply(void *arg, redisReply *r) {
    sync_req_t *rq = arg;
    store_t *s = rq->s;
    int info = rq->info;
    uint64_t gen = rq->gen;
    free(rq);
    if (gen != s->gen || s->state != ST_SYNCING) {
        return;
    }
    if (r == NULL) {
        return; /* the link is going down; the next connection starts over */
    }
    if (r->type == REDIS_REPLY_ERROR &&
        (strncmp(r->str, "LOADING", 7) == 0 || strncmp(r->str, "BUSY ", 5) == 0 ||
         strncmp(r->str, "MASTERDOWN", 10) == 0 || strncmp(r->str, "TRYAGAIN", 8) == 0)) {
        /* Redis is up but cannot serve yet (loading its data after a restart, a
         * script running): not fatal. Reconnect with backoff and set up again. */
        s->state = ST_DOWN;
        store__link_reset(s->link);
        store__emit(s, STORE_EV_DOWN, r->str);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        char why[256];
        snprintf(why, sizeof why, "Redis refused setup: %s", r->str);
        s->state = ST_FATAL;
        store__emit(s, STORE_EV_FATAL, why);
        return;
    }
    if (info && r->type == REDIS_REPLY_STRING) {
        const char *p = strstr(r->str, "run_id:");
        s->pending_run_id[0] = '\0';
        if (p) {
            p += 7;
            size_t n = strcspn(p, "\r\n");
            if (n >= sizeof s->pending_run_id) {
                n = sizeof s->pending_run_id - 1;
            }
            memcpy(s->pending_run_id, p, n);
            s->pending_run_id[n] = '\0';
        }
    }
    if (--s->syncing_left == 0) {
        sync_done(s);
    }
}

static void sync_send(store_t *s, int info, int argc, const char **argv, const size_t *lens) {
    sync_req_t *rq = xcalloc(1, sizeof *rq);
    rq->s = s;
    rq->gen = s->gen;
    rq->info = info;
    if (store__link_command(s->link, sync_on_reply, rq, argc, argv, lens) != 0) {
        free(rq);
        return;
    }
    s->syncing_left++;
}

void store__on_link_state(void *arg, int up) {
    store_t *s = arg;
    if (s->state == ST_CLOSING || s->state == ST_FATAL) {
        return;
    }
    if (!up) {
        store__load_abort(s);
        s->state = ST_DOWN;
        store__emit(s, STORE_EV_DOWN, "lost the connection to Redis");
        return;
    }
    s->gen++;
    s->state = ST_SYNCING;
    s->syncing_left = 0;
    for (int i = 0; i < STORE_NSCRIPTS; i++) {
        const char *argv[3] = {"SCRIPT", "LOAD", store__script_text[i]};
        size_t lens[3] = {6, 4, strlen(store__script_text[i])};
        sync_send(s, 0, 3, argv, lens);
    }
    store__q_ensure_group(s);
    const char *argv[2] = {"INFO", "server"};
    size_t lens[2] = {4, 6};
    sync_send(s, 1, 2, argv, lens);
    if (s->syncing_left == 0) {
        s->state = ST_DOWN;
    }
}

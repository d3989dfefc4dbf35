/* The in-memory fake store: record tables (the Redis hashes it keeps, with an
 * optional list each), API keys and settings. See fake_internal.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "store/fake_internal.h"

/* ---------------------------------------------------------------------------
 * Record tables
 * ------------------------------------------------------------------------- */

static size_t tab_pos(const fake_tab_t *t, const char *id, int *found) {
    size_t lo = 0;
    size_t hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->r[mid]->id, id);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = 0;
    return lo;
}

fake_rec_t *fake__tab_find(const fake_tab_t *t, const char *id) {
    int found;
    size_t i = tab_pos(t, id, &found);
    return found ? t->r[i] : NULL;
}

fake_rec_t *fake__tab_get(fake_tab_t *t, const char *id) {
    int found;
    size_t i = tab_pos(t, id, &found);
    if (found) {
        return t->r[i];
    }
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->r = xreallocarray(t->r, t->cap, sizeof *t->r);
    }
    memmove(t->r + i + 1, t->r + i, (t->n - i) * sizeof *t->r);
    fake_rec_t *r = xcalloc(1, sizeof *r);
    r->id = xstrdup(id);
    t->r[i] = r;
    t->n++;
    return r;
}

static void rec_free(fake_rec_t *r) {
    for (size_t i = 0; i < r->n; i++) {
        free(r->keys[i]);
        free(r->vals[i]);
    }
    for (size_t i = 0; i < r->nlist; i++) {
        free(r->list[i]);
    }
    free(r->keys);
    free(r->vals);
    free(r->vlens);
    free(r->list);
    free(r->list_lens);
    free(r->id);
    free(r);
}

void fake__tab_del(fake_tab_t *t, const char *id) {
    int found;
    size_t i = tab_pos(t, id, &found);
    if (found) {
        rec_free(t->r[i]);
        memmove(t->r + i, t->r + i + 1, (t->n - i - 1) * sizeof *t->r);
        t->n--;
    }
}

void fake__tab_clear(fake_tab_t *t) {
    for (size_t i = 0; i < t->n; i++) {
        rec_free(t->r[i]);
    }
    free(t->r);
    memset(t, 0, sizeof *t);
}

void fake__rec_set(fake_rec_t *r, const char *k, const char *v, size_t vlen) {
    size_t i = 0;
    while (i < r->n && strcmp(r->keys[i], k) != 0) {
        i++;
    }
    if (i == r->n) {
        if (r->n == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 8;
            r->keys = xreallocarray(r->keys, r->cap, sizeof *r->keys);
            r->vals = xreallocarray(r->vals, r->cap, sizeof *r->vals);
            r->vlens = xreallocarray(r->vlens, r->cap, sizeof *r->vlens);
        }
        r->keys[i] = xstrdup(k);
        r->vals[i] = NULL;
        r->n++;
    }
    free(r->vals[i]);
    r->vals[i] = xstrndup(v, vlen);
    r->vlens[i] = vlen;
}

void fake__rec_setf(fake_rec_t *r, const char *k, const char *fmt, ...) {
    char buf[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fake__rec_set(r, k, buf, n < 0 ? 0 : (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

const char *fake__rec_get(const fake_rec_t *r, const char *k, size_t *len) {
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->keys[i], k) == 0) {
            if (len) {
                *len = r->vlens[i];
            }
            return r->vals[i];
        }
    }
    if (len) {
        *len = 0;
    }
    return NULL;
}

long long fake__rec_num(const fake_rec_t *r, const char *k) {
    const char *v = fake__rec_get(r, k, NULL);
    return v ? strtoll(v, NULL, 10) : 0;
}

void fake__rec_incr(fake_rec_t *r, const char *k, long long by) {
    fake__rec_setf(r, k, "%lld", fake__rec_num(r, k) + by);
}

void fake__rec_push(fake_rec_t *r, const char *v, size_t len) {
    if (r->nlist == r->caplist) {
        r->caplist = r->caplist ? r->caplist * 2 : 8;
        r->list = xreallocarray(r->list, r->caplist, sizeof *r->list);
        r->list_lens = xreallocarray(r->list_lens, r->caplist, sizeof *r->list_lens);
    }
    r->list[r->nlist] = xstrndup(v, len);
    r->list_lens[r->nlist] = len;
    r->nlist++;
}

store_kv_t *fake__rec_kv(const fake_rec_t *r, size_t lead, size_t *n) {
    store_kv_t *kv = xcalloc(lead + r->n + 1, sizeof *kv);
    for (size_t i = 0; i < r->n; i++) {
        kv[lead + i].k = r->keys[i];
        kv[lead + i].klen = strlen(r->keys[i]);
        kv[lead + i].v = r->vals[i];
        kv[lead + i].vlen = r->vlens[i];
    }
    *n = lead + r->n;
    return kv;
}

/* ---------------------------------------------------------------------------
 * API keys and settings
 * ------------------------------------------------------------------------- */

enum { KEY_GET, KEY_PUT, KEY_LIST, KEY_REVOKE, CFG_GET };

typedef struct key_op {
    fake_op_t base;
    store_hash_cb cb;
    void *arg;
    int kind;
    char id[64];
    char *fields[20];
    unsigned nfields;
    char *init;
    int64_t now_ms;
    uint64_t offset;
    unsigned limit;
} key_op_t;

/* A page of key records, flat, as store_key_list's contract says: the table keeps
 * creation order. */
static void key_list_answer(store_t *s, key_op_t *op) {
    size_t from = op->offset < s->keys.n ? (size_t)op->offset : s->keys.n;
    size_t to = s->keys.n - from > op->limit ? from + op->limit : s->keys.n;
    size_t total = 1;
    for (size_t i = from; i < to; i++) {
        total += 1 + s->keys.r[i]->n;
    }
    store_kv_t *kv = xcalloc(total + 1, sizeof *kv);
    char count[24];
    snprintf(count, sizeof count, "%zu", s->keys.n);
    size_t n = 0;
    kv[n++] = (store_kv_t){.k = "total", .klen = 5, .v = count, .vlen = strlen(count)};
    for (size_t i = from; i < to; i++) {
        const fake_rec_t *r = s->keys.r[i];
        kv[n++] = (store_kv_t){.k = "id", .klen = 2, .v = r->id, .vlen = strlen(r->id)};
        for (size_t f = 0; f < r->n; f++) {
            kv[n++] = (store_kv_t){
                .k = r->keys[f], .klen = strlen(r->keys[f]), .v = r->vals[f], .vlen = r->vlens[f]};
        }
    }
    op->cb(op->arg, 0, kv, n);
    free(kv);
}

static void key_answer_rec(key_op_t *op, const fake_rec_t *r) {
    size_t n;
    store_kv_t *kv = fake__rec_kv(r, 0, &n);
    op->cb(op->arg, n ? 0 : -ENOENT, kv, n);
    free(kv);
}

static void key_run(store_t *s, fake_op_t *o) {
    key_op_t *op = (key_op_t *)o;
    fake_rec_t *r =
        s->closing ? NULL : fake__tab_find(op->kind == CFG_GET ? &s->cfg : &s->keys, op->id);
    if (s->closing) {
        op->cb(op->arg, -EIO, NULL, 0);
    } else if (op->kind == KEY_GET) {
        if (r) {
            key_answer_rec(op, r);
        } else {
            op->cb(op->arg, -ENOENT, NULL, 0);
        }
    } else if (op->kind == KEY_PUT) {
        if (r == NULL && s->keys.n >= FAKE_MAX_KEYS) {
            fake__drop_all(s, 0);
        }
        if (r) {
            op->cb(op->arg, -EEXIST, NULL, 0); /* ids are never reused */
        } else {
            r = fake__tab_get(&s->keys, op->id);
            for (unsigned i = 0; i + 1 < op->nfields; i += 2) {
                fake__rec_set(r, op->fields[i], op->fields[i + 1], strlen(op->fields[i + 1]));
            }
            op->cb(op->arg, 0, NULL, 0);
        }
    } else if (op->kind == KEY_LIST) {
        key_list_answer(s, op);
    } else if (op->kind == KEY_REVOKE) {
        if (r && fake__rec_get(r, "revoked", NULL) == NULL) {
            fake__rec_setf(r, "revoked", "%lld", (long long)op->now_ms);
        }
        op->cb(op->arg, r ? 0 : -ENOENT, NULL, 0);
    } else {
        if (r == NULL) {
            if (s->cfg.n >= FAKE_MAX_CFG) {
                fake__tab_clear(&s->cfg);
            }
            r = fake__tab_get(&s->cfg, op->id);
            fake__rec_set(r, "value", op->init, strlen(op->init));
        }
        size_t len;
        const char *v = fake__rec_get(r, "value", &len);
        store_kv_t kv = {.k = "value", .klen = 5, .v = v, .vlen = len};
        op->cb(op->arg, 0, &kv, 1);
    }
    for (unsigned i = 0; i < op->nfields; i++) {
        free(op->fields[i]);
    }
    free(op->init);
    free(op);
}

static key_op_t *key_op_new(int kind, const char *id, store_hash_cb cb, void *arg) {
    key_op_t *op = xcalloc(1, sizeof *op);
    op->kind = kind;
    op->cb = cb;
    op->arg = arg;
    /* Keys are named hq:key:%.40s, as in keys.c. */
    snprintf(op->id, sizeof op->id, "%.40s", id ? id : "");
    return op;
}

int store_key_get(store_t *s, const char *kid, store_hash_cb cb, void *arg) {
    int rc = fake__readable(s);
    if (rc == 0) {
        fake__queue(s, &key_op_new(KEY_GET, kid, cb, arg)->base, key_run);
    }
    return rc;
}

int store_key_put(store_t *s, const char *kid, const char *const *fields, unsigned nfields,
                  store_hash_cb cb, void *arg) {
    if (nfields > 20 || nfields % 2) {
        return -EINVAL;
    }
    int rc = fake__readable(s);
    if (rc) {
        return rc;
    }
    key_op_t *op = key_op_new(KEY_PUT, kid, cb, arg);
    for (unsigned i = 0; i < nfields; i++) {
        op->fields[i] = xstrdup(fields[i]);
    }
    op->nfields = nfields;
    fake__queue(s, &op->base, key_run);
    return 0;
}

int store_key_list(store_t *s, uint64_t offset, unsigned limit, store_hash_cb cb, void *arg) {
    if (limit == 0) {
        return -EINVAL;
    }
    int rc = fake__readable(s);
    if (rc == 0) {
        key_op_t *op = key_op_new(KEY_LIST, NULL, cb, arg);
        op->offset = offset;
        op->limit = limit;
        fake__queue(s, &op->base, key_run);
    }
    return rc;
}

int store_key_revoke(store_t *s, const char *kid, int64_t now_ms, store_hash_cb cb, void *arg) {
    int rc = fake__readable(s);
    if (rc == 0) {
        key_op_t *op = key_op_new(KEY_REVOKE, kid, cb, arg);
        op->now_ms = now_ms;
        fake__queue(s, &op->base, key_run);
    }
    return rc;
}

int store_cfg_get_or_set(store_t *s, const char *name, const char *init, store_hash_cb cb,
                         void *arg) {
    int rc = fake__writable(s);
    if (rc == 0) {
        key_op_t *op = key_op_new(CFG_GET, name, cb, arg);
        op->init = xstrdup(init);
        fake__queue(s, &op->base, key_run);
    }
    return rc;
}

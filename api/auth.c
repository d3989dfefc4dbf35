/* API keys: parsing, the record cache, verification and rate buckets; see auth.h. */
#include "api/auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <uv.h>

#include "common/xalloc.h"

#define AUTH_TTL_MS 2000
/* A record this old is read again in the background while requests go on using
 * it: a key in steady use never waits for Redis, and a revocation still lands
 * within AUTH_TTL_MS, past which requests wait for the fresh record. */
#define AUTH_REFRESH_MS 1500
#define AUTH_MAX_KEYS   100000 /* cached records; beyond, the cache starts over */

typedef struct waiter {
    struct waiter *next;
    auth_cb cb;
    void *arg;
    char secret[AUTH_SECRET_LEN + 1];
} waiter_t;

typedef struct entry {
    char kid[AUTH_KID_LEN + 1];
    int known; /* the record exists and is not revoked */
    int role;
    char scope[19];
    uint8_t hash[32];
    double rate, tokens;
    uint64_t last_ns;
    uint64_t fetched_ms;
    int fetching;
    int unavailable; /* the last read failed and nothing was known before */
    waiter_t *waiters;
} entry_t;

struct auth {
    store_t *store;
    double rate_default, rate_enterprise; /* for keys without their own rate */
    entry_t **slots;
    size_t cap, n;
    /* SHA-256 fetched once: EVP_sha256() in EVP_Digest looks the algorithm up again
     * on every call, which cost more than the hash of a key itself (callgrind: 2.3k
     * of 5.7k instructions per request). */
    EVP_MD *sha256;
    EVP_MD_CTX *mdctx;
};

static const char auth_b62[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

const char *auth_role_name(int role) {
    switch (role) {
    case ROLE_ADMIN:
        return "admin";
    case ROLE_OPERATOR:
        return "operator";
    case ROLE_INTEGRATOR:
        return "integrator";
    case ROLE_ENTERPRISE:
        return "enterprise";
    default:
        return "none";
    }
}

int auth_role_parse(const char *name) {
    static const int roles[] = {ROLE_ADMIN, ROLE_OPERATOR, ROLE_INTEGRATOR, ROLE_ENTERPRISE};
    for (size_t i = 0; i < 4; i++) {
        if (strcmp(name, auth_role_name(roles[i])) == 0) {
            return roles[i];
        }
    }
    return 0;
}

/* SHA-256 of 'secret' into 'md'; -EIO when OpenSSL cannot compute it (out of memory
 * inside it), which callers must not mistake for a wrong key. */
static int auth_sha256(const char *secret, uint8_t md[32]) {
    unsigned int n = 0;
    if (EVP_Digest(secret, strlen(secret), md, &n, EVP_sha256(), NULL) != 1 || n != 32) {
        return -EIO;
    }
    return 0;
}

/* The same with the digest fetched at auth_new (the request path). */
static int auth_sha256_fast(auth_t *a, const char *secret, uint8_t md[32]) {
    if (a->sha256 == NULL || a->mdctx == NULL) {
        return auth_sha256(secret, md);
    }
    unsigned int n = 0;
    if (EVP_DigestInit_ex2(a->mdctx, a->sha256, NULL) != 1 ||
        EVP_DigestUpdate(a->mdctx, secret, strlen(secret)) != 1 ||
        EVP_DigestFinal_ex(a->mdctx, md, &n) != 1 || n != 32) {
        return -EIO;
    }
    return 0;
}

int auth_hash_hex(const char *secret, char *hex) {
    uint8_t md[32];
    if (auth_sha256(secret, md) != 0) {
        return -EIO;
    }
    for (int i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    }
    return 0;
}

int auth_make_key(char *key, char *kid, char *hash_hex) {
    uint8_t r[AUTH_KID_LEN + AUTH_SECRET_LEN];
    if (RAND_bytes(r, sizeof r) != 1) {
        return -EIO;
    }
    char secret[AUTH_SECRET_LEN + 1];
    for (int i = 0; i < AUTH_KID_LEN; i++) {
        kid[i] = auth_b62[r[i] % 36]; /* ids are lower case and digits */
    }
    kid[AUTH_KID_LEN] = '\0';
    for (int i = 0; i < AUTH_SECRET_LEN; i++) {
        secret[i] = auth_b62[r[AUTH_KID_LEN + i] % 62];
    }
    secret[AUTH_SECRET_LEN] = '\0';
    snprintf(key, AUTH_KEY_LEN + 1, "hq_%s_%s", kid, secret);
    return auth_hash_hex(secret, hash_hex);
}

int auth_split(const char *key, char *kid, char *secret) {
    if (strlen(key) != AUTH_KEY_LEN || strncmp(key, "hq_", 3) != 0 ||
        key[3 + AUTH_KID_LEN] != '_') {
        return -EINVAL;
    }
    for (int i = 0; i < AUTH_KID_LEN; i++) {
        char c = key[3 + i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
            return -EINVAL;
        }
        kid[i] = c;
    }
    kid[AUTH_KID_LEN] = '\0';
    for (int i = 0; i < AUTH_SECRET_LEN; i++) {
        char c = key[4 + AUTH_KID_LEN + i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
            return -EINVAL;
        }
        secret[i] = c;
    }
    secret[AUTH_SECRET_LEN] = '\0';
    return 0;
}

/* ---------------------------------------------------------------------------
 * Cache
 * ------------------------------------------------------------------------- */

static uint64_t auth_now_ms(void) {
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

static size_t auth_hash_kid(const char *kid) {
    uint64_t h = 1469598103934665603ull;
    for (; *kid; kid++) {
        h = (h ^ (unsigned char)*kid) * 1099511628211ull;
    }
    return (size_t)h;
}

auth_t *auth_new(store_t *store, double rate_default, double rate_enterprise) {
    auth_t *a = xcalloc(1, sizeof *a);
    a->store = store;
    a->rate_default = rate_default;
    a->rate_enterprise = rate_enterprise;
    a->cap = 256;
    a->slots = xcalloc(a->cap, sizeof *a->slots);
    /* Either may be NULL (OpenSSL out of memory): then every check takes the slow
     * path above. */
    a->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    a->mdctx = EVP_MD_CTX_new();
    return a;
}

static void auth_drop_entries(auth_t *a, int keep_fetching) {
    for (size_t i = 0; i < a->cap; i++) {
        entry_t *e = a->slots[i];
        if (e == NULL) {
            continue;
        }
        if (keep_fetching && e->fetching) {
            continue;
        }
        while (e->waiters) {
            waiter_t *w = e->waiters;
            e->waiters = w->next;
            free(w);
        }
        free(e);
        a->slots[i] = NULL;
    }
}

void auth_free(auth_t *a) {
    if (a) {
        auth_drop_entries(a, 0);
        free(a->slots);
        EVP_MD_CTX_free(a->mdctx);
        EVP_MD_free(a->sha256);
        free(a);
    }
}

/* Drops every record not being read right now and rebuilds the table. */
static void auth_restart(auth_t *a) {
    entry_t **old = a->slots;
    size_t oldcap = a->cap;
    a->cap = 256;
    a->n = 0;
    a->slots = xcalloc(a->cap, sizeof *a->slots);
    for (size_t i = 0; i < oldcap; i++) {
        entry_t *e = old[i];
        if (e == NULL) {
            continue;
        }
        if (!e->fetching) {
            free(e); /* no waiters: those exist only while fetching */
            continue;
        }
        if ((a->n + 1) * 2 > a->cap) {
            entry_t **grown = xcalloc(a->cap * 2, sizeof *grown);
            for (size_t k = 0; k < a->cap; k++) {
                if (a->slots[k]) {
                    size_t h = auth_hash_kid(a->slots[k]->kid) & (a->cap * 2 - 1);
                    while (grown[h]) {
                        h = (h + 1) & (a->cap * 2 - 1);
                    }
                    grown[h] = a->slots[k];
                }
            }
            free(a->slots);
            a->slots = grown;
            a->cap *= 2;
        }
        size_t h = auth_hash_kid(e->kid) & (a->cap - 1);
        while (a->slots[h]) {
            h = (h + 1) & (a->cap - 1);
        }
        a->slots[h] = e;
        a->n++;
    }
    free(old);
}

static entry_t *auth_entry(auth_t *a, const char *kid, int create) {
    size_t h = auth_hash_kid(kid) & (a->cap - 1);
    while (a->slots[h] && strcmp(a->slots[h]->kid, kid) != 0) {
        h = (h + 1) & (a->cap - 1);
    }
    if (a->slots[h] || !create) {
        return a->slots[h];
    }
    if (a->n >= AUTH_MAX_KEYS) {
        /* Garbage ids must not fill memory, nor lock real keys out: start over
         * (keys in use are read again from Redis on their next request). */
        auth_restart(a);
        return auth_entry(a, kid, create);
    }
    if ((a->n + 1) * 2 > a->cap) {
        entry_t **old = a->slots;
        size_t oldcap = a->cap;
        a->cap *= 2;
        a->slots = xcalloc(a->cap, sizeof *a->slots);
        for (size_t i = 0; i < oldcap; i++) {
            if (old[i]) {
                size_t k = auth_hash_kid(old[i]->kid) & (a->cap - 1);
                while (a->slots[k]) {
                    k = (k + 1) & (a->cap - 1);
                }
                a->slots[k] = old[i];
            }
        }
        free(old);
        return auth_entry(a, kid, 1);
    }
    entry_t *e = xcalloc(1, sizeof *e);
    memcpy(e->kid, kid, AUTH_KID_LEN + 1);
    a->slots[h] = e;
    a->n++;
    return e;
}

void auth_forget(auth_t *a, const char *kid) {
    entry_t *e = auth_entry(a, kid, 0);
    if (e && !e->fetching) {
        e->fetched_ms = 0;
        e->known = 0;
    }
}

static int auth_verify(auth_t *a, const entry_t *e, const char *secret, auth_id_t *out) {
    if (!e->known) {
        return e->unavailable ? AUTH_UNAVAILABLE : AUTH_DENIED;
    }
    uint8_t md[32];
    if (auth_sha256_fast(a, secret, md) != 0) {
        /* The key cannot be checked now; that is not a wrong key (never a 401). */
        return AUTH_UNAVAILABLE;
    }
    if (CRYPTO_memcmp(md, e->hash, 32) != 0) {
        return AUTH_DENIED;
    }
    out->role = e->role;
    memcpy(out->kid, e->kid, sizeof out->kid);
    memcpy(out->scope, e->scope, sizeof out->scope);
    return AUTH_OK;
}

static int auth_unhex(const char *hex, size_t len, uint8_t *out) {
    if (len != 64) {
        return -1;
    }
    for (size_t i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
            return -1;
        }
        out[i] = (uint8_t)v;
    }
    return 0;
}

typedef struct fetch {
    auth_t *a;
    char kid[AUTH_KID_LEN + 1];
} fetch_t;

static void auth_on_record(void *arg, int rc, const store_kv_t *kv, size_t n) {
    fetch_t *f = arg;
    auth_t *a = f->a;
    entry_t *e = auth_entry(a, f->kid, 0);
    free(f);
    if (e == NULL) {
        return;
    }
    e->fetching = 0;
    /* Known before this read: a key in use keeps working through Redis trouble,
     * however many re-reads fail (a revocation needs Redis anyway). */
    int was_known = e->known;
    e->fetched_ms = auth_now_ms();
    e->unavailable = 0;
    int known = 0;
    if (rc != 0 && rc != -ENOENT) {
        /* Redis did not answer: keep what was known, ask again next time. */
        known = was_known;
        e->unavailable = !was_known;
        e->fetched_ms = 0;
    } else if (rc == 0) {
        size_t len;
        const char *hash = store_kv_get(kv, n, "hash", &len);
        const char *role = store_kv_get(kv, n, "role", NULL);
        const char *revoked = store_kv_get(kv, n, "revoked", NULL);
        char rbuf[16] = "";
        size_t rl;
        store_kv_get(kv, n, "role", &rl);
        if (role && rl < sizeof rbuf) {
            memcpy(rbuf, role, rl);
            rbuf[rl] = '\0';
        }
        known = hash && auth_unhex(hash, len, e->hash) == 0 && auth_role_parse(rbuf) != 0 &&
                (revoked == NULL || revoked[0] == '0');
        e->role = auth_role_parse(rbuf);
        const char *scope = store_kv_get(kv, n, "scope", &len);
        e->scope[0] = '\0';
        if (scope && len == 18) {
            memcpy(e->scope, scope, 18);
            e->scope[18] = '\0';
        }
        const char *rate = store_kv_get(kv, n, "rate", &len);
        double r = e->role == ROLE_ENTERPRISE ? a->rate_enterprise : a->rate_default;
        char buf[32];
        if (rate && len && len < sizeof buf) {
            memcpy(buf, rate, len);
            buf[len] = '\0';
            r = strtod(buf, NULL);
        }
        if (r != e->rate) {
            e->rate = r;
            e->tokens = r < 1 ? 1 : 2 * r;
        }
    }
    e->known = known;
    waiter_t *w = e->waiters;
    e->waiters = NULL;
    while (w) {
        waiter_t *next = w->next;
        auth_id_t id;
        int res = auth_verify(a, e, w->secret, &id);
        w->cb(w->arg, res, &id);
        free(w);
        w = next;
    }
}

/* Reads the record of 'e' from Redis; auth_on_record answers its waiters. Returns
 * 0, or the store's error (nothing started). */
static int auth_fetch(auth_t *a, entry_t *e) {
    fetch_t *f = xcalloc(1, sizeof *f);
    f->a = a;
    memcpy(f->kid, e->kid, sizeof f->kid);
    int rc = store_key_get(a->store, e->kid, auth_on_record, f);
    if (rc != 0) {
        free(f);
        return rc;
    }
    e->fetching = 1;
    return 0;
}

int auth_check(auth_t *a, const char *header, auth_id_t *out, auth_cb cb, void *arg) {
    if (strncasecmp(header, "Bearer ", 7) != 0) {
        return AUTH_DENIED;
    }
    const char *key = header + 7;
    while (*key == ' ') {
        key++;
    }
    char kid[AUTH_KID_LEN + 1];
    char secret[AUTH_SECRET_LEN + 1];
    if (auth_split(key, kid, secret) != 0) {
        return AUTH_DENIED;
    }
    entry_t *e = auth_entry(a, kid, 1);
    if (e == NULL) {
        return AUTH_DENIED;
    }
    uint64_t now = auth_now_ms();
    if (e->fetched_ms && now - e->fetched_ms < AUTH_TTL_MS) {
        if (!e->fetching && now - e->fetched_ms >= AUTH_REFRESH_MS) {
            auth_fetch(a, e); /* on failure the next request past the TTL tries again */
        }
        return auth_verify(a, e, secret, out);
    }
    waiter_t *w = xcalloc(1, sizeof *w);
    w->cb = cb;
    w->arg = arg;
    memcpy(w->secret, secret, sizeof w->secret);
    w->next = e->waiters;
    e->waiters = w;
    if (!e->fetching && auth_fetch(a, e) != 0) {
        e->waiters = w->next;
        free(w);
        /* Redis unreachable: a key seen before keeps working from the cache. */
        return e->known ? auth_verify(a, e, secret, out) : AUTH_UNAVAILABLE;
    }
    return AUTH_PENDING;
}

void auth_cancel(auth_t *a, void *arg) {
    for (size_t i = 0; i < a->cap; i++) {
        entry_t *e = a->slots[i];
        if (e == NULL || e->waiters == NULL) {
            continue;
        }
        for (waiter_t **pw = &e->waiters; *pw;) {
            if ((*pw)->arg == arg) {
                waiter_t *w = *pw;
                *pw = w->next;
                free(w);
            } else {
                pw = &(*pw)->next;
            }
        }
    }
}

int auth_take(auth_t *a, const auth_id_t *id, double *retry_after) {
    entry_t *e = auth_entry(a, id->kid, 0);
    if (e == NULL || e->rate <= 0) {
        return 0;
    }
    uint64_t now = uv_hrtime();
    double burst = e->rate < 1 ? 1 : 2 * e->rate;
    if (e->last_ns) {
        e->tokens += (double)(now - e->last_ns) / 1e9 * e->rate;
    }
    if (e->tokens > burst) {
        e->tokens = burst;
    }
    e->last_ns = now;
    if (e->tokens >= 1) {
        e->tokens -= 1;
        return 0;
    }
    *retry_after = (1 - e->tokens) / e->rate;
    return -EBUSY;
}

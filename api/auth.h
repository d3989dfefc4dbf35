/* API keys and their use: "Authorization: Bearer hq_<id>_<secret>". Keys live in
 * Redis as a hash of the secret (SHA-256; compared in constant time) with a role
 * (admin, operator, integrator, or enterprise, scoped to one credit code) and a
 * rate. huiqid keeps a short-lived cache of the records it has seen (2 s, unknown
 * ids too), so a new key works at once, a revoked one stops within 2 s, and a
 * request costs no Redis round trip in the common case. Rates are token buckets
 * per key. */
#ifndef HUIQI_API_AUTH_H
#define HUIQI_API_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

enum {
    ROLE_ADMIN = 1,
    ROLE_OPERATOR = 2,
    ROLE_INTEGRATOR = 4,
    ROLE_ENTERPRISE = 8,
    ROLE_ANY = 15,
};

#define AUTH_KID_LEN    12
#define AUTH_SECRET_LEN 32
#define AUTH_KEY_LEN    (3 + AUTH_KID_LEN + 1 + AUTH_SECRET_LEN)

typedef struct auth auth_t;

typedef struct auth_id {
    int role;
    char kid[AUTH_KID_LEN + 1];
    char scope[19]; /* the credit code an enterprise key may act on */
} auth_id_t;

enum { AUTH_OK, AUTH_DENIED, AUTH_PENDING, AUTH_UNAVAILABLE };

typedef void (*auth_cb)(void *arg, int result, const auth_id_t *id);

/* Keys without a rate of their own get 'rate_enterprise' (enterprise keys) or
 * 'rate_default' requests per second; 0 means unlimited. Bursts are twice the
 * rate (at least 1). */
auth_t *auth_new(store_t *store, double rate_default, double rate_enterprise);
void auth_free(auth_t *a);

/* Checks an Authorization header value. Returns AUTH_OK with 'out' filled,
 * AUTH_DENIED, AUTH_UNAVAILABLE (Redis cannot be asked and the key is not
 * cached), or AUTH_PENDING: then 'cb(arg, ...)' runs once the record is read
 * (unless auth_cancel(arg) is called first). */
int auth_check(auth_t *a, const char *header, auth_id_t *out, auth_cb cb, void *arg);
/* Forgets a pending check (its request went away). */
void auth_cancel(auth_t *a, void *arg);
/* Takes one request from the key's bucket: 0, or -EBUSY with the seconds to wait. */
int auth_take(auth_t *a, const auth_id_t *id, double *retry_after);
/* Drops what the cache knows of a key (after a revoke through the API). */
void auth_forget(auth_t *a, const char *kid);

/* A new random key "hq_<kid>_<secret>" (key at least AUTH_KEY_LEN + 1 bytes), its
 * id and the hex SHA-256 of its secret (65 bytes). Returns 0 or -EIO. */
int auth_make_key(char *key, char *kid, char *hash_hex);
/* Splits a key into id and secret; -EINVAL when malformed. */
int auth_split(const char *key, char *kid, char *secret);
/* The hex SHA-256 of 'secret' into 'hex' (65 bytes). Returns 0, or -EIO when
 * OpenSSL cannot compute it. */
int auth_hash_hex(const char *secret, char *hex);

const char *auth_role_name(int role);
/* ROLE_* for a name, or 0. */
int auth_role_parse(const char *name);

#endif

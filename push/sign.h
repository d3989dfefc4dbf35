/* Standard Webhooks v1 signatures: what huiqi puts in every delivery, and a
 * verifier integrators (and our tests) can use. The signed content is
 * "<webhook-id>.<webhook-timestamp>.<body>"; the symmetric scheme is
 * "v1,<base64 HMAC-SHA256>" keyed by the base64 part of a "whsec_" secret, the
 * asymmetric one "v1a,<base64 ed25519>" with "whsk_"/"whpk_" keys. A header may
 * carry several space-separated signatures (during a secret rotation). */
#ifndef HUIQI_PUSH_SIGN_H
#define HUIQI_PUSH_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WHSIG_MIN_SECRET 24 /* bytes of key material (192 bits) */
#define WHSIG_MAX_SECRET 64
#define WHSIG_MAX_HEADER 512 /* a webhook-signature value with a few signatures */

typedef struct whsig_secret {
    uint8_t key[WHSIG_MAX_SECRET];
    size_t len;
} whsig_secret_t;

/* Parses "whsec_<base64>" (24 to 64 bytes of key). Returns 0 or -EINVAL. */
int whsig_secret_parse(const char *text, whsig_secret_t *out);
/* A new random 32-byte secret, also written as "whsec_..." into 'text' (at least
 * 64 bytes). Returns 0 or -EIO when the random source fails. */
int whsig_secret_generate(whsig_secret_t *out, char *text, size_t textlen);

/* Appends "v1,<signature>" for (id, ts, body) to 'out' ('outlen' bytes, always
 * NUL-terminated). Returns 0 or -ENOSPC. */
int whsig_sign_v1(const whsig_secret_t *s, const char *id, int64_t ts, const char *body, size_t len,
                  char *out, size_t outlen);

/* A new ed25519 key pair as "whsk_..." and "whpk_..." (each at least 64 bytes). */
int whsig_ed25519_generate(char *sk, size_t sklen, char *pk, size_t pklen);
/* "v1a,<signature>" with the "whsk_" key. Returns 0, -EINVAL or -ENOSPC. */
int whsig_sign_v1a(const char *whsk, const char *id, int64_t ts, const char *body, size_t len,
                   char *out, size_t outlen);
/* The "whpk_" public key of a "whsk_" key. */
int whsig_ed25519_public(const char *whsk, char *pk, size_t pklen);

/* Verifies a webhook-signature header value: 0 when any of its v1 signatures
 * matches one of 'secrets' or its v1a signature matches 'whpk' (may be NULL), all
 * compared in constant time; -ETIME when |now - ts| > tolerance seconds;
 * -EBADMSG when no signature matches; -EINVAL when the inputs are malformed. */
int whsig_verify(const char *header, const whsig_secret_t *secrets, unsigned nsecrets,
                 const char *whpk, const char *id, const char *ts, int64_t now, int64_t tolerance,
                 const char *body, size_t len);

/* Whether the 'n' bytes at 'a' and 'b' are equal, in a time that depends on 'n'
 * alone (OpenSSL's CRYPTO_memcmp): how signatures are compared, never with
 * memcmp, which stops at the first difference and so tells an attacker how much
 * of a forged signature was right. */
bool whsig_equal(const void *a, const void *b, size_t n);

#endif

/* Standard Webhooks signing with OpenSSL's libcrypto; see sign.h. */
#include "push/sign.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "common/xalloc.h"

/* Base64 of 'n' bytes into 'out' (4 * ceil(n / 3) + 1 bytes). */
static size_t sig_b64(const uint8_t *p, size_t n, char *out) {
    return (size_t)EVP_EncodeBlock((unsigned char *)out, p, (int)n);
}

/* Decodes standard base64 (with padding); returns the byte count or -1. */
static int sig_unb64(const char *s, uint8_t *out, size_t outcap) {
    size_t n = strlen(s);
    if (n == 0 || n % 4 != 0 || n / 4 * 3 > outcap + 2) {
        return -1;
    }
    uint8_t tmp[256];
    if (n / 4 * 3 > sizeof tmp) {
        return -1;
    }
    int k = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)n);
    if (k < 0) {
        return -1;
    }
    /* EVP_DecodeBlock counts padding as zero bytes. */
    if (n >= 1 && s[n - 1] == '=') {
        k--;
    }
    if (n >= 2 && s[n - 2] == '=') {
        k--;
    }
    if ((size_t)k > outcap) {
        return -1;
    }
    memcpy(out, tmp, (size_t)k);
    return k;
}

int whsig_secret_parse(const char *text, whsig_secret_t *out) {
    if (strncmp(text, "whsec_", 6) != 0) {
        return -EINVAL;
    }
    int n = sig_unb64(text + 6, out->key, sizeof out->key);
    if (n < WHSIG_MIN_SECRET) {
        return -EINVAL;
    }
    out->len = (size_t)n;
    return 0;
}

int whsig_secret_generate(whsig_secret_t *out, char *text, size_t textlen) {
    if (textlen < 64 || RAND_bytes(out->key, 32) != 1) {
        return -EIO;
    }
    out->len = 32;
    memcpy(text, "whsec_", 6);
    sig_b64(out->key, 32, text + 6);
    return 0;
}

/* The signed content "id.ts.body" in a fresh buffer. */
static char *sig_content(const char *id, int64_t ts, const char *body, size_t len, size_t *n) {
    char head[160];
    int h = snprintf(head, sizeof head, "%s.%lld.", id, (long long)ts);
    if (h < 0 || (size_t)h >= sizeof head) {
        return NULL;
    }
    char *c = xmalloc((size_t)h + len + 1);
    memcpy(c, head, (size_t)h);
    if (len) {
        memcpy(c + h, body, len);
    }
    *n = (size_t)h + len;
    return c;
}

static int sig_v1_raw(const whsig_secret_t *s, const char *id, int64_t ts, const char *body,
                      size_t len, uint8_t mac[32]) {
    size_t n;
    char *c = sig_content(id, ts, body, len, &n);
    if (c == NULL) {
        return -EINVAL;
    }
    unsigned int maclen = 0;
    uint8_t *ok =
        HMAC(EVP_sha256(), s->key, (int)s->len, (const unsigned char *)c, n, mac, &maclen);
    free(c);
    return ok && maclen == 32 ? 0 : -EIO;
}

int whsig_sign_v1(const whsig_secret_t *s, const char *id, int64_t ts, const char *body, size_t len,
                  char *out, size_t outlen) {
    uint8_t mac[32];
    int rc = sig_v1_raw(s, id, ts, body, len, mac);
    if (rc) {
        return rc;
    }
    char b64[64];
    sig_b64(mac, 32, b64);
    if (outlen < 3 + strlen(b64) + 1) {
        return -ENOSPC;
    }
    snprintf(out, outlen, "v1,%s", b64);
    return 0;
}

/* ---------------------------------------------------------------------------
 * ed25519
 * ------------------------------------------------------------------------- */

static EVP_PKEY *sig_sk_load(const char *whsk) {
    uint8_t seed[32];
    if (strncmp(whsk, "whsk_", 5) != 0 || sig_unb64(whsk + 5, seed, sizeof seed) != 32) {
        return NULL;
    }
    return EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
}

static int sig_pk_text(EVP_PKEY *k, char *pk, size_t pklen) {
    uint8_t pub[32];
    size_t n = sizeof pub;
    if (EVP_PKEY_get_raw_public_key(k, pub, &n) != 1 || n != 32 || pklen < 64) {
        return -EIO;
    }
    memcpy(pk, "whpk_", 5);
    sig_b64(pub, 32, pk + 5);
    return 0;
}

int whsig_ed25519_generate(char *sk, size_t sklen, char *pk, size_t pklen) {
    uint8_t seed[32];
    if (sklen < 64 || RAND_bytes(seed, 32) != 1) {
        return -EIO;
    }
    memcpy(sk, "whsk_", 5);
    sig_b64(seed, 32, sk + 5);
    return whsig_ed25519_public(sk, pk, pklen);
}

int whsig_ed25519_public(const char *whsk, char *pk, size_t pklen) {
    EVP_PKEY *k = sig_sk_load(whsk);
    if (k == NULL) {
        return -EINVAL;
    }
    int rc = sig_pk_text(k, pk, pklen);
    EVP_PKEY_free(k);
    return rc;
}

int whsig_sign_v1a(const char *whsk, const char *id, int64_t ts, const char *body, size_t len,
                   char *out, size_t outlen) {
    EVP_PKEY *k = sig_sk_load(whsk);
    if (k == NULL) {
        return -EINVAL;
    }
    size_t n;
    char *c = sig_content(id, ts, body, len, &n);
    uint8_t sig[64];
    size_t siglen = sizeof sig;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = c && ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, k) == 1 &&
             EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)c, n) == 1;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(k);
    free(c);
    if (!ok) {
        return -EIO;
    }
    char b64[128];
    sig_b64(sig, siglen, b64);
    if (outlen < 4 + strlen(b64) + 1) {
        return -ENOSPC;
    }
    snprintf(out, outlen, "v1a,%s", b64);
    return 0;
}

static int sig_v1a_check(const char *whpk, const char *content, size_t n, const uint8_t *sig,
                         size_t siglen) {
    uint8_t pub[32];
    if (strncmp(whpk, "whpk_", 5) != 0 || sig_unb64(whpk + 5, pub, sizeof pub) != 32) {
        return 0;
    }
    EVP_PKEY *k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = k && ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k) == 1 &&
             EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)content, n) == 1;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(k);
    return ok;
}

/* ---------------------------------------------------------------------------
 * Verification
 * ------------------------------------------------------------------------- */

bool whsig_equal(const void *a, const void *b, size_t n) {
    return CRYPTO_memcmp(a, b, n) == 0;
}

int whsig_verify(const char *header, const whsig_secret_t *secrets, unsigned nsecrets,
                 const char *whpk, const char *id, const char *ts, int64_t now, int64_t tolerance,
                 const char *body, size_t len) {
    char *end = NULL;
    long long t = strtoll(ts, &end, 10);
    if (ts[0] == '\0' || *end != '\0' || strlen(header) > WHSIG_MAX_HEADER || strchr(id, '.')) {
        return -EINVAL;
    }
    if (t > now + tolerance || t < now - tolerance) {
        return -ETIME;
    }
    size_t n;
    char *content = sig_content(id, t, body, len, &n);
    if (content == NULL) {
        return -EINVAL;
    }
    uint8_t macs[16][32];
    unsigned nm = nsecrets < 16 ? nsecrets : 16;
    for (unsigned i = 0; i < nm; i++) {
        if (sig_v1_raw(&secrets[i], id, t, body, len, macs[i]) != 0) {
            free(content);
            return -EIO;
        }
    }
    char buf[WHSIG_MAX_HEADER + 1];
    snprintf(buf, sizeof buf, "%s", header);
    int found = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        uint8_t sig[96];
        if (strncmp(tok, "v1,", 3) == 0) {
            if (sig_unb64(tok + 3, sig, sizeof sig) != 32) {
                continue;
            }
            for (unsigned i = 0; i < nm; i++) {
                /* Constant time: no early exit on the first differing byte. */
                found |= whsig_equal(sig, macs[i], 32);
            }
        } else if (strncmp(tok, "v1a,", 4) == 0 && whpk) {
            int k = sig_unb64(tok + 4, sig, sizeof sig);
            if (k == 64) {
                found |= sig_v1a_check(whpk, content, n, sig, 64);
            }
        }
    }
    free(content);
    return found ? 0 : -EBADMSG;
}

/* Compact binary records kept next to the JSON documents, so that the index can
 * be rebuilt without parsing a million documents. Enterprise records are varint
 * deltas of sorted bit numbers; policy metadata is fixed-width little endian. */
#include <errno.h>
#include <string.h>

#include "matcher/bitset.h"
#include "store/internal.h"

#define REC_FORMAT  1
#define META_FORMAT 1

static size_t rec_put_varint(char *out, uint32_t v) {
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (char)(0x80 | (v & 0x7f));
        v >>= 7;
    }
    out[n++] = (char)v;
    return n;
}

static int rec_get_varint(const char *p, size_t len, size_t *pos, uint32_t *v) {
    uint32_t x = 0;
    for (int shift = 0; shift < 35; shift += 7) {
        if (*pos >= len) {
            return -EINVAL;
        }
        unsigned char c = (unsigned char)p[(*pos)++];
        x |= (uint32_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -EINVAL;
}

size_t store__rec_max(size_t words) {
    /* format + code + two counts + one varint (<= 3 bytes for bits < 4096) per bit */
    return 1 + 18 + 10 + 3 * (words * 64 + STORE_MAX_INTERESTS);
}

size_t store__rec_encode(char *out, const char *uscc, const uint64_t *row, size_t words,
                         const uint16_t *interests, unsigned nint) {
    size_t n = 0;
    out[n++] = REC_FORMAT;
    memcpy(out + n, uscc, 18);
    n += 18;
    n += rec_put_varint(out + n, (uint32_t)bitset_popcount(row, words));
    uint32_t prev = 0;
    for (size_t w = 0; w < words; w++) {
        uint64_t bits = row[w];
        while (bits) {
            uint32_t b = (uint32_t)(w * 64 + (size_t)__builtin_ctzll(bits));
            bits &= bits - 1;
            n += rec_put_varint(out + n, b - prev);
            prev = b;
        }
    }
    n += rec_put_varint(out + n, nint);
    prev = 0;
    for (unsigned i = 0; i < nint; i++) {
        /* Interests arrive sorted and unique (the caller normalises them). */
        n += rec_put_varint(out + n, (uint32_t)interests[i] - prev);
        prev = interests[i];
    }
    return n;
}

int store__rec_decode(const char *p, size_t len, char *uscc, uint64_t *row, size_t words,
                      unsigned ntags, uint16_t *interests, unsigned *nint, unsigned nptags) {
    if (len < 19 || p[0] != REC_FORMAT) {
        return -EINVAL;
    }
    memcpy(uscc, p + 1, 18);
    memset(row, 0, words * sizeof *row);
    size_t pos = 19;
    uint32_t n, d, cur = 0;
    if (rec_get_varint(p, len, &pos, &n) || n > ntags) {
        return -EINVAL;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (rec_get_varint(p, len, &pos, &d)) {
            return -EINVAL;
        }
        cur += d;
        if (cur >= ntags || (i && d == 0)) {
            return -EINVAL;
        }
        bitset_set(row, cur);
    }
    if (rec_get_varint(p, len, &pos, &n) || n > STORE_MAX_INTERESTS) {
        return -EINVAL;
    }
    cur = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (rec_get_varint(p, len, &pos, &d)) {
            return -EINVAL;
        }
        cur += d;
        if (cur >= nptags || (i && d == 0)) {
            return -EINVAL;
        }
        interests[i] = (uint16_t)cur;
    }
    *nint = n;
    return pos == len ? 0 : -EINVAL;
}

static size_t meta_put16(char *out, uint16_t v) {
    out[0] = (char)(v & 0xff);
    out[1] = (char)(v >> 8);
    return 2;
}

static size_t meta_put32(char *out, uint32_t v) {
    for (int i = 0; i < 4; i++) {
        out[i] = (char)((v >> (8 * i)) & 0xff);
    }
    return 4;
}

static int meta_get16(const char *p, size_t len, size_t *pos, uint16_t *v) {
    if (*pos + 2 > len) {
        return -EINVAL;
    }
    const unsigned char *u = (const unsigned char *)p + *pos;
    *v = (uint16_t)(u[0] | (u[1] << 8));
    *pos += 2;
    return 0;
}

static int meta_get32(const char *p, size_t len, size_t *pos, uint32_t *v) {
    if (*pos + 4 > len) {
        return -EINVAL;
    }
    const unsigned char *u = (const unsigned char *)p + *pos;
    *v = (uint32_t)u[0] | ((uint32_t)u[1] << 8) | ((uint32_t)u[2] << 16) | ((uint32_t)u[3] << 24);
    *pos += 4;
    return 0;
}

static size_t meta_put_list(char *out, const uint16_t *v, uint16_t n) {
    size_t k = meta_put16(out, n);
    for (uint16_t i = 0; i < n; i++) {
        k += meta_put16(out + k, v[i]);
    }
    return k;
}

static int meta_get_list(const char *p, size_t len, size_t *pos, uint16_t *v, uint16_t *n,
                         unsigned cap, unsigned limit) {
    if (meta_get16(p, len, pos, n) || *n > cap) {
        return -EINVAL;
    }
    for (uint16_t i = 0; i < *n; i++) {
        if (meta_get16(p, len, pos, &v[i]) || v[i] >= limit) {
            return -EINVAL;
        }
    }
    return 0;
}

size_t store__meta_encode(char *out, const store_pol_in_t *in) {
    size_t n = 0;
    out[n++] = META_FORMAT;
    n += meta_put32(out + n, (uint32_t)in->opens);
    n += meta_put32(out + n, (uint32_t)in->closes);
    /* At byte 9, where the POL_STATUS script reads it (store/scripts.c). */
    out[n++] = (char)in->mode;
    n += meta_put_list(out + n, in->rule->all, in->rule->nall);
    n += meta_put_list(out + n, in->rule->any, in->rule->nany);
    n += meta_put_list(out + n, in->rule->none, in->rule->nnone);
    n += meta_put_list(out + n, in->ptags, in->nptags);
    return n;
}

int store__meta_decode(const char *p, size_t len, store_policy_t *pol, unsigned ntags,
                       unsigned nptags) {
    size_t pos = 1;
    uint32_t v;
    if (len < 10 || p[0] != META_FORMAT) {
        return -EINVAL;
    }
    if (meta_get32(p, len, &pos, &v)) {
        return -EINVAL;
    }
    pol->opens = (int32_t)v;
    if (meta_get32(p, len, &pos, &v)) {
        return -EINVAL;
    }
    pol->closes = (int32_t)v;
    pol->mode = (uint8_t)p[pos++];
    memset(&pol->rule, 0, sizeof pol->rule);
    if (meta_get_list(p, len, &pos, pol->rule.all, &pol->rule.nall, RULE_MAX_PART, ntags) ||
        meta_get_list(p, len, &pos, pol->rule.any, &pol->rule.nany, RULE_MAX_PART, ntags) ||
        meta_get_list(p, len, &pos, pol->rule.none, &pol->rule.nnone, RULE_MAX_PART, ntags) ||
        meta_get_list(p, len, &pos, pol->ptags, &pol->nptags, STORE_MAX_PTAGS, nptags)) {
        return -EINVAL;
    }
    if (pol->mode > STORE_MODE_AUTO) {
        return -EINVAL;
    }
    return pos == len ? 0 : -EINVAL;
}

/* Growable byte buffer; see sbuf.h. */
#include "common/sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

void sbuf_init(sbuf_t *s, size_t cap) {
    s->cap = cap ? cap : 64;
    s->p = xmalloc(s->cap);
    s->len = 0;
    s->p[0] = '\0';
}

static void sbuf_reserve(sbuf_t *s, size_t more) {
    if (s->len + more + 1 <= s->cap) {
        return;
    }
    size_t cap = s->cap * 2;
    while (cap < s->len + more + 1) {
        cap *= 2;
    }
    s->p = xrealloc(s->p, cap);
    s->cap = cap;
}

void sbuf_add_grow(sbuf_t *s, const void *p, size_t n) {
    sbuf_reserve(s, n);
    memcpy(s->p + s->len, p, n);
    s->len += n;
    s->p[s->len] = '\0';
}

size_t sbuf_utoa(char *out, uint64_t v) {
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) {
        out[i] = tmp[n - 1 - i];
    }
    return n;
}

void sbuf_addu(sbuf_t *s, uint64_t v) {
    sbuf_reserve(s, 20);
    s->len += sbuf_utoa(s->p + s->len, v);
    s->p[s->len] = '\0';
}

void sbuf_adds(sbuf_t *s, const char *str) {
    sbuf_add(s, str, strlen(str));
}

void sbuf_addf(sbuf_t *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s->p + s->len, s->cap - s->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t)n >= s->cap - s->len) {
        sbuf_reserve(s, (size_t)n);
        va_start(ap, fmt);
        vsnprintf(s->p + s->len, s->cap - s->len, fmt, ap);
        va_end(ap);
    }
    s->len += (size_t)n;
}

void sbuf_free(sbuf_t *s) {
    free(s->p);
    s->p = NULL;
    s->len = s->cap = 0;
}

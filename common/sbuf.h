/* A growable byte buffer for building answers by hand where a JSON tree would be
 * too slow. Pure libc. */
#ifndef HUIQI_COMMON_SBUF_H
#define HUIQI_COMMON_SBUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf_t;

void sbuf_init(sbuf_t *s, size_t cap);
/* sbuf_add's way when the bytes do not fit: grows, then appends. */
void sbuf_add_grow(sbuf_t *s, const void *p, size_t n);
/* Appends n bytes (kept NUL-terminated). Inline: answers are built from many short
 * pieces (a package's tag codes are three each); making it inline took a package
 * request from 23.5k to 21.3k instructions and an audience from 18.7k to 17.0k
 * (callgrind, bench/gate_http.sh). */
static inline void sbuf_add(sbuf_t *s, const void *p, size_t n) {
    if (s->len + n < s->cap) {
        memcpy(s->p + s->len, p, n);
        s->len += n;
        s->p[s->len] = '\0';
        return;
    }
    sbuf_add_grow(s, p, n);
}
void sbuf_adds(sbuf_t *s, const char *str);
/* Appends a string literal (its length known at compile time). */
#define sbuf_addl(s, lit) sbuf_add((s), "" lit, sizeof(lit) - 1)
/* v in decimal into out (20 bytes are enough; no NUL); returns the length. */
size_t sbuf_utoa(char *out, uint64_t v);
/* v in decimal: what sbuf_addf("%llu") writes, without printf's cost on hot paths. */
void sbuf_addu(sbuf_t *s, uint64_t v);
void sbuf_addf(sbuf_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbuf_free(sbuf_t *s);

#endif

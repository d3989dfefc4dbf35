/* A growable byte buffer for building answers by hand where a JSON tree would be
 * too slow. Pure libc. */
#ifndef HUIQI_COMMON_SBUF_H
#define HUIQI_COMMON_SBUF_H

#include <stddef.h>

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf_t;

void sbuf_init(sbuf_t *s, size_t cap);
void sbuf_add(sbuf_t *s, const void *p, size_t n);
void sbuf_adds(sbuf_t *s, const char *str);
void sbuf_addf(sbuf_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbuf_free(sbuf_t *s);

#endif

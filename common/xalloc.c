/* Allocation wrappers that abort on out-of-memory; see xalloc.h. */
#include "common/xalloc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Noreturn void xalloc_fail(size_t n) {
    /* Nothing useful can be done without memory; fail loudly and at once rather than
     * limp on with half-built state. */
    fprintf(stderr, "huiqi: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        xalloc_fail(n);
    }
    return p;
}

void *xcalloc(size_t nmemb, size_t size) {
    if (size != 0 && nmemb > SIZE_MAX / size) {
        xalloc_fail(SIZE_MAX);
    }
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (p == NULL) {
        xalloc_fail(nmemb * size);
    }
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (q == NULL) {
        xalloc_fail(n);
    }
    return q;
}

void *xreallocarray(void *p, size_t nmemb, size_t size) {
    if (size != 0 && nmemb > SIZE_MAX / size) {
        xalloc_fail(SIZE_MAX);
    }
    return xrealloc(p, nmemb * size);
}

char *xstrdup(const char *s) {
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *p, size_t len) {
    if (len == SIZE_MAX) {
        xalloc_fail(len);
    }
    char *s = xmalloc(len + 1);
    memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

void *xmemdup(const void *p, size_t len) {
    void *q = xmalloc(len);
    if (len) {
        memcpy(q, p, len);
    }
    return q;
}

/* Allocation wrappers: every allocation in huiqi goes through these. They abort the
 * process on out-of-memory (as hiredis 0.14 already does), so callers never check
 * for NULL. Size arithmetic is overflow-checked. Pure libc. */
#ifndef HUIQI_COMMON_XALLOC_H
#define HUIQI_COMMON_XALLOC_H

#include <stddef.h>

/* malloc(n); never returns NULL (n == 0 allocates one byte). Free with free(). */
void *xmalloc(size_t n);
/* calloc(nmemb, size) with overflow check; never returns NULL. */
void *xcalloc(size_t nmemb, size_t size);
/* realloc(p, n); on failure aborts, so `p = xrealloc(p, n)` is safe. */
void *xrealloc(void *p, size_t n);
/* realloc for an array of nmemb elements of size, overflow-checked. */
void *xreallocarray(void *p, size_t nmemb, size_t size);
/* strdup(s); s must not be NULL. */
char *xstrdup(const char *s);
/* A NUL-terminated copy of the len bytes at p (which may hold NULs). */
char *xstrndup(const char *p, size_t len);
/* A copy of the len bytes at p (len may be 0). */
void *xmemdup(const void *p, size_t len);

/* Reports that 'n' bytes could not be allocated, as the wrappers do, and aborts.
 * For memory a library failed to get and reported in a way we cannot recover from
 * (see store/link.c). */
_Noreturn void xalloc_fail(size_t n);

#endif

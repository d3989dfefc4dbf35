/* failmalloc: an LD_PRELOAD shim for allocation-failure tests (curl's "torture"
 * idea, shared/reliability.md B8). It passes malloc, calloc and realloc through
 * until it is armed; then it counts the allocations made on the arming thread and
 * makes the k-th one return NULL, once. It is armed in band, so a test can aim it
 * at one request: a read() whose bytes hold "X-Failmalloc: arm K" arms it on the
 * reading thread (K = 0 only counts), and one holding "X-Failmalloc: disarm"
 * disarms it and writes a report line to stderr. The failed call is reported at
 * once, with the caller's library and symbol, because the process may abort next.
 * Test-only: built as build/tests/failmalloc.so, never linked into huiqid. Its
 * state is process-global by nature (it replaces process-global functions). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define FM_TOKEN     "X-Failmalloc: "
#define FM_BOOT_SIZE (64 * 1024) /* for dlsym's own allocations while resolving */

typedef void *(*fm_malloc_fn)(size_t);
typedef void *(*fm_calloc_fn)(size_t, size_t);
typedef void *(*fm_realloc_fn)(void *, size_t);
typedef void (*fm_free_fn)(void *);
typedef ssize_t (*fm_read_fn)(int, void *, size_t);

static fm_malloc_fn real_malloc;
static fm_calloc_fn real_calloc;
static fm_realloc_fn real_realloc;
static fm_free_fn real_free;
static fm_read_fn real_read;

/* Allocations made while dlsym runs (it may allocate) come from here and are
 * never freed. Only the first thread into the shim resolves, before any other
 * thread exists. */
static _Alignas(max_align_t) unsigned char fm_boot[FM_BOOT_SIZE];
static size_t fm_boot_used;
static int fm_resolving;

/* Armed state. Only the arming thread reads or writes fm_count, fm_k, fm_failed and
 * fm_busy; other threads only look at fm_armed (then fm_thread) and pass through. */
static atomic_int fm_armed;
static pthread_t fm_thread;
static unsigned long fm_count, fm_k;
static int fm_failed, fm_busy;

/* ---------------------------------------------------------------------------
 * Resolving the real functions
 * ------------------------------------------------------------------------- */

static void *fm_boot_alloc(size_t n) {
    size_t a = (n + 15) & ~(size_t)15;
    if (a < n || a > FM_BOOT_SIZE - fm_boot_used) {
        return NULL;
    }
    void *p = fm_boot + fm_boot_used;
    fm_boot_used += a;
    return p;
}

static int fm_is_boot(const void *p) {
    const unsigned char *c = p;
    return c >= fm_boot && c < fm_boot + sizeof fm_boot;
}

static void fm_resolve(void) {
    if (fm_resolving) {
        return;
    }
    fm_resolving = 1;
    real_malloc = (fm_malloc_fn)dlsym(RTLD_NEXT, "malloc");
    real_calloc = (fm_calloc_fn)dlsym(RTLD_NEXT, "calloc");
    real_realloc = (fm_realloc_fn)dlsym(RTLD_NEXT, "realloc");
    real_free = (fm_free_fn)dlsym(RTLD_NEXT, "free");
    real_read = (fm_read_fn)dlsym(RTLD_NEXT, "read");
    fm_resolving = 0;
}

__attribute__((constructor)) static void fm_init(void) {
    if (real_malloc == NULL) {
        fm_resolve();
    }
}

/* ---------------------------------------------------------------------------
 * Reporting (no stdio: it may allocate, and we are inside malloc)
 * ------------------------------------------------------------------------- */

static void fm_put(char *buf, size_t cap, size_t *len, const char *s) {
    while (*s && *len + 1 < cap) {
        buf[(*len)++] = *s++;
    }
}

static void fm_put_num(char *buf, size_t cap, size_t *len, unsigned long v, unsigned base) {
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v && n < sizeof tmp);
    while (n && *len + 1 < cap) {
        buf[(*len)++] = tmp[--n];
    }
}

static void fm_write(const char *buf, size_t len) {
    while (len > 0) {
        ssize_t w = write(2, buf, len);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return;
        }
        buf += w;
        len -= (size_t)w;
    }
}

/* "failmalloc: fail #K malloc(N) from LIB(SYMBOL+0xOFF)" */
static void fm_report_fail(const char *fn, size_t n, const void *caller) {
    char buf[512];
    size_t len = 0;
    int saved = errno;
    fm_put(buf, sizeof buf, &len, "failmalloc: fail #");
    fm_put_num(buf, sizeof buf, &len, fm_k, 10);
    fm_put(buf, sizeof buf, &len, " ");
    fm_put(buf, sizeof buf, &len, fn);
    fm_put(buf, sizeof buf, &len, "(");
    fm_put_num(buf, sizeof buf, &len, (unsigned long)n, 10);
    fm_put(buf, sizeof buf, &len, ") from ");
    Dl_info info;
    if (dladdr(caller, &info) != 0 && info.dli_fname != NULL) {
        const char *base = strrchr(info.dli_fname, '/');
        fm_put(buf, sizeof buf, &len, base ? base + 1 : info.dli_fname);
        fm_put(buf, sizeof buf, &len, "(");
        uintptr_t at = (uintptr_t)caller;
        if (info.dli_sname != NULL && info.dli_saddr != NULL) {
            fm_put(buf, sizeof buf, &len, info.dli_sname);
            at -= (uintptr_t)info.dli_saddr;
        } else {
            at -= (uintptr_t)info.dli_fbase;
        }
        fm_put(buf, sizeof buf, &len, "+0x");
        fm_put_num(buf, sizeof buf, &len, (unsigned long)at, 16);
        fm_put(buf, sizeof buf, &len, ")");
    } else {
        fm_put(buf, sizeof buf, &len, "?");
    }
    fm_put(buf, sizeof buf, &len, "\n");
    fm_write(buf, len);
    errno = saved;
}

/* "failmalloc: disarmed after N allocations (k=K, failed|not reached)" */
static void fm_report_disarm(void) {
    char buf[160];
    size_t len = 0;
    fm_put(buf, sizeof buf, &len, "failmalloc: disarmed after ");
    fm_put_num(buf, sizeof buf, &len, fm_count, 10);
    fm_put(buf, sizeof buf, &len, " allocations (k=");
    fm_put_num(buf, sizeof buf, &len, fm_k, 10);
    fm_put(buf, sizeof buf, &len, fm_failed ? ", failed)\n" : ", not reached)\n");
    fm_write(buf, len);
}

/* ---------------------------------------------------------------------------
 * The decision
 * ------------------------------------------------------------------------- */

/* True when this call is the k-th counted one: it must fail. */
static int fm_should_fail(const char *fn, size_t n, const void *caller) {
    if (!atomic_load_explicit(&fm_armed, memory_order_acquire) ||
        !pthread_equal(pthread_self(), fm_thread) || fm_busy) {
        return 0;
    }
    fm_count++;
    if (fm_k == 0 || fm_count != fm_k) {
        return 0;
    }
    fm_failed = 1;
    fm_busy = 1; /* dladdr must not be counted (or failed) */
    fm_report_fail(fn, n, caller);
    fm_busy = 0;
    return 1;
}

void *malloc(size_t n) {
    if (real_malloc == NULL) {
        fm_resolve();
        if (real_malloc == NULL) {
            return fm_boot_alloc(n);
        }
    }
    if (fm_should_fail("malloc", n, __builtin_return_address(0))) {
        errno = ENOMEM;
        return NULL;
    }
    return real_malloc(n);
}

void *calloc(size_t nmemb, size_t size) {
    if (real_calloc == NULL) {
        fm_resolve();
        if (real_calloc == NULL) {
            if (size != 0 && nmemb > SIZE_MAX / size) {
                return NULL;
            }
            return fm_boot_alloc(nmemb * size); /* static memory is zeroed */
        }
    }
    if (fm_should_fail("calloc", nmemb * size, __builtin_return_address(0))) {
        errno = ENOMEM;
        return NULL;
    }
    return real_calloc(nmemb, size);
}

void *realloc(void *p, size_t n) {
    if (fm_is_boot(p)) {
        /* dlsym's bootstrap memory is moved out and never given back. */
        void *q = malloc(n);
        size_t room = (size_t)(fm_boot + sizeof fm_boot - (unsigned char *)p);
        if (q != NULL) {
            memcpy(q, p, n < room ? n : room);
        }
        return q;
    }
    if (real_realloc == NULL) {
        fm_resolve();
        if (real_realloc == NULL) {
            return p == NULL ? fm_boot_alloc(n) : NULL;
        }
    }
    /* realloc(p, 0) frees: not an allocation, never failed. */
    if ((p == NULL || n != 0) && fm_should_fail("realloc", n, __builtin_return_address(0))) {
        errno = ENOMEM;
        return NULL;
    }
    return real_realloc(p, n);
}

void free(void *p) {
    if (p == NULL || fm_is_boot(p)) {
        return;
    }
    if (real_free == NULL) {
        fm_resolve();
        if (real_free == NULL) {
            return; /* cannot happen once anything real was allocated */
        }
    }
    real_free(p);
}

/* ---------------------------------------------------------------------------
 * Arming in band
 * ------------------------------------------------------------------------- */

static void fm_scan(const char *buf, size_t len) {
    const char *t = memmem(buf, len, FM_TOKEN, sizeof FM_TOKEN - 1);
    if (t == NULL) {
        return;
    }
    const char *v = t + sizeof FM_TOKEN - 1;
    size_t left = len - (size_t)(v - buf);
    if (left >= 4 && memcmp(v, "arm ", 4) == 0) {
        unsigned long k = 0;
        for (size_t i = 4; i < left && v[i] >= '0' && v[i] <= '9'; i++) {
            k = k * 10 + (unsigned long)(v[i] - '0');
        }
        /* Disarmed while the fields change, so other threads never see them half set. */
        atomic_store_explicit(&fm_armed, 0, memory_order_release);
        fm_thread = pthread_self();
        fm_k = k;
        fm_count = 0;
        fm_failed = 0;
        atomic_store_explicit(&fm_armed, 1, memory_order_release);
    } else if (left >= 6 && memcmp(v, "disarm", 6) == 0) {
        if (atomic_load_explicit(&fm_armed, memory_order_acquire) &&
            pthread_equal(pthread_self(), fm_thread)) {
            atomic_store_explicit(&fm_armed, 0, memory_order_release);
            fm_report_disarm();
        } else {
            static const char msg[] = "failmalloc: disarm while not armed\n";
            fm_write(msg, sizeof msg - 1);
        }
    }
}

ssize_t read(int fd, void *buf, size_t n) {
    if (real_read == NULL) {
        fm_resolve();
    }
    ssize_t r = real_read(fd, buf, n);
    if (r > 0) {
        fm_scan(buf, (size_t)r);
    }
    return r;
}

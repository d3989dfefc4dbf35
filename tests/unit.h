/* The in-tree unit test helpers: each ASSERT prints both operands with file and
 * line and makes the current test return failure. A test is
 * `int test_<module>_<behaviour>(void)` listed in tests/test_list.h. */
#ifndef HUIQI_TESTS_UNIT_H
#define HUIQI_TESTS_UNIT_H

#include <stdio.h>
#include <string.h>

#define UNIT_FAIL_(fmt, ...)                                                    \
    do {                                                                        \
        fprintf(stderr, "  %s:%d: " fmt "\n", __FILE__, __LINE__, __VA_ARGS__); \
        return 1;                                                               \
    } while (0)

#define ASSERT_CMP_(a, op, b)                                                   \
    do {                                                                        \
        long long ua_ = (long long)(a);                                         \
        long long ub_ = (long long)(b);                                         \
        if (!(ua_ op ub_)) {                                                    \
            UNIT_FAIL_("ASSERT %s %s %s: %lld vs %lld", #a, #op, #b, ua_, ub_); \
        }                                                                       \
    } while (0)

#define ASSERT_EQ(a, b)  ASSERT_CMP_(a, ==, b)
#define ASSERT_NE(a, b)  ASSERT_CMP_(a, !=, b)
#define ASSERT_LT(a, b)  ASSERT_CMP_(a, <, b)
#define ASSERT_LE(a, b)  ASSERT_CMP_(a, <=, b)
#define ASSERT_GT(a, b)  ASSERT_CMP_(a, >, b)
#define ASSERT_GE(a, b)  ASSERT_CMP_(a, >=, b)
#define ASSERT_TRUE(x)   ASSERT_CMP_(!!(x), ==, 1)
#define ASSERT_FALSE(x)  ASSERT_CMP_(!!(x), ==, 0)
#define ASSERT_OK(x)     ASSERT_CMP_(x, ==, 0)
#define ASSERT_ERR(x, e) ASSERT_CMP_(x, ==, e)

#define ASSERT_NULL(p)                                                \
    do {                                                              \
        if ((p) != NULL) {                                            \
            UNIT_FAIL_("ASSERT_NULL(%s): %p", #p, (const void *)(p)); \
        }                                                             \
    } while (0)

#define ASSERT_NOT_NULL(p)                         \
    do {                                           \
        if ((p) == NULL) {                         \
            UNIT_FAIL_("ASSERT_NOT_NULL(%s)", #p); \
        }                                          \
    } while (0)

#define ASSERT_STREQ(a, b)                                                                     \
    do {                                                                                       \
        const char *sa_ = (a);                                                                 \
        const char *sb_ = (b);                                                                 \
        if (sa_ == NULL || sb_ == NULL || strcmp(sa_, sb_) != 0) {                             \
            UNIT_FAIL_("ASSERT_STREQ(%s, %s): \"%s\" vs \"%s\"", #a, #b, sa_ ? sa_ : "(null)", \
                       sb_ ? sb_ : "(null)");                                                  \
        }                                                                                      \
    } while (0)

#define ASSERT_MEMEQ(a, b, n)                                   \
    do {                                                        \
        if (memcmp((a), (b), (n)) != 0) {                       \
            UNIT_FAIL_("ASSERT_MEMEQ(%s, %s, %s)", #a, #b, #n); \
        }                                                       \
    } while (0)

/* A tiny deterministic generator for randomized tests (xorshift64*). */
static inline unsigned long long unit_rand(unsigned long long *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

#endif

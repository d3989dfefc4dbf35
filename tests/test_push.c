/* Unit tests for push/: Standard Webhooks signing and verification. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* The ctgrind check of test_sign_constant_time_compare needs valgrind's client
 * requests: the Makefile defines HAVE_MEMCHECK when the header is installed. */
#ifdef HAVE_MEMCHECK
#include <valgrind/memcheck.h>
#endif

#include "push/sign.h"
#include "tests/test_list_decl.h"
#include "tests/unit.h"

int test_sign_standard_webhooks_vector(void) {
    /* The specification's test vector (shared/reliability.md section 0, item 7). */
    whsig_secret_t s;
    ASSERT_OK(whsig_secret_parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &s));
    ASSERT_EQ(s.len, 24);
    const char *body = "{\"test\": 2432232314}";
    char sig[128];
    ASSERT_OK(whsig_sign_v1(&s, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, strlen(body), sig,
                            sizeof sig));
    ASSERT_STREQ(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    ASSERT_OK(whsig_verify(sig, &s, 1, NULL, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330",
                           1614265330, 300, body, strlen(body)));
    return 0;
}

int test_sign_any_change_fails(void) {
    whsig_secret_t s;
    ASSERT_OK(whsig_secret_parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &s));
    const char *id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    char body[] = "{\"test\": 2432232314}";
    char sig[128];
    ASSERT_OK(whsig_sign_v1(&s, id, 1614265330, body, strlen(body), sig, sizeof sig));
    /* Every one-byte change of the body breaks it. */
    for (size_t i = 0; i < strlen(body); i++) {
        body[i] ^= 1;
        ASSERT_ERR(
            whsig_verify(sig, &s, 1, NULL, id, "1614265330", 1614265330, 300, body, strlen(body)),
            -EBADMSG);
        body[i] ^= 1;
    }
    ASSERT_ERR(whsig_verify(sig, &s, 1, NULL, "msg_p5jXN8AQM9LWM0D4loKWxJel", "1614265330",
                            1614265330, 300, body, strlen(body)),
               -EBADMSG);
    ASSERT_ERR(
        whsig_verify(sig, &s, 1, NULL, id, "1614265331", 1614265330, 300, body, strlen(body)),
        -EBADMSG);
    /* Outside the tolerance window. */
    ASSERT_ERR(
        whsig_verify(sig, &s, 1, NULL, id, "1614265330", 1614265330 + 301, 300, body, strlen(body)),
        -ETIME);
    ASSERT_ERR(whsig_verify("v1,garbage", &s, 1, NULL, id, "1614265330", 1614265330, 300, body,
                            strlen(body)),
               -EBADMSG);
    ASSERT_ERR(whsig_secret_parse("whsec_c2hvcnQ=", &s), -EINVAL); /* too short */
    ASSERT_ERR(whsig_secret_parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &s), -EINVAL);
    return 0;
}

/* The vector's parts, one of which a test changes. */
static const char sv_secret[] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
static const char sv_id[] = "msg_p5jXN8AQM9LWM0D4loKWxJek";
static const char sv_ts[] = "1614265330";
static const char sv_body[] = "{\"test\": 2432232314}";

/* Verifies the vector's signature against the vector with part 'which' (0 body,
 * 1 id, 2 timestamp) changed at byte 'pos': set to 'v', or removed when v < 0.
 * The tolerance is wide enough (2^40 s) that only the MAC can refuse a timestamp. */
static int sign_verify_changed(const whsig_secret_t *s, const char *sig, int which, size_t pos,
                               int v) {
    const char *orig = which == 0 ? sv_body : which == 1 ? sv_id : sv_ts;
    char part[64];
    size_t n = strlen(orig);
    memcpy(part, orig, n + 1);
    if (v < 0) {
        memmove(part + pos, part + pos + 1, n - pos);
        n--;
    } else {
        part[pos] = (char)v;
    }
    return whsig_verify(sig, s, 1, NULL, which == 1 ? part : sv_id, which == 2 ? part : sv_ts,
                        1614265330, (int64_t)1 << 40, which == 0 ? part : sv_body,
                        which == 0 ? n : strlen(sv_body));
}

int test_sign_every_byte_change_fails(void) {
    /* Reliability checklist C11: every one-byte change (each position set to each
     * other value, or removed) of the body, the webhook-id and the timestamp fails
     * verification. The body is bytes with a length (a NUL is a change like any
     * other); the id and timestamp are C strings, so a NUL shortens them. */
    whsig_secret_t s;
    ASSERT_OK(whsig_secret_parse(sv_secret, &s));
    char sig[128];
    ASSERT_OK(whsig_sign_v1(&s, sv_id, 1614265330, sv_body, strlen(sv_body), sig, sizeof sig));
    unsigned tried = 0;
    for (int which = 0; which < 3; which++) {
        const char *orig = which == 0 ? sv_body : which == 1 ? sv_id : sv_ts;
        for (size_t pos = 0; pos < strlen(orig); pos++) {
            ASSERT_OK(sign_verify_changed(&s, sig, which, pos, (unsigned char)orig[pos]));
            for (int v = -1; v < 256; v++) {
                if (v == (unsigned char)orig[pos]) {
                    continue;
                }
                int rc = sign_verify_changed(&s, sig, which, pos, v);
                tried++;
                /* Refused by the MAC, or as malformed (a '.' in the id, a timestamp
                 * that is not a number); never accepted, never "too old". */
                if (rc != -EBADMSG && !(which > 0 && rc == -EINVAL)) {
                    static const char *const part[] = {"body", "id", "timestamp"};
                    UNIT_FAIL_("%s byte %zu %s %d: whsig_verify returned %d", part[which], pos,
                               v < 0 ? "removed" : "set to", v, rc);
                }
            }
        }
    }
    ASSERT_EQ(tried, (unsigned)(strlen(sv_body) + strlen(sv_id) + strlen(sv_ts)) * 256);
    return 0;
}

int test_sign_constant_time_compare(void) {
    /* Reliability checklist C11: the verifier compares MACs with whsig_equal
     * (CRYPTO_memcmp). Equal and unequal at every bit, and, under valgrind (make
     * test-valgrind), the ctgrind check: with both inputs marked secret
     * (undefined), a comparison that branches on their bytes, as memcmp does, is
     * a memcheck error. */
    uint8_t a[32], b[32];
    for (size_t i = 0; i < sizeof a; i++) {
        a[i] = b[i] = (uint8_t)(i * 37 + 1);
    }
    ASSERT_TRUE(whsig_equal(a, b, sizeof a));
    ASSERT_TRUE(whsig_equal(a, b, 0));
    for (size_t i = 0; i < sizeof a; i++) {
        for (int bit = 0; bit < 8; bit++) {
            b[i] ^= (uint8_t)(1u << bit);
            ASSERT_FALSE(whsig_equal(a, b, sizeof a));
            b[i] ^= (uint8_t)(1u << bit);
        }
    }
#ifdef HAVE_MEMCHECK
    if (RUNNING_ON_VALGRIND) {
        unsigned before = VALGRIND_COUNT_ERRORS;
        b[31] ^= 1; /* differ only at the end: memcmp would branch on every byte */
        VALGRIND_MAKE_MEM_UNDEFINED(a, sizeof a);
        VALGRIND_MAKE_MEM_UNDEFINED(b, sizeof b);
        bool same = whsig_equal(a, b, sizeof a);
        VALGRIND_MAKE_MEM_DEFINED(&same, sizeof same);
        VALGRIND_MAKE_MEM_DEFINED(a, sizeof a);
        VALGRIND_MAKE_MEM_DEFINED(b, sizeof b);
        unsigned after = VALGRIND_COUNT_ERRORS;
        ASSERT_FALSE(same);
        ASSERT_EQ(after, before); /* memcheck errors while comparing secret bytes */
    }
#endif
    return 0;
}

int test_sign_rotation_and_ed25519(void) {
    whsig_secret_t old, cur;
    char old_text[80], cur_text[80];
    ASSERT_OK(whsig_secret_generate(&old, old_text, sizeof old_text));
    ASSERT_OK(whsig_secret_generate(&cur, cur_text, sizeof cur_text));
    whsig_secret_t parsed;
    ASSERT_OK(whsig_secret_parse(cur_text, &parsed));
    ASSERT_MEMEQ(parsed.key, cur.key, 32);
    const char *body = "{\"a\":1}";
    char s1[128], s2[128], both[300];
    ASSERT_OK(whsig_sign_v1(&old, "msg_1", 1700000000, body, 7, s1, sizeof s1));
    ASSERT_OK(whsig_sign_v1(&cur, "msg_1", 1700000000, body, 7, s2, sizeof s2));
    snprintf(both, sizeof both, "%s %s", s1, s2);
    /* A receiver that knows only one of the two secrets accepts the header. */
    ASSERT_OK(whsig_verify(both, &old, 1, NULL, "msg_1", "1700000000", 1700000000, 300, body, 7));
    ASSERT_OK(whsig_verify(both, &cur, 1, NULL, "msg_1", "1700000000", 1700000000, 300, body, 7));
    whsig_secret_t other;
    char other_text[80];
    ASSERT_OK(whsig_secret_generate(&other, other_text, sizeof other_text));
    ASSERT_ERR(whsig_verify(both, &other, 1, NULL, "msg_1", "1700000000", 1700000000, 300, body, 7),
               -EBADMSG);
    char sk[80], pk[80], pk2[80], sa[160];
    ASSERT_OK(whsig_ed25519_generate(sk, sizeof sk, pk, sizeof pk));
    ASSERT_OK(whsig_ed25519_public(sk, pk2, sizeof pk2));
    ASSERT_STREQ(pk, pk2);
    ASSERT_OK(whsig_sign_v1a(sk, "msg_2", 1700000000, body, 7, sa, sizeof sa));
    ASSERT_OK(whsig_verify(sa, NULL, 0, pk, "msg_2", "1700000000", 1700000000, 300, body, 7));
    ASSERT_ERR(
        whsig_verify(sa, NULL, 0, pk, "msg_2", "1700000000", 1700000000, 300, "{\"a\":2}", 7),
        -EBADMSG);
    return 0;
}

#include <arpa/inet.h>
#include <netinet/in.h>

#include "push/ssrf.h"

static int ssrf_ok(const ssrf_policy_t *p, const char *url) {
    ssrf_url_t u;
    char why[128];
    return ssrf_check_url(p, url, &u, why, sizeof why) == 0;
}

static int ssrf_v4(const ssrf_policy_t *p, const char *ip) {
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, ip, &sa.sin_addr);
    return ssrf_addr_allowed(p, (struct sockaddr *)&sa);
}

static int ssrf_v6(const ssrf_policy_t *p, const char *ip) {
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, ip, &sa.sin6_addr);
    return ssrf_addr_allowed(p, (struct sockaddr *)&sa);
}

int test_ssrf_urls_and_addresses(void) {
    ssrf_policy_t p = {0};
    ASSERT_TRUE(ssrf_ok(&p, "https://hooks.example.com/huiqi"));
    ASSERT_TRUE(ssrf_ok(&p, "https://hooks.example.com:8443/x?y=1"));
    ASSERT_FALSE(ssrf_ok(&p, "http://hooks.example.com/")); /* https only by default */
    static const char *const bad[] = {"gopher://example.com/",
                                      "file:///etc/passwd",
                                      "dict://example.com:11211/",
                                      "ftp://example.com/",
                                      "https://user:pw@example.com/",
                                      "https://localhost/",
                                      "https://a.localhost/",
                                      "https://metadata.internal/",
                                      "https://intranet/",
                                      "https://127.0.0.1/",
                                      "https://10.1.2.3/",
                                      "https://169.254.169.254/latest/",
                                      "https://2130706433/",
                                      "https://0x7f000001/",
                                      "https://0177.0.0.1/",
                                      "https://127.1/",
                                      "https://[::1]/",
                                      "https://[::ffff:127.0.0.1]/",
                                      "https://[fe80::1]/",
                                      "https://[fc00::1]/",
                                      "https://[64:ff9b::a9fe:a9fe]/",
                                      "https://[2002:7f00:1::]/",
                                      "https://100.64.0.1/",
                                      "https://192.168.1.1/",
                                      "https://172.16.5.4/",
                                      "https://0.0.0.0/",
                                      "https://224.0.0.1/",
                                      "https://exa mple.com/",
                                      "https:///x",
                                      "https://example.com:0/",
                                      "https://example.com:99999/",
                                      "https://ex_ample.com/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (ssrf_ok(&p, bad[i])) {
            UNIT_FAIL_("accepted %s", bad[i]);
        }
    }
    ASSERT_TRUE(ssrf_ok(&p, "https://8.8.8.8/hook"));
    ASSERT_TRUE(ssrf_ok(&p, "https://[2606:4700::1111]/"));
    /* Connect-time checks, including mapped and NAT64 forms. */
    ASSERT_FALSE(ssrf_v4(&p, "127.0.0.1"));
    ASSERT_FALSE(ssrf_v4(&p, "10.0.0.7"));
    ASSERT_FALSE(ssrf_v4(&p, "198.18.0.1"));
    ASSERT_TRUE(ssrf_v4(&p, "93.184.216.34"));
    ASSERT_FALSE(ssrf_v6(&p, "::ffff:10.0.0.1"));
    ASSERT_FALSE(ssrf_v6(&p, "64:ff9b::7f00:1"));
    ASSERT_FALSE(ssrf_v6(&p, "2001:db8::1"));
    ASSERT_TRUE(ssrf_v6(&p, "2606:4700::1111"));
    /* The allow-list admits exactly its networks. */
    ssrf_policy_t t = {.allow_http = true};
    ASSERT_OK(ssrf_allow_parse(&t, "127.0.0.1/32, ::1"));
    ASSERT_TRUE(ssrf_ok(&t, "http://127.0.0.1:9000/hook"));
    ASSERT_TRUE(ssrf_v4(&t, "127.0.0.1"));
    ASSERT_FALSE(ssrf_v4(&t, "127.0.0.2"));
    ASSERT_TRUE(ssrf_v6(&t, "::1"));
    ASSERT_FALSE(ssrf_ok(&t, "http://10.0.0.1/"));
    ASSERT_ERR(ssrf_allow_parse(&t, "not-a-net"), -EINVAL);
    ASSERT_ERR(ssrf_allow_parse(&t, "10.0.0.0/33"), -EINVAL);
    return 0;
}

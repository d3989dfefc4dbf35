/* Unit tests for push/: Standard Webhooks signing and verification. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

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
    ASSERT_OK(whsig_sign_v1(&s, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, strlen(body),
                            sig, sizeof sig));
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
        ASSERT_ERR(whsig_verify(sig, &s, 1, NULL, id, "1614265330", 1614265330, 300, body,
                                strlen(body)),
                   -EBADMSG);
        body[i] ^= 1;
    }
    ASSERT_ERR(whsig_verify(sig, &s, 1, NULL, "msg_p5jXN8AQM9LWM0D4loKWxJel", "1614265330",
                            1614265330, 300, body, strlen(body)),
               -EBADMSG);
    ASSERT_ERR(whsig_verify(sig, &s, 1, NULL, id, "1614265331", 1614265330, 300, body,
                            strlen(body)),
               -EBADMSG);
    /* Outside the tolerance window. */
    ASSERT_ERR(whsig_verify(sig, &s, 1, NULL, id, "1614265330", 1614265330 + 301, 300, body,
                            strlen(body)),
               -ETIME);
    ASSERT_ERR(whsig_verify("v1,garbage", &s, 1, NULL, id, "1614265330", 1614265330, 300, body,
                            strlen(body)),
               -EBADMSG);
    ASSERT_ERR(whsig_secret_parse("whsec_c2hvcnQ=", &s), -EINVAL); /* too short */
    ASSERT_ERR(whsig_secret_parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &s), -EINVAL);
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
    ASSERT_ERR(whsig_verify(both, &other, 1, NULL, "msg_1", "1700000000", 1700000000, 300, body,
                            7),
               -EBADMSG);
    char sk[80], pk[80], pk2[80], sa[160];
    ASSERT_OK(whsig_ed25519_generate(sk, sizeof sk, pk, sizeof pk));
    ASSERT_OK(whsig_ed25519_public(sk, pk2, sizeof pk2));
    ASSERT_STREQ(pk, pk2);
    ASSERT_OK(whsig_sign_v1a(sk, "msg_2", 1700000000, body, 7, sa, sizeof sa));
    ASSERT_OK(whsig_verify(sa, NULL, 0, pk, "msg_2", "1700000000", 1700000000, 300, body, 7));
    ASSERT_ERR(whsig_verify(sa, NULL, 0, pk, "msg_2", "1700000000", 1700000000, 300, "{\"a\":2}",
                            7),
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
    static const char *const bad[] = {
        "gopher://example.com/", "file:///etc/passwd", "dict://example.com:11211/",
        "ftp://example.com/", "https://user:pw@example.com/", "https://localhost/",
        "https://a.localhost/", "https://metadata.internal/", "https://intranet/",
        "https://127.0.0.1/", "https://10.1.2.3/", "https://169.254.169.254/latest/",
        "https://2130706433/", "https://0x7f000001/", "https://0177.0.0.1/", "https://127.1/",
        "https://[::1]/", "https://[::ffff:127.0.0.1]/", "https://[fe80::1]/",
        "https://[fc00::1]/", "https://[64:ff9b::a9fe:a9fe]/", "https://[2002:7f00:1::]/",
        "https://100.64.0.1/", "https://192.168.1.1/", "https://172.16.5.4/",
        "https://0.0.0.0/", "https://224.0.0.1/", "https://exa mple.com/", "https:///x",
        "https://example.com:0/", "https://example.com:99999/", "https://ex_ample.com/"};
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

/* URL and address policy for webhooks; see ssrf.h. */
#include "push/ssrf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int ssrf_fail(char *why, size_t whylen, const char *msg) {
    snprintf(why, whylen, "%s", msg);
    return -EINVAL;
}

int ssrf_cidr_parse(const char *s, ssrf_cidr_t *out) {
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || n >= sizeof buf) {
        return -EINVAL;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    memset(out, 0, sizeof *out);
    unsigned max;
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        return -EINVAL;
    }
    out->bits = max;
    if (slash) {
        char *end = NULL;
        long b = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end != '\0' || b < 0 || (unsigned long)b > max) {
            return -EINVAL;
        }
        out->bits = (unsigned)b;
    }
    return 0;
}

int ssrf_allow_parse(ssrf_policy_t *p, const char *list) {
    char buf[1024];
    if (strlen(list) >= sizeof buf) {
        return -EINVAL;
    }
    strcpy(buf, list);
    char *save = NULL;
    for (char *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        if (p->nallow == SSRF_MAX_ALLOW || ssrf_cidr_parse(t, &p->allow[p->nallow]) != 0) {
            return -EINVAL;
        }
        p->nallow++;
    }
    return 0;
}

static bool ssrf_in(const uint8_t *addr, const uint8_t *net, unsigned bits) {
    unsigned full = bits / 8;
    if (memcmp(addr, net, full) != 0) {
        return false;
    }
    unsigned rest = bits % 8;
    if (rest == 0) {
        return true;
    }
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (addr[full] & mask) == (net[full] & mask);
}

typedef struct deny {
    const char *net;
    unsigned bits;
} deny_t;

static const deny_t ssrf_deny4[] = {
    {"0.0.0.0", 8},      {"10.0.0.0", 8},    {"100.64.0.0", 10},    {"127.0.0.0", 8},
    {"169.254.0.0", 16}, {"172.16.0.0", 12}, {"192.0.0.0", 24},     {"192.0.2.0", 24},
    {"192.168.0.0", 16}, {"198.18.0.0", 15}, {"198.51.100.0", 24},  {"203.0.113.0", 24},
    {"224.0.0.0", 4},    {"240.0.0.0", 4},   {"168.63.129.16", 32},
};

static const deny_t ssrf_deny6[] = {
    {"::", 128},        {"::1", 128},      {"fc00::", 7},  {"fe80::", 10},      {"ff00::", 8},
    {"2001:db8::", 32}, {"64:ff9b::", 96}, {"2002::", 16}, {"64:ff9b:1::", 48}, {"100::", 64},
};

static bool ssrf_allowed_net(const ssrf_policy_t *p, int family, const uint8_t *addr) {
    for (unsigned i = 0; i < p->nallow; i++) {
        if (p->allow[i].family == family && ssrf_in(addr, p->allow[i].addr, p->allow[i].bits)) {
            return true;
        }
    }
    return false;
}

static bool ssrf_v4_public(const uint8_t *a) {
    for (size_t i = 0; i < sizeof ssrf_deny4 / sizeof ssrf_deny4[0]; i++) {
        uint8_t net[4];
        inet_pton(AF_INET, ssrf_deny4[i].net, net);
        if (ssrf_in(a, net, ssrf_deny4[i].bits)) {
            return false;
        }
    }
    return true;
}

static bool ssrf_addr_ok(const ssrf_policy_t *p, int family, const uint8_t *a) {
    if (ssrf_allowed_net(p, family, a)) {
        return true;
    }
    if (family == AF_INET) {
        return ssrf_v4_public(a);
    }
    /* IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible forms: judge the IPv4 inside. */
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a, mapped, 12) == 0) {
        return ssrf_allowed_net(p, AF_INET, a + 12) || ssrf_v4_public(a + 12);
    }
    for (size_t i = 0; i < sizeof ssrf_deny6 / sizeof ssrf_deny6[0]; i++) {
        uint8_t net[16];
        inet_pton(AF_INET6, ssrf_deny6[i].net, net);
        if (ssrf_in(a, net, ssrf_deny6[i].bits)) {
            return false;
        }
    }
    return true;
}

bool ssrf_addr_allowed(const ssrf_policy_t *p, const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        return ssrf_addr_ok(p, AF_INET, (const uint8_t *)&in->sin_addr);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        return ssrf_addr_ok(p, AF_INET6, (const uint8_t *)&in6->sin6_addr);
    }
    return false;
}

/* Whether the host looks like an IPv4 address written some other way than four
 * decimal parts (2130706433, 0x7f000001, 0177.0.0.1, 127.1): resolvers accept
 * those, so they are refused outright. */
static bool ssrf_odd_ipv4(const char *h) {
    bool digits_only = true;
    for (const char *c = h; *c; c++) {
        if (!isxdigit((unsigned char)*c) && *c != '.' && *c != 'x' && *c != 'X') {
            return false;
        }
        if (!isdigit((unsigned char)*c) && *c != '.') {
            digits_only = false;
        }
    }
    if (!digits_only) {
        /* hex digits and dots only: 0x7f.0.0.1, but also "cafe.de"... require a
         * 0x prefix somewhere to call it numeric */
        return strstr(h, "0x") != NULL || strstr(h, "0X") != NULL;
    }
    unsigned char buf[4];
    return inet_pton(AF_INET, h, buf) != 1;
}

int ssrf_check_url(const ssrf_policy_t *p, const char *url, ssrf_url_t *out, char *why,
                   size_t whylen) {
    memset(out, 0, sizeof *out);
    size_t n = strlen(url);
    if (n == 0 || n > SSRF_MAX_URL) {
        return ssrf_fail(why, whylen, "the URL is empty or longer than 2048 characters");
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f || url[i] == '\\') {
            return ssrf_fail(why, whylen, "the URL contains spaces, controls or backslashes");
        }
    }
    const char *rest;
    if (strncasecmp(url, "https://", 8) == 0) {
        strcpy(out->scheme, "https");
        out->port = 443;
        rest = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        if (!p->allow_http) {
            return ssrf_fail(why, whylen, "webhook URLs must use https://");
        }
        strcpy(out->scheme, "http");
        out->port = 80;
        rest = url + 7;
    } else {
        return ssrf_fail(why, whylen, "webhook URLs must be http:// or https://");
    }
    size_t alen = strcspn(rest, "/?#");
    if (memchr(rest, '@', alen)) {
        return ssrf_fail(why, whylen, "webhook URLs may not carry a user name or password");
    }
    char auth[300];
    if (alen == 0 || alen >= sizeof auth) {
        return ssrf_fail(why, whylen, "the URL has no host");
    }
    memcpy(auth, rest, alen);
    auth[alen] = '\0';
    char *host = auth;
    char *port = NULL;
    if (auth[0] == '[') {
        char *close = strchr(auth, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':')) {
            return ssrf_fail(why, whylen, "malformed IPv6 host");
        }
        *close = '\0';
        host = auth + 1;
        port = close[1] == ':' ? close + 2 : NULL;
    } else {
        char *colon = strchr(auth, ':');
        if (colon) {
            *colon = '\0';
            port = colon + 1;
        }
    }
    if (port) {
        char *end = NULL;
        long v = strtol(port, &end, 10);
        if (*port == '\0' || *end != '\0' || v < 1 || v > 65535) {
            return ssrf_fail(why, whylen, "malformed port");
        }
        out->port = (unsigned)v;
    }
    size_t hl = strlen(host);
    if (hl == 0 || hl >= sizeof out->host) {
        return ssrf_fail(why, whylen, "the URL has no host");
    }
    for (size_t i = 0; i < hl; i++) {
        host[i] = (char)tolower((unsigned char)host[i]);
    }
    if (host[hl - 1] == '.') {
        host[--hl] = '\0';
    }
    strcpy(out->host, host);
    uint8_t a[16];
    if (inet_pton(AF_INET, host, a) == 1) {
        out->host_is_ip = true;
        if (!ssrf_addr_ok(p, AF_INET, a)) {
            return ssrf_fail(why, whylen, "the address is private, local or reserved");
        }
        return 0;
    }
    if (inet_pton(AF_INET6, host, a) == 1) {
        out->host_is_ip = true;
        if (!ssrf_addr_ok(p, AF_INET6, a)) {
            return ssrf_fail(why, whylen, "the address is private, local or reserved");
        }
        return 0;
    }
    if (ssrf_odd_ipv4(host)) {
        return ssrf_fail(why, whylen, "numeric host names other than dotted IPv4 are refused");
    }
    if (strchr(host, '.') == NULL) {
        return ssrf_fail(why, whylen, "single-label host names are refused");
    }
    size_t l = strlen(host);
    static const char *const bad_suffix[] = {".localhost", ".internal", ".local", ".lan",
                                             ".home.arpa", ".intranet", ".corp"};
    if (strcmp(host, "localhost") == 0) {
        return ssrf_fail(why, whylen, "localhost is refused");
    }
    for (size_t i = 0; i < sizeof bad_suffix / sizeof bad_suffix[0]; i++) {
        size_t sl = strlen(bad_suffix[i]);
        if (l >= sl && strcmp(host + l - sl, bad_suffix[i]) == 0) {
            return ssrf_fail(why, whylen, "internal host names are refused");
        }
    }
    for (size_t i = 0; i < l; i++) {
        char c = host[i];
        if (!(isalnum((unsigned char)c) || c == '-' || c == '.')) {
            return ssrf_fail(why, whylen, "the host name has characters DNS does not allow");
        }
    }
    return 0;
}

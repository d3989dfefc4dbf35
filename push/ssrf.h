/* Where webhooks may go. User-supplied URLs must not reach the service's own
 * network: a URL must be http(s) without credentials, its host must not be a
 * local or internal name or an obfuscated IP literal, and every address a
 * connection is about to use (checked again at connect time, so a DNS answer that
 * changes cannot smuggle a private address in) must be public, unless an operator
 * allow-listed its network. The deny list is shared/reliability.md section 4.5. */
#ifndef HUIQI_PUSH_SSRF_H
#define HUIQI_PUSH_SSRF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SSRF_MAX_ALLOW 32
#define SSRF_MAX_URL   2048

typedef struct ssrf_cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned bits;
} ssrf_cidr_t;

typedef struct ssrf_policy {
    ssrf_cidr_t allow[SSRF_MAX_ALLOW]; /* networks admitted despite the deny list */
    unsigned nallow;
    bool allow_http; /* plain http:// URLs (https only when false) */
} ssrf_policy_t;

typedef struct ssrf_url {
    char scheme[8];
    char host[256]; /* without brackets for IPv6 */
    unsigned port;
    bool host_is_ip;
} ssrf_url_t;

/* Parses "10.0.0.0/8", "::1/128" or a bare address. Returns 0 or -EINVAL. */
int ssrf_cidr_parse(const char *s, ssrf_cidr_t *out);
/* Parses a comma-separated list into the policy's allow-list. */
int ssrf_allow_parse(ssrf_policy_t *p, const char *list);

/* Checks a webhook URL at registration. Returns 0 (with 'out' filled) or -EINVAL
 * with the reason in 'why'. */
int ssrf_check_url(const ssrf_policy_t *p, const char *url, ssrf_url_t *out, char *why,
                   size_t whylen);
/* Whether a connection may go to this resolved address. */
bool ssrf_addr_allowed(const ssrf_policy_t *p, const struct sockaddr *sa);

#endif

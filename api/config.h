/* huiqid configuration: command-line flags, each with an environment-variable twin
 * (flag wins over environment, environment over default). Unknown flags and bad
 * values are errors: the service never starts on a configuration it misread. */
#ifndef HUIQI_API_CONFIG_H
#define HUIQI_API_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define HUIQI_VERSION "0.1.0"

typedef struct config {
    char listen_host[64];
    int listen_port;
    char redis_host[64]; /* IP literal, or empty with redis_unix */
    int redis_port;
    char redis_unix[256];
    const char *taxonomy_path; /* NULL: the built-in default */
    const char *rules_path;    /* NULL: the built-in default */
    size_t max_body;           /* bytes */
    unsigned max_conns;
    unsigned header_timeout_ms;
    unsigned idle_timeout_ms;
    unsigned redis_timeout_ms;
    unsigned redis_max_inflight;
    int utc_offset_min; /* for "today" (policy windows, ages) */
    int32_t today;      /* a fixed "today" (days since 1970), or DATE_NONE */
    const char *log_level;
    int access_log;
    /* webhooks */
    char webhook_allow[512]; /* CIDRs admitted despite the private-address ban */
    int webhook_allow_http;  /* accept http:// webhook URLs (not only https://) */
    char retry_schedule[256];
    unsigned webhook_timeout_ms;
    unsigned webhook_inflight; /* requests in flight in all */
    /* access */
    char admin_key[128]; /* HUIQI_ADMIN_KEY or --admin-key-file: made an admin key at start */
    double key_rate;     /* requests/s for keys without their own rate; 0: unlimited */
    double enterprise_key_rate;
    int metrics_public; /* GET /metrics without a key */
} config_t;

/* Fills 'c' from defaults, the environment and argv. Returns 0, 1 when help or
 * version was printed (exit 0), or -EINVAL after printing the reason to stderr. */
int config_load(config_t *c, int argc, char **argv);

/* Parses "HOST:PORT" (HOST an IPv4/IPv6 literal, IPv6 in brackets) or, when
 * 'allow_unix', a path starting with '/'. Returns 0 or -EINVAL. */
int config_parse_addr(const char *s, char *host, size_t hostlen, int *port, char *unix_path,
                      size_t unixlen, int allow_unix);

#endif

/* Flags and environment; see config.h. */
#include "api/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/log.h"
#include "tags/date.h"

typedef struct opt {
    const char *flag;
    const char *env;
    const char *arg;
    const char *help;
} opt_t;

static const opt_t config_opts[] = {
    {"--listen", "HUIQI_LISTEN", "HOST:PORT", "address to serve HTTP on (default 127.0.0.1:8080)"},
    {"--redis", "HUIQI_REDIS", "HOST:PORT|PATH",
     "Redis as an IP literal and port, or a unix socket path (default 127.0.0.1:6379)"},
    {"--taxonomy", "HUIQI_TAXONOMY", "FILE", "taxonomy file (default: the built-in one)"},
    {"--rules", "HUIQI_RULES", "FILE", "tagging rules file (default: the built-in one)"},
    {"--max-body", "HUIQI_MAX_BODY", "BYTES", "largest request body (default 1048576)"},
    {"--max-conns", "HUIQI_MAX_CONNS", "N", "concurrent connections (default 10000)"},
    {"--header-timeout", "HUIQI_HEADER_TIMEOUT_MS", "MS",
     "time allowed to send a request's headers (default 10000)"},
    {"--idle-timeout", "HUIQI_IDLE_TIMEOUT_MS", "MS", "keep-alive idle timeout (default 30000)"},
    {"--redis-timeout", "HUIQI_REDIS_TIMEOUT_MS", "MS",
     "deadline for a Redis reply before the connection is reset (default 2000)"},
    {"--redis-max-inflight", "HUIQI_REDIS_MAX_INFLIGHT", "N",
     "Redis commands in flight before requests get 503 (default 10000)"},
    {"--utc-offset", "HUIQI_UTC_OFFSET", "+HH:MM", "zone for 'today' (default +08:00, China)"},
    {"--today", "HUIQI_TODAY", "YYYY-MM-DD",
     "pretend today is this date (what-if runs and tests; default: the real date)"},
    {"--log-level", "HUIQI_LOG_LEVEL", "LEVEL", "debug, info, warn, error or off (default info)"},
    {"--webhook-allow", "HUIQI_WEBHOOK_ALLOW", "CIDR,...",
     "networks webhooks may reach despite the private-address ban (default none)"},
    {"--webhook-allow-http", "HUIQI_WEBHOOK_ALLOW_HTTP", "on|off",
     "accept http:// webhook URLs, not only https:// (default off)"},
    {"--retry-schedule", "HUIQI_RETRY_SCHEDULE", "LIST",
     "up to 16 delays between delivery attempts (default 5s,5m,30m,2h,5h,10h,10h)"},
    {"--webhook-timeout", "HUIQI_WEBHOOK_TIMEOUT_MS", "MS",
     "a delivery must be answered 2xx within this (default 15000)"},
    {"--webhook-inflight", "HUIQI_WEBHOOK_INFLIGHT", "N",
     "webhook requests in flight in all (default 256)"},
    {"--access-log", "HUIQI_ACCESS_LOG", "on|off", "one log line per request (default on)"},
    {"--admin-key-file", "HUIQI_ADMIN_KEY_FILE", "FILE",
     "a file holding an admin key to create at start if missing (or set HUIQI_ADMIN_KEY)"},
    {"--key-rate", "HUIQI_KEY_RATE", "R",
     "requests per second per key without its own rate; 0 = unlimited (default 0)"},
    {"--enterprise-key-rate", "HUIQI_ENTERPRISE_KEY_RATE", "R",
     "the same for enterprise keys (default 5)"},
    {"--metrics-public", "HUIQI_METRICS_PUBLIC", "on|off",
     "serve GET /metrics without a key (default off: admin or operator keys)"},
};

#define NOPTS (sizeof config_opts / sizeof config_opts[0])

static void config_usage(FILE *f) {
    fprintf(f,
            "usage: huiqid [options]\n\nhuiqi %s: policies find enterprises.\n\noptions "
            "(each also read from its environment variable):\n",
            HUIQI_VERSION);
    for (size_t i = 0; i < NOPTS; i++) {
        fprintf(f, "  %-22s %-16s %s [%s]\n", config_opts[i].flag, config_opts[i].arg,
                config_opts[i].help, config_opts[i].env);
    }
    fprintf(f, "  %-22s %-16s %s\n", "--help", "", "this text");
    fprintf(f, "  %-22s %-16s %s\n", "--version", "", "print the version");
}

int config_parse_addr(const char *s, char *host, size_t hostlen, int *port, char *unix_path,
                      size_t unixlen, int allow_unix) {
    if (allow_unix && s[0] == '/') {
        if (strlen(s) >= unixlen || strlen(s) >= 108) {
            return -EINVAL;
        }
        strcpy(unix_path, s);
        host[0] = '\0';
        *port = 0;
        return 0;
    }
    const char *colon;
    const char *h = s;
    size_t hlen;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':') {
            return -EINVAL;
        }
        h = s + 1;
        hlen = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL) {
            return -EINVAL;
        }
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= hostlen) {
        return -EINVAL;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    unsigned char buf[16];
    if (inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1) {
        return -EINVAL; /* names are refused: resolving them would block the loop */
    }
    char *end = NULL;
    long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || p < 1 || p > 65535) {
        return -EINVAL;
    }
    *port = (int)p;
    if (unix_path && unixlen) {
        unix_path[0] = '\0';
    }
    return 0;
}

static int config_uint(const char *v, unsigned long long min, unsigned long long max,
                       unsigned long long *out) {
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end != '\0' || v[0] == '-' || x < min || x > max) {
        return -EINVAL;
    }
    *out = x;
    return 0;
}

static int config_offset(const char *v, int *out) {
    int sign = v[0] == '-' ? -1 : v[0] == '+' ? 1 : 0;
    if (sign == 0 || strlen(v) != 6 || v[3] != ':') {
        return -EINVAL;
    }
    for (int i = 1; i < 6; i++) {
        if (i != 3 && (v[i] < '0' || v[i] > '9')) {
            return -EINVAL;
        }
    }
    int hh = (v[1] - '0') * 10 + (v[2] - '0');
    int mm = (v[4] - '0') * 10 + (v[5] - '0');
    if (hh > 14 || mm > 59) {
        return -EINVAL;
    }
    *out = sign * (hh * 60 + mm);
    return 0;
}

static int config_bool(const char *v, int *out) {
    if (strcmp(v, "on") == 0 || strcmp(v, "1") == 0 || strcmp(v, "true") == 0) {
        *out = 1;
    } else if (strcmp(v, "off") == 0 || strcmp(v, "0") == 0 || strcmp(v, "false") == 0) {
        *out = 0;
    } else {
        return -EINVAL;
    }
    return 0;
}

/* The first line of a key file, without surrounding blanks. */
static int config_key_file(const char *path, char *out, size_t outlen) {
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -EINVAL;
    }
    char line[256] = "";
    char *ok = fgets(line, sizeof line, f);
    fclose(f);
    if (ok == NULL) {
        return -EINVAL;
    }
    char *p = line;
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    size_t n = strcspn(p, " \t\r\n");
    if (n == 0 || n >= outlen) {
        return -EINVAL;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

static int config_apply(config_t *c, size_t i, const char *v) {
    unsigned long long n;
    const char *flag = config_opts[i].flag;
    if (strcmp(flag, "--listen") == 0) {
        return config_parse_addr(v, c->listen_host, sizeof c->listen_host, &c->listen_port, NULL, 0,
                                 0);
    }
    if (strcmp(flag, "--redis") == 0) {
        return config_parse_addr(v, c->redis_host, sizeof c->redis_host, &c->redis_port,
                                 c->redis_unix, sizeof c->redis_unix, 1);
    }
    if (strcmp(flag, "--taxonomy") == 0) {
        c->taxonomy_path = v;
        return 0;
    }
    if (strcmp(flag, "--rules") == 0) {
        c->rules_path = v;
        return 0;
    }
    if (strcmp(flag, "--max-body") == 0) {
        if (config_uint(v, 1024, 1ULL << 30, &n)) {
            return -EINVAL;
        }
        c->max_body = (size_t)n;
        return 0;
    }
    if (strcmp(flag, "--max-conns") == 0) {
        if (config_uint(v, 1, 1000000, &n)) {
            return -EINVAL;
        }
        c->max_conns = (unsigned)n;
        return 0;
    }
    if (strcmp(flag, "--header-timeout") == 0 || strcmp(flag, "--idle-timeout") == 0 ||
        strcmp(flag, "--redis-timeout") == 0) {
        if (config_uint(v, 10, 3600000, &n)) {
            return -EINVAL;
        }
        unsigned *dst = flag[2] == 'h'   ? &c->header_timeout_ms
                        : flag[2] == 'i' ? &c->idle_timeout_ms
                                         : &c->redis_timeout_ms;
        *dst = (unsigned)n;
        return 0;
    }
    if (strcmp(flag, "--redis-max-inflight") == 0) {
        if (config_uint(v, 1, 1000000, &n)) {
            return -EINVAL;
        }
        c->redis_max_inflight = (unsigned)n;
        return 0;
    }
    if (strcmp(flag, "--utc-offset") == 0) {
        return config_offset(v, &c->utc_offset_min);
    }
    if (strcmp(flag, "--today") == 0) {
        return date_parse(v, strlen(v), &c->today);
    }
    if (strcmp(flag, "--log-level") == 0) {
        c->log_level = v;
        return log_set_level_name(v);
    }
    if (strcmp(flag, "--webhook-allow") == 0) {
        if (strlen(v) >= sizeof c->webhook_allow) {
            return -EINVAL;
        }
        strcpy(c->webhook_allow, v);
        return 0;
    }
    if (strcmp(flag, "--webhook-allow-http") == 0) {
        return config_bool(v, &c->webhook_allow_http);
    }
    if (strcmp(flag, "--retry-schedule") == 0) {
        if (strlen(v) >= sizeof c->retry_schedule) {
            return -EINVAL;
        }
        strcpy(c->retry_schedule, v);
        return 0;
    }
    if (strcmp(flag, "--webhook-timeout") == 0) {
        if (config_uint(v, 100, 600000, &n)) {
            return -EINVAL;
        }
        c->webhook_timeout_ms = (unsigned)n;
        return 0;
    }
    if (strcmp(flag, "--webhook-inflight") == 0) {
        if (config_uint(v, 1, 100000, &n)) {
            return -EINVAL;
        }
        c->webhook_inflight = (unsigned)n;
        return 0;
    }
    if (strcmp(flag, "--access-log") == 0) {
        return config_bool(v, &c->access_log);
    }
    if (strcmp(flag, "--admin-key-file") == 0) {
        return config_key_file(v, c->admin_key, sizeof c->admin_key);
    }
    if (strcmp(flag, "--key-rate") == 0 || strcmp(flag, "--enterprise-key-rate") == 0) {
        char *end = NULL;
        double r = strtod(v, &end);
        if (end == v || *end != '\0' || !(r >= 0) || r > 1e6) {
            return -EINVAL;
        }
        *(flag[2] == 'k' ? &c->key_rate : &c->enterprise_key_rate) = r;
        return 0;
    }
    if (strcmp(flag, "--metrics-public") == 0) {
        return config_bool(v, &c->metrics_public);
    }
    return -EINVAL;
}

int config_load(config_t *c, int argc, char **argv) {
    memset(c, 0, sizeof *c);
    strcpy(c->listen_host, "127.0.0.1");
    c->listen_port = 8080;
    strcpy(c->redis_host, "127.0.0.1");
    c->redis_port = 6379;
    c->max_body = 1 << 20;
    c->max_conns = 10000;
    c->header_timeout_ms = 10000;
    c->idle_timeout_ms = 30000;
    c->redis_timeout_ms = 2000;
    c->redis_max_inflight = 10000;
    c->utc_offset_min = 8 * 60;
    c->today = DATE_NONE;
    c->webhook_timeout_ms = 15000;
    c->webhook_inflight = 256;
    c->log_level = "info";
    c->access_log = 1;
    c->enterprise_key_rate = 5;
    const char *ak = getenv("HUIQI_ADMIN_KEY");
    if (ak && *ak) {
        if (strlen(ak) >= sizeof c->admin_key) {
            fprintf(stderr, "huiqid: HUIQI_ADMIN_KEY is not a huiqi key\n");
            return -EINVAL;
        }
        strcpy(c->admin_key, ak);
    }
    for (size_t i = 0; i < NOPTS; i++) {
        const char *v = getenv(config_opts[i].env);
        if (v && *v && config_apply(c, i, v) != 0) {
            fprintf(stderr, "huiqid: bad value '%s' in %s (%s)\n", v, config_opts[i].env,
                    config_opts[i].arg);
            return -EINVAL;
        }
    }
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0) {
            config_usage(stdout);
            return 1;
        }
        if (strcmp(argv[a], "--version") == 0) {
            printf("huiqid %s\n", HUIQI_VERSION);
            return 1;
        }
        const char *name = argv[a];
        const char *val = NULL;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        size_t i;
        for (i = 0; i < NOPTS; i++) {
            if (strlen(config_opts[i].flag) == nlen &&
                strncmp(config_opts[i].flag, name, nlen) == 0) {
                break;
            }
        }
        if (i == NOPTS) {
            fprintf(stderr, "huiqid: unknown option '%s' (see --help)\n", name);
            return -EINVAL;
        }
        if (eq) {
            val = eq + 1;
        } else if (a + 1 < argc) {
            val = argv[++a];
        } else {
            fprintf(stderr, "huiqid: %s needs a value (%s)\n", config_opts[i].flag,
                    config_opts[i].arg);
            return -EINVAL;
        }
        if (config_apply(c, i, val) != 0) {
            fprintf(stderr, "huiqid: bad value '%s' for %s (%s)\n", val, config_opts[i].flag,
                    config_opts[i].arg);
            return -EINVAL;
        }
    }
    return 0;
}

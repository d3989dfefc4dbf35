/* JSON-lines logger; see log.h. The level is the module's one piece of static state
 * (as Redis keeps its verbosity), set once at start. */
#include "api/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static int log_threshold = LOG_LEVEL_INFO;

static const char *const log_names[] = {"debug", "info", "warn", "error", "off"};

int log_set_level_name(const char *name) {
    for (int i = 0; i <= LOG_LEVEL_OFF; i++) {
        if (strcmp(name, log_names[i]) == 0) {
            log_threshold = i;
            return 0;
        }
    }
    return -EINVAL;
}

void log_set_level(int level) {
    log_threshold = level;
}

int log_level(void) {
    return log_threshold;
}

const char *log_escape(const char *s, size_t len, char *out, size_t outlen) {
    size_t o = 0;
    if (outlen == 0) {
        return out;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        size_t n;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            n = 2;
        } else if (c < 0x20 || c == 0x7f) {
            n = (size_t)snprintf(esc, sizeof esc, "\\u%04x", c);
        } else {
            esc[0] = (char)c;
            n = 1;
        }
        if (o + n >= outlen) {
            break;
        }
        memcpy(out + o, esc, n);
        o += n;
    }
    out[o] = '\0';
    return out;
}

void log_write(int level, const char *msg, const char *fields, ...) {
    if (level < log_threshold || level >= LOG_LEVEL_OFF) {
        return;
    }
    char line[4096];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char m[512];
    log_escape(msg, strlen(msg), m, sizeof m);
    int n =
        snprintf(line, sizeof line,
                 "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\",\"level\":\"%s\",\"msg\":\"%s\"",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(tv.tv_usec / 1000), log_names[level], m);
    if (n < 0 || (size_t)n >= sizeof line) {
        return;
    }
    if (fields && *fields) {
        line[n++] = ',';
        va_list ap;
        va_start(ap, fields);
        int k = vsnprintf(line + n, sizeof line - (size_t)n - 2, fields, ap);
        va_end(ap);
        if (k < 0) {
            n--;
        } else if ((size_t)k >= sizeof line - (size_t)n - 2) {
            /* Truncated fields would break the JSON; drop them rather than emit a
             * line no log shipper can parse. */
            n--;
        } else {
            n += k;
        }
    }
    line[n++] = '}';
    line[n++] = '\n';
    fwrite(line, 1, (size_t)n, stderr);
}

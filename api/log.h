/* Structured one-line JSON logs on stderr: {"ts","level","msg",...fields}. Only
 * api/ logs. The level is checked before any argument is formatted. */
#ifndef HUIQI_API_LOG_H
#define HUIQI_API_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR, LOG_LEVEL_OFF };

/* Sets the threshold; returns 0 or -EINVAL for an unknown name
 * (debug, info, warn, error, off). */
int log_set_level_name(const char *name);
void log_set_level(int level);
int log_level(void);

/* Writes one line. 'msg' is plain text; 'fields' is either NULL or a printf format
 * producing the rest of a JSON object's members, e.g. "\"route\":\"%s\"" (the
 * caller escapes what it interpolates, with log_escape). */
void log_write(int level, const char *msg, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));

/* Escapes 'len' bytes of 's' for use inside a JSON string into 'out' (outlen bytes,
 * always NUL-terminated, truncated if needed). Returns out. */
const char *log_escape(const char *s, size_t len, char *out, size_t outlen);

#define LOG_AT(lvl, msg, ...)                     \
    do {                                          \
        if ((lvl) >= log_level()) {               \
            log_write((lvl), (msg), __VA_ARGS__); \
        }                                         \
    } while (0)
#define LOG_DEBUG(msg, ...) LOG_AT(LOG_LEVEL_DEBUG, msg, __VA_ARGS__)
#define LOG_INFO(msg, ...)  LOG_AT(LOG_LEVEL_INFO, msg, __VA_ARGS__)
#define LOG_WARN(msg, ...)  LOG_AT(LOG_LEVEL_WARN, msg, __VA_ARGS__)
#define LOG_ERROR(msg, ...) LOG_AT(LOG_LEVEL_ERROR, msg, __VA_ARGS__)

#endif

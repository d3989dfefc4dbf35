/* Compact JSON writer; see json_out.h. */
#include "api/json_out.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static void json_out_string(sbuf_t *s, const char *p, size_t n) {
    static const char hex[] = "0123456789abcdef";
    sbuf_add(s, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        sbuf_add(s, p + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t len = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            len = 6;
            break;
        }
        sbuf_add(s, esc, len);
    }
    sbuf_add(s, p + run, n - run);
    sbuf_add(s, "\"", 1);
}

void json_out(sbuf_t *s, const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        int first = 1;
        sbuf_add(s, "{", 1);
        json_object_foreach((json_t *)(uintptr_t)v, k, x) {
            if (!first) {
                sbuf_add(s, ",", 1);
            }
            first = 0;
            json_out_string(s, k, strlen(k));
            sbuf_add(s, ":", 1);
            json_out(s, x);
        }
        sbuf_add(s, "}", 1);
        break;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        sbuf_add(s, "[", 1);
        for (size_t i = 0; i < n; i++) {
            if (i) {
                sbuf_add(s, ",", 1);
            }
            json_out(s, json_array_get(v, i));
        }
        sbuf_add(s, "]", 1);
        break;
    }
    case JSON_STRING:
        json_out_string(s, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        sbuf_addf(s, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL: {
        char buf[40];
        int n = snprintf(buf, sizeof buf, "%.17g", json_real_value(v));
        /* Keep it a real for readers that care: 3 -> 3.0. */
        if (n > 0 && strpbrk(buf, ".eEn") == NULL) {
            strcat(buf, ".0");
        }
        sbuf_adds(s, buf);
        break;
    }
    case JSON_TRUE:
        sbuf_add(s, "true", 4);
        break;
    case JSON_FALSE:
        sbuf_add(s, "false", 5);
        break;
    default:
        sbuf_add(s, "null", 4);
        break;
    }
}

char *json_out_str(const json_t *v, size_t *len) {
    sbuf_t s;
    sbuf_init(&s, 1024);
    json_out(&s, v);
    *len = s.len;
    return s.p;
}

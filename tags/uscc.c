/* Unified social credit code check; see uscc.h and shared/domain.md. */
#include "tags/uscc.h"

#include <errno.h>
#include <string.h>

static const char uscc_alphabet[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";
/* 3^(i-1) mod 31 for positions 1..17. */
static const int uscc_weights[17] = {1,  3,  9,  27, 19, 26, 16, 17, 20,
                                     29, 25, 13, 8,  24, 10, 30, 28};

static int uscc_value(char c) {
    if (c == '\0') {
        return -1;
    }
    const char *p = strchr(uscc_alphabet, c);
    return p ? (int)(p - uscc_alphabet) : -1;
}

char uscc_check_char(const char *s) {
    int sum = 0;
    for (int i = 0; i < 17; i++) {
        int v = uscc_value(s[i]);
        if (v < 0) {
            return 0;
        }
        sum += v * uscc_weights[i];
    }
    return uscc_alphabet[(31 - sum % 31) % 31];
}

int uscc_check(const char *s, size_t len, size_t *pos, char *want) {
    if (len != USCC_LEN) {
        return -EINVAL;
    }
    for (size_t i = 0; i < USCC_LEN; i++) {
        if (uscc_value(s[i]) < 0) {
            if (pos) {
                *pos = i;
            }
            return -EILSEQ;
        }
    }
    char c = uscc_check_char(s);
    if (c != s[17]) {
        if (want) {
            *want = c;
        }
        return -EBADMSG;
    }
    return 0;
}

uscc_entity_t uscc_entity(const char *s) {
    if (s[0] != '9') {
        return USCC_ENTITY_OTHER;
    }
    switch (s[1]) {
    case '1':
        return USCC_ENTITY_COMPANY;
    case '2':
        return USCC_ENTITY_INDIVIDUAL;
    case '3':
        return USCC_ENTITY_COOPERATIVE;
    default:
        return USCC_ENTITY_OTHER;
    }
}

/* Unified social credit code check; see uscc.h and shared/domain.md. */
#include "tags/uscc.h"

#include <errno.h>
#include <string.h>

static const char uscc_alphabet[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";
/* 3^(i-1) mod 31 for positions 1..17. */
static const int uscc_weights[17] = {1,  3,  9,  27, 19, 26, 16, 17, 20,
                                     29, 25, 13, 8,  24, 10, 30, 28};

/* A character's value in uscc_alphabet, or -1. A switch on ranges, not strchr:
 * every request with a code in its path checks it (35 lookups a code). */
static int uscc_value(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c < 'A' || c > 'Y' || c == 'I' || c == 'O' || c == 'S' || c == 'V' || c == 'Z') {
        return -1;
    }
    /* A-H are 10-17; past each skipped letter (I, O, S, V) the value is one less. */
    return 10 + (c - 'A') - (c > 'I') - (c > 'O') - (c > 'S') - (c > 'V');
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

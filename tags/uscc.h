/* The unified social credit code (GB 32100-2015): 18 characters over a 31-letter
 * alphabet, the last one a check character. Pure C. */
#ifndef HUIQI_TAGS_USCC_H
#define HUIQI_TAGS_USCC_H

#include <stddef.h>

#define USCC_LEN 18

/* Checks 'len' bytes at 's' (upper case). Returns 0 when valid; -EINVAL when the
 * length is not 18; -EILSEQ when a character is outside the alphabet (then '*pos',
 * when not NULL, is its 0-based index); -EBADMSG when the check character is wrong
 * (then '*want', when not NULL, is the right one). */
int uscc_check(const char *s, size_t len, size_t *pos, char *want);

/* The check character for the first 17 characters at 's', or 0 when one of them is
 * outside the alphabet. */
char uscc_check_char(const char *s);

/* Entity type from positions 1-2 of a valid code. */
typedef enum uscc_entity {
    USCC_ENTITY_OTHER = 0,
    USCC_ENTITY_COMPANY,     /* 91: enterprise registered with market regulation */
    USCC_ENTITY_INDIVIDUAL,  /* 92: individual business */
    USCC_ENTITY_COOPERATIVE, /* 93: farmers' specialised cooperative */
} uscc_entity_t;

uscc_entity_t uscc_entity(const char *s);

#endif

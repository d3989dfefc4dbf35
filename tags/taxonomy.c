/* Taxonomy file parser and lookups; see taxonomy.h. */
#include "tags/taxonomy.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

typedef struct tax_vocab_data {
    tax_tag_t *tags;
    unsigned ntags, captags;
    tax_class_t *classes;
    unsigned nclasses, capclasses;
    int32_t *slots; /* code hash -> bit, open addressing, -1 empty */
    unsigned mask;
} tax_vocab_data_t;

struct taxonomy {
    tax_vocab_data_t v[TAX_NVOCAB];
    char **strings; /* every string owned by the taxonomy */
    size_t nstrings, capstrings;
};

static const char *tax_vocab_names[TAX_NVOCAB] = {"enterprise", "policy"};

const char *taxonomy_vocab_name(tax_vocab_t v) {
    return (unsigned)v < TAX_NVOCAB ? tax_vocab_names[v] : "?";
}

int taxonomy_vocab_parse(const char *s, size_t len) {
    for (int i = 0; i < TAX_NVOCAB; i++) {
        if (strlen(tax_vocab_names[i]) == len && memcmp(tax_vocab_names[i], s, len) == 0) {
            return i;
        }
    }
    return -1;
}

static const char *tax_keep(taxonomy_t *t, const char *p, size_t len) {
    if (t->nstrings == t->capstrings) {
        t->capstrings = t->capstrings ? t->capstrings * 2 : 256;
        t->strings = xreallocarray(t->strings, t->capstrings, sizeof *t->strings);
    }
    char *s = xstrndup(p, len);
    t->strings[t->nstrings++] = s;
    return s;
}

void taxonomy_free(taxonomy_t *t) {
    if (t == NULL) {
        return;
    }
    for (size_t i = 0; i < t->nstrings; i++) {
        free(t->strings[i]);
    }
    free(t->strings);
    for (int v = 0; v < TAX_NVOCAB; v++) {
        free(t->v[v].tags);
        free(t->v[v].classes);
        free(t->v[v].slots);
    }
    free(t);
}

/* ---------------------------------------------------------------------------
 * Validation helpers
 * ------------------------------------------------------------------------- */

static int tax_code_ok(const char *p, size_t len) {
    if (len == 0 || len > TAX_MAX_CODE) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-' || (c >= 'A' && c <= 'Z'))) {
            return 0;
        }
    }
    return 1;
}

/* Strict UTF-8 (no overlongs, no surrogates, no controls). */
static int tax_utf8_ok(const char *p, size_t len) {
    const unsigned char *s = (const unsigned char *)p;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f) {
                return 0;
            }
            i++;
            continue;
        }
        size_t n;
        unsigned cp;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + n >= len) {
            return 0; /* truncated sequence */
        }
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10ffff))) {
            return 0;
        }
        i += n + 1;
    }
    return 1;
}

static uint32_t tax_hash(const char *p, size_t len) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 16777619u;
    }
    return h;
}

static int tax_lookup(const tax_vocab_data_t *d, const char *code, size_t len) {
    if (d->slots == NULL) {
        return -ENOENT;
    }
    unsigned h = tax_hash(code, len) & d->mask;
    while (d->slots[h] >= 0) {
        const tax_tag_t *tag = &d->tags[d->slots[h]];
        if (strlen(tag->code) == len && memcmp(tag->code, code, len) == 0) {
            return d->slots[h];
        }
        h = (h + 1) & d->mask;
    }
    return -ENOENT;
}

static void tax_build_index(tax_vocab_data_t *d) {
    unsigned size = 16;
    while (size < d->ntags * 2 + 2) {
        size *= 2;
    }
    free(d->slots);
    d->slots = xmalloc(size * sizeof *d->slots);
    memset(d->slots, 0xff, size * sizeof *d->slots);
    d->mask = size - 1;
    for (unsigned i = 0; i < d->ntags; i++) {
        unsigned h = tax_hash(d->tags[i].code, strlen(d->tags[i].code)) & d->mask;
        while (d->slots[h] >= 0) {
            h = (h + 1) & d->mask;
        }
        d->slots[h] = (int32_t)i;
    }
}

/* ---------------------------------------------------------------------------
 * Parsing
 * ------------------------------------------------------------------------- */

typedef struct tax_field {
    const char *p;
    size_t len;
} tax_field_t;

static void tax_err(char *err, size_t errlen, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void tax_err(char *err, size_t errlen, unsigned line, const char *fmt, ...) {
    if (errlen == 0) {
        return;
    }
    int n = snprintf(err, errlen, "line %u: ", line);
    if (n < 0 || (size_t)n >= errlen) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

static int tax_find_class(const tax_vocab_data_t *d, const char *p, size_t len) {
    for (unsigned i = 0; i < d->nclasses; i++) {
        if (strlen(d->classes[i].code) == len && memcmp(d->classes[i].code, p, len) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static int tax_parse_line(taxonomy_t *t, const tax_field_t *f, unsigned nf, unsigned line,
                          char *err, size_t errlen) {
    int is_class = f[0].len == 5 && memcmp(f[0].p, "class", 5) == 0;
    int is_tag = f[0].len == 3 && memcmp(f[0].p, "tag", 3) == 0;
    if (!is_class && !is_tag) {
        tax_err(err, errlen, line, "unknown record type (expected 'class' or 'tag')");
        return -EINVAL;
    }
    if ((is_class && nf != 5) || (is_tag && nf != 7)) {
        tax_err(err, errlen, line, "%s record needs %d TAB-separated fields, found %u",
                is_class ? "a class" : "a tag", is_class ? 5 : 7, nf);
        return -EINVAL;
    }
    int v = taxonomy_vocab_parse(f[1].p, f[1].len);
    if (v < 0) {
        tax_err(err, errlen, line, "unknown vocabulary (expected enterprise or policy)");
        return -EINVAL;
    }
    tax_vocab_data_t *d = &t->v[v];
    for (unsigned i = 2; i < nf; i++) {
        if (f[i].len > TAX_MAX_FIELD || !tax_utf8_ok(f[i].p, f[i].len)) {
            tax_err(err, errlen, line, "field %u is too long or not valid UTF-8 text", i + 1);
            return -EINVAL;
        }
    }
    if (!tax_code_ok(f[2].p, f[2].len) || (is_tag && !tax_code_ok(f[3].p, f[3].len))) {
        tax_err(err, errlen, line, "codes are 1-%d characters of [A-Za-z0-9_.-]", TAX_MAX_CODE);
        return -EINVAL;
    }
    if (is_class) {
        if (tax_find_class(d, f[2].p, f[2].len) >= 0) {
            tax_err(err, errlen, line, "class '%.*s' declared twice", (int)f[2].len, f[2].p);
            return -EINVAL;
        }
        if (f[3].len == 0 || f[4].len == 0) {
            tax_err(err, errlen, line, "a class needs a name and an English name");
            return -EINVAL;
        }
        if (d->nclasses == d->capclasses) {
            d->capclasses = d->capclasses ? d->capclasses * 2 : 16;
            d->classes = xreallocarray(d->classes, d->capclasses, sizeof *d->classes);
        }
        tax_class_t *c = &d->classes[d->nclasses++];
        c->code = tax_keep(t, f[2].p, f[2].len);
        c->name = tax_keep(t, f[3].p, f[3].len);
        c->name_en = tax_keep(t, f[4].p, f[4].len);
        return 0;
    }
    int ci = tax_find_class(d, f[2].p, f[2].len);
    if (ci < 0) {
        tax_err(err, errlen, line, "class '%.*s' is not declared before use", (int)f[2].len,
                f[2].p);
        return -EINVAL;
    }
    if (f[4].len == 0 || f[5].len == 0) {
        tax_err(err, errlen, line, "a tag needs a name and an English name");
        return -EINVAL;
    }
    if (d->ntags >= TAX_MAX_TAGS) {
        tax_err(err, errlen, line, "more than %d tags in vocabulary %s", TAX_MAX_TAGS,
                tax_vocab_names[v]);
        return -EINVAL;
    }
    for (unsigned i = 0; i < d->ntags; i++) {
        if (strlen(d->tags[i].code) == f[3].len && memcmp(d->tags[i].code, f[3].p, f[3].len) == 0) {
            tax_err(err, errlen, line, "tag code '%.*s' appears twice", (int)f[3].len, f[3].p);
            return -EINVAL;
        }
    }
    if (d->ntags == d->captags) {
        d->captags = d->captags ? d->captags * 2 : 64;
        d->tags = xreallocarray(d->tags, d->captags, sizeof *d->tags);
    }
    tax_tag_t *tag = &d->tags[d->ntags];
    tag->code = tax_keep(t, f[3].p, f[3].len);
    tag->name = tax_keep(t, f[4].p, f[4].len);
    tag->name_en = tax_keep(t, f[5].p, f[5].len);
    tag->ref = tax_keep(t, f[6].p, f[6].len);
    tag->klass = NULL; /* fixed up once the class array stops moving */
    tag->bit = (uint16_t)d->ntags;
    /* Remember the class by index until parsing ends (the array may grow). */
    tag->klass = (const tax_class_t *)(uintptr_t)(ci + 1);
    d->ntags++;
    return 0;
}

int taxonomy_parse(const char *buf, size_t len, taxonomy_t **out, char *err, size_t errlen) {
    taxonomy_t *t = xcalloc(1, sizeof *t);
    size_t pos = 0;
    unsigned line = 0;
    if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) {
        pos = 3; /* a UTF-8 byte-order mark from a Windows editor */
    }
    while (pos < len) {
        line++;
        size_t end = pos;
        while (end < len && buf[end] != '\n') {
            end++;
        }
        size_t lend = end;
        if (lend > pos && buf[lend - 1] == '\r') {
            lend--;
        }
        if (lend > pos && buf[pos] != '#') {
            tax_field_t f[8] = {{0}};
            unsigned nf = 0;
            size_t s = pos;
            for (size_t i = pos; i <= lend; i++) {
                if (i == lend || buf[i] == '\t') {
                    if (nf < 8) {
                        f[nf].p = buf + s;
                        f[nf].len = i - s;
                    }
                    nf++;
                    s = i + 1;
                }
            }
            if (nf > 8 || tax_parse_line(t, f, nf, line, err, errlen) != 0) {
                if (nf > 8) {
                    tax_err(err, errlen, line, "too many fields (%u)", nf);
                }
                taxonomy_free(t);
                return -EINVAL;
            }
        }
        pos = end + 1;
    }
    for (int v = 0; v < TAX_NVOCAB; v++) {
        tax_vocab_data_t *d = &t->v[v];
        if (d->ntags == 0) {
            tax_err(err, errlen, line, "vocabulary %s has no tags", tax_vocab_names[v]);
            taxonomy_free(t);
            return -EINVAL;
        }
        for (unsigned i = 0; i < d->ntags; i++) {
            uintptr_t ci = (uintptr_t)d->tags[i].klass - 1;
            d->tags[i].klass = &d->classes[ci];
        }
        tax_build_index(d);
    }
    *out = t;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Lookups
 * ------------------------------------------------------------------------- */

unsigned taxonomy_count(const taxonomy_t *t, tax_vocab_t v) {
    return (unsigned)v < TAX_NVOCAB ? t->v[v].ntags : 0;
}

const tax_tag_t *taxonomy_tag(const taxonomy_t *t, tax_vocab_t v, unsigned bit) {
    if ((unsigned)v >= TAX_NVOCAB || bit >= t->v[v].ntags) {
        return NULL;
    }
    return &t->v[v].tags[bit];
}

int taxonomy_find(const taxonomy_t *t, tax_vocab_t v, const char *code, size_t len) {
    if ((unsigned)v >= TAX_NVOCAB) {
        return -ENOENT;
    }
    return tax_lookup(&t->v[v], code, len);
}

int taxonomy_find_ref(const taxonomy_t *t, tax_vocab_t v, const char *klass, const char *ref,
                      size_t reflen) {
    if ((unsigned)v >= TAX_NVOCAB || reflen == 0) {
        return -ENOENT;
    }
    const tax_vocab_data_t *d = &t->v[v];
    for (unsigned i = 0; i < d->ntags; i++) {
        const tax_tag_t *tag = &d->tags[i];
        if (strcmp(tag->klass->code, klass) == 0 && strlen(tag->ref) == reflen &&
            memcmp(tag->ref, ref, reflen) == 0) {
            return (int)i;
        }
    }
    return -ENOENT;
}

/* The cluster level of enterprise tag 'tg', or -1. */
static int taxonomy_cluster_level(const tax_tag_t *tg) {
    const char *k = tg->klass->code;
    if (strcmp(k, "region") == 0) {
        return 0;
    }
    if (strcmp(k, "entity") == 0) {
        return 1;
    }
    if (strcmp(k, "industry") != 0 || tg->ref == NULL || !isupper((unsigned char)tg->ref[0])) {
        return -1;
    }
    if (tg->ref[1] == '\0') {
        return 2;
    }
    for (const char *p = tg->ref + 1; *p; p++) {
        if (!isdigit((unsigned char)*p)) {
            return -1;
        }
    }
    return 3;
}

unsigned taxonomy_cluster_tags(const taxonomy_t *t, uint16_t *tags, uint8_t *levels, unsigned max) {
    unsigned n = 0;
    unsigned per[4] = {0};
    unsigned count = taxonomy_count(t, TAX_ENTERPRISE);
    for (unsigned i = 0; i < count && n < max; i++) {
        int l = taxonomy_cluster_level(taxonomy_tag(t, TAX_ENTERPRISE, i));
        if (l < 0 || per[l] == 255) {
            continue;
        }
        per[l]++;
        tags[n] = (uint16_t)i;
        levels[n] = (uint8_t)l;
        n++;
    }
    return n;
}

unsigned taxonomy_class_count(const taxonomy_t *t, tax_vocab_t v) {
    return (unsigned)v < TAX_NVOCAB ? t->v[v].nclasses : 0;
}

const tax_class_t *taxonomy_class_at(const taxonomy_t *t, tax_vocab_t v, unsigned i) {
    if ((unsigned)v >= TAX_NVOCAB || i >= t->v[v].nclasses) {
        return NULL;
    }
    return &t->v[v].classes[i];
}

int taxonomy_check_map(const taxonomy_t *t, tax_vocab_t v, const char *const *codes, unsigned n,
                       char *err, size_t errlen) {
    const tax_vocab_data_t *d = &t->v[v];
    for (unsigned i = 0; i < n; i++) {
        if (codes[i] == NULL) {
            continue;
        }
        if (i < d->ntags && strcmp(d->tags[i].code, codes[i]) == 0) {
            continue;
        }
        int now = tax_lookup(d, codes[i], strlen(codes[i]));
        if (now >= 0) {
            snprintf(err, errlen,
                     "%s tag '%s' is stored at bit %u but the taxonomy file puts it at bit %d; "
                     "tags may only be appended, never reordered",
                     tax_vocab_names[v], codes[i], i, now);
        } else {
            snprintf(err, errlen,
                     "%s tag '%s' (bit %u) is used by stored data but missing from the "
                     "taxonomy file; tags may only be appended, never removed",
                     tax_vocab_names[v], codes[i], i);
        }
        return -EINVAL;
    }
    return 0;
}

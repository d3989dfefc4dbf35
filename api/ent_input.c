/* Enterprise input validation and the stored document; see ent_input.h. */
#include "api/ent_input.h"

#include "api/json_out.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/xalloc.h"
#include "tags/date.h"
#include "tags/uscc.h"

#define ENT_MAX_NAME   200
#define ENT_MAX_PHONE  32
#define ENT_MAX_URL    2048
#define ENT_MAX_BY     64
#define ENT_MAX_REASON 500
#define ENT_MAX_NUMBER 64

static int ent_fail(ent_err_t *err, int status, const char *code, const char *field,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int ent_fail(ent_err_t *err, int status, const char *code, const char *field,
                    const char *fmt, ...) {
    err->status = status;
    err->code = code;
    snprintf(err->field, sizeof err->field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

void ent_time_format(int64_t ms, char *out, size_t outlen) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

int ent_uscc_parse(const char *s, size_t len, char *out, const char *field, ent_err_t *err) {
    if (len != USCC_LEN) {
        /* Count characters, not bytes: a full-width digit is one character of
         * three bytes, and the length the client sees is the former. */
        size_t chars = 0;
        size_t first_wide = 0;
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)s[i];
            if ((c & 0xc0) != 0x80) {
                chars++;
                if (c >= 0x80 && first_wide == 0) {
                    first_wide = chars;
                }
            }
        }
        if (chars == USCC_LEN && first_wide > 0) {
            return ent_fail(err, 400, "invalid_uscc", field,
                            "character %zu of the credit code is not allowed (only the digits "
                            "0-9 and the letters A-Y except I, O, S, V are used)",
                            first_wide);
        }
        return ent_fail(err, 400, "invalid_uscc", field,
                        "a unified social credit code has 18 characters (got %zu)", chars);
    }
    for (size_t i = 0; i < len; i++) {
        out[i] = (char)toupper((unsigned char)s[i]);
    }
    out[len] = '\0';
    size_t pos = 0;
    char want = 0;
    int rc = uscc_check(out, len, &pos, &want);
    if (rc == -EILSEQ) {
        return ent_fail(err, 400, "invalid_uscc", field,
                        "character %zu of the credit code is not allowed (the letters I, O, S, "
                        "V and Z are never used)",
                        pos + 1);
    }
    if (rc == -EBADMSG) {
        return ent_fail(err, 400, "invalid_uscc", field,
                        "the check character of %s is wrong (it should be '%c'); the code was "
                        "probably mistyped",
                        out, want);
    }
    return 0;
}

static int ent_six_digits(const char *s) {
    for (int i = 0; i < 6; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }
    return 1;
}

/* Whether the 6 bytes at 's' are a GB/T 2260 administrative division code: six
 * digits whose first two name a province-level division (GB/T 2260 numbers them
 * 11-15, 21-23, 31-37, 41-46, 50-54, 61-65, 71, 81, 82). With 'national', also
 * "100000", which GB 32100 writes in positions 3-8 of codes issued by a national
 * registration authority. Finer checks would need the full, yearly-changing code
 * list; a well-formed code outside Wuxi simply derives region.other. */
static int ent_division_ok(const char *s, int national) {
    static const char *const provinces[] = {"11", "12", "13", "14", "15", "21", "22", "23", "31",
                                            "32", "33", "34", "35", "36", "37", "41", "42", "43",
                                            "44", "45", "46", "50", "51", "52", "53", "54", "61",
                                            "62", "63", "64", "65", "71", "81", "82"};
    if (!ent_six_digits(s)) {
        return 0;
    }
    if (national && memcmp(s, "100000", 6) == 0) {
        return 1;
    }
    for (size_t i = 0; i < sizeof provinces / sizeof provinces[0]; i++) {
        if (memcmp(s, provinces[i], 2) == 0) {
            return 1;
        }
    }
    return 0;
}

/* The region rule before ent_division_ok: six digits, not all zero. For stored
 * documents (ent_input_parse_stored). */
static int ent_region_lenient_ok(const char *s) {
    return ent_six_digits(s) && memcmp(s, "000000", 6) != 0;
}

/* An industry given as a section letter alone (A-T, any case), which was accepted
 * before the digits became required: writes it upper-cased to 'out'. For stored
 * documents (ent_input_parse_stored). */
static int ent_section_only(const char *s, size_t len, char *out) {
    if (len != 1) {
        return 0;
    }
    char c = (char)toupper((unsigned char)s[0]);
    if (c < 'A' || c > 'T') {
        return 0;
    }
    out[0] = c;
    out[1] = '\0';
    return 1;
}

/* What domain.md (GB 32100) defines of a credit code beyond its alphabet and
 * check character: under registration authority 9 (market regulation) the entity
 * type in position 2 is 1, 2 or 3, and positions 3-8 are a GB/T 2260 division.
 * Only checked when an enterprise is written, not when one is looked up, so that
 * a record stored before this check stays readable and deletable. */
static int ent_uscc_structure(const char *uscc, const char *field, ent_err_t *err) {
    if (uscc[0] == '9' && (uscc[1] < '1' || uscc[1] > '3')) {
        return ent_fail(err, 400, "invalid_uscc", field,
                        "character 2 of %s must be 1, 2 or 3 (company, individual business, "
                        "farmers' cooperative) after authority 9",
                        uscc);
    }
    if (!ent_division_ok(uscc + 2, 1)) {
        return ent_fail(err, 400, "invalid_uscc", field,
                        "characters 3-8 of %s must be a GB/T 2260 administrative division code "
                        "(six digits starting with a province code, such as 320214)",
                        uscc);
    }
    return 0;
}

/* A string of 1..max characters (jansson guarantees UTF-8). */
static int ent_str(const json_t *v, size_t max, const char *field, ent_err_t *err) {
    if (!json_is_string(v)) {
        return ent_fail(err, 400, "invalid_type", field, "%s must be a string", field);
    }
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    size_t chars = 0;
    for (size_t i = 0; i < n; i++) {
        chars += ((unsigned char)s[i] & 0xc0) != 0x80;
        if ((unsigned char)s[i] < 0x20) {
            return ent_fail(err, 400, "invalid_value", field, "%s contains a control character",
                            field);
        }
    }
    if (chars == 0 || chars > max) {
        return ent_fail(err, 400, "invalid_value", field, "%s must have 1 to %zu characters", field,
                        max);
    }
    return 0;
}

static int ent_date(const json_t *v, const char *field, int32_t *out, ent_err_t *err) {
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (!json_is_string(v) || n != 10 || s[4] != '-' || s[7] != '-' ||
        strspn(s, "0123456789") != 4 || strspn(s + 5, "0123456789") != 2 ||
        strspn(s + 8, "0123456789") != 2) {
        return ent_fail(err, 400, "invalid_date", field, "%s must be a date written YYYY-MM-DD",
                        field);
    }
    /* Well formed: say which rule it breaks (date_parse's year range or the
     * calendar) rather than repeating the format. */
    if (memcmp(s, "1900", 4) < 0 || memcmp(s, "2999", 4) > 0) {
        return ent_fail(err, 400, "invalid_date", field,
                        "%s must be a date from 1900-01-01 to 2999-12-31", field);
    }
    if (date_parse(s, n, out) != 0) {
        return ent_fail(err, 400, "invalid_date", field, "%s is not a calendar date (%.10s)", field,
                        s);
    }
    return 0;
}

static int ent_http_url(const char *s) {
    size_t n = strlen(s);
    if (n > ENT_MAX_URL) {
        return 0;
    }
    const char *rest = NULL;
    if (strncmp(s, "https://", 8) == 0) {
        rest = s + 8;
    } else if (strncmp(s, "http://", 7) == 0) {
        rest = s + 7;
    } else {
        return 0;
    }
    if (*rest == '\0' || *rest == '/') {
        return 0;
    }
    for (const char *p = s; *p; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
            return 0;
        }
    }
    return 1;
}

/* Whether an enterprise tag is the service's to derive and never an explicit
 * tag: the classes the rules fill from the attributes, where an explicit tag
 * would give an enterprise a second region, industry, size, band or age next to
 * the derived one (docs/tagging.md), and the entity types the credit code
 * decides. The other entity types (branch, partnership, ...) cannot be read from
 * the code and stay explicit. An operator override may still force any tag. */
static int ent_derived_only(const tax_tag_t *t) {
    static const char *const classes[] = {"region", "industry", "size", "scale", "age"};
    static const char *const tags[] = {"entity.company", "entity.individual", "entity.cooperative"};
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
        if (strcmp(t->klass->code, classes[i]) == 0) {
            return 1;
        }
    }
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++) {
        if (strcmp(t->code, tags[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Whether the rules newer than stored data apply to field 'key' (see
 * ent_input_parse_stored). */
static int ent_strict(const ent_input_t *in, const char *key) {
    return !in->stored || (in->patch && json_object_get(in->patch, key) != NULL);
}

/* Reads a list of tag codes of 'vocab' into 'bits' (sorted, unique). Enterprise
 * tags the service derives are refused (ent_derived_only) unless 'lenient'. */
static int ent_tag_list(const app_t *app, json_t *v, tax_vocab_t vocab, unsigned max,
                        const char *field, int lenient, uint16_t *bits, unsigned *n,
                        ent_err_t *err) {
    if (!json_is_array(v)) {
        return ent_fail(err, 400, "invalid_type", field, "%s must be a list of tag codes", field);
    }
    if (json_array_size(v) > max) {
        return ent_fail(err, 400, "too_many", field, "%s may hold at most %u tags", field, max);
    }
    *n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        char f[64];
        snprintf(f, sizeof f, "%s[%zu]", field, i);
        if (!json_is_string(e)) {
            return ent_fail(err, 400, "invalid_type", f, "%s must be a tag code string", f);
        }
        int bit = taxonomy_find(app->tax, vocab, json_string_value(e), json_string_length(e));
        if (bit < 0) {
            return ent_fail(err, 400, "unknown_tag", f, "unknown %s tag '%.64s'",
                            taxonomy_vocab_name(vocab), json_string_value(e));
        }
        const tax_tag_t *t = taxonomy_tag(app->tax, vocab, (unsigned)bit);
        if (vocab == TAX_ENTERPRISE && !lenient && ent_derived_only(t)) {
            return ent_fail(err, 400, "invalid_value", f,
                            "%s: %s is derived by the service (class %s) and cannot be given "
                            "as an explicit tag; send the attribute it comes from, or an "
                            "operator override",
                            f, t->code, t->klass->code);
        }
        unsigned k = *n;
        while (k > 0 && bits[k - 1] > bit) {
            k--;
        }
        if (k > 0 && bits[k - 1] == bit) {
            continue;
        }
        memmove(bits + k + 1, bits + k, (*n - k) * sizeof *bits);
        bits[k] = (uint16_t)bit;
        (*n)++;
    }
    return 0;
}

static json_t *ent_codes(const app_t *app, tax_vocab_t vocab, const uint16_t *bits, unsigned n) {
    json_t *a = json_array();
    for (unsigned i = 0; i < n; i++) {
        json_array_append_new(a, json_string(taxonomy_tag(app->tax, vocab, bits[i])->code));
    }
    return a;
}

/* ---------------------------------------------------------------------------
 * Canonical form. The stored document is compared byte for byte to tell "the same
 * enterprise again" (store/scripts.c ENT_PUT), so equal input must give equal
 * bytes whatever the order of keys and of the order-insensitive lists:
 *   - object keys are sorted (bytewise), nested objects too (ent_canon);
 *   - explicit tags and interests: taxonomy order (bit order), duplicates dropped;
 *   - qualifications: by tag in taxonomy order, then issued, expires (a missing
 *     date first) and number (missing first, then bytewise); exact repeats
 *     dropped ("qual.srdi" and {"code":"qual.srdi"} are the same item);
 *   - overrides: by tag in taxonomy order; an exact repeat is dropped and two
 *     different overrides of one tag are refused, since which one wins would
 *     depend on their order;
 *   - an empty optional list or object is the same as leaving it out.
 * ------------------------------------------------------------------------- */

/* -1, 0, 1 for two optional strings, a missing one first. */
static int ent_cmp_opt_str(const json_t *a, const json_t *b) {
    if (a == NULL || b == NULL) {
        return (a != NULL) - (b != NULL);
    }
    int c = strcmp(json_string_value(a), json_string_value(b));
    return (c > 0) - (c < 0);
}

static int ent_cmp_i32(int32_t a, int32_t b) {
    return (a > b) - (a < b);
}

typedef struct ent_qual_item {
    rules_qual_t q;
    json_t *item; /* borrowed from the list being rebuilt */
} ent_qual_item_t;

static int ent_qual_cmp(const void *pa, const void *pb) {
    const ent_qual_item_t *a = pa, *b = pb;
    int c = ent_cmp_i32(a->q.bit, b->q.bit);
    if (c == 0) {
        c = ent_cmp_i32(a->q.issued, b->q.issued);
    }
    if (c == 0) {
        c = ent_cmp_i32(a->q.expires, b->q.expires);
    }
    if (c == 0) {
        c = ent_cmp_opt_str(json_object_get(a->item, "number"), json_object_get(b->item, "number"));
    }
    return c;
}

/* Sorts the qualifications (in->quals and the list 'out' in step) and drops
 * exact repeats. */
static void ent_quals_canon(ent_input_t *in, json_t *out) {
    unsigned n = in->rin.nquals;
    if (n == 0) {
        return;
    }
    ent_qual_item_t items[RULES_MAX_QUALS];
    for (unsigned i = 0; i < n; i++) {
        items[i].q = in->quals[i];
        items[i].item = json_incref(json_array_get(out, i));
    }
    qsort(items, n, sizeof items[0], ent_qual_cmp);
    json_array_clear(out);
    unsigned k = 0;
    for (unsigned i = 0; i < n; i++) {
        if (k > 0 && ent_qual_cmp(&items[k - 1], &items[i]) == 0) {
            json_decref(items[i].item);
            continue;
        }
        items[k++] = items[i];
    }
    for (unsigned i = 0; i < k; i++) {
        in->quals[i] = items[i].q;
        json_array_append_new(out, items[i].item);
    }
    in->rin.nquals = k;
}

typedef struct ent_override_item {
    rules_override_t o;
    size_t index; /* in the list as sent, for the error message */
    json_t *item; /* borrowed from the list being rebuilt */
} ent_override_item_t;

static int ent_override_cmp(const void *pa, const void *pb) {
    const ent_override_item_t *a = pa, *b = pb;
    int c = ent_cmp_i32(a->o.bit, b->o.bit);
    /* Ties broken by position so that the error names the later one. */
    return c ? c : (a->index > b->index) - (a->index < b->index);
}

/* Sorts the overrides by tag (in->overrides and 'out' in step); drops exact
 * repeats and refuses two different overrides of one tag. */
static int ent_overrides_canon(const app_t *app, ent_input_t *in, json_t *out, ent_err_t *err) {
    unsigned n = in->rin.noverrides;
    if (n == 0) {
        return 0;
    }
    ent_override_item_t items[RULES_MAX_OVERRIDES];
    for (unsigned i = 0; i < n; i++) {
        items[i].o = in->overrides[i];
        items[i].index = i;
        items[i].item = json_array_get(out, i);
    }
    qsort(items, n, sizeof items[0], ent_override_cmp);
    unsigned k = 0;
    for (unsigned i = 0; i < n; i++) {
        if (k > 0 && items[k - 1].o.bit == items[i].o.bit) {
            if (json_equal(items[k - 1].item, items[i].item)) {
                continue;
            }
            if (!ent_strict(in, "overrides")) {
                items[k++] = items[i]; /* stored before the rule: kept, the later wins */
                continue;
            }
            char f[64];
            snprintf(f, sizeof f, "overrides[%zu]", items[i].index);
            return ent_fail(err, 400, "invalid_value", f,
                            "%s and overrides[%zu] both set %s; give one override per tag", f,
                            items[k - 1].index,
                            taxonomy_tag(app->tax, TAX_ENTERPRISE, items[i].o.bit)->code);
        }
        items[k++] = items[i];
    }
    json_t *sorted = json_array();
    for (unsigned i = 0; i < k; i++) {
        in->overrides[i] = items[i].o;
        json_array_append(sorted, items[i].item);
    }
    json_array_clear(out);
    json_array_extend(out, sorted);
    json_decref(sorted);
    in->rin.noverrides = k;
    return 0;
}

typedef struct ent_kv {
    char *key;
    json_t *value;
} ent_kv_t;

static int ent_kv_cmp(const void *pa, const void *pb) {
    const ent_kv_t *a = pa, *b = pb;
    return strcmp(a->key, b->key);
}

/* Puts the keys of every object in 'v' (recursively) in sorted order. jansson
 * keeps insertion order and json_out writes it, so the object is rebuilt in
 * place: references to it stay valid. tag_sources is left as built: it follows
 * the order of tags, and each entry's keys are set in one order (ent_build_doc),
 * so it is the same for the same input already; rebuilding it was two thirds of
 * this function's cost, 10% of a registration's instructions (gate_http). */
static void ent_canon(json_t *v) {
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            ent_canon(x);
        }
        return;
    }
    if (!json_is_object(v) || json_object_size(v) == 0) {
        return;
    }
    size_t n = json_object_size(v);
    ent_kv_t *kv = xcalloc(n, sizeof *kv);
    size_t i = 0;
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        if (strcmp(k, "tag_sources") != 0) {
            ent_canon(x);
        }
        kv[i].key = xstrdup(k);
        kv[i].value = json_incref(x);
        i++;
    }
    qsort(kv, n, sizeof *kv, ent_kv_cmp);
    json_object_clear(v);
    for (i = 0; i < n; i++) {
        json_object_set_new(v, kv[i].key, kv[i].value);
        free(kv[i].key);
    }
    free(kv);
}

static int ent_quals(const app_t *app, json_t *v, ent_input_t *in, ent_err_t *err) {
    if (!json_is_array(v)) {
        return ent_fail(err, 400, "invalid_type", "qualifications",
                        "qualifications must be a list");
    }
    if (json_array_size(v) > RULES_MAX_QUALS) {
        return ent_fail(err, 400, "too_many", "qualifications", "at most %d qualifications",
                        RULES_MAX_QUALS);
    }
    json_t *out = json_array();
    json_object_set_new(in->attrs, "qualifications", out);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        char f[64];
        snprintf(f, sizeof f, "qualifications[%zu]", i);
        rules_qual_t *q = &in->quals[in->rin.nquals];
        q->issued = q->expires = DATE_NONE;
        json_t *code = e;
        json_t *item = json_object();
        json_array_append_new(out, item);
        if (json_is_object(e)) {
            const char *k;
            json_t *x;
            code = json_object_get(e, "code");
            json_object_foreach(e, k, x) {
                char ff[96];
                snprintf(ff, sizeof ff, "%s.%s", f, k);
                if (strcmp(k, "code") == 0 || strcmp(k, "valid") == 0) {
                    continue;
                }
                if (strcmp(k, "issued") == 0 || strcmp(k, "expires") == 0) {
                    if (json_is_null(x)) {
                        continue;
                    }
                    int32_t *d = k[0] == 'i' ? &q->issued : &q->expires;
                    if (ent_date(x, ff, d, err)) {
                        return -1;
                    }
                    json_object_set(item, k, x);
                } else if (strcmp(k, "number") == 0) {
                    if (ent_str(x, ENT_MAX_NUMBER, ff, err)) {
                        return -1;
                    }
                    json_object_set(item, k, x);
                } else {
                    return ent_fail(err, 400, "unknown_field", ff,
                                    "unknown field '%.40s' in a qualification (use code, "
                                    "issued, expires, number)",
                                    k);
                }
            }
            if (q->issued != DATE_NONE && q->expires != DATE_NONE && q->expires < q->issued) {
                return ent_fail(err, 400, "invalid_date", f, "%s expires before it was issued", f);
            }
        }
        if (!json_is_string(code)) {
            return ent_fail(err, 400, "invalid_type", f,
                            "%s must be a qualification tag code or an object with a code", f);
        }
        if (code != e) {
            snprintf(f, sizeof f, "qualifications[%zu].code", i);
        }
        int bit = taxonomy_find(app->tax, TAX_ENTERPRISE, json_string_value(code),
                                json_string_length(code));
        if (bit < 0) {
            return ent_fail(err, 400, "unknown_tag", f, "unknown enterprise tag '%.64s'",
                            json_string_value(code));
        }
        /* A certificate stands for a qualification; anything else here would put
         * an arbitrary tag (a region, a negative listing) into the profile. */
        const tax_tag_t *t = taxonomy_tag(app->tax, TAX_ENTERPRISE, (unsigned)bit);
        if (strcmp(t->klass->code, "qualification") != 0 && ent_strict(in, "qualifications")) {
            return ent_fail(err, 400, "invalid_value", f,
                            "%s must be a qualification tag code (qual.*); %s is of class %s", f,
                            t->code, t->klass->code);
        }
        q->bit = (uint16_t)bit;
        json_object_set(item, "code", code);
        in->rin.nquals++;
    }
    ent_quals_canon(in, out);
    if (in->rin.nquals == 0) {
        json_object_del(in->attrs, "qualifications"); /* [] is the same as absent */
    }
    return 0;
}

static int ent_contact(const ssrf_policy_t *ssrf, json_t *v, json_t *attrs, ent_err_t *err) {
    if (!json_is_object(v)) {
        return ent_fail(err, 400, "invalid_type", "contact", "contact must be an object");
    }
    json_t *out = json_object();
    json_object_set_new(attrs, "contact", out);
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        if (json_is_null(x)) {
            continue;
        }
        if (strcmp(k, "phone") == 0) {
            if (ent_str(x, ENT_MAX_PHONE, "contact.phone", err)) {
                return -1;
            }
            for (const char *p = json_string_value(x); *p; p++) {
                if (!isdigit((unsigned char)*p) && !strchr("+-() ", *p)) {
                    return ent_fail(err, 400, "invalid_value", "contact.phone",
                                    "contact.phone may hold digits, spaces and + - ( ) only");
                }
            }
        } else if (strcmp(k, "webhook") == 0) {
            ssrf_url_t u;
            char why[160];
            if (!json_is_string(x) || !ent_http_url(json_string_value(x))) {
                return ent_fail(err, 400, "invalid_url", "contact.webhook",
                                "contact.webhook must be an http:// or https:// URL");
            }
            if (ssrf_check_url(ssrf, json_string_value(x), &u, why, sizeof why) != 0) {
                return ent_fail(err, 400, "invalid_url", "contact.webhook", "contact.webhook: %s",
                                why);
            }
        } else if (strcmp(k, "email") == 0 || strcmp(k, "person") == 0) {
            if (ent_str(x, 200, k[0] == 'e' ? "contact.email" : "contact.person", err)) {
                return -1;
            }
        } else {
            return ent_fail(err, 400, "unknown_field", "contact",
                            "unknown contact field '%.40s' (use phone, webhook, email, person)", k);
        }
        json_object_set(out, k, x);
    }
    if (json_object_size(out) == 0) {
        json_object_del(attrs, "contact"); /* {} is the same as absent */
    }
    return 0;
}

static int ent_overrides(const app_t *app, json_t *v, ent_input_t *in, ent_err_t *err) {
    if (!json_is_array(v)) {
        return ent_fail(err, 400, "invalid_type", "overrides", "overrides must be a list");
    }
    if (json_array_size(v) > RULES_MAX_OVERRIDES) {
        return ent_fail(err, 400, "too_many", "overrides", "at most %d overrides",
                        RULES_MAX_OVERRIDES);
    }
    json_t *out = json_array();
    json_object_set_new(in->attrs, "overrides", out);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        char f[64];
        snprintf(f, sizeof f, "overrides[%zu]", i);
        json_t *tag = json_object_get(e, "tag");
        json_t *val = json_object_get(e, "value");
        if (!json_is_object(e) || !json_is_string(tag) || !json_is_boolean(val)) {
            return ent_fail(err, 400, "invalid_type", f,
                            "%s must be an object with a tag code and a boolean value", f);
        }
        int bit = taxonomy_find(app->tax, TAX_ENTERPRISE, json_string_value(tag),
                                json_string_length(tag));
        if (bit < 0) {
            return ent_fail(err, 400, "unknown_tag", f, "unknown enterprise tag '%.64s'",
                            json_string_value(tag));
        }
        json_t *item = json_object();
        json_array_append_new(out, item);
        const char *k;
        json_t *x;
        json_object_foreach(e, k, x) {
            char ff[96];
            snprintf(ff, sizeof ff, "%s.%s", f, k);
            if (strcmp(k, "by") == 0 || strcmp(k, "reason") == 0) {
                if (ent_str(x, k[0] == 'b' ? ENT_MAX_BY : ENT_MAX_REASON, ff, err)) {
                    return -1;
                }
            } else if (strcmp(k, "at") == 0) {
                if (!json_is_string(x)) {
                    return ent_fail(err, 400, "invalid_type", ff, "%s must be a string", ff);
                }
            } else if (strcmp(k, "tag") != 0 && strcmp(k, "value") != 0) {
                return ent_fail(err, 400, "unknown_field", ff,
                                "unknown field '%.40s' in an override (use tag, value, by, reason)",
                                k);
            }
            json_object_set(item, k, x);
        }
        in->overrides[in->rin.noverrides].bit = (uint16_t)bit;
        in->overrides[in->rin.noverrides].value = json_is_true(val);
        in->rin.noverrides++;
    }
    if (ent_overrides_canon(app, in, out, err)) {
        return -1;
    }
    if (in->rin.noverrides == 0) {
        json_object_del(in->attrs, "overrides"); /* [] is the same as absent */
    }
    return 0;
}

int ent_overrides_signed(const json_t *attrs, ent_err_t *err) {
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(attrs, "overrides"), i, e) {
        if (json_object_get(e, "by") == NULL) {
            char f[64];
            snprintf(f, sizeof f, "overrides[%zu].by", i);
            return ent_fail(err, 400, "missing_field", f,
                            "%s is required: an override records who set it", f);
        }
    }
    return 0;
}

static int ent_number(const json_t *v, double max, int integer, const char *field, double *out,
                      ent_err_t *err) {
    if (!json_is_number(v) || (integer && !json_is_integer(v))) {
        return ent_fail(err, 400, "invalid_type", field, "%s must be a%s number", field,
                        integer ? " whole" : "");
    }
    double d = json_number_value(v);
    if (!isfinite(d) || d < 0 || d > max) {
        return ent_fail(err, 400, "invalid_value", field, "%s must be from 0 to %.0f", field, max);
    }
    *out = d;
    return 0;
}

/* Fields the service writes itself: accepted back (a GET body can be PUT again)
 * and ignored. */
static int ent_output_field(const char *k) {
    static const char *const out[] = {"version", "created_at", "updated_at",  "tag_sources",
                                      "entity",  "retag_on",   "tags_derived"};
    for (size_t i = 0; i < sizeof out / sizeof out[0]; i++) {
        if (strcmp(k, out[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

static int ent_field(const app_t *app, const char *k, json_t *v, ent_input_t *in, ent_err_t *err) {
    if (strcmp(k, "name") == 0) {
        if (ent_str(v, ENT_MAX_NAME, "name", err)) {
            return -1;
        }
        json_object_set(in->attrs, "name", v);
    } else if (strcmp(k, "region") == 0) {
        const char *s = json_string_value(v);
        if (!json_is_string(v) || json_string_length(v) != 6 ||
            (ent_strict(in, "region") ? !ent_division_ok(s, 0) : !ent_region_lenient_ok(s))) {
            return ent_fail(err, 400, "invalid_region", "region",
                            "region must be a 6-digit GB/T 2260 code starting with a province "
                            "code, such as \"320214\"");
        }
        memcpy(in->region, s, 7);
        in->rin.region = in->region;
        json_object_set(in->attrs, "region", v);
    } else if (strcmp(k, "industry") == 0) {
        if (!json_is_string(v) ||
            (rules_industry_normalize(json_string_value(v), json_string_length(v), in->industry) &&
             (ent_strict(in, "industry") ||
              !ent_section_only(json_string_value(v), json_string_length(v), in->industry)))) {
            return ent_fail(err, 400, "invalid_industry", "industry",
                            "industry must be a GB/T 4754-2017 code: a section letter and 2 to 4 "
                            "digits, such as \"C3976\" or \"I65\"");
        }
        in->rin.industry = in->industry;
        json_object_set_new(in->attrs, "industry", json_string(in->industry));
    } else if (strcmp(k, "employees") == 0) {
        if (ent_number(v, 10000000, 1, "employees", &in->rin.employees, err)) {
            return -1;
        }
        in->rin.has_employees = 1;
        json_object_set(in->attrs, "employees", v);
    } else if (strcmp(k, "revenue_10k") == 0) {
        if (ent_number(v, 1e9, 0, "revenue_10k", &in->rin.revenue_10k, err)) {
            return -1;
        }
        in->rin.has_revenue = 1;
        /* 8000 and 8000.0 are the same revenue: keep whole numbers as integers
         * (exact below 2^53) so that both give the same document. */
        double r = in->rin.revenue_10k;
        if (r == floor(r) && r < 9007199254740992.0) {
            json_object_set_new(in->attrs, "revenue_10k", json_integer((json_int_t)r));
        } else {
            json_object_set(in->attrs, "revenue_10k", v);
        }
    } else if (strcmp(k, "founded") == 0) {
        if (ent_date(v, "founded", &in->rin.founded, err)) {
            return -1;
        }
        if (in->rin.founded > app_today(app)) {
            return ent_fail(err, 400, "invalid_date", "founded", "founded is in the future");
        }
        json_object_set(in->attrs, "founded", v);
    } else if (strcmp(k, "qualifications") == 0) {
        return ent_quals(app, v, in, err);
    } else if (strcmp(k, "interests") == 0) {
        if (ent_tag_list(app, v, TAX_POLICY, STORE_MAX_INTERESTS, "interests", 0, in->interests,
                         &in->ninterests, err)) {
            return -1;
        }
        if (in->ninterests > 0) { /* [] is the same as absent */
            json_object_set_new(in->attrs, "interests",
                                ent_codes(app, TAX_POLICY, in->interests, in->ninterests));
        }
    } else if (strcmp(k, "contact") == 0) {
        return ent_contact(&app->ssrf, v, in->attrs, err);
    } else if (strcmp(k, "overrides") == 0) {
        return ent_overrides(app, v, in, err);
    } else {
        return ent_fail(err, 400, "unknown_field", k, "unknown field '%.40s'", k);
    }
    return 0;
}

static int ent_parse(const app_t *app, json_t *body, const char *path_uscc, int stored,
                     const json_t *patch, ent_input_t *in, ent_err_t *err) {
    memset(in, 0, sizeof *in);
    in->stored = stored;
    in->patch = patch;
    in->attrs = json_object();
    in->rin.founded = DATE_NONE;
    in->rin.quals = in->quals;
    in->rin.explicit_tags = in->explicit_tags;
    in->rin.overrides = in->overrides;
    json_t *u = json_object_get(body, "uscc");
    if (u && !json_is_null(u)) {
        if (!json_is_string(u)) {
            return ent_fail(err, 400, "invalid_uscc", "uscc", "uscc must be a string");
        }
        if (ent_uscc_parse(json_string_value(u), json_string_length(u), in->uscc, "uscc", err)) {
            return -1;
        }
        if (path_uscc && strcmp(path_uscc, in->uscc) != 0) {
            return ent_fail(err, 400, "uscc_mismatch", "uscc",
                            "the body's uscc %s differs from the one in the URL %s", in->uscc,
                            path_uscc);
        }
    } else if (path_uscc) {
        memcpy(in->uscc, path_uscc, 19);
    } else {
        return ent_fail(err, 400, "missing_field", "uscc", "uscc is required");
    }
    if (ent_strict(in, "uscc") && ent_uscc_structure(in->uscc, "uscc", err)) {
        return -1;
    }
    memcpy(in->rin.uscc, in->uscc, 19);
    json_object_set_new(in->attrs, "uscc", json_string(in->uscc));
    /* A body read back from GET carries explicit_tags (the explicit list) and tags
     * (the full derived list); explicit_tags then wins. */
    json_t *explicit = json_object_get(body, "explicit_tags");
    const char *explicit_field = "explicit_tags";
    if (explicit == NULL || json_is_null(explicit)) {
        explicit = json_object_get(body, "tags");
        explicit_field = "tags";
    }
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v) {
        if (strcmp(k, "uscc") == 0 || strcmp(k, "tags") == 0 || strcmp(k, "explicit_tags") == 0 ||
            ent_output_field(k)) {
            continue;
        }
        if (json_is_null(v)) {
            if (strcmp(k, "name") == 0) {
                return ent_fail(err, 400, "missing_field", "name", "name is required");
            }
            continue; /* null means "not given" for optional fields */
        }
        if (ent_field(app, k, v, in, err)) {
            return -1;
        }
    }
    if (json_object_get(in->attrs, "name") == NULL) {
        return ent_fail(err, 400, "missing_field", "name", "name is required");
    }
    unsigned nexp = 0;
    if (explicit && !json_is_null(explicit) &&
        ent_tag_list(app, explicit, TAX_ENTERPRISE, RULES_MAX_EXPLICIT, explicit_field,
                     !ent_strict(in, "tags") && !ent_strict(in, "explicit_tags"), in->explicit_tags,
                     &nexp, err)) {
        return -1;
    }
    in->rin.nexplicit = nexp;
    json_object_set_new(in->attrs, "explicit_tags",
                        ent_codes(app, TAX_ENTERPRISE, in->explicit_tags, nexp));
    return 0;
}

int ent_input_parse(const app_t *app, json_t *body, const char *path_uscc, ent_input_t *in,
                    ent_err_t *err) {
    return ent_parse(app, body, path_uscc, 0, NULL, in, err);
}

int ent_input_parse_stored(const app_t *app, json_t *body, const char *path_uscc,
                           const json_t *patch, ent_input_t *in, ent_err_t *err) {
    return ent_parse(app, body, path_uscc, 1, patch, in, err);
}

void ent_input_free(ent_input_t *in) {
    json_decref(in->attrs);
    in->attrs = NULL;
}

json_t *ent_build_doc(const app_t *app, ent_input_t *in, const rules_out_t *out) {
    /* The document is the attribute object itself, extended: no copy. */
    json_t *doc = json_incref(in->attrs);
    json_t *tags = json_array();
    json_t *src = json_object();
    for (unsigned i = 0; i < out->nsrc; i++) {
        const rules_src_t *s = &out->src[i];
        const char *code = taxonomy_tag(app->tax, TAX_ENTERPRISE, s->bit)->code;
        json_array_append_new(tags, json_string(code));
        json_t *o = json_object();
        if (s->kind == RULES_SRC_RULE) {
            json_object_set_new(o, "source", json_string("rule"));
            json_object_set_new(o, "rule", json_string(rules_rule_name(app->rules, s->rule)));
        } else if (s->kind == RULES_SRC_EXPLICIT) {
            json_object_set_new(o, "source", json_string("explicit"));
        } else {
            json_object_set_new(o, "source", json_string("override"));
            /* Find who set it. */
            json_t *ovs = json_object_get(in->attrs, "overrides");
            size_t k;
            json_t *ov;
            json_array_foreach(ovs, k, ov) {
                if (strcmp(json_string_value(json_object_get(ov, "tag")), code) == 0) {
                    json_t *by = json_object_get(ov, "by");
                    json_t *why = json_object_get(ov, "reason");
                    if (by) {
                        json_object_set(o, "by", by);
                    }
                    if (why) {
                        json_object_set(o, "reason", why);
                    }
                }
            }
        }
        json_object_set_new(src, code, o);
    }
    json_object_set_new(doc, "tags", tags);
    json_object_set_new(doc, "tag_sources", src);
    static const char *const entities[] = {"other", "company", "individual", "cooperative"};
    json_object_set_new(doc, "entity", json_string(entities[uscc_entity(in->uscc)]));
    if (out->next_change != DATE_NONE) {
        char d[11];
        date_format(out->next_change, d);
        json_object_set_new(doc, "retag_on", json_string(d));
    }
    ent_canon(doc);
    return doc;
}

json_t *ent_doc_to_input(json_t *doc) {
    json_t *in = json_deep_copy(doc);
    json_t *exp = json_object_get(in, "explicit_tags");
    if (exp) {
        json_object_set(in, "tags", exp);
        json_object_del(in, "explicit_tags");
    } else {
        json_object_del(in, "tags");
    }
    static const char *const drop[] = {"tag_sources", "entity",  "updated_at",
                                       "created_at",  "version", "retag_on"};
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++) {
        json_object_del(in, drop[i]);
    }
    return in;
}

void ent_merge_patch(json_t *target, json_t *patch) {
    const char *k;
    json_t *v;
    json_object_foreach(patch, k, v) {
        if (json_is_null(v)) {
            json_object_del(target, k);
        } else if (json_is_object(v)) {
            json_t *t = json_object_get(target, k);
            if (!json_is_object(t)) {
                t = json_object();
                json_object_set_new(target, k, t);
            }
            ent_merge_patch(t, v);
        } else {
            json_object_set(target, k, v);
        }
    }
}

const char *ent_input_webhook(const ent_input_t *in) {
    return json_string_value(json_object_get(json_object_get(in->attrs, "contact"), "webhook"));
}

json_t *ent_card_object(const json_t *doc, const char *uscc) {
    json_t *o = json_object();
    json_object_set_new(o, "uscc", json_stringn(uscc, 18));
    if (json_is_object(doc)) {
        static const char *const keep[] = {"name", "region", "contact"};
        for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
            json_t *x = json_object_get(doc, keep[i]);
            if (x) {
                json_object_set(o, keep[i], x);
            }
        }
    }
    return o;
}

char *ent_card(const json_t *doc, const char *uscc, size_t *len) {
    json_t *o = ent_card_object(doc, uscc);
    char *text = json_out_str(o, len);
    json_decref(o);
    return text;
}

int ent_input_store(app_t *app, const ent_input_t *in, const json_t *doc, const rules_out_t *out,
                    int mode, int64_t expect_ver, store_ent_cb cb, void *arg) {
    size_t text_len;
    char *text = json_out_str(doc, &text_len);
    size_t card_len;
    char *card = ent_card(doc, in->uscc, &card_len);
    store_ent_in_t w = {
        .uscc = in->uscc,
        .doc = text,
        .doc_len = text_len,
        .row = out->row,
        .interests = in->interests,
        .ninterests = in->ninterests,
        .mode = mode,
        .expect_ver = expect_ver,
        .retag_on = out->next_change,
        .webhook = ent_input_webhook(in),
        .card = card,
        .card_len = card_len,
    };
    /* The store copies what it keeps into its command before returning. */
    int rc = store_ent_put(app->store, &w, cb, arg);
    free(text);
    free(card);
    return rc;
}

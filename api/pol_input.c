/* Policy validation and cached views; see pol_input.h. */
#include "api/pol_input.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sbuf.h"
#include "common/xalloc.h"
#include "tags/date.h"

#define POL_MAX_TITLE   200
#define POL_MAX_ISSUER  100
#define POL_MAX_SUMMARY 5000
#define POL_MAX_URL     2048
/* POL_MAX_URL as text, for the message that states the limit. */
#define POL_STR_(x) #x
#define POL_STR(x)  POL_STR_(x)

static int pol_fail(ent_err_t *err, int status, const char *code, const char *field,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int pol_fail(ent_err_t *err, int status, const char *code, const char *field,
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

const char *pol_status_name(int status) {
    switch (status) {
    case STORE_POL_PUBLISHED:
        return "published";
    case STORE_POL_WITHDRAWN:
        return "withdrawn";
    default:
        return "draft";
    }
}

static int pol_text(json_t *v, size_t max, const char *field, ent_err_t *err) {
    if (!json_is_string(v)) {
        return pol_fail(err, 400, "invalid_type", field, "%s must be a string", field);
    }
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    size_t chars = 0;
    for (size_t i = 0; i < n; i++) {
        chars += ((unsigned char)s[i] & 0xc0) != 0x80;
        if ((unsigned char)s[i] < 0x20 && s[i] != '\n' && s[i] != '\t') {
            return pol_fail(err, 400, "invalid_value", field, "%s contains a control character",
                            field);
        }
    }
    if (chars == 0 || chars > max) {
        return pol_fail(err, 400, "invalid_value", field, "%s must have 1 to %zu characters", field,
                        max);
    }
    return 0;
}

static int pol_codes(const app_t *app, json_t *v, tax_vocab_t vocab, unsigned max,
                     const char *field, uint16_t *bits, uint16_t *n, ent_err_t *err) {
    if (!json_is_array(v)) {
        return pol_fail(err, 400, "invalid_type", field, "%s must be a list of tag codes", field);
    }
    if (json_array_size(v) > max) {
        return pol_fail(err, 400, "too_many", field, "%s may hold at most %u tags", field, max);
    }
    *n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        char f[64];
        snprintf(f, sizeof f, "%s[%zu]", field, i);
        int bit = json_is_string(e)
                      ? taxonomy_find(app->tax, vocab, json_string_value(e), json_string_length(e))
                      : -1;
        if (!json_is_string(e)) {
            return pol_fail(err, 400, "invalid_type", f, "%s must be a tag code string", f);
        }
        if (bit < 0) {
            return pol_fail(err, 400, "unknown_tag", f, "unknown %s tag '%.64s'",
                            taxonomy_vocab_name(vocab), json_string_value(e));
        }
        bits[(*n)++] = (uint16_t)bit;
    }
    return 0;
}

int pol_rule_parse(const app_t *app, json_t *v, const char *field, rule_t *out, ent_err_t *err) {
    memset(out, 0, sizeof *out);
    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (!json_is_object(v)) {
        return pol_fail(err, 400, "invalid_type", field,
                        "%s must be an object with all / any / none lists", field);
    }
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        char f[64];
        snprintf(f, sizeof f, "%s.%s", field, k);
        uint16_t *bits;
        uint16_t *n;
        if (strcmp(k, "all") == 0) {
            bits = out->all;
            n = &out->nall;
        } else if (strcmp(k, "any") == 0) {
            bits = out->any;
            n = &out->nany;
        } else if (strcmp(k, "none") == 0) {
            bits = out->none;
            n = &out->nnone;
        } else {
            return pol_fail(err, 400, "unknown_field", f,
                            "unknown rule part '%.40s' (use all, any, none)", k);
        }
        if (json_is_null(x)) {
            continue;
        }
        if (pol_codes(app, x, TAX_ENTERPRISE, RULE_MAX_PART, f, bits, n, err)) {
            return -1;
        }
    }
    rule_normalize(out, taxonomy_count(app->tax, TAX_ENTERPRISE));
    return 0;
}

static json_t *pol_rule_json(const app_t *app, const rule_t *r) {
    json_t *o = json_object();
    const uint16_t *parts[3] = {r->all, r->any, r->none};
    const uint16_t lens[3] = {r->nall, r->nany, r->nnone};
    static const char *const names[3] = {"all", "any", "none"};
    for (int p = 0; p < 3; p++) {
        json_t *a = json_array();
        for (uint16_t i = 0; i < lens[p]; i++) {
            json_array_append_new(
                a, json_string(taxonomy_tag(app->tax, TAX_ENTERPRISE, parts[p][i])->code));
        }
        json_object_set_new(o, names[p], a);
    }
    return o;
}

static int pol_output_field(const char *k) {
    static const char *const out[] = {"id",         "status",     "version",
                                      "created_at", "updated_at", "published_at"};
    for (size_t i = 0; i < sizeof out / sizeof out[0]; i++) {
        if (strcmp(k, out[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Why 's' is not an acceptable policy link, or NULL when it is. Each refusal
 * says what to fix: the limit when too long, a host when there is none. */
static const char *pol_url_check(const char *s) {
    if (s == NULL) {
        return "url must be a string: an http:// or https:// address";
    }
    if (strlen(s) > POL_MAX_URL) {
        return "url is too long: at most " POL_STR(POL_MAX_URL) " bytes";
    }
    size_t skip = strncmp(s, "https://", 8) == 0 ? 8 : strncmp(s, "http://", 7) == 0 ? 7 : 0;
    if (skip == 0 || strpbrk(s, " \t\r\n") != NULL) {
        return "url must be an http:// or https:// address";
    }
    /* The host is what the authority holds after any user info and before any
     * port: "http://", "http:///x", "http://:80" and "http://u@" have none. */
    const char *a = s + skip;
    size_t alen = strcspn(a, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < alen; i++) {
        if (a[i] == '@') {
            at = a + i;
        }
    }
    const char *host = at ? at + 1 : a;
    size_t hlen = (size_t)(a + alen - host);
    if (hlen > 0 && host[0] != '[') {
        const char *colon = memchr(host, ':', hlen);
        if (colon) {
            hlen = (size_t)(colon - host);
        }
    }
    if (hlen == 0) {
        return "url must name a host: http://host/... or https://host/...";
    }
    return NULL;
}

int pol_level_valid(const char *s) {
    static const char *const levels[] = {"national", "provincial", "city", "district"};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        if (strcmp(s, levels[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

int pol_input_parse(const app_t *app, json_t *body, pol_input_t *in, ent_err_t *err) {
    memset(in, 0, sizeof *in);
    in->doc = json_object();
    in->opens = in->closes = DATE_NONE;
    in->mode = STORE_MODE_APPLY;
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v) {
        if (pol_output_field(k) || json_is_null(v)) {
            continue;
        }
        if (strcmp(k, "title") == 0 || strcmp(k, "issuer") == 0 || strcmp(k, "summary") == 0) {
            size_t max = k[0] == 't'   ? POL_MAX_TITLE
                         : k[0] == 'i' ? POL_MAX_ISSUER
                                       : POL_MAX_SUMMARY;
            if (pol_text(v, max, k, err)) {
                return -1;
            }
            json_object_set(in->doc, k, v);
        } else if (strcmp(k, "level") == 0) {
            const char *s = json_string_value(v);
            if (!s || !pol_level_valid(s)) {
                return pol_fail(err, 400, "invalid_value", "level",
                                "level must be national, provincial, city or district");
            }
            json_object_set(in->doc, k, v);
        } else if (strcmp(k, "mode") == 0) {
            const char *s = json_string_value(v);
            if (!s || (strcmp(s, "apply") && strcmp(s, "auto"))) {
                return pol_fail(err, 400, "invalid_value", "mode",
                                "mode must be apply (enterprises apply) or auto (granted "
                                "without applying)");
            }
            in->mode = strcmp(s, "auto") == 0 ? STORE_MODE_AUTO : STORE_MODE_APPLY;
            json_object_set(in->doc, k, v);
        } else if (strcmp(k, "url") == 0) {
            const char *why = pol_url_check(json_string_value(v));
            if (why) {
                return pol_fail(err, 400, "invalid_url", "url", "%s", why);
            }
            json_object_set(in->doc, k, v);
        } else if (strcmp(k, "opens") == 0 || strcmp(k, "closes") == 0) {
            int32_t *d = k[0] == 'o' ? &in->opens : &in->closes;
            if (!json_is_string(v) ||
                date_parse(json_string_value(v), json_string_length(v), d) != 0) {
                return pol_fail(err, 400, "invalid_date", k, "%s must be a date written YYYY-MM-DD",
                                k);
            }
            json_object_set(in->doc, k, v);
        } else if (strcmp(k, "tags") == 0) {
            if (pol_codes(app, v, TAX_POLICY, STORE_MAX_PTAGS, "tags", in->ptags, &in->nptags,
                          err)) {
                return -1;
            }
        } else if (strcmp(k, "rule") == 0) {
            if (pol_rule_parse(app, v, "rule", &in->rule, err)) {
                return -1;
            }
        } else {
            return pol_fail(err, 400, "unknown_field", k, "unknown field '%.40s'", k);
        }
    }
    if (json_object_get(in->doc, "title") == NULL) {
        return pol_fail(err, 400, "missing_field", "title", "title is required");
    }
    if (in->opens != DATE_NONE && in->closes != DATE_NONE && in->closes < in->opens) {
        return pol_fail(err, 400, "invalid_date", "closes", "closes is before opens");
    }
    /* Canonical lists: policy tags sorted and unique, the rule normalised. */
    uint16_t sorted[STORE_MAX_PTAGS] = {0};
    uint16_t n = 0;
    for (uint16_t i = 0; i < in->nptags; i++) {
        uint16_t b = in->ptags[i];
        uint16_t j = n;
        while (j > 0 && sorted[j - 1] > b) {
            j--;
        }
        if (j > 0 && sorted[j - 1] == b) {
            continue;
        }
        memmove(sorted + j + 1, sorted + j, (size_t)(n - j) * sizeof *sorted);
        sorted[j] = b;
        n++;
    }
    memcpy(in->ptags, sorted, n * sizeof *sorted);
    in->nptags = n;
    json_t *tags = json_array();
    for (uint16_t i = 0; i < n; i++) {
        json_array_append_new(tags,
                              json_string(taxonomy_tag(app->tax, TAX_POLICY, sorted[i])->code));
    }
    json_object_set_new(in->doc, "tags", tags);
    json_object_set_new(in->doc, "rule", pol_rule_json(app, &in->rule));
    if (json_object_get(in->doc, "mode") == NULL) {
        json_object_set_new(in->doc, "mode", json_string("apply"));
    }
    return 0;
}

void pol_input_free(pol_input_t *in) {
    json_decref(in->doc);
    in->doc = NULL;
}

/* ---------------------------------------------------------------------------
 * View cache: id -> parsed document and package prefix, per version
 * ------------------------------------------------------------------------- */

typedef struct pol_view {
    uint32_t id;
    uint64_t ver;
    json_t *doc;
    char *prefix; /* the package entry up to the "any" reasons */
    size_t prefix_len;
    char *mid; /* between the "any" reasons and the interests */
    size_t mid_len;
} pol_view_t;

struct pol_cache {
    pol_view_t *v;
    uint32_t mask;
    uint32_t n;
};

static struct pol_cache *pol_cache_get(app_t *app) {
    if (app->pcache == NULL) {
        struct pol_cache *c = xcalloc(1, sizeof *c);
        c->mask = 255;
        c->v = xcalloc(c->mask + 1, sizeof *c->v);
        app->pcache = c;
    }
    return app->pcache;
}

static void pol_view_clear(pol_view_t *v) {
    json_decref(v->doc);
    free(v->prefix);
    free(v->mid);
    memset(v, 0, sizeof *v);
}

void pol_cache_free(app_t *app) {
    struct pol_cache *c = app->pcache;
    if (c == NULL) {
        return;
    }
    for (uint32_t i = 0; i <= c->mask; i++) {
        pol_view_clear(&c->v[i]);
    }
    free(c->v);
    free(c);
    app->pcache = NULL;
}

static pol_view_t *pol_view_slot(app_t *app, uint32_t id) {
    struct pol_cache *c = pol_cache_get(app);
    if ((c->n + 1) * 2 > c->mask + 1) {
        /* Grow and drop everything: entries are cheap to rebuild, and this also
         * forgets deleted policies. */
        for (uint32_t i = 0; i <= c->mask; i++) {
            pol_view_clear(&c->v[i]);
        }
        free(c->v);
        c->mask = c->mask * 2 + 1;
        c->v = xcalloc(c->mask + 1, sizeof *c->v);
        c->n = 0;
    }
    uint32_t h = (id * 2654435761u) & c->mask;
    while (c->v[h].id != 0 && c->v[h].id != id) {
        h = (h + 1) & c->mask;
    }
    if (c->v[h].id == 0) {
        c->v[h].id = id;
        c->n++;
    }
    return &c->v[h];
}

/* A JSON array of enterprise tag codes (which need no escaping: [A-Za-z0-9_.-]). */
static void pol_codes_json(sbuf_t *b, const app_t *app, const uint16_t *bits, unsigned n) {
    sbuf_add(b, "[", 1);
    for (unsigned i = 0; i < n; i++) {
        if (i) {
            sbuf_add(b, ",", 1);
        }
        sbuf_add(b, "\"", 1);
        sbuf_adds(b, taxonomy_tag(app->tax, TAX_ENTERPRISE, bits[i])->code);
        sbuf_add(b, "\"", 1);
    }
    sbuf_add(b, "]", 1);
}

static pol_view_t *pol_view(app_t *app, const store_policy_t *p) {
    pol_view_t *v = pol_view_slot(app, p->id);
    if (v->doc && v->ver == p->ver) {
        return v;
    }
    json_decref(v->doc);
    free(v->prefix);
    free(v->mid);
    v->prefix = v->mid = NULL;
    v->ver = p->ver;
    v->doc = json_loadb(p->doc, p->doc_len, 0, NULL);
    if (!json_is_object(v->doc)) {
        json_decref(v->doc);
        v->doc = json_object();
    }
    /* The package entry: a fixed selection of fields, rendered once per version. */
    json_t *e = json_object();
    json_object_set_new(e, "id", json_integer(p->id));
    static const char *const keep[] = {"title",   "issuer", "level", "mode",  "url",
                                       "summary", "tags",   "opens", "closes"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        json_t *x = json_object_get(v->doc, keep[i]);
        if (x) {
            json_object_set(e, keep[i], x);
        }
    }
    char *text = json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(e);
    /* What does not depend on the enterprise is rendered here too: the "all"
     * and "none" reasons are the rule's own tags. */
    sbuf_t b;
    sbuf_init(&b, strlen(text) + 256);
    sbuf_add(&b, text, strlen(text) - 1); /* without the closing brace */
    free(text);
    sbuf_adds(&b, ",\"why\":{\"all\":");
    pol_codes_json(&b, app, p->rule.all, p->rule.nall);
    sbuf_adds(&b, ",\"any\":");
    v->prefix_len = b.len;
    v->prefix = b.p;
    sbuf_init(&b, 128);
    sbuf_adds(&b, ",\"none\":");
    pol_codes_json(&b, app, p->rule.none, p->rule.nnone);
    sbuf_adds(&b, ",\"interests\":");
    v->mid_len = b.len;
    v->mid = b.p;
    return v;
}

json_t *pol_doc(app_t *app, const store_policy_t *p) {
    return pol_view(app, p)->doc;
}

const char *pol_package_prefix(app_t *app, const store_policy_t *p, size_t *len, const char **mid,
                               size_t *mid_len) {
    pol_view_t *v = pol_view(app, p);
    *len = v->prefix_len;
    *mid = v->mid;
    *mid_len = v->mid_len;
    return v->prefix;
}

json_t *pol_render(app_t *app, const store_policy_t *p) {
    json_t *o = json_deep_copy(pol_doc(app, p));
    json_object_set_new(o, "id", json_integer(p->id));
    json_object_set_new(o, "status", json_string(pol_status_name(p->status)));
    json_object_set_new(o, "version", json_integer((json_int_t)p->ver));
    char ts[40];
    ent_time_format(p->created_ms, ts, sizeof ts);
    json_object_set_new(o, "created_at", json_string(ts));
    ent_time_format(p->updated_ms, ts, sizeof ts);
    json_object_set_new(o, "updated_at", json_string(ts));
    if (p->published_ms > 0) {
        ent_time_format(p->published_ms, ts, sizeof ts);
        json_object_set_new(o, "published_at", json_string(ts));
    } else {
        json_object_set_new(o, "published_at", json_null());
    }
    return o;
}

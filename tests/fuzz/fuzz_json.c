/* libFuzzer harness for the request-body decoders and validators, with no loop,
 * store or server: raw bytes decoded as the API decodes a body
 * (api_decode_object: jansson, duplicate keys refused, its depth cap), under the
 * server's body cap, then validated as one of the bodies the handlers take
 * (enterprise create / replace / merge patch, policy, audience rule, and the
 * single-field parsers of webhook and key bodies). Every outcome must be a value
 * or a well-formed error, accepted input must survive its own output (the stored
 * document decodes back to itself and is accepted again unchanged), and
 * everything is freed (LeakSanitizer). Built by `make fuzz-build`; see
 * tests/fuzz/README.md. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/app.h"
#include "api/auth.h"
#include "api/config.h"
#include "api/ent_input.h"
#include "api/json_out.h"
#include "api/pol_input.h"
#include "push/sign.h"
#include "push/ssrf.h"
#include "tags/date.h"
#include "tags/rules.h"
#include "tags/taxonomy.h"
#include "tags/uscc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

extern const char huiqi_default_taxonomy[];
extern const char huiqi_default_taxonomy_end[];
extern const char huiqi_default_rules[];
extern const char huiqi_default_rules_end[];

/* The same fixed "today" as fuzz_api.c, so dates judged against it (a founding
 * date in the future, validity windows) do not drift between runs. */
#define FJ_TODAY "2026-03-02"
/* The credit code in the URL of PUT and PATCH /v1/enterprises/{uscc}. */
#define FJ_PATH_USCC "91320214MA1X7K2Q3L"
/* The stored enterprise a PATCH body is merged into: every optional part set. */
#define FJ_PATCH_BASE                                                                           \
    "{\"uscc\":\"" FJ_PATH_USCC "\",\"name\":\"n\",\"region\":\"320214\","                      \
    "\"industry\":\"C3973\",\"employees\":150,\"revenue_10k\":80.5,\"founded\":\"2019-05-20\"," \
    "\"qualifications\":[{\"code\":\"qual.hightech\",\"issued\":\"2024-11-06\","                \
    "\"number\":\"GR1\"},\"qual.srdi\"],\"interests\":[\"fin.loan_discount\"],"                 \
    "\"contact\":{\"phone\":\"0510-1\",\"webhook\":\"https://hooks.example.com/e\"},"           \
    "\"tags\":[\"sig.iot\"],\"overrides\":[{\"tag\":\"sig.ai\",\"value\":true,\"by\":\"b\"}]}"

/* What the first byte of an input selects; the rest is the body. */
enum {
    FJ_ENT_CREATE, /* POST /v1/enterprises (and each line of an import) */
    FJ_ENT_PUT,    /* PUT /v1/enterprises/{uscc} */
    FJ_ENT_PATCH,  /* PATCH /v1/enterprises/{uscc}: merged into FJ_PATCH_BASE */
    FJ_POLICY,     /* POST and PUT /v1/policies */
    FJ_AUDIENCE,   /* POST /v1/audience: its "rule" */
    FJ_FIELDS,     /* webhook and key bodies: the parsers of their fields */
    FJ_NTARGETS
};

static config_t fj_cfg;
static app_t fj_app;
static json_t *fj_patch_base; /* FJ_PATCH_BASE as stored: ent_build_doc's output */
static rules_out_t fj_rules_out;
static int fj_started;

static void fj_fail(const char *what) {
    fprintf(stderr, "fuzz_json: %s\n", what);
    abort();
}

/* A refusal must be answerable: a 4xx status, a code, a message, and a field
 * name that fits its buffer. */
static void fj_check_err(const ent_err_t *e) {
    if (e->status < 400 || e->status > 499 || e->code == NULL || e->code[0] == '\0' ||
        e->msg[0] == '\0' || memchr(e->field, '\0', sizeof e->field) == NULL) {
        fj_fail("a refusal without a 4xx status, a code or a message");
    }
}

/* Writes 'v' as the API answers it (json_out) and decodes it back: it must be
 * the same value, or the writer broke an escape. */
static void fj_check_out(const json_t *v) {
    size_t len;
    char *text = json_out_str(v, &len);
    json_t *back = NULL;
    json_error_t err;
    if (api_decode_object(text, len, &back, &err) != 0 || !json_equal(back, v)) {
        fprintf(stderr, "fuzz_json: %.*s\n", (int)(len < 2000 ? len : 2000), text);
        fj_fail("an answer that does not decode back to itself");
    }
    json_decref(back);
    free(text);
}

/* Validates an enterprise body and builds its stored document (a new reference),
 * or returns NULL after checking the refusal. */
static json_t *fj_ent_doc(json_t *body, const char *path_uscc) {
    ent_input_t in;
    ent_err_t e;
    if (ent_input_parse(&fj_app, body, path_uscc, &in, &e) != 0) {
        fj_check_err(&e);
        ent_input_free(&in);
        return NULL;
    }
    rules_derive(fj_app.rules, &in.rin, app_today(&fj_app), &fj_rules_out);
    json_t *doc = ent_build_doc(&fj_app, &in, &fj_rules_out);
    ent_input_free(&in);
    return doc;
}

/* An accepted enterprise: its document and card are written correctly, and
 * the document turned back into input (what a client gets and PUTs again) is
 * accepted and gives the same document. */
static void fj_enterprise(json_t *body, const char *path_uscc) {
    json_t *doc = fj_ent_doc(body, path_uscc);
    if (doc == NULL) {
        return;
    }
    fj_check_out(doc);
    json_t *card = ent_card_object(doc, json_string_value(json_object_get(doc, "uscc")));
    fj_check_out(card);
    json_decref(card);
    json_t *again = ent_doc_to_input(doc);
    json_t *doc2 = fj_ent_doc(again, NULL);
    if (doc2 == NULL || !json_equal(doc, doc2)) {
        fj_fail("an accepted enterprise whose own document is refused or changes");
    }
    json_decref(doc2);
    json_decref(again);
    json_decref(doc);
}

/* PATCH as h_enterprises.c does it: stored document -> input, merge, validate. */
static void fj_ent_patch(json_t *patch) {
    json_t *body = ent_doc_to_input(fj_patch_base);
    ent_merge_patch(body, patch);
    fj_enterprise(body, FJ_PATH_USCC);
    json_decref(body);
}

static void fj_policy(json_t *body) {
    pol_input_t in;
    ent_err_t e;
    if (pol_input_parse(&fj_app, body, &in, &e) != 0) {
        fj_check_err(&e);
        pol_input_free(&in);
        return;
    }
    fj_check_out(in.doc);
    /* The canonical document is itself a valid body that canonicalises to itself. */
    pol_input_t again;
    if (pol_input_parse(&fj_app, in.doc, &again, &e) != 0 || !json_equal(in.doc, again.doc)) {
        fj_fail("an accepted policy whose own document is refused or changes");
    }
    pol_input_free(&again);
    pol_input_free(&in);
}

/* rule_normalize's promise: each part sorted, no duplicates, every bit a tag. */
static void fj_check_part(const uint16_t *bits, unsigned n, unsigned ntags) {
    for (unsigned i = 0; i < n; i++) {
        if (bits[i] >= ntags || (i > 0 && bits[i] <= bits[i - 1])) {
            fj_fail("an accepted rule that is not normalised");
        }
    }
}

static void fj_audience(json_t *body) {
    rule_t r;
    ent_err_t e;
    if (pol_rule_parse(&fj_app, json_object_get(body, "rule"), "rule", &r, &e) != 0) {
        fj_check_err(&e);
        return;
    }
    unsigned ntags = taxonomy_count(fj_app.tax, TAX_ENTERPRISE);
    fj_check_part(r.all, r.nall, ntags);
    fj_check_part(r.any, r.nany, ntags);
    fj_check_part(r.none, r.nnone, ntags);
}

/* The parsers behind webhook and key bodies (api/h_webhooks.c, api/h_keys.c):
 * their handlers validate in place and answer at once, so only these are
 * reachable without a request; the handlers themselves run in fuzz_api. */
static void fj_fields(json_t *body) {
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v) {
        const char *s = json_string_value(v);
        if (s == NULL) {
            continue;
        }
        if (strcmp(k, "url") == 0) {
            ssrf_url_t u;
            char why[160];
            why[0] = '\0';
            if (ssrf_check_url(&fj_app.ssrf, s, &u, why, sizeof why) != 0 && why[0] == '\0') {
                fj_fail("a webhook URL refused without a reason");
            }
        } else if (strcmp(k, "secret") == 0) {
            whsig_secret_t sec;
            if (whsig_secret_parse(s, &sec) == 0 &&
                (sec.len < WHSIG_MIN_SECRET || sec.len > WHSIG_MAX_SECRET)) {
                fj_fail("a webhook secret accepted with a bad length");
            }
        } else if (strcmp(k, "role") == 0) {
            int role = auth_role_parse(s);
            if (role != 0 && auth_role_parse(auth_role_name(role)) != role) {
                fj_fail("a key role that does not name itself");
            }
        } else if (strcmp(k, "scope") == 0) {
            char uscc[USCC_LEN + 1];
            ent_err_t e;
            if (ent_uscc_parse(s, json_string_length(v), uscc, "scope", &e) != 0) {
                fj_check_err(&e);
            }
        } else if (strcmp(k, "key") == 0) {
            char kid[AUTH_KID_LEN + 1];
            char secret[AUTH_SECRET_LEN + 1];
            auth_split(s, kid, secret);
        }
    }
}

static void fj_init(void) {
    char arg0[] = "fuzz_json";
    char *argv[] = {arg0, NULL};
    char err[256];
    if (config_load(&fj_cfg, 1, argv) != 0 ||
        date_parse(FJ_TODAY, strlen(FJ_TODAY), &fj_cfg.today) != 0) {
        fj_fail("cannot configure");
    }
    fj_app.cfg = &fj_cfg;
    if (taxonomy_parse(huiqi_default_taxonomy,
                       (size_t)(huiqi_default_taxonomy_end - huiqi_default_taxonomy), &fj_app.tax,
                       err, sizeof err) != 0 ||
        rules_parse(huiqi_default_rules, (size_t)(huiqi_default_rules_end - huiqi_default_rules),
                    fj_app.tax, &fj_app.rules, err, sizeof err) != 0) {
        fj_fail(err);
    }
    /* The webhook address rules huiqid starts with (app_start). */
    if (fj_cfg.webhook_allow[0] && ssrf_allow_parse(&fj_app.ssrf, fj_cfg.webhook_allow) != 0) {
        fj_fail("bad HUIQI_WEBHOOK_ALLOW");
    }
    fj_app.ssrf.allow_http = fj_cfg.webhook_allow_http != 0;
    json_t *base = json_loads(FJ_PATCH_BASE, 0, NULL);
    fj_patch_base = base ? fj_ent_doc(base, NULL) : NULL;
    json_decref(base);
    if (fj_patch_base == NULL) {
        fj_fail("the PATCH base enterprise is refused");
    }
    fj_started = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!fj_started) {
        fj_init();
    }
    /* A body over the cap never reaches a decoder: the server answers 413. */
    if (size == 0 || size - 1 > fj_cfg.max_body) {
        return 0;
    }
    json_t *body = NULL;
    json_error_t err;
    int rc = api_decode_object((const char *)data + 1, size - 1, &body, &err);
    if (rc == -EBADMSG) {
        if (err.text[0] == '\0' || err.position < 0 || (size_t)err.position > size - 1) {
            fj_fail("a decoding error without a reason or with a position past the end");
        }
        return 0;
    }
    if (rc != 0) {
        if (rc != -EINVAL || body != NULL) {
            fj_fail("an unexpected decoding result");
        }
        return 0;
    }
    switch (data[0] % FJ_NTARGETS) {
    case FJ_ENT_CREATE:
        fj_enterprise(body, NULL);
        break;
    case FJ_ENT_PUT:
        fj_enterprise(body, FJ_PATH_USCC);
        break;
    case FJ_ENT_PATCH:
        fj_ent_patch(body);
        break;
    case FJ_POLICY:
        fj_policy(body);
        break;
    case FJ_AUDIENCE:
        fj_audience(body);
        break;
    default:
        fj_fields(body);
        break;
    }
    json_decref(body);
    return 0;
}

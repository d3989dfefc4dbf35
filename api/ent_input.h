/* Validation of an enterprise as integrators send it, and the document we keep.
 * Shared by create, replace, patch (and bulk import), so every path accepts
 * exactly the same input and reports the same errors. */
#ifndef HUIQI_API_ENT_INPUT_H
#define HUIQI_API_ENT_INPUT_H

#include <jansson.h>
#include <stdint.h>

#include "api/app.h"
#include "store/store.h"
#include "tags/rules.h"

typedef struct ent_input {
    char uscc[19];
    json_t *attrs; /* canonical input attributes (owned) */
    rules_in_t rin;
    char region[8];
    char industry[8];
    rules_qual_t quals[RULES_MAX_QUALS];
    uint16_t explicit_tags[RULES_MAX_EXPLICIT];
    rules_override_t overrides[RULES_MAX_OVERRIDES];
    uint16_t interests[STORE_MAX_INTERESTS];
    unsigned ninterests;
    /* Set by ent_input_parse_stored: the rules newer than data already stored are
     * checked only on the fields of 'patch' (NULL: none). */
    int stored;
    const json_t *patch;
} ent_input_t;

typedef struct ent_err {
    int status;
    const char *code;
    char field[64];
    char msg[320];
} ent_err_t;

/* Validates 'body' (borrowed). 'path_uscc', when not NULL, is the code from the URL
 * (already upper-cased); the body's uscc, if any, must equal it. Returns 0 with 'in'
 * filled (free with ent_input_free) or -1 with 'err' filled. */
int ent_input_parse(const app_t *app, json_t *body, const char *path_uscc, ent_input_t *in,
                    ent_err_t *err);
void ent_input_free(ent_input_t *in);

/* As ent_input_parse, for a document already stored (re-tag: 'patch' NULL) or one
 * with a merge patch applied (PATCH: 'patch' is the request's, borrowed). Rules
 * added after data may have been stored are checked only on the fields 'patch'
 * sets, so that such data is still re-tagged and can be patched: a credit code's
 * division and entity type, explicit tags of derived classes, qualifications
 * outside qual.*, two different overrides of one tag (the later one then wins, as
 * it did), a region outside the provinces, an industry given as a section letter
 * alone. Everything else is checked as ent_input_parse does. */
int ent_input_parse_stored(const app_t *app, json_t *body, const char *path_uscc,
                           const json_t *patch, ent_input_t *in, ent_err_t *err);

/* Every override of 'attrs' names who set it ("by"). 'attrs' is the body as the
 * request sent it (after ent_input_parse accepted it), so that the index in the
 * error is the client's: the parsed in->attrs holds the overrides sorted. Checked
 * on what a request sends, not in ent_input_parse: documents stored
 * before this rule may hold overrides without it, and a re-tag, or a PATCH of
 * other fields, must still accept them. Returns 0 or -1 with 'err' filled. */
int ent_overrides_signed(const json_t *attrs, ent_err_t *err);

/* The enterprise's own webhook URL (contact.webhook), or NULL. */
const char *ent_input_webhook(const ent_input_t *in);

/* Normalises and checks a credit code from a URL or body into 'out' (19 bytes).
 * Returns 0 or -1 with 'err' filled. */
int ent_uscc_parse(const char *s, size_t len, char *out, const char *field, ent_err_t *err);

/* Builds the stored document from the input and its derived profile: the input
 * attributes and the full tag list with each tag's source. The same input always
 * gives the same document (times are kept outside it). The document is in->attrs
 * itself, extended (a new reference): use 'in' for nothing but ent_input_free
 * afterwards. */
json_t *ent_build_doc(const app_t *app, ent_input_t *in, const rules_out_t *out);

/* Turns a stored document back into a body that ent_input_parse accepts (for
 * PATCH): derived fields are dropped, explicit_tags becomes tags. New reference. */
json_t *ent_doc_to_input(json_t *doc);

/* RFC 7396 JSON merge patch of 'patch' into 'target' (modified in place). */
void ent_merge_patch(json_t *target, json_t *patch);

/* Formats milliseconds since the epoch as RFC 3339 UTC ("2026-11-22T01:56:15.123Z"). */
void ent_time_format(int64_t ms, char *out, size_t outlen);

/* What a webhook receiver is told of an enterprise: {"uscc","name","region",
 * "contact"} from its stored document ('doc' may be NULL: the code alone). A new
 * object, or (ent_card) its compact text, which the store keeps as the card. */
json_t *ent_card_object(const json_t *doc, const char *uscc);
char *ent_card(const json_t *doc, const char *uscc, size_t *len);

/* Writes an enterprise as create, replace, patch, import and re-tag all do: its
 * document 'doc' (rendered here, with its card) and, from 'out', the derived row
 * and the day its tags change, with the interests and webhook of 'in'. 'mode' and
 * 'expect_ver' are store_ent_in_t's. Returns store_ent_put's code; 'cb' runs only
 * when that is 0. Everything is borrowed. */
int ent_input_store(app_t *app, const ent_input_t *in, const json_t *doc, const rules_out_t *out,
                    int mode, int64_t expect_ver, store_ent_cb cb, void *arg);

#endif

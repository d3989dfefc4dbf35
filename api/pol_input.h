/* Validation of policies and targeting rules as operators send them, and the
 * cached views used to answer quickly (parsed document, pre-rendered package
 * entry). */
#ifndef HUIQI_API_POL_INPUT_H
#define HUIQI_API_POL_INPUT_H

#include <jansson.h>
#include <stdint.h>

#include "api/app.h"
#include "api/ent_input.h"
#include "store/store.h"

typedef struct pol_input {
    json_t *doc; /* canonical document (owned) */
    rule_t rule;
    int32_t opens, closes;
    uint8_t mode;
    uint16_t ptags[STORE_MAX_PTAGS];
    uint16_t nptags;
} pol_input_t;

/* Validates a policy body. Returns 0 (free with pol_input_free) or -1 with 'err'. */
int pol_input_parse(const app_t *app, json_t *body, pol_input_t *in, ent_err_t *err);
void pol_input_free(pol_input_t *in);

/* Validates a rule object {"all":[...],"any":[...],"none":[...]} ('field' names it
 * in errors). NULL or JSON null is the empty rule. */
int pol_rule_parse(const app_t *app, json_t *v, const char *field, rule_t *out, ent_err_t *err);

/* The answer for one policy: its document plus id, status, version and times.
 * New reference. */
json_t *pol_render(app_t *app, const store_policy_t *p);

/* A cached package entry for the policy, in two pieces around what depends on
 * the enterprise: the prefix runs up to the "any" reasons (the entry's fields,
 * then ,"why":{"all":[...],"any":), and 'mid' from there to the interests
 * (,"none":[...],"interests":). The caller writes: prefix, the "any" array, mid,
 * the interests array, "}}". Borrowed until the policy changes. */
const char *pol_package_prefix(app_t *app, const store_policy_t *p, size_t *len, const char **mid,
                               size_t *mid_len);

/* The parsed stored document (borrowed, cached per version), or NULL if damaged. */
json_t *pol_doc(app_t *app, const store_policy_t *p);

/* Frees the view cache. */
void pol_cache_free(app_t *app);

const char *pol_status_name(int status);
/* Whether 's' is one of the documented levels (national, provincial, city,
 * district); shared by the validator and the list filter. */
int pol_level_valid(const char *s);

#endif

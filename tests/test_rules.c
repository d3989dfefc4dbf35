/* Unit tests for tags/rules.c: the default rules file, family by family, at the
 * boundaries the standards draw, and the rules language itself. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "matcher/bitset.h"
#include "tags/date.h"
#include "tags/rules.h"
#include "tags/taxonomy.h"
#include "tags/uscc.h"
#include "tests/test_list_decl.h"
#include "tests/unit.h"

extern const char huiqi_default_taxonomy[];
extern const char huiqi_default_taxonomy_end[];
extern const char huiqi_default_rules[];
extern const char huiqi_default_rules_end[];

typedef struct fix {
    taxonomy_t *tax;
    rules_t *rules;
    int32_t today;
} fix_t;

static int fix_open(fix_t *f) {
    char err[256];
    f->today = date_from_ymd(2026, 11, 22);
    if (taxonomy_parse(huiqi_default_taxonomy,
                       (size_t)(huiqi_default_taxonomy_end - huiqi_default_taxonomy), &f->tax, err,
                       sizeof err) != 0 ||
        rules_parse(huiqi_default_rules, (size_t)(huiqi_default_rules_end - huiqi_default_rules),
                    f->tax, &f->rules, err, sizeof err) != 0) {
        fprintf(stderr, "  fixture: %s\n", err);
        return -1;
    }
    return 0;
}

static void fix_close(fix_t *f) {
    rules_free(f->rules);
    taxonomy_free(f->tax);
}

/* A valid credit code with the given prefix (2 chars) and district (6). */
static void mk_uscc(char *out, const char *kind, const char *district) {
    snprintf(out, 19, "%s%sMA1X7K2Q3", kind, district);
    out[17] = uscc_check_char(out);
    out[18] = '\0';
}

static void in_init(rules_in_t *in, const char *kind, const char *district) {
    memset(in, 0, sizeof *in);
    mk_uscc(in->uscc, kind, district);
    in->founded = DATE_NONE;
}

static void derive(fix_t *f, const rules_in_t *in, rules_out_t *out) {
    rules_derive(f->rules, in, f->today, out);
}

static int has(fix_t *f, const rules_out_t *out, const char *code) {
    int bit = taxonomy_find(f->tax, TAX_ENTERPRISE, code, strlen(code));
    return bit >= 0 && bitset_test(out->row, (unsigned)bit);
}

static const char *source_rule(fix_t *f, const rules_out_t *out, const char *code) {
    int bit = taxonomy_find(f->tax, TAX_ENTERPRISE, code, strlen(code));
    for (unsigned i = 0; i < out->nsrc; i++) {
        if (out->src[i].bit == bit) {
            return out->src[i].kind == RULES_SRC_RULE ? rules_rule_name(f->rules, out->src[i].rule)
                   : out->src[i].kind == RULES_SRC_EXPLICIT ? "explicit"
                                                            : "override";
        }
    }
    return NULL;
}

static void set_size(rules_in_t *in, const char *industry, double emp, double rev) {
    in->industry = industry;
    in->has_employees = emp >= 0;
    in->employees = emp;
    in->has_revenue = rev >= 0;
    in->revenue_10k = rev;
}

int test_rules_region_and_entity(void) {
    fix_t f;
    ASSERT_OK(fix_open(&f));
    rules_in_t in;
    rules_out_t *out = malloc(sizeof *out);
    in_init(&in, "91", "320214");
    in.region = "320206"; /* the registered region wins over the code */
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "region.320206"));
    ASSERT_FALSE(has(&f, out, "region.320214"));
    ASSERT_STREQ(source_rule(&f, out, "region.320206"), "district");
    ASSERT_TRUE(has(&f, out, "entity.company"));
    /* No region: positions 3-8 of the credit code. */
    in_init(&in, "92", "320282");
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "region.320282"));
    ASSERT_TRUE(has(&f, out, "entity.individual"));
    ASSERT_FALSE(has(&f, out, "entity.company"));
    in_init(&in, "93", "320281");
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "entity.cooperative"));
    ASSERT_TRUE(has(&f, out, "region.320281"));
    /* A Wuxi code that is not a district, and a code outside Wuxi. */
    in_init(&in, "91", "320203");
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "region.320200"));
    in_init(&in, "91", "310115");
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "region.other"));
    ASSERT_FALSE(has(&f, out, "region.320200"));
    free(out);
    fix_close(&f);
    return 0;
}

int test_rules_industry_prefix(void) {
    fix_t f;
    ASSERT_OK(fix_open(&f));
    rules_in_t in;
    rules_out_t *out = malloc(sizeof *out);
    in_init(&in, "91", "320214");
    in.industry = "C3973";
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "ind.c"));
    ASSERT_TRUE(has(&f, out, "ind.c39"));
    ASSERT_TRUE(has(&f, out, "sig.ic"));
    ASSERT_FALSE(has(&f, out, "ind.c38"));
    in.industry = "I6513";
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "ind.i"));
    ASSERT_TRUE(has(&f, out, "ind.i65"));
    ASSERT_TRUE(has(&f, out, "sig.software"));
    /* A division the taxonomy does not list still gets its section. */
    in.industry = "S9421";
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "ind.s"));
    char norm[8];
    ASSERT_OK(rules_industry_normalize("3973", 4, norm));
    ASSERT_STREQ(norm, "C3973");
    ASSERT_OK(rules_industry_normalize("i65", 3, norm));
    ASSERT_STREQ(norm, "I65");
    ASSERT_ERR(rules_industry_normalize("C6513", 5, norm), -EINVAL); /* 65 is section I */
    ASSERT_ERR(rules_industry_normalize("Z01", 3, norm), -EINVAL);
    ASSERT_ERR(rules_industry_normalize("C1", 2, norm), -EINVAL);
    ASSERT_ERR(rules_industry_normalize("C", 1, norm), -EINVAL); /* digits are required */
    ASSERT_ERR(rules_industry_normalize("C39731", 6, norm), -EINVAL);
    free(out);
    fix_close(&f);
    return 0;
}

int test_rules_size_industry_boundaries(void) {
    fix_t f;
    ASSERT_OK(fix_open(&f));
    rules_in_t in;
    rules_out_t *out = malloc(sizeof *out);
    in_init(&in, "91", "320214");
    set_size(&in, "C3484", 20, 300); /* exactly the small threshold */
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "size.small"));
    ASSERT_FALSE(has(&f, out, "size.micro"));
    ASSERT_TRUE(has(&f, out, "size.sme"));
    set_size(&in, "C3484", 19, 300);
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "size.micro"));
    ASSERT_FALSE(has(&f, out, "size.small"));
    set_size(&in, "C3484", 20, 299.9);
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "size.micro"));
    set_size(&in, "C3484", 300, 2000); /* medium */
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "size.medium"));
    ASSERT_FALSE(has(&f, out, "size.small"));
    ASSERT_TRUE(has(&f, out, "size.above_designated"));
    set_size(&in, "C3484", 1000, 40000); /* large: not an SME */
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "size.large"));
    ASSERT_FALSE(has(&f, out, "size.sme"));
    ASSERT_FALSE(has(&f, out, "size.medium"));
    set_size(&in, "C3484", 999, 40000); /* under 1000 employees: still an SME */
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "size.medium"));
    ASSERT_TRUE(has(&f, out, "size.sme"));
    set_size(&in, "C3484", 10, -1); /* revenue unknown: micro by employees alone */
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "size.micro"));
    set_size(&in, "C3484", 50, -1); /* unknown revenue: no size */
    derive(&f, &in, out);
    ASSERT_FALSE(has(&f, out, "size.micro") || has(&f, out, "size.small") ||
                 has(&f, out, "size.medium") || has(&f, out, "size.large"));
    set_size(&in, "C3484", 1, 1999.9);
    derive(&f, &in, out);
    ASSERT_FALSE(has(&f, out, "size.above_designated"));
    free(out);
    fix_close(&f);
    return 0;
}

int test_rules_size_sector_thresholds(void) {
    fix_t f;
    ASSERT_OK(fix_open(&f));
    rules_in_t in;
    rules_out_t *out = malloc(sizeof *out);
    in_init(&in, "91", "320214");
    set_size(&in, "I6513", 9, 500); /* software: 10 employees make it small */
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "size.micro"));
    set_size(&in, "I6513", 10, 50);
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "size.small"));
    ASSERT_STREQ(source_rule(&f, out, "size.small"), "size_small_software");
    set_size(&in, "I6513", 10, 49);
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "size.micro"));
    set_size(&in, "I6513", 300, 10000);
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "size.large"));
    set_size(&in, "F5174", 5, 1000); /* wholesale */
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "size.small"));
    set_size(&in, "F5174", 4, 1000);
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "size.micro"));
    set_size(&in, "F5212", 10, 100); /* retail */
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "size.small"));
    set_size(&in, "F5212", 50, 500);
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "size.medium"));
    ASSERT_TRUE(has(&f, out, "size.above_quota"));
    /* Another sector falls back to the industry thresholds. */
    set_size(&in, "L7212", 20, 300);
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "size.small"));
    ASSERT_STREQ(source_rule(&f, out, "size.small"), "size_small_general");
    /* Bands: lower bound in, upper bound out. */
    set_size(&in, "C3484", 10, 100);
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "staff.10_49"));
    ASSERT_TRUE(has(&f, out, "rev.100_499"));
    set_size(&in, "C3484", 9, 99.5);
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "staff.lt10"));
    ASSERT_TRUE(has(&f, out, "rev.lt100"));
    free(out);
    fix_close(&f);
    return 0;
}

int test_rules_age_brackets(void) {
    fix_t f;
    ASSERT_OK(fix_open(&f));
    rules_in_t in;
    rules_out_t *out = malloc(sizeof *out);
    in_init(&in, "91", "320214");
    in.founded = date_from_ymd(2023, 11, 23); /* three years old tomorrow */
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "age.lt3"));
    ASSERT_EQ(out->next_change, date_from_ymd(2026, 11, 23));
    in.founded = date_from_ymd(2023, 11, 22); /* three years old today */
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "age.3to10"));
    ASSERT_FALSE(has(&f, out, "age.lt3"));
    ASSERT_EQ(out->next_change, date_from_ymd(2027, 11, 22));
    in.founded = date_from_ymd(2016, 11, 22);
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "age.gt10"));
    in.founded = date_from_ymd(2016, 11, 23);
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "age.3to10"));
    /* 29 February: the anniversary counts on 1 March in common years. */
    in.founded = date_from_ymd(2024, 2, 29);
    derive(&f, &in, out);
    ASSERT_EQ(out->next_change, date_from_ymd(2027, 3, 1));
    in.founded = DATE_NONE;
    derive(&f, &in, out);
    ASSERT_FALSE(has(&f, out, "age.lt3") || has(&f, out, "age.3to10") || has(&f, out, "age.gt10"));
    ASSERT_EQ(out->next_change, DATE_NONE);
    free(out);
    fix_close(&f);
    return 0;
}

int test_rules_qualification_expiry(void) {
    fix_t f;
    ASSERT_OK(fix_open(&f));
    rules_in_t in;
    rules_out_t *out = malloc(sizeof *out);
    rules_qual_t q[2];
    in_init(&in, "91", "320214");
    in.quals = q;
    in.nquals = 1;
    q[0].bit = (uint16_t)taxonomy_find(f.tax, TAX_ENTERPRISE, "qual.hightech", 13);
    q[0].expires = DATE_NONE;
    /* Issued 2023-11-23: three years run through 2026-11-22, i.e. today. */
    q[0].issued = date_from_ymd(2023, 11, 23);
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "qual.hightech"));
    ASSERT_STREQ(source_rule(&f, out, "qual.hightech"), "qualifications");
    ASSERT_EQ(out->next_change, date_from_ymd(2026, 11, 23));
    q[0].issued = date_from_ymd(2023, 11, 22); /* expired yesterday */
    derive(&f, &in, out);
    ASSERT_FALSE(has(&f, out, "qual.hightech"));
    q[0].issued = date_from_ymd(2020, 1, 1);
    q[0].expires = date_from_ymd(2026, 11, 22); /* an explicit expiry wins; today counts */
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "qual.hightech"));
    q[0].expires = date_from_ymd(2026, 11, 21);
    derive(&f, &in, out);
    ASSERT_FALSE(has(&f, out, "qual.hightech"));
    q[0].issued = date_from_ymd(2026, 11, 30); /* not yet in force */
    q[0].expires = DATE_NONE;
    derive(&f, &in, out);
    ASSERT_FALSE(has(&f, out, "qual.hightech"));
    ASSERT_EQ(out->next_change, date_from_ymd(2026, 11, 30));
    q[0].issued = DATE_NONE; /* no dates at all: in force */
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "qual.hightech"));
    /* A qualification without a validity period lasts until its expiry only. */
    q[0].bit = (uint16_t)taxonomy_find(f.tax, TAX_ENTERPRISE, "qual.listed", 11);
    q[0].issued = date_from_ymd(2001, 1, 1);
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "qual.listed"));
    free(out);
    fix_close(&f);
    return 0;
}

int test_rules_explicit_and_overrides(void) {
    fix_t f;
    ASSERT_OK(fix_open(&f));
    rules_in_t in;
    rules_out_t *out = malloc(sizeof *out);
    in_init(&in, "91", "320214");
    set_size(&in, "C3484", 20, 300);
    uint16_t exp[1] = {(uint16_t)taxonomy_find(f.tax, TAX_ENTERPRISE, "neg.abnormal", 12)};
    in.explicit_tags = exp;
    in.nexplicit = 1;
    rules_override_t ov[2] = {
        {(uint16_t)taxonomy_find(f.tax, TAX_ENTERPRISE, "size.small", 10), 0},
        {(uint16_t)taxonomy_find(f.tax, TAX_ENTERPRISE, "sig.iot", 7), 1},
    };
    in.overrides = ov;
    in.noverrides = 2;
    derive(&f, &in, out);
    ASSERT_TRUE(has(&f, out, "neg.abnormal"));
    ASSERT_STREQ(source_rule(&f, out, "neg.abnormal"), "explicit");
    ASSERT_FALSE(has(&f, out, "size.small"));
    ASSERT_TRUE(has(&f, out, "sig.iot"));
    ASSERT_STREQ(source_rule(&f, out, "sig.iot"), "override");
    /* Sources come one per tag, in bit order. */
    for (unsigned i = 1; i < out->nsrc; i++) {
        ASSERT_LT(out->src[i - 1].bit, out->src[i].bit);
    }
    ASSERT_EQ(out->nsrc, bitset_popcount(out->row, RULES_MAX_WORDS));
    free(out);
    fix_close(&f);
    return 0;
}

static int rules_expect_error(fix_t *f, const char *text, const char *needle) {
    rules_t *r = NULL;
    char err[256] = "";
    int rc = rules_parse(text, strlen(text), f->tax, &r, err, sizeof err);
    if (rc != -EINVAL || strstr(err, needle) == NULL) {
        fprintf(stderr, "  for '%s': rc %d err '%s'\n", text, rc, err);
        rules_free(r);
        return 1;
    }
    return 0;
}

int test_rules_language(void) {
    fix_t f;
    ASSERT_OK(fix_open(&f));
    const char *src = "let big = employees >= 100 || revenue_10k > 5000\n"
                      "rule a: size.large when big && !(industry ^= \"F\")\n"
                      "rule b: sig.ai when has(\"size.large\") && known(founded_never_mind)\n";
    ASSERT_OK(rules_expect_error(&f, src, "line 3"));
    const char *ok = "# comment\n\n"
                     "let big = employees >= 100 || revenue_10k > 5000\n"
                     "rule a: size.large when big && !(industry ^= \"F\")\n"
                     "rule b: sig.ai when has(\"size.large\") && has_class(\"size\")\n"
                     "rule c: region.other when uscc ^= \"91\" && entity == \"company\"\n";
    rules_t *r = NULL;
    char err[256];
    ASSERT_OK(rules_parse(ok, strlen(ok), f.tax, &r, err, sizeof err));
    ASSERT_EQ(rules_count(r), 3);
    rules_in_t in;
    rules_out_t *out = malloc(sizeof *out);
    in_init(&in, "91", "320214");
    in.has_employees = 1;
    in.employees = 150;
    in.industry = "C3484";
    rules_derive(r, &in, f.today, out);
    int large = taxonomy_find(f.tax, TAX_ENTERPRISE, "size.large", 10);
    int ai = taxonomy_find(f.tax, TAX_ENTERPRISE, "sig.ai", 6);
    int other = taxonomy_find(f.tax, TAX_ENTERPRISE, "region.other", 12);
    ASSERT_TRUE(bitset_test(out->row, (unsigned)large));
    ASSERT_TRUE(bitset_test(out->row, (unsigned)ai));
    ASSERT_TRUE(bitset_test(out->row, (unsigned)other));
    in.industry = "F5174";
    rules_derive(r, &in, f.today, out);
    ASSERT_FALSE(bitset_test(out->row, (unsigned)large));
    ASSERT_FALSE(bitset_test(out->row, (unsigned)ai));
    rules_free(r);
    free(out);
    ASSERT_OK(
        rules_expect_error(&f, "rule x: nope.tag when employees > 1\n", "not an enterprise tag"));
    ASSERT_OK(rules_expect_error(&f, "rule x: size.large when\n", "expected a value"));
    ASSERT_OK(rules_expect_error(&f, "rule x: size.large when (employees > 1\n", "expected ')'"));
    ASSERT_OK(
        rules_expect_error(&f, "rule x: lookup nowhere district\n", "not an enterprise tag class"));
    ASSERT_OK(
        rules_expect_error(&f, "rule x: size.large when has(\"zzz\")\n", "not an enterprise tag"));
    ASSERT_OK(rules_expect_error(&f, "validity qual.hightech 3\n", "years"));
    ASSERT_OK(rules_expect_error(&f, "rule x: qualifications\nrule x: qualifications\n", "twice"));
    ASSERT_OK(rules_expect_error(&f, "frobnicate\n", "expected rule"));
    ASSERT_OK(rules_expect_error(&f, "# only comments\n", "no rules"));
    ASSERT_EQ(rules_validity_years(
                  f.rules, (unsigned)taxonomy_find(f.tax, TAX_ENTERPRISE, "qual.hightech", 13)),
              3);
    fix_close(&f);
    return 0;
}

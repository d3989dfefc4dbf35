/* Unit tests for tags/: the credit-code check, dates, the taxonomy loader and the
 * shipped default taxonomy. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tags/date.h"
#include "tags/taxonomy.h"
#include "tags/uscc.h"
#include "tests/test_list_decl.h"
#include "tests/unit.h"

extern const char huiqi_default_taxonomy[];
extern const char huiqi_default_taxonomy_end[];

int test_uscc_check(void) {
    /* The standard's own example. */
    ASSERT_OK(uscc_check("91350100M000100Y43", 18, NULL, NULL));
    char want = 0;
    ASSERT_ERR(uscc_check("91350100M000100Y44", 18, NULL, &want), -EBADMSG);
    ASSERT_EQ(want, '3');
    size_t pos = 99;
    ASSERT_ERR(uscc_check("91350100M0001I0Y43", 18, &pos, NULL), -EILSEQ);
    ASSERT_EQ(pos, 13);
    ASSERT_ERR(uscc_check("91350100m000100Y43", 18, &pos, NULL), -EILSEQ);
    ASSERT_ERR(uscc_check("91350100M000100Y4", 17, NULL, NULL), -EINVAL);
    ASSERT_ERR(uscc_check("", 0, NULL, NULL), -EINVAL);
    ASSERT_EQ(uscc_check_char("91350100M000100Y4"), '3');
    /* Every character of the alphabet as check character is reachable. */
    char code[19] = "9132020000000000X";
    int seen[31] = {0};
    for (int i = 0; i < 31 * 31; i++) {
        code[15] = "0123456789ABCDEFGHJKLMNPQRTUWXY"[i % 31];
        code[14] = "0123456789ABCDEFGHJKLMNPQRTUWXY"[i / 31];
        code[16] = '0';
        char c = uscc_check_char(code);
        ASSERT_NE(c, 0);
        seen[strchr("0123456789ABCDEFGHJKLMNPQRTUWXY", c) - "0123456789ABCDEFGHJKLMNPQRTUWXY"] = 1;
        code[17] = c;
        ASSERT_OK(uscc_check(code, 18, NULL, NULL));
    }
    for (int i = 0; i < 31; i++) {
        ASSERT_TRUE(seen[i]);
    }
    /* Each character's value (the first position weighs 1, so the check character
     * of "c0000000000000000" is alphabet[(31 - value(c)) % 31]), and every byte
     * outside the alphabet refused where it stands. */
    const char *alpha = "0123456789ABCDEFGHJKLMNPQRTUWXY";
    for (int b = 1; b < 256; b++) {
        char z[19] = "00000000000000000";
        z[0] = (char)b;
        const char *at = strchr(alpha, b);
        if (at) {
            ASSERT_EQ(uscc_check_char(z), alpha[(31 - (at - alpha)) % 31]);
        } else {
            size_t at0 = 99;
            z[17] = '0';
            ASSERT_ERR(uscc_check(z, 18, &at0, NULL), -EILSEQ);
            ASSERT_EQ(at0, 0);
            ASSERT_EQ(uscc_check_char(z), 0);
        }
    }
    ASSERT_EQ(uscc_entity("91350100M000100Y43"), USCC_ENTITY_COMPANY);
    ASSERT_EQ(uscc_entity("92320205MA1XXXXX0X"), USCC_ENTITY_INDIVIDUAL);
    ASSERT_EQ(uscc_entity("93320205MA1XXXXX0X"), USCC_ENTITY_COOPERATIVE);
    ASSERT_EQ(uscc_entity("12320205MA1XXXXX0X"), USCC_ENTITY_OTHER);
    return 0;
}

int test_date_roundtrip_and_parse(void) {
    ASSERT_EQ(date_from_ymd(1970, 1, 1), 0);
    ASSERT_EQ(date_from_ymd(2000, 3, 1), 11017);
    for (int32_t d = -800000; d < 800000; d += 37) {
        int y, m, dd;
        date_to_ymd(d, &y, &m, &dd);
        ASSERT_EQ(date_from_ymd(y, m, dd), d);
    }
    int32_t v;
    ASSERT_OK(date_parse("2024-02-29", 10, &v));
    char buf[11];
    date_format(v, buf);
    ASSERT_STREQ(buf, "2024-02-29");
    ASSERT_ERR(date_parse("2023-02-29", 10, &v), -EINVAL);
    ASSERT_ERR(date_parse("2023-13-01", 10, &v), -EINVAL);
    ASSERT_ERR(date_parse("2023-1-01", 9, &v), -EINVAL);
    ASSERT_ERR(date_parse("2023/01/01", 10, &v), -EINVAL);
    ASSERT_ERR(date_parse("20x3-01-01", 10, &v), -EINVAL);
    int32_t a = date_from_ymd(2020, 2, 29);
    ASSERT_EQ(date_years_between(a, date_from_ymd(2023, 2, 28)), 2);
    ASSERT_EQ(date_years_between(a, date_from_ymd(2023, 3, 1)), 3);
    ASSERT_EQ(date_years_between(date_from_ymd(2021, 6, 10), date_from_ymd(2024, 6, 9)), 2);
    ASSERT_EQ(date_years_between(date_from_ymd(2021, 6, 10), date_from_ymd(2024, 6, 10)), 3);
    ASSERT_EQ(date_add_years(a, 1), date_from_ymd(2021, 2, 28));
    /* 2026-11-21 16:30 UTC is already 2026-11-22 in Beijing. */
    time_t t = (time_t)date_from_ymd(2026, 11, 21) * 86400 + 16 * 3600 + 30 * 60;
    ASSERT_EQ(date_at(t, 480), date_from_ymd(2026, 11, 22));
    ASSERT_EQ(date_at(t, 0), date_from_ymd(2026, 11, 21));
    ASSERT_EQ(date_at(-1, 0), -1);
    return 0;
}

static const char tax_small[] = "# test taxonomy\n"
                                "class\tenterprise\tregion\t区域\tRegion\n"
                                "tag\tenterprise\tregion\tregion.320205\t锡山区\tXishan\t320205\n"
                                "tag\tenterprise\tregion\tregion.320206\t惠山区\tHuishan\t320206\n"
                                "class\tpolicy\tfinance\t财政金融\tFinance\n"
                                "tag\tpolicy\tfinance\tfin.loan\t贷款贴息\tLoan subsidy\t\n";

int test_taxonomy_parse_small(void) {
    taxonomy_t *t = NULL;
    char err[256] = "";
    ASSERT_OK(taxonomy_parse(tax_small, sizeof tax_small - 1, &t, err, sizeof err));
    ASSERT_EQ(taxonomy_count(t, TAX_ENTERPRISE), 2);
    ASSERT_EQ(taxonomy_count(t, TAX_POLICY), 1);
    ASSERT_EQ(taxonomy_find(t, TAX_ENTERPRISE, "region.320206", 13), 1);
    ASSERT_ERR(taxonomy_find(t, TAX_ENTERPRISE, "fin.loan", 8), -ENOENT);
    const tax_tag_t *tag = taxonomy_tag(t, TAX_ENTERPRISE, 0);
    ASSERT_STREQ(tag->name, "锡山区");
    ASSERT_STREQ(tag->klass->code, "region");
    ASSERT_STREQ(tag->ref, "320205");
    ASSERT_EQ(taxonomy_find_ref(t, TAX_ENTERPRISE, "region", "320206", 6), 1);
    ASSERT_NULL(taxonomy_tag(t, TAX_ENTERPRISE, 2));
    const char *stored_ok[2] = {"region.320205", "region.320206"};
    ASSERT_OK(taxonomy_check_map(t, TAX_ENTERPRISE, stored_ok, 1, err, sizeof err));
    ASSERT_OK(taxonomy_check_map(t, TAX_ENTERPRISE, stored_ok, 2, err, sizeof err));
    const char *moved[2] = {"region.320206", "region.320205"};
    ASSERT_ERR(taxonomy_check_map(t, TAX_ENTERPRISE, moved, 2, err, sizeof err), -EINVAL);
    ASSERT_NOT_NULL(strstr(err, "region.320206"));
    const char *gone[3] = {"region.320205", "region.320206", "region.320211"};
    ASSERT_ERR(taxonomy_check_map(t, TAX_ENTERPRISE, gone, 3, err, sizeof err), -EINVAL);
    ASSERT_NOT_NULL(strstr(err, "missing"));
    taxonomy_free(t);
    return 0;
}

static int tax_expect_error(const char *text, const char *needle) {
    taxonomy_t *t = NULL;
    char err[256] = "";
    int rc = taxonomy_parse(text, strlen(text), &t, err, sizeof err);
    if (rc != -EINVAL || strstr(err, needle) == NULL) {
        fprintf(stderr, "  for %s: rc %d err '%s'\n", needle, rc, err);
        taxonomy_free(t);
        return 1;
    }
    return 0;
}

int test_taxonomy_parse_errors(void) {
    ASSERT_OK(tax_expect_error("tag\tenterprise\tx\tcode\tn\tn\t\n", "not declared"));
    ASSERT_OK(tax_expect_error("class\tenterprise\tx\tX\tX\ntag\tenterprise\tx\tbad code\tn\tn\t\n",
                               "codes are"));
    ASSERT_OK(tax_expect_error("class\tenterprise\tx\tX\tX\ntag\tenterprise\tx\ta\tn\tn\n",
                               "7 TAB-separated"));
    ASSERT_OK(tax_expect_error("class\tmars\tx\tX\tX\n", "unknown vocabulary"));
    ASSERT_OK(tax_expect_error("class\tenterprise\tx\tX\tX\ntag\tenterprise\tx\ta\tn\tn\t\n"
                               "tag\tenterprise\tx\ta\tm\tm\t\n",
                               "twice"));
    ASSERT_OK(tax_expect_error("class\tenterprise\tx\tX\tX\ntag\tenterprise\tx\ta\t\xff\tn\t\n",
                               "UTF-8"));
    ASSERT_OK(tax_expect_error("class\tenterprise\tx\tX\tX\ntag\tenterprise\tx\ta\tn\tn\t\n",
                               "policy has no tags"));
    ASSERT_OK(tax_expect_error("bogus\n", "line 1: unknown record"));
    return 0;
}

int test_taxonomy_default_file(void) {
    taxonomy_t *t = NULL;
    char err[256] = "";
    size_t len = (size_t)(huiqi_default_taxonomy_end - huiqi_default_taxonomy);
    if (taxonomy_parse(huiqi_default_taxonomy, len, &t, err, sizeof err) != 0) {
        UNIT_FAIL_("default taxonomy: %s", err);
    }
    ASSERT_EQ(taxonomy_count(t, TAX_ENTERPRISE), 330);
    ASSERT_EQ(taxonomy_count(t, TAX_POLICY), 287);
    static const char *const regions[] = {"320205", "320206", "320211", "320213",
                                          "320214", "320281", "320282"};
    for (unsigned i = 0; i < 7; i++) {
        char code[32];
        snprintf(code, sizeof code, "region.%s", regions[i]);
        ASSERT_EQ(taxonomy_find(t, TAX_ENTERPRISE, code, strlen(code)), (int)i);
        ASSERT_EQ(taxonomy_find_ref(t, TAX_ENTERPRISE, "region", regions[i], 6), (int)i);
    }
    static const char *const required[] = {"size.micro",
                                           "size.small",
                                           "size.medium",
                                           "size.large",
                                           "size.sme",
                                           "qual.hightech",
                                           "qual.tech_sme",
                                           "qual.srdi",
                                           "qual.little_giant",
                                           "qual.gazelle",
                                           "qual.listed",
                                           "age.lt3",
                                           "age.3to10",
                                           "age.gt10",
                                           "sig.iot",
                                           "sig.ic",
                                           "sig.biomed",
                                           "sig.new_energy",
                                           "sig.hi_equip",
                                           "neg.dishonest",
                                           "neg.abnormal",
                                           "neg.deregistered",
                                           "ind.c",
                                           "ind.c39",
                                           "ind.i65",
                                           "entity.individual",
                                           "entity.cooperative"};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        if (taxonomy_find(t, TAX_ENTERPRISE, required[i], strlen(required[i])) < 0) {
            UNIT_FAIL_("default taxonomy lacks %s", required[i]);
        }
    }
    /* The cluster key: regions, entity types, the 20 sections, then divisions. */
    uint16_t ct[TAX_CLUSTER_MAX];
    uint8_t cl[TAX_CLUSTER_MAX];
    unsigned nc = taxonomy_cluster_tags(t, ct, cl, TAX_CLUSTER_MAX);
    unsigned per[4] = {0};
    for (unsigned i = 0; i < nc; i++) {
        ASSERT_LT(cl[i], 4);
        per[cl[i]]++;
        ASSERT_TRUE(i == 0 || ct[i] > ct[i - 1]);
    }
    ASSERT_EQ(per[0], 9);
    ASSERT_EQ(per[1], 7);
    ASSERT_EQ(per[2], 20);
    ASSERT_GT(per[3], 40);
    int c39 = taxonomy_find(t, TAX_ENTERPRISE, "ind.c39", 7);
    int sec_c = taxonomy_find(t, TAX_ENTERPRISE, "ind.c", 5);
    int hightech = taxonomy_find(t, TAX_ENTERPRISE, "qual.hightech", 13);
    for (unsigned i = 0; i < nc; i++) {
        ASSERT_NE(ct[i], hightech);
        if (ct[i] == c39) {
            ASSERT_EQ(cl[i], 3);
        }
        if (ct[i] == sec_c) {
            ASSERT_EQ(cl[i], 2);
        }
    }
    ASSERT_EQ(taxonomy_cluster_tags(t, ct, cl, 5), 5);
    /* Every tag has both names. */
    for (int v = 0; v < TAX_NVOCAB; v++) {
        for (unsigned i = 0; i < taxonomy_count(t, (tax_vocab_t)v); i++) {
            const tax_tag_t *tag = taxonomy_tag(t, (tax_vocab_t)v, i);
            ASSERT_GT(strlen(tag->name), 0);
            ASSERT_GT(strlen(tag->name_en), 0);
            ASSERT_EQ(tag->bit, i);
        }
    }
    taxonomy_free(t);
    return 0;
}

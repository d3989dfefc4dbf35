/* The synthetic city; see gen.h. Frequencies follow the shape of a real city's
 * register: a handful of district, size, entity, age and sector tags cover most
 * enterprises, a few dozen mid-frequency tags (1-10%), and a long tail of hundreds
 * of titles and labels at 0.1-1%. */
#include "bench/gen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"
#include "matcher/bitset.h"
#include "tags/date.h"
#include "tags/uscc.h"

struct gen {
    const taxonomy_t *tax;
    const rules_t *rules;
    uint64_t seed;
    int32_t today;
    unsigned ntags;
    size_t words;
    /* explicit-tag pool: tags no rule derives, with a probability each */
    uint16_t pool[TAX_MAX_TAGS];
    double pool_p[TAX_MAX_TAGS];
    unsigned npool;
    /* qualification tags with a probability each */
    uint16_t qual[64];
    double qual_p[64];
    unsigned nqual;
    unsigned npolicy_tags;
    /* policy rule bands, filled by gen_new from expected frequencies */
    uint16_t region[16];
    unsigned nregion;
    uint16_t negative[32];
    unsigned nnegative;
};

/* ---------------------------------------------------------------------------
 * Randomness: splitmix64 streams keyed by (seed, kind, index)
 * ------------------------------------------------------------------------- */

typedef struct rng {
    uint64_t s;
} rng_t;

static uint64_t rng_next(rng_t *r) {
    uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static rng_t rng_for(uint64_t seed, uint64_t kind, uint64_t i) {
    rng_t r = {seed ^ (kind * UINT64_C(0xd6e8feb86659fd93)) ^ (i * UINT64_C(0x2545f4914f6cdd1d))};
    rng_next(&r);
    return r;
}

static double rng_unit(rng_t *r) {
    return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static unsigned rng_below(rng_t *r, unsigned n) {
    return (unsigned)(rng_unit(r) * n);
}

/* Index into weights[0..n) drawn proportionally. */
static unsigned rng_pick(rng_t *r, const double *w, unsigned n) {
    double total = 0;
    for (unsigned i = 0; i < n; i++) {
        total += w[i];
    }
    double x = rng_unit(r) * total;
    for (unsigned i = 0; i < n; i++) {
        if (x < w[i]) {
            return i;
        }
        x -= w[i];
    }
    return n - 1;
}

/* ---------------------------------------------------------------------------
 * Tables
 * ------------------------------------------------------------------------- */

static const char *const gen_districts[7] = {"320205", "320206", "320211", "320213",
                                             "320214", "320281", "320282"};
static const double gen_district_w[7] = {10, 11, 9, 13, 20, 22, 15};
static const char *const gen_district_names[7] = {"锡山", "惠山", "滨湖", "梁溪",
                                                  "新吴", "江阴", "宜兴"};

typedef struct industry {
    const char *code;
    double w;
    const char *word;
} industry_t;

static const industry_t gen_industries[] = {
    {"C3973", 1.2, "集成电路"},   {"C3983", 1.2, "传感科技"},     {"C3982", 1.0, "电子电路"},
    {"C3976", 0.6, "光电科技"},   {"C3985", 0.5, "电子材料"},     {"C2720", 0.6, "制药"},
    {"C2761", 0.4, "生物制药"},   {"C3581", 0.7, "医疗器械"},     {"C3825", 0.8, "光伏科技"},
    {"C3841", 0.7, "新能源"},     {"C3491", 0.6, "机器人"},       {"C3421", 0.8, "数控机床"},
    {"C3670", 2.0, "汽车部件"},   {"C3612", 0.2, "新能源汽车"},   {"C1712", 1.5, "纺织"},
    {"C1819", 1.5, "服饰"},       {"C3130", 1.0, "特钢"},         {"C3311", 1.5, "钢结构"},
    {"C3360", 1.0, "表面处理"},   {"C2929", 1.5, "塑料制品"},     {"C3442", 1.0, "泵业"},
    {"C3484", 2.5, "机械"},       {"C3074", 1.0, "陶瓷"},         {"C2641", 0.8, "涂料"},
    {"C3824", 0.8, "电气"},       {"C3562", 0.3, "半导体设备"},   {"C3744", 0.2, "航空部件"},
    {"F5174", 5.0, "五金"},       {"F5179", 4.0, "机电设备"},     {"F5123", 2.0, "果蔬"},
    {"F5211", 3.0, "百货"},       {"F5212", 3.0, "超市"},         {"F5221", 2.0, "粮油"},
    {"F5261", 1.0, "汽车销售"},   {"F5271", 1.5, "家电"},         {"F5292", 2.5, "电子商务"},
    {"G5431", 2.5, "物流"},       {"G5920", 1.0, "仓储"},         {"G5821", 1.5, "货运代理"},
    {"H6110", 1.0, "酒店"},       {"H6210", 3.5, "餐饮"},         {"H6220", 1.5, "快餐"},
    {"I6513", 2.0, "软件"},       {"I6520", 0.6, "芯片设计"},     {"I6531", 1.5, "信息技术"},
    {"I6532", 1.2, "物联网"},     {"I6410", 0.5, "网络科技"},     {"M7320", 1.5, "技术研究"},
    {"M7340", 0.5, "医学研究"},   {"M7484", 1.5, "工程设计"},     {"M7517", 1.5, "科技服务"},
    {"L7212", 2.5, "投资管理"},   {"L7241", 1.5, "企业管理咨询"}, {"L7251", 2.0, "广告"},
    {"E4710", 1.5, "建设工程"},   {"E5011", 1.5, "装饰工程"},     {"E4910", 1.0, "电气安装"},
    {"K7010", 1.0, "房地产开发"}, {"K7020", 1.0, "物业管理"},     {"O8111", 1.5, "汽车修理"},
    {"O8010", 1.5, "家政服务"},   {"A0111", 1.0, "稻米"},         {"A0412", 1.0, "水产养殖"},
    {"A0141", 1.0, "蔬菜种植"},   {"D4430", 0.5, "热力"},         {"D4416", 0.5, "光伏电站"},
    {"Q8411", 0.5, "医院"},       {"P8391", 0.5, "职业培训"},     {"R8930", 0.5, "健身"},
    {"J6631", 0.5, "融资租赁"},   {"N7724", 0.5, "环保"},
};
#define GEN_NIND (sizeof gen_industries / sizeof gen_industries[0])

static const char *const gen_brands[] = {
    "华芯", "锡能", "太湖", "蠡园", "惠泉", "梁溪", "新吴", "澄江", "阳羡", "龙山", "金匮",
    "瑞丰", "恒通", "宏达", "鑫源", "中瑞", "天和", "博远", "凯胜", "永盛", "江南", "吴越",
    "明辉", "嘉禾", "卓越", "远航", "盛世", "华星", "东港", "锦程", "泰隆", "昊天"};
#define GEN_NBRANDS (sizeof gen_brands / sizeof gen_brands[0])

static const char gen_alphabet[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";

/* ---------------------------------------------------------------------------
 * Set-up
 * ------------------------------------------------------------------------- */

static int gen_class_is(const tax_tag_t *t, const char *k) {
    return strcmp(t->klass->code, k) == 0;
}

gen_t *gen_new(const taxonomy_t *tax, const rules_t *rules, uint64_t seed, int32_t today) {
    gen_t *g = xcalloc(1, sizeof *g);
    g->tax = tax;
    g->rules = rules;
    g->seed = seed;
    g->today = today;
    g->ntags = taxonomy_count(tax, TAX_ENTERPRISE);
    g->words = bitset_words(g->ntags);
    g->npolicy_tags = taxonomy_count(tax, TAX_POLICY);
    static const char *const pool_classes[] = {"zone",   "ownership",       "listing", "innovation",
                                               "ip",     "digital",         "green",   "trade",
                                               "talent", "employment",      "finance", "honour",
                                               "agri",   "culture_tourism", "negative"};
    for (unsigned i = 0; i < g->ntags; i++) {
        const tax_tag_t *t = taxonomy_tag(tax, TAX_ENTERPRISE, i);
        rng_t r = rng_for(seed, 7, i);
        if (gen_class_is(t, "region") && t->ref[0]) {
            g->region[g->nregion++] = (uint16_t)i;
        }
        if (gen_class_is(t, "qualification") && g->nqual < 64) {
            double p = 0.001 + 0.004 * rng_unit(&r);
            if (strcmp(t->code, "qual.hightech") == 0) {
                p = 0.05;
            } else if (strcmp(t->code, "qual.tech_sme") == 0) {
                p = 0.03;
            } else if (strcmp(t->code, "qual.srdi") == 0) {
                p = 0.015;
            }
            g->qual[g->nqual] = (uint16_t)i;
            g->qual_p[g->nqual++] = p;
            continue;
        }
        int in_pool = 0;
        for (size_t k = 0; k < sizeof pool_classes / sizeof pool_classes[0]; k++) {
            in_pool |= gen_class_is(t, pool_classes[k]);
        }
        if (!in_pool) {
            continue;
        }
        double p;
        if (gen_class_is(t, "negative")) {
            g->negative[g->nnegative < 32 ? g->nnegative++ : 31] = (uint16_t)i;
            p = strcmp(t->code, "neg.abnormal") == 0    ? 0.025
                : strcmp(t->code, "neg.dishonest") == 0 ? 0.01
                                                        : 0.001 + 0.002 * rng_unit(&r);
        } else if (rng_unit(&r) < 0.12) {
            p = 0.01 + 0.05 * rng_unit(&r); /* a mid-frequency label */
        } else {
            p = exp(log(0.001) + (log(0.01) - log(0.001)) * rng_unit(&r)); /* long tail */
        }
        g->pool[g->npool] = (uint16_t)i;
        g->pool_p[g->npool++] = p;
    }
    return g;
}

void gen_free(gen_t *g) {
    free(g);
}

/* ---------------------------------------------------------------------------
 * Enterprises
 * ------------------------------------------------------------------------- */

static void gen_uscc(uint32_t i, int kind, const char *district, char *out) {
    out[0] = '9';
    out[1] = (char)('1' + kind);
    memcpy(out + 2, district, 6);
    out[8] = 'M';
    out[9] = 'A';
    /* Seven base-31 digits of the index: unique for 27 billion enterprises. */
    uint64_t x = i;
    for (int k = 16; k >= 10; k--) {
        out[k] = gen_alphabet[x % 31];
        x /= 31;
    }
    out[17] = uscc_check_char(out);
    out[18] = '\0';
}

static void gen_attrs(const gen_t *g, uint32_t i, gen_ent_t *e) {
    rng_t r = rng_for(g->seed, 1, i);
    memset(e, 0, sizeof *e);
    unsigned d = rng_pick(&r, gen_district_w, 7);
    double kind_w[3] = {70, 27, 3};
    int kind = (int)rng_pick(&r, kind_w, 3);
    gen_uscc(i, kind, gen_districts[d], e->uscc);
    if (rng_unit(&r) < 0.9) {
        memcpy(e->region, gen_districts[d], 7);
    }
    double iw[GEN_NIND];
    for (unsigned k = 0; k < GEN_NIND; k++) {
        iw[k] = gen_industries[k].w;
        /* Cooperatives farm; individual businesses trade, cook and repair. */
        if (kind == 2 && gen_industries[k].code[0] != 'A') {
            iw[k] = 0;
        }
        if (kind == 1 && !strchr("FHO", gen_industries[k].code[0])) {
            iw[k] *= 0.05;
        }
    }
    const industry_t *ind = &gen_industries[rng_pick(&r, iw, GEN_NIND)];
    memcpy(e->industry, ind->code, 6);
    /* Employees: mostly micro, a long tail of larger firms. */
    double u = rng_unit(&r);
    int emp = kind == 1  ? 1 + (int)rng_below(&r, 8)
              : u < 0.55 ? 1 + (int)rng_below(&r, 19)
              : u < 0.82 ? 20 + (int)rng_below(&r, 80)
              : u < 0.94 ? 100 + (int)rng_below(&r, 200)
              : u < 0.99 ? 300 + (int)rng_below(&r, 700)
                         : 1000 + (int)rng_below(&r, 9000);
    double per_head = 15 + 120 * rng_unit(&r); /* 10k CNY of revenue per employee */
    double rev = floor(emp * per_head * (0.5 + rng_unit(&r)) * 10) / 10;
    if (rng_unit(&r) > 0.03) {
        e->employees = emp;
        e->revenue_10k = rev;
    } else {
        e->employees = -1;
        e->revenue_10k = -1;
    }
    /* Founded: a quarter in the last three years, the rest back to 1985. */
    int32_t span = rng_unit(&r) < 0.25 ? 3 * 365 : 40 * 365;
    e->founded = g->today - 1 - (int32_t)rng_below(&r, (unsigned)span);
    snprintf(e->name, sizeof e->name, "%s%s%s%s", kind == 0 ? "无锡" : gen_district_names[d],
             gen_brands[rng_below(&r, GEN_NBRANDS)], ind->word,
             kind == 0   ? (rng_unit(&r) < 0.1 ? "股份有限公司" : "有限公司")
             : kind == 1 ? "经营部"
                         : "专业合作社");
    /* Qualifications; validity-bound ones issued in the last five years. */
    for (unsigned k = 0; k < g->nqual && e->nquals < GEN_MAX_QUALS; k++) {
        if (kind == 0 && rng_unit(&r) < g->qual_p[k]) {
            rules_qual_t *q = &e->quals[e->nquals++];
            q->bit = g->qual[k];
            q->issued = rules_validity_years(g->rules, g->qual[k])
                            ? g->today - (int32_t)rng_below(&r, 5 * 365)
                            : DATE_NONE;
            q->expires = DATE_NONE;
        }
    }
    for (unsigned k = 0; k < g->npool && e->nexplicit < GEN_MAX_EXPLICIT; k++) {
        if (rng_unit(&r) < g->pool_p[k]) {
            e->explicit_tags[e->nexplicit++] = g->pool[k];
        }
    }
    if (rng_unit(&r) < 0.3) {
        unsigned n = 1 + rng_below(&r, GEN_MAX_INTEREST);
        for (unsigned k = 0; k < n; k++) {
            uint16_t b = (uint16_t)rng_below(&r, g->npolicy_tags);
            unsigned j = e->ninterests;
            int dup = 0;
            for (unsigned m = 0; m < e->ninterests; m++) {
                dup |= e->interests[m] == b;
            }
            if (dup) {
                continue;
            }
            while (j > 0 && e->interests[j - 1] > b) {
                e->interests[j] = e->interests[j - 1];
                j--;
            }
            e->interests[j] = b;
            e->ninterests++;
        }
    }
}

static void gen_derive(const gen_t *g, const gen_ent_t *e, uint64_t *row, rules_out_t *out) {
    rules_in_t in = {0};
    memcpy(in.uscc, e->uscc, 19);
    in.region = e->region[0] ? e->region : NULL;
    in.industry = e->industry;
    in.has_employees = e->employees >= 0;
    in.employees = e->employees;
    in.has_revenue = e->revenue_10k >= 0;
    in.revenue_10k = e->revenue_10k;
    in.founded = e->founded;
    in.quals = e->quals;
    in.nquals = e->nquals;
    in.explicit_tags = e->explicit_tags;
    in.nexplicit = e->nexplicit;
    rules_derive(g->rules, &in, g->today, out);
    memcpy(row, out->row, g->words * sizeof *row);
}

void gen_enterprise(const gen_t *g, uint32_t i, gen_ent_t *e, uint64_t *row) {
    gen_attrs(g, i, e);
    rules_out_t *out = xmalloc(sizeof *out);
    gen_derive(g, e, row, out);
    /* Keep every profile between 6 and 20 tags, as a real register is. */
    rng_t r = rng_for(g->seed, 3, i);
    while (out->nsrc > 20 && e->nexplicit > 0) {
        e->nexplicit--;
        gen_derive(g, e, row, out);
    }
    while (out->nsrc < 6 && e->nexplicit < GEN_MAX_EXPLICIT) {
        uint16_t b = g->pool[rng_below(&r, g->npool)];
        if (!bitset_test(row, b)) {
            e->explicit_tags[e->nexplicit++] = b;
            gen_derive(g, e, row, out);
        }
    }
    free(out);
}

/* ---------------------------------------------------------------------------
 * Policies
 * ------------------------------------------------------------------------- */

void gen_policy(const gen_t *g, uint32_t j, rule_t *rl, uint16_t *ptags, unsigned *nptags) {
    rng_t r = rng_for(g->seed, 2, j);
    memset(rl, 0, sizeof *rl);
    /* Tag bands by class: frequent (district, size, entity, age, sector), mid
     * (divisions, bands, common titles) and the long tail (pool, qualifications). */
    static const char *const frequent[] = {
        "size.sme",    "size.micro", "size.small",  "entity.company", "age.lt3",
        "age.3to10",   "age.gt10",   "ind.c",       "ind.f",          "staff.lt10",
        "staff.10_49", "rev.lt100",  "rev.100_499", "rev.500_1999"};
    static const char *const mid[] = {"size.medium",      "size.above_designated",
                                      "ind.c39",          "ind.c34",
                                      "ind.c38",          "ind.c36",
                                      "ind.i65",          "ind.m73",
                                      "ind.h62",          "ind.f51",
                                      "ind.f52",          "ind.l72",
                                      "staff.50_99",      "staff.100_299",
                                      "rev.2000_9999",    "qual.hightech",
                                      "qual.tech_sme",    "sig.ic",
                                      "sig.iot",          "sig.software",
                                      "sig.new_energy",   "sig.biomed",
                                      "entity.individual"};
    unsigned nall_w[4] = {35, 35, 22, 8};
    double w4[4] = {nall_w[0], nall_w[1], nall_w[2], nall_w[3]};
    unsigned nall = 1 + rng_pick(&r, w4, 4);
    for (unsigned k = 0; k < nall; k++) {
        int bit;
        double u = rng_unit(&r);
        if (k == 0 && u < 0.45) {
            bit = rng_unit(&r) < 0.8 ? g->pool[rng_below(&r, g->npool)]
                                     : g->qual[rng_below(&r, g->nqual)];
        } else if ((k == 0 && u < 0.80) || (k > 0 && u < 0.3)) {
            const char *c = mid[rng_below(&r, sizeof mid / sizeof mid[0])];
            bit = taxonomy_find(g->tax, TAX_ENTERPRISE, c, strlen(c));
        } else if (k > 0 && u < 0.55) {
            bit = g->region[rng_below(&r, g->nregion)];
        } else {
            const char *c = frequent[rng_below(&r, sizeof frequent / sizeof frequent[0])];
            bit = taxonomy_find(g->tax, TAX_ENTERPRISE, c, strlen(c));
        }
        if (bit >= 0) {
            rl->all[rl->nall++] = (uint16_t)bit;
        }
    }
    if (rng_unit(&r) >= 0.35) {
        unsigned nany = 1 + rng_below(&r, 8);
        int regions = rng_unit(&r) < 0.6;
        for (unsigned k = 0; k < nany; k++) {
            int bit;
            if (regions) {
                bit = g->region[rng_below(&r, g->nregion)];
            } else {
                const char *c = mid[rng_below(&r, sizeof mid / sizeof mid[0])];
                bit = taxonomy_find(g->tax, TAX_ENTERPRISE, c, strlen(c));
            }
            if (bit >= 0) {
                rl->any[rl->nany++] = (uint16_t)bit;
            }
        }
    }
    double nw[3] = {40, 40, 20};
    unsigned nnone = rng_pick(&r, nw, 3);
    for (unsigned k = 0; k < nnone; k++) {
        rl->none[rl->nnone++] =
            k == 0 && rng_unit(&r) < 0.7
                ? (uint16_t)taxonomy_find(g->tax, TAX_ENTERPRISE, "neg.dishonest", 13)
                : g->negative[rng_below(&r, g->nnegative)];
    }
    rule_normalize(rl, g->ntags);
    *nptags = 1 + rng_below(&r, 3);
    for (unsigned k = 0; k < *nptags; k++) {
        ptags[k] = (uint16_t)rng_below(&r, g->npolicy_tags);
    }
}

/* ---------------------------------------------------------------------------
 * NDJSON
 * ------------------------------------------------------------------------- */

size_t gen_ndjson(const gen_t *g, const gen_ent_t *e, char *out, size_t outlen) {
    size_t n = 0;
#define GEN_PUT(...)                                                    \
    do {                                                                \
        int k_ = snprintf(out + n, outlen - n, __VA_ARGS__);            \
        if (k_ > 0) {                                                   \
            n += (size_t)k_ < outlen - n ? (size_t)k_ : outlen - n - 1; \
        }                                                               \
    } while (0)
    char date[11];
    date_format(e->founded, date);
    GEN_PUT("{\"uscc\":\"%s\",\"name\":\"%s\"", e->uscc, e->name);
    if (e->region[0]) {
        GEN_PUT(",\"region\":\"%s\"", e->region);
    }
    GEN_PUT(",\"industry\":\"%s\"", e->industry);
    if (e->employees >= 0) {
        GEN_PUT(",\"employees\":%d,\"revenue_10k\":%.1f", e->employees, e->revenue_10k);
    }
    GEN_PUT(",\"founded\":\"%s\"", date);
    if (e->nquals) {
        GEN_PUT(",\"qualifications\":[");
        for (unsigned k = 0; k < e->nquals; k++) {
            const char *code = taxonomy_tag(g->tax, TAX_ENTERPRISE, e->quals[k].bit)->code;
            if (e->quals[k].issued != DATE_NONE) {
                date_format(e->quals[k].issued, date);
                GEN_PUT("%s{\"code\":\"%s\",\"issued\":\"%s\"}", k ? "," : "", code, date);
            } else {
                GEN_PUT("%s\"%s\"", k ? "," : "", code);
            }
        }
        GEN_PUT("]");
    }
    if (e->nexplicit) {
        GEN_PUT(",\"tags\":[");
        for (unsigned k = 0; k < e->nexplicit; k++) {
            GEN_PUT("%s\"%s\"", k ? "," : "",
                    taxonomy_tag(g->tax, TAX_ENTERPRISE, e->explicit_tags[k])->code);
        }
        GEN_PUT("]");
    }
    if (e->ninterests) {
        GEN_PUT(",\"interests\":[");
        for (unsigned k = 0; k < e->ninterests; k++) {
            GEN_PUT("%s\"%s\"", k ? "," : "",
                    taxonomy_tag(g->tax, TAX_POLICY, e->interests[k])->code);
        }
        GEN_PUT("]");
    }
    GEN_PUT("}\n");
#undef GEN_PUT
    return n;
}

#!/usr/bin/env python3
"""Deterministic demo data for huiqi: 300 Wuxi enterprises and 12 policies.

    python3 tools/demo_data.py            # writes deploy/demo/*, then checks them
    python3 tools/demo_data.py --check    # checks the files already written
    python3 tools/demo_data.py --out DIR  # writes elsewhere

Writes
  deploy/demo/enterprises.ndjson  one enterprise per line, the body of
                                  PUT /v1/enterprises/{uscc}
  deploy/demo/policies.json       a JSON array of policies, the body of
                                  POST /v1/policies plus a "publish" flag that
                                  tools/load_demo.py reads (and does not send)

The output depends only on SEED and on the constants below, never on today's
date, so running it again gives byte-identical files. The data is dated around
2026-11-22: some high-tech certificates (3 years) and tech-SME entries (1 year)
have expired by then, some enterprises are younger than 3 years, and one policy
has closed while another opens in 2027. As real time passes, more certificates
expire and the age brackets move; that is the service's job to follow.

The check validates every credit code (GB 32100-2015 check character, unique),
every tag code against tags/taxonomy.tsv (enterprise vocabulary for rules,
tags and qualifications; policy vocabulary for policy tags and interests), and
evaluates each policy's rule against the tags that tags/rules.conf would derive
(a Python re-statement of those rules, for a quick offline check; the service's
own answer is GET /v1/policies/{id}/audience, see tools/load_demo.py --verify).
Python 3 standard library only.
"""

import argparse
import datetime as dt
import json
import os
import random
import sys

SEED = 20261122
N_ENTERPRISES = 300
AS_OF = dt.date(2026, 11, 22)  # the day the data is written for
FOUNDED_MAX = dt.date(2026, 10, 31)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAXONOMY = os.path.join(ROOT, "tags", "taxonomy.tsv")

# ---------------------------------------------------------------------------
# Unified social credit code (GB 32100-2015)

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]


def uscc_check_char(body17):
    s = sum(USCC_ALPHABET.index(c) * w for c, w in zip(body17, USCC_WEIGHTS))
    return USCC_ALPHABET[(31 - s % 31) % 31]


def uscc_valid(code):
    return (isinstance(code, str) and len(code) == 18
            and all(c in USCC_ALPHABET for c in code)
            and uscc_check_char(code[:17]) == code[17])


def org_code_gb11714(rng):
    """A pre-2015 organisation code (GB 11714-1997): 8 digits and a check
    character, which these codes carried into positions 9-17."""
    head = rng.choice(["13", "25", "60", "70", "71", "72", "73", "74", "75", "76",
                       "77", "78", "79"])
    body = head + "".join(rng.choice("0123456789") for _ in range(6))
    w = [3, 7, 9, 10, 5, 8, 4, 2]
    c = 11 - sum(int(d) * k for d, k in zip(body, w)) % 11
    return body + ("X" if c == 10 else "0" if c == 11 else str(c))


def org_code_new(rng, founded):
    """Positions 9-17 of codes issued since the 2015 reform: "MA" and a batch
    character (MA1 up to 2020, MA2 2021-22, MAC 2023, MAD 2024, MAE 2025-26)
    and six characters of the code alphabet."""
    y = founded.year
    batch = "MA1" if y <= 2020 else "MA2" if y <= 2022 else "MAC" if y == 2023 else \
        "MAD" if y == 2024 else "MAE"
    return batch + "".join(rng.choice(USCC_ALPHABET) for _ in range(6))


# ---------------------------------------------------------------------------
# Places

DISTRICTS = {
    "320205": ("锡山区", "锡山"),
    "320206": ("惠山区", "惠山"),
    "320211": ("滨湖区", "滨湖"),
    "320213": ("梁溪区", "梁溪"),
    "320214": ("新吴区", "新吴"),
    "320281": ("江阴市", "江阴"),
    "320282": ("宜兴市", "宜兴"),
}
TOWNS = {
    "320205": ["东港镇", "锡北镇", "鹅湖镇", "羊尖镇"],
    "320206": ["洛社镇", "阳山镇", "钱桥街道"],
    "320211": ["胡埭镇", "马山街道"],
    "320213": [],
    "320214": ["鸿山街道", "梅村街道"],
    "320281": ["华士镇", "周庄镇", "新桥镇", "徐霞客镇", "璜土镇", "月城镇", "青阳镇"],
    "320282": ["丁蜀镇", "和桥镇", "周铁镇", "张渚镇", "官林镇", "高塍镇", "杨巷镇"],
}
# Landline prefixes (0510-8xxxxxxx) by district.
PHONE_PREFIX = {
    "320205": ["888", "883", "887"], "320206": ["836", "833", "835"],
    "320211": ["855", "851", "858"], "320213": ["827", "828", "821"],
    "320214": ["852", "853", "881"], "320281": ["861", "862", "868"],
    "320282": ["871", "872", "874"],
}

# ---------------------------------------------------------------------------
# Industries (GB/T 4754-2017). Each: code, weight among companies, name words,
# district weights, kind ("tech" | "mfg" | "svc"), sizing ("general" |
# "software" | "wholesale" | "retail").

ALL_DISTRICTS = {"320205": 1, "320206": 1, "320211": 1, "320213": 1, "320214": 1,
                 "320281": 1, "320282": 1}
COMPANY_INDUSTRIES = [
    # Integrated circuits
    ("C3973", 9, ["半导体", "集成电路", "微电子"], {"320214": 6, "320206": 1, "320281": 2}, "tech"),
    ("C3972", 3, ["功率半导体", "电子器件"], {"320214": 3, "320205": 1, "320281": 1}, "tech"),
    ("I6520", 8, ["微电子科技", "芯片设计", "集成电路设计"], {"320214": 5, "320211": 2, "320213": 1}, "tech"),
    ("C3562", 3, ["半导体设备", "精密装备"], {"320214": 2, "320206": 1}, "tech"),
    # IoT and sensing, software
    ("C3983", 10, ["传感科技", "传感器", "智能传感"], {"320214": 4, "320206": 2, "320211": 2, "320205": 1}, "tech"),
    ("I6532", 6, ["物联网科技", "物联科技", "智联科技"], {"320214": 3, "320211": 2, "320213": 2}, "tech"),
    ("I6513", 10, ["软件", "信息技术", "数据科技", "网络科技"], {"320214": 3, "320211": 3, "320213": 3, "320206": 1}, "tech"),
    # Biomedicine
    ("C2720", 4, ["制药", "药业"], {"320214": 2, "320206": 1, "320281": 1}, "tech"),
    ("C2710", 2, ["化学制药", "医药化工"], {"320281": 1, "320282": 1}, "tech"),
    ("C2761", 3, ["生物制药", "生物医药"], {"320214": 2, "320211": 1}, "tech"),
    ("C3581", 5, ["医疗器械", "医疗科技"], {"320214": 2, "320206": 1, "320211": 1}, "tech"),
    ("M7340", 2, ["医药研发", "生物医药研究"], {"320211": 1, "320214": 1}, "tech"),
    # New energy
    ("C3825", 5, ["光伏科技", "光能科技", "新能源"], {"320206": 1, "320282": 1, "320281": 1, "320214": 1}, "tech"),
    ("C3841", 5, ["新能源科技", "储能科技", "电池"], {"320206": 2, "320214": 1, "320282": 1}, "tech"),
    ("C3415", 2, ["风电装备", "风能科技"], {"320281": 1, "320214": 1}, "tech"),
    # High-end equipment
    ("C3491", 4, ["机器人", "智能装备", "自动化科技"], {"320214": 2, "320206": 1, "320205": 1}, "tech"),
    ("C3421", 4, ["机床", "数控机床", "精密机械"], {"320205": 1, "320206": 1, "320282": 1}, "tech"),
    # Traditional manufacturing
    ("C3670", 8, ["汽车部件", "汽车零部件", "汽配"], {"320205": 2, "320206": 2, "320214": 1, "320281": 1}, "mfg"),
    ("C3130", 5, ["特钢", "钢业", "金属材料"], {"320281": 4, "320206": 1, "320205": 1}, "mfg"),
    ("C3140", 1, ["合金材料"], {"320281": 1}, "mfg"),
    ("C1712", 3, ["纺织", "织造", "棉纺织"], {"320281": 2, "320205": 2, "320206": 1}, "mfg"),
    ("C1713", 3, ["印染", "染整"], {"320281": 2, "320205": 1}, "mfg"),
    ("C1810", 3, ["服饰", "服装"], {"320281": 2, "320205": 1}, "mfg"),
    ("C3591", 3, ["环保设备", "环保科技"], {"320282": 3, "320205": 1}, "mfg"),
    ("C3075", 1, ["陶瓷", "紫砂"], {"320282": 1}, "mfg"),
    # Services, trade, construction
    ("N7721", 2, ["水处理", "环境工程"], {"320282": 2, "320211": 1}, "svc"),
    ("M7320", 4, ["工程技术", "技术研究"], ALL_DISTRICTS, "svc"),
    ("F5174", 6, ["五金", "五金机电"], ALL_DISTRICTS, "svc"),
    ("F5181", 3, ["贸易", "国际贸易"], ALL_DISTRICTS, "svc"),
    ("F5212", 3, ["超市", "商贸"], ALL_DISTRICTS, "svc"),
    ("H6210", 4, ["餐饮管理", "餐饮"], ALL_DISTRICTS, "svc"),
    ("E4813", 3, ["建设工程", "市政工程"], ALL_DISTRICTS, "svc"),
    ("E5012", 3, ["装饰工程", "建筑装饰"], ALL_DISTRICTS, "svc"),
    ("L7212", 3, ["投资管理", "资产管理"], {"320213": 2, "320211": 1, "320214": 1}, "svc"),
    ("G5431", 4, ["物流", "运输"], ALL_DISTRICTS, "svc"),
    ("G5920", 2, ["仓储", "供应链管理"], {"320214": 1, "320206": 1, "320281": 1}, "svc"),
    ("K7020", 3, ["物业管理", "物业服务"], ALL_DISTRICTS, "svc"),
    ("A0111", 1, ["农业科技", "农业发展"], {"320281": 1, "320282": 1, "320205": 1}, "svc"),
]

# Individual businesses: (industry, weight, business word, form, districts).
# Individual businesses: (industry, weight, trade words with their form, districts).
INDIVIDUAL_KINDS = [
    ("H6210", 5, ["餐饮店", "面馆", "小吃店", "饭店"], ALL_DISTRICTS),
    ("F5213", 3, ["便利店"], ALL_DISTRICTS),
    ("F5223", 2, ["水果店"], ALL_DISTRICTS),
    ("O8040", 2, ["美发店", "理发店"], ALL_DISTRICTS),
    ("O8111", 2, ["汽车维修部", "汽车修理店"], ALL_DISTRICTS),
    ("C3075", 4, ["陶艺工作室", "紫砂工作室"], {"320282": 1}),
    ("F5226", 2, ["茶叶店", "茶庄"], {"320282": 2, "320211": 1}),
]
# Cooperatives: (industry, trade word, brands, districts).
COOPERATIVE_KINDS = [
    ("A0111", "水稻种植", ["绿禾", "稻香", "丰收", "金穗", "沃野", "鑫农"],
     {"320281": 2, "320282": 1, "320205": 1}),
    ("A0164", "茶叶", ["阳羡", "竹海", "云雾", "岕山"], {"320282": 1}),
    ("A0151", "水蜜桃", ["桃源", "阳山", "蜜园", "桃花"], {"320206": 1}),
    ("A0412", "水产养殖", ["湖鲜", "太湖", "鲜丰", "蟹乡"], {"320282": 1, "320281": 1}),
]

BRAND_FIRST = "华芯锡源博创恒达汇智联德信明远晶微海泰盛鼎禾聚昊启辰航拓卓弘睿欣隆嘉宏润尚正天金凯安立新"
BRAND_SECOND = "源达创博科晶芯泰盛鼎辰航拓卓宇峰瑞联信通力合诚益丰航维睿衡嘉图川特朗威"
# Names of well-known Wuxi / Jiangsu firms the demo must not imitate.
BRAND_AVOID = {"华虹", "恒瑞", "卓胜", "华晶", "芯朋", "力芯", "上能", "威孚", "海力", "海澜",
               "远景", "先导", "药明", "长电", "华润", "新洁", "兴澄", "阳光", "红豆", "天合",
               "隆基", "晶科", "华达", "远东", "立新", "通力", "安达"}
SHOP_BRANDS = ["王记", "老陈", "阿福", "小蒋", "顺发", "福满", "惠民", "金桥", "宏泰", "如意",
               "和顺", "老张", "小周", "春华", "百味", "鑫源", "俞记", "吴记", "兴隆", "乐家",
               "聚福", "锦绣", "安康", "荣记", "缪记", "邵记", "德兴", "三友", "康乐", "永和"]
STUDIO_BRANDS = ["守拙", "听泉", "问陶", "清风", "陶然", "拾壶", "一壶", "砂语", "慧泥", "古韵",
                 "澄心", "素心"]


def pick(rng, weighted):
    """Picks a key from {key: weight}."""
    keys = sorted(weighted)
    return rng.choices(keys, weights=[weighted[k] for k in keys])[0]


def rand_date(rng, lo, hi):
    return lo + dt.timedelta(days=rng.randint(0, (hi - lo).days))


def sizing_of(industry):
    if industry.startswith("I65"):
        return "software"
    if industry.startswith("F51"):
        return "wholesale"
    if industry.startswith("F52"):
        return "retail"
    return "general"


# Per-class employee ranges and revenue ranges (万元), following MIIT 2011 No. 300.
SIZE_BOUNDS = {
    "general": {"micro": ((3, 19), (30, 1500)), "small": ((20, 299), (300, 15000)),
                "medium": ((300, 999), (2000, 39000)), "large": ((1000, 6000), (40000, 600000))},
    "software": {"micro": ((2, 9), (10, 300)), "small": ((10, 99), (50, 3000)),
                 "medium": ((100, 299), (1000, 9900)), "large": ((300, 3000), (10000, 150000))},
    "wholesale": {"micro": ((2, 15), (50, 990)), "small": ((5, 19), (1000, 20000)),
                  "medium": ((20, 199), (5000, 39000)), "large": ((200, 1500), (40000, 300000))},
    "retail": {"micro": ((2, 9), (20, 500)), "small": ((10, 49), (100, 3000)),
               "medium": ((50, 299), (500, 19000)), "large": ((300, 3000), (20000, 200000))},
}
# Revenue per employee (万元), by sizing kind.
PER_HEAD = {"general": (40, 160), "software": (25, 90), "wholesale": (150, 600), "retail": (30, 120)}


def log_uniform_int(rng, lo, hi):
    import math
    return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


def employees_revenue(rng, industry, size):
    kind = sizing_of(industry)
    (elo, ehi), (rlo, rhi) = SIZE_BOUNDS[kind][size]
    emp = log_uniform_int(rng, elo, ehi)
    rev = emp * rng.uniform(*PER_HEAD[kind])
    # Keep the revenue inside the class without piling values on its bounds.
    if rev > rhi:
        rev = rhi * rng.uniform(0.45, 0.97)
    if rev < rlo:
        rev = rlo * rng.uniform(1.03, 1.8)
    rev = min(max(rev, rlo), rhi)
    if rev >= 1000:
        rev = round(rev)
    else:
        rev = round(rev, 1)
    return emp, rev


# ---------------------------------------------------------------------------
# Qualifications

# High-tech certificates: Jiangsu's issue dates by batch. A certificate lasts 3
# years, so on 2026-11-22 those issued on or before 2023-11-21 have expired.
HIGHTECH_ISSUED = ["2020-12-02", "2021-11-30", "2022-10-12", "2022-12-12", "2023-11-06",
                   "2023-12-13", "2024-11-19", "2024-12-16", "2025-11-28", "2025-12-19"]
LITTLE_GIANT_ISSUED = ["2022-08-30", "2023-07-28", "2024-08-26", "2025-08-29"]
SRDI_ISSUED = ["2022-12-16", "2023-12-20", "2024-12-18", "2025-12-12"]


def qualifications_for(rng, ent, kind, size):
    """Returns a list of qualifications (possibly empty) for a company."""
    p = {"tech": 0.46, "mfg": 0.22, "svc": 0.06}[kind]
    if size in ("medium", "large"):
        p = min(0.95, p * 1.8)
    if rng.random() >= p:
        return []
    quals = []
    industry = ent["industry"]
    founded = dt.date.fromisoformat(ent["founded"])
    if kind in ("tech", "mfg") and rng.random() < (0.7 if kind == "tech" else 0.4):
        dates = [d for d in HIGHTECH_ISSUED if dt.date.fromisoformat(d) > founded + dt.timedelta(days=365)]
        if dates:
            d = rng.choice(dates)
            quals.append({"code": "qual.hightech", "issued": d,
                          "number": "GR%s3200%04d" % (d[:4], rng.randint(1, 9999))})
    if kind == "tech" and size in ("micro", "small", "medium") and rng.random() < 0.55:
        d = rand_date(rng, dt.date(2025, 4, 1), dt.date(2026, 9, 30))
        if d > founded:
            quals.append({"code": "qual.tech_sme", "issued": d.isoformat()})
    if size != "micro" and kind != "svc" and rng.random() < 0.3:
        d = rng.choice(SRDI_ISSUED)
        if dt.date.fromisoformat(d) > founded + dt.timedelta(days=730):
            quals.append({"code": "qual.srdi", "issued": d})
            if size == "medium" and rng.random() < 0.35:
                quals.append({"code": "qual.little_giant", "issued": rng.choice(LITTLE_GIANT_ISSUED)})
            elif rng.random() < 0.2:
                quals.append({"code": "qual.js_little_giant", "issued": rng.choice(SRDI_ISSUED)})
    if not any(q["code"] == "qual.hightech" for q in quals) and kind == "tech" and rng.random() < 0.3:
        quals.append("qual.hightech_reserve")
    if kind == "tech" and size in ("small", "medium") and rng.random() < 0.15:
        quals.append({"code": "qual.gazelle", "issued": rand_date(rng, dt.date(2025, 10, 1), dt.date(2026, 7, 31)).isoformat()})
    if kind == "tech" and size == "micro" and founded.year >= 2021 and rng.random() < 0.3:
        quals.append({"code": "qual.wx_chuying", "issued": rand_date(rng, dt.date(2025, 9, 1), dt.date(2026, 8, 31)).isoformat()})
    if industry.startswith("I65") and rng.random() < 0.4:
        quals.append("qual.software")
    if size in ("small", "medium") and rng.random() < 0.12:
        quals.append({"code": "qual.innovative_sme", "issued": rand_date(rng, dt.date(2023, 6, 1), dt.date(2026, 6, 30)).isoformat()})
    if size == "large" and rng.random() < 0.5:
        quals.append("qual.listed")
    if size in ("medium", "large") and rng.random() < 0.25:
        quals.append("qual.foreign_invested")
    elif rng.random() < 0.05:
        quals.append("qual.foreign_invested")
    if not quals:
        quals.append("qual.js_private_tech" if kind == "tech" else "qual.hightech_reserve")
    return quals


# ---------------------------------------------------------------------------
# Interests (policy tags an enterprise says it cares about)

INTERESTS = {
    "tech": ["inno.rd_subsidy", "tax.rd_super_deduction", "inno.hightech_award", "fin.sci_loan",
             "talent.housing_subsidy", "talent.rent_subsidy", "talent.taihu", "ip.patent_funding",
             "fin.equity_fund", "inno.voucher"],
    "mfg": ["upg.smart_transformation", "upg.equipment_renewal", "upg.tech_renovation",
            "fin.loan_discount", "green.energy_saving", "mkt.overseas_exhibition",
            "emp.job_stabilisation", "tax.adv_mfg_vat"],
    "svc": ["fin.loan_discount", "tax.small_profit", "emp.ss_subsidy", "fin.credit_loan",
            "emp.graduates", "mkt.gov_procurement"],
    "individual": ["tax.individual_hh", "startup.guarantee_loan", "fin.loan_discount",
                   "cons.catering", "tax.small_scale_vat"],
    "cooperative": ["agri.cooperative", "agri.machinery", "agri.insurance", "agri.brand",
                    "agri.ecommerce"],
}


def interests_for(rng, group):
    n = rng.choices([0, 1, 2, 3, 4], weights=[30, 25, 22, 15, 8])[0]
    return rng.sample(INTERESTS[group], min(n, len(INTERESTS[group])))


def phone_for(rng, district, mobile_bias):
    if rng.random() < mobile_bias:
        return rng.choice(["13", "15", "18"]) + str(rng.randint(0, 9)) + "%08d" % rng.randint(0, 99999999)
    return "0510-" + rng.choice(PHONE_PREFIX[district]) + "%05d" % rng.randint(0, 99999)


# ---------------------------------------------------------------------------
# Enterprises

def founded_for(rng, size, group):
    if group == "cooperative":
        return rand_date(rng, dt.date(2008, 3, 1), dt.date(2022, 12, 31))
    if group == "individual":
        lo = rng.choice([dt.date(2005, 1, 1), dt.date(2015, 1, 1), dt.date(2021, 1, 1)])
        return rand_date(rng, lo, FOUNDED_MAX)
    if size == "large":
        return rand_date(rng, dt.date(1985, 1, 1), dt.date(2012, 12, 31))
    if size == "medium":
        return rand_date(rng, dt.date(1993, 1, 1), dt.date(2020, 12, 31))
    r = rng.random()
    if r < 0.15:  # young firms: within the last 3 years
        return rand_date(rng, dt.date(2023, 12, 1), FOUNDED_MAX)
    if r < 0.55:
        return rand_date(rng, dt.date(2015, 10, 1), dt.date(2023, 11, 30))
    return rand_date(rng, dt.date(1996, 1, 1), dt.date(2015, 9, 30))


class Names:
    def __init__(self, rng):
        self.rng = rng
        self.used = set()

    def unique(self, make):
        for _ in range(200):
            n = make()
            if n not in self.used:
                self.used.add(n)
                return n
        raise RuntimeError("could not find a unique name")

    def brand(self, tech):
        while True:
            b = self.rng.choice(BRAND_FIRST) + self.rng.choice(BRAND_SECOND)
            # Chip-sounding characters only for tech firms.
            if b[0] != b[1] and b not in BRAND_AVOID and (tech or not set(b) & set("芯晶微")):
                return b

    def company(self, district, words, size, founded, tech):
        rng = self.rng
        # Xinwu and Liangxi districts exist since 2015: older firms do not carry
        # their names.
        short = DISTRICTS[district][1]
        if district in ("320213", "320214") and founded.year < 2016:
            short = ""

        def make():
            if district == "320281":
                prefix = rng.choice(["江阴", "江阴市", "无锡"])
            elif district == "320282":
                prefix = rng.choice(["宜兴", "宜兴市", "无锡"])
            elif size == "large" and rng.random() < 0.4:
                prefix = "江苏"
            else:
                prefix = rng.choice(["无锡", "无锡", "无锡市", "无锡" + short])
            form = "股份有限公司" if (size in ("medium", "large") and rng.random() < 0.5) else "有限公司"
            return prefix + self.brand(tech) + rng.choice(words) + form
        return self.unique(make)

    def individual(self, district, trade, studio):
        rng = self.rng

        def make():
            place = DISTRICTS[district][0]
            towns = TOWNS[district]
            if towns and (district in ("320281", "320282") or rng.random() < 0.3):
                place += rng.choice(towns)
            if district == "320282" and studio:
                place = "宜兴市丁蜀镇"
            brand = rng.choice(STUDIO_BRANDS if studio else SHOP_BRANDS)
            return place + brand + trade
        return self.unique(make)

    def cooperative(self, district, word, brands):
        rng = self.rng

        def make():
            place = DISTRICTS[district][0]
            if district not in ("320281", "320282"):
                place = "无锡市" + place
            return place + rng.choice(TOWNS[district]) + rng.choice(brands) + word + "专业合作社"
        return self.unique(make)


def make_uscc(rng, kind_digit, district, founded, used, old_style):
    while True:
        org = org_code_gb11714(rng) if old_style else org_code_new(rng, founded)
        body = "9" + kind_digit + district + org
        code = body + uscc_check_char(body)
        if code not in used:
            used.add(code)
            return code


def generate():
    rng = random.Random(SEED)
    names = Names(rng)
    used_codes = set()
    n_coop = 9                       # ~3%
    n_indiv = 30                     # ~10%
    n_comp = N_ENTERPRISES - n_coop - n_indiv
    groups = ["company"] * n_comp + ["individual"] * n_indiv + ["cooperative"] * n_coop
    rng.shuffle(groups)
    ents = []
    meta = []  # (group, kind, size) per enterprise, for the decorations below
    for group in groups:
        if group == "company":
            code, _, words, dists, kind = rng.choices(
                COMPANY_INDUSTRIES, weights=[c[1] for c in COMPANY_INDUSTRIES])[0]
            size = rng.choices(["micro", "small", "medium", "large"], weights=[40, 38, 16, 6])[0]
            if code in ("M7340", "L7212", "K7020") and size == "large":
                size = "medium"
            if code == "A0111" and size in ("medium", "large"):
                size = "small"
            district = pick(rng, dists)
            founded = founded_for(rng, size, group)
            ent = {"uscc": make_uscc(rng, "1", district, founded, used_codes,
                                     founded < dt.date(2015, 10, 1)),
                   "name": names.company(district, words, size, founded, kind == "tech")}
            emp, rev = employees_revenue(rng, code, size)
        elif group == "individual":
            code, _, trades, dists = rng.choices(
                INDIVIDUAL_KINDS, weights=[k[1] for k in INDIVIDUAL_KINDS])[0]
            kind, size = "individual", "micro"
            district = pick(rng, dists)
            founded = founded_for(rng, size, group)
            ent = {"uscc": make_uscc(rng, "2", district, founded, used_codes, False),
                   "name": names.individual(district, rng.choice(trades), code == "C3075")}
            emp = rng.randint(1, 8)
            rev = round(rng.uniform(8, 160), 1)
        else:
            code, word, brands, dists = rng.choice(COOPERATIVE_KINDS)
            kind, size = "cooperative", "micro"
            district = pick(rng, dists)
            founded = founded_for(rng, size, group)
            ent = {"uscc": make_uscc(rng, "3", district, founded, used_codes, False),
                   "name": names.cooperative(district, word, brands)}
            emp = rng.randint(5, 40)
            rev = round(rng.uniform(40, 900), 1)
        ent["region"] = district
        ent["industry"] = code
        if rng.random() >= 0.04:
            ent["employees"] = emp
            ent["revenue_10k"] = rev
        ent["founded"] = founded.isoformat()
        ents.append(ent)
        meta.append((group, kind, size))

    # Region: usually the code's district; omitted for 10% so that the service
    # derives it from the code; another district for a few companies that moved
    # after registering.
    order = list(range(len(ents)))
    rng.shuffle(order)
    for i in order[:N_ENTERPRISES // 10]:
        del ents[i]["region"]
    moved = [i for i in order[N_ENTERPRISES // 10:] if meta[i][0] == "company"][:10]
    for i in moved:
        ents[i]["region"] = rng.choice(sorted(d for d in DISTRICTS if d != ents[i]["region"]))

    # Qualifications (companies only).
    for ent, (group, kind, size) in zip(ents, meta):
        if group == "company":
            q = qualifications_for(rng, ent, kind, size)
            if q:
                ent["qualifications"] = q

    # Explicit tags: a few, from the enterprise vocabulary.
    for ent, (group, kind, size) in zip(ents, meta):
        tags = []
        ind = ent["industry"]
        if group == "company":
            if kind in ("tech", "mfg") and rng.random() < 0.14:
                tags.append("trade.import_export")
                tags.append(rng.choice(["trade.ie_lt5m", "trade.ie_5m_100m"] if size != "large" else ["trade.ie_ge100m"]))
            if ind.startswith("F51") and rng.random() < 0.3:
                tags.append("trade.cross_border")
            if kind == "mfg" and size in ("medium", "large") and rng.random() < 0.4:
                tags.append(rng.choice(["green.prov_green_factory", "green.clean_production", "green.key_energy"]))
            if kind in ("tech", "mfg") and size != "micro" and rng.random() < 0.12:
                tags.append(rng.choice(["dig.star_cloud", "dig.smart_workshop", "dig.diagnosis"]))
            if kind == "tech" and rng.random() < 0.12:
                tags.append(rng.choice(["ip.invention_patent", "ip.software_copyright"] if ind.startswith("I") else ["ip.invention_patent", "ip.utility_patent"]))
            if size in ("micro", "small") and rng.random() < 0.09:
                tags.append("talent.grad_hire")
            quals = ent.get("qualifications", [])
            if "qual.listed" in quals:
                tags.append(rng.choice(["listing.main_board", "listing.star", "listing.chinext"]))
        if group == "cooperative" and rng.random() < 0.3:
            tags.append("agri.demo_coop")
        if tags:
            ent["tags"] = tags

    # Negative tags on ~3%: abnormal operation list, dishonest entity.
    negs = rng.sample(range(len(ents)), 9)
    for i, j in enumerate(negs):
        tag = ["neg.abnormal", "neg.dishonest", "neg.abnormal"][i % 3]
        ents[j].setdefault("tags", []).append(tag)
        if i == 4:
            ents[j]["tags"].append("neg.consumption_restricted")

    # Interests and contact.
    for ent, (group, kind, size) in zip(ents, meta):
        igroup = group if group != "company" else kind
        it = interests_for(rng, igroup)
        if it:
            ent["interests"] = it
        district = ent["uscc"][2:8]
        ent["contact"] = {"phone": phone_for(rng, district, 0.85 if group != "company" else 0.3)}
    return ents


# ---------------------------------------------------------------------------
# Policies

NEG = ["neg.dishonest", "neg.abnormal"]

POLICIES = [
    {
        "title": "2026年度无锡市智能化改造和数字化转型项目申报",
        "issuer": "无锡市工业和信息化局",
        "level": "city",
        "tags": ["upg.smart_transformation", "upg.digital_transformation", "upg.equipment_renewal",
                 "fin.project_subsidy"],
        "rule": {"all": ["ind.c", "entity.company"], "any": [], "none": NEG},
        "opens": "2026-10-20", "closes": "2026-12-15", "mode": "apply",
        "url": "https://gxj.wuxi.gov.cn/doc/2026/10/20/4418261.shtml",
        "summary": "支持制造业企业实施智能化改造和数字化转型，按项目设备和软件投入给予最高500万元补助。申报企业须在本市依法注册并正常经营。",
        "publish": True,
    },
    {
        "title": "关于开展2026年高新技术企业认定工作的通知",
        "issuer": "江苏省科学技术厅",
        "level": "provincial",
        "tags": ["inno.hightech_award", "inno.hightech_cultivation", "tax.hightech_rate"],
        "rule": {"all": [], "any": ["qual.tech_sme", "qual.hightech_reserve", "ip.invention_patent"],
                 "none": NEG + ["qual.hightech", "neg.research_misconduct"]},
        "opens": "2026-04-15", "closes": "2026-08-31", "mode": "apply",
        "url": "https://kxjst.jiangsu.gov.cn/art/2026/4/15/art_82538_11820431.html",
        "summary": "组织符合条件的企业申报2026年高新技术企业认定，认定后三年内企业所得税减按15%征收。证书已过期的企业可重新申报。",
        "publish": True,
    },
    {
        "title": "新吴区集成电路产业发展扶持政策",
        "issuer": "新吴区人民政府",
        "level": "district",
        "tags": ["ind.ic", "fin.special_fund", "fin.reward", "inno.rd_subsidy", "talent.rent_subsidy"],
        "rule": {"all": ["region.320214", "sig.ic"], "any": [], "none": NEG},
        "opens": "2026-07-01", "closes": "2027-06-30", "mode": "apply",
        "url": "https://www.wnd.gov.cn/doc/2026/07/01/4356120.shtml",
        "summary": "对在新吴区注册的集成电路设计、制造企业给予流片、研发投入和人才租房补贴，单家企业年度最高1000万元。",
        "publish": True,
    },
    {
        "title": "小微企业创业担保贷款贴息",
        "issuer": "无锡市人力资源和社会保障局",
        "level": "city",
        "tags": ["startup.guarantee_loan", "fin.loan_discount"],
        "rule": {"all": [], "any": ["size.micro", "size.small", "entity.individual"],
                 "none": NEG + ["neg.consumption_restricted"]},
        "opens": "2026-01-01", "closes": "2026-12-31", "mode": "apply",
        "url": "https://hrss.wuxi.gov.cn/doc/2026/01/05/4201937.shtml",
        "summary": "小微企业最高可申请300万元、个体工商户最高30万元创业担保贷款，财政按规定给予贴息。",
        "publish": True,
    },
    {
        "title": "吸纳高校毕业生就业社保补贴（免申即享）",
        "issuer": "无锡市人力资源和社会保障局",
        "level": "city",
        "tags": ["emp.graduates", "emp.ss_subsidy", "svc.no_application"],
        "rule": {"all": ["talent.grad_hire"], "any": ["size.micro", "size.small"], "none": NEG},
        "opens": "2026-01-01", "closes": "2026-12-31", "mode": "auto",
        "url": "https://hrss.wuxi.gov.cn/doc/2026/02/18/4226510.shtml",
        "summary": "小微企业招用毕业年度及离校2年内未就业高校毕业生并缴纳社会保险的，按实际缴费给予社保补贴，经数据比对后直接拨付，无需申请。",
        "publish": True,
    },
    {
        "title": "2026年中小微企业失业保险稳岗返还（免申即享）",
        "issuer": "无锡市人力资源和社会保障局",
        "level": "city",
        "tags": ["emp.job_stabilisation", "svc.no_application"],
        "rule": {"all": ["size.sme"], "any": [],
                 "none": NEG + ["neg.social_insurance_arrears"]},
        "opens": "2026-06-01", "closes": "2026-12-31", "mode": "auto",
        "url": "https://hrss.wuxi.gov.cn/doc/2026/06/01/4331802.shtml",
        "summary": "上年度未裁员或裁员率不高于规定标准的中小微企业，按上年度实际缴纳失业保险费的60%返还，系统比对后直接发放至企业账户。",
        "publish": True,
    },
    {
        "title": "2026年度无锡市专精特新中小企业奖励资金申报",
        "issuer": "无锡市工业和信息化局",
        "level": "city",
        "tags": ["cultiv.srdi_award", "cultiv.little_giant_award", "fin.reward", "cultiv.tiered"],
        "rule": {"all": [], "any": ["qual.srdi", "qual.little_giant", "qual.js_little_giant"],
                 "none": NEG},
        "opens": "2026-11-10", "closes": "2026-12-20", "mode": "apply",
        "url": "https://gxj.wuxi.gov.cn/doc/2026/11/10/4470355.shtml",
        "summary": "对新认定的国家级专精特新“小巨人”企业和省级专精特新中小企业分别给予一次性奖励，证书须在有效期内。",
        "publish": True,
    },
    {
        "title": "企业研发费用税前加计扣除政策（2026年度）",
        "issuer": "国家税务总局无锡市税务局",
        "level": "national",
        "tags": ["tax.rd_super_deduction"],
        "rule": {"all": ["entity.company"], "any": ["qual.hightech", "qual.tech_sme", "ind.c", "ind.i65", "ind.m73"],
                 "none": NEG + ["ind.f", "ind.h", "ind.k", "ind.l", "ind.r"]},
        "opens": "2026-01-01", "closes": "2027-05-31", "mode": "apply",
        "url": "https://jiangsu.chinatax.gov.cn/art/2026/1/6/art_8471_98215.html",
        "summary": "企业开展研发活动实际发生的研发费用，在按规定据实扣除的基础上再按100%加计扣除；批发零售、住宿餐饮、房地产、租赁和商务服务、娱乐业不适用。",
        "publish": True,
    },
    {
        "title": "江阴市特钢和高端纺织产业转型升级专项资金",
        "issuer": "江阴市人民政府",
        "level": "district",
        "tags": ["upg.tech_renovation", "upg.equipment_renewal", "fin.special_fund", "green.energy_saving"],
        "rule": {"all": ["region.320281"], "any": ["sig.special_steel", "sig.textile"], "none": NEG},
        "opens": "2026-10-08", "closes": "2026-12-31", "mode": "apply",
        "url": "https://www.jiangyin.gov.cn/doc/2026/10/08/1324578.shtml",
        "summary": "支持江阴市特钢、纺织服装企业开展技术改造、设备更新和节能降碳，按设备投资额的10%给予补助。",
        "publish": True,
    },
    {
        "title": "宜兴市2026年个体工商户转型升级为企业（个转企）奖励",
        "issuer": "宜兴市市场监督管理局",
        "level": "district",
        "tags": ["cultiv.ind_to_ent", "fin.reward", "tax.individual_hh"],
        "rule": {"all": ["region.320282", "entity.individual"], "any": [], "none": NEG},
        "opens": "2026-09-01", "closes": "2026-12-31", "mode": "apply",
        "url": "https://www.yixing.gov.cn/doc/2026/09/01/1297744.shtml",
        "summary": "宜兴市个体工商户转型为有限责任公司并正常经营满6个月的，给予一次性奖励5000元，原有资质和字号可延续使用。",
        "publish": False,
    },
    {
        "title": "2027年度无锡市“太湖人才计划”创新创业领军人才项目申报",
        "issuer": "无锡市科学技术局",
        "level": "city",
        "tags": ["talent.taihu", "talent.leading_startup", "talent.housing_subsidy", "startup.returnee"],
        "rule": {"all": ["age.lt3", "entity.company"],
                 "any": ["sig.iot", "sig.ic", "sig.biomed", "sig.new_energy", "sig.hi_equip", "sig.software"],
                 "none": NEG},
        "opens": "2027-02-20", "closes": "2027-04-30", "mode": "apply",
        "url": "https://kjj.wuxi.gov.cn/doc/2027/02/20/4512003.shtml",
        "summary": "面向成立不满3年、从事物联网、集成电路、生物医药、新能源、高端装备和软件的初创企业领军人才，给予最高500万元项目资助和购房补贴。",
        "publish": True,
    },
    {
        "title": "2026年无锡市农民合作社示范社和家庭农场扶持资金申报",
        "issuer": "无锡市农业农村局",
        "level": "city",
        "tags": ["agri.cooperative", "agri.family_farm", "agri.machinery", "fin.project_subsidy"],
        "rule": {"all": [], "any": ["entity.cooperative", "agri.family_farm"], "none": NEG},
        "opens": "2026-11-15", "closes": "2027-01-15", "mode": "apply",
        "url": "https://nyncj.wuxi.gov.cn/doc/2026/11/15/4468821.shtml",
        "summary": "扶持农民合作社和家庭农场改善生产设施、购置农机和开展品牌建设，示范社优先支持。",
        "publish": False,
    },
]


# ---------------------------------------------------------------------------
# Check

def load_taxonomy(path):
    vocab = {"enterprise": {}, "policy": {}}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "tag":
                vocab[parts[1]][parts[3]] = {"class": parts[2], "ref": parts[6] if len(parts) > 6 else ""}
    return vocab


def years_between(a, b):
    y = b.year - a.year
    if (b.month, b.day) < (a.month, a.day):
        y -= 1
    return y


def add_years(d, n):
    try:
        return d.replace(year=d.year + n)
    except ValueError:  # 29 February
        return d.replace(year=d.year + n, day=28)


VALIDITY = {"qual.hightech": 3, "qual.srdi": 3, "qual.little_giant": 3, "qual.little_giant_key": 3,
            "qual.js_little_giant": 3, "qual.innovative_sme": 3, "qual.single_champion": 3,
            "qual.tech_sme": 1, "qual.gazelle": 1, "qual.wx_gazelle": 1, "qual.wx_chuying": 1,
            "qual.tech_adv_service": 3}


def derive_tags(ent, tax, today):
    """A Python re-statement of tags/rules.conf, for the offline check."""
    t = set(ent.get("tags", []))
    ent_vocab = tax["enterprise"]
    district = ent.get("region") or ent["uscc"][2:8]
    for code, info in ent_vocab.items():
        if info["class"] == "region" and info["ref"] == district:
            t.add(code)
    if not any(ent_vocab[c]["class"] == "region" for c in t):
        t.add("region.320200" if district.startswith("3202") else "region.other")
    ind = ent.get("industry", "")
    for code, info in ent_vocab.items():
        if info["class"] == "industry" and info["ref"] and ind.startswith(info["ref"]):
            t.add(code)
    t.add({"1": "entity.company", "2": "entity.individual", "3": "entity.cooperative"}.get(ent["uscc"][1], ""))
    t.discard("")
    emp, rev = ent.get("employees"), ent.get("revenue_10k")
    kind = sizing_of(ind)
    if emp is not None and rev is not None:
        th = {"general": (1000, 40000, 300, 2000, 20, 300), "software": (300, 10000, 100, 1000, 10, 50),
              "wholesale": (200, 40000, 20, 5000, 5, 1000), "retail": (300, 20000, 50, 500, 10, 100)}[kind]
        if emp >= th[0] and rev >= th[1]:
            t.add("size.large")
        elif emp >= th[2] and rev >= th[3]:
            t.add("size.medium")
        elif emp >= th[4] and rev >= th[5]:
            t.add("size.small")
        else:
            t.add("size.micro")
        if t & {"size.micro", "size.small", "size.medium"}:
            t.add("size.sme")
    if "founded" in ent:
        age = years_between(dt.date.fromisoformat(ent["founded"]), today)
        t.add("age.lt3" if age < 3 else "age.3to10" if age < 10 else "age.gt10")
    for q in ent.get("qualifications", []):
        code = q if isinstance(q, str) else q["code"]
        ok = True
        if isinstance(q, dict):
            issued = dt.date.fromisoformat(q["issued"]) if q.get("issued") else None
            if q.get("expires"):
                end = dt.date.fromisoformat(q["expires"])
            elif issued and code in VALIDITY:
                end = add_years(issued, VALIDITY[code]) - dt.timedelta(days=1)
            else:
                end = None
            ok = (issued is None or issued <= today) and (end is None or today <= end)
        if ok:
            t.add(code)
    sw = lambda *ps: any(ind.startswith(p) for p in ps)  # noqa: E731
    if sw("C3973", "C3972", "I6520"):
        t.add("sig.ic")
    if sw("C3983"):
        t.add("sig.sensor")
    if "sig.sensor" in t or sw("I6532"):
        t.add("sig.iot")
    if sw("I65"):
        t.add("sig.software")
    if sw("C27", "C358", "M7340"):
        t.add("sig.biomed")
    if sw("C3825", "D4416"):
        t.add("sig.pv")
    if sw("C3841", "C3849"):
        t.add("sig.energy_storage")
    if "sig.pv" in t or "sig.energy_storage" in t or sw("D4415", "C3415"):
        t.add("sig.new_energy")
    if sw("C3491"):
        t.add("sig.industrial_robot")
    if sw("C342"):
        t.add("sig.cnc")
    if t & {"sig.industrial_robot", "sig.cnc"} or sw("C374", "C3562"):
        t.add("sig.hi_equip")
    if sw("C3130", "C314"):
        t.add("sig.special_steel")
    if sw("C17", "C18"):
        t.add("sig.textile")
    return t


def rule_matches(rule, tags):
    return (all(c in tags for c in rule.get("all", []))
            and (not rule.get("any") or any(c in tags for c in rule["any"]))
            and not any(c in tags for c in rule.get("none", [])))


def check(ents, pols, today):
    tax = load_taxonomy(TAXONOMY)
    E, P = tax["enterprise"], tax["policy"]
    errors = []

    def need(code, vocab, where):
        if code not in (E if vocab == "enterprise" else P):
            errors.append("%s: %r is not a %s tag" % (where, code, vocab))

    seen = set()
    names = set()
    for i, e in enumerate(ents):
        w = "enterprise %d (%s)" % (i + 1, e.get("uscc"))
        if not uscc_valid(e["uscc"]):
            errors.append(w + ": invalid credit code")
        if e["uscc"] in seen:
            errors.append(w + ": duplicate credit code")
        seen.add(e["uscc"])
        if e["name"] in names:
            errors.append(w + ": duplicate name")
        names.add(e["name"])
        if e["uscc"][2:8] not in DISTRICTS:
            errors.append(w + ": code district is not in Wuxi")
        if "region" in e and "region." + e["region"] not in E:
            errors.append(w + ": unknown region " + e["region"])
        if not ("1985-01-01" <= e["founded"] <= FOUNDED_MAX.isoformat()):
            errors.append(w + ": founded out of range")
        for c in e.get("tags", []):
            need(c, "enterprise", w + " tags")
        for q in e.get("qualifications", []):
            need(q if isinstance(q, str) else q["code"], "enterprise", w + " qualifications")
        for c in e.get("interests", []):
            need(c, "policy", w + " interests")
        if len(e.get("interests", [])) > 4:
            errors.append(w + ": more than 4 interests")
    titles = set()
    derived = [derive_tags(e, tax, today) for e in ents]
    counts = []
    for p in pols:
        w = "policy %r" % p["title"]
        if p["title"] in titles:
            errors.append(w + ": duplicate title")
        titles.add(p["title"])
        for c in p["tags"]:
            need(c, "policy", w + " tags")
        for part in ("all", "any", "none"):
            for c in p["rule"].get(part, []):
                need(c, "enterprise", "%s rule.%s" % (w, part))
        n = sum(rule_matches(p["rule"], t) for t in derived)
        counts.append(n)
        if n == 0:
            errors.append(w + ": no demo enterprise matches its rule")
    return errors, counts, derived


def summary_stats(ents, derived):
    def frac(pred):
        return sum(1 for e in ents if pred(e))
    lines = [
        "companies %d, individual businesses %d, cooperatives %d" % (
            frac(lambda e: e["uscc"][1] == "1"), frac(lambda e: e["uscc"][1] == "2"),
            frac(lambda e: e["uscc"][1] == "3")),
        "with qualifications %d, explicit tags %d, negative tags %d, no region %d, no size data %d" % (
            frac(lambda e: "qualifications" in e), frac(lambda e: "tags" in e),
            frac(lambda e: any(t.startswith("neg.") for t in e.get("tags", []))),
            frac(lambda e: "region" not in e), frac(lambda e: "employees" not in e)),
        "size (derived): " + ", ".join("%s %d" % (s, sum(1 for t in derived if "size." + s in t))
                                       for s in ("micro", "small", "medium", "large")),
        "age.lt3 %d, valid qual.hightech %d, expired high-tech certificates %d" % (
            sum(1 for t in derived if "age.lt3" in t), sum(1 for t in derived if "qual.hightech" in t),
            sum(1 for e, t in zip(ents, derived) for q in e.get("qualifications", [])
                if isinstance(q, dict) and q["code"] == "qual.hightech" and "qual.hightech" not in t)),
    ]
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "deploy", "demo"),
                    help="directory to write (default deploy/demo)")
    ap.add_argument("--check", action="store_true", help="only check the files already written")
    ap.add_argument("--today", default=None,
                    help="date to evaluate certificates and ages at in the check (default: today)")
    args = ap.parse_args()
    ent_path = os.path.join(args.out, "enterprises.ndjson")
    pol_path = os.path.join(args.out, "policies.json")
    if not args.check:
        ents = generate()
        os.makedirs(args.out, exist_ok=True)
        with open(ent_path, "w", encoding="utf-8", newline="\n") as f:
            for e in ents:
                f.write(json.dumps(e, ensure_ascii=False, separators=(",", ":")) + "\n")
        with open(pol_path, "w", encoding="utf-8", newline="\n") as f:
            json.dump(POLICIES, f, ensure_ascii=False, indent=2)
            f.write("\n")
        print("wrote %d enterprises to %s and %d policies to %s" % (
            len(ents), os.path.relpath(ent_path), len(POLICIES), os.path.relpath(pol_path)))
    with open(ent_path, encoding="utf-8") as f:
        ents = [json.loads(line) for line in f if line.strip()]
    with open(pol_path, encoding="utf-8") as f:
        pols = json.load(f)
    if args.today:
        today = dt.date.fromisoformat(args.today)
    else:  # 'today' in China, as the service computes it
        today = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=8)).date()
    errors, counts, derived = check(ents, pols, today)
    for line in summary_stats(ents, derived):
        print("  " + line)
    print("  audience per policy as of %s (offline estimate):" % today)
    for p, n in zip(pols, counts):
        print("    %4d  %s" % (n, p["title"]))
    for e in errors:
        print("error: " + e, file=sys.stderr)
    if errors:
        sys.exit(1)
    print("check passed: %d credit codes valid and unique, every tag code known, every policy matches" % len(ents))


if __name__ == "__main__":
    main()

"""Reference ("brute force") semantics the tests compare huiqid against: rule
matching over an enterprise's returned tag list, audience counts by district,
policy packages and their ranking, and civil dates in the service's zone (UTC+8)."""

import datetime

from harness import TestFailure, wait_until

CN_TZ = datetime.timezone(datetime.timedelta(hours=8))


def today_cn():
    return datetime.datetime.now(CN_TZ).date()


def avoid_midnight(margin_s):
    """Tests that compare against 'today' call this first: when the date in UTC+8
    would change within margin_s seconds, wait (bounded) until it has changed."""
    now = datetime.datetime.now(CN_TZ)
    nxt = (now + datetime.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    left = (nxt - now).total_seconds()
    if left < margin_s:
        start = now.date()
        wait_until(lambda: today_cn() != start, left + 5, "the date (UTC+8) to turn", 0.2)


def iso(d):
    return d.isoformat()


def add_years(d, years):
    """tags/date.c date_add_years: same month and day, 29 Feb clamped to 28 Feb."""
    y = d.year + years
    day = d.day
    while True:
        try:
            return datetime.date(y, d.month, day)
        except ValueError:
            day -= 1


def years_between(a, b):
    years = b.year - a.year
    if (b.month, b.day) < (a.month, a.day):
        years -= 1
    return years


class Taxonomy:
    """The two vocabularies as GET /v1/tags returns them (order = bit order)."""

    def __init__(self, client):
        ent = client.get("/v1/tags?vocab=enterprise")
        pol = client.get("/v1/tags?vocab=policy")
        if ent.status != 200 or pol.status != 200:
            raise TestFailure("GET /v1/tags failed: %r %r" % (ent, pol))
        self.ent = ent.json["tags"]
        self.pol = pol.json["tags"]
        self.ent_codes = [t["code"] for t in self.ent]
        self.pol_codes = [t["code"] for t in self.pol]
        self.ent_bit = {c: i for i, c in enumerate(self.ent_codes)}
        self.pol_bit = {c: i for i, c in enumerate(self.pol_codes)}
        # Audience groups: region tags in taxonomy order, keyed by their GB/T 2260
        # ref, or the code without "region." when there is no ref.
        self.region_codes = [t["code"] for t in self.ent if t["class"] == "region"]
        self.region_key = {}
        for t in self.ent:
            if t["class"] == "region":
                key = t.get("ref") or (t["code"][7:] if t["code"].startswith("region.")
                                       else t["code"])
                self.region_key[t["code"]] = key

    def group_of(self, tags):
        for code in self.region_codes:
            if code in tags:
                return self.region_key[code]
        return "unknown"

    def empty_groups(self):
        g = {self.region_key[c]: 0 for c in self.region_codes}
        g["unknown"] = 0
        return g

    def ent_sorted(self, codes):
        return sorted(set(codes), key=lambda c: self.ent_bit[c])

    def pol_sorted(self, codes):
        return sorted(set(codes), key=lambda c: self.pol_bit[c])


def rule_parts(rule):
    rule = rule or {}
    return (list(rule.get("all") or []), list(rule.get("any") or []),
            list(rule.get("none") or []))


def rule_matches(rule, tags):
    all_, any_, none_ = rule_parts(rule)
    if any(t not in tags for t in all_):
        return False
    if any(t in tags for t in none_):
        return False
    if any_ and not any(t in tags for t in any_):
        return False
    return True


def audience(tax, rule, ents):
    """ents: uscc -> set of tag codes. Returns (count, by_region)."""
    groups = tax.empty_groups()
    n = 0
    for tags in ents.values():
        if rule_matches(rule, tags):
            n += 1
            groups[tax.group_of(tags)] += 1
    return n, groups


def in_window(pol, today):
    opens = pol.get("opens")
    closes = pol.get("closes")
    t = iso(today)
    if opens and t < opens:
        return False
    if closes and t > closes:
        return False
    return True


def package(tax, tags, interests, policies, today):
    """The expected package: a list of (id, why) in ranking order.
    policies: iterable of policy documents (id, status, rule, tags, opens, closes)."""
    entries = []
    interests = set(interests or [])
    for p in policies:
        if p["status"] != "published" or not in_window(p, today):
            continue
        if not rule_matches(p.get("rule"), tags):
            continue
        all_, any_, none_ = rule_parts(p.get("rule"))
        shared = [c for c in tax.pol_sorted(p.get("tags") or []) if c in interests]
        why = {
            "all": tax.ent_sorted(all_),
            "any": [c for c in tax.ent_sorted(any_) if c in tags],
            "none": tax.ent_sorted(none_),
            "interests": shared,
        }
        closes = p.get("closes") or "9999-99-99"
        entries.append((-len(shared), closes, p["id"], why))
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    return [(e[2], e[3]) for e in entries]

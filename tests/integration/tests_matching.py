"""Matching both ways: an enterprise's policy package (window, state, rule,
ranking, why) and policy audiences (counts by district, previews)."""

import datetime
import random

import model
from harness import Env, TestFailure, check, eq, make_uscc
from model import Taxonomy, iso, today_cn
from tests_api import expect_error, get_ok, post_ok
from tests_push import import_ents


def publish(c, pid):
    r = c.post("/v1/policies/%d/publish" % pid)
    eq(r.status, 200, "publish %d (%r)" % (pid, r))
    return r.json


def check_package(c, tax, uscc, ent_doc, policies, today, what):
    r = get_ok(c, "/v1/enterprises/%s/policies" % uscc).json
    eq(r["uscc"], uscc, what + ": package uscc")
    eq(r["date"], iso(today), what + ": package date (UTC+8)")
    want = model.package(tax, set(ent_doc["tags"]), ent_doc.get("interests"), policies, today)
    got = [(p["id"], p["why"]) for p in r["policies"]]
    if [g[0] for g in got] != [w[0] for w in want]:
        raise TestFailure("%s: package ids %s, expected %s" % (
            what, [g[0] for g in got], [w[0] for w in want]))
    for (gid, gwhy), (_, wwhy) in zip(got, want):
        eq(gwhy, wwhy, "%s: why of policy %d" % (what, gid))
    eq(r["count"], len(want), what + ": package count")
    return r


def test_package_ranking_windows_why(o):
    model.avoid_midnight(30 * o.slow)
    rng = random.Random(31)
    today = today_cn()
    day = datetime.timedelta(days=1)
    T = lambda k: iso(today + k * day)  # noqa: E731
    with Env(o) as env:
        c = env.c
        tax = Taxonomy(c)
        u = make_uscc("320214", rng=rng)
        ent = post_ok(c, "/v1/enterprises", {
            "uscc": u, "name": "新吴软件", "industry": "I6520", "tags": ["inno.rd_ge5"],
            "interests": ["fin.reward", "tax.hightech_rate", "fin.loan_discount"]})
        specs = [
            # key, body, published?, withdrawn?
            ("P1", {"rule": {}, "tags": ["fin.reward"]}, True, False),
            ("P2", {"rule": {"all": ["sig.software"]}, "tags": ["fin.reward", "tax.hightech_rate"],
                    "closes": T(10)}, True, False),
            ("P3", {"rule": {"any": ["region.320211", "region.320214"]},
                    "tags": ["tax.hightech_rate"], "closes": T(5)}, True, False),
            ("P4", {"rule": {"none": ["neg.dishonest"]}, "opens": T(-10), "closes": T(0)},
             True, False),
            ("P5", {"rule": {"all": ["ind.i65"]}, "tags": ["fin.loan_discount"], "opens": T(0),
                    "closes": T(5)}, True, False),
            ("P6", {"rule": {}, "tags": ["fin.reward"], "opens": T(1)}, True, False),
            ("P7", {"rule": {}, "tags": ["fin.reward"], "closes": T(-1)}, True, False),
            ("P8", {"rule": {}, "tags": ["fin.reward"]}, False, False),
            ("P9", {"rule": {}, "tags": ["fin.reward"]}, True, True),
            ("P10", {"rule": {"none": ["sig.software"]}}, True, False),
            ("P11", {"rule": {"any": ["region.320211"]}}, True, False),
            ("P12", {"rule": {"all": ["sig.software", "qual.hightech"]}}, True, False),
            ("P13", {"rule": {"all": ["ind.i"], "any": ["region.320205", "region.320214", "ind.c"],
                              "none": ["neg.abnormal", "neg.dishonest"]},
                     "tags": ["fin.loan_discount", "tax.hightech_rate", "fin.reward"],
                     "closes": T(30), "level": "district", "mode": "auto",
                     "url": "https://www.wnd.gov.cn/p13", "summary": "新吴区软件企业奖励",
                     "issuer": "新吴区"}, True, False),
        ]
        ids = {}
        for key, body, pub, wd in specs:
            p = post_ok(c, "/v1/policies", dict(body, title="政策 " + key))
            ids[key] = p["id"]
            if pub:
                publish(c, p["id"])
            if wd:
                eq(c.post("/v1/policies/%d/withdraw" % p["id"]).status, 200, "withdraw")
        policies = lambda: get_ok(c, "/v1/policies?limit=500").json["items"]  # noqa: E731
        r = check_package(c, tax, u, ent, policies(), today, "first package")
        # The hand-computed order: by shared interests, then earliest close, then id.
        eq([p["id"] for p in r["policies"]],
           [ids[k] for k in ("P13", "P2", "P3", "P5", "P1", "P4")], "hand-computed ranking")
        top = r["policies"][0]
        eq(top["why"], {"all": ["ind.i"], "any": ["region.320214"],
                        "none": tax.ent_sorted(["neg.abnormal", "neg.dishonest"]),
                        "interests": tax.pol_sorted(["fin.loan_discount", "tax.hightech_rate",
                                                     "fin.reward"])}, "why of P13")
        for k in ("title", "level", "mode", "url", "summary", "issuer", "closes", "tags"):
            check(k in top, "package entry lacks %s: %r", k, sorted(top))
        eq(top["title"], "政策 P13", "entry title")
        eq(top["tags"], tax.pol_sorted(specs[-1][1]["tags"]), "entry tags")
        check("rule" not in top and "status" not in top, "entry leaks rule/status: %r",
              sorted(top))

        # Changing interests re-ranks.
        r = c.patch("/v1/enterprises/" + u, {"interests": ["fin.loan_discount"]})
        eq(r.status, 200, "PATCH interests")
        ent = r.json
        r = check_package(c, tax, u, ent, policies(), today, "after interests change")
        eq([p["id"] for p in r["policies"]][:2], [ids["P5"], ids["P13"]],
           "P5 (closes sooner) then P13, both sharing one interest")

        # Withdraw, edit and delete move policies in and out.
        eq(c.post("/v1/policies/%d/withdraw" % ids["P2"]).status, 200, "withdraw P2")
        r = c.put("/v1/policies/%d" % ids["P10"], {"title": "政策 P10 改", "rule": {
            "any": ["sig.software"]}, "tags": ["fin.loan_discount"], "closes": T(2)})
        eq(r.status, 200, "PUT P10")
        eq(c.delete("/v1/policies/%d" % ids["P1"]).status, 204, "DELETE P1")
        eq(c.post("/v1/policies/%d/publish" % ids["P9"]).status, 200, "republish P9")
        r = check_package(c, tax, u, ent, policies(), today, "after policy changes")
        got = [p["id"] for p in r["policies"]]
        check(ids["P2"] not in got and ids["P1"] not in got, "withdrawn/deleted still listed")
        eq(got[0], ids["P10"], "edited P10 (interest, closes in 2 days) ranks first")
        check(ids["P9"] in got, "republished P9 missing")

        # The enterprise's own profile changes move it too.
        r = c.patch("/v1/enterprises/" + u, {"tags": ["inno.rd_ge5", "neg.dishonest"]})
        eq(r.status, 200, "PATCH negative tag")
        ent = r.json
        r = check_package(c, tax, u, ent, policies(), today, "after a negative tag")
        check(ids["P13"] not in [p["id"] for p in r["policies"]], "P13 excludes neg.dishonest")
        # An enterprise that matches nothing gets an empty package.
        other = post_ok(c, "/v1/enterprises", {"uscc": make_uscc("320211", rng=rng), "name": "x",
                                               "tags": ["neg.dishonest"]})
        r = check_package(c, tax, other["uscc"], other, policies(), today, "other enterprise")
        check(all(p["id"] != ids["P4"] for p in r["policies"]), "P4 excludes neg.dishonest")


def test_audience_counts_by_region(o):
    rng = random.Random(32)
    with Env(o) as env:
        c = env.c
        tax = Taxonomy(c)
        ents = {}

        def add(code_region, **fields):
            u = make_uscc(code_region, rng=rng)
            d = post_ok(c, "/v1/enterprises", dict(fields, uscc=u, name="企业" + u[-4:]))
            ents[u] = d
            return d

        for _ in range(3):
            add("320205", tags=["qual.hightech"])
        add("320101", region="320205")
        add("320214")
        add("320214", tags=["qual.hightech"])
        add("320282", industry="C3973")
        add("320214", region="320200")
        add("320214", region="320299")
        add("320102", tags=["qual.hightech"])                  # Nanjing: other
        add("440300", region="110105")                         # Beijing: other
        # in Wuxi, not a district, and its region.320200 taken away: unknown
        add("320212", overrides=[{"tag": "region.320200", "value": False, "by": "t"}])
        add("320213", overrides=[{"tag": "region.320213", "value": False, "by": "t"}])  # unknown
        # two districts (explicit tags may not name one; an operator may): first wins
        add("320211", overrides=[{"tag": "region.320206", "value": True, "by": "t"}])
        add("320281", tags=["qual.hightech", "neg.abnormal"])
        tagsets = {u: set(d["tags"]) for u, d in ents.items()}
        eq(tax.group_of(tagsets[list(ents)[-2]]), "320206", "model: first district wins")
        keys = set(tax.empty_groups())
        eq(keys, {"320205", "320206", "320211", "320213", "320214", "320281", "320282",
                  "320200", "other", "unknown"}, "group keys")

        def check_rule(rule, what):
            r = c.post("/v1/audience", {"rule": rule})
            eq(r.status, 200, what + ": preview status (%r)" % r)
            n, groups = model.audience(tax, rule, tagsets)
            eq(set(r.json), {"count", "by_region"}, what + ": preview keys")
            eq(r.json["count"], n, what + ": count")
            eq(r.json["by_region"], groups, what + ": by_region")
            eq(sum(r.json["by_region"].values()), r.json["count"], what + ": by_region sum")
            return r.json

        everyone = check_rule({}, "empty rule")
        eq(everyone["count"], len(ents), "empty rule matches everyone")
        eq(everyone["by_region"], {"320205": 4, "320206": 1, "320211": 0, "320213": 0,
                                   "320214": 2, "320281": 1, "320282": 1, "320200": 2,
                                   "other": 2, "unknown": 2}, "hand-counted districts")
        check_rule({"all": ["qual.hightech"]}, "all hightech")
        check_rule({"all": ["qual.hightech"], "none": ["neg.abnormal"]}, "hightech, not abnormal")
        check_rule({"any": ["region.320205", "region.other"]}, "any of two districts")
        check_rule({"any": ["region.320206", "region.320211"]}, "double-district enterprise")
        check_rule({"all": ["ind.c"], "any": ["sig.ic", "sig.sensor"]}, "industry")
        check_rule({"none": ["entity.company"]}, "none company")
        check_rule({"all": ["qual.hightech", "neg.bankrupt"]}, "nobody")
        check_rule({"all": ["qual.hightech"], "none": ["qual.hightech"]}, "contradiction")
        check_rule({"all": [], "any": [], "none": []}, "explicit empty lists")

        # Policy audiences: any status, same numbers as a preview of its rule.
        rule = {"all": ["qual.hightech"], "none": ["neg.abnormal"]}
        p = post_ok(c, "/v1/policies", {"title": "高企奖励", "rule": rule})
        for state in ("draft", "published"):
            r = c.get("/v1/policies/%d/audience" % p["id"])
            eq(r.status, 200, "audience of a %s policy (%r)" % (state, r))
            n, groups = model.audience(tax, rule, tagsets)
            eq(r.json, {"policy": p["id"], "count": n, "by_region": groups},
               "audience of a %s policy" % state)
            publish(c, p["id"])
        # Audiences follow enterprise changes.
        gone = list(ents)[0]
        eq(c.delete("/v1/enterprises/" + gone).status, 204, "DELETE")
        del tagsets[gone]
        moved = list(ents)[1]
        r = c.patch("/v1/enterprises/" + moved, {"region": "320211"})
        eq(r.status, 200, "PATCH region")
        tagsets[moved] = set(r.json["tags"])
        n, groups = model.audience(tax, rule, tagsets)
        r = get_ok(c, "/v1/policies/%d/audience" % p["id"]).json
        eq((r["count"], r["by_region"]), (n, groups), "audience after delete and move")
        check_rule({}, "empty rule after changes")
        expect_error(c.get("/v1/policies/99999/audience"), 404, "not_found",
                     what="audience of a missing policy")
        expect_error(c.get("/v1/policies/x1/audience"), 404, "not_found",
                     what="audience of a malformed id")


def test_audience_tallies_follow_writes(o):
    """A published policy's audience is kept in step with every enterprise write
    (no evaluation per answer); it must always equal a preview of its rule (which
    evaluates), through creations, updates that move districts and tags, deletions,
    an import, policy edits, withdrawals and publishes, and a restart (the load
    counts every published policy afresh)."""
    rng = random.Random(77)
    districts = ["320205", "320206", "320211", "320213", "320214", "320281", "320282"]
    tags = ["qual.hightech", "qual.srdi", "sig.ic", "sig.sensor", "neg.abnormal"]
    rules = [{"all": ["qual.hightech"]}, {"any": ["sig.ic", "sig.sensor"]},
             {"all": ["ind.c"], "none": ["neg.abnormal"]}, {},
             {"any": ["region.320205", "region.320214"], "none": ["qual.hightech"]},
             {"all": ["region.320206"]}]
    with Env(o) as env:
        c = env.c
        pids = []
        for k, rule in enumerate(rules):
            p = post_ok(c, "/v1/policies", {"title": "政策%d" % k, "rule": rule})
            pids.append(p["id"])
            if k % 3 != 2:
                publish(c, p["id"])

        def agree(what):
            for pid in pids:
                a = get_ok(c, "/v1/policies/%d/audience" % pid).json
                rule = get_ok(c, "/v1/policies/%d" % pid).json["rule"]
                b = c.post("/v1/audience", {"rule": rule}).json
                eq((a["count"], a["by_region"]), (b["count"], b["by_region"]),
                   "%s: policy %d audience against a preview of its rule" % (what, pid))

        def doc(u):
            d = {"uscc": u, "name": "企业" + u[-4:], "industry": rng.choice(["C3973", "I6510"])}
            d["tags"] = rng.sample(tags, rng.randint(0, 3))
            if rng.random() < 0.3:
                d["region"] = rng.choice(districts)
            return d

        live = []
        for step in range(120):
            x = rng.random()
            if x < 0.45 or not live:
                u = make_uscc(rng.choice(districts), rng=rng)
                post_ok(c, "/v1/enterprises", doc(u))
                live.append(u)
            elif x < 0.75:
                u = rng.choice(live)
                body = {"tags": rng.sample(tags, rng.randint(0, 3))}
                if rng.random() < 0.5:
                    body["region"] = rng.choice(districts)
                r = c.patch("/v1/enterprises/" + u, body)
                eq(r.status, 200, "PATCH %s %r: %r" % (u, body, r.json))
            elif x < 0.9:
                u = live.pop(rng.randrange(len(live)))
                eq(c.delete("/v1/enterprises/" + u).status, 204, "DELETE " + u)
            else:
                pid = rng.choice(pids)
                st = get_ok(c, "/v1/policies/%d" % pid).json["status"]
                if st == "published":
                    eq(c.post("/v1/policies/%d/withdraw" % pid).status, 200, "withdraw")
                else:
                    publish(c, pid)
            if step % 30 == 29:
                agree("after %d writes" % (step + 1))
        import_ents(c, [doc(make_uscc(rng.choice(districts), rng=rng)) for _ in range(40)])
        agree("after an import")
        env.stop_huiqid()
        env.start_huiqid()
        c = env.c
        agree("after a restart")
        u = make_uscc("320211", rng=rng)
        post_ok(c, "/v1/enterprises", dict(doc(u), tags=["qual.hightech", "sig.ic"]))
        agree("a write after the restart")


def test_audience_preview_errors(o):
    with Env(o) as env:
        c = env.c
        post_ok(c, "/v1/enterprises", {"uscc": make_uscc("320205", org="000000001"),
                                       "name": "x"})
        cases = [
            ("missing rule", {}, 400, "missing_field", "rule", None),
            ("unknown tag", {"rule": {"all": ["ind.c", "nope"]}}, 400, "unknown_tag",
             "rule.all[1]", "nope"),
            ("policy tag", {"rule": {"none": ["fin.reward"]}}, 400, "unknown_tag",
             "rule.none[0]", "fin.reward"),
            ("rule not an object", {"rule": "ind.c"}, 400, "invalid_type", "rule", None),
            ("part not a list", {"rule": {"any": "ind.c"}}, 400, "invalid_type", "rule.any",
             None),
            ("unknown part", {"rule": {"either": []}}, 400, "unknown_field", "rule.either",
             None),
        ]
        for what, body, status, code, field, msg in cases:
            expect_error(c.post("/v1/audience", body), status, code, field, msg,
                         what="preview " + what)
        # The unknown field must be named exactly, whatever its length and position
        # (its name is quoted from the request body).
        for key in ("k", "kk", "kkkk", "x1", "limit", "extra_field_name"):
            for raw in ('{"rule":{},"%s":1}' % key, '{"%s":1,"rule":{}}' % key):
                r = c.request("POST", "/v1/audience", body=raw, content_type="application/json")
                err = expect_error(r, 400, "unknown_field", what="preview with %s" % raw)
                if err["field"] != key or "'%s'" % key not in err["message"]:
                    raise TestFailure("preview with %s: error field %r, message %r; expected "
                                      "field %r (the name is read after the body was freed?)"
                                      % (raw, err["field"], err["message"], key))
        expect_error(c.request("POST", "/v1/audience", body="{", content_type="application/json"),
                     400, "invalid_json", what="preview malformed JSON")
        expect_error(c.request("POST", "/v1/audience", body='{"rule":{}}',
                               content_type="text/plain"), 415, "unsupported_media_type",
                     what="preview text/plain")
        r = c.post("/v1/audience", {"rule": None})
        eq(r.status, 200, "rule null is the empty rule (%r)" % r)
        eq(r.json["count"], 1, "rule null matches everyone")


def test_package_many_policies(o):
    """More matching policies than the package's first buffer (512) and than the
    policy view cache's first table (128 entries)."""
    model.avoid_midnight(60 * o.slow)
    rng = random.Random(33)
    today = today_cn()
    with Env(o, huiqid_args=["--access-log", "off"]) as env:
        c = env.c
        tax = Taxonomy(c)
        u = make_uscc("320214", rng=rng)
        ent = post_ok(c, "/v1/enterprises", {"uscc": u, "name": "热门企业",
                                             "interests": ["fin.reward", "tax.small_profit"]})
        pols = []
        for i in range(600):
            body = {"title": "政策 %d" % i,
                    "tags": [["fin.reward"], ["tax.small_profit"], [], ["fin.reward",
                                                                          "tax.small_profit"]][i % 4],
                    "rule": {} if i % 10 else {"none": ["entity.company"]}}
            if i % 3:
                body["closes"] = iso(today + datetime.timedelta(days=1 + (i * 7) % 50))
            p = post_ok(c, "/v1/policies", body)
            eq(c.post("/v1/policies/%d/publish" % p["id"]).status, 200, "publish")
            pols.append(dict(body, id=p["id"], status="published"))
        r = check_package(c, tax, u, ent, pols, today, "600 published policies")
        eq(r["count"], 540, "policies matching a company")
        r2 = get_ok(c, "/v1/enterprises/%s/policies" % u.lower()).json
        eq(r2, r, "package via a lower-case code")
        lst = get_ok(c, "/v1/policies?status=published&limit=500").json
        eq(len(lst["items"]), 500, "first page of 500")
        check(lst["next"] is not None, "a second page exists")


def test_today_follows_utc_offset(o):
    """'today' is the date in the configured zone (default UTC+8)."""
    rng = random.Random(34)
    for offset in ("-12:00", "+14:00", None):
        args = ["--utc-offset", offset] if offset else []
        with Env(o, huiqid_args=args) as env:
            c = env.c
            u = make_uscc("320214", rng=rng)
            post_ok(c, "/v1/enterprises", {"uscc": u, "name": "时区"})
            sign = -1 if offset and offset[0] == "-" else 1
            hours = int(offset[1:3]) if offset else 8
            tz = datetime.timezone(sign * datetime.timedelta(hours=hours))
            before = datetime.datetime.now(tz).date()
            got = get_ok(c, "/v1/enterprises/%s/policies" % u).json["date"]
            after = datetime.datetime.now(tz).date()
            check(got in (iso(before), iso(after)), "package date %s with --utc-offset %s; "
                  "expected %s", got, offset or "(default +08:00)", before)

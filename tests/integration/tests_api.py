"""Taxonomy, enterprise and policy endpoints, and the tagging rules."""

import datetime
import json
import random
import time

import model

from harness import Env, TestFailure, check, eq, make_uscc, wait_until, wrong_check
from model import Taxonomy, add_years, iso, today_cn

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def expect_error(r, status, code, field="<any>", msg_has=None, what=""):
    """Asserts the uniform error shape {"error":{"code","message","field"}}."""
    where = (what + ": ") if what else ""
    if r.status != status:
        raise TestFailure("%sexpected %d %s, got %r" % (where, status, code, r))
    body = r.json
    check(isinstance(body, dict) and isinstance(body.get("error"), dict),
          "%serror body is not {\"error\":{...}}: %r", where, r)
    err = body["error"]
    check(set(err) == {"code", "message", "field"},
          "%serror object has keys %s, expected code/message/field", where, sorted(err))
    eq(err["code"], code, where + "error code")
    check(isinstance(err["message"], str) and err["message"],
          "%serror message is empty", where)
    if field != "<any>":
        eq(err["field"], field, where + "error field")
    if msg_has is not None:
        check(msg_has in err["message"], "%serror message %r does not mention %r",
              where, err["message"], msg_has)
    return err


def get_ok(c, path):
    r = c.get(path)
    if r.status != 200:
        raise TestFailure("GET %s: expected 200, got %r" % (path, r))
    return r


def post_ok(c, path, body, status=201):
    r = c.post(path, body)
    if r.status != status:
        raise TestFailure("POST %s: expected %d, got %r (body %s)" % (
            path, status, r, json.dumps(body, ensure_ascii=False)[:300]))
    return r.json


def put_ok(c, path, body, status=(200, 201)):
    r = c.put(path, body)
    if r.status not in (status if isinstance(status, tuple) else (status,)):
        raise TestFailure("PUT %s: expected %s, got %r" % (path, status, r))
    return r.json


def new_ent(c, rng, code_region="320214", kind="91", **fields):
    """Creates an enterprise whose code carries 'code_region' (positions 3-8)."""
    u = make_uscc(code_region, kind=kind, rng=rng)
    body = {"uscc": u, "name": fields.pop("name", "测试企业 %s" % u[-6:])}
    body.update(fields)
    return post_ok(c, "/v1/enterprises", body)


def tags_of(doc):
    return set(doc["tags"])


# --------------------------------------------------------------------------
# Health and taxonomy
# --------------------------------------------------------------------------


def test_health_and_readiness(o):
    with Env(o) as env:
        c = env.c
        r = c.get("/healthz")
        eq(r.status, 200, "GET /healthz status")
        eq(r.json, {"status": "ok"}, "GET /healthz body")
        check(r.header("content-type", ) and "application/json" in r.header("content-type"),
              "/healthz content type is %r", r.header("content-type"))
        r = c.get("/readyz")
        eq(r.status, 200, "GET /readyz status")
        eq(r.json, {"status": "ready"}, "GET /readyz body")


def test_taxonomy_endpoints(o):
    with Env(o) as env:
        c = env.c
        want = {"enterprise": 330, "policy": 287}
        seen_codes = {}
        for vocab, n in want.items():
            r = c.get("/v1/tags?vocab=" + vocab)
            eq(r.status, 200, "GET /v1/tags?vocab=%s status" % vocab)
            d = r.json
            eq(d.get("vocab"), vocab, "vocab field")
            eq(d.get("count"), n, "%s count" % vocab)
            eq(len(d["tags"]), n, "%s tags length" % vocab)
            classes = d.get("classes")
            check(isinstance(classes, list) and classes, "%s classes missing", vocab)
            class_codes = set()
            for k in classes:
                eq(set(k), {"code", "name", "name_en"}, "class keys")
                check(all(isinstance(k[x], str) and k[x] for x in k), "empty class field %r", k)
                class_codes.add(k["code"])
            codes = set()
            for t in d["tags"]:
                keys = set(t)
                check({"code", "name", "name_en", "class", "class_name"} <= keys <=
                      {"code", "name", "name_en", "class", "class_name", "ref"},
                      "%s tag has keys %s", vocab, sorted(keys))
                for k in ("code", "name", "name_en", "class", "class_name"):
                    check(isinstance(t[k], str) and t[k], "tag %r has an empty %s", t, k)
                check(t["class"] in class_codes, "tag %s has undeclared class %s",
                      t["code"], t["class"])
                check(t["code"] not in codes, "duplicate code %s", t["code"])
                codes.add(t["code"])
            seen_codes[vocab] = d
        ent = {t["code"]: t for t in seen_codes["enterprise"]["tags"]}
        # References: districts carry their GB/T 2260 code, industries their GB/T 4754 code.
        eq(ent["region.320214"].get("ref"), "320214", "region.320214 ref")
        eq(ent["region.320214"]["class"], "region", "region.320214 class")
        eq(ent["ind.c39"].get("ref"), "C39", "ind.c39 ref")
        eq(ent["ind.i"].get("ref"), "I", "ind.i ref")
        check("ref" not in ent["qual.hightech"], "qual.hightech should carry no ref")
        check("region.other" in ent and "ref" not in ent["region.other"],
              "region.other should exist without a ref")
        pol = {t["code"] for t in seen_codes["policy"]["tags"]}
        check("fin.reward" in pol and "tax.hightech_rate" in pol, "policy tags missing")
        # class filter
        r = c.get("/v1/tags?vocab=enterprise&class=region")
        eq(r.status, 200, "class filter status")
        eq([t["code"] for t in r.json["tags"]],
           ["region.320205", "region.320206", "region.320211", "region.320213",
            "region.320214", "region.320281", "region.320282", "region.320200", "region.other"],
           "region tags in taxonomy order")
        eq(r.json["count"], 9, "class filter count")
        # errors
        expect_error(c.get("/v1/tags"), 400, "invalid_parameter", "vocab", what="missing vocab")
        expect_error(c.get("/v1/tags?vocab=company"), 400, "invalid_parameter", "vocab",
                     what="bad vocab")
        expect_error(c.get("/v1/tags?vocab="), 400, "invalid_parameter", "vocab",
                     what="empty vocab")


# --------------------------------------------------------------------------
# Enterprise CRUD
# --------------------------------------------------------------------------


def test_enterprise_crud(o):
    rng = random.Random(11)
    with Env(o) as env:
        c = env.c
        u = make_uscc("320214", rng=rng)
        body = {
            "uscc": u.lower(),
            "name": "无锡感知科技有限公司",
            "region": "320211",
            "industry": "i6520",
            "employees": 45,
            "revenue_10k": 800.5,
            "founded": "2015-06-01",
            "qualifications": [{"code": "qual.srdi", "number": "ZJTX-2024-001"}],
            "tags": ["inno.rd_ge5", "ip.trademark", "inno.rd_ge5"],
            "interests": ["tax.hightech_rate", "fin.reward"],
            "contact": {"phone": "+86 510-8123 4567", "webhook": "https://example.com/hook",
                        "email": "ops@example.com", "person": "张三"},
            "overrides": [{"tag": "zone.wnd", "value": True, "by": "op-7",
                           "reason": "located in the national hi-tech zone"}],
        }
        r = c.post("/v1/enterprises", body)
        eq(r.status, 201, "POST status (%r)" % r)
        eq(r.header("location"), "/v1/enterprises/" + u, "Location header")
        d = r.json
        eq(d["uscc"], u, "uscc is upper-cased")
        eq(d["name"], body["name"], "name")
        eq(d["region"], "320211", "region")
        eq(d["industry"], "I6520", "industry is normalised")
        eq(d["employees"], 45, "employees")
        eq(d["revenue_10k"], 800.5, "revenue_10k")
        eq(d["founded"], "2015-06-01", "founded")
        eq(d["explicit_tags"], ["inno.rd_ge5", "ip.trademark"], "explicit_tags (deduplicated)")
        eq(sorted(d["interests"]), ["fin.reward", "tax.hightech_rate"], "interests")
        eq(d["contact"], body["contact"], "contact")
        eq(d["overrides"], body["overrides"], "overrides")
        eq(d["qualifications"], [{"code": "qual.srdi", "number": "ZJTX-2024-001"}],
           "qualifications")
        eq(d["version"], 1, "version")
        eq(d["entity"], "company", "entity")
        # Both are RFC 3339 UTC times of this write (two clock reads: allow a little).
        t_c = datetime.datetime.strptime(d["created_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
        t_u = datetime.datetime.strptime(d["updated_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
        check(abs((t_c - t_u).total_seconds()) < 2, "created_at %s vs updated_at %s",
              d["created_at"], d["updated_at"])
        check(abs((datetime.datetime.utcnow() - t_c).total_seconds()) < 300,
              "created_at %s is not now", d["created_at"])
        tags = tags_of(d)
        for t in ("region.320211", "ind.i", "ind.i65", "sig.software", "sig.ic",
                  "sig.ic_design", "inno.rd_ge5", "ip.trademark", "zone.wnd", "qual.srdi",
                  "entity.company", "age.gt10", "staff.10_49", "rev.500_1999"):
            check(t in tags, "derived tags %s lack %s", sorted(tags), t)
        check("region.320214" not in tags, "region field must win over the code's region")
        eq(sorted(d["tag_sources"]), sorted(d["tags"]), "tag_sources has one entry per tag")
        eq(d["tag_sources"]["inno.rd_ge5"], {"source": "explicit"}, "explicit source")
        eq(d["tag_sources"]["region.320211"], {"source": "rule", "rule": "district"},
           "region source")
        eq(d["tag_sources"]["zone.wnd"],
           {"source": "override", "by": "op-7", "reason": "located in the national hi-tech zone"},
           "override source")
        eq(len(d["tags"]), len(set(d["tags"])), "tags are unique")

        g = c.get("/v1/enterprises/" + u)
        eq(g.status, 200, "GET status")
        eq(g.header("etag"), '"1"', "ETag")
        eq(g.json, d, "GET returns the document POST returned")
        h = c.request("HEAD", "/v1/enterprises/" + u)
        eq((h.status, h.raw, h.header("etag")), (200, b"", '"1"'), "HEAD enterprise")
        g2 = c.get("/v1/enterprises/" + u.lower())
        eq(g2.status, 200, "GET with a lower-case code")
        eq(g2.json, d, "GET lower-case returns the same document")

        expect_error(c.post("/v1/enterprises", {"uscc": u, "name": "dup"}), 409, "conflict",
                     "uscc", what="POST existing")
        eq(get_ok(c, "/v1/enterprises/" + u).json, d, "409 changed nothing")

        # PUT replaces the whole document.
        rep = {"name": "无锡感知科技（集团）有限公司", "industry": "C3983", "tags": ["ip.pct"]}
        r = c.put("/v1/enterprises/" + u, rep)
        eq(r.status, 200, "PUT replace status (%r)" % r)
        check(r.header("location") is None, "PUT replace must not send Location")
        d2 = r.json
        eq(d2["version"], 2, "version after PUT")
        eq(d2["created_at"], d["created_at"], "created_at survives a replace")
        check(d2["updated_at"] >= d["updated_at"], "updated_at went back")
        for gone in ("region", "employees", "revenue_10k", "founded", "contact", "overrides",
                     "qualifications", "interests"):
            check(gone not in d2, "PUT kept %s from the old document", gone)
        eq(d2["explicit_tags"], ["ip.pct"], "explicit tags replaced")
        t2 = tags_of(d2)
        for t in ("region.320214", "ind.c", "ind.c39", "sig.sensor", "sig.iot", "ip.pct"):
            check(t in t2, "replaced tags %s lack %s", sorted(t2), t)
        for t in ("inno.rd_ge5", "zone.wnd", "sig.software", "region.320211", "qual.srdi"):
            check(t not in t2, "replaced tags still hold %s", t)
        eq(get_ok(c, "/v1/enterprises/" + u).header("etag"), '"2"', "ETag after PUT")

        # Sending the same content again changes nothing: no new version, same
        # updated_at (docs/api.md).
        r = c.request("PATCH", "/v1/enterprises/" + u, body=json.dumps({"name": rep["name"]}),
                      content_type="application/json; charset=utf-8")
        eq(r.status, 200, "PATCH with a charset parameter (%r)" % r)
        eq((r.json["version"], r.json["updated_at"]), (2, d2["updated_at"]),
           "version and updated_at after a PATCH that changes nothing")
        r = c.put("/v1/enterprises/" + u, rep)
        eq(r.status, 200, "identical PUT (%r)" % r)
        eq(r.json, d2, "an identical PUT answers the unchanged document")
        eq(get_ok(c, "/v1/enterprises/" + u).json, d2, "GET after an identical PUT")
        # PUT creates when absent (lower-case code in the URL).
        u2 = make_uscc("320282", rng=rng)
        r = c.put("/v1/enterprises/" + u2.lower(), {"name": "宜兴陶瓷厂"})
        eq(r.status, 201, "PUT create status (%r)" % r)
        eq(r.header("location"), "/v1/enterprises/" + u2, "PUT create Location")
        eq(r.json["uscc"], u2, "PUT create uscc")
        eq(r.json["version"], 1, "PUT create version")
        check("region.320282" in r.json["tags"], "region from the code: %r", r.json["tags"])

        # PATCH: JSON merge patch; nulls remove; unmentioned fields stay.
        r = c.put("/v1/enterprises/" + u, dict(rep, region="320211",
                                                contact={"phone": "0510-1", "person": "李四"},
                                                interests=["fin.reward"]))
        eq(r.status, 200, "PUT before PATCH")
        r = c.patch("/v1/enterprises/" + u,
                    {"name": "改名", "region": None, "contact": {"phone": None}},
                    content_type="application/merge-patch+json")
        eq(r.status, 200, "PATCH merge-patch+json status (%r)" % r)
        p = r.json
        eq(p["version"], 4, "version after PATCH")
        eq(p["name"], "改名", "patched name")
        check("region" not in p, "region should be removed by null")
        eq(p["contact"], {"person": "李四"}, "nested merge patch of contact")
        eq(p["explicit_tags"], ["ip.pct"], "explicit tags survive a PATCH")
        eq(p["interests"], ["fin.reward"], "interests survive a PATCH")
        eq(p["industry"], "C3983", "industry survives a PATCH")
        check("region.320214" in p["tags"] and "region.320211" not in p["tags"],
              "after region:null the code's region applies: %r", p["tags"])
        eq(p["created_at"], d["created_at"], "created_at survives a PATCH")
        r = c.patch("/v1/enterprises/" + u, {"employees": 5, "tags": ["ip.pct", "ip.trademark"]})
        eq(r.status, 200, "PATCH application/json status (%r)" % r)
        eq(r.json["employees"], 5, "patched employees")
        eq(r.json["explicit_tags"], ["ip.pct", "ip.trademark"], "patched explicit tags")
        check("staff.lt10" in r.json["tags"], "staff.lt10 derived after PATCH")
        eq(get_ok(c, "/v1/enterprises/" + u).json, r.json, "GET after PATCH")

        # DELETE
        r = c.delete("/v1/enterprises/" + u)
        eq(r.status, 204, "DELETE status (%r)" % r)
        eq(r.raw, b"", "DELETE body")
        expect_error(c.get("/v1/enterprises/" + u), 404, "not_found", what="GET after DELETE")
        expect_error(c.delete("/v1/enterprises/" + u), 404, "not_found", what="DELETE twice")
        expect_error(c.patch("/v1/enterprises/" + u, {"name": "x"}), 404, "not_found",
                     what="PATCH deleted")
        expect_error(c.get("/v1/enterprises/%s/policies" % u), 404, "not_found",
                     what="package of deleted")
        # The other enterprise is untouched.
        eq(get_ok(c, "/v1/enterprises/" + u2).json["name"], "宜兴陶瓷厂", "other enterprise")


def test_enterprise_conditional_put(o):
    """PUT with If-Match: the version (as in ETag) must match, else 412."""
    rng = random.Random(12)
    with Env(o) as env:
        c = env.c
        u = make_uscc("320206", rng=rng)
        post_ok(c, "/v1/enterprises", {"uscc": u, "name": "v1"})
        r = c.put("/v1/enterprises/" + u, {"name": "v2"}, headers={"If-Match": '"1"'})
        eq(r.status, 200, "PUT If-Match current (%r)" % r)
        eq(r.json["version"], 2, "version after conditional PUT")
        r = c.put("/v1/enterprises/" + u, {"name": "v3"}, headers={"If-Match": "2"})
        eq(r.status, 200, "PUT If-Match unquoted current (%r)" % r)
        before = get_ok(c, "/v1/enterprises/" + u)
        eq(before.json["version"], 3, "version 3")
        expect_error(c.put("/v1/enterprises/" + u, {"name": "x"}, headers={"If-Match": "abc"}),
                     400, "invalid_header", "If-Match", what="malformed If-Match")
        r = c.put("/v1/enterprises/" + u, {"name": "stale"}, headers={"If-Match": '"1"'})
        after = get_ok(c, "/v1/enterprises/" + u)
        eq(after.raw, before.raw, "a refused conditional PUT changed the document")
        expect_error(r, 412, "version_mismatch", what="PUT with a stale If-Match")


def test_enterprise_conditional_patch(o):
    """PATCH with If-Match pins the version too: a stale one must be refused (412) and
    change nothing."""
    rng = random.Random(13)
    with Env(o) as env:
        c = env.c
        u = make_uscc("320206", rng=rng)
        post_ok(c, "/v1/enterprises", {"uscc": u, "name": "v1"})
        r = c.patch("/v1/enterprises/" + u, {"name": "v2"}, headers={"If-Match": '"1"'})
        eq(r.status, 200, "PATCH If-Match current (%r)" % r)
        eq(r.json["version"], 2, "version after conditional PATCH")
        before = get_ok(c, "/v1/enterprises/" + u)
        r = c.patch("/v1/enterprises/" + u, {"name": "stale"}, headers={"If-Match": '"1"'})
        after = get_ok(c, "/v1/enterprises/" + u)
        if r.status == 200:
            raise TestFailure(
                "PATCH with If-Match \"1\" while the version is 2 was applied (200, name now "
                "%r, version %s); expected 412 version_mismatch and no change" %
                (after.json.get("name"), after.json.get("version")))
        expect_error(r, 412, "version_mismatch", what="PATCH with a stale If-Match")
        eq(after.raw, before.raw, "a refused conditional PATCH changed the document")


def test_enterprise_errors_change_nothing(o):
    """Every validation error: status, code, field; and nothing was written."""
    model.avoid_midnight(30 * o.slow)
    rng = random.Random(14)
    with Env(o) as env:
        c = env.c
        base = make_uscc("320213", rng=rng)
        post_ok(c, "/v1/enterprises", {"uscc": base, "name": "梁溪老字号", "employees": 30,
                                       "tags": ["trade.time_honored"]})
        snapshot = get_ok(c, "/v1/enterprises/" + base).raw
        fresh = make_uscc("320213", rng=rng)
        bad_check, right = wrong_check(fresh)
        tax = Taxonomy(c)
        POLICY_CODES, ENT_CODES = tax.pol_codes, tax.ent_codes  # noqa: N806
        tomorrow = iso(today_cn() + datetime.timedelta(days=1))

        def nb(**kw):  # a new-enterprise body with overrides
            b = {"uscc": fresh, "name": "新企业"}
            b.update(kw)
            return {k: v for k, v in b.items() if v is not ...}

        post_cases = [
            # (what, body, content_type, status, code, field, message contains)
            ("malformed JSON", '{"uscc": "%s", "name": ' % fresh, "application/json",
             400, "invalid_json", None, None),
            ("array body", "[1, 2]", "application/json", 400, "invalid_json", None, None),
            ("duplicate key", '{"uscc":"%s","name":"a","name":"b"}' % fresh, "application/json",
             400, "invalid_json", None, None),
            ("name not a string", nb(name=5), None, 400, "invalid_type", "name", None),
            ("empty name", nb(name=""), None, 400, "invalid_value", "name", None),
            ("employees a string", nb(employees="10"), None, 400, "invalid_type", "employees",
             None),
            ("employees fractional", nb(employees=1.5), None, 400, "invalid_type", "employees",
             None),
            ("employees negative", nb(employees=-1), None, 400, "invalid_value", "employees",
             None),
            ("revenue a string", nb(revenue_10k="100"), None, 400, "invalid_type",
             "revenue_10k", None),
            ("tags not a list", nb(tags="ip.pct"), None, 400, "invalid_type", "tags", None),
            ("tag not a string", nb(tags=["ip.pct", 7]), None, 400, "invalid_type", "tags[1]",
             None),
            ("wrong check character", nb(uscc=bad_check), None, 400, "invalid_uscc", "uscc",
             "'%s'" % right),
            ("forbidden letter", nb(uscc=fresh[:10] + "I" + fresh[11:]), None, 400,
             "invalid_uscc", "uscc", None),
            ("short code", nb(uscc=fresh[:17]), None, 400, "invalid_uscc", "uscc", None),
            ("uscc not a string", nb(uscc=913202), None, 400, "invalid_uscc", "uscc", None),
            ("unknown explicit tag", nb(tags=["ip.pct", "no.such_tag"]), None, 400,
             "unknown_tag", "tags[1]", "no.such_tag"),
            ("policy tag as explicit tag", nb(tags=["fin.reward"]), None, 400, "unknown_tag",
             "tags[0]", "fin.reward"),
            ("unknown interest", nb(interests=["ind.c"]), None, 400, "unknown_tag",
             "interests[0]", "ind.c"),
            ("unknown qualification", nb(qualifications=["qual.nope"]), None, 400,
             "unknown_tag", "qualifications[0]", "qual.nope"),
            ("unknown override tag", nb(overrides=[{"tag": "x.y", "value": False}]), None, 400,
             "unknown_tag", "overrides[0]", "x.y"),
            ("override without value", nb(overrides=[{"tag": "ind.c"}]), None, 400,
             "invalid_type", "overrides[0]", None),
            ("override without by",
             nb(overrides=[{"tag": "ind.c", "value": True, "by": "op"},
                           {"tag": "sig.iot", "value": True, "reason": "r"}]), None, 400,
             "missing_field", "overrides[1].by", None),
            ("unknown field", nb(website="https://x"), None, 400, "unknown_field", "website",
             None),
            ("unknown contact field", nb(contact={"fax": "1"}), None, 400, "unknown_field",
             "contact", None),
            ("missing name", nb(name=...), None, 400, "missing_field", "name", None),
            ("missing uscc", nb(uscc=...), None, 400, "missing_field", "uscc", None),
            ("short region", nb(region="3202"), None, 400, "invalid_region", "region", None),
            ("bad industry section", nb(industry="Z99"), None, 400, "invalid_industry",
             "industry", None),
            ("industry section/division mismatch", nb(industry="C65"), None, 400,
             "invalid_industry", "industry", None),
            ("founded in the future", nb(founded=tomorrow), None, 400, "invalid_date",
             "founded", None),
            ("founded not a date", nb(founded="2020-02-30"), None, 400, "invalid_date",
             "founded", None),
            ("webhook not http", nb(contact={"webhook": "ftp://example.com/x"}), None, 400,
             "invalid_url", "contact.webhook", None),
            ("phone with letters", nb(contact={"phone": "call me"}), None, 400,
             "invalid_value", "contact.phone", None),
            ("certificate expires before issue",
             nb(qualifications=[{"code": "qual.hightech", "issued": "2024-01-02",
                                 "expires": "2024-01-01"}]), None, 400, "invalid_date",
             "qualifications[0]", None),
            ("65 interests", nb(interests=POLICY_CODES[:65]), None, 400, "too_many",
             "interests", None),
            ("129 explicit tags", nb(tags=ENT_CODES[:129]), None, 400, "too_many", "tags", None),
            ("33 qualifications", nb(qualifications=["qual.srdi"] * 33), None, 400, "too_many",
             "qualifications", None),
            ("name of 201 characters", nb(name="名" * 201), None, 400, "invalid_value", "name",
             None),
            ("text/plain body", nb(), "text/plain", 415, "unsupported_media_type", None, None),
            ("merge-patch type on POST", nb(), "application/merge-patch+json", 415,
             "unsupported_media_type", None, None),
            ("empty body", b"", "application/json", 400, "body_required", None, None),
        ]
        for what, body, ctype, status, code, field, msg in post_cases:
            if ctype is None:
                ctype = "application/json"
            if isinstance(body, dict):
                body = json.dumps(body)
            r = c.request("POST", "/v1/enterprises", body=body, content_type=ctype)
            expect_error(r, status, code, field, msg, what="POST " + what)
            eq(c.get("/v1/enterprises/" + fresh).status, 404,
               "a refused POST (%s) created the enterprise" % what)
        # No Content-Type at all.
        r = c.request("POST", "/v1/enterprises", body=json.dumps(nb()), content_type=None)
        expect_error(r, 415, "unsupported_media_type", None, what="POST without Content-Type")
        eq(c.get("/v1/enterprises/" + fresh).status, 404, "nothing created")

        # The URL's code is checked too.
        bad_base, right_base = wrong_check(base)
        expect_error(c.get("/v1/enterprises/" + bad_base), 400, "invalid_uscc", "uscc",
                     "'%s'" % right_base, what="GET with a bad check character")
        expect_error(c.get("/v1/enterprises/%s/policies" % bad_base), 400, "invalid_uscc",
                     "uscc", what="package with a bad check character")

        put_cases = [
            ("malformed JSON", "{", "application/json", 400, "invalid_json", None, None),
            ("name not a string", {"name": ["x"]}, None, 400, "invalid_type", "name", None),
            ("unknown tag", {"name": "x", "tags": ["neg.dishonest", "neg.nope"]}, None, 400,
             "unknown_tag", "tags[1]", "neg.nope"),
            ("uscc differs from URL", {"uscc": fresh, "name": "x"}, None, 400, "uscc_mismatch",
             "uscc", None),
            ("unknown field", {"name": "x", "colour": "red"}, None, 400, "unknown_field",
             "colour", None),
            ("missing name", {"employees": 3}, None, 400, "missing_field", "name", None),
            ("override without by",
             {"name": "x", "overrides": [{"tag": "sig.iot", "value": False}]}, None, 400,
             "missing_field", "overrides[0].by", None),
            ("text/plain", {"name": "x"}, "text/plain", 415, "unsupported_media_type", None,
             None),
        ]
        for what, body, ctype, status, code, field, msg in put_cases:
            if isinstance(body, dict):
                body = json.dumps(body)
            r = c.request("PUT", "/v1/enterprises/" + base, body=body,
                          content_type=ctype or "application/json")
            expect_error(r, status, code, field, msg, what="PUT " + what)
            eq(get_ok(c, "/v1/enterprises/" + base).raw, snapshot,
               "document after a refused PUT (%s)" % what)
        r = c.put("/v1/enterprises/" + bad_base, {"name": "x"})
        expect_error(r, 400, "invalid_uscc", "uscc", what="PUT to a bad code")
        eq(c.get("/v1/enterprises/" + base[:17] + right_base).status, 200, "base still there")

        patch_cases = [
            ("malformed JSON", "{]", "application/json", 400, "invalid_json", None, None),
            ("name removed", {"name": None}, None, 400, "missing_field", "name", None),
            ("employees a string", {"employees": "many"}, None, 400, "invalid_type",
             "employees", None),
            ("unknown tag", {"tags": ["no.such"]}, None, 400, "unknown_tag", "tags[0]",
             "no.such"),
            ("unknown interest", {"interests": ["fin.nope"]}, None, 400, "unknown_tag",
             "interests[0]", "fin.nope"),
            ("other uscc", {"uscc": fresh}, None, 400, "uscc_mismatch", "uscc", None),
            ("unknown field", {"foo": 1}, None, 400, "unknown_field", "foo", None),
            ("bad region", {"region": "abcdef"}, None, 400, "invalid_region", "region", None),
            ("override without by", {"overrides": [{"tag": "sig.iot", "value": True}]}, None,
             400, "missing_field", "overrides[0].by", None),
            ("text/plain", {"name": "x"}, "text/plain", 415, "unsupported_media_type", None,
             None),
        ]
        for what, body, ctype, status, code, field, msg in patch_cases:
            if isinstance(body, dict):
                body = json.dumps(body)
            r = c.request("PATCH", "/v1/enterprises/" + base, body=body,
                          content_type=ctype or "application/merge-patch+json")
            expect_error(r, status, code, field, msg, what="PATCH " + what)
            eq(get_ok(c, "/v1/enterprises/" + base).raw, snapshot,
               "document after a refused PATCH (%s)" % what)

        # Missing resources.
        missing = make_uscc("320205", rng=rng)
        expect_error(c.get("/v1/enterprises/" + missing), 404, "not_found", what="GET missing")
        expect_error(c.patch("/v1/enterprises/" + missing, {"name": "x"}), 404, "not_found",
                     what="PATCH missing")
        expect_error(c.delete("/v1/enterprises/" + missing), 404, "not_found",
                     what="DELETE missing")
        expect_error(c.get("/v1/enterprises/%s/policies" % missing), 404, "not_found",
                     what="package of missing")
        r = c.put("/v1/enterprises/" + missing, {"name": "x"}, headers={"If-Match": '"1"'})
        check(r.status in (404, 412), "conditional PUT of a missing enterprise: %r", r)
        eq(c.get("/v1/enterprises/" + missing).status, 404,
           "a refused conditional PUT created the enterprise")
        # Still exactly one enterprise.
        lst = get_ok(c, "/v1/enterprises?limit=200").json
        eq([d["uscc"] for d in lst["items"]], [base], "enterprises after all the errors")
        eq(get_ok(c, "/v1/enterprises/" + base).raw, snapshot, "base document at the end")


def test_enterprise_body_too_large(o):
    rng = random.Random(15)
    with Env(o, huiqid_args=["--max-body", "2048"]) as env:
        c = env.c
        u = make_uscc("320214", rng=rng)
        # Just under the limit is fine.
        body = {"uscc": u, "name": "x" * 200,
                "overrides": [{"tag": "zone.wnd", "value": True, "by": "a",
                               "reason": "r" * 489},
                              {"tag": "zone.bonded", "value": True, "by": "a",
                               "reason": "s" * 489},
                              {"tag": "zone.taihu_bay", "value": True, "by": "a",
                               "reason": "t" * 489}],
                "contact": {"person": "p" * 100}}
        raw = json.dumps(body).encode()
        check(1900 < len(raw) <= 2048, "test body is %d bytes", len(raw))
        r = c.post("/v1/enterprises", raw)
        eq(r.status, 201, "POST of %d bytes under --max-body 2048 (%r)" % (len(raw), r))
        snapshot = get_ok(c, "/v1/enterprises/" + u).raw
        big = dict(body)
        big["overrides"] = big["overrides"] + [{"tag": "zone.wxeda", "value": True, "by": "a",
                                                "reason": "u" * 400}]
        raw_big = json.dumps(big).encode()
        check(len(raw_big) > 2048, "big body is only %d bytes", len(raw_big))
        expect_error(c.put("/v1/enterprises/" + u, raw_big), 413, "body_too_large",
                     what="PUT over --max-body")
        eq(get_ok(c, "/v1/enterprises/" + u).raw, snapshot, "document after a 413 PUT")
        u2 = make_uscc("320214", rng=rng)
        expect_error(c.post("/v1/enterprises", json.dumps(dict(big, uscc=u2)).encode()), 413,
                     "body_too_large", what="POST over --max-body")
        eq(c.get("/v1/enterprises/" + u2).status, 404, "a 413 POST created the enterprise")
        # A chunked body is counted as it arrives.
        from harness import raw_exchange, parse_responses
        payload = json.dumps(dict(big, uscc=u2)).encode()
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + 500]), payload[i:i + 500])
                          for i in range(0, len(payload), 500)) + b"0\r\n\r\n"
        from harness import AUTH
        req = (b"POST /v1/enterprises HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n" + AUTH +
               b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
        buf, closed = raw_exchange(env.huiqid_port, req, timeout=5 * o.slow)
        resps = parse_responses(buf)
        check(resps and resps[0][0] == 413, "chunked body over the limit: %r", buf[:300])
        eq(c.get("/v1/enterprises/" + u2).status, 404, "a 413 chunked POST created it")


def test_enterprise_list_paging(o):
    rng = random.Random(16)
    with Env(o) as env:
        c = env.c
        codes = []
        for i in range(30):
            tags = []
            if i % 2 == 0:
                tags.append("inno.tech_project")
            if i % 3 == 0:
                tags.append("ip.trademark")
            d = new_ent(c, rng, code_region=("320205", "320211", "320282")[i % 3], tags=tags)
            codes.append(d["uscc"])

        def walk(query, limit):
            seen = []
            cursor = None
            pages = 0
            while True:
                q = "/v1/enterprises?limit=%d%s%s" % (limit, query,
                                                       "&cursor=" + cursor if cursor else "")
                r = get_ok(c, q).json
                check(set(r) == {"items", "next"}, "list keys %s", sorted(r))
                check(len(r["items"]) <= limit, "page of %d > limit %d", len(r["items"]), limit)
                for d in r["items"]:
                    check("version" in d and "tags" in d, "list item is not a document: %r", d)
                seen += [d["uscc"] for d in r["items"]]
                pages += 1
                check(pages < 100, "paging does not end")
                if r["next"] is None:
                    return seen
                check(isinstance(r["next"], str), "next is %r", r["next"])
                cursor = r["next"]

        both = walk("&tag=inno.tech_project,ip.trademark", 50)
        eq(sorted(both), sorted(codes[i] for i in range(30) if i % 6 == 0), "tag=a,b (all of)")
        one = walk("&tag=inno.tech_project", 4)
        eq(len(one), len(set(one)), "no duplicates across pages")
        eq(sorted(one), sorted(codes[i] for i in range(30) if i % 2 == 0), "tag=a, 4 per page")
        every = walk("", 7)
        eq(sorted(every), sorted(codes), "no tag, 7 per page")
        district = walk("&tag=region.320282", 3)
        eq(sorted(district), sorted(codes[i] for i in range(30) if i % 3 == 2),
           "derived tag filter")
        # Deletions shrink the listing; freed ordinals are reused by new enterprises.
        for i in range(0, 30, 5):
            eq(c.delete("/v1/enterprises/" + codes[i]).status, 204, "DELETE")
        for i in range(3):
            codes.append(new_ent(c, rng, code_region="320205", tags=["inno.tech_project"])["uscc"])
        alive = [codes[i] for i in range(len(codes)) if not (i < 30 and i % 5 == 0)]
        eq(sorted(walk("", 5)), sorted(alive), "after deletes and creates")
        eq(sorted(walk("&tag=inno.tech_project", 2)),
           sorted(u for i, u in enumerate(codes) if (i >= 30 or (i % 2 == 0 and i % 5 != 0))),
           "tag filter after deletes and creates")
        eq(get_ok(c, "/v1/enterprises?tag=neg.bankrupt").json, {"items": [], "next": None},
           "a tag nobody has")
        expect_error(c.get("/v1/enterprises?limit=0"), 400, "invalid_parameter", "limit",
                     what="limit=0")
        expect_error(c.get("/v1/enterprises?limit=201"), 400, "invalid_parameter", "limit",
                     what="limit=201")
        expect_error(c.get("/v1/enterprises?cursor=abc"), 400, "invalid_parameter", "cursor",
                     what="cursor=abc")
        expect_error(c.get("/v1/enterprises?tag=ind.c,no.such"), 400, "unknown_tag", "tag",
                     "no.such", what="unknown tag")


# --------------------------------------------------------------------------
# Derived tags
# --------------------------------------------------------------------------

REGION_TAGS = ("region.320205", "region.320206", "region.320211", "region.320213",
               "region.320214", "region.320281", "region.320282", "region.320200", "region.other")


def regions_in(doc):
    return [t for t in doc["tags"] if t.startswith("region.")]


def test_derived_region_and_entity(o):
    rng = random.Random(21)
    with Env(o) as env:
        c = env.c
        cases = [
            # (code region, kind, body region, expected region tags)
            ("320205", "91", None, ["region.320205"]),
            ("320281", "91", None, ["region.320281"]),
            ("320214", "91", "320282", ["region.320282"]),
            ("320102", "91", None, ["region.other"]),       # Nanjing, from the code
            ("320214", "91", "110105", ["region.other"]),    # Beijing, from the field
            ("320200", "91", None, ["region.320200"]),
            ("320214", "91", "320299", ["region.320200"]),   # in Wuxi, not a district tag
            ("320211", "92", None, ["region.320211"]),
            ("320213", "93", None, ["region.320213"]),
        ]
        for code_region, kind, region, want in cases:
            extra = {"region": region} if region else {}
            d = new_ent(c, rng, code_region=code_region, kind=kind, **extra)
            eq(regions_in(d), want, "region tags for code region %s, field %s" %
               (code_region, region))
            src = d["tag_sources"][want[0]]
            eq(src["source"], "rule", "region tag source")
            check(src["rule"] in ("district", "district_city", "district_other"),
                  "region rule %r", src)
            ent = {"91": "company", "92": "individual", "93": "cooperative"}[kind]
            eq(d["entity"], ent, "entity for kind %s" % kind)
            check("entity." + ent in d["tags"], "entity tag for %s missing: %r", kind, d["tags"])
        # Positions 3-8 must be an administrative division (domain.md): a code that
        # carries letters there is refused rather than left without a region.
        expect_error(c.post("/v1/enterprises", {"uscc": make_uscc("A1B2C3", rng=rng),
                                                "name": "x"}),
                     400, "invalid_uscc", "uscc", "3-8", what="letters in positions 3-8")
        # Authority 5 (civil affairs): entity "other", no entity tag.
        d = new_ent(c, rng, code_region="320214", kind="51")
        eq(d["entity"], "other", "entity of a 51 code")
        check(not any(t.startswith("entity.") for t in d["tags"]), "entity tag for 51: %r",
              d["tags"])
        # The standard's own example is accepted.
        d = post_ok(c, "/v1/enterprises", {"uscc": "91350100M000100Y43", "name": "标准示例"})
        eq(regions_in(d), ["region.other"], "Fuzhou example region")


def test_derived_industry(o):
    rng = random.Random(22)
    with Env(o) as env:
        c = env.c
        cases = [
            ("C3973", "C3973", {"ind.c", "ind.c39", "sig.ic", "sig.ic_wafer"}),
            ("c3973", "C3973", {"ind.c", "ind.c39"}),
            ("3973", "C3973", {"ind.c", "ind.c39"}),
            ("I65", "I65", {"ind.i", "ind.i65", "sig.software"}),
            ("I6520", "I6520", {"ind.i", "ind.i65", "sig.software", "sig.ic_design", "sig.ic"}),
            ("C27", "C27", {"ind.c", "ind.c27", "sig.biomed"}),
            ("M7340", "M7340", {"ind.m", "ind.m73", "sig.biomed"}),
            ("F5299", "F5299", {"ind.f", "ind.f52"}),
            ("G5437", "G5437", {"ind.g", "ind.g54", "sig.logistics"}),
            ("K7010", "K7010", {"ind.k", "ind.k70"}),
        ]
        for given, norm, want in cases:
            d = new_ent(c, rng, industry=given)
            eq(d["industry"], norm, "industry %s normalised" % given)
            tags = tags_of(d)
            check(want <= tags, "industry %s: tags %s lack %s", given, sorted(tags),
                  sorted(want - tags))
            inds = sorted(t for t in tags if t.startswith("ind."))
            eq(inds, sorted(t for t in want if t.startswith("ind.")),
               "industry tags for %s (section and division only)" % given)
            for t in inds:
                eq(d["tag_sources"][t], {"source": "rule", "rule": "industry"}, "source of " + t)


def test_derived_size_boundaries(o):
    rng = random.Random(23)
    with Env(o) as env:
        c = env.c
        # (industry, employees, revenue, size tags expected, size tags forbidden)
        S = {"size.micro", "size.small", "size.medium", "size.large"}
        cases = [
            ("C3973", 20, 300, {"size.small", "size.sme"}),
            ("C3973", 19, 300, {"size.micro", "size.sme"}),
            ("C3973", 20, 299.99, {"size.micro", "size.sme"}),
            ("C3973", 300, 2000, {"size.medium", "size.sme", "size.above_designated"}),
            ("C3973", 299, 2000, {"size.small", "size.sme", "size.above_designated"}),
            ("C3973", 1000, 40000, {"size.large", "size.above_designated"}),
            ("I65", 9, 50, {"size.micro", "size.sme"}),
            ("I65", 10, 50, {"size.small", "size.sme"}),
            ("I65", 10, 49, {"size.micro", "size.sme"}),
            ("I65", 100, 1000, {"size.medium", "size.sme"}),
            ("F5123", 5, 1000, {"size.small", "size.sme"}),
            ("F5123", 4, 1000, {"size.micro", "size.sme"}),
            ("F5211", 10, 100, {"size.small", "size.sme"}),
            ("F5211", 10, 500, {"size.small", "size.sme", "size.above_quota"}),
            ("F5211", 9, 100, {"size.micro", "size.sme"}),
        ]
        for ind, emp, rev, want in cases:
            d = new_ent(c, rng, industry=ind, employees=emp, revenue_10k=rev)
            got = {t for t in d["tags"] if t.startswith("size.")}
            eq(got, want, "size tags for %s with %s employees and %s (10k CNY)" % (ind, emp, rev))
            check(len(got & S) == 1, "exactly one size class expected, got %s", sorted(got))
        # Bands: lower bound included, upper excluded.
        # With one figure only, "micro" (employees < 20 OR revenue < 300) can still be
        # decided; no other size can.
        for emp, band in ((9, "staff.lt10"), (10, "staff.10_49"), (49, "staff.10_49"),
                          (50, "staff.50_99"), (1000, "staff.ge1000")):
            d = new_ent(c, rng, employees=emp)
            eq([t for t in d["tags"] if t.startswith("staff.")], [band], "band of %d" % emp)
            eq({t for t in d["tags"] if t.startswith("size.")},
               {"size.micro", "size.sme"} if emp < 20 else set(),
               "size tags with %d employees and no revenue" % emp)
        for rev, band in ((99.5, "rev.lt100"), (100, "rev.100_499"), (2000, "rev.2000_9999"),
                          (50000, "rev.ge50000")):
            d = new_ent(c, rng, revenue_10k=rev)
            eq([t for t in d["tags"] if t.startswith("rev.")], [band], "band of %s" % rev)
            want = {"size.micro", "size.sme"} if rev < 300 else set()
            eq({t for t in d["tags"] if t.startswith("size.")}, want,
               "size tags with revenue %s and no employees" % rev)
        # Neither reported: no size, staff or revenue tag.
        d = new_ent(c, rng, industry="C3973")
        check(not any(t.split(".")[0] in ("size", "staff", "rev") for t in d["tags"]),
              "size tags without figures: %r", d["tags"])


def test_derived_age_brackets(o):
    model.avoid_midnight(30 * o.slow)
    rng = random.Random(24)
    today = today_cn()
    with Env(o) as env:
        c = env.c
        three = add_years(today, -3)
        ten = add_years(today, -10)
        cases = [
            (today, "age.lt3"),
            (three + datetime.timedelta(days=1), "age.lt3"),
            (three, "age.3to10"),
            (ten + datetime.timedelta(days=1), "age.3to10"),
            (ten, "age.gt10"),
        ]
        for founded, want in cases:
            d = new_ent(c, rng, founded=iso(founded))
            eq([t for t in d["tags"] if t.startswith("age.")], [want],
               "age bracket for founded %s (today %s)" % (founded, today))
            check("retag_on" in d, "retag_on missing for founded %s", founded)
            check(d["retag_on"] > iso(today), "retag_on %s not after today", d["retag_on"])
        d = new_ent(c, rng, founded=iso(three + datetime.timedelta(days=1)))
        eq(d["retag_on"], iso(add_years(three + datetime.timedelta(days=1), 3)),
           "retag_on is the next anniversary")



def test_retag_follows_time(o):
    """An enterprise whose age bracket changes overnight gets its new tags from the
    daily pass after a restart on the next day (document, audience and retag
    progress all follow), and a full pass afterwards finds nothing left to change."""
    rng = random.Random(26)
    day1, day2 = "2026-06-30", "2026-07-01"
    with Env(o, huiqid_args=["--today", day1]) as env:
        c = env.c
        a = new_ent(c, rng, founded="2023-07-01")  # turns 3 on day2
        b = new_ent(c, rng, founded="2010-01-01")  # over 10 on both days
        eq([t for t in a["tags"] if t.startswith("age.")], ["age.lt3"], "A's bracket on day 1")
        eq(a["retag_on"], day2, "A's retag_on is its third anniversary")
        older = {"rule": {"all": ["age.3to10"]}}
        eq(post_ok(c, "/v1/audience", older, status=200)["count"], 0, "3-10 audience on day 1")
        problems = env.stop_huiqid()
        check(not problems, "stopping huiqid: %s", problems)
        env.start_huiqid(["--today", day2])
        c = env.c

        def a_retagged():
            d = get_ok(c, "/v1/enterprises/" + a["uscc"]).json
            return d if "age.3to10" in d["tags"] else None

        d = wait_until(a_retagged, 20 * o.slow, "the daily pass to re-tag A")
        eq([t for t in d["tags"] if t.startswith("age.")], ["age.3to10"], "A's bracket on day 2")
        eq(d["tag_sources"]["age.3to10"]["source"], "rule", "source of A's new bracket")
        eq(d["version"], a["version"] + 1, "A's version after the re-tag")
        check(d["retag_on"] > day2, "A's next retag_on %s is after day 2", d["retag_on"])
        eq(post_ok(c, "/v1/audience", older, status=200)["count"], 1, "3-10 audience on day 2")
        st = wait_until(lambda: (lambda s: s if s["daily"].get("last_completed") == day2
                                 else None)(get_ok(c, "/v1/enterprises:retag").json),
                        10 * o.slow, "the daily pass to complete")
        eq(st["daily"]["changed"], 1, "daily pass: enterprises changed")

        r = c.post("/v1/enterprises:retag")
        eq(r.status, 202, "POST /v1/enterprises:retag (%r)" % r)
        st = wait_until(lambda: (lambda s: s if s["state"] == "done" else None)(
            get_ok(c, "/v1/enterprises:retag").json), 20 * o.slow, "the full pass to finish")
        eq((st["total"], st["done"], st["changed"], st["unchanged"], st["failed"]),
           (2, 2, 0, 2, 0), "full pass after the daily one")
        eq(get_ok(c, "/v1/enterprises/" + b["uscc"]).json["version"], b["version"],
           "B untouched by both passes")
        eq(get_ok(c, "/v1/enterprises/" + a["uscc"]).json["version"], a["version"] + 1,
           "A written once")

def _hightech_case(c, rng, expires):
    """An enterprise with a high-tech certificate valid through 'expires' and a
    published policy for high-tech enterprises; returns (enterprise, policy id)."""
    e = new_ent(c, rng, qualifications=[{"code": "qual.hightech", "expires": expires}])
    check("qual.hightech" in e["tags"], "qual.hightech while the certificate holds: %r",
          e["tags"])
    p = post_ok(c, "/v1/policies", {"title": "高企奖励", "rule": {"all": ["qual.hightech"]}})
    post_ok(c, "/v1/policies/%d/publish?notify=false" % p["id"], None, status=200)
    pkg = get_ok(c, "/v1/enterprises/%s/policies" % e["uscc"]).json
    eq([x["id"] for x in pkg["policies"]], [p["id"]], "package while the certificate holds")
    return e, p["id"]


def _hightech_lapsed(c, e, pid):
    d = get_ok(c, "/v1/enterprises/" + e["uscc"]).json
    if "qual.hightech" in d["tags"]:
        return None
    pkg = get_ok(c, "/v1/enterprises/%s/policies" % e["uscc"]).json
    check(pid not in [x["id"] for x in pkg["policies"]],
          "policy %d still in the package after the tag went: %r", pid, pkg)
    return d


def test_retag_at_start_before_ready(o):
    """A certificate valid through day 1: started on day 2, huiqid re-tags it before
    /readyz answers 200, not at the worker's next tick."""
    rng = random.Random(27)
    with Env(o, huiqid_args=["--today", "2026-12-05"]) as env:
        e, pid = _hightech_case(env.c, rng, "2026-12-05")
        problems = env.stop_huiqid()
        check(not problems, "stopping huiqid: %s", problems)
        env.start_huiqid(["--today", "2026-12-06"])  # returns once /readyz is 200
        # Right after readiness; a short deadline, far below the 30 s tick.
        d = wait_until(lambda: _hightech_lapsed(env.c, e, pid), 1.0,
                       "the lapsed certificate's tag to go right after readiness")
        eq(d["version"], e["version"] + 1, "re-tagged once")
        st = get_ok(env.c, "/v1/enterprises:retag").json
        eq(st["daily"].get("last_completed"), "2026-12-06", "daily pass completed")


def test_retag_legacy_and_broken_documents(o):
    """Stored documents written before today's stricter rules (an explicit tag of a
    derived class, an industry given as a section letter, a qualification outside
    qual.*) are still re-tagged and can be patched; and 260 documents that cannot
    be re-tagged at all, due first, do not stop the daily pass for the others."""
    rng = random.Random(29)
    with Env(o, huiqid_args=["--today", "2026-12-05"]) as env:
        c = env.c
        e, pid = _hightech_case(c, rng, "2026-12-05")
        cert = [{"code": "qual.hightech", "expires": "2026-12-05"}]
        legacy = {}
        for what, change in (("derived explicit tag",
                              lambda d: d.__setitem__("explicit_tags", ["region.320211"])),
                             ("section-only industry", lambda d: d.__setitem__("industry", "C")),
                             ("qualification outside qual.*",
                              lambda d: d["qualifications"].append({"code": "sig.iot"}))):
            x = new_ent(c, rng, qualifications=cert, industry="C3973")
            doc = json.loads(env.redis("HGET", "hq:ent:" + x["uscc"], "doc"))
            change(doc)
            env.redis("HSET", "hq:ent:" + x["uscc"], "doc", json.dumps(doc, ensure_ascii=False))
            legacy[what] = x
        # 260 enterprises whose stored document is no longer JSON, due days earlier.
        day = int(env.redis("ZSCORE", "hq:retag", e["uscc"]))
        lines = []
        for _ in range(260):
            lines.append(json.dumps({"uscc": make_uscc(rng=rng), "name": "坏数据",
                                     "qualifications": cert}))
        r = c.post("/v1/enterprises:import", "\n".join(lines) + "\n",
                   content_type="application/x-ndjson")
        eq((r.status, r.json["accepted"]), (200, 260), "import of the 260")
        for line in lines:
            u = json.loads(line)["uscc"]
            env.redis("HSET", "hq:ent:" + u, "doc", "not json")
            env.redis("ZADD", "hq:retag", str(day - 3), u)
        problems = env.stop_huiqid()
        check(not problems, "stopping huiqid: %s", problems)
        env.start_huiqid(["--today", "2026-12-06"])
        c = env.c  # the new huiqid's client
        d = wait_until(lambda: _hightech_lapsed(c, e, pid), 3.0 * o.slow,
                       "the valid enterprise re-tagged behind 260 broken ones")
        eq(d["version"], e["version"] + 1, "re-tagged once")
        for what, x in legacy.items():
            d = get_ok(c, "/v1/enterprises/" + x["uscc"]).json
            check("qual.hightech" not in d["tags"], "%s: not re-tagged: %r", what, d["tags"])
            r = c.patch("/v1/enterprises/" + x["uscc"], {"employees": 12})
            eq(r.status, 200, "%s: PATCH of another field (%r)" % (what, r.json))
        # What a patch sets is still checked.
        x = legacy["derived explicit tag"]
        expect_error(c.patch("/v1/enterprises/" + x["uscc"], {"tags": ["region.320205"]}), 400,
                     "invalid_value", "tags[0]", what="PATCH setting a derived explicit tag")


def test_retag_at_day_boundary(o):
    """The service's day changes while it runs: the day timer re-tags the enterprises
    due on the new day at once. The zone (--utc-offset) is chosen so that its
    midnight falls a few seconds after start, between the worker's 30 s ticks."""
    rng = random.Random(28)
    # Start when the next UTC minute is 8-15 s away: minutes offsets can put a
    # midnight only on a minute boundary.
    wait_until(lambda: 45 <= datetime.datetime.utcnow().second <= 52, 70, "the start slot",
               0.2)
    now = datetime.datetime.utcnow()
    boundary = now.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
    mins = boundary.hour * 60 + boundary.minute  # minutes since UTC midnight
    off = (-mins) % 1440  # local time at the boundary is 00:00
    if off > 14 * 60:
        off -= 1440
    zone = "%s%02d:%02d" % ("-" if off < 0 else "+", abs(off) // 60, abs(off) % 60)
    day1 = (boundary + datetime.timedelta(minutes=off - 1)).date()
    with Env(o, huiqid_args=["--utc-offset", zone]) as env:
        e, pid = _hightech_case(env.c, rng, iso(day1))
        left = (boundary - datetime.datetime.utcnow()).total_seconds()
        check(left > 1, "set-up took too long (%.1f s left before midnight)", left)
        d = wait_until(lambda: _hightech_lapsed(env.c, e, pid), left + 3 * o.slow,
                       "the tag to go at midnight in %s" % zone, 0.1)
        late = (datetime.datetime.utcnow() - boundary).total_seconds()
        check(late < 3 * o.slow, "re-tagged %.1f s after midnight", late)
        eq(d["version"], e["version"] + 1, "re-tagged once")


def test_derived_qualification_expiry(o):
    model.avoid_midnight(30 * o.slow)
    rng = random.Random(25)
    today = today_cn()
    day = datetime.timedelta(days=1)

    def end_of(issued, years):
        return add_years(issued, years) - day

    # Issue dates whose 3-year validity ends today / ended yesterday.
    base = add_years(today, -3)
    cands = [base + datetime.timedelta(days=k) for k in range(-4, 5)]
    issued_today = max(d for d in cands if end_of(d, 3) == today)
    issued_yday = max(d for d in cands if end_of(d, 3) == today - day)
    with Env(o) as env:
        c = env.c
        cases = [
            ([{"code": "qual.hightech", "issued": iso(issued_today)}], True,
             "issued %s: 3-year validity ends today" % issued_today),
            ([{"code": "qual.hightech", "issued": iso(issued_yday)}], False,
             "issued %s: 3-year validity ended yesterday" % issued_yday),
            ([{"code": "qual.hightech", "issued": iso(today)}], True, "issued today"),
            ([{"code": "qual.hightech", "issued": iso(today + day)}], False, "issued tomorrow"),
            ([{"code": "qual.hightech", "expires": iso(today)}], True, "expires today"),
            ([{"code": "qual.hightech", "expires": iso(today - day)}], False,
             "expired yesterday"),
            ([{"code": "qual.hightech", "issued": "2000-01-01", "expires": iso(today)}], True,
             "explicit expiry wins over validity"),
            (["qual.hightech"], True, "no dates at all"),
            ([{"code": "qual.hightech"}], True, "object without dates"),
            ([{"code": "qual.hightech", "issued": iso(issued_yday)},
              {"code": "qual.hightech", "issued": iso(today - day)}], True,
             "renewed certificate"),
        ]
        for quals, want, what in cases:
            d = new_ent(c, rng, qualifications=quals)
            has = "qual.hightech" in d["tags"]
            check(has == want, "qual.hightech %s for %s (today %s); tags %r",
                  "missing" if want else "present", what, today, d["tags"])
            if has:
                eq(d["tag_sources"]["qual.hightech"], {"source": "rule", "rule": "qualifications"},
                   "qualification source")
            eq(len(d["qualifications"]), len(quals), "qualifications echoed")
        # The certificate ending today is re-derived tomorrow.
        d = new_ent(c, rng, qualifications=[{"code": "qual.hightech", "issued": iso(issued_today)}])
        eq(d.get("retag_on"), iso(today + day), "retag_on when a certificate ends today")
        # One-year tech SME certificate.
        one = add_years(today, -1)
        d = new_ent(c, rng, qualifications=[{"code": "qual.tech_sme", "issued": iso(one)}])
        check("qual.tech_sme" not in d["tags"], "1-year certificate issued %s still valid", one)
        d = new_ent(c, rng, qualifications=[{"code": "qual.tech_sme",
                                             "issued": iso(one + day)}])
        check("qual.tech_sme" in d["tags"], "1-year certificate issued %s not valid", one + day)


def test_explicit_tags_and_overrides(o):
    rng = random.Random(26)
    with Env(o) as env:
        c = env.c
        d = new_ent(c, rng, code_region="320214", industry="C3973", employees=10, revenue_10k=100,
                    tags=["trade.import_export", "qual.listed"])
        tags = tags_of(d)
        check({"size.micro", "trade.import_export", "qual.listed"} <= tags,
              "base tags %s", sorted(tags))
        eq(d["tag_sources"]["trade.import_export"], {"source": "explicit"}, "explicit source")
        eq(d["explicit_tags"], ["qual.listed", "trade.import_export"],
           "explicit_tags in taxonomy order")
        u = d["uscc"]
        # Override false removes a derived tag; true adds one, with who and why.
        r = c.patch("/v1/enterprises/" + u, {"overrides": [
            {"tag": "size.micro", "value": False, "by": "auditor", "reason": "group member"},
            {"tag": "qual.hightech", "value": True, "by": "kjj", "reason": "paper certificate"},
            {"tag": "trade.import_export", "value": False, "by": "auditor"},
            {"tag": "region.320214", "value": True, "by": "x"},
        ]})
        eq(r.status, 200, "PATCH overrides (%r)" % r)
        d2 = r.json
        t2 = tags_of(d2)
        check("size.micro" not in t2, "override false left size.micro: %r", d2["tags"])
        check("trade.import_export" not in t2, "override false left an explicit tag")
        for gone in ("size.micro", "trade.import_export"):
            src = d2["tag_sources"].get(gone)
            check(src is None or src.get("source") == "override",
                  "tag_sources of the removed %s is %r", gone, src)
        check("qual.hightech" in t2, "override true did not add qual.hightech")
        eq(d2["tag_sources"]["qual.hightech"],
           {"source": "override", "by": "kjj", "reason": "paper certificate"},
           "override source with who and why")
        eq(d2["tag_sources"]["region.320214"], {"source": "override", "by": "x"},
           "an override of a derived tag takes over its source")
        check("qual.listed" in t2 and "size.sme" in t2,
              "other tags must stay: %r", d2["tags"])
        eq([x for x in d2["overrides"] if x["tag"] == "size.micro"],
           [{"tag": "size.micro", "value": False, "by": "auditor", "reason": "group member"}],
           "overrides echoed")
        eq([x["tag"] for x in d2["overrides"]],
           ["region.320214", "size.micro", "qual.hightech", "trade.import_export"],
           "overrides in taxonomy order")
        # Matching follows the overridden profile.
        r = c.post("/v1/audience", {"rule": {"all": ["size.micro"]}})
        eq(r.json["count"], 0, "audience of size.micro after override false")
        r = c.post("/v1/audience", {"rule": {"all": ["qual.hightech", "qual.listed"]}})
        eq(r.json["count"], 1, "audience of the override-true tag")
        # Dropping the overrides restores the derived profile.
        r = c.patch("/v1/enterprises/" + u, {"overrides": None})
        eq(r.status, 200, "PATCH overrides:null")
        eq(tags_of(r.json), tags, "profile after removing overrides")
        eq(r.json["tag_sources"], d["tag_sources"], "sources after removing overrides")
        # An override records who set it: one without "by" is refused on every write
        # path, an import line included (400 missing_field overrides[i].by).
        unsigned = [{"tag": "qual.hightech", "value": True, "by": "kjj"},
                    {"tag": "size.micro", "value": False}]
        before = get_ok(c, "/v1/enterprises/" + u).raw
        expect_error(c.patch("/v1/enterprises/" + u, {"overrides": unsigned}), 400,
                     "missing_field", "overrides[1].by", what="PATCH an override without by")
        body = {k: v for k, v in d.items() if k in ("name", "explicit_tags")}
        expect_error(c.put("/v1/enterprises/" + u, dict(body, overrides=unsigned)), 400,
                     "missing_field", "overrides[1].by", what="PUT an override without by")
        eq(get_ok(c, "/v1/enterprises/" + u).raw, before, "document after refused writes")
        line = json.dumps({"uscc": make_uscc("320205", rng=rng), "name": "导入",
                           "overrides": unsigned[1:]})
        r = c.post("/v1/enterprises:import", line + "\n", content_type="application/x-ndjson")
        eq(r.status, 200, "import (%r)" % r)
        eq((r.json["accepted"], r.json["rejected"]), (0, 1), "import of an unsigned override")
        eq((r.json["errors"][0]["code"], r.json["errors"][0]["field"]),
           ("missing_field", "overrides[0].by"), "import error")


def test_enterprise_same_content_any_order(o):
    """PUT of the same enterprise changes nothing, whatever the order of keys and of
    the order-insensitive lists, and whether empty containers are sent or left out
    (docs/api.md); a real change still makes a new version."""
    with Env(o) as env:
        c = env.c
        u = "91320214MA1X7K2Q3L"
        path = "/v1/enterprises/" + u
        first = put_ok(c, path, {"name": "n", "employees": 5}, status=201)

        def same(body, what):
            raw = json.dumps(body, ensure_ascii=False) if isinstance(body, dict) else body
            r = c.request("PUT", path, body=raw)
            eq(r.status, 200, "%s: PUT status (%r)" % (what, r))
            g = get_ok(c, path)
            eq((g.json["version"], g.json["updated_at"]), (ref["version"], ref["updated_at"]),
               "%s: version and updated_at" % what)
            eq(g.raw, ref_raw, "%s: the stored document" % what)
            return r.json

        ref, ref_raw = first, get_ok(c, path).raw
        # Key order (the body is sent as written: json.dumps keeps dict order).
        same('{"employees":5,"name":"n"}', "keys reversed")
        same('{"name":"n","employees":5,"interests":[],"contact":{},"tags":[],'
             '"qualifications":[],"overrides":[]}', "empty containers")
        same('{"name":"n","employees":5,"contact":{"phone":null}}', "contact of nulls")

        full = {
            "name": "无锡测试", "region": "320214", "industry": "C3973", "employees": 150,
            "revenue_10k": 8000, "founded": "2019-05-20",
            "tags": ["neg.abnormal", "neg.dishonest", "ip.pct"],
            "interests": ["fin.loan_discount", "fin.reward", "tax.hightech_rate"],
            "qualifications": [{"code": "qual.hightech", "issued": "2024-11-06",
                                "number": "GR2024"}, "qual.srdi",
                               {"code": "qual.hightech", "issued": "2021-11-06"}],
            "contact": {"phone": "0510-85000000", "person": "张三", "email": "a@example.com"},
            "overrides": [{"tag": "sig.iot", "value": True, "by": "张工", "reason": "核查"},
                          {"tag": "size.sme", "value": False, "by": "op"}],
        }
        r = c.put(path, full)
        eq(r.status, 200, "PUT the full enterprise (%r)" % r)
        check(r.json["version"] == 2, "a real change makes version 2: %r", r.json["version"])
        ref, ref_raw = r.json, get_ok(c, path).raw
        eq(list(ref), sorted(k for k in ref if k not in ("version", "created_at",
                                                           "updated_at"))
           + ["version", "created_at", "updated_at"], "document keys in a fixed order")
        eq(ref["explicit_tags"], ["ip.pct", "neg.dishonest", "neg.abnormal"],
           "explicit tags in taxonomy order")
        eq(ref["interests"], sorted(ref["interests"], key=Taxonomy(c).pol_codes.index),
           "interests in taxonomy order")
        eq([x["tag"] for x in ref["overrides"]], ["size.sme", "sig.iot"],
           "overrides in taxonomy order")
        eq(ref["qualifications"], [
            {"code": "qual.hightech", "issued": "2021-11-06"},
            {"code": "qual.hightech", "issued": "2024-11-06", "number": "GR2024"},
            {"code": "qual.srdi"}], "qualifications sorted")

        def rev(d):
            return dict(reversed(list(d.items())))

        reordered = rev(dict(full, tags=list(reversed(full["tags"])),
                             interests=list(reversed(full["interests"])),
                             qualifications=[rev(q) if isinstance(q, dict) else q
                                             for q in reversed(full["qualifications"])],
                             contact=rev(full["contact"]),
                             overrides=[rev(x) for x in reversed(full["overrides"])]))
        same(reordered, "everything reordered")
        same(dict(full, tags=full["tags"] + ["neg.abnormal"],
                  interests=full["interests"] + ["fin.reward"],
                  qualifications=full["qualifications"] + [{"code": "qual.srdi"}],
                  overrides=full["overrides"] + [full["overrides"][1]]), "repeated items")
        same(dict(full, revenue_10k=8000.0), "8000.0 for 8000")
        # PATCH with what is already there, and a GET body sent back, change nothing.
        r = c.patch(path, {"tags": list(reversed(full["tags"])), "contact": rev(full["contact"])})
        eq((r.status, r.json["version"]), (200, ref["version"]), "PATCH of the same content")
        same(json.dumps(get_ok(c, path).json, ensure_ascii=False), "a GET body")
        # Two different overrides of one tag depend on their order: refused.
        expect_error(c.put(path, dict(full, overrides=[
            {"tag": "sig.iot", "value": True}, {"tag": "sig.iot", "value": False}])),
            400, "invalid_value", "overrides[1]", "sig.iot", what="conflicting overrides")
        # A real change still makes a new version.
        for what, body in (("employees", dict(full, employees=151)),
                           ("one tag fewer", dict(full, tags=full["tags"][1:])),
                           ("no contact", {k: v for k, v in full.items() if k != "contact"})):
            r = c.put(path, body)
            eq(r.status, 200, "%s: PUT (%r)" % (what, r))
            check(r.json["version"] == ref["version"] + 1, "%s: version %r after %r", what,
                  r.json["version"], ref["version"])
            check(r.json["updated_at"] >= ref["updated_at"], "%s: updated_at", what)
            ref = r.json


def test_enterprise_input_rules_match_docs(o):
    """Industry, region, credit code and date checks say what docs/api.md says."""
    rng = random.Random(27)
    with Env(o) as env:
        c = env.c

        def refused(body, code, field, msg_has, what):
            if "uscc" not in body:
                body = dict(body, uscc=make_uscc("320214", rng=rng))
            body.setdefault("name", "x")
            r = c.post("/v1/enterprises", body)
            expect_error(r, 400, code, field, msg_has, what=what)
            u = body["uscc"]
            if u.isascii() and len(u) == 18:
                check(c.get("/v1/enterprises/" + u).status in (400, 404),
                      "%s: the refused enterprise was written", what)

        # "a section letter and 2-4 digits": a bare section is not an industry code.
        for ind in ("C", "i"):
            refused({"industry": ind}, "invalid_industry", "industry", None, "industry %r" % ind)
        eq(new_ent(c, rng, industry="c39")["industry"], "C39", "section and division")
        # GB/T 2260 codes start with a province code: 000000 and 999999 alike are refused;
        # a well-formed code outside Wuxi is accepted and derives region.other.
        for region in ("000000", "999999", "990101", "012345"):
            refused({"region": region}, "invalid_region", "region", None, "region " + region)
        d = new_ent(c, rng, region="440305")
        eq(regions_in(d), ["region.other"], "a Shenzhen region")
        # Credit codes: positions 3-8 a division; authority 9 has types 1-3 (domain.md).
        for u in ("000000000000000000", "9Y320214MA1X7K2Q3T", "91YYYYYYMA1X7K2Q3A",
                  make_uscc("320214", kind="94", rng=rng), make_uscc("000000", rng=rng),
                  make_uscc("99ABCD", rng=rng)):
            refused({"uscc": u}, "invalid_uscc", "uscc", None, "credit code " + u)
        # Authorities other than 9 are not defined by domain.md: still accepted.
        d = post_ok(c, "/v1/enterprises", {"uscc": "11320214MA1X7K2Q3W", "name": "机关"})
        eq(d["entity"], "other", "authority 1")
        # A code registered at the national level carries 100000.
        post_ok(c, "/v1/enterprises", {"uscc": make_uscc("100000", rng=rng), "name": "央企"})
        # The length is counted in characters: a full-width digit is one character.
        u = make_uscc("320214", rng=rng)
        wide = u[:4] + "\uff10" + u[5:]
        refused({"uscc": wide}, "invalid_uscc", "uscc", "character 5", "full-width digit")
        r = c.post("/v1/enterprises", {"uscc": wide + "1", "name": "x"})
        err = expect_error(r, 400, "invalid_uscc", "uscc", "(got 19)", what="19 characters")
        check("got 21" not in err["message"], "bytes counted: %r", err["message"])
        # Dates outside the accepted years say which years are accepted.
        for what, body, field in (
                ("founded 9999", {"founded": "9999-12-31"}, "founded"),
                ("founded 1899", {"founded": "1899-12-31"}, "founded"),
                ("issued 3000", {"qualifications": [{"code": "qual.hightech",
                                                     "issued": "3000-01-01"}]},
                 "qualifications[0].issued"),
                ("expires 0001", {"qualifications": [{"code": "qual.hightech",
                                                      "expires": "0001-01-01"}]},
                 "qualifications[0].expires")):
            refused(body, "invalid_date", field, "1900-01-01 to 2999-12-31", what)
        refused({"founded": "2020-02-30"}, "invalid_date", "founded", "calendar", "30 Feb")
        refused({"founded": "2020/02/03"}, "invalid_date", "founded", "YYYY-MM-DD", "slashes")


def test_enterprise_tag_inputs_stay_in_their_class(o):
    """qualifications names qualification tags only; explicit tags cannot add a
    second region (or any other derived class); overrides may force anything."""
    with Env(o) as env:
        c = env.c
        u = "91320214MA1X7K2Q3L"
        cases = [
            ({"qualifications": ["neg.dishonest", "region.320205", "sig.iot"]},
             "qualifications[0]", "neg.dishonest"),
            ({"qualifications": ["qual.srdi", "region.320205"]}, "qualifications[1]",
             "region.320205"),
            ({"qualifications": ["qual.srdi", {"code": "sig.iot", "issued": "2024-01-01"}]},
             "qualifications[1].code", "sig.iot"),
            ({"qualifications": [{"code": "qual.nope"}]}, "qualifications[0].code", None),
            ({"tags": ["region.320211"]}, "tags[0]", "region.320211"),
            ({"tags": ["neg.abnormal", "region.320214"]}, "tags[1]", "region.320214"),
            ({"tags": ["ind.c39"]}, "tags[0]", "ind.c39"),
            ({"tags": ["size.large"]}, "tags[0]", "size.large"),
            ({"tags": ["staff.ge1000"]}, "tags[0]", "staff.ge1000"),
            ({"tags": ["rev.ge50000"]}, "tags[0]", "rev.ge50000"),
            ({"tags": ["age.gt10"]}, "tags[0]", "age.gt10"),
            ({"tags": ["entity.individual"]}, "tags[0]", "entity.individual"),
            ({"explicit_tags": ["region.other"]}, "explicit_tags[0]", "region.other"),
        ]
        for extra, field, msg in cases:
            body = dict({"uscc": u, "name": "x"}, **extra)
            r = c.post("/v1/enterprises", body)
            code = "unknown_tag" if msg is None else "invalid_value"
            expect_error(r, 400, code, field, msg, what="POST %s" % json.dumps(extra))
            eq(c.get("/v1/enterprises/" + u).status, 404, "refused POST wrote %s" % extra)
        d = post_ok(c, "/v1/enterprises", {
            "uscc": u, "name": "x", "region": "320214",
            "qualifications": ["qual.srdi", {"code": "qual.hightech", "issued": iso(today_cn())}],
            "tags": ["neg.dishonest", "sig.iot", "qual.listed", "entity.branch", "zone.wnd"]})
        eq(regions_in(d), ["region.320214"], "one region")
        for t in ("qual.srdi", "qual.hightech", "neg.dishonest", "sig.iot", "qual.listed",
                  "entity.branch", "zone.wnd"):
            check(t in d["tags"], "tag %s missing: %r", t, d["tags"])
        # A PUT or PATCH that adds a second region is refused and changes nothing.
        before = get_ok(c, "/v1/enterprises/" + u).raw
        expect_error(c.patch("/v1/enterprises/" + u, {"tags": ["region.320211"]}), 400,
                     "invalid_value", "tags[0]", what="PATCH a second region")
        expect_error(c.put("/v1/enterprises/" + u, {"name": "x", "tags": ["region.320211"]}),
                     400, "invalid_value", "tags[0]", what="PUT a second region")
        eq(get_ok(c, "/v1/enterprises/" + u).raw, before, "a refused write changed it")
        # Overrides stay allowed for any tag, derived classes included.
        r = c.patch("/v1/enterprises/" + u, {"overrides": [
            {"tag": "region.320211", "value": True, "by": "op"},
            {"tag": "region.320214", "value": False, "by": "op"}]})
        eq(r.status, 200, "override of region tags (%r)" % r)
        eq(regions_in(r.json), ["region.320211"], "region forced by an operator")
        # An enterprise read back (explicit_tags) can be sent again as it is.
        g = get_ok(c, "/v1/enterprises/" + u).json
        r = c.put("/v1/enterprises/" + u, g)
        eq((r.status, r.json["version"]), (200, g["version"]), "PUT of a GET body (%r)" % r)


# --------------------------------------------------------------------------
# Policies
# --------------------------------------------------------------------------

POLICY = {
    "title": "2026年度高新技术企业认定奖励",
    "issuer": "无锡市科学技术局",
    "level": "city",
    "tags": ["tax.hightech_rate", "fin.reward", "fin.reward"],
    "rule": {"all": ["qual.hightech"], "any": ["region.320214", "region.320211", "region.320211"],
             "none": ["neg.dishonest"]},
    "opens": "2026-01-01",
    "closes": "2026-12-31",
    "mode": "apply",
    "url": "https://kjj.wuxi.gov.cn/doc/2026/hightech.html",
    "summary": "对首次认定的高新技术企业给予奖励。\n申报材料见附件。",
}


def test_policy_crud_and_errors(o):
    with Env(o) as env:
        c = env.c
        tax = Taxonomy(c)
        r = c.post("/v1/policies", POLICY)
        eq(r.status, 201, "POST policy (%r)" % r)
        p = r.json
        check(isinstance(p["id"], int) and p["id"] > 0, "policy id %r", p.get("id"))
        eq(r.header("location"), "/v1/policies/%d" % p["id"], "Location")
        eq(p["status"], "draft", "a new policy is a draft")
        eq(p["version"], 1, "version")
        eq(p["published_at"], None, "published_at of a draft")
        for k in ("title", "issuer", "level", "opens", "closes", "mode", "url", "summary"):
            eq(p[k], POLICY[k], "policy " + k)
        eq(p["tags"], tax.pol_sorted(POLICY["tags"]), "policy tags sorted and unique")
        eq(p["rule"], {"all": ["qual.hightech"],
                       "any": tax.ent_sorted(["region.320214", "region.320211"]),
                       "none": ["neg.dishonest"]}, "rule normalised")
        check("created_at" in p and "updated_at" in p, "times missing: %r", sorted(p))
        pid = p["id"]
        g = get_ok(c, "/v1/policies/%d" % pid)
        eq(g.header("etag"), '"1"', "policy ETag")
        eq(g.json, p, "GET policy")

        # Minimal policy: defaults.
        m = post_ok(c, "/v1/policies", {"title": "最简政策"})
        eq(m["mode"], "apply", "default mode")
        eq(m["rule"], {"all": [], "any": [], "none": []}, "default rule")
        eq(m["tags"], [], "default tags")
        check(m["id"] > pid, "ids increase: %d then %d", pid, m["id"])

        # PUT replaces the whole policy, keeps status and creation time.
        rep = {"title": "改版后的政策", "level": "district", "mode": "auto",
               "tags": ["fin.loan_discount"], "rule": {"any": ["size.small", "size.micro"]}}
        r = c.put("/v1/policies/%d" % pid, rep)
        eq(r.status, 200, "PUT policy (%r)" % r)
        q = r.json
        eq(q["version"], 2, "version after PUT")
        eq(q["status"], "draft", "status after PUT")
        eq(q["created_at"], p["created_at"], "created_at after PUT")
        for gone in ("issuer", "summary", "url", "opens", "closes"):
            check(gone not in q, "PUT kept %s", gone)
        eq(q["mode"], "auto", "mode after PUT")
        eq(q["rule"]["any"], tax.ent_sorted(["size.small", "size.micro"]), "rule after PUT")
        snapshot = get_ok(c, "/v1/policies/%d" % pid).raw

        bad = [
            ("missing title", {"level": "city"}, 400, "missing_field", "title", None),
            ("title not a string", {"title": 1}, 400, "invalid_type", "title", None),
            ("unknown policy tag", {"title": "t", "tags": ["fin.nope"]}, 400, "unknown_tag",
             "tags[0]", "fin.nope"),
            ("enterprise tag as policy tag", {"title": "t", "tags": ["ind.c"]}, 400,
             "unknown_tag", "tags[0]", "ind.c"),
            ("unknown tag in rule", {"title": "t", "rule": {"any": ["ind.c", "ind.zz"]}}, 400,
             "unknown_tag", "rule.any[1]", "ind.zz"),
            ("policy tag in rule", {"title": "t", "rule": {"all": ["fin.reward"]}}, 400,
             "unknown_tag", "rule.all[0]", "fin.reward"),
            ("unknown rule part", {"title": "t", "rule": {"some": ["ind.c"]}}, 400,
             "unknown_field", "rule.some", None),
            ("rule not an object", {"title": "t", "rule": ["ind.c"]}, 400, "invalid_type",
             "rule", None),
            ("closes before opens", {"title": "t", "opens": "2026-05-02", "closes": "2026-05-01"},
             400, "invalid_date", "closes", None),
            ("bad date", {"title": "t", "opens": "2026/05/01"}, 400, "invalid_date", "opens",
             None),
            ("bad level", {"title": "t", "level": "county"}, 400, "invalid_value", "level",
             None),
            ("bad mode", {"title": "t", "mode": "push"}, 400, "invalid_value", "mode", None),
            ("bad url", {"title": "t", "url": "javascript:alert(1)"}, 400, "invalid_url", "url",
             None),
            ("url without a host", {"title": "t", "url": "http://"}, 400, "invalid_url", "url",
             "host"),
            ("https url without a host", {"title": "t", "url": "https:///x"}, 400,
             "invalid_url", "url", "host"),
            ("url with a port only", {"title": "t", "url": "http://:80/x"}, 400,
             "invalid_url", "url", "host"),
            ("url with user info only", {"title": "t", "url": "http://u@/x"}, 400,
             "invalid_url", "url", "host"),
            ("url of 5000 characters",
             {"title": "t", "url": "https://example.gov.cn/" + "a" * 4977}, 400, "invalid_url",
             "url", "too long: at most 2048"),
            ("unknown field", {"title": "t", "budget": 5}, 400, "unknown_field", "budget", None),
            ("65 tags in rule.all", {"title": "t", "rule": {"all": tax.ent_codes[:65]}}, 400,
             "too_many", "rule.all", None),
            ("65 policy tags", {"title": "t", "tags": tax.pol_codes[:65]}, 400, "too_many",
             "tags", None),
            ("title of 201 characters", {"title": "政" * 201}, 400, "invalid_value", "title",
             None),
        ]
        for what, body, status, code, field, msg in bad:
            expect_error(c.post("/v1/policies", body), status, code, field, msg,
                         what="POST policy " + what)
            expect_error(c.put("/v1/policies/%d" % pid, body), status, code, field, msg,
                         what="PUT policy " + what)
            eq(get_ok(c, "/v1/policies/%d" % pid).raw, snapshot,
               "policy after a refused PUT (%s)" % what)
        expect_error(c.request("POST", "/v1/policies", body="{x", content_type="application/json"),
                     400, "invalid_json", what="POST malformed policy")
        expect_error(c.request("PUT", "/v1/policies/%d" % pid, body=json.dumps(rep),
                               content_type="text/plain"), 415, "unsupported_media_type",
                     what="PUT policy text/plain")
        expect_error(c.put("/v1/policies/%d" % pid, rep, headers={"If-Match": '"1"'}), 412,
                     "version_mismatch", what="PUT policy with a stale If-Match")
        eq(get_ok(c, "/v1/policies/%d" % pid).raw, snapshot, "policy after refused PUTs")
        r = c.put("/v1/policies/%d" % pid, rep, headers={"If-Match": '"2"'})
        eq(r.status, 200, "PUT policy with the current If-Match (%r)" % r)
        eq(r.json["version"], 3, "version after conditional PUT")
        # Only the two policies exist (refused POSTs created nothing).
        lst = get_ok(c, "/v1/policies").json
        eq([x["id"] for x in lst["items"]], [pid, m["id"]], "policies after refused POSTs")

        # Missing and malformed ids.
        for path in ("/v1/policies/999999", "/v1/policies/abc", "/v1/policies/0",
                     "/v1/policies/-1"):
            expect_error(c.get(path), 404, "not_found", what="GET " + path)
        expect_error(c.put("/v1/policies/999999", rep), 404, "not_found", what="PUT missing")
        expect_error(c.delete("/v1/policies/999999"), 404, "not_found", what="DELETE missing")
        # DELETE
        r = c.delete("/v1/policies/%d" % m["id"])
        eq(r.status, 204, "DELETE policy (%r)" % r)
        expect_error(c.get("/v1/policies/%d" % m["id"]), 404, "not_found", what="GET deleted")
        expect_error(c.delete("/v1/policies/%d" % m["id"]), 404, "not_found",
                     what="DELETE deleted")
        expect_error(c.post("/v1/policies/%d/publish" % m["id"]), 404, "not_found",
                     what="publish deleted")
        # Ids are not reused.
        n = post_ok(c, "/v1/policies", {"title": "再来一个"})
        check(n["id"] > m["id"], "policy id %d reused after delete of %d", n["id"], m["id"])
        # Links with a host are accepted, up to 2048 bytes.
        for url in ("http://example.com", "https://u:p@kjj.wuxi.gov.cn:8443/a?b#c",
                    "http://[2001:db8::1]/x", "https://example.gov.cn/" + "a" * 2025):
            eq(post_ok(c, "/v1/policies", {"title": "链接", "url": url})["url"], url,
               "url %s accepted" % url[:60])


def test_policy_states(o):
    with Env(o) as env:
        c = env.c
        p = post_ok(c, "/v1/policies", dict(POLICY))
        pid = p["id"]
        base = "/v1/policies/%d" % pid
        expect_error(c.post(base + "/withdraw"), 409, "invalid_state", "status",
                     what="withdraw a draft")
        eq(get_ok(c, base).json, p, "refused withdraw changed the policy")
        r = c.post(base + "/publish")
        eq(r.status, 200, "publish (%r)" % r)
        pub = r.json
        eq(pub["status"], "published", "status after publish")
        eq(pub["version"], 2, "version after publish")
        check(isinstance(pub["published_at"], str), "published_at %r", pub["published_at"])
        check(isinstance(pub.get("job"), int), "the first publish starts a job: %r", pub.get("job"))
        r = c.post(base + "/publish")
        eq(r.status, 200, "publish again (%r)" % r)
        eq(r.json.get("job"), None, "publishing again starts no job")
        strip = lambda d: {k: v for k, v in d.items() if k != "job"}
        eq(strip(r.json), strip(pub), "publishing a published policy changes nothing")
        r = c.post(base + "/withdraw")
        eq(r.status, 200, "withdraw (%r)" % r)
        wd = r.json
        eq(wd["status"], "withdrawn", "status after withdraw")
        eq(wd["version"], 3, "version after withdraw")
        eq(wd["published_at"], pub["published_at"], "published_at kept after withdraw")
        r = c.post(base + "/withdraw")
        eq(r.status, 200, "withdraw again (%r)" % r)
        eq(r.json, wd, "withdrawing a withdrawn policy changes nothing")
        r = c.post(base + "/publish")
        eq(r.status, 200, "republish (%r)" % r)
        eq(r.json["status"], "published", "republished")
        eq(r.json["version"], 4, "version after republish")
        # PUT keeps the status; a status in the body is ignored.
        r = c.put(base, dict(POLICY, title="修订", status="draft"))
        eq(r.status, 200, "PUT published policy (%r)" % r)
        eq(r.json["status"], "published", "status after PUT")
        eq(get_ok(c, base).json["status"], "published", "GET status after PUT")
        for action in ("publish", "withdraw"):
            expect_error(c.post("/v1/policies/987654/%s" % action), 404, "not_found",
                         what=action + " missing")
        r = c.get(base + "/publish")
        eq(r.status, 405, "GET on publish")


def test_policy_list_filters_and_paging(o):
    with Env(o) as env:
        c = env.c
        levels = ["national", "provincial", "city", "district"]
        pols = []
        for i in range(13):
            body = {"title": "政策 %d" % i, "level": levels[i % 4],
                    "tags": ["fin.reward"] if i % 2 == 0 else ["tax.small_profit"]}
            p = post_ok(c, "/v1/policies", body)
            if i % 3 >= 1:
                eq(c.post("/v1/policies/%d/publish" % p["id"]).status, 200, "publish")
            if i % 3 == 2:
                eq(c.post("/v1/policies/%d/withdraw" % p["id"]).status, 200, "withdraw")
            p = get_ok(c, "/v1/policies/%d" % p["id"]).json
            pols.append(p)

        def walk(query, limit):
            out, cursor, pages = [], None, 0
            while True:
                r = get_ok(c, "/v1/policies?limit=%d%s%s" % (
                    limit, query, "&cursor=" + cursor if cursor else "")).json
                check(len(r["items"]) <= limit, "page larger than limit")
                out += r["items"]
                pages += 1
                check(pages < 50, "paging does not end")
                if r["next"] is None:
                    return out
                cursor = r["next"]

        allp = get_ok(c, "/v1/policies").json
        eq([p["id"] for p in allp["items"]], [p["id"] for p in pols], "default list in id order")
        eq(allp["next"], None, "no next page")
        eq(allp["items"], pols, "list items are the full policies")
        checks = [
            ("&status=draft", lambda p: p["status"] == "draft"),
            ("&status=published", lambda p: p["status"] == "published"),
            ("&status=withdrawn", lambda p: p["status"] == "withdrawn"),
            ("&tag=fin.reward", lambda p: "fin.reward" in p["tags"]),
            ("&level=city", lambda p: p["level"] == "city"),
            ("&status=published&tag=fin.reward",
             lambda p: p["status"] == "published" and "fin.reward" in p["tags"]),
            ("&level=national&tag=tax.small_profit",
             lambda p: p["level"] == "national" and "tax.small_profit" in p["tags"]),
        ]
        for q, pred in checks:
            want = [p["id"] for p in pols if pred(p)]
            for limit in (500, 2):
                got = [p["id"] for p in walk(q, limit)]
                eq(got, want, "policies%s limit %d" % (q, limit))
        got = walk("", 5)
        eq([p["id"] for p in got], [p["id"] for p in pols], "all policies, 5 per page")
        r = get_ok(c, "/v1/policies?limit=5").json
        eq(r["next"], str(pols[4]["id"]), "next cursor is the last id of the page")
        expect_error(c.get("/v1/policies?status=live"), 400, "invalid_parameter", "status",
                     what="bad status")
        # An undocumented level is refused like an undocumented status, not
        # answered with an empty list.
        for lv in ("county", "bogus", "City", ""):
            expect_error(c.get("/v1/policies?level=" + lv), 400, "invalid_parameter", "level",
                         msg_has="national, provincial, city or district",
                         what="level=%r" % lv)
        expect_error(c.get("/v1/policies?tag=fin.nope"), 400, "unknown_tag", "tag",
                     what="unknown tag")
        expect_error(c.get("/v1/policies?limit=0"), 400, "invalid_parameter", "limit",
                     what="limit 0")
        expect_error(c.get("/v1/policies?limit=501"), 400, "invalid_parameter", "limit",
                     what="limit 501")
        expect_error(c.get("/v1/policies?cursor=-4"), 400, "invalid_parameter", "cursor",
                     what="negative cursor")


def test_enterprise_concurrent_patches(o):
    """60 merge patches of different fields racing on one enterprise, without
    If-Match: huiqid applies them one at a time (none is refused with 409, none is
    lost), each on top of the one before."""
    import threading
    rng = random.Random(17)
    with Env(o) as env:
        c = env.c
        u = make_uscc("320205", rng=rng)
        first = post_ok(c, "/v1/enterprises", {"uscc": u, "name": "并发",
                                               "contact": {"email": "a@b.c"}})
        n = 60

        def patch_of(i):
            k = i % 5
            if k == 0:
                return {"employees": i}
            if k == 1:
                return {"revenue_10k": i * 10}
            if k == 2:
                return {"founded": "2001-02-%02d" % (1 + i % 28)}
            if k == 3:
                return {"contact": {"phone": "0510-%d" % i}}
            return {"contact": {"person": "员工%d" % i}}

        patches = [patch_of(i) for i in range(n)]
        results = [None] * n
        start = threading.Barrier(n)

        def worker(i):
            cl = env.new_client(keepalive=False)
            try:
                start.wait(10 * o.slow)
                results[i] = cl.patch("/v1/enterprises/" + u, patches[i])
            except Exception as e:  # reported below
                results[i] = e
            finally:
                cl.close()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60 * o.slow)
        statuses = {}
        for i, r in enumerate(results):
            check(not isinstance(r, Exception) and r is not None, "PATCH %d failed: %r", i, r)
            statuses[r.status] = statuses.get(r.status, 0) + 1
        eq(statuses, {200: n}, "statuses of %d concurrent PATCHes (%r)" %
           (n, [r for r in results if r.status != 200][:2]))
        # Replayed in the order huiqid applied them (the version each answered),
        # every answer is the document before it with its own patch merged in.
        order = sorted(range(n), key=lambda i: results[i].json["version"])
        eq([results[i].json["version"] for i in order], list(range(2, n + 2)),
           "one version per patch")
        fields = ("employees", "revenue_10k", "founded", "contact")
        state = {f: first.get(f) for f in fields}
        for i in order:
            for k, v in patches[i].items():
                state[k] = dict(state[k] or {}, **v) if isinstance(v, dict) else v
            got = {f: results[i].json.get(f) for f in fields}
            eq(got, state, "the answer to PATCH %d (%s)" % (i, patches[i]))
        d = get_ok(c, "/v1/enterprises/" + u).json
        eq({f: d.get(f) for f in fields}, state, "every concurrent patch is in the document")
        eq(d["version"], 1 + n, "one version per patch")


def test_enterprise_patch_queue(o):
    """The PATCHes of one enterprise wait their turn in a bounded queue: beyond 128
    waiting the answer is 503 overloaded with Retry-After; clients that hang up
    while queued, and a shutdown with PATCHes queued, leave nothing dangling (the
    exit is clean, under ASan too)."""
    import socket
    from harness import AUTH, parse_responses, read_until_closed, resp_command
    rng = random.Random(23)
    # Redis is paused below for up to 1.5 s: keep its reply deadline longer.
    with Env(o, huiqid_args=["--redis-timeout", "10000"]) as env:
        c = env.c
        u = make_uscc("320205", rng=rng)
        path = "/v1/enterprises/" + u
        post_ok(c, "/v1/enterprises", {"uscc": u, "name": "排队"})

        def send_patches(n, first):
            socks = []
            for i in range(n):
                body = json.dumps({"employees": first + i}).encode()
                s = socket.create_connection(("127.0.0.1", env.huiqid_port), timeout=5)
                s.sendall(b"PATCH " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + AUTH +
                          b"Content-Type: application/merge-patch+json\r\nConnection: close\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                socks.append(s)
            return socks

        def answers(socks):
            out = []
            for s in socks:
                data, _ = read_until_closed(s, 15 * o.slow)
                s.close()
                resps = parse_responses(data)
                check(len(resps) == 1, "one answer per PATCH, got %r", data[:300])
                out.append(resps[0])
            return out

        def pause(ms):
            get_ok(c, path)  # the key is cached now: requests wait in the queue, not for it
            eq(resp_command(env.redis_port, "CLIENT", "PAUSE", str(ms), "ALL"), "OK",
               "CLIENT PAUSE")

        # 140 at once while Redis holds the first one's read: 1 runs, 128 wait, 11
        # are refused at once.
        v0 = get_ok(c, path).json["version"]
        pause(1500)
        got = answers(send_patches(140, 1000))
        statuses = sorted(st for st, _, _ in got)
        eq((statuses.count(200), statuses.count(503)), (129, 11), "statuses over the bound")
        for st, hdrs, body in got:
            if st == 503:
                eq(json.loads(body)["error"]["code"], "overloaded", "code of a refused PATCH")
                check(hdrs.get("retry-after") == "1", "503 without Retry-After: %r", hdrs)
        eq(get_ok(c, path).json["version"], v0 + 129, "one version per accepted PATCH")

        # Clients that hang up while queued: the others are answered, the server
        # goes on.
        pause(1000)
        socks = send_patches(40, 2000)
        for s in socks[10:30]:
            s.close()
        got = answers(socks[:10] + socks[30:])
        eq(sorted(st for st, _, _ in got), [200] * 20, "PATCHes of clients that stayed")
        r = c.patch(path, {"employees": 7})
        eq(r.status, 200, "a PATCH after the hang-ups (%r)" % r)
        eq(r.json["employees"], 7, "its change")

        # Shutdown with PATCHes queued (and some of their clients gone).
        pause(1500)
        socks = send_patches(60, 3000)
        for s in socks[:20]:
            s.close()
        time.sleep(0.2)
        problems = env.stop_huiqid()
        eq(problems, [], "stopping huiqid with PATCHes queued")
        for s in socks[20:]:
            s.close()

"""Access control: API keys, roles and scopes, the keys API and CLI, the admin key
bootstrap, the key cache (revocation, Redis outages), rate limits, streamed
imports and what the logs may show."""

import calendar
import hashlib
import json
import os
import random
import re
import signal
import socket
import string
import subprocess
import sys
import time

from harness import (TEST_ADMIN_KEY, Env, check, eq, make_uscc, parse_responses, raw_exchange,
                     read_until_closed, wait_until, wrong_check)
from tests_api import expect_error, get_ok, post_ok
from tests_ops import aof_contains

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HUIQI_CLI = os.path.join(REPO, "tools", "huiqi")

KEY_RE = re.compile(r"^hq_([a-z0-9]{12})_([A-Za-z0-9]{32})$")
ISO_MS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ADMIN_KID = KEY_RE.match(TEST_ADMIN_KEY).group(1)
AUTH_TTL = 2.0  # seconds a key record stays cached (api/auth.c)
AUTH_REFRESH = 1.5  # seconds after which a key in use is read again in the background

POLICY = {"title": "访问控制测试政策", "issuer": "无锡市科学技术局", "level": "city",
          "tags": ["fin.reward"], "rule": {"all": ["entity.company"]},
          "opens": "2020-01-01", "closes": "2099-12-31"}

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def fake_key(rng, kid=None):
    """A well-formed key; with a fresh random id unless 'kid' is given."""
    kid = kid or "".join(rng.choice(string.digits + string.ascii_lowercase) for _ in range(12))
    secret = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(32))
    return "hq_%s_%s" % (kid, secret)


def expect_401(r, what):
    expect_error(r, 401, "unauthorized", None, what=what)
    eq(r.header("www-authenticate"), 'Bearer realm="huiqi"', what + ": WWW-Authenticate")


def expect_403(r, what):
    expect_error(r, 403, "forbidden", None, what=what)
    check(r.header("www-authenticate") is None, "%s: a 403 carries WWW-Authenticate %r",
          what, r.header("www-authenticate"))


def retry_after(r, what):
    ra = r.header("retry-after")
    check(ra is not None and ra.strip().isdigit() and int(ra) >= 1,
          "%s: Retry-After header is %r (want an integer >= 1)", what, ra)
    return int(ra)


def make_key(c, role, **fields):
    """POST /v1/keys; returns the answer (with 'id' and 'key')."""
    body = dict(fields, role=role)
    d = post_ok(c, "/v1/keys", body)
    m = KEY_RE.match(d.get("key") or "")
    check(m is not None, "new key %r does not look like hq_<12>_<32>", d.get("key"))
    eq(m.group(1), d["id"], "the key's id part")
    return d


def cli(*args, timeout=30):
    """Runs tools/huiqi; returns (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HUIQI_KEY", "HUIQI_URL")}
    p = subprocess.run([sys.executable, HUIQI_CLI] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=timeout, env=env)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def cli_create(env, *args):
    """'huiqi keys create ... --redis': the key it printed (one line on stdout)."""
    rc, out, err = cli("keys", "create", *args, "--redis", "127.0.0.1:%d" % env.redis_port)
    eq(rc, 0, "huiqi keys create %s exit code (stderr %r)" % (" ".join(args), err))
    lines = out.splitlines()
    eq(len(lines), 1, "lines printed by huiqi keys create (%r)" % out)
    check(KEY_RE.match(lines[0]), "huiqi keys create printed %r, not a key", lines[0])
    return lines[0]


def kid_of(key):
    return key.split("_")[1]


def ndjson(docs):
    return "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode("utf-8")


def assert_absent(c, codes, what):
    for u in codes:
        r = c.get("/v1/enterprises/" + u)
        check(r.status == 404, "%s: enterprise %s exists afterwards (%r)", what, u, r)


# --------------------------------------------------------------------------
# 401: no key, bad keys; open and unknown paths
# --------------------------------------------------------------------------


def test_auth_refusals(o):
    rng = random.Random(501)
    with Env(o) as env:
        admin = env.c
        # A positive control: the harness's admin key works on a guarded route.
        eq(get_ok(admin, "/v1/tags?vocab=policy").json["count"], 287, "admin key: tags count")
        secret = KEY_RE.match(TEST_ADMIN_KEY).group(2)
        other_secret = secret[:-1] + ("A" if secret[-1] != "A" else "B")
        bad_headers = [
            ("no Authorization header", None),
            ("empty Authorization", ""),
            ("Bearer without a token", "Bearer "),
            ("the key without a scheme", TEST_ADMIN_KEY),
            ("Basic scheme", "Basic aHE6" + "eA" * 10),
            ("Basic scheme carrying the key", "Basic " + TEST_ADMIN_KEY),
            ("Token scheme", "Token " + TEST_ADMIN_KEY),
            ("id of 11 characters", "Bearer hq_%s_%s" % (ADMIN_KID[:11], secret)),
            ("id of 13 characters", "Bearer hq_%sx_%s" % (ADMIN_KID, secret)),
            ("upper-case id", "Bearer hq_%s_%s" % (ADMIN_KID.upper(), secret)),
            ("secret of 31 characters", "Bearer hq_%s_%s" % (ADMIN_KID, secret[:31])),
            ("secret of 33 characters", "Bearer hq_%s_%sx" % (ADMIN_KID, secret)),
            ("secret with a '-'", "Bearer hq_%s_%s-" % (ADMIN_KID, secret[:31])),
            ("no hq_ prefix", "Bearer xx_%s_%s" % (ADMIN_KID, secret)),
            ("HQ_ prefix", "Bearer HQ_%s_%s" % (ADMIN_KID, secret)),
            ("'.' instead of '_'", "Bearer hq_%s.%s" % (ADMIN_KID, secret)),
            ("unknown id", "Bearer " + fake_key(rng)),
            ("right id, wrong secret", "Bearer hq_%s_%s" % (ADMIN_KID, other_secret)),
            ("the key twice", "Bearer %s %s" % (TEST_ADMIN_KEY, TEST_ADMIN_KEY)),
        ]
        routes = [("GET", "/v1/tags?vocab=policy", None),
                  ("GET", "/v1/enterprises", None),
                  ("POST", "/v1/enterprises", {"uscc": make_uscc(rng=rng), "name": "x"}),
                  ("GET", "/v1/policies/1", None),
                  ("GET", "/v1/keys", None),
                  ("POST", "/v1/keys", {"role": "admin"}),
                  ("DELETE", "/v1/keys/" + ADMIN_KID, None),
                  ("POST", "/v1/enterprises:retag", None)]
        nokey = env.new_client(key=None)
        for what, hdr in bad_headers:
            headers = {"Authorization": hdr} if hdr is not None else None
            for method, path, body in routes:
                r = nokey.request(method, path, body=body, headers=headers)
                expect_401(r, "%s %s with %s" % (method, path, what))
        r = nokey.request("HEAD", "/v1/tags?vocab=policy")
        eq((r.status, r.raw), (401, b""), "HEAD without a key")
        eq(r.header("www-authenticate"), 'Bearer realm="huiqi"', "HEAD 401: WWW-Authenticate")
        eq(admin.request("HEAD", "/v1/tags?vocab=policy").status, 200, "HEAD with the admin key")
        # Nothing those requests carried was acted on: the admin key still works
        # and no key or enterprise was made.
        keys = get_ok(admin, "/v1/keys").json["items"]
        eq([k["id"] for k in keys], [ADMIN_KID], "keys after refused requests")
        eq([k["state"] for k in keys], ["active"], "the admin key's state after refused requests")
        eq(get_ok(admin, "/v1/enterprises").json["items"], [], "enterprises after refused POSTs")
        # The probes need no key; unknown paths are 404 with or without one.
        for client, what in ((nokey, "no key"), (admin, "the admin key")):
            for path, body in (("/healthz", {"status": "ok"}), ("/readyz", {"status": "ready"})):
                r = client.get(path)
                eq(r.status, 200, "GET %s with %s" % (path, what))
                eq(r.json, body, "GET %s body with %s" % (path, what))
        for hdr in (None, "Bearer " + fake_key(rng), "Basic eDp5", "Bearer " + TEST_ADMIN_KEY):
            for method, path in (("GET", "/v1/nope"), ("GET", "/nope"), ("POST", "/v1/keyz"),
                                 ("GET", "/v1/keys/%s/x" % ADMIN_KID)):
                r = nokey.request(method, path, headers={"Authorization": hdr} if hdr else None)
                expect_error(r, 404, "not_found", what="%s %s with %r" % (method, path, hdr))


# --------------------------------------------------------------------------
# Roles and scopes
# --------------------------------------------------------------------------


def test_enterprise_key_cannot_change_operator_fields(o):
    """An enterprise key updates its own profile, but not its explicit tags (a
    credit system's negative-list tags among them) or overrides: a PUT or PATCH
    that would change them (as sets) is 403 forbidden and changes nothing; one that
    leaves them as stored passes. Operator keys are unaffected."""
    rng = random.Random(509)
    with Env(o) as env:
        admin = env.c
        u = make_uscc("320214", rng=rng)
        post_ok(admin, "/v1/enterprises", {
            "uscc": u, "name": "失信企业", "qualifications": ["qual.srdi"],
            "tags": ["neg.dishonest", "trade.import_export"],
            "overrides": [{"tag": "sig.iot", "value": True, "by": "张工"}]})
        pid = post_ok(admin, "/v1/policies", dict(POLICY, rule={
            "all": ["entity.company"], "none": ["neg.dishonest"]}))["id"]
        eq(admin.post("/v1/policies/%d/publish" % pid).status, 200, "publish")
        ent = env.new_client(key=make_key(admin, "enterprise", scope=u, rate=0)["key"])
        path = "/v1/enterprises/" + u

        def package_ids():
            return [p["id"] for p in get_ok(ent, path + "/policies").json["policies"]]

        eq(package_ids(), [], "the dishonest enterprise's package")
        snapshot = get_ok(admin, path).raw
        doc = json.loads(snapshot)
        put_body = {k: v for k, v in doc.items()
                    if k in ("name", "qualifications", "explicit_tags", "overrides")}
        refused = [
            ("PATCH", {"tags": None}, "tags"),
            ("PATCH", {"tags": []}, "tags"),
            ("PATCH", {"tags": ["trade.import_export"]}, "tags"),
            ("PATCH", {"tags": ["neg.dishonest", "trade.import_export", "qual.hightech"]},
             "tags"),
            ("PATCH", {"explicit_tags": ["trade.import_export"]}, "tags"),
            ("PATCH", {"employees": 5, "tags": None}, "tags"),
            ("PATCH", {"overrides": [{"tag": "neg.dishonest", "value": False, "by": "me"}]},
             "overrides"),
            ("PATCH", {"overrides": [{"tag": "qual.hightech", "value": True}]}, "overrides"),
            ("PATCH", {"overrides": None}, "overrides"),
            ("PATCH", {"overrides": [{"tag": "sig.iot", "value": True, "by": "张工"},
                                     {"tag": "qual.hightech", "value": True, "by": "me"}]},
             "overrides"),
            ("PATCH", {"overrides": [{"tag": "sig.iot", "value": True, "by": "me"}]},
             "overrides"),
            ("PUT", {"name": "失信企业"}, "tags"),
            ("PUT", dict(put_body, explicit_tags=["trade.import_export"]), "tags"),
            ("PUT", {k: v for k, v in put_body.items() if k != "overrides"}, "overrides"),
            ("PUT", dict(put_body, overrides=[{"tag": "neg.dishonest", "value": False,
                                               "by": "me"}]), "overrides"),
        ]
        for method, body, field in refused:
            what = "enterprise key %s %s" % (method, json.dumps(body, ensure_ascii=False))
            expect_error(ent.request(method, path, body=body), 403, "forbidden", field,
                         what=what)
            eq(get_ok(admin, path).raw, snapshot, "document after a refused " + what)
        eq(package_ids(), [], "package after the refused writes")
        # The same with If-Match: still 403 (and 412 for an old version).
        expect_error(ent.patch(path, {"tags": None}, headers={"If-Match": '"1"'}), 403,
                     "forbidden", "tags", what="PATCH tags:null with If-Match")
        expect_error(ent.put(path, dict(put_body, name="旧"), headers={"If-Match": '"7"'}), 412,
                     "version_mismatch", what="enterprise PUT with an old If-Match")
        eq(get_ok(admin, path).raw, snapshot, "document after conditional refusals")

        # What leaves them as stored is fine: other fields, the same tags in another
        # order, a read-back document.
        r = ent.patch(path, {"employees": 12, "contact": {"phone": "0510-1"}})
        eq(r.status, 200, "enterprise PATCH of its own fields (%r)" % r)
        eq(r.json["explicit_tags"], doc["explicit_tags"], "explicit tags kept")
        eq(r.json["overrides"], doc["overrides"], "overrides kept")
        r = ent.patch(path, {"tags": ["trade.import_export", "neg.dishonest"]})
        eq(r.status, 200, "enterprise PATCH of the same tags in another order (%r)" % r)
        back = get_ok(ent, path).json
        back["name"] = "失信企业（更名）"
        back["explicit_tags"] = back["explicit_tags"][::-1]
        r = ent.put(path, back, headers={"If-Match": '"%d"' % back["version"]})
        eq(r.status, 200, "enterprise PUT of a read-back document (%r)" % r)
        eq((r.json["name"], r.json["explicit_tags"], r.json["overrides"], r.json["version"]),
           ("失信企业（更名）", doc["explicit_tags"], doc["overrides"], back["version"] + 1),
           "the PUT's result")
        check("neg.dishonest" in r.json["tags"], "neg.dishonest lost: %r", r.json["tags"])
        r = ent.put(path, back)
        eq(r.status, 200, "the same PUT again, unconditional (%r)" % r)
        eq(package_ids(), [], "package after the enterprise's own updates")

        # An enterprise key on a code not yet registered creates it only bare.
        u2 = make_uscc("320205", rng=rng)
        ent2 = env.new_client(key=make_key(admin, "enterprise", scope=u2, rate=0)["key"])
        expect_error(ent2.put("/v1/enterprises/" + u2, {"name": "新", "tags": ["qual.hightech"]}),
                     403, "forbidden", "tags", what="enterprise PUT creating with tags")
        eq(admin.get("/v1/enterprises/" + u2).status, 404, "nothing created")
        r = ent2.put("/v1/enterprises/" + u2, {"name": "新"})
        eq(r.status, 201, "enterprise PUT creating itself bare (%r)" % r)

        # Operators may.
        r = admin.patch(path, {"tags": None, "overrides": None})
        eq(r.status, 200, "operator PATCH of tags and overrides (%r)" % r)
        eq(package_ids(), [pid], "package once the operator cleared the tag")


def test_auth_roles(o):
    rng = random.Random(502)
    with Env(o) as env:
        admin = env.c
        e1 = make_uscc("320214", rng=rng)
        e2 = make_uscc("320205", rng=rng)
        missing = make_uscc("320211", rng=rng)
        for u in (e1, e2):
            post_ok(admin, "/v1/enterprises", {"uscc": u, "name": "企业 %s" % u[-4:],
                                               "qualifications": ["qual.hightech"]})
        pid = post_ok(admin, "/v1/policies", POLICY)["id"]
        eq(admin.post("/v1/policies/%d/publish" % pid).status, 200, "publish the test policy")

        op = env.new_client(key=make_key(admin, "operator", name="op")["key"])
        integ = env.new_client(key=make_key(admin, "integrator", name="integ")["key"])
        # rate 0: unlimited, so the many requests below are not rate limited.
        ek = make_key(admin, "enterprise", scope=e1, rate=0)
        eq(ek["scope"], e1, "enterprise key scope")
        ent = env.new_client(key=ek["key"])
        clients = {"operator": op, "integrator": integ, "enterprise": ent}

        # Probes that change nothing: an allowed role gets exactly the admin's answer,
        # a refused one 403. (method, path, body, content type, roles besides admin)
        O, I, E = "operator", "integrator", "enterprise"
        nd = "application/x-ndjson"
        bad_line = b'{"uscc":"bad","name":"x"}\n'
        probes = [
            ("GET", "/v1/tags?vocab=enterprise", None, None, {O, I, E}),
            ("GET", "/v1/tags?vocab=policy", None, None, {O, I, E}),
            ("GET", "/v1/enterprises?limit=5", None, None, {O, I}),
            ("GET", "/v1/enterprises/" + e1, None, None, {O, I, E}),
            ("GET", "/v1/enterprises/" + e1.lower(), None, None, {O, I, E}),
            ("GET", "/v1/enterprises/%s/policies" % e1, None, None, {O, I, E}),
            ("GET", "/v1/enterprises/%s/policies" % e1.lower(), None, None, {O, I, E}),
            ("GET", "/v1/enterprises/" + e2, None, None, {O, I}),
            ("GET", "/v1/enterprises/%s/policies" % e2, None, None, {O, I}),
            ("GET", "/v1/enterprises/" + missing, None, None, {O, I}),
            ("PUT", "/v1/enterprises/" + e2, {"uscc": e2}, None, {O, I}),
            ("PATCH", "/v1/enterprises/" + e2, {"employees": -1}, None, {O, I}),
            ("PATCH", "/v1/enterprises/" + e1, {"employees": -1}, None, {O, I, E}),
            ("DELETE", "/v1/enterprises/" + missing, None, None, {O, I}),
            ("POST", "/v1/enterprises", {"name": "没有代码"}, None, {O, I}),
            ("POST", "/v1/enterprises:import", bad_line, nd, {O, I}),
            ("GET", "/v1/enterprises:retag", None, None, {O}),
            ("GET", "/v1/policies", None, None, {O, I}),
            ("GET", "/v1/policies?status=draft", None, None, {O, I}),
            ("GET", "/v1/policies/%d" % pid, None, None, {O, I, E}),
            ("GET", "/v1/policies/987654", None, None, {O, I, E}),
            ("POST", "/v1/policies", {"title": ""}, None, {O}),
            ("PUT", "/v1/policies/%d" % pid, {"title": ""}, None, {O}),
            ("DELETE", "/v1/policies/987654", None, None, {O}),
            ("POST", "/v1/policies/%d/publish" % pid, None, None, {O}),  # already published
            ("POST", "/v1/policies/987654/withdraw", None, None, {O}),
            ("POST", "/v1/policies/987654/push", None, None, {O}),
            ("GET", "/v1/policies/%d/audience" % pid, None, None, {O}),
            ("POST", "/v1/audience", {"rule": {"all": ["qual.hightech"]}}, None, {O}),
            ("GET", "/v1/webhooks", None, None, {O, I}),
            ("POST", "/v1/webhooks", {}, None, {O, I}),
            ("GET", "/v1/webhooks/987654", None, None, {O, I}),
            ("PATCH", "/v1/webhooks/987654", {"rate": 1}, None, {O, I}),
            ("DELETE", "/v1/webhooks/987654", None, None, {O, I}),
            ("POST", "/v1/webhooks/987654/rotate", None, None, {O, I}),
            ("POST", "/v1/webhooks/987654/replay", None, None, {O, I}),
            ("GET", "/v1/jobs/987654", None, None, {O}),
            ("GET", "/v1/jobs/987654/matches", None, None, {O}),
            ("POST", "/v1/jobs/987654/cancel", None, None, {O}),
            ("GET", "/v1/deliveries", None, None, {O, I}),
            ("GET", "/v1/deliveries/987654", None, None, {O, I}),
            ("POST", "/v1/deliveries/987654/retry", None, None, {O, I}),
            ("GET", "/v1/keys", None, None, set()),
            ("GET", "/v1/keys/" + ADMIN_KID, None, None, set()),
            ("POST", "/v1/keys", {"role": "nobody"}, None, set()),
            ("DELETE", "/v1/keys/zzzzzzzzzzzz", None, None, set()),
        ]
        for method, path, body, ctype, roles in probes:
            what = "%s %s" % (method, path)
            kw = {"content_type": ctype} if ctype else {}
            ref = admin.request(method, path, body=body, **kw)
            check(ref.status not in (401, 403, 429) and ref.status < 500,
                  "%s as admin: %r", what, ref)
            for role, c in clients.items():
                r = c.request(method, path, body=body, **kw)
                if role in roles:
                    eq((r.status, r.json), (ref.status, ref.json),
                       "%s as %s (allowed): the admin's answer" % (what, role))
                else:
                    expect_403(r, "%s as %s" % (what, role))

        # Writes each role may make, and the same refused without a trace.
        # Operator: the policy life cycle, enterprises, re-tag status but no re-tag.
        p = post_ok(op, "/v1/policies", dict(POLICY, title="运营者政策"))
        base = "/v1/policies/%d" % p["id"]
        eq(op.put(base, dict(POLICY, title="运营者政策（修订）")).status, 200, "operator PUT policy")
        r = op.post(base + "/publish")
        eq(r.status, 200, "operator publish (%r)" % r)
        job = r.json.get("job")
        check(isinstance(job, int), "publish by the operator started no job: %r", r.json)
        check(get_ok(op, "/v1/jobs/%d" % job).json.get("state") in ("running", "done"),
              "operator GET /v1/jobs/%d", job)
        eq(op.post(base + "/withdraw").status, 200, "operator withdraw")
        eq(op.delete(base).status, 204, "operator DELETE policy")
        u = make_uscc("320213", rng=rng)
        post_ok(op, "/v1/enterprises", {"uscc": u, "name": "运营者企业"})
        eq(op.patch("/v1/enterprises/" + u, {"employees": 9}).status, 200, "operator PATCH")
        eq(op.delete("/v1/enterprises/" + u).status, 204, "operator DELETE enterprise")
        expect_403(op.post("/v1/enterprises:retag"), "POST /v1/enterprises:retag as operator")
        eq(get_ok(admin, "/v1/enterprises:retag").json["state"], "idle",
           "re-tag state after the operator's refused POST")
        r = admin.post("/v1/enterprises:retag")
        eq(r.status, 202, "POST /v1/enterprises:retag as admin (%r)" % r)
        for c, role in ((op, O), (integ, I), (ent, E)):
            expect_403(c.post("/v1/keys", {"role": "admin"}), "POST /v1/keys as " + role)
            expect_403(c.delete("/v1/keys/" + ADMIN_KID), "DELETE admin key as " + role)
        eq([k["id"] for k in get_ok(admin, "/v1/keys").json["items"]].count(ADMIN_KID), 1,
           "the admin key is listed once")
        eq(get_ok(admin, "/v1/keys/" + ADMIN_KID).json["state"], "active",
           "admin key after refused DELETEs")
        eq(len(get_ok(admin, "/v1/keys").json["items"]), 4, "keys after refused POSTs")

        # Integrator: enterprises (incl. import), no policy writes.
        npol = len(get_ok(admin, "/v1/policies?limit=500").json["items"])
        u = make_uscc("320281", rng=rng)
        post_ok(integ, "/v1/enterprises", {"uscc": u, "name": "集成商企业"})
        eq(integ.put("/v1/enterprises/" + u, {"uscc": u, "name": "集成商企业二"}).status, 200,
           "integrator PUT")
        eq(integ.patch("/v1/enterprises/" + u, {"employees": 3}).status, 200, "integrator PATCH")
        eq(integ.delete("/v1/enterprises/" + u).status, 204, "integrator DELETE")
        codes = [make_uscc("320282", rng=rng) for _ in range(3)]
        r = integ.post("/v1/enterprises:import",
                       ndjson({"uscc": x, "name": "导入 %s" % x[-4:]} for x in codes),
                       content_type=nd)
        eq(r.status, 200, "integrator import (%r)" % r)
        eq((r.json["lines"], r.json["accepted"]), (3, 3), "integrator import lines/accepted")
        for x in codes:
            get_ok(admin, "/v1/enterprises/" + x)
        expect_403(integ.post("/v1/policies", POLICY), "POST /v1/policies as integrator")
        expect_403(integ.post("/v1/policies/%d/withdraw" % pid), "withdraw as integrator")
        eq(len(get_ok(admin, "/v1/policies?limit=500").json["items"]), npol,
           "policies after the integrator's refused POST")
        eq(get_ok(admin, "/v1/policies/%d" % pid).json["status"], "published",
           "policy after the integrator's refused withdraw")

        # Enterprise key: its own record (any case in the path), nothing else.
        before2 = get_ok(admin, "/v1/enterprises/" + e2).json
        r = ent.put("/v1/enterprises/" + e1, {"uscc": e1, "name": "自己的企业", "employees": 12})
        eq(r.status, 200, "enterprise key PUT own (%r)" % r)
        r = ent.patch("/v1/enterprises/" + e1.lower(), {"employees": 13})
        eq(r.status, 200, "enterprise key PATCH own, lower-case path (%r)" % r)
        r = ent.put("/v1/enterprises/" + e1.lower(), {"uscc": e1.lower(), "name": "自己的企业",
                                                      "employees": 14})
        eq(r.status, 200, "enterprise key PUT own, lower-case path (%r)" % r)
        got = get_ok(admin, "/v1/enterprises/" + e1).json
        eq((got["name"], got["employees"]), ("自己的企业", 14), "own enterprise after its writes")
        pkg = get_ok(ent, "/v1/enterprises/%s/policies" % e1).json
        eq((pkg["uscc"], [x["id"] for x in pkg["policies"]]), (e1, [pid]),
           "the enterprise's own package")
        expect_403(ent.put("/v1/enterprises/" + e2, {"uscc": e2, "name": "别人的"}),
                   "PUT another enterprise")
        r = ent.put("/v1/enterprises/" + e1, {"uscc": e2, "name": "别人的"})
        check(r.status == 400, "PUT own path with another enterprise's code in the body: %r", r)
        r = ent.patch("/v1/enterprises/" + e1, {"uscc": e2, "name": "别人的"})
        check(r.status == 400, "PATCH own path with another enterprise's code in the body: %r", r)
        expect_403(ent.patch("/v1/enterprises/" + e2.lower(), {"name": "别人的"}),
                   "PATCH another enterprise")
        expect_403(ent.delete("/v1/enterprises/" + e2), "DELETE another enterprise")
        expect_403(ent.delete("/v1/enterprises/" + e1), "DELETE own enterprise")
        eq(get_ok(admin, "/v1/enterprises/" + e2).json, before2, "the other enterprise after refusals")
        get_ok(admin, "/v1/enterprises/" + e1)
        # A path that only differs from the scope by its check character, or that is
        # not 18 characters, is not the scope.
        expect_403(ent.get("/v1/enterprises/" + wrong_check(e1)[0]), "GET scope with a wrong check")
        expect_403(ent.get("/v1/enterprises/" + e1[:17]), "GET 17 characters of the scope")
        expect_403(ent.get("/v1/enterprises/" + e1 + "0"), "GET scope + 1 character")
        fresh = make_uscc("320214", rng=rng)
        expect_403(ent.post("/v1/enterprises", {"uscc": fresh, "name": "新"}),
                   "POST /v1/enterprises as enterprise")
        expect_403(ent.post("/v1/enterprises", {"uscc": e1, "name": "新"}),
                   "POST own code to /v1/enterprises as enterprise")
        expect_403(ent.post("/v1/enterprises:import", ndjson([{"uscc": fresh, "name": "新"}]),
                            content_type=nd), "import as enterprise")
        assert_absent(admin, [fresh], "refused enterprise-key creations")


# --------------------------------------------------------------------------
# The keys API
# --------------------------------------------------------------------------


def test_keys_api(o):
    rng = random.Random(503)
    with Env(o) as env:
        c = env.c
        scope = make_uscc("320214", rng=rng)
        # Refusals name the field; nothing is created.
        bad = [
            ({}, "role"), ({"role": None}, "role"), ({"role": "root"}, "role"),
            ({"role": "Admin"}, "role"), ({"role": 1}, "role"), ({"role": ["admin"]}, "role"),
            ({"role": "operator", "extra": 1}, "extra"),
            ({"role": "operator", "key": TEST_ADMIN_KEY}, "key"),
            ({"role": "operator", "name": "x" * 101}, "name"),
            ({"role": "operator", "name": 5}, "name"),
            ({"role": "enterprise"}, "scope"), ({"role": "enterprise", "scope": None}, "scope"),
            ({"role": "enterprise", "scope": ""}, "scope"),
            ({"role": "enterprise", "scope": wrong_check(scope)[0]}, "scope"),
            ({"role": "enterprise", "scope": scope[:17]}, "scope"),
            ({"role": "enterprise", "scope": 91320214}, "scope"),
            ({"role": "operator", "scope": scope}, "scope"),
            ({"role": "admin", "scope": scope}, "scope"),
            ({"role": "operator", "rate": -1}, "rate"), ({"role": "operator", "rate": "5"}, "rate"),
            ({"role": "operator", "rate": True}, "rate"),
            ({"role": "operator", "rate": 1e7}, "rate"),
        ]
        for body, field in bad:
            r = c.post("/v1/keys", body)
            check(r.status == 400, "POST /v1/keys %r: expected 400, got %r", body, r)
            err = r.json["error"]
            eq(err["field"], field, "POST /v1/keys %r: error field" % (body,))
            check(isinstance(err["code"], str) and err["code"] and err["message"],
                  "POST /v1/keys %r: error %r", body, err)
        for raw in (b"", b"{", b"[]", b'"role"'):
            r = c.post("/v1/keys", raw)
            eq(r.status, 400, "POST /v1/keys with body %r (%r)" % (raw, r))
        eq([k["id"] for k in get_ok(c, "/v1/keys").json["items"]], [ADMIN_KID],
           "keys after refused creations")

        # Creation: every field, the key once, a Location.
        t0 = time.time()
        r = c.post("/v1/keys", {"role": "operator", "name": "政策办公室", "rate": 2.5})
        eq(r.status, 201, "POST /v1/keys (%r)" % r)
        opk = r.json
        eq(set(opk), {"id", "key", "role", "name", "scope", "rate", "created_at", "revoked_at",
                      "state"}, "fields of a new key")
        eq((opk["role"], opk["name"], opk["scope"], opk["rate"], opk["revoked_at"], opk["state"]),
           ("operator", "政策办公室", None, 2.5, None, "active"), "new operator key")
        check(KEY_RE.match(opk["key"]) and kid_of(opk["key"]) == opk["id"],
              "new key %r / id %r", opk["key"], opk["id"])
        eq(r.header("location"), "/v1/keys/" + opk["id"], "Location of a new key")
        check(ISO_MS_RE.match(opk["created_at"]), "created_at %r", opk["created_at"])
        created = calendar.timegm(time.strptime(opk["created_at"][:19], "%Y-%m-%dT%H:%M:%S"))
        check(abs(created - t0) < 60, "created_at %s is not now", opk["created_at"])
        ek = make_key(c, "enterprise", scope=scope.lower(), name="企业自助")
        eq((ek["scope"], ek["rate"], ek["role"]), (scope, None, "enterprise"),
           "enterprise key: scope upper-cased, default rate")
        ik = make_key(c, "integrator", rate=0)
        eq((ik["rate"], ik["name"], ik["scope"]), (0, None, None), "integrator key, rate 0")
        ak = make_key(c, "admin", name=None)
        eq(ak["name"], None, "admin key with a null name")
        made = [opk, ek, ik, ak]
        check(len({d["id"] for d in made}) == 4 and len({d["key"] for d in made}) == 4,
              "keys or ids repeat: %r", [d["id"] for d in made])

        # Each new key works at once with its role.
        for d, path, status in ((opk, "/v1/policies", 200), (ek, "/v1/enterprises/" + scope, 404),
                                (ik, "/v1/enterprises", 200), (ak, "/v1/keys", 200)):
            r = env.new_client(key=d["key"]).get(path)
            eq(r.status, status, "GET %s with the new %s key (%r)" % (path, d["role"], r))

        # Listing and reading: never the key or its hash.
        r = get_ok(c, "/v1/keys")
        listed = r.json["items"]
        eq(set(r.json), {"items", "next"}, "GET /v1/keys top-level fields")
        eq(r.json["next"], None, "GET /v1/keys: one page holds them all")
        # Oldest first; keys made in the same millisecond by id.
        order = [ADMIN_KID] + [d["id"] for d in sorted(made, key=lambda d: (d["created_at"],
                                                                            d["id"]))]
        eq([k["id"] for k in listed], order, "GET /v1/keys ids, oldest first")
        # Pages of 2 follow each other, as every list does.
        paged, cursor, pages = [], None, 0
        while True:
            page = get_ok(c, "/v1/keys?limit=2" + ("&cursor=" + cursor if cursor else "")).json
            check(len(page["items"]) <= 2, "a page of %d keys with limit=2", len(page["items"]))
            paged += page["items"]
            pages += 1
            cursor = page["next"]
            if cursor is None or pages > 10:
                break
        eq([k["id"] for k in paged], order, "GET /v1/keys in pages of 2")
        eq(pages, 3, "pages of 2 for 5 keys")
        for bad in ("limit=0", "limit=1001", "limit=x", "cursor=-1", "cursor=x"):
            eq(c.get("/v1/keys?" + bad).status, 400, "GET /v1/keys?%s" % bad)
        for k in listed:
            check("key" not in k and "hash" not in k, "a listed key shows %s", sorted(k))
            eq(set(k), {"id", "role", "name", "scope", "rate", "created_at", "revoked_at", "state"},
               "fields of listed key %s" % k["id"])
        for d in made:
            one = get_ok(c, "/v1/keys/" + d["id"]).json
            want = {k: v for k, v in d.items() if k != "key"}
            eq(one, want, "GET /v1/keys/%s" % d["id"])
            eq(next(k for k in listed if k["id"] == d["id"]), want, "listed %s" % d["id"])
        boot = get_ok(c, "/v1/keys/" + ADMIN_KID).json
        eq((boot["role"], boot["state"], boot["scope"]), ("admin", "active", None),
           "the bootstrap key")
        for d in made + [{"key": TEST_ADMIN_KEY}]:
            sec = KEY_RE.match(d["key"]).group(2)
            for path in ["/v1/keys"] + ["/v1/keys/" + x["id"] for x in made]:
                check(sec.encode() not in c.get(path).raw, "GET %s shows a secret", path)
        # Redis keeps a SHA-256 of the secret, not the secret.
        stored = env.redis("HGETALL", "hq:key:" + opk["id"])
        rec = dict(zip(stored[::2], stored[1::2]))
        sec = KEY_RE.match(opk["key"]).group(2)
        eq(rec.get(b"hash"), hashlib.sha256(sec.encode()).hexdigest().encode(), "stored hash")
        check(not any(sec.encode() in v for v in rec.values()), "the secret is stored in Redis")
        for path in ("/v1/keys/zzzzzzzzzzzz", "/v1/keys/ZZZ", "/v1/keys/" + "a" * 40,
                     "/v1/keys/%s_x" % opk["id"]):
            expect_error(c.get(path), 404, "not_found", what="GET " + path)
            expect_error(c.delete(path), 404, "not_found", what="DELETE " + path)

        # Revocation: 204, 401 at once on this huiqid, the record stays.
        opc = env.new_client(key=opk["key"])
        eq(opc.get("/v1/policies").status, 200, "operator key before revocation")
        r = c.delete("/v1/keys/" + opk["id"])
        eq(r.status, 204, "DELETE /v1/keys/%s (%r)" % (opk["id"], r))
        expect_401(opc.get("/v1/policies"), "a revoked key right after DELETE")
        expect_401(env.new_client(key=opk["key"]).get("/v1/tags?vocab=policy"),
                   "a revoked key on a new connection")
        rev = get_ok(c, "/v1/keys/" + opk["id"]).json
        eq(rev["state"], "revoked", "state of a revoked key")
        check(isinstance(rev["revoked_at"], str) and ISO_MS_RE.match(rev["revoked_at"]) and
              rev["revoked_at"] >= rev["created_at"], "revoked_at %r", rev["revoked_at"])
        eq({k: v for k, v in rev.items() if k not in ("state", "revoked_at")},
           {k: v for k, v in opk.items() if k not in ("state", "revoked_at", "key")},
           "a revoked key's other fields")
        eq(c.delete("/v1/keys/" + opk["id"]).status, 204, "DELETE a revoked key again")
        eq(get_ok(c, "/v1/keys/" + opk["id"]).json, rev, "revoking twice changes nothing")
        listed = get_ok(c, "/v1/keys").json["items"]
        eq([k["id"] for k in listed], order, "revoked keys stay listed")
        eq([k["state"] for k in listed],
           ["revoked" if x == opk["id"] else "active" for x in order],
           "states after one revocation")
        # The revoked key stays refused once its record is read again from Redis.
        t_rev = time.monotonic()

        def refused_after_ttl():
            expect_401(opc.get("/v1/policies"), "a revoked key after the cache lifetime")
            return time.monotonic() - t_rev > AUTH_TTL + 0.2
        wait_until(refused_after_ttl, 10 * o.slow, "the cache lifetime to pass", interval=0.1)
        # An admin may revoke itself (the bootstrap key still works).
        akc = env.new_client(key=ak["key"])
        eq(akc.delete("/v1/keys/" + ak["id"]).status, 204, "an admin revokes its own key")
        expect_401(akc.get("/v1/keys"), "a self-revoked admin key")
        get_ok(c, "/v1/keys")


# --------------------------------------------------------------------------
# Revocation straight in Redis, and the CLI
# --------------------------------------------------------------------------


def test_keys_list_adopts_older_records(o):
    """Keys written before the creation index existed (in hq:keys and their record
    only, as an older huiqid or CLI wrote them) are listed in creation order with
    the others, and indexed once."""
    with Env(o) as env:
        c = env.c
        new = post_ok(c, "/v1/keys", {"role": "operator", "name": "new"})
        # Two older records: one made before every other key, one just after the new one.
        for kid, created in (("old000000001", 1000), ("old000000002", 10 ** 13)):
            env.redis("HSET", "hq:key:" + kid, "hash", "0" * 64, "role", "integrator",
                      "created", str(created))
            env.redis("SADD", "hq:keys", kid)
        ids = [k["id"] for k in get_ok(c, "/v1/keys").json["items"]]
        eq(ids, ["old000000001", ADMIN_KID, new["id"], "old000000002"],
           "older records listed in creation order")
        eq(env.redis("ZCARD", "hq:keys:by_created"), 4, "the index holds every key")
        page = get_ok(c, "/v1/keys?limit=3&cursor=1").json
        eq(([k["id"] for k in page["items"]], page["next"]),
           ([ADMIN_KID, new["id"], "old000000002"], None), "a page from position 1")


def test_revoked_in_redis_refused_within_ttl(o):
    with Env(o) as env:
        c = env.c
        redis = "127.0.0.1:%d" % env.redis_port
        path = "/v1/tags?vocab=policy"
        keys = [make_key(c, "operator"), make_key(c, "enterprise", scope=make_uscc(), rate=0)]
        clients = [env.new_client(key=d["key"]) for d in keys]
        for d, kc in zip(keys, clients):
            eq(kc.get(path).status, 200, "%s key before revocation" % d["role"])
        # One revoked by id, one by the whole key (the tool takes either).
        t_revoked = []
        for d, arg in zip(keys, (keys[0]["id"], keys[1]["key"])):
            rc, out, err = cli("keys", "revoke", arg, "--redis", redis)
            t_revoked.append(time.monotonic())
            eq(rc, 0, "huiqi keys revoke exit code (stderr %r)" % err)
            eq(env.redis("HEXISTS", "hq:key:" + d["id"], "revoked"), 1, "revoked in Redis")
        refused_at = [None, None]

        def all_refused():
            for i, kc in enumerate(clients):
                if refused_at[i] is None:
                    r = kc.get(path)
                    if r.status == 401:
                        refused_at[i] = time.monotonic()
                    else:
                        eq(r.status, 200, "a key revoked in Redis before it is refused")
            return all(refused_at)

        wait_until(all_refused, 5 * o.slow, "keys revoked in Redis to be refused", interval=0.05)
        for d, kc, t0, t1 in zip(keys, clients, t_revoked, refused_at):
            dt = t1 - t0
            check(dt < 2.5 * o.slow, "a %s key revoked in Redis was still served %.2fs later "
                  "(limit 2 s)", d["role"], dt)
            expect_401(kc.get(path), "%s key revoked in Redis" % d["role"])
            expect_401(env.new_client(key=d["key"]).get(path),
                       "%s key revoked in Redis, new connection" % d["role"])
            rec = get_ok(c, "/v1/keys/" + d["id"]).json
            eq(rec["state"], "revoked", "state via the API")
            check(isinstance(rec["revoked_at"], str), "revoked_at %r", rec["revoked_at"])
        # Revoking an unknown id is an error and creates nothing.
        rc, out, err = cli("keys", "revoke", "zzzzzzzzzzzz", "--redis", redis)
        check(rc != 0, "huiqi keys revoke of an unknown id exited 0")
        eq(env.redis("EXISTS", "hq:key:zzzzzzzzzzzz"), 0, "record of an unknown revoked id")


def test_cli_keys(o):
    rng = random.Random(504)
    with Env(o) as env:
        redis = "127.0.0.1:%d" % env.redis_port
        url = "http://127.0.0.1:%d" % env.huiqid_port
        # A key written straight into Redis works at once, without a restart.
        key = cli_create(env, "--role", "admin", "--name", "cli admin")
        kc = env.new_client(key=key)
        keys = get_ok(kc, "/v1/keys").json["items"]
        mine = [k for k in keys if k["id"] == kid_of(key)]
        eq(len(mine), 1, "the CLI key in GET /v1/keys")
        eq((mine[0]["role"], mine[0]["name"], mine[0]["state"]), ("admin", "cli admin", "active"),
           "the CLI key as the API shows it")
        check(ISO_MS_RE.match(mine[0]["created_at"]), "created_at %r", mine[0]["created_at"])
        # list --redis --json
        rc, out, err = cli("keys", "list", "--redis", redis, "--json")
        eq(rc, 0, "huiqi keys list --redis exit code (%r)" % err)
        rows = json.loads(out)
        eq(sorted(r["id"] for r in rows), sorted([ADMIN_KID, kid_of(key)]), "keys list --redis ids")
        row = next(r for r in rows if r["id"] == kid_of(key))
        eq((row["role"], row["state"], row["name"]), ("admin", "active", "cli admin"),
           "keys list --redis row")
        check(key not in out and KEY_RE.match(key).group(2) not in out, "keys list shows a secret")
        # Through the API too, with the new key.
        rc, out, err = cli("keys", "list", "--url", url, "--key", key, "--json")
        eq(rc, 0, "huiqi keys list --url exit code (%r)" % err)
        eq(sorted(r["id"] for r in json.loads(out)), sorted([ADMIN_KID, kid_of(key)]),
           "keys list --url ids")
        rc, out, err = cli("keys", "create", "--role", "integrator", "--url", url, "--key", key)
        eq(rc, 0, "huiqi keys create --url exit code (%r)" % err)
        ikey = out.strip()
        check(KEY_RE.match(ikey), "keys create --url printed %r", out)
        eq(get_ok(env.c, "/v1/keys/" + kid_of(ikey)).json["role"], "integrator", "API-made key")
        get_ok(env.new_client(key=ikey), "/v1/enterprises")
        # An integrator key cannot make keys through the CLI either.
        rc, out, err = cli("keys", "create", "--role", "admin", "--url", url, "--key", ikey)
        check(rc != 0 and out.strip() == "", "keys create with an integrator key: rc %d out %r",
              rc, out)
        # Enterprise keys need a valid scope; others must not have one.
        nkeys = len(env.redis("SMEMBERS", "hq:keys"))
        for args in (("--role", "enterprise"),
                     ("--role", "enterprise", "--scope", wrong_check(make_uscc(rng=rng))[0]),
                     ("--role", "operator", "--scope", make_uscc(rng=rng)),
                     ("--role", "operator", "--rate", "-1"),
                     ("--role", "root")):
            rc, out, err = cli("keys", "create", *args, "--redis", redis)
            check(rc != 0, "huiqi keys create %s exited 0", " ".join(args))
            eq(out.strip(), "", "stdout of a failed keys create %s" % " ".join(args))
        eq(len(env.redis("SMEMBERS", "hq:keys")), nkeys, "keys after failed CLI creations")
        # A scoped key from the CLI (lower case accepted) is limited to its scope.
        u = make_uscc("320214", rng=rng)
        post_ok(env.c, "/v1/enterprises", {"uscc": u, "name": "CLI 企业"})
        ekey = cli_create(env, "--role", "enterprise", "--scope", u.lower(), "--rate", "0")
        ec = env.new_client(key=ekey)
        eq(get_ok(ec, "/v1/enterprises/" + u).json["uscc"], u, "scoped CLI key on its scope")
        expect_403(ec.get("/v1/enterprises/" + make_uscc(rng=rng)), "scoped CLI key elsewhere")
        eq(get_ok(env.c, "/v1/keys/" + kid_of(ekey)).json["scope"], u, "scope of the CLI key")
        # generate prints a fresh key and stores nothing.
        rc, out, err = cli("keys", "generate")
        eq(rc, 0, "huiqi keys generate exit code")
        check(KEY_RE.match(out.strip()), "keys generate printed %r", out)
        eq(env.redis("EXISTS", "hq:key:" + kid_of(out.strip())), 0, "a generated key is not stored")
        expect_401(env.new_client(key=out.strip()).get("/v1/tags?vocab=policy"),
                   "a generated key nobody stored")


# --------------------------------------------------------------------------
# HUIQI_ADMIN_KEY
# --------------------------------------------------------------------------


def test_admin_key_bootstrap(o):
    rng = random.Random(505)
    with Env(o) as env:
        boot = get_ok(env.c, "/v1/keys/" + ADMIN_KID).json
        eq((boot["role"], boot["name"], boot["state"]),
           ("admin", "bootstrap (HUIQI_ADMIN_KEY)", "active"), "the bootstrap key record")
        check(TEST_ADMIN_KEY not in env.huiqid_stderr() and
              KEY_RE.match(TEST_ADMIN_KEY).group(2) not in env.huiqid_stderr(),
              "huiqid logged the bootstrap key")
        problems = env.stop_huiqid()
        check(not problems, "stopping huiqid: %s", problems)

        # A malformed admin key stops huiqid at start, saying why.
        secret = KEY_RE.match(TEST_ADMIN_KEY).group(2)
        for bad in ("hq_short_" + secret, "hq_%s_%s" % (ADMIN_KID.upper(), secret),
                    "hq_%s_%s" % (ADMIN_KID, secret[:31]), "hq_%s_%s!" % (ADMIN_KID, secret[:31]),
                    "sk_%s_%s" % (ADMIN_KID, secret), "not a key", "hq_" + "a" * 300):
            env.huiqid_env = {"HUIQI_ADMIN_KEY": bad}
            env.start_huiqid(wait_ready=False)
            rc = env.wait_huiqid_exit(timeout=10)
            check(rc is not None and rc != 0, "huiqid with HUIQI_ADMIN_KEY=%r exited with %r",
                  bad, rc)
            err = env.huiqid_stderr()
            check("HUIQI_ADMIN_KEY" in err or "admin key" in err,
                  "huiqid's stderr does not say the admin key is wrong: %r", err[-500:])
            check(secret[:31] not in err, "the malformed key's secret was echoed to stderr")
        with open(os.path.join(env.dir, "admin.key"), "w") as f:
            f.write("hq_short_" + secret + "\n")
        env.huiqid_env = {"HUIQI_ADMIN_KEY": ""}
        env.start_huiqid(extra_args=["--admin-key-file", os.path.join(env.dir, "admin.key")],
                         wait_ready=False)
        rc = env.wait_huiqid_exit(timeout=10)
        check(rc is not None and rc != 0, "huiqid with a malformed --admin-key-file exited %r", rc)

        # A fresh key given at start works as soon as huiqid is ready.
        rc, out, err = cli("keys", "generate")
        fresh = out.strip()
        check(rc == 0 and KEY_RE.match(fresh), "huiqi keys generate: %r %r", rc, out)
        env.huiqid_env = {"HUIQI_ADMIN_KEY": fresh}
        env.start_huiqid()
        fc = env.new_client(key=fresh)
        keys = get_ok(fc, "/v1/keys").json["items"]
        eq(sorted(k["id"] for k in keys), sorted([ADMIN_KID, kid_of(fresh)]),
           "keys after starting with a fresh HUIQI_ADMIN_KEY")
        get_ok(env.new_client(key=TEST_ADMIN_KEY), "/v1/keys")  # the first one stays valid
        # --admin-key-file works the same way.
        filekey = fake_key(rng)
        path = os.path.join(env.dir, "admin.key")
        with open(path, "w") as f:
            f.write(filekey + "\n")
        env.stop_huiqid()
        env.huiqid_env = {"HUIQI_ADMIN_KEY": ""}
        env.start_huiqid(extra_args=["--admin-key-file", path])
        get_ok(env.new_client(key=filekey), "/v1/keys")

        # A revoked bootstrap key is not brought back by a restart.
        r = env.new_client(key=filekey).delete("/v1/keys/" + ADMIN_KID)
        eq(r.status, 204, "revoke the bootstrap key (%r)" % r)
        expect_401(env.new_client(key=TEST_ADMIN_KEY).get("/v1/keys"), "revoked bootstrap key")
        revoked_at = get_ok(env.new_client(key=filekey), "/v1/keys/" + ADMIN_KID).json["revoked_at"]
        env.stop_huiqid()
        env.huiqid_env = {}  # HUIQI_ADMIN_KEY=TEST_ADMIN_KEY again
        env.start_huiqid()
        expect_401(env.new_client(key=TEST_ADMIN_KEY).get("/v1/keys"),
                   "the revoked bootstrap key after a restart with it")
        rec = get_ok(env.new_client(key=filekey), "/v1/keys/" + ADMIN_KID).json
        eq((rec["state"], rec["revoked_at"]), ("revoked", revoked_at),
           "the bootstrap key record after the restart")
        # Redis restarting (huiqid reconnects and bootstraps again) does not either.
        env.shutdown_redis()
        env.start_redis()
        wait_until(lambda: env.readyz_status().status == 200, 10 * o.slow,
                   "huiqid ready after Redis restarted")
        expect_401(env.new_client(key=TEST_ADMIN_KEY).get("/v1/keys"),
                   "the revoked bootstrap key after Redis restarted")
        get_ok(env.new_client(key=filekey), "/v1/keys")


# --------------------------------------------------------------------------
# Rate limits
# --------------------------------------------------------------------------


def burst(c, path, n, stop_at_429=True):
    """n quick requests; returns (statuses, the first 429 answer, seconds taken)."""
    c.timeout = min(c.timeout, 5)  # a garbled answer fails fast instead of hanging
    statuses, first429 = [], None
    t0 = time.monotonic()
    for _ in range(n):
        r = c.get(path)
        statuses.append(r.status)
        if r.status == 429 and first429 is None:
            first429 = r
            if stop_at_429:
                break
    return statuses, first429, time.monotonic() - t0


def test_rate_limits(o):
    rng = random.Random(506)
    with Env(o) as env:
        admin = env.c
        u = make_uscc("320214", rng=rng)
        post_ok(admin, "/v1/enterprises", {"uscc": u, "name": "限速企业"})
        path = "/v1/enterprises/" + u

        # rate 2: a burst of 4, then 429 with Retry-After; after it, served again.
        k2 = make_key(admin, "operator", rate=2)
        c2 = env.new_client(key=k2["key"])
        statuses, r429, dt = burst(c2, path, 12, stop_at_429=False)
        t_burst = time.monotonic()
        eq(statuses[:4], [200] * 4, "the first 4 requests of a rate-2 key (burst of 4)")
        check(r429 is not None, "12 requests in %.2fs at rate 2 got no 429: %s", dt, statuses)
        check(set(statuses) <= {200, 429}, "statuses of the burst: %s", statuses)
        nok = statuses.count(200)
        check(nok <= 4 + 2 * dt + 1, "%d of 12 requests in %.2fs passed at rate 2 (burst 4)",
              nok, dt)
        expect_error(r429, 429, "rate_limited", None, what="over the rate")
        ra = retry_after(r429, "429 of a rate-2 key")
        check(ra <= 2, "Retry-After %d for a rate of 2/s", ra)
        # A streamed import over the rate is refused before its body, writing nothing.
        codes = [make_uscc("320205", rng=rng) for _ in range(3)]
        r = c2.post("/v1/enterprises:import", ndjson({"uscc": x, "name": "限速"} for x in codes),
                    content_type="application/x-ndjson")
        expect_error(r, 429, "rate_limited", None, what="import over the rate")
        retry_after(r, "import over the rate")
        assert_absent(admin, codes, "import over the rate")
        # Another key is not charged for this one's requests.
        get_ok(admin, path)
        time.sleep(max(0.0, ra - (time.monotonic() - t_burst)))  # what Retry-After asks for
        r = c2.get(path)
        eq(r.status, 200, "a request after waiting Retry-After (%r)" % r)

        # Enterprise keys: 5/s by default (bursts of 10); others unlimited.
        ek = make_key(admin, "enterprise", scope=u)
        eq(ek["rate"], None, "an enterprise key without rate")
        ec = env.new_client(key=ek["key"])
        statuses, r429, dt = burst(ec, path, 40)
        eq(statuses[:10], [200] * 10, "the first 10 requests of an enterprise key")
        check(r429 is not None, "40 requests in %.2fs with an enterprise key got no 429", dt)
        check(len(statuses) - 1 <= 10 + 5 * dt + 1,
              "%d requests in %.2fs passed at the enterprise default of 5/s",
              len(statuses) - 1, dt)
        expect_error(r429, 429, "rate_limited", None, what="enterprise key over 5/s")
        retry_after(r429, "enterprise key 429")
        ok = make_key(admin, "operator")
        eq(ok["rate"], None, "an operator key without rate")
        oc = env.new_client(key=ok["key"])
        statuses, r429, dt = burst(oc, path, 60)
        eq(statuses, [200] * 60, "60 quick requests with a key without rate (unlimited)")
        statuses, r429, dt = burst(admin, path, 60)
        eq(statuses, [200] * 60, "60 quick requests with the admin key")
        k0 = make_key(admin, "enterprise", scope=u, rate=0)
        statuses, r429, dt = burst(env.new_client(key=k0["key"]), path, 40)
        eq(statuses, [200] * 40, "an enterprise key with rate 0 (unlimited)")

        # The server's defaults: --key-rate applies to keys without their own rate
        # (the bootstrap admin key too), --enterprise-key-rate to enterprise keys.
        env.stop_huiqid()
        env.start_huiqid(extra_args=["--key-rate", "1", "--enterprise-key-rate", "0"])
        statuses, r429, dt = burst(env.new_client(key=ok["key"]), path, 8)
        check(r429 is not None and statuses[:2] == [200, 200] and len(statuses) <= 4,
              "an operator key without rate at --key-rate 1 (burst 2): %s in %.2fs", statuses, dt)
        statuses, r429, dt = burst(env.new_client(), path, 8)
        check(r429 is not None and len(statuses) <= 4,
              "the admin key at --key-rate 1: %s in %.2fs", statuses, dt)
        statuses, r429, dt = burst(env.new_client(key=ek["key"]), path, 40)
        eq(statuses, [200] * 40, "an enterprise key at --enterprise-key-rate 0")
        statuses, r429, dt = burst(env.new_client(key=k2["key"]), path, 4)
        eq(statuses, [200] * 4, "a key's own rate 2 wins over --key-rate 1 (burst 4)")


# --------------------------------------------------------------------------
# Logs
# --------------------------------------------------------------------------


def test_keys_not_in_logs(o):
    rng = random.Random(507)
    with Env(o) as env:
        admin = env.c
        u = make_uscc(rng=rng)
        post_ok(admin, "/v1/enterprises", {"uscc": u, "name": "日志企业"})
        made = [make_key(admin, "operator"), make_key(admin, "integrator"),
                make_key(admin, "enterprise", scope=u), make_key(admin, "admin")]
        keys = [d["key"] for d in made] + [TEST_ADMIN_KEY]
        for k in keys:
            c = env.new_client(key=k)
            c.get("/v1/tags?vocab=policy")
            c.get("/v1/enterprises/" + u)
            c.get("/v1/nope?key=x")
            c.post("/v1/keys", {"role": "operator"})
        eq(admin.delete("/v1/keys/" + made[1]["id"]).status, 204, "revoke a key")
        env.new_client(key=made[1]["key"]).get("/v1/tags?vocab=policy")  # revoked
        # Wrong secrets for known ids, unknown ids, malformed keys, other schemes.
        bad = []
        for d in made:
            bad.append(fake_key(rng, kid=d["id"]))
        bad += [fake_key(rng), fake_key(rng)]
        for k in bad:
            expect_401(env.new_client(key=k).get("/v1/tags?vocab=policy"), "bad key")
        nk = env.new_client(key=None)
        odd = ["Basic " + keys[0], "Bearer " + keys[0] + "x", "Bearer  " + keys[1][:-1],
               "bearer" + keys[2]]
        for h in odd:
            nk.get("/v1/tags?vocab=policy", headers={"Authorization": h})
        # Requests the HTTP layer refuses, carrying keys: their error logs neither.
        for k in keys[:2]:
            auth = b"Authorization: Bearer " + k.encode() + b"\r\n"
            for req in (b"GET /v1/tags?vocab=policy HTTP/1.1\r\nHost: t\r\n" + auth +
                        b"X-Big: " + b"a" * 20000 + b"\r\n\r\n",
                        b"POST /v1/enterprises HTTP/1.1\r\nHost: t\r\n" + auth +
                        b"Content-Length: x1\r\n\r\n",
                        b"GET /v1/tags?vocab=policy HTTP/1.1\r\n" + auth + b"Bad Header\r\n\r\n"):
                data, _ = raw_exchange(env.huiqid_port, req, timeout=3 * o.slow)
                resps = parse_responses(data)
                check(resps and 400 <= resps[0][0] < 500, "malformed request: %r", data[:200])
                check(k.encode() not in data, "an error answer echoes the key")
        n_requests = len(keys) * 4 + 2 + len(bad) + len(odd) + 1 + 5  # a lower bound
        nk.get("/healthz")

        def logged():
            lines = [ln for ln in env.huiqid_stderr().splitlines() if '"msg":"request"' in ln]
            return lines if len(lines) >= n_requests and any('"/healthz"' in ln for ln in lines) \
                else None

        lines = wait_until(logged, 5 * o.slow, "the access log lines")
        text = env.huiqid_stderr()
        for k in keys + bad:
            sec = k.split("_", 2)[2]
            check(sec not in text, "huiqid's stderr shows the secret of key %s", k.split("_")[1])
            check(sec[:16] not in text, "huiqid's stderr shows half the secret of %s",
                  k.split("_")[1])
        for d in made:
            check(any('"key":"%s"' % d["id"] in ln for ln in lines),
                  "no access log line names key %s", d["id"])
        check(any('"key":"%s"' % ADMIN_KID in ln for ln in lines), "no log line names the admin key")
        # A refused key is not credited with the request it failed to prove.
        n401 = [ln for ln in lines if '"status":401' in ln]
        check(len(n401) >= len(bad) + len(odd) + 1, "only %d 401 lines", len(n401))
        for ln in n401:
            check('"key":null' in ln, "a 401 line names a key: %s", ln)


# --------------------------------------------------------------------------
# Streamed import
# --------------------------------------------------------------------------


def raw_import(port, auth, lines, rest=None, timeout=5.0):
    """Sends an import's headers and 'lines' (bytes); when 'rest' is given the
    Content-Length also counts it but it is not sent. Returns (responses, closed)."""
    total = len(lines) + (len(rest) if rest else 0)
    head = ("POST /v1/enterprises:import HTTP/1.1\r\nHost: t\r\n"
            "Content-Type: application/x-ndjson\r\nContent-Length: %d\r\n" % total)
    if auth is not None:
        head += "Authorization: %s\r\n" % auth
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(head.encode() + b"\r\n" + lines)
        data, closed = read_until_closed(s, timeout)
        return parse_responses(data), closed
    finally:
        s.close()


def test_import_auth(o):
    rng = random.Random(508)
    with Env(o) as env:
        admin = env.c
        nd = "application/x-ndjson"
        u_ent = make_uscc(rng=rng)
        post_ok(admin, "/v1/enterprises", {"uscc": u_ent, "name": "范围企业"})
        ekey = make_key(admin, "enterprise", scope=u_ent)["key"]
        get_ok(env.new_client(key=ekey), "/v1/enterprises/" + u_ent)  # cached
        secret = KEY_RE.match(TEST_ADMIN_KEY).group(2)
        wrong = "hq_%s_%s" % (ADMIN_KID, secret[::-1])
        refusals = [("no key", None, 401), ("a malformed key", "hq_nope", 401),
                    ("a Basic header", "Basic eDp5", 401),
                    ("a wrong secret for a cached id", wrong, 401),
                    ("an unknown id", fake_key(rng), 401),
                    ("an enterprise key", ekey, 403)]
        for what, key, status in refusals:
            codes = [make_uscc("320205", rng=rng) for _ in range(20)]
            body = ndjson({"uscc": x, "name": "导入 %s" % x[-4:]} for x in codes)
            c = env.new_client(key=None)
            r = c.post("/v1/enterprises:import", body, content_type=nd,
                       headers={"Authorization": ("Bearer " + key) if key and
                                not key.startswith("Basic") else key})
            if status == 401:
                expect_401(r, "import with " + what)
            else:
                expect_403(r, "import with " + what)
            assert_absent(admin, codes, "import with " + what)
        # Refused while the body is still coming: the answer comes at once (the rest
        # of the body is not waited for) and the first lines are not written.
        for what, key in (("an unknown id", "Bearer " + fake_key(rng)),
                          ("no key", None), ("a wrong secret", "Bearer " + wrong)):
            codes = [make_uscc("320206", rng=rng) for _ in range(4)]
            first = ndjson({"uscc": x, "name": "前"} for x in codes[:2])
            rest = ndjson({"uscc": x, "name": "后"} for x in codes[2:])
            t0 = time.monotonic()
            resps, closed = raw_import(env.huiqid_port, key, first, rest, timeout=5 * o.slow)
            check(len(resps) == 1 and resps[0][0] == 401,
                  "half-sent import with %s: responses %r", what, resps)
            check(time.monotonic() - t0 < 4 * o.slow,
                  "half-sent import with %s: the refusal waited for the body", what)
            check(closed, "half-sent import with %s: the connection stayed open", what)
            assert_absent(admin, codes, "half-sent import with " + what)

        # Fresh keys, not yet cached: the body waits while the key is read, then
        # every line is taken. One from the CLI, one from the API.
        for what, key in (("a CLI key", cli_create(env, "--role", "integrator")),
                          ("an API key", make_key(admin, "integrator")["key"]),
                          ("a CLI admin key", cli_create(env, "--role", "admin"))):
            n = 2000 if what == "a CLI key" else 300  # ~200 KB: more than one read
            codes = [make_uscc("320211", rng=rng) for _ in range(n)]
            body = ndjson({"uscc": x, "name": "批量导入企业 %s" % x[-6:], "employees": i,
                           "industry": "C3973"} for i, x in enumerate(codes))
            r = env.new_client(key=key).post("/v1/enterprises:import", body, content_type=nd)
            eq(r.status, 200, "import with %s (%r)" % (what, r))
            eq((r.json["lines"], r.json["accepted"], r.json["created"], r.json["rejected"]),
               (n, n, n, 0), "import with %s: lines, accepted, created, rejected" % what)
            for x in codes[::37] + [codes[-1]]:
                get_ok(admin, "/v1/enterprises/" + x)
        # Same, with the body sent in pieces over a raw connection.
        key = cli_create(env, "--role", "operator")
        codes = [make_uscc("320213", rng=rng) for _ in range(6)]
        pieces = [ndjson([{"uscc": x, "name": "分段 %d" % i}]) for i, x in enumerate(codes)]
        total = sum(len(p) for p in pieces)
        s = socket.create_connection(("127.0.0.1", env.huiqid_port), timeout=10 * o.slow)
        try:
            s.sendall(("POST /v1/enterprises:import HTTP/1.1\r\nHost: t\r\n"
                       "Content-Type: application/x-ndjson\r\nContent-Length: %d\r\n"
                       "Authorization: Bearer %s\r\nConnection: close\r\n\r\n" %
                       (total, key)).encode() + pieces[0][:7])
            rest = pieces[0][7:] + b"".join(pieces[1:])
            for i in range(0, len(rest), 50):
                s.sendall(rest[i:i + 50])
            data, closed = read_until_closed(s, 10 * o.slow)
        finally:
            s.close()
        resps = parse_responses(data)
        check(len(resps) == 1 and resps[0][0] == 200, "piecewise import: %r", data[:300])
        res = json.loads(resps[0][2])
        eq((res["lines"], res["accepted"]), (6, 6), "piecewise import lines/accepted")
        for x in codes:
            get_ok(admin, "/v1/enterprises/" + x)


# --------------------------------------------------------------------------
# Redis down
# --------------------------------------------------------------------------


def test_keys_while_redis_down(o):
    rng = random.Random(509)
    with Env(o) as env:
        admin = env.c
        seen = make_key(admin, "operator", name="seen")
        unseen = make_key(admin, "integrator", name="never used")
        unseen2 = cli_create(env, "--role", "operator")
        wait_until(lambda: aof_contains(env.dir, unseen["id"].encode()) and
                   aof_contains(env.dir, kid_of(unseen2).encode()), 10,
                   "the new keys to reach the AOF")
        sc = env.new_client(key=seen["key"])
        path = "/v1/tags?vocab=policy"
        eq(sc.get(path).status, 200, "the seen key before Redis goes down")
        get_ok(admin, path)
        t_used = time.monotonic()
        env.kill_redis()
        # Used within the last 2 s: still works on routes that need no Redis.
        r = sc.get(path)
        eq(r.status, 200, "a recently used key with Redis down (%r)" % r)
        check(time.monotonic() - t_used < AUTH_TTL, "too slow: over 2 s since the key was used")
        eq(r.json["count"], 287, "tags with Redis down")
        get_ok(admin, path)
        # Never seen: cannot be checked, 503 + Retry-After (not 401).
        for what, key in (("a key never used", unseen["key"]), ("a CLI key never used", unseen2),
                          ("an unknown id", fake_key(rng))):
            r = env.new_client(key=key).get(path)
            expect_error(r, 503, "unavailable", None, what=what + " with Redis down")
            retry_after(r, what + " with Redis down")
        codes = [make_uscc("320281", rng=rng) for _ in range(2)]
        r = env.new_client(key=unseen["key"]).post(
            "/v1/enterprises:import", ndjson({"uscc": x, "name": "停机"} for x in codes),
            content_type="application/x-ndjson")
        expect_error(r, 503, "unavailable", None, what="import with a never-used key, Redis down")
        retry_after(r, "import with a never-used key, Redis down")
        # A wrong secret for a cached id is still a 401, a malformed key too.
        secret = KEY_RE.match(seen["key"]).group(2)
        expect_401(env.new_client(key="hq_%s_%s" % (seen["id"], secret[::-1])).get(path),
                   "a wrong secret for a cached key with Redis down")
        expect_401(env.new_client(key="hq_x").get(path), "a malformed key with Redis down")
        expect_401(env.new_client(key=None).get(path), "no key with Redis down")
        # Still refused a moment later (the failure is not cached as a success).
        wait_until(lambda: env.readyz_status().status == 503, 5 * o.slow, "/readyz 503")
        # A route that needs Redis: the store's 503, not an auth refusal.
        r = sc.post("/v1/enterprises", {"uscc": make_uscc(rng=rng), "name": "x"})
        expect_error(r, 503, "unavailable", None, what="a write with Redis down")
        r = env.new_client(key=unseen["key"]).get(path)
        expect_error(r, 503, "unavailable", None, what="a key never used, again")
        eq(env.readyz_status().status, 503, "/readyz with Redis down")

        env.start_redis()
        wait_until(lambda: env.readyz_status().status == 200, 15 * o.slow,
                   "huiqid ready after Redis is back")
        uc = env.new_client(key=unseen["key"])
        wait_until(lambda: uc.get(path).status == 200, 5 * o.slow,
                   "the never-used key to work once Redis is back")
        get_ok(env.new_client(key=unseen2), path)
        get_ok(sc, path)
        get_ok(uc, "/v1/enterprises")
        assert_absent(admin, codes, "the import refused while Redis was down")
        expect_403(uc.get("/v1/policies/1/audience"), "integrator role after Redis came back")


def test_key_refreshed_before_ttl(o):
    """A key in steady use is read again in the background before its cache
    lifetime ends, so a request just past the lifetime does not wait for Redis:
    here Redis is stopped then, and the request is still answered at once (it
    would wait out the Redis timeout had the record not been refreshed)."""
    with Env(o) as env:
        d = make_key(env.c, "operator")
        kc = env.new_client(key=d["key"])
        path = "/v1/tags?vocab=policy"
        eq(kc.get(path).status, 200, "the key's first use (its record is read)")
        t0 = time.monotonic()  # the record was read before this
        time.sleep(max(0.0, t0 + AUTH_REFRESH + 0.05 - time.monotonic()))
        eq(kc.get(path).status, 200, "the key between the refresh age and the lifetime")
        time.sleep(max(0.0, t0 + AUTH_TTL + 0.1 - time.monotonic()))
        env.redis_proc.send_signal(signal.SIGSTOP)
        try:
            t = time.monotonic()
            r = kc.get(path)
            took = time.monotonic() - t
        finally:
            env.redis_proc.send_signal(signal.SIGCONT)
        eq(r.status, 200, "the key just past its lifetime, Redis stopped")
        check(took < 1.0, "a request just past the key's cache lifetime waited %.2fs for a "
              "stopped Redis: the record was not refreshed in the background", took)


def test_cached_key_while_redis_stalls(o):
    """Redis stops answering (SIGSTOP) rather than closing: a key in use keeps
    working from the cache while each re-read of its record times out."""
    with Env(o, huiqid_args=["--redis-timeout", "400"]) as env:
        d = make_key(env.c, "operator")
        kc = env.new_client(key=d["key"])
        path = "/v1/tags?vocab=policy"
        eq(kc.get(path).status, 200, "the key before Redis stalls")
        env.redis_proc.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            seen = []
            # Past the cache lifetime and several command timeouts, using the key
            # every 0.2 s or so: it was always seen within the last 2 s.
            while time.monotonic() - t0 < AUTH_TTL + 1.5:
                t = time.monotonic()
                r = kc.get(path)
                seen.append((round(t - t0, 2), r.status, round(time.monotonic() - t, 2)))
                check(r.status == 200, "a key in use, Redis stalled: %r after %.2fs "
                      "(requests so far: (start, status, took) %s)", r, t - t0, seen)
                time.sleep(0.2)
            check(any(s[0] > AUTH_TTL for s in seen), "no request after the cache lifetime: %s",
                  seen)
            r = env.new_client(key=fake_key(random.Random(510))).get(path)
            expect_error(r, 503, "unavailable", None, what="an unknown key, Redis stalled")
        finally:
            env.redis_proc.send_signal(signal.SIGCONT)
        wait_until(lambda: env.readyz_status().status == 200, 15 * o.slow,
                   "huiqid ready after Redis resumed")
        get_ok(kc, path)


def test_enterprise_key_sees_published_policies_only(o):
    """An enterprise key reads a published policy by id; a draft or withdrawn one is
    404 not_found for it, exactly as an id that does not exist (no existence leak),
    while operators and integrators still read them."""
    rng = random.Random(503)
    with Env(o) as env:
        admin = env.c
        e1 = make_uscc("320214", rng=rng)
        post_ok(admin, "/v1/enterprises", {"uscc": e1, "name": "企业"})
        ids = {}
        for state in ("draft", "published", "withdrawn"):
            ids[state] = post_ok(admin, "/v1/policies", dict(POLICY, title=state))["id"]
            if state != "draft":
                eq(admin.post("/v1/policies/%d/publish?notify=false" % ids[state]).status, 200,
                   "publish " + state)
            if state == "withdrawn":
                eq(admin.post("/v1/policies/%d/withdraw" % ids[state]).status, 200, "withdraw")
        ent = env.new_client(key=make_key(admin, "enterprise", scope=e1, rate=0)["key"])
        integ = env.new_client(key=make_key(admin, "integrator", name="i")["key"])
        eq(get_ok(ent, "/v1/policies/%d" % ids["published"]).json["status"], "published",
           "enterprise key: a published policy")
        missing = max(ids.values()) + 100
        ref = ent.get("/v1/policies/%d" % missing)
        expect_error(ref, 404, "not_found", None, what="enterprise key: an unknown id")
        for state in ("draft", "withdrawn"):
            path = "/v1/policies/%d" % ids[state]
            r = ent.get(path)
            err = expect_error(r, 404, "not_found", None, what="enterprise key: a " + state)
            eq(err["message"], ref.json["error"]["message"].replace(str(missing),
                                                                    str(ids[state])),
               "enterprise key: a %s answers as an unknown id" % state)
            check(r.header("etag") is None, "a %s's ETag shown to an enterprise key", state)
            eq(ent.request("HEAD", path).status, 404, "enterprise key: HEAD a " + state)
            for c, who in ((admin, "admin"), (integ, "integrator")):
                eq(get_ok(c, path).json["status"], state, "%s reads a %s" % (who, state))

"""Operations: restart with persistence, Redis outages, taxonomy evolution rules,
clean shutdown."""

import glob
import json
import os
import random
import signal
import socket
import time

import model
from harness import AUTH, Env, TestFailure, check, eq, make_uscc, read_until_closed, wait_until
from model import Taxonomy
from tests_api import expect_error, get_ok, post_ok

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TAXONOMY_TSV = os.path.join(REPO, "tags", "taxonomy.tsv")

PREVIEW_RULES = [
    {}, {"all": ["qual.hightech"]}, {"any": ["region.320205", "region.320214"]},
    {"none": ["neg.dishonest"]}, {"all": ["entity.company"], "none": ["ip.trademark"]},
    {"all": ["ind.c"], "any": ["sig.ic", "sig.sensor"]},
]


def populate(c, rng, n=60):
    """Enterprises with a mix of attributes, a few deleted (freeing ordinals), and
    policies in every state. Returns (live codes, deleted codes, policy ids)."""
    live, dead = [], []
    choices = ["qual.hightech", "ip.trademark", "neg.dishonest", "zone.wnd", "inno.rd_ge5",
               "trade.import_export"]
    for i in range(n):
        body = {"uscc": make_uscc(rng.choice(["320205", "320214", "320281", "320102"]), rng=rng),
                "name": "企业 %d" % i,
                "tags": rng.sample(choices, rng.randint(0, 3)),
                "interests": rng.sample(["fin.reward", "tax.hightech_rate", "fin.loan_discount"],
                                        rng.randint(0, 2))}
        if i % 3 == 0:
            body.update(industry=rng.choice(["C3973", "I65", "C3983"]), employees=25 + i,
                        revenue_10k=100 * i, founded="2019-05-0%d" % (1 + i % 9))
        if i % 7 == 0:
            body["qualifications"] = [{"code": "qual.srdi", "issued": "2025-01-01"}]
        if i % 11 == 0:
            body["overrides"] = [{"tag": "entity.company", "value": False, "by": "t"}]
        d = post_ok(c, "/v1/enterprises", body)
        live.append(d["uscc"])
    for u in live[::9]:
        eq(c.delete("/v1/enterprises/" + u).status, 204, "DELETE")
        dead.append(u)
    live = [u for u in live if u not in dead]
    pids = []
    for i in range(8):
        p = post_ok(c, "/v1/policies", {
            "title": "政策 %d" % i, "level": "city", "tags": ["fin.reward"] if i % 2 else [],
            "rule": PREVIEW_RULES[i % len(PREVIEW_RULES)], "closes": "2099-12-31"})
        if i % 4 != 0:
            eq(c.post("/v1/policies/%d/publish" % p["id"]).status, 200, "publish")
        if i % 4 == 3:
            eq(c.post("/v1/policies/%d/withdraw" % p["id"]).status, 200, "withdraw")
        pids.append(p["id"])
    eq(c.delete("/v1/policies/%d" % pids[-1]).status, 204, "DELETE policy")
    return live, dead, pids[:-1]


def capture(c, live, dead, pids):
    """Everything observable about the data, for before/after comparisons."""
    snap = {"ents": {}, "packages": {}, "audiences": {}, "previews": []}
    for u in live:
        snap["ents"][u] = get_ok(c, "/v1/enterprises/" + u).json
        snap["packages"][u] = get_ok(c, "/v1/enterprises/%s/policies" % u).json
    for u in dead:
        eq(c.get("/v1/enterprises/" + u).status, 404, "deleted enterprise %s" % u)
    snap["policies"] = get_ok(c, "/v1/policies?limit=500").json
    for pid in pids:
        snap["audiences"][pid] = get_ok(c, "/v1/policies/%d/audience" % pid).json
    for rule in PREVIEW_RULES:
        r = c.post("/v1/audience", {"rule": rule})
        eq(r.status, 200, "preview")
        snap["previews"].append(r.json)
    listed = []
    cursor = None
    while True:
        r = get_ok(c, "/v1/enterprises?limit=200" + ("&cursor=" + cursor if cursor else "")).json
        listed += [d["uscc"] for d in r["items"]]
        cursor = r["next"]
        if cursor is None:
            break
    snap["listed"] = sorted(listed)
    snap["tags"] = (get_ok(c, "/v1/tags?vocab=enterprise").json,
                    get_ok(c, "/v1/tags?vocab=policy").json)
    return snap


def compare(before, after, what):
    for key in ("listed", "tags", "policies"):
        eq(after[key], before[key], "%s: %s" % (what, key))
    for u, d in before["ents"].items():
        eq(after["ents"][u], d, "%s: enterprise %s" % (what, u))
        eq(after["packages"][u], before["packages"][u], "%s: package of %s" % (what, u))
    for pid, a in before["audiences"].items():
        eq(after["audiences"][pid], a, "%s: audience of policy %d" % (what, pid))
    eq(after["previews"], before["previews"], "%s: audience previews" % what)


def test_restart_keeps_everything(o):
    rng = random.Random(41)
    with Env(o) as env:
        c = env.c
        live, dead, pids = populate(c, rng)
        before = capture(c, live, dead, pids)
        # Sanity: the snapshot agrees with the model.
        tax = Taxonomy(c)
        tagsets = {u: set(d["tags"]) for u, d in before["ents"].items()}
        for rule, got in zip(PREVIEW_RULES, before["previews"]):
            n, groups = model.audience(tax, rule, tagsets)
            eq((got["count"], got["by_region"]), (n, groups), "preview %s before restart" % rule)

        problems = env.stop_huiqid()
        check(not problems, "stopping huiqid: %s", problems)
        env.shutdown_redis()
        check(glob.glob(os.path.join(env.dir, "appendonlydir", "*")) or
              glob.glob(os.path.join(env.dir, "*.aof")), "no AOF files in %s", env.dir)
        env.start_redis()
        env.start_huiqid()
        c = env.c
        after = capture(c, live, dead, pids)
        compare(before, after, "after restarting Redis and huiqid")

        # Writes after the restart: new enterprises take freed ordinals and nobody's
        # data is disturbed.
        for i in range(len(dead) + 3):
            d = post_ok(c, "/v1/enterprises", {
                "uscc": make_uscc("320211", rng=rng), "name": "重启后 %d" % i,
                "tags": ["qual.hightech", "zone.wnd"]})
            tagsets[d["uscc"]] = set(d["tags"])
            live.append(d["uscc"])
        for u, d in before["ents"].items():
            eq(get_ok(c, "/v1/enterprises/" + u).json, d, "old enterprise %s after new ones" % u)
        for rule in PREVIEW_RULES + [{"all": ["zone.wnd"]}]:
            r = c.post("/v1/audience", {"rule": rule}).json
            n, groups = model.audience(tax, rule, tagsets)
            eq((r["count"], r["by_region"]), (n, groups), "preview %s after new writes" % rule)
        # A restart of huiqid alone (Redis unchanged) also keeps everything.
        mid = capture(c, live, dead, pids)
        problems = env.stop_huiqid()
        check(not problems, "stopping huiqid: %s", problems)
        env.start_huiqid()
        compare(mid, capture(env.c, live, dead, pids), "after restarting huiqid only")


def aof_contains(dirpath, needle):
    for path in glob.glob(os.path.join(dirpath, "appendonlydir", "*")) + \
            glob.glob(os.path.join(dirpath, "*.aof")):
        try:
            with open(path, "rb") as f:
                if needle in f.read():
                    return True
        except OSError:
            pass
    return False


def expect_503(r, what):
    err = expect_error(r, 503, r.json["error"]["code"] if r.json and "error" in r.json else "?",
                       what=what)
    ra = r.header("retry-after")
    check(ra is not None and ra.strip().isdigit() and int(ra) >= 1,
          "%s: Retry-After header is %r", what, ra)
    return err


def test_redis_down_and_back(o):
    rng = random.Random(42)
    with Env(o) as env:
        c = env.c
        live, dead, pids = populate(c, rng, n=25)
        last = make_uscc("320214", rng=rng)
        post_ok(c, "/v1/enterprises", {"uscc": last, "name": "最后写入", "tags": ["zone.wnd"]})
        live.append(last)
        t_written = time.monotonic()
        # appendfsync everysec: wait until the write is in the AOF and over a second old.
        wait_until(lambda: time.monotonic() - t_written > 1.1 and
                   aof_contains(env.dir, last.encode()), 10, "the last write to reach the AOF")
        before = capture(c, live, dead, pids)

        env.kill_redis()

        def down():
            env.assert_alive("after redis-server was killed")
            r = env.readyz_status()
            return r if r.status == 503 else None

        r = wait_until(down, 5 * o.slow, "/readyz to report 503 after Redis was killed")
        expect_error(r, 503, "redis_unavailable", what="/readyz with Redis down")
        eq(c.get("/healthz").status, 200, "/healthz with Redis down")
        newcode = make_uscc("320205", rng=rng)
        err = expect_503(c.post("/v1/enterprises", {"uscc": newcode, "name": "x"}),
                         "POST enterprise with Redis down")
        eq(err["code"], "unavailable", "error code of a write with Redis down")
        expect_503(c.get("/v1/enterprises/" + live[0]), "GET enterprise with Redis down")
        expect_503(c.put("/v1/enterprises/" + live[0], {"name": "x"}), "PUT with Redis down")
        expect_503(c.patch("/v1/enterprises/" + live[0], {"name": "x"}), "PATCH with Redis down")
        expect_503(c.delete("/v1/enterprises/" + live[0]), "DELETE with Redis down")
        expect_503(c.post("/v1/policies", {"title": "x"}), "POST policy with Redis down")
        expect_503(c.post("/v1/policies/%d/publish" % pids[0]), "publish with Redis down")

        env.assert_alive("while Redis was down")
        env.start_redis()   # same port, same directory: replays the AOF

        def up():
            env.assert_alive("while Redis was down or coming back")
            return env.readyz_status().status == 200

        wait_until(up, 15 * o.slow, "/readyz to return to 200 after Redis came back")
        after = capture(c, live, dead, pids)
        compare(before, after, "after Redis came back")
        eq(c.get("/v1/enterprises/" + newcode).status, 404, "the refused POST left a trace")
        d = post_ok(c, "/v1/enterprises", {"uscc": newcode, "name": "恢复后"})
        eq(d["version"], 1, "write after recovery")
        eq(get_ok(c, "/v1/enterprises/" + newcode).json["name"], "恢复后", "read after recovery")


def test_redis_not_up_at_start(o):
    """huiqid started before Redis: not ready (503) until Redis appears, then ready
    without a restart."""
    with Env(o, start=False) as env:   # the Redis port is chosen but nothing listens
        env.start_huiqid(wait_ready=False)
        c = env.c

        def answers():
            env.assert_alive("while Redis was not running yet")
            return env.readyz_status()

        r = wait_until(answers, 15 * o.slow, "huiqid to answer HTTP without Redis")
        expect_error(r, 503, "redis_unavailable", what="/readyz before Redis started")
        eq(c.get("/healthz").status, 200, "/healthz without Redis")
        expect_503(c.post("/v1/enterprises", {"uscc": make_uscc("320205", org="000000001"),
                                              "name": "x"}), "POST before Redis started")
        # Give the reconnect logic a few attempts while Redis is still absent.
        t0 = time.monotonic()
        wait_until(lambda: (env.assert_alive("while retrying the Redis connection") or
                            time.monotonic() - t0 > 1.5), 10, "a few reconnect attempts")
        env.start_redis()

        def up():
            env.assert_alive("after Redis started")
            return env.readyz_status().status == 200

        wait_until(up, 15 * o.slow, "/readyz 200 once Redis is up")
        d = post_ok(c, "/v1/enterprises", {"uscc": make_uscc("320205", org="000000002"),
                                           "name": "来了"})
        eq(d["version"], 1, "write once Redis is up")


def test_redis_back_empty(o):
    """Redis comes back without its data (AOF lost): huiqid must notice (new run id),
    reload, and from then on show exactly what Redis holds, including for a new
    policy that is given an id and version an old one had."""
    rng = random.Random(45)
    with Env(o) as env:
        c = env.c
        u = make_uscc("320214", rng=rng)
        post_ok(c, "/v1/enterprises", {"uscc": u, "name": "旧企业", "tags": ["zone.wnd"]})
        old = post_ok(c, "/v1/policies", {"title": "旧政策", "tags": ["fin.reward"],
                                          "level": "national"})
        eq(get_ok(c, "/v1/policies/%d" % old["id"]).json["title"], "旧政策", "old policy")
        env.kill_redis()
        for path in glob.glob(os.path.join(env.dir, "appendonlydir", "*")) + \
                glob.glob(os.path.join(env.dir, "*.aof")):
            os.remove(path)
        env.assert_alive("after redis-server was killed")
        env.start_redis()

        def up():
            env.assert_alive("while Redis came back empty")
            return env.readyz_status().status == 200

        wait_until(up, 15 * o.slow, "/readyz 200 after Redis came back empty")
        eq(c.get("/v1/enterprises/" + u).status, 404, "enterprise after Redis lost it")
        eq(c.get("/v1/enterprises/%s/policies" % u).status, 404, "package after Redis lost it")
        eq(c.post("/v1/audience", {"rule": {}}).json["count"], 0, "audience after data loss")
        eq(get_ok(c, "/v1/enterprises").json, {"items": [], "next": None}, "enterprise list")
        eq(get_ok(c, "/v1/policies").json, {"items": [], "next": None}, "policy list")
        eq(c.get("/v1/policies/%d" % old["id"]).status, 404, "old policy after data loss")
        eq(env.redis("HGET", "hq:tax:enterprise", "region.320205"), b"0",
           "the taxonomy map is persisted again")
        # New data; the new policy gets the old one's id and version.
        u2 = make_uscc("320211", rng=rng)
        post_ok(c, "/v1/enterprises", {"uscc": u2, "name": "新企业", "interests": ["fin.loan_discount"]})
        r = c.post("/v1/policies", {"title": "新政策", "tags": ["fin.loan_discount"],
                                    "level": "district"})
        eq(r.status, 201, "POST policy after data loss (%r)" % r)
        new = r.json
        eq((new["id"], new["version"]), (old["id"], old["version"]),
           "the new policy reuses the old id and version (precondition)")
        eq((new["title"], new["tags"], new.get("level")), ("新政策", ["fin.loan_discount"],
                                                          "district"),
           "POST answer shows the new policy, not the one that had its id before")
        g = get_ok(c, "/v1/policies/%d" % new["id"]).json
        eq((g["title"], g["tags"], g.get("level")), ("新政策", ["fin.loan_discount"], "district"),
           "GET shows the new policy")
        eq(c.post("/v1/policies/%d/publish" % new["id"]).status, 200, "publish")
        pk = get_ok(c, "/v1/enterprises/%s/policies" % u2).json
        eq([(p["id"], p["title"]) for p in pk["policies"]], [(new["id"], "新政策")],
           "package after data loss")


def read_taxonomy():
    with open(TAXONOMY_TSV, encoding="utf-8") as f:
        return f.read().split("\n")


def tag_line(lines, vocab, code):
    for i, ln in enumerate(lines):
        f = ln.split("\t")
        if len(f) >= 4 and f[0] == "tag" and f[1] == vocab and f[3] == code:
            return i
    raise TestFailure("tag %s/%s not in %s" % (vocab, code, TAXONOMY_TSV))


def bit_of(lines, vocab, code):
    n = 0
    for ln in lines:
        f = ln.split("\t")
        if len(f) >= 4 and f[0] == "tag" and f[1] == vocab:
            if f[3] == code:
                return n
            n += 1
    raise TestFailure("tag %s/%s not in %s" % (vocab, code, TAXONOMY_TSV))


def test_taxonomy_remap(o):
    rng = random.Random(43)
    base = read_taxonomy()
    with Env(o, start_huiqid=False) as env:

        def write(name, lines):
            p = os.path.join(env.dir, name)
            with open(p, "w", encoding="utf-8") as f:
                f.write("\n".join(lines))
            return p

        def refused(path, tag, what):
            env.start_huiqid(["--taxonomy", path], wait_ready=False)
            rc = env.wait_huiqid_exit(15)
            if rc is None:
                env.stop_huiqid(expect_code=None)
                raise TestFailure("%s: huiqid kept running with a taxonomy that %s" % (what, what))
            check(rc != 0, "%s: huiqid exited with 0", what)
            err = env.huiqid_stderr()
            check(tag in err, "%s: the message does not name %s:\n%s", what, tag, err[-800:])

        orig = write("taxonomy.tsv", base)
        env.start_huiqid(["--taxonomy", orig])
        c = env.c
        u = make_uscc("320214", rng=rng)
        doc = post_ok(c, "/v1/enterprises", {"uscc": u, "name": "园区企业",
                                             "tags": ["zone.wnd", "zone.taihu_bay"],
                                             "interests": ["fin.reward"]})
        check(not env.stop_huiqid(), "stop after first start")
        stored = env.redis("HGET", "hq:tax:enterprise", "zone.wnd")
        eq(stored, str(bit_of(base, "enterprise", "zone.wnd")).encode(),
           "persisted bit of zone.wnd in hq:tax:enterprise")

        # Reordering two enterprise tags is refused.
        lines = list(base)
        a, b = tag_line(lines, "enterprise", "zone.wnd"), tag_line(lines, "enterprise", "zone.wxeda")
        lines[a], lines[b] = lines[b], lines[a]
        refused(write("reordered.tsv", lines), "zone.wnd", "reorders zone.wnd and zone.wxeda")
        # Removing one is refused.
        lines = list(base)
        del lines[tag_line(lines, "enterprise", "zone.taihu_bay")]
        refused(write("removed.tsv", lines), "zone.taihu_bay", "drops zone.taihu_bay")
        # So is reordering policy tags.
        lines = list(base)
        a, b = tag_line(lines, "policy", "fin.reward"), tag_line(lines, "policy", "fin.guarantee")
        lines[a], lines[b] = lines[b], lines[a]
        refused(write("policy-reordered.tsv", lines), "fin.reward",
                "reorders fin.reward and fin.guarantee")

        # Appending tags is fine; the data is intact and the new tags work.
        appended = list(base)
        while appended and appended[-1] == "":
            appended.pop()
        appended += ["tag\tenterprise\tzone\tzone.it_new_park\t测试新园区\tTest new park\t",
                     "tag\tpolicy\tfinance\tfin.it_new_fund\t测试新基金\tTest new fund\t", ""]
        app = write("appended.tsv", appended)
        env.start_huiqid(["--taxonomy", app])
        c = env.c
        r = get_ok(c, "/v1/tags?vocab=enterprise").json
        eq(r["count"], 331, "enterprise tags after the append")
        eq(r["tags"][-1]["code"], "zone.it_new_park", "the appended tag is last")
        eq(get_ok(c, "/v1/tags?vocab=policy").json["count"], 288, "policy tags after the append")
        eq(get_ok(c, "/v1/enterprises/" + u).json, dict(doc), "document after the append")
        r = c.patch("/v1/enterprises/" + u, {"tags": ["zone.wnd", "zone.it_new_park"],
                                             "interests": ["fin.it_new_fund"]})
        eq(r.status, 200, "PATCH with the new tags (%r)" % r)
        r = c.post("/v1/audience", {"rule": {"all": ["zone.it_new_park", "zone.wnd"]}}).json
        eq(r["count"], 1, "audience of the new tag")
        check(not env.stop_huiqid(), "stop after the append")
        # Going back to the file without the (now stored) new tag is refused.
        refused(orig, "zone.it_new_park", "drops the appended zone.it_new_park")
        # And the appended file still starts, with everything in place.
        env.start_huiqid(["--taxonomy", app])
        d = get_ok(env.c, "/v1/enterprises/" + u).json
        check("zone.it_new_park" in d["tags"] and "fin.it_new_fund" in d["interests"],
              "new tags lost across restarts: %r", d)


def test_clean_shutdown(o):
    """SIGTERM (and SIGINT) exit 0 promptly with idle, half-sent and kept-alive
    connections open, and with writes still in flight to Redis."""
    rng = random.Random(44)
    with Env(o) as env:
        c = env.c
        u = make_uscc("320214", rng=rng)
        post_ok(c, "/v1/enterprises", {"uscc": u, "name": "x"})
        port = env.huiqid_port
        socks = []
        idle = socket.create_connection(("127.0.0.1", port))
        socks.append(idle)
        half_head = socket.create_connection(("127.0.0.1", port))
        half_head.sendall(b"GET /v1/enterprises/" + u.encode() + b" HTTP/1.1\r\nHost: x\r\n" + AUTH + b"")
        socks.append(half_head)
        half_body = socket.create_connection(("127.0.0.1", port))
        half_body.sendall(b"POST /v1/enterprises HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Type: "
                          b"application/json\r\nContent-Length: 100\r\n\r\n{\"uscc\":")
        socks.append(half_body)
        used = socket.create_connection(("127.0.0.1", port))
        used.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n")
        used.settimeout(5)
        check(b"200 OK" in used.recv(4096), "first request on the kept-alive connection")
        socks.append(used)
        problems = env.stop_huiqid()
        check(not problems, "SIGTERM with open connections: %s", "; ".join(problems))
        for name, s in zip(("idle", "half-sent head", "half-sent body", "kept-alive"), socks):
            data, closed = read_until_closed(s, 5 * o.slow)
            s.close()
            check(closed, "the %s connection was not closed at shutdown", name)
        # SIGINT stops it cleanly too, and the data is still there.
        env.start_huiqid()
        eq(get_ok(env.c, "/v1/enterprises/" + u).json["name"], "x", "data after restart")
        problems = env.stop_huiqid(sig=signal.SIGINT)
        check(not problems, "SIGINT: %s", "; ".join(problems))
        # SIGTERM while pipelined writes are queued and in flight to Redis.
        env.start_huiqid()
        burst = []
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", env.huiqid_port))
            reqs = b""
            for j in range(10):
                body = json.dumps({"uscc": make_uscc("320214", rng=rng), "name": "n"}).encode()
                reqs += (b"POST /v1/enterprises HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Type: "
                         b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            s.sendall(reqs)
            burst.append(s)
        problems = env.stop_huiqid()
        for s in burst:
            s.close()
        check(not problems, "SIGTERM with writes in flight: %s", "; ".join(problems))
        # Whatever was acknowledged or not, the data is consistent after a restart.
        env.start_huiqid()
        eq(get_ok(env.c, "/v1/enterprises/" + u).json["name"], "x", "data after the burst")
        listed, cursor = [], None
        while True:
            r = get_ok(env.c, "/v1/enterprises?limit=200" +
                       ("&cursor=" + cursor if cursor else "")).json
            listed += [d["uscc"] for d in r["items"]]
            cursor = r["next"]
            if cursor is None:
                break
        n = env.c.post("/v1/audience", {"rule": {}}).json["count"]
        eq(n, len(listed), "audience and listing agree after the burst")
        eq(len(set(listed)), len(listed), "listing without duplicates after the burst")

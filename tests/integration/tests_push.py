"""The push pipeline: webhooks, bulk jobs, change-driven pushes, the delivery
engine (signatures, batches, retries, Retry-After, 410, dead letters, replay,
expiry, rotation, the address policy) and its durability when huiqid or Redis is
killed in the middle of a job. A receiver (receiver.py) plays the subscriber."""

import base64
import json
import math
import os
import re
import signal
import subprocess
import threading
import time

from harness import Env, TestFailure, check, eq, make_uscc, resp_command, wait_until
from receiver import Receiver, verify
from tests_api import expect_error, get_ok, post_ok

# huiqid flags for these tests: the receiver is on 127.0.0.1 over plain HTTP, and
# retries come quickly.
PUSH_ARGS = ["--webhook-allow", "127.0.0.1/32", "--webhook-allow-http", "on",
             "--retry-schedule", "200ms,400ms,800ms,1s,1s", "--webhook-timeout", "2000"]

TAG_A = "zone.wnd"
TAG_B = "ip.trademark"
TAG_C = "trade.import_export"
TAG_X = "neg.dishonest"

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def push_env(o, args=None, extra=(), appendfsync="everysec"):
    return Env(o, huiqid_args=list(PUSH_ARGS if args is None else args) + list(extra),
               appendfsync=appendfsync)


def code(i, region="320214", series="0"):
    """A deterministic valid credit code: the i-th of a series."""
    return make_uscc(region, org="%s%08d" % (series, i))


def import_ents(c, docs):
    """Bulk registration through the NDJSON import; every line must be accepted."""
    body = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode("utf-8")
    r = c.post("/v1/enterprises:import", body, content_type="application/x-ndjson")
    check(r.status == 200, "import of %d enterprises: %r", len(docs), r)
    eq(r.json["accepted"], len(docs), "import: accepted lines (errors %s)" % r.json.get("errors"))
    return r.json


def make_hook(c, rcv, events, **fields):
    """Registers rcv for 'events'; returns (webhook id, secret) and teaches rcv the
    secret."""
    body = {"url": rcv.url, "events": list(events)}
    body.update(fields)
    d = post_ok(c, "/v1/webhooks", body)
    check(isinstance(d.get("secret"), str) and d["secret"].startswith("whsec_"),
          "POST /v1/webhooks answer has no secret: %r", d)
    rcv.secrets = rcv.secrets + [d["secret"]]
    return d["id"], d["secret"]


def make_policy(c, rule, publish=True, **fields):
    """Creates (and publishes) a policy; returns (id, job or None)."""
    body = {"title": fields.pop("title", "推送测试政策"), "level": "city", "rule": rule}
    body.update(fields)
    pid = post_ok(c, "/v1/policies", body)["id"]
    job = None
    if publish:
        d = post_ok(c, "/v1/policies/%d/publish" % pid, None, status=200)
        eq(d["status"], "published", "publish: status")
        check(isinstance(d.get("job"), int) and d["job"] > 0,
              "publish answer carries no job: %r", d)
        job = d["job"]
    return pid, job


def eq_set(actual, expected, what):
    """Set equality, reporting only the differences."""
    actual, expected = set(actual), set(expected)
    if actual != expected:
        raise TestFailure("%s: %d expected, %d got; missing %s; unexpected %s" % (
            what, len(expected), len(actual), sorted(expected - actual)[:8],
            sorted(actual - expected)[:8]))


def job_of(c, jid):
    return get_ok(c, "/v1/jobs/%d" % jid).json


def wait_job(c, jid, timeout, what="", settled=True, env=None):
    """Waits until the job's walk is over and (settled) every queued notice has an
    outcome; returns the job. With env, stops early if huiqid died."""
    last = {}

    def cond():
        if env is not None:
            env.assert_alive("while waiting for job %d" % jid)
        r = c.get("/v1/jobs/%d" % jid)
        if r.status != 200:  # e.g. 503 while Redis is away
            last["j"] = r
            return None
        j = r.json
        last["j"] = j
        if j["state"] == "running":
            return None
        if settled and j["delivered"] + j["failed"] + j["expired"] < j["queued"]:
            return None
        return j

    try:
        return wait_until(cond, timeout, "job %d %s(last seen %s)" % (jid, what, last.get("j")))
    except TestFailure:
        raise TestFailure("job %d did not finish %swithin %.0fs; last seen %s" % (
            jid, what, timeout, last.get("j")))


def wait_ids(rcv, want, timeout, what):
    """Waits until the receiver accepted every id in 'want'."""
    want = set(want)

    def cond():
        return want <= set(rcv.ids())

    try:
        wait_until(cond, timeout, what)
    except TestFailure:
        got = set(rcv.ids())
        raise TestFailure("%s: %d of %d ids arrived within %.0fs (missing e.g. %s)" % (
            what, len(want & got), len(want), timeout, sorted(want - got)[:3]))


def deliveries(c, limit=500, max_pages=2000, **query):
    """Every delivery the list endpoint gives for 'query', following 'next'."""
    items = []
    cursor = None
    for _ in range(max_pages):
        q = dict(query, limit=limit)
        if cursor:
            q["cursor"] = cursor
        path = "/v1/deliveries?" + "&".join("%s=%s" % (k, v) for k, v in q.items())
        d = get_ok(c, path).json
        items += d["items"]
        cursor = d["next"]
        if cursor is None:
            return items
    raise TestFailure("GET /v1/deliveries did not end after %d pages" % max_pages)


def dlv(c, msg_id):
    return get_ok(c, "/v1/deliveries/" + msg_id).json


def matched_id(pid, u, wh):
    return "msg_%d_%s_%d" % (pid, u, wh)


def quiet(rcv, seconds):
    """Waits 'seconds' and returns the requests that reached rcv meanwhile."""
    before = rcv.requests
    time.sleep(seconds)
    return rcv.requests - before


def check_repeats(rcv, what, new_timestamp_ok=False):
    """Repeats of an id must be retries: same id, same bytes (or, when
    new_timestamp_ok, the same notice rendered again at another time)."""
    check(not rcv.body_changed, "%s: ids delivered again with different bodies: %s",
          what, sorted(set(rcv.body_changed))[:5])
    check(new_timestamp_ok or not rcv.ts_changed,
          "%s: %d ids delivered again with the same body but a new \"timestamp\" (the "
          "notice was rendered again instead of resent), e.g. %s", what,
          len(set(rcv.ts_changed)), sorted(set(rcv.ts_changed))[:3])
    check(rcv.bad_signatures == 0, "%s: %d requests had a bad or missing signature",
          what, rcv.bad_signatures)


def kill_huiqid(env):
    """SIGKILL: no chance to finish anything."""
    p = env.huiqid_proc
    env.huiqid_proc = None
    if env.client:
        env.client.close()
    if p is not None:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
        eq(p.returncode, -signal.SIGKILL, "huiqid exit status after SIGKILL")


def start_redis_slow_load(env, key_load_delay=-10):
    """Restarts the Env's redis-server on the same port and directory (the AOF of
    the killed one) with loading slowed down (Redis' key-load-delay, negative: a
    1 us pause every that many keys), so that for a second or more Redis accepts
    connections and answers -LOADING, as a Redis restarting with a large dataset
    does. Returns once it answers PONG; True if it was seen answering LOADING."""
    log = open(os.path.join(env.dir, "redis.log"), "ab")
    cmd = ["redis-server", "--port", str(env.redis_port), "--bind", "127.0.0.1",
           "--dir", env.dir, "--save", "", "--appendonly", "yes", "--appendfsync", env.appendfsync,
           "--daemonize", "no", "--key-load-delay", str(key_load_delay),
           "--loading-process-events-interval-bytes", "1024"]
    env.redis_proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)
    log.close()
    seen = {"loading": False}

    def up():
        if env.redis_proc.poll() is not None:
            raise TestFailure("redis-server exited with %s" % env.redis_proc.returncode)
        r = resp_command(env.redis_port, "PING", timeout=0.5)
        if isinstance(r, Exception) and "LOADING" in str(r):
            seen["loading"] = True
        return r == "PONG"

    wait_until(up, 60, "the restarted redis-server to load its AOF")
    return seen["loading"]


def redis_hash(env, key):
    flat = env.redis("HGETALL", key) or []
    return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}


def policy_jobs(env):
    """Every push job in Redis (hq:jobs), by policy: {policy id: [(job id, kind)]}."""
    out = {}
    for jid in env.redis("ZRANGE", "hq:jobs", 0, -1) or []:
        h = redis_hash(env, "hq:job:%s" % jid.decode())
        out.setdefault(int(h["policy"]), []).append((int(jid), h["kind"]))
    return out


class RedisLoad:
    """Keeps Redis busy with back-to-back Lua scripts that spin for 'ms' each, so
    every command huiqid sends waits for one: a bulk job's walk, which normally
    takes well under a second, then takes a few, leaving time to kill something in
    the middle of it."""

    SPIN = ("local t = redis.call('TIME') "
            "local t0 = t[1] * 1000000 + t[2] "
            "while true do local n = redis.call('TIME') "
            "if n[1] * 1000000 + n[2] - t0 > tonumber(ARGV[1]) * 1000 then break end end "
            "return 1")

    def __init__(self, port, ms=40):
        self.port = port
        self.ms = ms
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop_flag.is_set():
            try:
                resp_command(self.port, "EVAL", self.SPIN, 0, self.ms, timeout=5)
            except (OSError, ConnectionError):
                if self.stop_flag.wait(0.05):
                    return

    def __enter__(self):
        self.thread.start()
        return self

    def stop(self):
        self.stop_flag.set()
        self.thread.join(10)

    def __exit__(self, *a):
        self.stop()
        return False


# --------------------------------------------------------------------------
# 1. A bulk push: signatures, one call per enterprise, batches, job counters
# --------------------------------------------------------------------------


def test_push_signed_and_batched(o):
    rcv = Receiver(keep_raw=True)
    own = Receiver()
    try:
        with push_env(o) as env:
            c = env.c
            wh, secret = make_hook(c, rcv, ["policy.matched", "package.batch"], batch=100)
            # Enterprises' own endpoints are signed with a service-wide secret that the
            # API never shows; the test reads it from Redis to check those signatures.
            ent_secret = wait_until(lambda: env.redis("HGET", "hq:cfg", "ent_webhook_secret"),
                                    5 * o.slow, "the enterprise webhook secret in Redis")
            own.secrets = [ent_secret.decode()]
            eq(get_ok(c, "/v1/webhooks/%d" % wh).json.get("secret"), None,
               "GET /v1/webhooks/{id} shows no secret")
            docs, want = [], set()
            own_codes = set()
            for i in range(1000):
                u = code(i)
                d = {"uscc": u, "name": "企业 %d" % i, "tags": [TAG_B]}
                if i % 3 == 0:
                    d["tags"] = [TAG_A]
                    if i % 7 == 0:
                        d["tags"].append(TAG_X)  # excluded by the rule's "none"
                    else:
                        want.add(u)
                        if i % 50 == 0:
                            d["contact"] = {"webhook": own.url, "person": "王"}
                            own_codes.add(u)
                docs.append(d)
            import_ents(c, docs)
            m = len(want)
            rule = {"all": [TAG_A], "none": [TAG_X]}
            pid, jid = make_policy(c, rule)
            nb = math.ceil(m / 100)
            j = wait_job(c, jid, 20 * o.slow, "(1,000 enterprises) ")
            expect = {"state": "done", "kind": "publish", "policy": pid, "audience": m,
                      "scanned": m, "matched": m, "skipped": 0, "queued": m + nb + len(own_codes),
                      "delivered": m + nb + len(own_codes), "failed": 0, "expired": 0}
            eq({k: j.get(k) for k in expect}, expect, "job %d counters" % jid)
            eq((j["percent"], j["matching_percent"], j["delivery_percent"]), (100, 100, 100),
               "job percents")

            # One signed call per matched enterprise, and batches.
            want_ids = {matched_id(pid, u, wh) for u in want}
            wait_ids(rcv, want_ids, 10 * o.slow, "policy.matched deliveries")
            wait_until(lambda: rcv.distinct() >= m + nb, 10 * o.slow, "the batches")
            ids = rcv.ids()
            check_repeats(rcv, "bulk push")
            single = {i for i in ids if not re.match(r"msg_%d_j" % pid, i)}
            eq_set(single, want_ids, "policy.matched ids (msg_<policy>_<uscc>_<webhook>)")
            check(all(n == 1 for n in ids.values()),
                  "ids delivered more than once with no failure: %s",
                  {k: v for k, v in ids.items() if v > 1})
            for i in want_ids:
                b = rcv.bodies[i]
                u = i.split("_")[2]
                eq(b["type"], "policy.matched", "%s type" % i)
                eq(b["data"]["policy"]["id"], pid, "%s data.policy.id" % i)
                eq(b["data"]["enterprise"]["uscc"], u, "%s data.enterprise.uscc" % i)
                eq(b["data"]["enterprise"]["name"], "企业 %d" % int(u[8:17]),
                   "%s data.enterprise.name" % i)
                eq(b["data"]["job"], jid, "%s data.job" % i)
            batch_ids = sorted(set(ids) - want_ids)
            eq(len(batch_ids), nb, "package.batch calls (%d recipients, batch 100)" % m)
            seen = []
            for i in batch_ids:
                b = rcv.bodies[i]
                eq(b["type"], "package.batch", "%s type" % i)
                eq(b["data"]["policy"]["id"], pid, "%s data.policy.id" % i)
                eq(b["data"]["job"], jid, "%s data.job" % i)
                rec = b["data"]["recipients"]
                check(1 <= len(rec) <= 100, "%s has %d recipients (batch is 100)", i, len(rec))
                seen += [r["uscc"] for r in rec]
            eq(len(seen), m, "recipients over all batches")
            eq_set(set(seen), want, "the batches' recipients")
            # Headers: id, timestamp, event, signature by the webhook's secret.
            eq(len(rcv.raw), m + nb, "requests to the webhook")
            for t, h, body in rcv.raw:
                ev = json.loads(body)["type"]
                eq(h.get("huiqi-event"), ev, "huiqi-event header of %s" % h.get("webhook-id"))
                check(abs(int(h["webhook-timestamp"]) - t) <= 5,
                      "webhook-timestamp %s is not the time of sending", h["webhook-timestamp"])
                check(re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", h["webhook-signature"]),
                      "webhook-signature %r is not one v1 signature", h["webhook-signature"])
                check(verify([secret], h, body), "signature of %s does not verify",
                      h["webhook-id"])
                check(h.get("content-type", "").startswith("application/json"),
                      "content-type %r", h.get("content-type"))
            # Enterprises' own endpoints: their policy.matched, signed with the
            # service's enterprise secret.
            own_ids = {"msg_%d_%s_ent" % (pid, u) for u in own_codes}
            wait_ids(own, own_ids, 10 * o.slow, "deliveries to enterprises' own webhooks")
            eq_set(set(own.ids()), own_ids, "ids at the enterprises' own endpoint")
            check_repeats(own, "enterprises' own endpoints")
            for i in own_ids:
                eq(own.bodies[i]["data"]["enterprise"]["contact"]["webhook"], own.url,
                   "%s data.enterprise.contact" % i)

            # The job's matches, paged, are exactly the matched codes.
            got, cursor, pages = [], None, 0
            while True:
                path = "/v1/jobs/%d/matches?limit=37" % jid + ("&cursor=" + cursor if cursor
                                                              else "")
                d = get_ok(c, path).json
                eq(d["job"], jid, "matches: job")
                got += d["items"]
                cursor = d["next"]
                pages += 1
                check(pages < 100, "matches paging does not end")
                if cursor is None:
                    break
            eq(len(got), m, "codes listed by /v1/jobs/%d/matches" % jid)
            eq_set(set(got), want, "codes listed by /v1/jobs/%d/matches" % jid)

            # The deliveries, all delivered once.
            big = deliveries(c, webhook=wh)
            eq(len(big), m + nb, "GET /v1/deliveries?webhook=%d items" % wh)
            eq_set({d["id"] for d in big}, set(ids), "delivery ids listed")
            for d in big:
                eq((d["state"], d["attempts"], d["last_status"], d["last_error"], d["webhook"],
                    d["policy"], d["job"]), ("delivered", 1, 200, None, wh, pid, jid),
                   "delivery %s" % d["id"])
                if d["event"] == "policy.matched":
                    eq(d["enterprise"], d["id"].split("_")[2], "delivery %s enterprise" % d["id"])
                else:
                    eq(d["event"], "package.batch", "delivery %s event" % d["id"])
            eq(len(deliveries(c, state="delivered")), m + nb + len(own_codes),
               "GET /v1/deliveries?state=delivered")
            eq(deliveries(c, state="retry"), [], "GET /v1/deliveries?state=retry")
            one = dlv(c, sorted(want_ids)[0])
            eq([(a["attempt"], a["outcome"], a["status"]) for a in one["attempt_log"]],
               [(1, "delivered", 200)], "attempt_log of a delivered notice")
            check(one["attempt_log"][0].get("latency_ms", -1) >= 0, "attempt_log latency_ms")
    finally:
        rcv.close()
        own.close()


def test_push_deliveries_paging(o):
    """GET /v1/deliveries pages: every delivery exactly once whatever the page size,
    and no page longer than 'limit'. Batches of one interleave ids of two lengths
    (msg_<p>_<uscc>_<w> and msg_<p>_j<job>_..._<w>) recorded in the same
    milliseconds."""
    rcv = Receiver(keep_bodies=False)
    try:
        with push_env(o) as env:
            c = env.c
            wh, _ = make_hook(c, rcv, ["policy.matched", "package.batch"], batch=1, inflight=64)
            codes = [code(i, series="P") for i in range(300)]
            import_ents(c, [{"uscc": u, "name": "企业", "tags": [TAG_A]} for u in codes])
            pid, jid = make_policy(c, {"all": [TAG_A]})
            j = wait_job(c, jid, 20 * o.slow)
            eq((j["queued"], j["delivered"]), (600, 600), "job counters")
            ref = [d["id"] for d in deliveries(c, webhook=wh)]
            eq(len(ref), 600, "deliveries listed with limit=500")
            eq(len(set(ref)), 600, "distinct deliveries listed with limit=500")
            problems = []
            for limit in (1, 2, 3, 10):
                got = [d["id"] for d in deliveries(c, limit=limit, webhook=wh)]
                dup = sorted({i for i in got if got.count(i) > 1})
                missing = sorted(set(ref) - set(got))
                if dup or missing or len(got) != 600:
                    problems.append("limit=%d: %d items, %d missing (e.g. %s), %d twice (e.g. %s)"
                                    % (limit, len(got), len(missing), missing[:2], len(dup),
                                       dup[:2]))
            r = get_ok(c, "/v1/deliveries?state=delivered&limit=5&webhook=%d" % wh).json
            if len(r["items"]) > 5:
                problems.append("?state=delivered&limit=5 answered a page of %d items" %
                                len(r["items"]))
            check(not problems, "paging GET /v1/deliveries?webhook=%d (600 deliveries): %s",
                  wh, "; ".join(problems))
    finally:
        rcv.close()


# --------------------------------------------------------------------------
# 2. Never doubled: push again, restart, a wider rule, a reused ordinal
# --------------------------------------------------------------------------


def test_push_never_doubled(o):
    rcv = Receiver()
    try:
        with push_env(o) as env:
            c = env.c
            wh, _ = make_hook(c, rcv, ["policy.matched"])
            group_a = [code(i, series="1") for i in range(60)]
            group_b = [code(i, series="2") for i in range(40)]
            others = [code(i, series="3") for i in range(100)]
            import_ents(c, [{"uscc": u, "name": "甲 %s" % u[-4:], "tags": [TAG_A]}
                            for u in group_a] +
                        [{"uscc": u, "name": "乙 %s" % u[-4:], "tags": [TAG_B]} for u in group_b] +
                        [{"uscc": u, "name": "丙 %s" % u[-4:], "tags": [TAG_C]} for u in others])
            pid, j1 = make_policy(c, {"all": [TAG_A]})
            wait_job(c, j1, 10 * o.slow)
            want = {matched_id(pid, u, wh) for u in group_a}
            wait_ids(rcv, want, 10 * o.slow, "first push")
            eq_set(rcv.ids(), want, "ids after the first push")

            # Pushing again notifies nobody.
            r = c.post("/v1/policies/%d/push" % pid)
            eq(r.status, 202, "POST /v1/policies/%d/push status" % pid)
            eq(r.json.get("state"), "running", "push answer state")
            eq(r.header("location"), "/v1/jobs/%d" % r.json["job"], "push answer Location")
            j2 = wait_job(c, r.json["job"], 10 * o.slow)
            eq({k: j2[k] for k in ("kind", "audience", "scanned", "matched", "skipped", "queued")},
               {"kind": "push", "audience": 60, "scanned": 60, "matched": 0, "skipped": 60,
                "queued": 0}, "second push counters")
            eq(get_ok(c, "/v1/jobs/%d/matches" % j2["id"]).json["items"], [],
               "matches of a push that matched nobody new")
            eq(quiet(rcv, 0.5), 0, "requests after a push that had nothing new")

            # A restart sends nothing again either.
            problems = env.stop_huiqid()
            check(not problems, "stopping huiqid: %s", problems)
            env.start_huiqid()
            c = env.c
            eq(quiet(rcv, 1.5), 0, "requests after restarting huiqid")
            r = c.post("/v1/policies/%d/push" % pid)
            eq(r.status, 202, "push after the restart")
            eq(wait_job(c, r.json["job"], 10 * o.slow)["matched"], 0,
               "matched by a push after the restart")

            # A wider rule: only the newly included are notified.
            d = get_ok(c, "/v1/policies/%d" % pid).json
            r = c.put("/v1/policies/%d" % pid, {"title": d["title"], "level": "city",
                                                "rule": {"any": [TAG_A, TAG_B]}})
            eq(r.status, 200, "PUT policy with a wider rule")
            eq(r.json["status"], "published", "status after PUT")
            r = c.post("/v1/policies/%d/push" % pid)
            eq(r.status, 202, "push after widening the rule")
            j3 = wait_job(c, r.json["job"], 10 * o.slow)
            eq({k: j3[k] for k in ("audience", "matched", "skipped", "queued", "delivered")},
               {"audience": 100, "matched": 40, "skipped": 60, "queued": 40, "delivered": 40},
               "push after widening the rule")
            eq_set(get_ok(c, "/v1/jobs/%d/matches?limit=1000" % j3["id"]).json["items"],
               set(group_b), "matches of the push after widening")
            want |= {matched_id(pid, u, wh) for u in group_b}
            wait_ids(rcv, want, 10 * o.slow, "the newly included")
            eq_set(rcv.ids(), want, "ids after widening the rule")
            eq(rcv.requests, 100, "requests in all (nobody twice)")

            # An unrelated change to a notified enterprise notifies nobody.
            r = c.patch("/v1/enterprises/" + group_a[0], {"name": "甲 改名"},
                        headers={"Content-Type": "application/merge-patch+json"})
            eq(r.status, 200, "PATCH a notified enterprise")

            # A deleted enterprise frees its ordinal; a different enterprise that
            # takes it and matches is notified (the ordinal's "sent" bit is cleared).
            gone = group_a[5]
            ord_gone = int(env.redis("HGET", "hq:ent:" + gone, "ord"))
            eq(c.delete("/v1/enterprises/" + gone).status, 204, "DELETE enterprise")
            newcomer = code(7, series="9")
            post_ok(c, "/v1/enterprises", {"uscc": newcomer, "name": "新来者", "tags": [TAG_A]})
            eq(int(env.redis("HGET", "hq:ent:" + newcomer, "ord")), ord_gone,
               "the new enterprise's ordinal (reused)")
            nid = matched_id(pid, newcomer, wh)
            wait_ids(rcv, {nid}, 10 * o.slow, "the enterprise on a reused ordinal")
            eq(rcv.bodies[nid]["data"]["enterprise"]["uscc"], newcomer, "its notice's enterprise")
            check("job" not in rcv.bodies[nid]["data"], "a change-driven notice has no job: %r",
                  rcv.bodies[nid]["data"])
            r = c.post("/v1/policies/%d/push" % pid)
            j4 = wait_job(c, r.json["job"], 10 * o.slow)
            eq((j4["matched"], j4["skipped"]), (0, 100), "push after the newcomer")
            eq(quiet(rcv, 0.5), 0, "requests after the last push")
            eq_set(rcv.ids(), want | {nid}, "ids in all")
            eq(rcv.requests, 101, "requests in all")
            check_repeats(rcv, "never doubled")
    finally:
        rcv.close()


# --------------------------------------------------------------------------
# 3. Receiver faults: 500, dropped connections, timeouts, then recovery
# --------------------------------------------------------------------------


def test_push_receiver_faults_then_recovers(o):
    rcv = Receiver()
    args = ["--webhook-allow", "127.0.0.1/32", "--webhook-allow-http", "on",
            "--retry-schedule", ",".join(["300ms"] * 14), "--webhook-timeout", "600"]
    try:
        with push_env(o, args) as env:
            c = env.c
            wh, _ = make_hook(c, rcv, ["policy.matched"])
            codes = [code(i, series="4") for i in range(20)]
            import_ents(c, [{"uscc": u, "name": "企业 %s" % u[-4:], "tags": [TAG_A]}
                            for u in codes])
            rcv.fail(500)
            pid, jid = make_policy(c, {"all": [TAG_A]})
            ids = {matched_id(pid, u, wh) for u in codes}

            def all_seen(kind):
                got = {}
                for t, i, what in rcv.snapshot_arrivals():
                    if what == kind:
                        got[i] = got.get(i, 0) + 1
                return set(got) >= ids

            wait_until(lambda: all_seen(500), 10 * o.slow, "every notice to meet a 500")

            def in_retry():
                items = deliveries(c, state="retry", webhook=wh)
                return items if {d["id"] for d in items} == ids else None

            items = wait_until(in_retry, 10 * o.slow, "all 20 deliveries in state retry")
            for d in items:
                check(d["attempts"] >= 1, "%s: attempts %r", d["id"], d["attempts"])
                eq(d["last_status"], 500, "%s last_status" % d["id"])
                check(d["last_error"] and "500" in d["last_error"], "%s last_error %r",
                      d["id"], d["last_error"])
                check("next_attempt_at" in d, "%s in retry has no next_attempt_at", d["id"])
            one = dlv(c, sorted(ids)[0])
            eq((one["attempt_log"][0]["outcome"], one["attempt_log"][0]["status"]),
               ("retry", 500), "first attempt in the log")
            wait_until(lambda: "failing_since" in get_ok(c, "/v1/webhooks/%d" % wh).json,
                       5 * o.slow, "the webhook to show failing_since")

            # Dropped connections.
            rcv.recover()
            rcv.fail(500)
            rcv.set(drop=True)
            wait_until(lambda: all_seen("drop"), 10 * o.slow, "every notice to meet a drop")
            # Timeouts: the receiver holds the request past --webhook-timeout.
            rcv.set(drop=False, sleep_fault=1.5)
            wait_until(lambda: all_seen("sleep"), 10 * o.slow,
                       "every notice to meet a timeout")
            in_between = {d["id"]: d for d in deliveries(c, webhook=wh)}
            eq_set(in_between, ids, "deliveries listed during the faults")
            for d in in_between.values():
                check(d["state"] in ("retry", "queued"), "%s is %s during the faults",
                      d["id"], d["state"])
            rcv.recover()
            wait_ids(rcv, ids, 15 * o.slow, "deliveries after the receiver recovered")
            j = wait_job(c, jid, 10 * o.slow)
            eq((j["delivered"], j["failed"], j["queued"]), (20, 0, 20), "job counters")
            check_repeats(rcv, "faults")
            eq_set(rcv.ids(), ids, "ids accepted")
            for i in sorted(ids):
                d = dlv(c, i)
                eq((d["state"], d["last_status"], d["last_error"]), ("delivered", 200, None),
                   "%s after recovery" % i)
                log = d["attempt_log"]
                eq(d["attempts"], len(log), "%s attempts vs attempt_log" % i)
                eq(log[-1]["outcome"], "delivered", "%s last attempt" % i)
                outcomes = [(a["outcome"], a.get("status"), a.get("error", "")) for a in log]
                check(any(s == 500 for _, s, _ in outcomes), "%s: no 500 in %s", i, outcomes)
                check(any(x == "retry" and s is None and "timed out" in e
                          for x, s, e in outcomes), "%s: no timeout in %s", i, outcomes)
                check(any(x == "retry" and s is None and e and "timed out" not in e
                          for x, s, e in outcomes), "%s: no dropped connection in %s",
                      i, outcomes)
                for a in log:
                    eq(a["attempt"], log.index(a) + 1, "%s attempt numbers" % i)
            check("failing_since" not in get_ok(c, "/v1/webhooks/%d" % wh).json,
                  "failing_since is still shown after a success")
    finally:
        rcv.close()


# --------------------------------------------------------------------------
# 4. 410, Retry-After, dead letters and replay
# --------------------------------------------------------------------------


def test_push_410_disables(o):
    rcv = Receiver()
    try:
        with push_env(o) as env:
            c = env.c
            wh, _ = make_hook(c, rcv, ["policy.matched"], inflight=1)
            codes = [code(i, series="5") for i in range(10)]
            import_ents(c, [{"uscc": u, "name": "企业", "tags": [TAG_A]} for u in codes])
            rcv.fail(410)
            pid, jid = make_policy(c, {"all": [TAG_A]})
            j = wait_job(c, jid, 10 * o.slow)
            eq((j["delivered"], j["failed"], j["queued"]), (0, 10, 10), "job counters")
            w = get_ok(c, "/v1/webhooks/%d" % wh).json
            eq(w["state"], "disabled", "webhook state after a 410")
            check("410" in w.get("disabled_reason", ""), "disabled_reason %r",
                  w.get("disabled_reason"))
            eq(rcv.requests, 1, "requests that reached the receiver (inflight 1)")
            items = deliveries(c, webhook=wh)
            states = sorted(d["state"] for d in items)
            eq(states, ["dead"] + ["disabled"] * 9, "delivery states")
            dead = [d for d in items if d["state"] == "dead"][0]
            eq((dead["last_status"], dead["attempts"]), (410, 1), "the 410 delivery")
            eq(len(deliveries(c, state="disabled")), 9, "?state=disabled")
            eq(len(deliveries(c, state="dead")), 1, "?state=dead")
            # A disabled webhook gets nothing new.
            post_ok(c, "/v1/enterprises", {"uscc": code(99, series="5"), "name": "后来者",
                                           "tags": [TAG_A]})
            eq(quiet(rcv, 1.0), 0, "requests to a disabled webhook")
            # Enabled again and replayed: everything lands.
            rcv.recover()
            r = c.patch("/v1/webhooks/%d" % wh, {"enabled": True})
            eq(r.status, 200, "PATCH enabled")
            eq(r.json["state"], "active", "state after enabling")
            check("disabled_reason" not in r.json, "disabled_reason after enabling: %r", r.json)
            r = c.post("/v1/webhooks/%d/replay" % wh)
            eq(r.status, 202, "replay status")
            eq(r.json, {"replayed": 10}, "replay answer")
            ids = {matched_id(pid, u, wh) for u in codes}
            wait_ids(rcv, ids, 10 * o.slow, "replayed deliveries")
            check_repeats(rcv, "410")
    finally:
        rcv.close()


def test_push_retry_after_honoured(o):
    rcv = Receiver()
    try:
        with push_env(o) as env:
            c = env.c
            wh, _ = make_hook(c, rcv, ["policy.matched"])
            codes = [code(i, series="6") for i in range(3)]
            import_ents(c, [{"uscc": u, "name": "企业", "tags": [TAG_A]} for u in codes])
            # Each notice: 429 with Retry-After: 2, then 503 with Retry-After: 2, then OK
            # (the schedule alone would retry after 200 ms and 400 ms).
            rcv.plan = [(429, 2), (503, 2)]
            pid, jid = make_policy(c, {"all": [TAG_A]})
            ids = {matched_id(pid, u, wh) for u in codes}

            def first_retry():
                items = deliveries(c, webhook=wh)
                return items if len(items) == 3 and all(
                    d["state"] == "retry" for d in items) else None

            for d in wait_until(first_retry, 5 * o.slow, "three deliveries in retry"):
                eq(d["last_status"], 429, "%s last_status" % d["id"])
            wait_ids(rcv, ids, 15 * o.slow, "deliveries after Retry-After")
            for i in sorted(ids):
                times = [t for t, _, _ in rcv.arrivals_of(i)]
                eq([w for _, _, w in rcv.arrivals_of(i)], [429, 503, "ok"], "%s answers" % i)
                for k in (1, 2):
                    check(times[k] - times[k - 1] >= 1.95,
                          "%s: attempt %d came %.2fs after a Retry-After: 2", i, k + 1,
                          times[k] - times[k - 1])
                log = dlv(c, i)["attempt_log"]
                eq([(a["outcome"], a.get("status")) for a in log],
                   [("retry", 429), ("retry", 503), ("delivered", 200)], "%s attempt_log" % i)
    finally:
        rcv.close()


def test_push_3xx_is_a_failure(o):
    rcv = Receiver()
    other = Receiver()
    try:
        with push_env(o) as env:
            c = env.c
            wh, _ = make_hook(c, rcv, ["policy.matched"])
            u = code(1, series="R")
            post_ok(c, "/v1/enterprises", {"uscc": u, "name": "企业", "tags": [TAG_A]})
            # First answer: 302 to another receiver (which must never be called), then OK.
            rcv.plan = [302]
            rcv.set(url_redirect=other.url)
            pid, jid = make_policy(c, {"all": [TAG_A]})
            i = matched_id(pid, u, wh)
            wait_ids(rcv, {i}, 10 * o.slow, "the delivery after a 302")
            eq([w for _, _, w in rcv.arrivals_of(i)], [302, "ok"], "answers for %s" % i)
            eq(other.requests, 0, "requests that followed the redirect")
            log = dlv(c, i)["attempt_log"]
            eq([(a["outcome"], a.get("status")) for a in log], [("retry", 302), ("delivered", 200)],
               "attempt_log after a 302")
    finally:
        rcv.close()
        other.close()


def test_push_dead_letter_and_replay(o):
    rcv = Receiver()
    args = ["--webhook-allow", "127.0.0.1/32", "--webhook-allow-http", "on",
            "--retry-schedule", "100ms,100ms,100ms", "--webhook-timeout", "2000"]
    try:
        with push_env(o, args) as env:
            c = env.c
            wh, _ = make_hook(c, rcv, ["policy.matched"])
            codes = [code(i, series="7") for i in range(5)]
            import_ents(c, [{"uscc": u, "name": "企业", "tags": [TAG_A]} for u in codes])
            rcv.fail(500)
            t0 = int(time.time() * 1000)
            pid, jid = make_policy(c, {"all": [TAG_A]})
            ids = sorted(matched_id(pid, u, wh) for u in codes)
            j = wait_job(c, jid, 15 * o.slow, "(dead letters) ")
            eq((j["queued"], j["delivered"], j["failed"]), (5, 0, 5), "job counters when dead")
            dead = deliveries(c, state="dead", webhook=wh)
            eq(sorted(d["id"] for d in dead), ids, "?state=dead")
            for d in dead:
                eq((d["attempts"], d["last_status"]), (4, 500),
                   "%s: attempts (1 + 3 scheduled) and last status" % d["id"])
                log = dlv(c, d["id"])["attempt_log"]
                eq([a["outcome"] for a in log], ["retry", "retry", "retry", "dead"],
                   "%s attempt_log" % d["id"])
            for i in ids:
                eq(len(rcv.arrivals_of(i)), 4, "requests for %s" % i)
            eq(quiet(rcv, 1.2), 0, "requests after every delivery was dead")

            rcv.recover()
            # One by hand.
            eq(c.post("/v1/deliveries/msg_nope_1/retry").status, 404, "retry of an unknown id")
            r = c.post("/v1/deliveries/%s/retry" % ids[0])
            eq(r.status, 202, "POST /v1/deliveries/{id}/retry")
            eq(r.json, {"id": ids[0], "state": "queued"}, "retry answer")
            wait_ids(rcv, {ids[0]}, 10 * o.slow, "the retried delivery")
            wait_until(lambda: dlv(c, ids[0])["state"] == "delivered", 5 * o.slow,
                       "the retried delivery's state")
            eq(dlv(c, ids[1])["state"], "dead", "the others stay dead")
            # A time range that holds nothing replays nothing.
            r = c.post("/v1/webhooks/%d/replay?until=%d" % (wh, t0 - 60000))
            eq((r.status, r.json), (202, {"replayed": 0}), "replay of an empty range")
            # The rest by replay.
            r = c.post("/v1/webhooks/%d/replay?since=%d" % (wh, t0 - 1000))
            eq((r.status, r.json), (202, {"replayed": 4}), "replay of the dead")
            wait_ids(rcv, set(ids), 10 * o.slow, "replayed deliveries")
            wait_until(lambda: all(d["state"] == "delivered"
                                   for d in deliveries(c, webhook=wh)), 5 * o.slow,
                       "every delivery delivered")
            eq(c.post("/v1/webhooks/%d/replay" % wh).json, {"replayed": 0},
               "replay with nothing undelivered")
            j_replayed = job_of(c, jid)
            before = rcv.ids()
            r = c.post("/v1/webhooks/%d/replay?all=1" % wh)
            eq(r.json, {"replayed": 5}, "replay all=1")
            wait_until(lambda: all(rcv.ids().get(i, 0) == before[i] + 1 for i in ids),
                       10 * o.slow, "every id to come once more")
            check_repeats(rcv, "replay")
            j_all = job_of(c, jid)
            # A job's counters describe its notices: once every one of them has been
            # delivered, none is failed and nothing exceeds what was queued.
            bad = []
            for when, j in (("after replaying the dead", j_replayed),
                            ("after replaying all=1", j_all)):
                if not (j["delivered"] == j["queued"] == 5 and j["failed"] == 0 and
                        j["delivery_percent"] <= 100 and j["percent"] <= 100):
                    bad.append("%s: queued %d, delivered %d, failed %d, expired %d, "
                               "delivery_percent %s, percent %s" % (
                                   when, j["queued"], j["delivered"], j["failed"],
                                   j["expired"], j["delivery_percent"], j["percent"]))
            check(not bad, "job %d counters count replayed deliveries again: %s", jid,
                  "; ".join(bad))
    finally:
        rcv.close()


# --------------------------------------------------------------------------
# 5. Expiry: withdrawn or closed before delivery
# --------------------------------------------------------------------------


def test_push_expires_when_withdrawn(o):
    rcv = Receiver()
    try:
        with push_env(o, extra=["--today", "2026-06-30"]) as env:
            c = env.c
            wh, _ = make_hook(c, rcv, ["policy.matched"])
            codes = [code(i, series="8") for i in range(10)]
            import_ents(c, [{"uscc": u, "name": "企业", "tags": [TAG_A, TAG_B]} for u in codes])
            rcv.fail(500)
            pid, jid = make_policy(c, {"all": [TAG_A]})
            ids = {matched_id(pid, u, wh) for u in codes}
            wait_until(lambda: {d["id"] for d in deliveries(c, state="retry", webhook=wh)}
                       == ids, 10 * o.slow, "all ten in retry")
            r = c.post("/v1/policies/%d/withdraw" % pid)
            eq(r.status, 200, "withdraw")
            t_w = time.time()
            time.sleep(0.3)
            rcv.recover()

            def expired():
                items = deliveries(c, webhook=wh)
                return items if all(d["state"] == "expired" for d in items) else None

            items = wait_until(expired, 10 * o.slow, "the deliveries to expire")
            eq_set({d["id"] for d in items}, ids, "expired deliveries")
            for d in items:
                check("withdrawn" in (d["last_error"] or ""), "%s last_error %r", d["id"],
                      d["last_error"])
            eq(rcv.ids(), {}, "deliveries accepted for a withdrawn policy")
            late = [a for a in rcv.snapshot_arrivals() if a[0] > t_w + 0.2]
            eq(late, [], "requests after the withdrawal")
            j = wait_job(c, jid, 5 * o.slow)
            eq((j["queued"], j["delivered"], j["failed"], j["expired"]), (10, 0, 0, 10),
               "job counters")

            # Closed: a policy whose window ends before its notices could go out.
            rcv.fail(500)
            p2, j2 = make_policy(c, {"all": [TAG_B]}, closes="2026-06-30")
            ids2 = {matched_id(p2, u, wh) for u in codes}
            wait_until(lambda: {d["id"] for d in deliveries(c, state="retry", webhook=wh)}
                       == ids2, 10 * o.slow, "the second policy's deliveries in retry")
            problems = env.stop_huiqid()
            check(not problems, "stopping huiqid: %s", problems)
            env.start_huiqid(PUSH_ARGS + ["--today", "2026-07-01"])
            c = env.c
            t_c = time.time()
            rcv.recover()
            wait_until(lambda: all(dlv(c, i)["state"] == "expired" for i in ids2), 10 * o.slow,
                       "the closed policy's deliveries to expire")
            for i in ids2:
                check("closed" in (dlv(c, i)["last_error"] or ""), "%s last_error %r", i,
                      dlv(c, i)["last_error"])
            eq([a for a in rcv.snapshot_arrivals() if a[0] > t_c], [],
               "requests after the policy closed")
            eq(rcv.ids(), {}, "deliveries accepted in all")
    finally:
        rcv.close()


# --------------------------------------------------------------------------
# 6. Auto mode: grants
# --------------------------------------------------------------------------


def test_push_auto_mode_grants(o):
    granted = Receiver()
    matched = Receiver()
    try:
        with push_env(o) as env:
            c = env.c
            wg, _ = make_hook(c, granted, ["policy.granted"])
            wm, _ = make_hook(c, matched, ["policy.matched"])
            codes = [code(i, series="A") for i in range(20)]
            yes = set(codes[:12])
            import_ents(c, [{"uscc": u, "name": "企业 %s" % u[-3:],
                             "tags": [TAG_A] if u in yes else [TAG_B]} for u in codes])
            t0 = int(time.time() * 1000)
            pid, jid = make_policy(c, {"all": [TAG_A]}, mode="auto", title="免申即享补贴")
            ver = get_ok(c, "/v1/policies/%d" % pid).json["version"]
            j = wait_job(c, jid, 10 * o.slow)
            eq({k: j[k] for k in ("mode", "matched", "queued", "delivered")},
               {"mode": "auto", "matched": 12, "queued": 24, "delivered": 24}, "job counters")
            t1 = int(time.time() * 1000)
            eq(env.redis("HLEN", "hq:grant:%d" % pid), 12, "grant records")
            grants = {}
            for u in codes:
                g = env.redis("HGET", "hq:grant:%d" % pid, u)
                if u not in yes:
                    eq(g, None, "grant of non-matching %s" % u)
                    continue
                check(g is not None, "no grant for %s", u)
                ms, _, v = g.decode().partition(":")
                check(t0 - 1000 <= int(ms) <= t1 + 1000, "grant time %s not within the job", ms)
                eq(int(v), ver, "grant %s records the policy version" % u)
                grants[u] = g
            gids = {"msg_%d_%s_%d_g" % (pid, u, wg) for u in yes}
            wait_ids(granted, gids, 10 * o.slow, "policy.granted deliveries")
            eq_set(granted.ids(), gids, "policy.granted ids")
            for i in gids:
                b = granted.bodies[i]
                eq(b["type"], "policy.granted", "%s type" % i)
                eq(b["data"]["policy"]["mode"], "auto", "%s policy mode" % i)
                eq(b["data"]["enterprise"]["uscc"], i.split("_")[2], "%s enterprise" % i)
                eq(b["data"]["rule_version"], ver, "%s rule_version" % i)
                check(re.match(r"\d{4}-\d\d-\d\dT", b["data"].get("granted_at", "")),
                      "%s granted_at %r", i, b["data"].get("granted_at"))
            wait_ids(matched, {matched_id(pid, u, wm) for u in yes}, 10 * o.slow,
                     "policy.matched deliveries of the auto policy")
            # A new version of the rule: grants made before keep their version, a new
            # grant carries the new one.
            d = get_ok(c, "/v1/policies/%d" % pid).json
            r = c.put("/v1/policies/%d" % pid, {"title": d["title"], "level": "city",
                                                "mode": "auto", "rule": {"any": [TAG_A, TAG_C]}})
            eq(r.status, 200, "PUT auto policy")
            ver2 = r.json["version"]
            check(ver2 > ver, "version after PUT: %s", ver2)
            late = code(50, series="A")
            post_ok(c, "/v1/enterprises", {"uscc": late, "name": "后来者", "tags": [TAG_C]})
            gid = "msg_%d_%s_%d_g" % (pid, late, wg)
            wait_ids(granted, {gid}, 10 * o.slow, "the late enterprise's grant notice")
            g = env.redis("HGET", "hq:grant:%d" % pid, late)
            check(g is not None and g.decode().endswith(":%d" % ver2),
                  "grant of the late enterprise %r (policy version %d)", g, ver2)
            eq(granted.bodies[gid]["data"]["rule_version"], ver2, "late grant rule_version")
            for u, g in grants.items():
                eq(env.redis("HGET", "hq:grant:%d" % pid, u), g, "earlier grant of %s" % u)
            check_repeats(granted, "grants")
    finally:
        granted.close()
        matched.close()


# --------------------------------------------------------------------------
# 7. Change-driven pushes and package_changed
# --------------------------------------------------------------------------


def test_push_change_driven(o):
    rcv = Receiver()
    pc = Receiver()
    try:
        with push_env(o) as env:
            c = env.c
            wh, _ = make_hook(c, rcv, ["policy.matched", "package.batch"])
            wpc, _ = make_hook(c, pc, ["enterprise.package_changed"])
            p1, _ = make_policy(c, {"all": [TAG_A]}, title="甲")
            p2, _ = make_policy(c, {"all": [TAG_B]}, title="乙")
            p3, _ = make_policy(c, {"all": [TAG_C]}, title="已截止", closes="2020-12-31")
            p4, _ = make_policy(c, {"all": [TAG_A]}, publish=False, title="草稿")
            u = code(1, series="B")
            base = {"name": "变化企业", "region": "320214"}
            seen_pc = set()

            def next_change(what):
                """Waits for one more package_changed; returns (added, removed)."""
                new = wait_until(lambda: set(pc.ids()) - seen_pc, 10 * o.slow,
                                 "package_changed " + what)
                time.sleep(0.2)
                new = set(pc.ids()) - seen_pc
                eq(len(new), 1, "package_changed calls for one change (%s)" % what)
                i = new.pop()
                seen_pc.add(i)
                b = pc.bodies[i]
                eq((b["type"], b["data"]["enterprise"]["uscc"]),
                   ("enterprise.package_changed", u), "package_changed body (%s)" % what)
                check(i.startswith("msg_pc_%s_" % u), "package_changed id %r", i)
                return b["data"]["added"], b["data"]["removed"]

            # A new enterprise: notified of what it matches, without a job; a batch of
            # one; no package_changed (it had no package before).
            r = c.put("/v1/enterprises/" + u, dict(base, tags=[TAG_A]))
            eq(r.status, 201, "PUT new enterprise")
            want = {matched_id(p1, u, wh), "msg_%d_%s_%d_b" % (p1, u, wh)}
            wait_ids(rcv, want, 10 * o.slow, "notices for a new enterprise")
            b = rcv.bodies[matched_id(p1, u, wh)]
            eq((b["type"], b["data"]["policy"]["id"], b["data"]["enterprise"]["uscc"]),
               ("policy.matched", p1, u), "change-driven policy.matched")
            check("job" not in b["data"], "change-driven notice carries a job: %r", b["data"])
            b = rcv.bodies["msg_%d_%s_%d_b" % (p1, u, wh)]
            eq((b["type"], [x["uscc"] for x in b["data"]["recipients"]]),
               ("package.batch", [u]), "change-driven batch of one")
            eq(quiet(rcv, 0.4), 0, "more notices for the new enterprise")
            eq(pc.requests, 0, "package_changed for a brand-new enterprise")

            # Into a second policy.
            r = c.put("/v1/enterprises/" + u, dict(base, tags=[TAG_A, TAG_B]))
            eq(r.status, 200, "PUT adding a tag")
            want |= {matched_id(p2, u, wh), "msg_%d_%s_%d_b" % (p2, u, wh)}
            wait_ids(rcv, want, 10 * o.slow, "notices for the newly matched policy")
            eq(next_change("into %d" % p2), ([p2], []), "package_changed into policy %d" % p2)
            # Out of the first (a merge patch).
            r = c.patch("/v1/enterprises/" + u, {"tags": [TAG_B]},
                        headers={"Content-Type": "application/merge-patch+json"})
            eq(r.status, 200, "PATCH removing a tag")
            eq(next_change("out of %d" % p1), ([], [p1]), "package_changed out of %d" % p1)
            # Back into it: a package change, but no second notice about it.
            r = c.put("/v1/enterprises/" + u, dict(base, tags=[TAG_A, TAG_B]))
            eq(r.status, 200, "PUT adding the tag back")
            eq(next_change("back into %d" % p1), ([p1], []), "package_changed back into %d" % p1)
            # A closed policy and a draft never notify; an unrelated change changes nothing.
            r = c.put("/v1/enterprises/" + u, dict(base, name="变化企业（新名）",
                                                   tags=[TAG_A, TAG_B, TAG_C]))
            eq(r.status, 200, "PUT into a closed policy")
            eq(quiet(rcv, 0.8), 0, "notices after matching only a closed policy")
            eq(len(pc.ids()), len(seen_pc), "package_changed after matching only a closed policy")
            eq_set(rcv.ids(), want, "every notice for the enterprise")
            for p in (p3, p4):
                check(not any("msg_%d_" % p in i for i in rcv.ids()), "notice for policy %d", p)

            # A policy published later reaches it through its job; then one change both
            # adds and removes.
            r = c.put("/v1/enterprises/" + u, dict(base, tags=[TAG_B, TAG_C]))
            eq(next_change("out of %d again" % p1), ([], [p1]), "package_changed out of %d" % p1)
            p5, j5 = make_policy(c, {"any": [TAG_A, TAG_C]}, title="丙")
            wait_job(c, j5, 10 * o.slow)
            want |= {matched_id(p5, u, wh), "msg_%d_j%d_0_1_%d" % (p5, j5, wh)}
            wait_ids(rcv, want, 10 * o.slow, "the job's notice")
            r = c.put("/v1/enterprises/" + u, dict(base, tags=[TAG_A]))
            eq(next_change("into %d, out of %d" % (p1, p2)), ([p1], [p2]),
               "package_changed into %d and out of %d" % (p1, p2))
            eq(quiet(rcv, 0.3), 0, "notices after a change into an already notified policy")
            eq_set(rcv.ids(), want, "every notice for the enterprise")

            # Registered by import: the same change-driven notices.
            v = code(2, series="B")
            import_ents(c, [{"uscc": v, "name": "导入企业", "tags": [TAG_B]}])
            wait_ids(rcv, {matched_id(p2, v, wh)}, 10 * o.slow, "notice after an import")
            eq(len(pc.ids()), len(seen_pc), "package_changed for an imported new enterprise")
            check_repeats(rcv, "change-driven")
            check_repeats(pc, "package_changed")

            # Several changes of one enterprise in one import (lines written back to
            # back): every change is its own event with its own webhook-id.
            lines = [dict(base, uscc=u, tags=t) for t in ([TAG_B], [TAG_A], [TAG_B], [TAG_A])]
            import_ents(c, lines)
            want_changes = [([p2], [p1, p5]), ([p1, p5], [p2])] * 2

            def arrived():
                return pc.requests >= len(seen_pc) + len(want_changes)

            wait_until(arrived, 10 * o.slow, "the package_changed calls of the import")
            time.sleep(0.3)
            new_ids = set(pc.ids()) - seen_pc
            got = sorted((pc.bodies[i]["data"]["added"], pc.bodies[i]["data"]["removed"])
                         for i in new_ids)
            check(len(new_ids) == len(want_changes) and not pc.body_changed,
                  "4 package changes in one import arrived under %d webhook-id(s) %s (%s); "
                  "the same id was reused with different bodies for %s", len(new_ids),
                  sorted(new_ids), got, sorted(set(pc.body_changed)))
            eq(got, sorted(want_changes), "the changes of the import")
    finally:
        rcv.close()
        pc.close()


# --------------------------------------------------------------------------
# 8. Secret rotation
# --------------------------------------------------------------------------


def test_push_rotation(o):
    rcv = Receiver(keep_raw=True)
    try:
        with push_env(o) as env:
            c = env.c
            s1 = "whsec_" + base64.b64encode(bytes(range(32))).decode()
            wh, given = make_hook(c, rcv, ["policy.matched"], secret=s1)
            eq(given, s1, "the secret given is the one answered")
            rcv.secrets = []  # verify by hand below
            pid, _ = make_policy(c, {"all": [TAG_A]})
            n = [0]

            def one_delivery():
                n[0] += 1
                u = code(n[0], series="C")
                post_ok(c, "/v1/enterprises", {"uscc": u, "name": "企业", "tags": [TAG_A]})
                i = matched_id(pid, u, wh)
                wait_ids(rcv, {i}, 10 * o.slow, "delivery %d" % n[0])
                return [(h, b) for _, h, b in rcv.raw if h.get("webhook-id") == i][-1]

            h, b = one_delivery()
            eq(len(h["webhook-signature"].split(" ")), 1, "signatures before rotation")
            check(verify([s1], h, b), "signature before rotation")

            r = c.post("/v1/webhooks/%d/rotate" % wh)
            eq(r.status, 200, "rotate")
            s2 = r.json["secret"]
            check(s2.startswith("whsec_") and s2 != s1, "rotated secret %r", s2)
            eq(r.json["secrets_active"], 2, "secrets_active after rotation")
            h, b = one_delivery()
            eq(len(h["webhook-signature"].split(" ")), 2, "signatures during the grace period")
            check(verify([s1], h, b), "a receiver knowing only the old secret: no match")
            check(verify([s2], h, b), "a receiver knowing only the new secret: no match")

            r = c.post("/v1/webhooks/%d/rotate?expire_old_in=0" % wh)
            eq(r.status, 200, "rotate expire_old_in=0")
            s3 = r.json["secret"]
            h, b = one_delivery()
            eq(len(h["webhook-signature"].split(" ")), 1, "signatures after expire_old_in=0")
            check(verify([s3], h, b), "new secret after expire_old_in=0")
            check(not verify([s1], h, b) and not verify([s2], h, b),
                  "an old secret still signs after expire_old_in=0")
            eq(get_ok(c, "/v1/webhooks/%d" % wh).json["secrets_active"], 1, "secrets_active")

            r = c.post("/v1/webhooks/%d/rotate?expire_old_in=1" % wh)
            s4 = r.json["secret"]
            h, b = one_delivery()
            check(verify([s3], h, b) and verify([s4], h, b),
                  "both secrets sign within a 1 s grace period")
            time.sleep(1.3)
            h, b = one_delivery()
            check(verify([s4], h, b), "new secret after the grace period")
            check(not verify([s3], h, b), "the old secret still signs after its grace period")
            # A later rotation does not lengthen the grace period of a secret already
            # rotated out: s4 was given 1 s when s5 replaced it.
            r = c.post("/v1/webhooks/%d/rotate?expire_old_in=1" % wh)
            s5 = r.json["secret"]
            r = c.post("/v1/webhooks/%d/rotate" % wh)
            s6 = r.json["secret"]
            h, b = one_delivery()
            check(verify([s4], h, b) and verify([s5], h, b) and verify([s6], h, b),
                  "s4 (1 s left), s5 (a day) and s6 all sign right after the rotations")
            time.sleep(1.3)
            h, b = one_delivery()
            check(verify([s5], h, b) and verify([s6], h, b), "s5 and s6 sign")
            check(not verify([s4], h, b),
                  "a secret rotated out with expire_old_in=1 still signs 1.3 s later because "
                  "a second rotation renewed its grace period (webhook-signature has %d "
                  "signatures)", len(h["webhook-signature"].split(" ")))
            expect_error(c.post("/v1/webhooks/%d/rotate?expire_old_in=abc" % wh), 400,
                         "invalid_parameter", what="rotate with a bad expire_old_in")
            eq(c.post("/v1/webhooks/999/rotate").status, 404, "rotate an unknown webhook")
    finally:
        rcv.close()


# --------------------------------------------------------------------------
# 9. Address policy (SSRF)
# --------------------------------------------------------------------------

BAD_URLS = [
    "http://10.0.0.1/x", "http://192.168.1.10/x", "https://169.254.169.254/latest/meta-data",
    "gopher://example.com/x", "file:///etc/passwd", "ftp://example.com/x",
    "https://user:pw@example.com/", "https://user@example.com/",
    "https://2130706433/", "https://0x7f000001/", "https://017700000001/", "https://127.1/",
    "https://[::1]/", "https://[::ffff:10.0.0.1]/", "https://[fe80::1]/",
    "https://localhost/", "https://hooks.internal/", "https://printer.local/", "https://intranet/",
    "https://100.64.0.1/", "https://0.0.0.0/", "https://[::]/", "", "https://", "https:///x",
]


def test_push_ssrf_rules(o):
    rcv = Receiver()
    try:
        with push_env(o) as env:
            c = env.c
            for url in BAD_URLS:
                expect_error(c.post("/v1/webhooks", {"url": url, "events": ["policy.matched"]}),
                             400, "invalid_url", field="url", what="POST /v1/webhooks %r" % url)
            wh, _ = make_hook(c, rcv, ["policy.matched"])
            r = c.patch("/v1/webhooks/%d" % wh, {"url": "http://10.1.2.3/"})
            expect_error(r, 400, "invalid_url", field="url", what="PATCH to a private address")
            eq(get_ok(c, "/v1/webhooks/%d" % wh).json["url"], rcv.url, "url after refused PATCH")
            expect_error(c.put("/v1/enterprises/" + code(1, series="D"), {
                "name": "x", "contact": {"webhook": "http://10.0.0.1/hook"}}), 400, "invalid_url",
                field="contact.webhook", what="contact.webhook on a private address")
            eq(c.get("/v1/webhooks").json["items"][0]["id"], wh, "the only webhook")
            eq(len(c.get("/v1/webhooks").json["items"]), 1, "webhooks after the refusals")

            # Without the allow-list and without http: loopback and http:// refused.
            problems = env.stop_huiqid()
            check(not problems, "stopping huiqid: %s", problems)
            env.start_huiqid(["--retry-schedule", "100ms", "--webhook-timeout", "1000"])
            c = env.c
            for url in ("https://127.0.0.1/hook", "https://127.0.0.1:8443/", "https://[::1]:443/",
                        "https://10.0.0.1/x"):
                expect_error(c.post("/v1/webhooks", {"url": url, "events": ["policy.matched"]}),
                             400, "invalid_url", field="url", what="%r without --webhook-allow" %
                             url)
            err = expect_error(c.post("/v1/webhooks", {"url": "http://example.com/hook",
                                                      "events": ["policy.matched"]}),
                               400, "invalid_url", field="url",
                               what="http:// without --webhook-allow-http")
            check("https" in err["message"], "message %r does not say https", err["message"])
            r = c.post("/v1/webhooks", {"url": "https://example.com/hook",
                                        "events": ["policy.matched"]})
            eq(r.status, 201, "a public https URL")
            eq(c.delete("/v1/webhooks/%d" % r.json["id"]).status, 204, "DELETE webhook")
            # The webhook registered before is checked again when it is called: the
            # loopback address is no longer allowed, so nothing reaches it.
            post_ok(c, "/v1/enterprises", {"uscc": code(2, series="D"), "name": "企业",
                                           "tags": [TAG_A]})
            pid, jid = make_policy(c, {"all": [TAG_A]})
            j = wait_job(c, jid, 10 * o.slow)
            eq((j["delivered"], j["failed"]), (0, 1), "job counters (blocked address)")
            d = deliveries(c, webhook=wh)
            eq(len(d), 1, "deliveries")
            eq(d[0]["state"], "dead", "a delivery to a refused address")
            check("not allowed" in (d[0]["last_error"] or ""), "last_error %r",
                  d[0]["last_error"])
            eq(rcv.requests, 0, "requests that reached a refused address")
    finally:
        rcv.close()


# --------------------------------------------------------------------------
# Cancelling a job; withdrawing a policy while its job runs
# --------------------------------------------------------------------------


def test_push_job_cancel_and_withdraw(o):
    rcv = Receiver(keep_bodies=False)
    n = 8000
    try:
        with push_env(o) as env:
            c = env.c
            wh, _ = make_hook(c, rcv, ["policy.matched"], inflight=200)
            codes = [code(i, series="K") for i in range(n)]
            import_ents(c, [{"uscc": u, "name": "企业", "tags": [TAG_A, TAG_B]} for u in codes])
            with RedisLoad(env.redis_port, ms=40):
                pid, jid = make_policy(c, {"all": [TAG_A]})
                wait_mid_walk(c, jid, 1000, n - 3000, 30 * o.slow)
                r = c.post("/v1/jobs/%d/cancel" % jid)
                eq(r.status, 200, "POST /v1/jobs/%d/cancel" % jid)
                eq(r.json["state"], "cancelled", "state in the cancel answer")
            j = wait_job(c, jid, 20 * o.slow, "(cancelled) ")
            time.sleep(0.5)
            j2 = wait_job(c, jid, 20 * o.slow, "(cancelled) ")
            eq(j2["state"], "cancelled", "job state after cancel")
            eq((j2["scanned"], j2["matched"], j2["queued"]), (j["scanned"], j["matched"],
                                                              j["queued"]),
               "counters of a cancelled job (still moving?)")
            check(0 < j2["matched"] < n, "a job cancelled mid-way matched %d", j2["matched"])
            eq(j2["queued"], j2["matched"], "queued by the cancelled job")
            first = get_ok(c, "/v1/jobs/%d/matches?limit=1000" % jid).json
            got = list(first["items"])
            cur = first["next"]
            while cur:
                d = get_ok(c, "/v1/jobs/%d/matches?limit=1000&cursor=%s" % (jid, cur)).json
                got += d["items"]
                cur = d["next"]
            eq(len(got), j2["matched"], "matches listed for the cancelled job")
            wait_ids(rcv, {matched_id(pid, u, wh) for u in got}, 20 * o.slow,
                     "the cancelled job's notices")
            eq(quiet(rcv, 0.5), 0, "requests after the cancelled job's notices")
            eq_set(rcv.ids(), {matched_id(pid, u, wh) for u in got}, "ids after cancelling")
            expect_error(c.post("/v1/jobs/%d/cancel" % jid), 409, "invalid_state",
                         what="cancel a cancelled job")
            eq(c.post("/v1/jobs/999/cancel").status, 404, "cancel an unknown job")
            # Pushing again notifies the rest.
            r = c.post("/v1/policies/%d/push" % pid)
            eq(r.status, 202, "push after cancel")
            j3 = wait_job(c, r.json["job"], 30 * o.slow)
            eq((j3["matched"], j3["skipped"]), (n - j2["matched"], j2["matched"]),
               "the push after the cancel")
            wait_ids(rcv, {matched_id(pid, u, wh) for u in codes}, 20 * o.slow,
                     "every notice after the second push")
            eq(rcv.requests, n, "requests in all (nobody twice)")

            # Withdrawn while its job runs: the job stops, and what was not sent yet
            # expires.
            rcv.set(delay=0.05)
            with RedisLoad(env.redis_port, ms=40):
                p2, j4 = make_policy(c, {"all": [TAG_B]})
                wait_mid_walk(c, j4, 1000, n - 3000, 30 * o.slow)
                eq(c.post("/v1/policies/%d/withdraw" % p2).status, 200, "withdraw")
                t_w = time.time()
            j5 = wait_job(c, j4, 30 * o.slow, "(withdrawn) ")
            eq(j5["state"], "cancelled", "state of the job of a withdrawn policy")
            check(j5["scanned"] < n, "the job of a withdrawn policy scanned everyone")
            check(j5["expired"] > 0, "nothing expired after the withdrawal: %s", j5)
            eq(j5["delivered"] + j5["expired"], j5["queued"], "delivered + expired == queued")
            late = [a for a in rcv.snapshot_arrivals()
                    if a[0] > t_w + 0.3 * o.slow and a[1].startswith("msg_%d_" % p2)]
            eq(late[:3], [], "requests for the withdrawn policy after the withdrawal")
            check_repeats(rcv, "cancel")
    finally:
        rcv.close()


# --------------------------------------------------------------------------
# 10-11. Durability: huiqid or Redis killed in the middle of a job
# --------------------------------------------------------------------------

BIG = 20000


def big_setup(env, rcv, n):
    c = env.c
    wh, _ = make_hook(c, rcv, ["policy.matched"], inflight=200)
    import_ents(c, [{"uscc": code(i, series="E"), "name": "企业 %d" % i, "tags": [TAG_A]}
                    for i in range(n)])
    return wh


def big_check(env, rcv, pid, wh, jid, n, timeout, what):
    c = env.c
    want = {matched_id(pid, code(i, series="E"), wh) for i in range(n)}
    j = wait_job(c, jid, timeout, "(%s) " % what, env=env)
    wait_ids(rcv, want, 10, what)
    got = rcv.ids()
    extra = set(got) - want
    check(not extra, "%s: %d unexpected ids, e.g. %s", what, len(extra), sorted(extra)[:3])
    eq(len(got), n, "%s: distinct ids at the receiver" % what)
    # A notice sent just before the crash and not yet recorded goes out again under
    # its id; its body is rendered again (another "timestamp").
    check_repeats(rcv, what, new_timestamp_ok=True)
    expect = {"state": "done", "audience": n, "scanned": n, "matched": n, "skipped": 0,
              "queued": n, "delivered": n, "failed": 0, "expired": 0}
    eq({k: j[k] for k in expect}, expect, "%s: job counters" % what)
    got = get_ok(c, "/v1/jobs/%d/matches?limit=1000&cursor=%d" % (jid, n - 1000)).json
    eq(len(got["items"]), 1000, "%s: the last page of matches" % what)
    eq(get_ok(c, "/v1/jobs/%d/matches?limit=1000&cursor=%d" % (jid, n)).json["items"], [],
       "%s: matches past the end" % what)
    repeats = sum(v - 1 for v in rcv.ids().values())
    # A kill repeats at most the queue entries read and not yet acknowledged, which
    # the engine keeps under 4 x --webhook-inflight (default 256): its read window.
    check(repeats <= 4 * 256, "%s: %d repeats, more than the read window (1,024)", what, repeats)
    return repeats


def wait_mid_walk(c, jid, lo, hi, timeout):
    """Polls the job until it has scanned between lo and hi; returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = job_of(c, jid)
        if last["state"] != "running" or last["scanned"] >= hi:
            break
        if last["scanned"] >= lo:
            return last
        time.sleep(0.005)
    raise TestFailure("could not catch job %d in the middle of its walk (scanned %d..%d); "
                      "last seen %s" % (jid, lo, hi, last))


def test_push_kill9_mid_job(o):
    rcv = Receiver(keep_bodies=False)
    try:
        with push_env(o) as env:
            c = env.c
            wh = big_setup(env, rcv, BIG)
            with RedisLoad(env.redis_port, ms=40):
                pid, jid = make_policy(c, {"all": [TAG_A]})
                mid = wait_mid_walk(c, jid, 3000, 15000, 30 * o.slow)
                kill_huiqid(env)
            state = redis_hash(env, "hq:job:%d" % jid)
            eq(state["state"], "running", "job state in Redis after SIGKILL")
            check(0 < int(state["scanned"]) < BIG, "job not mid-way when killed: %s", state)
            before = rcv.distinct()
            env.start_huiqid()
            repeats = big_check(env, rcv, pid, wh, jid, BIG, 60 * o.slow, "after kill -9")
            if o.verbose:
                print("     kill -9 at scanned %d (Redis: %s), %d delivered before; %d repeats" % (
                    mid["scanned"], state["scanned"], before, repeats))
    finally:
        rcv.close()


def test_push_redis_restart_mid_job(o):
    rcv = Receiver(keep_bodies=False)
    try:
        # "always": nothing Redis acknowledged may vanish with the kill -9 (harness.Env).
        with push_env(o, appendfsync="always") as env:
            c = env.c
            wh = big_setup(env, rcv, BIG)
            with RedisLoad(env.redis_port, ms=100):
                t0 = time.monotonic()
                pid, jid = make_policy(c, {"all": [TAG_A]})
                time.sleep(max(0.0, 1.2 - (time.monotonic() - t0)))
                mid = job_of(c, jid)
                env.kill_redis()
            check(mid["state"] == "running" and mid["scanned"] < BIG,
                  "job not mid-way when Redis was killed: %s", mid)
            time.sleep(0.5)
            env.assert_alive("after Redis was killed")
            # Redis comes back with its AOF, taking a moment to load it (answering
            # -LOADING meanwhile): huiqid waits for it rather than giving up.
            t_load = time.monotonic()
            loading_seen = start_redis_slow_load(env)
            check(loading_seen, "the restarted Redis never answered LOADING (test set-up)")
            time.sleep(0.3)
            env.assert_alive("after Redis came back from a %.1f s load (it answered -LOADING "
                             "meanwhile)" % (time.monotonic() - t_load))
            repeats = big_check(env, rcv, pid, wh, jid, BIG, 60 * o.slow,
                                "after Redis restarted")
            if o.verbose:
                print("     Redis killed at scanned %d; %d repeats" % (mid["scanned"], repeats))
    finally:
        rcv.close()


def test_ids_out_of_range(o):
    """An id too large for any resource is a 404 whose message shows the id as sent,
    not a saturated number or a claim that it is not a number."""
    with Env(o) as env:
        c = env.c
        big = ["4294967295", "4294967296", "9223372036854775807", "18446744073709551615",
               "18446744073709551616", "99999999999999999999"]
        for n in big:
            for method, path in (("GET", "/v1/policies/%s"), ("PUT", "/v1/policies/%s"),
                                 ("DELETE", "/v1/policies/%s"),
                                 ("POST", "/v1/policies/%s/publish"),
                                 ("POST", "/v1/policies/%s/push"),
                                 ("GET", "/v1/policies/%s/audience"),
                                 ("GET", "/v1/jobs/%s"), ("GET", "/v1/jobs/%s/matches"),
                                 ("POST", "/v1/jobs/%s/cancel"),
                                 ("GET", "/v1/webhooks/%s"), ("PATCH", "/v1/webhooks/%s"),
                                 ("POST", "/v1/webhooks/%s/rotate"),
                                 ("POST", "/v1/webhooks/%s/replay")):
                body = {"title": "t"} if method == "PUT" else (
                    {"rate": 1} if method == "PATCH" else None)
                r = c.request(method, path % n, body=body)
                err = expect_error(r, 404, "not_found", None, what="%s %s" % (method, path % n))
                check(n in err["message"], "%s %s: message %r does not show the id",
                      method, path % n, err["message"])
                check("are numbers" not in err["message"],
                      "%s %s: message %r says ids are numbers", method, path % n,
                      err["message"])


def test_webhook_events_set_and_noop_patch(o):
    """events is a set (a repeated event type is stored once), and a PATCH that
    changes nothing answers 200 with the webhook as it is, version unchanged."""
    with push_env(o) as env:
        c = env.c
        url = "http://127.0.0.1:9/hook"
        w = post_ok(c, "/v1/webhooks", {
            "url": url, "events": ["policy.matched", "policy.matched", "package.batch",
                                   "policy.matched"], "rate": 5})
        eq(w["events"], ["policy.matched", "package.batch"], "events de-duplicated on create")
        base = "/v1/webhooks/%d" % w["id"]
        cur = get_ok(c, base).json
        eq(cur["events"], ["policy.matched", "package.batch"], "events stored once each")
        for what, body in (("{}", {}), ("the same rate", {"rate": 5}),
                           ("the same url", {"url": url}),
                           ("the same events, repeated",
                            {"events": ["policy.matched", "package.batch", "package.batch"]}),
                           ("enabled while enabled", {"enabled": True}),
                           ("the document read back", cur)):
            r = c.patch(base, body)
            eq(r.status, 200, "PATCH with %s (%r)" % (what, r))
            eq(r.json, cur, "PATCH with %s: the webhook as it was" % what)
            eq(get_ok(c, base).json, cur, "GET after a PATCH with %s" % what)
        r = c.patch(base, {}, headers={"If-Match": '"%d"' % (cur["version"] + 5)})
        eq(r.status, 412, "a no-op PATCH with a wrong If-Match (%r)" % r)
        r = c.patch(base, {"rate": 6})
        eq((r.status, r.json["version"], r.json["rate"]), (200, cur["version"] + 1, 6),
           "a PATCH that changes the rate")
        r = c.patch(base, {"events": ["package.batch", "package.batch"]})
        eq((r.status, r.json["events"], r.json["version"]),
           (200, ["package.batch"], cur["version"] + 2), "PATCH events, de-duplicated")

"""The webhook delivery checklist (shared/reliability.md section 8, C9-C13) that
tests_push.py does not cover: the retry schedule within its jitter, one hanging
endpoint not delaying the others, host names that resolve to private addresses
(connect-time refusal, DNS rebinding, the allow-list, schemes) under a test-only
resolver shim, the verifier's constant-time comparison, and the bulk push with
huiqid and Redis killed at random points (the long run is in run.py LONG_TESTS)."""

import datetime
import json
import os
import random
import re
import shutil
import socket
import subprocess
import time

from harness import Env, TestFailure, check, eq, free_port, resp_command, wait_until
from receiver import Receiver
from tests_api import post_ok
from tests_faults import report
from tests_push import (TAG_A, TAG_C, RedisLoad, code, deliveries, dlv, import_ents, job_of,
                        kill_huiqid, make_hook, make_policy, matched_id, wait_ids, wait_job)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def body_queued_at(body):
    """The body's "timestamp" (when the notice was queued) as Unix seconds."""
    t = datetime.datetime.strptime(body["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
    return t.replace(tzinfo=datetime.timezone.utc).timestamp()


# --------------------------------------------------------------------------
# C10: one endpoint hanging 30 s does not delay the others
# --------------------------------------------------------------------------


def test_push_endpoint_isolation(o):
    """An endpoint holds every request 30 s (and huiqid waits that long: its
    --webhook-timeout is 30 s) while it has a backlog of 1,500 notices, far more
    than the engine's read window (4 x --webhook-inflight = 1,024). Another
    endpoint's notices, queued behind that backlog, must arrive within 1 s of being
    queued; the hanging one never has more than its 8 requests open."""
    n_hang, n_fast = 1500, 30
    hang = Receiver(keep_bodies=False)
    hang.set(sleep_fault=30.0)
    fast = Receiver()
    args = ["--webhook-allow", "127.0.0.1/32", "--webhook-allow-http", "on",
            "--webhook-timeout", "30000"]
    try:
        with Env(o, huiqid_args=args) as env:
            c = env.c
            wh, _ = make_hook(c, hang, ["policy.matched"], inflight=8)
            wf, _ = make_hook(c, fast, ["policy.granted"])
            many = [code(i, series="F") for i in range(n_hang)]
            few = [code(i, series="G") for i in range(n_fast)]
            import_ents(c, [{"uscc": u, "name": "挂起 %d" % i, "tags": [TAG_A]}
                            for i, u in enumerate(many)] +
                        [{"uscc": u, "name": "快速 %d" % i, "tags": [TAG_C]}
                         for i, u in enumerate(few)])
            # The backlog: 1,500 notices for the hanging endpoint only.
            _, j1 = make_policy(c, {"all": [TAG_A]}, title="积压")
            wait_job(c, j1, 20 * o.slow, settled=False)
            wait_until(lambda: hang.requests >= 8, 10 * o.slow,
                       "the hanging endpoint to hold its 8 requests")
            # Behind it: an auto-mode policy whose grants go to the fast endpoint.
            t_pub = time.time()
            p2, _ = make_policy(c, {"all": [TAG_C]}, mode="auto", title="免申即享")
            want = {"msg_%d_%s_%d_g" % (p2, u, wf) for u in few}

            wait_ids(fast, want, 20 * o.slow, "the fast endpoint's grants while another "
                     "endpoint hangs with a backlog")
            # Then one change at a time: each grant must arrive within the bound.
            lat = []
            for i in range(5):
                u = code(100 + i, series="G")
                t0 = time.time()
                post_ok(c, "/v1/enterprises", {"uscc": u, "name": "后来者", "tags": [TAG_C]})
                gid = "msg_%d_%s_%d_g" % (p2, u, wf)
                wait_until(lambda: gid in fast.ids(), 20 * o.slow, "the grant of %s" % u)
                lat.append([t for t, i2, w in fast.snapshot_arrivals()
                            if i2 == gid and w == "ok"][0] - t0)
            delays = []
            for t, i, w in fast.snapshot_arrivals():
                if i in want and w == "ok":
                    delays.append(t - body_queued_at(fast.bodies[i]))
            bound = 1.0 * o.slow
            check(max(delays) <= bound, "a notice to the fast endpoint arrived %.2f s after it "
                  "was queued (bound %.1f s) while the other endpoint hangs", max(delays), bound)
            check(max(lat) <= bound, "a change-driven notice to the fast endpoint took %.2f s "
                  "(bound %.1f s) while the other endpoint hangs", max(lat), bound)
            eq(hang.requests, 8, "requests that reached the hanging endpoint (inflight 8, each "
               "held 30 s)")
            # Its backlog waits in Redis, deferred without an attempt, and still counts
            # as queued by its job.
            j = job_of(c, j1)
            eq((j["queued"], j["delivered"], j["failed"]), (n_hang, 0, 0), "the backlog's job")
            waiting = deliveries(c, state="retry", webhook=wh, limit=500, max_pages=4)
            check(waiting, "no delivery to the hanging endpoint waits for a retry")
            d = dlv(c, waiting[-1]["id"])
            eq((d["attempts"], [a["outcome"] for a in d["attempt_log"]][-1:]), (0, ["deferred"]),
               "a deferred delivery: attempts and its log")
            first = min(t for t, i, w in fast.snapshot_arrivals() if i in want) - t_pub
            report(o, "fast endpoint: %d grants queued behind a %d-notice backlog, at most "
                   "%.3f s from queue to arrival (the first %.3f s after the publish); 5 "
                   "changes: at most %.3f s" % (len(delays), n_hang, max(delays), first,
                                                max(lat)))
    finally:
        hang.close()
        fast.close()


def test_push_deferred_recalled(o):
    """An endpoint that is slow at first (each answer takes 1.5 s) gets a backlog
    of 1,500 notices, more than the read window holds: most of it is deferred,
    paced at what the first quarter second measured (nothing: its in-flight limit
    of 8 a second, over three minutes for the backlog). Once it answers at once,
    the deferred notices must be called back as it has room, not wait until they
    fall due: all 1,500 delivered within 15 s (x slow) of its recovery, each once."""
    n = 1500
    rcv = Receiver(keep_bodies=False)
    rcv.set(delay=1.5)
    args = ["--webhook-allow", "127.0.0.1/32", "--webhook-allow-http", "on"]
    try:
        with Env(o, huiqid_args=args) as env:
            c = env.c
            wh, _ = make_hook(c, rcv, ["policy.matched"], inflight=8)
            codes = [code(i, series="R") for i in range(n)]
            import_ents(c, [{"uscc": u, "name": "慢热 %d" % i, "tags": [TAG_A]}
                            for i, u in enumerate(codes)])
            pid, jid = make_policy(c, {"all": [TAG_A]}, title="召回")
            wait_until(lambda: len(deliveries(c, state="retry", webhook=wh, limit=500,
                                              max_pages=4)) >= n // 2,
                       20 * o.slow, "half of the backlog to be deferred")
            d = dlv(c, deliveries(c, state="retry", webhook=wh, limit=1)[0]["id"])
            eq((d["attempts"], [a["outcome"] for a in d["attempt_log"]][-1:]), (0, ["deferred"]),
               "a deferred delivery: attempts and its log")
            t0 = time.time()
            rcv.set(delay=0.0)
            want = {matched_id(pid, u, wh) for u in codes}
            wait_ids(rcv, want, 15 * o.slow, "the deferred backlog once the endpoint is fast")
            took = time.time() - t0
            j = wait_job(c, jid, 10 * o.slow)
            eq((j["queued"], j["delivered"], j["failed"]), (n, n, 0), "the job's counters")
            twice = [i for i, k in rcv.ids().items() if k > 1]
            eq(twice, [], "notices accepted more than once")
            report(o, "%d notices, most deferred while the endpoint was slow: all delivered "
                   "%.2f s after it recovered" % (n, took))
    finally:
        rcv.close()


# --------------------------------------------------------------------------
# C10: the retry schedule, within its jitter
# --------------------------------------------------------------------------


def test_push_retry_schedule_jitter(o):
    """With --retry-schedule 1s,2s,2s every notice to a receiver that answers 500
    is tried 4 times: each retry comes no sooner than the step - 10% and no later
    than the step + 10% plus a small scheduling allowance (0.25 s x slow), the
    jitter really spreads them (the gaps of one step differ), and the notice is
    then dead."""
    steps = (1.0, 2.0, 2.0)
    n = 20
    rcv = Receiver(keep_bodies=False)
    args = ["--webhook-allow", "127.0.0.1/32", "--webhook-allow-http", "on",
            "--retry-schedule", "1s,2s,2s", "--webhook-timeout", "2000"]
    try:
        with Env(o, huiqid_args=args) as env:
            c = env.c
            wh, _ = make_hook(c, rcv, ["policy.matched"])
            codes = [code(i, series="L") for i in range(n)]
            import_ents(c, [{"uscc": u, "name": "重试", "tags": [TAG_A]} for u in codes])
            rcv.fail(500)
            pid, jid = make_policy(c, {"all": [TAG_A]})
            j = wait_job(c, jid, (sum(steps) + 10) * o.slow, "(every notice dead) ")
            eq((j["queued"], j["delivered"], j["failed"]), (n, 0, n), "job counters")
            allow = 0.25 * o.slow
            gaps = [[] for _ in steps]
            problems = []
            for u in codes:
                i = matched_id(pid, u, wh)
                arr = rcv.arrivals_of(i)
                eq([w for _, _, w in arr], [500] * (len(steps) + 1), "answers for %s" % i)
                for k, s in enumerate(steps):
                    g = arr[k + 1][0] - arr[k][0]
                    gaps[k].append(g)
                    if not 0.9 * s - 0.005 <= g <= 1.1 * s + allow:
                        problems.append("%s: retry %d came %.3f s after the attempt before "
                                        "(schedule %.1f s +-10%%, allowance %.2f s)" % (
                                            i, k + 1, g, s, allow))
                d = dlv(c, i)
                eq((d["state"], d["attempts"]), ("dead", len(steps) + 1),
                   "%s after the schedule" % i)
            check(not problems, "the retry schedule was not kept: %s", "; ".join(problems[:5]))
            for k, s in enumerate(steps):
                spread = max(gaps[k]) - min(gaps[k])
                check(spread >= 0.05 * s, "retry %d: %d gaps all within %.3f s of each other: "
                      "no jitter", k + 1, len(gaps[k]), spread)
                report(o, "retry %d (%.1f s): gaps %.3f..%.3f s, i.e. %+.1f%%..%+.1f%%" % (
                    k + 1, s, min(gaps[k]), max(gaps[k]), (min(gaps[k]) / s - 1) * 100,
                    (max(gaps[k]) / s - 1) * 100))
    finally:
        rcv.close()


# --------------------------------------------------------------------------
# C11: the verifier compares signatures in constant time
# --------------------------------------------------------------------------

COMPARE_CALL = re.compile(r"\b(memcmp|bcmp|strcmp|strncmp|strcasecmp|strncasecmp)\s*\(")


def c_function(text, name):
    """The body of C function 'name' defined at the start of a line in 'text'."""
    m = re.search(r"^[A-Za-z_][\w \*]*\b%s\([^;{]*\)\s*\{" % re.escape(name), text, re.M)
    check(m is not None, "no definition of %s() in push/sign.c", name)
    depth, i = 0, m.end() - 1
    while True:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[m.end():i]
        i += 1


def call_args(body, start):
    """The argument text of the call whose '(' is at body[start]."""
    depth, i = 0, start
    while True:
        depth += {"(": 1, ")": -1}.get(body[i], 0)
        if depth == 0:
            return body[start + 1:i]
        i += 1


def test_sign_verifier_constant_time(o):
    """Reliability checklist C11 (the code-review half, made a check): in
    push/sign.c, whsig_equal is CRYPTO_memcmp, whsig_verify compares MACs with it,
    and neither the verifier nor the ed25519 check calls memcmp, bcmp or a strcmp
    on anything but a constant (a prefix such as "v1,"): such a comparison stops at
    the first difference. The unit test sign_constant_time_compare checks
    whsig_equal itself under valgrind."""
    del o
    with open(os.path.join(ROOT, "push", "sign.c"), encoding="utf-8") as f:
        text = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
    equal = c_function(text, "whsig_equal")
    check("CRYPTO_memcmp(" in equal, "whsig_equal does not use CRYPTO_memcmp: %s", equal.strip())
    verify = c_function(text, "whsig_verify")
    check("whsig_equal(" in verify or "CRYPTO_memcmp(" in verify,
          "whsig_verify compares signatures with neither whsig_equal nor CRYPTO_memcmp")
    bad = []
    for name in ("whsig_verify", "sig_v1a_check", "whsig_equal"):
        body = c_function(text, name)
        for m in COMPARE_CALL.finditer(body):
            args = call_args(body, m.end() - 1)
            if '"' not in args:
                bad.append("%s: %s(%s)" % (name, m.group(1), args))
    check(not bad, "variable-time comparisons in the verifier: %s", "; ".join(bad))


# --------------------------------------------------------------------------
# C12: host names that resolve to private addresses, rebinding, the allow-list,
# schemes. huiqid runs with tests/netshim.c preloaded: test names resolve to what
# the hosts file says, other names do not resolve, and connect() to anything but
# loopback fails before a packet is sent, so nothing leaves the machine.
# --------------------------------------------------------------------------

DOMAIN = ".c12.example.com"
# A public address the policy admits. netshim refuses the connect (and logs it):
# it is never reached.
PUBLIC = "93.184.216.34"


def netshim_path(o):
    """build*/tests/netshim.so next to the huiqid under test (under --valgrind,
    o.huiqid is the wrapper script and $HUIQID the binary)."""
    binary = os.environ.get("HUIQID", o.huiqid) if o.huiqid.endswith(".sh") else o.huiqid
    return os.path.join(os.path.dirname(os.path.abspath(binary)), "tests", "netshim.so")


class NetShim:
    """The hosts file and log of netshim for one Env."""

    def __init__(self, o, env, hosts):
        self.path = netshim_path(o)
        check(os.path.exists(self.path), "%s is missing: build it with make (target all)",
              self.path)
        self.hosts = os.path.join(env.dir, "netshim.hosts")
        self.log = os.path.join(env.dir, "netshim.log")
        self.write(hosts)
        extra = {"LD_PRELOAD": self.path, "HUIQI_NETSHIM_HOSTS": self.hosts,
                 "HUIQI_NETSHIM_LOG": self.log}
        if o.sanitized:
            extra["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "detect_leaks=1") +
                                     ":verify_asan_link_order=0")
        env.huiqid_env = extra

    def write(self, hosts):
        tmp = self.hosts + ".tmp"
        with open(tmp, "w") as f:
            for name, addrs in hosts.items():
                f.write("%s %s\n" % (name, addrs))
        os.replace(tmp, self.hosts)

    def lines(self):
        try:
            with open(self.log) as f:
                return [ln.split() for ln in f.read().splitlines() if ln.strip()]
        except FileNotFoundError:
            return []

    def check_loaded(self, pid):
        check(["loaded", str(pid), "-"] in self.lines(),
              "netshim is not loaded into huiqid (pid %d): log %s", pid, self.lines()[:5])


def raw_listener(host):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    s.listen(16)
    return s


def raw_connections(s):
    """Connections waiting on a listener nobody accepted on."""
    n = 0
    s.settimeout(0.2)
    while True:
        try:
            conn, _ = s.accept()
        except socket.timeout:
            return n
        conn.close()
        n += 1


def ssrf_schemes(o, env, shim, hooks, pid, raw):
    """Schemes other than http(s): refused at registration, in any case; and at
    connect time, for records whose URL was changed in Redis behind the API's back
    (to 127.0.0.2, which the allow-list admits: only the scheme stands in the way),
    no connection is made and no file written. Returns the forged URLs."""
    c = env.c
    port = raw.getsockname()[1]
    for bad in ("gopher://127.0.0.2:%d/x" % port, "file:///etc/passwd",
                "dict://127.0.0.2:%d/info" % port, "GOPHER://x.example.com/",
                "File:///etc/passwd", "DICT://x.example.com/", "ldap://x.example.com/",
                "telnet://x.example.com/", "smb://x.example.com/s"):
        r = c.post("/v1/webhooks", {"url": bad, "events": ["policy.matched"]})
        eq((r.status, (r.json or {}).get("error", {}).get("code")), (400, "invalid_url"),
           "registering %s" % bad)
    pwned = os.path.join(env.dir, "pwned")
    forged = {hooks["ok"]: "dict://127.0.0.2:%d/info" % port,
              hooks["ok3"]: "gopher://127.0.0.2:%d/_x" % port,
              hooks["out4"]: "file://" + pwned}
    problems = env.stop_huiqid()
    check(not problems, "stopping huiqid: %s", problems)
    for wid, bad in forged.items():
        eq(env.redis("HSET", "hq:wh:%d" % wid, "url", bad), 0, "forging a URL")
        env.redis("SADD", "hq:whev:policy.matched", wid)
    env.start_huiqid()
    shim.check_loaded(env.huiqid_proc.pid)
    c = env.c
    u2 = code(2, series="M")
    post_ok(c, "/v1/enterprises", {"uscc": u2, "name": "地址策略二", "tags": [TAG_A]})
    for wid, bad in forged.items():
        i = matched_id(pid, u2, wid)
        d = wait_until(lambda: (lambda r: r.json if r.status == 200 and r.json["state"]
                                != "queued" else None)(c.get("/v1/deliveries/" + i)),
                       10 * o.slow, "the delivery to %s" % bad)
        check(d["state"] in ("retry", "dead") and d["last_status"] is None,
              "the delivery to %s: %s, last_error %r", bad, d["state"], d["last_error"])
    eq(raw_connections(raw), 0, "connections made for dict:// and gopher:// URLs")
    check(not os.path.exists(pwned), "a file:// URL wrote %s", pwned)
    return forged


def test_push_ssrf_names(o):
    """With --webhook-allow 127.0.0.2/31 (127.0.0.2 and .3 only): webhooks whose
    host names resolve to loopback outside it, private, link-local, CGNAT, IPv6
    loopback/ULA, mapped and NAT64 addresses are refused when huiqid connects (dead,
    "not allowed", no request, no connect attempted); a name answering a public and
    then a loopback address is refused at the second; a name that answers public
    first and loopback on a later lookup (DNS rebinding) is refused when it
    rebinds; names inside the allow-list are delivered to, literal addresses are
    admitted exactly by the CIDR; a 3xx to a name of a private address is never
    followed (the name is never even resolved); and records whose URL was changed
    behind the API's back to dict://, gopher:// or file:// make no connection and
    write no file."""
    r1 = Receiver(keep_bodies=False)                    # 127.0.0.1: outside the allow-list
    r2 = Receiver(keep_bodies=False, host="127.0.0.2")  # inside
    r3 = Receiver(keep_bodies=False, host="127.0.0.3")  # inside: answers 302 once
    r4 = Receiver(keep_bodies=False, host="127.0.0.4")  # just outside
    raw = raw_listener("127.0.0.2")
    rcvs = (r1, r2, r3, r4)
    blocked = {  # name -> what it resolves to; every one must be refused
        "loop": "127.0.0.1", "out4": "127.0.0.4", "ten": "10.0.0.1",
        "meta": "169.254.169.254", "cgnat": "100.64.0.1", "zero": "0.0.0.0",
        "v6loop": "::1", "ula": "fd00::1", "mapped": "::ffff:10.0.0.1",
        "nat64": "64:ff9b::a00:1", "mixed": PUBLIC + ",127.0.0.1",
    }
    hosts = {k + DOMAIN: v for k, v in blocked.items()}
    hosts.update({"ok" + DOMAIN: "127.0.0.2", "ok3" + DOMAIN: "127.0.0.3",
                  "rebind" + DOMAIN: PUBLIC, "redir" + DOMAIN: "10.0.0.1"})
    args = ["--webhook-allow", "127.0.0.2/31", "--webhook-allow-http", "on",
            "--retry-schedule", "2s,2s,2s,2s", "--webhook-timeout", "2000"]
    try:
        with Env(o, huiqid_args=args, start_huiqid=False) as env:
            shim = NetShim(o, env, hosts)
            env.start_huiqid()
            shim.check_loaded(env.huiqid_proc.pid)
            c = env.c

            def url(name, rcv):
                return "http://%s%s:%d/hook" % (name, DOMAIN, rcv.port)

            # At registration, a name is resolved and refused when any answer is
            # not allowed.
            for name in sorted(blocked):
                r = c.post("/v1/webhooks", {"url": url(name, r1), "events": ["policy.matched"]})
                check(r.status == 400 and "resolves to a private" in r.raw.decode(),
                      "registering %s%s (%s): %r", name, DOMAIN, blocked[name], r)
            # A name that does not resolve yet, or resolves to a public address, is
            # accepted: the check that counts is the one at connect time.
            shim.write({k: v for k, v in hosts.items() if not k[:-len(DOMAIN)] in blocked})
            hooks = {}
            for name in sorted(blocked):
                hooks[name] = make_hook(c, r4 if name == "out4" else r1, ["policy.matched"],
                                        url=url(name, r4 if name == "out4" else r1))[0]
            hooks["ok"] = make_hook(c, r2, ["policy.matched"], url=url("ok", r2))[0]
            hooks["ok3"] = make_hook(c, r3, ["policy.matched"], url=url("ok3", r3))[0]
            hooks["rebind"] = make_hook(c, r1, ["policy.matched"], url=url("rebind", r1))[0]
            shim.write(hosts)
            r3.plan = [302]
            r3.set(url_redirect="http://redir%s/x" % DOMAIN)
            u = code(1, series="M")
            post_ok(c, "/v1/enterprises", {"uscc": u, "name": "地址策略", "tags": [TAG_A]})
            pid, _ = make_policy(c, {"all": [TAG_A]})

            def state(name):
                r = c.get("/v1/deliveries/" + matched_id(pid, u, hooks[name]))
                return r.json if r.status == 200 else {"state": "queued", "status": r.status}

            def settled(name):
                return wait_until(lambda: (lambda d: d if d["state"] not in ("queued", "retry")
                                           else None)(state(name)), 10 * o.slow,
                                  "the delivery to %s%s to settle" % (name, DOMAIN))

            def refused(name, first=True):
                """Dead at its first attempt (at a later one for the rebinding name)."""
                d = settled(name)
                check(d["state"] == "dead" and "not allowed" in (d["last_error"] or "") and
                      (d["attempts"] == 1) == first,
                      "%s%s (%s): %s after %d attempts, last_error %r",
                      name, DOMAIN, hosts.get(name + DOMAIN), d["state"], d["attempts"],
                      d["last_error"])

            for name in sorted(blocked):
                refused(name)
            for name in ("ok", "ok3"):
                eq(settled(name)["state"], "delivered", "the delivery to %s%s" % (name, DOMAIN))
            eq([w for _, _, w in r3.snapshot_arrivals()], [302, "ok"],
               "answers of the receiver whose first answer was a 302")
            # Rebinding: the name answered a public address (netshim refused the
            # connect, the delivery waits for a retry) and now answers loopback. curl
            # keeps an answer 60 s, so huiqid is restarted to make it look again.
            d = wait_until(lambda: (lambda d: d if d["state"] == "retry" else None)(
                state("rebind")), 10 * o.slow, "the first attempt to the rebinding name")
            check("connect" in (d["last_error"] or ""), "the first attempt to the rebinding "
                  "name (a public address) did not fail to connect: %r", d["last_error"])
            problems = env.stop_huiqid()
            check(not problems, "stopping huiqid: %s", problems)
            shim.write(dict(hosts, **{"rebind" + DOMAIN: "127.0.0.1"}))
            env.start_huiqid()
            shim.check_loaded(env.huiqid_proc.pid)
            c = env.c
            refused("rebind", first=False)
            answers = [ln[2] for ln in shim.lines() if ln[:2] == ["resolve", "rebind" + DOMAIN]]
            check(PUBLIC in answers and answers[-1] == "127.0.0.1", "the rebinding name's "
                  "answers as huiqid looked it up: %s", answers)
            eq(r1.requests + r4.requests, 0, "requests that reached a refused address")
            # netshim refused connects only to the public address: every private one
            # was refused by huiqid before a socket existed.
            connects = sorted({ln[1] for ln in shim.lines() if ln[0] == "refuse-connect"})
            eq(connects, [PUBLIC], "addresses huiqid tried to connect to beyond loopback")
            # The 3xx was not followed: its target name was never looked up.
            eq([ln for ln in shim.lines() if ln[:2] == ["resolve", "redir" + DOMAIN]], [],
               "lookups of the name a 302 pointed to")

            # Literal addresses: the allow-list admits exactly its CIDR.
            for ip, ok in (("127.0.0.2", True), ("127.0.0.3", True), ("127.0.0.1", False),
                           ("127.0.0.4", False)):
                r = c.post("/v1/webhooks", {"url": "http://%s:%d/" % (ip, r2.port),
                                            "events": ["policy.matched"]})
                eq(r.status, 201 if ok else 400, "registering http://%s (allow-list "
                   "127.0.0.2/31)" % ip)
                if ok:
                    eq(c.delete("/v1/webhooks/%d" % r.json["id"]).status, 204, "DELETE webhook")
            forged = ssrf_schemes(o, env, shim, hooks, pid, raw)
            report(o, "refused at registration: %d names; at connect time: %d names + the "
                   "rebinding one; forged schemes: %s" % (len(blocked), len(blocked),
                                                          sorted(forged.values())))
    finally:
        for r in rcvs:
            r.close()
        raw.close()


# --------------------------------------------------------------------------
# C9 and C13: a bulk push with huiqid and Redis killed at random points
# --------------------------------------------------------------------------

# At a kill, from Redis alone (ARGV: job id, id prefix): the job's notices found in
# the queue (hq:q) or with a recorded outcome (hq:dlvs), the job's 'queued'
# counter, the ids recorded as delivered and the ids of the queue entries read and
# not acknowledged (pending). Every notice the job queued must be in the queue or
# recorded: one acknowledged without a recorded outcome would be in neither.
LEDGER_LUA = """
local prefix = ARGV[2]
local seen, n, by_sid = {}, 0, {}
local function add(id)
  if string.sub(id, 1, #prefix) == prefix and not seen[id] then
    seen[id] = true
    n = n + 1
  end
end
for _, e in ipairs(redis.call('XRANGE', 'hq:q', '-', '+')) do
  local f = e[2]
  for i = 1, #f, 2 do
    if f[i] == 'id' then
      add(f[i + 1])
      by_sid[e[1]] = f[i + 1]
    end
  end
end
for _, id in ipairs(redis.call('ZRANGE', 'hq:dlvs', 0, -1)) do add(id) end
local delivered = {}
for id in pairs(seen) do
  if redis.call('HGET', 'hq:dlv:' .. id, 'state') == 'delivered' then
    delivered[#delivered + 1] = id
  end
end
local pending = {}
for _, p in ipairs(redis.call('XPENDING', 'hq:q', 'push', '-', '+', 1000000)) do
  pending[#pending + 1] = by_sid[p[1]] or ('?' .. p[1])
end
return {n, tonumber(redis.call('HGET', 'hq:job:' .. ARGV[1], 'queued') or '0'), delivered,
        pending}
"""


def ledger(port, jid, pid, rcv_ids, what):
    """Checks the ledger at a kill (see LEDGER_LUA) against what the receiver had
    accepted by then; returns the ids of the pending queue entries."""
    found, queued, delivered, pending = resp_command(port, "EVAL", LEDGER_LUA, 0, jid,
                                                     "msg_%d_" % pid, timeout=60)
    eq(found, queued, "%s: notices queued by the job (its counter) vs notices in the queue "
       "or with a recorded outcome" % what)
    early = [i.decode() for i in delivered if i.decode() not in rcv_ids]
    check(not early, "%s: %d deliveries recorded as delivered that the receiver never "
          "accepted, e.g. %s", what, len(early), early[:3])
    return [i.decode() for i in pending]


def snapshot_ledger(env, jid, pid, rcv_ids, what):
    """ledger() on a copy of the killed Redis's AOF, loaded by a scratch
    redis-server: the state Redis had made durable when it died."""
    scratch = os.path.join(env.dir, "scratch")
    shutil.copytree(os.path.join(env.dir, "appendonlydir"),
                    os.path.join(scratch, "appendonlydir"))
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", scratch, "--save", "", "--appendonly", "yes",
                             "--daemonize", "no"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: resp_command(port, "PING", timeout=0.5) == "PONG", 60,
                   "the scratch redis-server to load the killed one's AOF")
        return ledger(port, jid, pid, rcv_ids, what)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        shutil.rmtree(scratch, ignore_errors=True)


def watch_resume(env, rcv, jid, t_back, before_ids, timeout):
    """After Redis is back (at t_back): when the job's delivered counter first
    moves, and when the first notice never accepted before arrives. Returns both
    delays in seconds."""
    base = None
    t_rec = t_new = None
    deadline = time.time() + timeout
    while time.time() < deadline and (t_rec is None or t_new is None):
        try:
            v = int(env.redis("HGET", "hq:job:%d" % jid, "delivered") or 0)
        except (OSError, ConnectionError, ValueError):
            v = None
        if v is not None:
            if base is None:
                base = v
            elif v > base and t_rec is None:
                t_rec = time.time()
        if t_new is None:
            for t, i, w in rcv.snapshot_arrivals()[-2000:]:
                if t >= t_back and w == "ok" and i not in before_ids:
                    t_new = t
                    break
        time.sleep(0.01)
    check(t_rec is not None and t_new is not None, "deliveries did not resume within %.0f s "
          "of Redis returning (delivered counter moved: %s; a new notice arrived: %s)",
          timeout, t_rec is not None, t_new is not None)
    return t_rec - t_back, t_new - t_back


def import_retrying(c, docs, chunk=5000, tries=5):
    """The NDJSON import in chunks, sending again the lines the store did not take
    (as the API asks: under valgrind a big import can outlast a Redis deadline)."""
    for k in range(0, len(docs), chunk):
        todo = docs[k:k + chunk]
        for _ in range(tries):
            body = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in todo)
            r = c.post("/v1/enterprises:import", body.encode("utf-8"),
                       content_type="application/x-ndjson")
            check(r.status == 200, "import of %d enterprises: %r", len(todo), r)
            errs = r.json.get("errors") or []
            again = {e["line"] for e in errs if e["code"] in ("unavailable", "outcome_unknown")}
            check(len(again) == len(errs), "import: lines refused: %s",
                  [e for e in errs if e["line"] not in again][:3])
            if not r.json.get("errors_truncated"):  # (else all again: it is idempotent)
                todo = [d for i, d in enumerate(todo) if i + 1 in again]
            if not todo:
                break
        check(not todo, "import: %d lines still not taken after %d tries", len(todo), tries)


def storm_kill_huiqid(env, rcv, jid, pid, label):
    """kill -9 of huiqid, the ledger, a restart. Returns (figures, ids accepted
    at the kill, ids pending at the kill)."""
    kill_huiqid(env)
    seen = rcv.ids()
    pending = ledger(env.redis_port, jid, pid, seen, label)
    t0 = time.time()
    env.start_huiqid()
    return {"restart_s": time.time() - t0}, seen, pending


def storm_kill_redis(o, env, rcv, jid, pid, label, t_kill, down):
    """kill -9 of Redis, the ledger on its AOF, 'down' seconds away (long enough
    for the reconnect backoff to reach its cap), a restart; deliveries must pause
    meanwhile and resume within 5 s (x slow). Returns as storm_kill_huiqid."""
    env.kill_redis()
    seen = rcv.ids()
    pending = snapshot_ledger(env, jid, pid, seen, label)
    env.assert_alive("after Redis was killed")
    time.sleep(max(0.0, t_kill + down - time.time()))
    env.start_redis()
    t_back = time.time()
    # Nothing new went out while Redis was away (the requests in flight at the kill
    # end within a second).
    during = [a for a in rcv.snapshot_arrivals() if t_kill + 1.0 * o.slow < a[0] < t_back]
    check(not during, "%s: %d requests reached the receiver while Redis was down, e.g. %s",
          label, len(during), during[:2])
    rec_s, new_s = watch_resume(env, rcv, jid, t_back, set(rcv.ids()), 30 * o.slow)
    env.assert_alive("after Redis came back")
    check(max(rec_s, new_s) <= 5.0 * o.slow, "%s: deliveries resumed %.2f s (first outcome "
          "recorded) / %.2f s (first new notice) after Redis returned (bound %.1f s)",
          label, rec_s, new_s, 5.0 * o.slow)
    return ({"down_s": t_back - t_kill, "resume_recorded_s": rec_s, "resume_new_s": new_s},
            seen, pending)


def check_repeats_per_kill(rcv, figures):
    """Repeats, each charged to the last kill before it, come only from the entries
    pending (read, not acknowledged) at that kill, at most once each; and every
    pending entry the receiver had accepted came again. Sets figures' "repeats"."""
    first = set()
    repeated = [[] for _ in figures]
    for t, i, w in rcv.snapshot_arrivals():
        if w != "ok":
            continue
        if i in first:
            k = sum(1 for f in figures if f["t"] <= t) - 1
            check(k >= 0, "%s came twice before any kill", i)
            repeated[k].append(i)
        first.add(i)
    for f, ids in zip(figures, repeated):
        f["repeats"] = len(ids)
        twice = sorted({i for i in ids if ids.count(i) > 1})
        check(not twice, "%s: ids repeated more than once: %s", f["label"], twice[:3])
        stray = sorted(set(ids) - f["pending_ids"])
        check(not stray, "%s: %d repeats of notices that were not pending at the kill, e.g. %s",
              f["label"], len(stray), stray[:3])
        missed = sorted((f["pending_ids"] & f["seen"]) - set(ids))
        check(not missed, "%s: %d notices pending at the kill and already accepted were not "
              "sent again, e.g. %s", f["label"], len(missed), missed[:3])


def bulk_push_storm(o, n, huiqid_kills, seed=None):
    """C9/C13: a job of n policy.matched notices to one receiver; huiqid gets
    kill -9 'huiqid_kills' times and Redis (appendfsync always) once, each at a
    random point (with several huiqid kills, the first inside the job's walk;
    HUIQI_TEST_SEED replays a run). At every kill the ledger holds (LEDGER_LUA),
    and the repeats that follow are notices pending at that kill (read from the
    queue, not acknowledged), each at most once, every pending one the receiver had
    already accepted among them; pending entries never exceed 4 x
    --webhook-inflight (the engine's read window: its claim batch), which bounds
    the repeats per kill. While Redis is down nothing new goes out; after it
    returns, deliveries resume within 5 s (x slow). All n ids arrive within 60 s
    (x slow) of the last restart, every request verifies, no repeat changes its
    body beyond the re-rendered "timestamp"."""
    seed = int(os.environ.get("HUIQI_TEST_SEED", seed if seed is not None else time.time()))
    rng = random.Random(seed)
    inflight = 100
    window = 4 * inflight
    rcv = Receiver(keep_bodies=False)
    args = ["--webhook-allow", "127.0.0.1/32", "--webhook-allow-http", "on",
            "--webhook-inflight", str(inflight), "--webhook-timeout", "15000",
            "--retry-schedule", "1s,2s,5s,10s"]
    kills = ["huiqid"] * huiqid_kills
    kills.insert(rng.randrange(1, len(kills) + 1), "redis")
    figures = []
    load = None
    try:
        with Env(o, huiqid_args=args, appendfsync="always") as env:
            c = env.c
            wh, _ = make_hook(c, rcv, ["policy.matched"], inflight=200)
            codes = [code(i, series="N") for i in range(n)]
            t0 = time.time()
            import_retrying(c, [{"uscc": u, "name": "批量 %d" % i, "tags": [TAG_A]}
                                for i, u in enumerate(codes)])
            t_import = time.time() - t0
            want = {matched_id(1, u, wh) for u in codes}
            # Kill points: the first inside the walk, the others at random numbers of
            # notices accepted, spaced so that each restart's recovery (at most one
            # window) is over before the next kill.
            span = n * 0.85 / len(kills)
            points = [int(n * 0.05 + span * k + rng.uniform(0, span - window - 500))
                      for k in range(len(kills))]
            # Redis kept a little busy (3 ms scripts back to back), so outcomes take a
            # moment to be recorded and a kill finds some sent but not recorded.
            load = RedisLoad(env.redis_port, ms=3)
            load.thread.start()
            pid, jid = make_policy(c, {"all": [TAG_A]}, title="批量推送")
            eq(pid, 1, "policy id (the ids above assume it)")
            last_restart = None
            for k, (what, point) in enumerate(zip(kills, points)):
                if k == 0 and huiqid_kills > 1:
                    at = int(n * 0.3 * rng.random()) + 1
                    wait_until(lambda: int(env.redis("HGET", "hq:job:%d" % jid, "scanned")
                                           or 0) >= at, 30 * o.slow,
                               "the job's walk to scan %d" % at, interval=0.002)
                else:
                    # Past the point, and past the previous restart's recovery (it
                    # resends at most one window before reading anything new).
                    if figures:
                        point = max(point, figures[-1]["accepted_after"] + window + 100)
                    wait_until(lambda: rcv.distinct() >= point, 60 * o.slow,
                               "%d notices accepted before kill %d" % (point, k + 1))
                scanned = int(env.redis("HGET", "hq:job:%d" % jid, "scanned") or 0)
                before = rcv.ids()
                label = "kill %d (%s, %d accepted, %d scanned)" % (k + 1, what, len(before),
                                                                  scanned)
                t_kill = time.time()
                if what == "huiqid":
                    fig, seen, pending = storm_kill_huiqid(env, rcv, jid, pid, label)
                else:
                    fig, seen, pending = storm_kill_redis(o, env, rcv, jid, pid, label, t_kill,
                                                          rng.uniform(2.0, 4.0))
                fig.update(what=what, accepted=len(before), scanned=scanned)
                check(len(pending) <= window, "%s: %d queue entries read and not "
                      "acknowledged, more than the read window %d", label, len(pending), window)
                fig.update(t=t_kill, label=label, pending=len(pending),
                           pending_ids=set(pending), seen=set(seen),
                           accepted_after=rcv.distinct())
                figures.append(fig)
                last_restart = time.time()
            load.stop()
            c = env.c
            deadline = 60 * o.slow
            try:
                wait_until(lambda: want <= set(rcv.ids()), deadline, "every notice")
            except TestFailure:
                got = set(rcv.ids())
                raise TestFailure("%d of %d notices lost: not received within %.0f s of the "
                                  "last restart (e.g. %s)" % (len(want - got), n, deadline,
                                                             sorted(want - got)[:3]))
            t_all = time.time() - last_restart
            j = wait_job(c, jid, 30 * o.slow, env=env)
            expect = {"state": "done", "scanned": n, "matched": n, "queued": n,
                      "delivered": n, "failed": 0, "expired": 0}
            eq({k: j[k] for k in expect}, expect, "job counters after the kills")
            extra = set(rcv.ids()) - want
            check(not extra, "unexpected ids: %s", sorted(extra)[:3])
            check(rcv.bad_signatures == 0, "%d requests with a bad signature",
                  rcv.bad_signatures)
            check(not rcv.body_changed, "ids repeated with another body: %s",
                  sorted(set(rcv.body_changed))[:3])
            check_repeats_per_kill(rcv, figures)
            report(o, "seed %d, %d notices, import %.1f s; every notice %.1f s after the last "
                   "restart; bound per kill: pending <= %d" % (seed, n, t_import, t_all, window))
            for f in figures:
                report(o, "  %(what)s at %(accepted)d accepted / %(scanned)d scanned: "
                       "%(pending)d pending, %(repeats)d repeats" % f +
                       ("; down %.1f s, resumed %.2f s (recorded) / %.2f s (new notice) "
                        "after it returned" % (f["down_s"], f["resume_recorded_s"],
                                               f["resume_new_s"])
                        if f["what"] == "redis" else "; restart %.2f s" % f["restart_s"]))
            return figures
    finally:
        if load is not None:
            load.stop()
        rcv.close()


def test_push_kill_storm_quick(o):
    """Reliability C9/C13, quick: 10,000 notices, huiqid and Redis killed once each."""
    bulk_push_storm(o, 10000, 1)


def test_push_kill_storm_100k(o):
    """Reliability C9/C13 at full size: 100,000 notices, 5 kills of huiqid, 1 of Redis."""
    bulk_push_storm(o, 100000, 5)

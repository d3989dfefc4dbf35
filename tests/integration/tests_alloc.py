"""Allocation-failure injection (shared/reliability.md B8, curl's "torture" idea).

huiqid runs with build/tests/failmalloc.so preloaded (tests/failmalloc.c). The
shim is armed in band by the request under test (header "X-Failmalloc: arm K"):
from the moment huiqid reads that request, it counts the allocations made on the
loop thread and makes the K-th malloc/calloc/realloc return NULL, once. A later
request with "X-Failmalloc: disarm" closes the window and makes the shim report
how many allocations it counted. A first run with K = 0 only counts (N); then K
goes over 1..N (every K, or a sample; see samples()) and one past N.

The out-of-memory policy is to abort: every allocation goes through the x*alloc
wrappers (jansson, libuv, OpenSSL and libcurl too, see api/main.c), which print
"huiqi: out of memory" and abort. hiredis 0.14 has no allocator hook: its hi_*
allocators (and one assert in its reply reader) abort without that message, the
rest of it reports out of memory as an error, which huiqid answers with a 503.
Redis holds the state and a 2xx is only sent once Redis applied the write, so an
abort loses nothing that was acknowledged. So for each K the process must either
  - answer the write with its success status, or a 5xx with the uniform error body
    (a failure that a library reported as an error rather than a NULL), or
  - die of SIGABRT right after the injected failure, with the x*alloc message
    (or from inside hiredis's allocators),
and never die of another signal, answer 4xx, drop the connection while alive, or
hang (every wait is bounded). After every abort huiqid is started again and every
write that got a 2xx must be there, unchanged, and nothing half-written may be
visible: documents, lists and indexes agree, and a published policy's push job
delivers to every matched enterprise. (A publish and its push job are one Redis
script, so every published policy has exactly one publish job, whether its answer
came or not, and no recovery is applied: an acknowledged publish carries its job's
id, and after the restarts every published policy has reached every matched
enterprise.) A SIGTERM at the end must exit 0 (with --sanitized: no ASan/LSan
report, so the failures huiqid survived leaked nothing).

Under ASan the shim sits in front of ASan's allocator (it resolves the next
malloc with dlsym(RTLD_NEXT)); ASan only needs verify_asan_link_order=0 because
its runtime is then not first in the library list."""

import http.client
import os
import re
import signal
import socket
import subprocess
import time

from harness import SANITIZER_MARKERS, TEST_ADMIN_KEY, Client, Env, TestFailure, check, eq, \
    wait_until
from receiver import Receiver
from tests_push import PUSH_ARGS, code, import_ents, make_hook, matched_id, policy_jobs

FAIL_RE = re.compile(r"failmalloc: fail #(\d+) (\w+)\((\d+)\) from (\S+)")
DISARM_RE = re.compile(r"failmalloc: disarmed after (\d+) allocations "
                       r"\(k=(\d+), (failed|not reached)\)")
OOM_MESSAGE = "huiqi: out of memory allocating"
# hiredis 0.14 has no allocator hook; these abort() (HIREDIS_OOM_HANDLER) on NULL.
HIREDIS_OOM_ABORTS = ("hi_malloc", "hi_calloc", "hi_realloc", "hi_strdup")
# ... and so does this assert, when shrinking the reply buffer fails (read.c).
HIREDIS_OOM_ASSERT = "redisReaderFeed: Assertion `r->buf != NULL' failed"
NOT_APPLIED_CODES = ("unavailable", "overloaded", "loading")

TAG_A = "zone.wnd"


def samples(n):
    """The K values for a window of n allocations: every K when
    HUIQI_FAILMALLOC_SAMPLES=0, else about that many (default 60): the first 10
    (request parsing, where most distinct call sites are), the rest spread evenly
    up to n, plus n + 1 (past the window: nothing may fail)."""
    want = int(os.environ.get("HUIQI_FAILMALLOC_SAMPLES", "60"))
    if want <= 0 or want >= n:
        ks = set(range(1, n + 1))
    else:
        ks = set(range(1, min(n, 10) + 1))
        rest = max(1, want - len(ks))
        step = max(1.0, (n - 10) / float(rest))
        x = 10 + step
        while x <= n:
            ks.add(int(round(x)))
            x += step
    ks.add(n + 1)
    return sorted(ks)


def shim_path(o):
    return os.path.join(os.path.dirname(o.huiqid), "tests", "failmalloc.so")


def tail(text, n=15):
    """The last n lines of a stderr excerpt, without the access log."""
    lines = [ln for ln in text.rstrip().splitlines() if '"msg":"request"' not in ln]
    return "\n".join(lines[-n:])


# --------------------------------------------------------------------------
# The injector: one Env with the shim preloaded
# --------------------------------------------------------------------------


class Torture:
    """Runs writes with the k-th allocation failing, classifies what happened and
    restarts huiqid after an abort (and stops it after a failure it survived, to
    check that it still shuts down cleanly and leaked nothing). 'outcomes' counts: "ok" (the success status,
    k not reached or the failure absorbed), "5xx", "abort" (the x*alloc abort) and
    "abort-hiredis" (hiredis's own); 'fail_sites' counts the failed allocations by
    the library that asked for them (huiqid: through the x*alloc wrappers)."""

    def __init__(self, o, args=(), on_restart=None):
        shim = shim_path(o)
        check(os.path.exists(shim), "%s is missing: build it with make (target all)", shim)
        self.o = o
        self.timeout = 10 * o.slow
        self.on_restart = on_restart
        self.env = Env(o, huiqid_args=list(args), start_huiqid=False)
        extra = {"LD_PRELOAD": shim}
        if o.sanitized:
            extra["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "detect_leaks=1") +
                                     ":verify_asan_link_order=0")
        self.env.huiqid_env = extra
        self.env.start_huiqid()
        self.outcomes = {"ok": 0, "5xx": 0, "abort": 0, "abort-hiredis": 0}
        self.fail_sites = {}
        self.codes_5xx = {}
        self.restarts = 0
        self.window = None  # allocations counted by the last k = 0 run
        self.last_site = "none"  # the allocation failed in the last window

    def client(self, keepalive=False):
        return Client("127.0.0.1", self.env.huiqid_port, timeout=self.timeout,
                      keepalive=keepalive, key=TEST_ADMIN_KEY)

    def err_text(self, offset):
        with open(self.env.huiqid_err_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def ensure_running(self):
        if self.env.huiqid_proc is None:
            self.env.start_huiqid()
            self.restarts += 1
            if self.on_restart:
                self.on_restart()

    def run(self, k, what, send, success, settle=None):
        """One window: send(client, headers) -> Resp makes the write with the shim
        armed at k; settle(alive) may wait for follow-up work (a push job) inside
        the window. Returns (outcome, resp) with outcome "ok" (answered 'success'),
        "5xx" or "abort"; raises TestFailure on anything else."""
        self.ensure_running()
        env = self.env
        # Start from a steady state: an earlier failure may have cost the Redis
        # connection, which then comes back by itself.
        env.wait_ready()
        proc = env.huiqid_proc
        offset = os.path.getsize(env.huiqid_err_path)
        where = "%s, k=%d" % (what, k)
        resp = None
        dropped = None
        try:
            resp = send(self.client(), {"X-Failmalloc": "arm %d" % k})
        except socket.timeout:
            self.hang(proc, offset, where, "no answer within %.0fs" % self.timeout)
        except (OSError, http.client.HTTPException) as e:
            dropped = "%s: %s" % (type(e).__name__, e)
        if resp is not None and resp.status != success and not 500 <= resp.status <= 599:
            text = self.err_text(offset)
            raise TestFailure("%s: answered %r: neither %d nor a 5xx (injected failure: %s)"
                              % (where, resp, success, self.site(text)))
        if settle is not None and resp is not None:
            try:
                settle(lambda: proc.poll() is None)
            except TestFailure as e:
                text = self.err_text(offset)
                raise TestFailure("%s: %s (injected failure: %s)\n%s" % (
                    where, e, self.site(text), tail(text, 40)))
        report = self.disarm(proc, offset, where)
        if report is None:
            return self.died(proc, offset, where), resp
        text = self.err_text(offset)
        self.no_sanitizer_report(text, where)
        failed = report.group(3) == "failed"
        self.last_site = self.site(text) if failed else "none"
        if failed:
            self.count_site(text, where)
        if k == 0:
            self.window = int(report.group(1))
        if dropped is not None:
            raise TestFailure("%s: the connection was dropped without an answer (%s) but "
                              "huiqid lives on (injected failure: %s)\n%s" % (
                                  where, dropped, self.site(text), tail(text)))
        outcome = "ok"
        if 500 <= resp.status <= 599:
            body = resp.json
            check(isinstance(body, dict) and isinstance(body.get("error"), dict) and
                  set(body["error"]) == {"code", "message", "field"},
                  "%s: %d without the uniform error body: %r", where, resp.status, resp)
            outcome = "5xx"
            code = "%d %s" % (resp.status, body["error"]["code"])
            self.codes_5xx[code] = self.codes_5xx.get(code, 0) + 1
        self.outcomes[outcome] += 1
        if failed:
            # huiqid lived through the failure: it must still stop cleanly (exit 0,
            # every handle closed) and, under ASan, with nothing leaked. Checked now,
            # before a later k aborts the process and takes its leaks with it.
            problems = env.stop_huiqid()
            if problems:
                env.problems_reported = True
                raise TestFailure("%s: after the injected failure %s, which huiqid survived: "
                                  "%s" % (where, self.last_site, "; ".join(problems)))
        return outcome, resp

    def disarm(self, proc, offset, where):
        """Closes the window; returns the shim's report (a DISARM_RE match), or None
        when huiqid is gone (or going)."""
        if proc.poll() is not None:
            return None
        try:
            r = self.client().get("/healthz", headers={"X-Failmalloc": "disarm"})
        except socket.timeout:
            self.hang(proc, offset, where, "/healthz (disarm) got no answer within %.0fs" %
                      self.timeout)
        except (OSError, http.client.HTTPException):
            return None
        eq(r.status, 200, "%s: /healthz (disarm)" % where)
        m = None
        for m in DISARM_RE.finditer(self.err_text(offset)):
            pass
        check(m is not None, "%s: the shim did not report (is failmalloc.so preloaded?)\n%s",
              where, tail(self.err_text(offset)))
        return m

    def site(self, text):
        m = None
        for m in FAIL_RE.finditer(text):
            pass
        return "%s(%s) from %s" % (m.group(2), m.group(3), m.group(4)) if m else "none"

    def count_site(self, text, where):
        m = None
        for m in FAIL_RE.finditer(text):
            pass
        check(m is not None, "%s: the shim says it failed an allocation but did not log it",
              where)
        lib = m.group(4).split("(")[0]
        self.fail_sites[lib] = self.fail_sites.get(lib, 0) + 1
        return m

    def no_sanitizer_report(self, text, where):
        for marker in SANITIZER_MARKERS:
            if marker in text:
                i = text.find(marker)
                raise TestFailure("%s: sanitizer report in huiqid stderr:\n%s" % (
                    where, text[max(0, i - 300):i + 2500]))

    def died(self, proc, offset, where):
        """huiqid stopped answering during the window: it must be the designed
        abort. Returns "abort"; raises otherwise."""
        try:
            rc = proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.hang(proc, offset, where, "it refuses connections but does not exit")
        self.env.huiqid_proc = None
        text = self.err_text(offset)
        self.no_sanitizer_report(text, where)
        if rc != -signal.SIGABRT:
            try:
                how = "signal %s" % signal.Signals(-rc).name if rc < 0 else "exit code %d" % rc
            except ValueError:
                how = "signal %d" % -rc
            raise TestFailure("%s: huiqid died of %s (injected failure: %s); only the "
                              "out-of-memory abort is allowed\n%s" % (
                                  where, how, self.site(text), tail(text)))
        m = self.count_site(text, where) if FAIL_RE.search(text) else None
        check(m is not None, "%s: huiqid aborted with no injected failure\n%s", where,
              tail(text))
        if OOM_MESSAGE in text[m.end():]:
            self.outcomes["abort"] += 1
            return "abort"
        sym = m.group(4).split("(", 1)[1].split("+")[0] if "(" in m.group(4) else ""
        if m.group(4).startswith("libhiredis") and (sym in HIREDIS_OOM_ABORTS or
                                                    HIREDIS_OOM_ASSERT in text[m.end():]):
            self.outcomes["abort-hiredis"] += 1
            return "abort"
        raise TestFailure("%s: SIGABRT without the out-of-memory message after the "
                          "injected failure %s\n%s" % (where, self.site(text), tail(text)))

    def hang(self, proc, offset, where, what):
        text = self.err_text(offset)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        self.env.huiqid_proc = None
        raise TestFailure("%s: huiqid hangs: %s (injected failure: %s)\n%s" % (
            where, what, self.site(text), tail(text)))

    def calibrate(self, what, send, success, settle=None):
        """The k = 0 run: nothing fails; returns the K values to try and the answer."""
        outcome, resp = self.run(0, what + " (counting)", send, success, settle)
        eq(outcome, "ok", "%s with nothing failing" % what)
        check(self.window and self.window > 0, "%s: the shim counted no allocations", what)
        return samples(self.window), resp

    def summary(self, what, ks, t0):
        return "%s: window %d allocations, %d values of k in %.1fs: %s (5xx: %s); failed " \
               "in %s; %d restarts" % (what, self.window, len(ks), time.monotonic() - t0,
                                       ", ".join("%s %d" % kv for kv in self.outcomes.items()),
                                       self.codes_5xx or "none", self.fail_sites, self.restarts)

    def final_restart(self):
        """Clean stop (exit 0, no sanitizer report), then a fresh start."""
        if self.env.huiqid_proc is not None:
            problems = self.env.stop_huiqid()
            check(not problems, "clean stop after the injections: %s", "; ".join(problems))
        self.ensure_running()


def ledger_kind(resp, success):
    """What the answer proves about a write: "ack" (applied: the success status,
    even when huiqid died after sending it), "no" (not applied: a 503 documented as
    changing nothing) or "unknown" (no answer, or 503 outcome_unknown)."""
    if resp is None:
        return "unknown"
    if resp.status == success:
        return "ack"
    if resp.status == 503 and resp.json["error"]["code"] in NOT_APPLIED_CODES:
        return "no"
    return "unknown"


def report(o, line):
    if o.verbose:
        print("     " + line)


def sweep(o, t, what, send, record, ref, verify, name, t0):
    """Calibrates the window of 'what', fails each chosen allocation in turn
    (recording every answer in the caller's ledger), restarts and verifies."""
    ks, resp = t.calibrate(what, send, 201)
    record(resp)
    ref["doc"] = resp.json
    for k in ks:
        _, resp = t.run(k, what, send, 201)
        record(resp)
    t.final_restart()
    verify()
    report(o, t.summary(name, ks, t0))


def list_all(c, path, limit=100):
    items, cursor = [], None
    for _ in range(1000):
        sep = "&" if "?" in path else "?"
        r = c.get("%s%slimit=%d%s" % (path, sep, limit, "&cursor=" + cursor if cursor else ""))
        eq(r.status, 200, "GET " + path)
        items += r.json["items"]
        cursor = r.json["next"]
        if cursor is None:
            return items
    raise TestFailure("GET %s did not end" % path)


# --------------------------------------------------------------------------
# Register an enterprise
# --------------------------------------------------------------------------


def ent_body(i):
    return {"uscc": code(i, series="7"), "name": "内存故障测试企业 %d" % i,
            "industry": "C3973", "employees": 120, "revenue_10k": 8000,
            "founded": "2019-05-20", "qualifications": [{"code": "qual.hightech",
                                                         "issued": "2025-11-06"},
                                                        "qual.srdi"],
            "tags": ["ip.trademark"], "interests": ["fin.loan_discount"],
            "contact": {"phone": "0510-85000000", "person": "王"}}


def test_alloc_fail_register_enterprise(o):
    t0 = time.monotonic()
    ledger = {}  # uscc -> (kind, acked document or None, body sent)
    ref = {}

    def verify():
        c = t.client(keepalive=True)
        present = set()
        for u, (kind, doc, body) in ledger.items():
            r = c.get("/v1/enterprises/" + u)
            check(r.status in (200, 404), "GET %s: %r", u, r)
            if r.status == 404:
                check(kind != "ack", "enterprise %s was acknowledged (201) but is gone", u)
                continue
            check(kind != "no", "enterprise %s was refused with a not-applied 503 but exists",
                  u)
            present.add(u)
            got = r.json
            if kind == "ack":
                eq(got, doc, "enterprise %s after the injections" % u)
            else:  # whole or absent: the same profile as every other one
                eq(got.get("name"), body["name"], "enterprise %s (outcome unknown): name" % u)
                for f in ("tags", "explicit_tags", "tag_sources", "employees", "contact",
                          "interests", "version"):
                    eq(got.get(f), ref["doc"].get(f),
                       "enterprise %s (outcome unknown): %s" % (u, f))
        # The indexes agree with the documents.
        eq(sorted(d["uscc"] for d in list_all(c, "/v1/enterprises")), sorted(present),
           "GET /v1/enterprises lists exactly the stored enterprises")
        eq(sorted(d["uscc"] for d in list_all(c, "/v1/enterprises?tag=qual.srdi,ip.trademark")),
           sorted(present), "GET /v1/enterprises?tag=... (the tag index)")
        c.close()

    t = Torture(o, on_restart=verify)
    with t.env:
        i = [0]

        def send(c, hdrs):
            i[0] += 1
            body = ent_body(i[0])
            ledger[body["uscc"]] = ("unknown", None, body)
            return c.post("/v1/enterprises", body, headers=hdrs)

        def record(resp):
            body = ent_body(i[0])
            kind = ledger_kind(resp, 201)
            ledger[body["uscc"]] = (kind, resp.json if kind == "ack" else None, body)

        sweep(o, t, "POST /v1/enterprises", send, record, ref, verify, "register-enterprise", t0)


# --------------------------------------------------------------------------
# Register a policy
# --------------------------------------------------------------------------


def pol_body(i):
    return {"title": "内存故障测试政策 %d" % i, "issuer": "新吴区人民政府", "level": "district",
            "tags": ["fin.loan_discount"],
            "rule": {"all": ["sig.ic"], "any": ["region.320214", "region.320211"],
                     "none": ["neg.dishonest"]},
            "opens": "2026-01-01", "closes": "2026-12-31", "mode": "apply",
            "url": "https://www.wnd.gov.cn/", "summary": "对区内集成电路企业按研发投入给予补助。"}


def test_alloc_fail_register_policy(o):
    t0 = time.monotonic()
    ledger = {}  # title -> (kind, acked document or None)
    ref = {}

    def verify():
        c = t.client(keepalive=True)
        listed = list_all(c, "/v1/policies")
        by_title = {}
        for d in listed:
            check(d["title"] in ledger, "an unknown policy is listed: %r", d)
            check(d["title"] not in by_title, "policy %r is stored twice", d["title"])
            by_title[d["title"]] = d
            r = c.get("/v1/policies/%d" % d["id"])
            eq(r.status, 200, "GET /v1/policies/%d (listed)" % d["id"])
            eq(r.json, d, "policy %d: the document and the list agree" % d["id"])
            for f in pol_body(0):  # every policy has the same fields but its title
                if f != "title":
                    eq(d.get(f), ref["doc"].get(f), "policy %d (%s): %s" % (d["id"], d["title"], f))
            eq((d["status"], d["version"]), ("draft", 1), "policy %d status, version" % d["id"])
        for title, (kind, doc) in ledger.items():
            if kind == "ack":
                check(title in by_title, "policy %r was acknowledged (201) but is gone", title)
                eq(by_title[title], doc, "policy %r after the injections" % title)
            elif kind == "no":
                check(title not in by_title, "policy %r was refused with a not-applied 503 "
                      "but exists", title)
        c.close()

    t = Torture(o, on_restart=verify)
    with t.env:
        i = [0]

        def send(c, hdrs):
            i[0] += 1
            ledger[pol_body(i[0])["title"]] = ("unknown", None)
            return c.post("/v1/policies", pol_body(i[0]), headers=hdrs)

        def record(resp):
            kind = ledger_kind(resp, 201)
            ledger[pol_body(i[0])["title"]] = (kind, resp.json if kind == "ack" else None)

        sweep(o, t, "POST /v1/policies", send, record, ref, verify, "register-policy", t0)


# --------------------------------------------------------------------------
# Publish a policy: the bulk push job and its deliveries
# --------------------------------------------------------------------------

N_ENTS = 3


def test_alloc_fail_publish_job(o):
    t0 = time.monotonic()
    rcv = Receiver()
    ledger = {}  # policy id -> (kind, job id or None)
    hook = {}
    ents = [code(i, series="8") for i in range(N_ENTS)]

    def verify(final=False):
        """Every acknowledged publish is published with the job its answer named; a
        refused one is still a draft; an unknown one is either. A published policy
        has exactly one publish job, a draft none (the two are one script). At the
        end every job has finished and every published policy has reached every
        matched enterprise, with no recovery applied, and no draft any."""
        c = t.client(keepalive=True)
        want_ids = set()
        drafts = []
        jobs = []
        by_policy = policy_jobs(t.env)
        for pid, (kind, jid) in ledger.items():
            r = c.get("/v1/policies/%d" % pid)
            eq(r.status, 200, "GET /v1/policies/%d" % pid)
            st = r.json["status"]
            check(st in ("draft", "published"), "policy %d is %r", pid, st)
            if kind == "ack":
                eq(st, "published", "policy %d (publish acknowledged) status" % pid)
            elif kind == "no":
                eq(st, "draft", "policy %d (publish refused, not applied) status" % pid)
            made = by_policy.get(pid, [])
            if st != "published":
                eq(made, [], "policy %d (a draft): its jobs" % pid)
                drafts.append(pid)
                continue
            eq([k for _, k in made], ["publish"], "policy %d (published): its jobs" % pid)
            if kind == "ack":
                eq(made[0][0], jid, "policy %d: the job its publish answer named" % pid)
            want_ids |= {matched_id(pid, u, hook["id"]) for u in ents}
            jobs.append((pid, made[0][0], N_ENTS))
        if final:
            wait_until(lambda: want_ids <= set(rcv.ids()), 20 * o.slow,
                       "every published policy's deliveries (%d)" % len(want_ids))
            for pid, jid, matched in jobs:
                j = wait_until(lambda: job_settled(c, jid), 20 * o.slow,
                               "job %d to finish" % jid)
                eq((j["state"], j["failed"], j["delivered"]), ("done", 0, j["queued"]),
                   "job %d (policy %d) state, failed, delivered" % (jid, pid))
                eq((j["matched"], j["queued"]), (matched, matched),
                   "job %d (policy %d) matched, queued" % (jid, pid))
        got = {i for i in rcv.ids() if int(i.split("_")[1]) in drafts}
        check(not got, "deliveries for policies that are still drafts: %s", sorted(got)[:5])
        eq(rcv.bad_signatures, 0, "deliveries with a bad signature")
        check(not rcv.body_changed, "ids delivered again with other bodies: %s",
              rcv.body_changed[:5])
        c.close()

    def job_settled(c, jid):
        r = c.get("/v1/jobs/%d" % jid)
        if r.status != 200:
            return None
        j = r.json
        if j["state"] == "running" or j["delivered"] + j["failed"] + j["expired"] < j["queued"]:
            return None
        return j

    try:
        t = Torture(o, args=PUSH_ARGS, on_restart=verify)
        with t.env:
            c = t.client(keepalive=True)
            hook["id"], _ = make_hook(c, rcv, ["policy.matched"])
            import_ents(c, [{"uscc": u, "name": "推送企业 %d" % n, "tags": [TAG_A]}
                            for n, u in enumerate(ents)])
            c.close()
            cur = {}

            def send(cl, hdrs):
                c2 = t.client(keepalive=True)
                r = c2.post("/v1/policies", {"title": "内存故障推送 %d" % len(ledger),
                                             "level": "city", "rule": {"all": [TAG_A]}})
                c2.close()
                eq(r.status, 201, "POST /v1/policies (before the window)")
                cur["pid"] = r.json["id"]
                ledger[cur["pid"]] = ("unknown", None)
                return cl.post("/v1/policies/%d/publish" % cur["pid"], None, headers=hdrs)

            def settle(alive):
                """Inside the window: the job runs to its end (or huiqid dies)."""
                resp = cur.get("resp")
                if resp is None or resp.status != 200 or not isinstance(resp.json.get("job"), int):
                    return  # a 5xx (a 200 without a job fails in record())
                jid = resp.json["job"]
                deadline = time.monotonic() + 20 * o.slow
                while time.monotonic() < deadline and alive():
                    try:
                        cl = t.client()
                        if job_settled(cl, jid) is not None:
                            return
                    except (OSError, http.client.HTTPException):
                        pass  # huiqid died: the window is over
                    time.sleep(0.02)
                if alive():
                    r = t.client().get("/v1/jobs/%d" % jid)
                    raise TestFailure("job %d did not finish within %.0fs: %r" % (
                        jid, 20 * o.slow, r))

            def send_and_keep(cl, hdrs):
                cur["resp"] = None
                r = send(cl, hdrs)
                cur["resp"] = r
                return r

            def record(resp, k=0):
                kind = ledger_kind(resp, 200)
                jid = resp.json.get("job") if kind == "ack" else None
                if kind == "ack":
                    # The publish and its job were one write: no "job": null here.
                    eq(resp.json.get("status"), "published", "k=%d: publish status" % k)
                    check(isinstance(jid, int) and jid > 0, "k=%d: publish answer without "
                          "its job: %r", k, resp)
                ledger[cur["pid"]] = (kind, jid)

            ks, resp = t.calibrate("POST /v1/policies/{id}/publish", send_and_keep, 200, settle)
            record(resp)
            for k in ks:
                _, resp = t.run(k, "POST /v1/policies/{id}/publish", send_and_keep, 200,
                                      settle)
                record(resp, k)
            t.final_restart()
            verify(final=True)
            report(o, t.summary("publish (bulk job)", ks, t0))
    finally:
        rcv.close()

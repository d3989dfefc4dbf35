"""Redis faults of the reliability checklist (shared/reliability.md section 8), in
quick versions for the suite and at full size for `make reliability`: kill -9 of
Redis under load (A1: noticed within 1 s, every callback called, ready within 2 s
of Redis, no acknowledged write lost), a Redis that stops answering on a live
connection (A2: every pending callback gets NULL at the 2 s command deadline), and
Redis restarts under a measured load (D14: throughput back to 95% of its baseline
within 5 s). The blackhole cycles (A2) and the restart storm (A3) are in
tests_faults. Every test reads huiqid's callback ledger from /metrics.

Load is a small HTTP/1.1 generator on raw keep-alive sockets (http.client costs
several times more CPU per request, and the generator shares 2 cores with huiqid
and Redis). It runs closed loop to find the maximum, or paced at a fixed rate,
and records every answer with its time, so throughput is counted the same way
before and after a fault."""

import bisect
import json
import random
import selectors
import socket
import threading
import time

from harness import TEST_ADMIN_KEY, Env, TestFailure, check, eq, parse_head, wait_until
from tests_api import expect_error
from tests_faults import DEFAULT_REDIS_TIMEOUT_MS, FAULT_ARGS, LEDGER_ARGS, MERGE_PATCH, \
    NOT_APPLIED_CODES, UNKNOWN_CODES, Threads, Writers, check_503, check_latencies, check_ledger, \
    deadline_window, down_window_check, pct, redis_ledger, report, verify_writes, \
    wait_acks_after, wait_ledger
from tests_push import code, import_ents

# --------------------------------------------------------------------------
# A load generator on raw sockets
# --------------------------------------------------------------------------


def http_request_bytes(method, path, body=None, key=TEST_ADMIN_KEY,
                       content_type="application/json"):
    head = "%s %s HTTP/1.1\r\nHost: huiqi\r\nAuthorization: Bearer %s\r\n" % (method, path, key)
    data = b""
    if body is not None:
        data = json.dumps(body).encode()
        head += "Content-Type: %s\r\nContent-Length: %d\r\n" % (content_type, len(data))
    return (head + "\r\n").encode() + data


class Answer:
    __slots__ = ("t", "status", "code", "retry_after")

    def __init__(self, t, status, code_, retry_after):
        self.t, self.status, self.code, self.retry_after = t, status, code_, retry_after


def read_answer(sock, buf):
    """Reads one response (huiqid always sends Content-Length). Returns (status,
    headers, body, rest of the buffer); raises ConnectionError on EOF."""
    need = None
    while True:
        if need is None:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                status, headers = parse_head(buf[:end])
                need = end + 4 + int(headers.get("content-length", "0"))
        if need is not None and len(buf) >= need:
            return status, headers, buf[end + 4:need], buf[need:]
        got = sock.recv(65536)
        if not got:
            raise ConnectionError("closed mid-response")
        buf += got


class Load(Threads):
    """'conns' threads, each on its own keep-alive connection to huiqid, sending
    requests from make(rng) -> bytes: closed loop when rate is None (each sends as
    soon as it is answered), else paced at 'rate' requests/s in all (a thread that
    falls more than 0.5 s behind its schedule drops the missed slots). Each answer
    is kept as Answer(t, status, error code of a non-2xx, Retry-After); a failed
    connection counts as status None and is reopened."""

    def __init__(self, port, make, conns=8, rate=None, seed=1):
        self.port = port
        self.make = make
        self.rate = rate
        self.conns = conns
        self.seed = seed
        self.stop_flag = threading.Event()
        self.answers = [[] for _ in range(conns)]
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(conns)]
        self.t0 = None

    def __enter__(self):
        self.t0 = time.monotonic()
        return Threads.__enter__(self)

    def stop(self):
        check(not self.join(60), "load threads did not stop (a request hangs)")

    def all_answers(self):
        out = []
        for lst in self.answers:
            out += list(lst)
        out.sort(key=lambda a: a.t)
        return out

    def _run(self, i):
        rng = random.Random(self.seed * 1000 + i)
        out = self.answers[i]
        sock, buf = None, b""
        interval = self.conns / self.rate if self.rate else 0.0
        due = self.t0 + interval * i / self.conns
        while not self.stop_flag.is_set():
            if interval:
                now = time.monotonic()
                if due > now:
                    if self.stop_flag.wait(due - now):
                        break
                elif now - due > 0.5:
                    due = now
                due += interval
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    buf = b""
                sock.sendall(self.make(rng))
                status, headers, body, buf = read_answer(sock, buf)
            except (OSError, ValueError):
                out.append(Answer(time.monotonic(), None, None, None))
                if sock is not None:
                    sock.close()
                sock = None
                self.stop_flag.wait(0.01)
                continue
            code_ = None
            if status >= 300:
                try:
                    code_ = json.loads(body)["error"]["code"]
                except (ValueError, KeyError, TypeError):
                    code_ = "!unparsed"
            out.append(Answer(time.monotonic(), status, code_, headers.get("retry-after")))
            if headers.get("connection", "").lower() == "close":
                sock.close()
                sock = None
        if sock is not None:
            sock.close()


def ok_times(answers):
    """The times of the 2xx answers, sorted."""
    return sorted(a.t for a in answers if a.status is not None and 200 <= a.status < 300)


def ok_rate(times, t_from, t_to):
    """2xx answers per second in [t_from, t_to), from ok_times()."""
    return (bisect.bisect_left(times, t_to) - bisect.bisect_left(times, t_from)) / (t_to - t_from)


def valid_503(a):
    """A 503 answer of the load with a Retry-After and a documented code."""
    return (a.status == 503 and a.code in NOT_APPLIED_CODES + UNKNOWN_CODES and
            a.retry_after is not None and a.retry_after.isdigit() and int(a.retry_after) >= 1)


# --------------------------------------------------------------------------
# A1: kill -9 Redis under load
# --------------------------------------------------------------------------


# The checklist's bounds (reliability.md section 8, A1): Redis's death is noticed
# within 1 s, and huiqid is ready again within 2 s of Redis answering PING. The
# reconnect backoff is capped for the latter (store/link.c).
DISCONNECT_BOUND_S = 1.0
READY_BOUND_S = 2.0


def kill_trial(env, o, w, trial, down_s=1.5):
    """One kill -9 of Redis under the writers' load: the loss is noticed (/readyz
    503 and huiqi_redis_up 0) within DISCONNECT_BOUND_S, every pending callback
    has run while Redis is away (nothing in flight, ledger exact), and /readyz is
    200 within READY_BOUND_S of Redis answering PING. Returns the figures."""
    wait_acks_after(env, w, time.monotonic() + 0.3, o, "before kill %d" % trial)
    before = check_ledger(redis_ledger(env), "trial %d before the kill" % trial)
    t_killed = time.monotonic()
    env.kill_redis()
    # The down window starts once the process is reaped: a write sent between the
    # kill() and Redis's death may still be applied and acknowledged (CI saw one
    # 200 answered 2 ms after t_killed).
    t_dead = time.monotonic()
    seen = {}
    bound = DISCONNECT_BOUND_S * o.slow

    def noticed():
        env.assert_alive("after redis-server was killed")
        now = time.monotonic() - t_killed
        if "readyz" not in seen:
            r = env.readyz_status()
            if r.status == 503:
                expect_error(r, 503, "redis_unavailable", what="/readyz with Redis down")
                seen["readyz"] = time.monotonic() - t_killed
        if "metric" not in seen:
            led = check_ledger(redis_ledger(env), "trial %d, Redis killed" % trial)
            if led["up"] == 0:
                seen["metric"] = time.monotonic() - t_killed
        if now > bound + 0.5:
            return True  # judged below
        return len(seen) == 2

    wait_until(noticed, bound + 5, "Redis's death to be noticed", interval=0.005)
    check(len(seen) == 2 and max(seen.values()) <= bound,
          "trial %d: Redis's death noticed after %r s (bound %.1f s; missing means not within "
          "%.1f s)", trial, seen, bound, bound + 0.5)
    # Every command that was pending got its NULL callback: none left in flight.
    down = wait_ledger(env, lambda led: led["inflight"] == 0 and led["up"] == 0,
                       bound, "trial %d: no Redis command in flight while Redis is dead" % trial)
    eq(env.new_client(key=None).get("/healthz").status, 200, "/healthz with Redis down")
    wait_until(lambda: (env.assert_alive("while Redis was down") or
                        time.monotonic() - t_killed > down_s), 10 + down_s, "Redis downtime")
    t_restart = time.monotonic()
    env.start_redis()
    t_up = time.monotonic()  # Redis answers PING

    def ready():
        env.assert_alive("after Redis came back")
        return env.readyz_status().status == 200

    try:
        wait_until(ready, READY_BOUND_S * o.slow, "/readyz 200", interval=0.005)
    except TestFailure:
        raise TestFailure("trial %d: /readyz not 200 within %.1f s of Redis answering PING "
                          "(ledger %r)" % (trial, READY_BOUND_S * o.slow, redis_ledger(env)))
    t_ready = time.monotonic()
    check(t_ready - t_up <= READY_BOUND_S * o.slow, "trial %d: /readyz 200 %.3f s after Redis "
          "answered PING (bound %.1f s)", trial, t_ready - t_up, READY_BOUND_S * o.slow)
    wait_acks_after(env, w, t_ready, o, "Redis came back (trial %d)" % trial)
    n, codes, lat = down_window_check(w.all_ops(), t_dead, t_restart, "trial %d" % trial)
    check(n > 0, "trial %d: no write was answered while Redis was down", trial)
    return {"readyz": seen["readyz"], "metric": seen["metric"], "ready": t_ready - t_up,
            "lost": down["lost"] - before["lost"], "down_writes": n, "codes": codes,
            "slowest": lat, "before": before}


# The load of the A1 trials: the checklist asks for ~5 k Redis commands/s. The
# writers alone reach 2-5 k on a shared 2-core machine, so a paced reader adds one
# HMGET per request (GETs of enterprises that do not exist: 404, and they leave
# verify_writes' listing check alone). The floor asserted is 40% of the target.
A1_READ_RATE = 4000
A1_MIN_CMDS = 2000


def redis_kill_trials(o, trials, writers=4):
    """'trials' times: kill -9 Redis (appendfsync always) while 'writers' threads
    write and a paced reader reads, keep it down ~1.5 s, restart it on its AOF
    (kill_trial's checks each time). The Redis command rate is measured from
    /metrics over at least 1 s before each kill. Afterwards: no command left in
    flight and the ledger exact, every answer a 2xx/404 or a 503 with Retry-After
    and a documented code, writes within the deadline, and every acknowledged
    write survives (verify_writes)."""
    with Env(o, huiqid_args=FAULT_ARGS + LEDGER_ARGS, appendfsync="always") as env:
        w = Writers(env, o, n=writers, seed=11, max_ents=40, timeout=10 * o.slow)
        missing = [http_request_bytes("GET", "/v1/enterprises/" + code(i, series="M"))
                   for i in range(50)]
        reader = Load(env.huiqid_port, lambda rng: rng.choice(missing), conns=4,
                      rate=A1_READ_RATE / o.slow)
        figures, rates = [], []
        with w, reader:
            wait_acks_after(env, w, time.monotonic() + 0.5, o, "warm-up")
            up = redis_ledger(env)
            for trial in range(trials):
                wait_until(lambda: time.monotonic() - up["t"] >= 1.0, 5, "a 1 s rate window")
                f = kill_trial(env, o, w, trial)
                b = f["before"]
                rates.append((b["commands"] - up["commands"]) / (b["t"] - up["t"]))
                figures.append(f)
                up = redis_ledger(env)
        env.assert_alive("after the trials")
        check(not w.problems, "writers saw unexpected answers:\n  %s", "\n  ".join(w.problems))
        bad = [(a.status, a.code, a.retry_after) for a in reader.all_answers()
               if a.status != 404 and not valid_503(a)]
        check(not bad, "the reader got %d answers other than 404 or a 503 with Retry-After "
              "and a documented code, e.g. %r", len(bad), bad[:5])
        check(pct(rates, 50) >= A1_MIN_CMDS / o.slow, "the load reached only %.0f Redis "
              "commands/s (median over the trials; floor %.0f)", pct(rates, 50),
              A1_MIN_CMDS / o.slow)
        end = wait_ledger(env, lambda led: led["inflight"] == 0, 5 * o.slow,
                          "no Redis command in flight once the writers stopped")
        ops = w.all_ops()
        max_lat = check_latencies(ops, o, "kill -9 Redis")
        stats = verify_writes(env, o, w, "after kill -9 of Redis")
        for i, f in enumerate(figures):
            report(o, "trial %d at %.0f Redis cmds/s: down noticed by /readyz %.3fs, "
                   "huiqi_redis_up %.3fs; %d commands got NULL; /readyz 200 %.3fs after PONG; "
                   "%d writes while down %s, slowest %.3fs" % (
                       i, rates[i], f["readyz"], f["metric"], f["lost"], f["ready"],
                       f["down_writes"], f["codes"], f["slowest"]))
        report(o, "Redis cmds/s median %.0f (min %.0f); noticed max %.3fs; ready after PONG "
               "median %.3fs max %.3fs; ledger %d commands = %d replies + %d NULL + %d in "
               "flight; %d writes, max latency %.3fs; %s" % (
                   pct(rates, 50), min(rates),
                   max(max(f["readyz"], f["metric"]) for f in figures),
                   pct([f["ready"] for f in figures], 50), max(f["ready"] for f in figures),
                   end["commands"], end["replies"], end["lost"], end["inflight"], len(ops),
                   max_lat, stats))
        check(stats["ack"] > 0, "no write was acknowledged at all")


def test_redis_kill_under_write_load(o):
    """Reliability A1, quick: 3 kill -9 trials (see redis_kill_trials)."""
    redis_kill_trials(o, 3)


def test_redis_kill_ten_trials(o):
    """Reliability A1 at full size: 10 kill -9 trials."""
    redis_kill_trials(o, 10)


# --------------------------------------------------------------------------
# A2: Redis stops answering on a live connection
# --------------------------------------------------------------------------


class RedisProxy:
    """A loopback TCP proxy to the Redis at 'target_port'. It starts passing bytes
    both ways; silence() makes it drop everything either side sends on every
    connection, open or new, and closes its port so that new connections are
    refused; forward() listens on the same port again and new connections pass.
    A connection closed on one side is closed on the other."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.sel = selectors.DefaultSelector()
        self.peer = {}
        self.lsock = None
        self.port = 0
        self.silent = False
        self.lock = threading.Lock()
        self.todo = []  # (mode, event), applied by the proxy's thread
        self.stop_flag = threading.Event()
        self._listen()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _listen(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self.port = s.getsockname()[1]
        self.lsock = s
        self.sel.register(s, selectors.EVENT_READ)

    def _switch(self, mode):
        ev = threading.Event()
        with self.lock:
            self.todo.append((mode, ev))
        check(ev.wait(5), "the proxy did not switch to %s", mode)

    def silence(self):
        self._switch("silent")

    def forward(self):
        self._switch("forward")

    def _apply(self):
        with self.lock:
            todo, self.todo = self.todo, []
        for mode, ev in todo:
            self.silent = mode == "silent"
            if self.silent and self.lsock is not None:
                self.sel.unregister(self.lsock)
                self.lsock.close()
                self.lsock = None
            elif not self.silent and self.lsock is None:
                self._listen()
            ev.set()

    def _close_pair(self, s):
        for x in (s, self.peer.pop(s, None)):
            if x is not None:
                self.peer.pop(x, None)
                try:
                    self.sel.unregister(x)
                except (KeyError, ValueError):
                    pass
                x.close()

    def _run(self):
        while not self.stop_flag.is_set():
            self._apply()
            for key, _ in self.sel.select(0.02):
                s = key.fileobj
                if s is self.lsock:
                    try:
                        a, _ = s.accept()
                        b = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                    except OSError:
                        continue
                    self.peer[a], self.peer[b] = b, a
                    self.sel.register(a, selectors.EVENT_READ)
                    self.sel.register(b, selectors.EVENT_READ)
                    continue
                if s not in self.peer:
                    continue
                try:
                    got = s.recv(65536)
                except OSError:
                    got = b""
                if not got:
                    self._close_pair(s)
                elif not self.silent:
                    try:
                        self.peer[s].sendall(got)
                    except OSError:
                        self._close_pair(s)

    def close(self):
        self.stop_flag.set()
        self.thread.join(5)
        for s in list(self.peer):
            s.close()
        if self.lsock is not None:
            self.lsock.close()
        self.sel.close()


def test_redis_goes_silent(o):
    """Reliability A2, pending callbacks: Redis stops answering on a live
    connection (a proxy between huiqid and Redis drops everything from then on
    and refuses new connections). Reads and writes whose commands went out just
    before get 503 outcome_unknown when the default command deadline (2 s) fires,
    2 s +-10% after they were sent: their callbacks ran with a NULL reply. Then
    nothing is left in flight, the ledger is exact and the NULL count grew by at
    least one per request; the writes were not applied (the proxy dropped them);
    once the proxy passes traffic again huiqid is ready and serving, and exits 0."""
    with Env(o, huiqid_args=LEDGER_ARGS, start_huiqid=False) as env:
        proxy = RedisProxy(env.redis_port)
        try:
            real, env.redis_port = env.redis_port, proxy.port
            try:
                env.start_huiqid()
            finally:
                env.redis_port = real
            c = env.new_client()
            us = [code(i, series="Q") for i in range(6)]
            t_key = time.monotonic()
            import_ents(c, [{"uscc": u, "name": "静默 %d" % i, "employees": 1}
                            for i, u in enumerate(us)])
            # huiqid re-reads an API key from Redis when its copy is 2 s old (api/auth.c).
            # Once the import's copy is stale, a request has it read afresh, so the
            # requests below are authorised from memory and reach their own commands.
            wait_until(lambda: time.monotonic() - t_key > 2.1, 5, "the cached key to age")
            eq(c.get("/v1/enterprises/" + us[0]).status, 200, "GET before the silence")
            before = check_ledger(redis_ledger(env), "before the silence")
            proxy.silence()
            results = [None] * len(us)

            def one(i):
                cl = env.new_client(keepalive=False)
                cl.timeout = 10 * o.slow
                t0 = time.monotonic()
                try:
                    if i % 2:
                        r = cl.patch("/v1/enterprises/" + us[i], {"employees": 99},
                                     content_type=MERGE_PATCH)
                    else:
                        r = cl.get("/v1/enterprises/" + us[i])
                except OSError as e:
                    r = e
                results[i] = (time.monotonic() - t0, r)

            threads = [threading.Thread(target=one, args=(i,), daemon=True)
                       for i in range(len(us))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(20 * o.slow)
            deadline = DEFAULT_REDIS_TIMEOUT_MS / 1000.0
            lo, hi = deadline_window(o, deadline)
            for i, res in enumerate(results):
                what = "%s of a Redis that went silent" % ("PATCH" if i % 2 else "GET")
                check(res is not None, "%s: no answer", what)
                dt, r = res
                check(not isinstance(r, Exception), "%s: %r", what, r)
                got = check_503(r, what) if r.status == 503 else "%d" % r.status
                check(got == "outcome_unknown", "%s: expected 503 outcome_unknown with "
                      "Retry-After (its command got a NULL reply), got %s: %r", what, got, r)
                check(lo <= dt <= hi, "%s answered after %.3f s: the command deadline (default "
                      "%d ms) should fire within %.2f-%.2f s", what, dt,
                      DEFAULT_REDIS_TIMEOUT_MS, lo, hi)
            # Both connections die at their deadlines and cannot come back: every
            # command they held has had its callback.
            down = wait_ledger(env, lambda led: led["inflight"] == 0 and led["up"] == 0,
                               (2 * deadline + 2) * o.slow,
                               "no Redis command in flight once Redis went silent")
            check(down["lost"] - before["lost"] >= len(us), "only %d NULL replies for %d "
                  "requests whose commands were pending", down["lost"] - before["lost"],
                  len(us))
            check(down["timeouts"] > before["timeouts"], "no command deadline counted")
            proxy.forward()
            env.wait_ready()
            for i, u in enumerate(us):
                r = c.get("/v1/enterprises/" + u)
                eq((r.status, r.json["employees"]), (200, 1),
                   "enterprise %d after the silence (the proxy dropped the PATCH)" % i)
            r = c.patch("/v1/enterprises/" + us[1], {"employees": 7}, content_type=MERGE_PATCH)
            eq((r.status, r.json["employees"]), (200, 7), "PATCH once Redis answers again")
            after = check_ledger(redis_ledger(env), "after the silence")
            report(o, "answers after %s s (window %.2f-%.2f); ledger before %d = %d + %d NULL + "
                   "%d in flight, once silent %d = %d + %d + %d, afterwards %d = %d + %d + %d" % (
                       [round(res[0], 3) for res in results], lo, hi,
                       *(led[k] for led in (before, down, after)
                         for k in ("commands", "replies", "lost", "inflight"))))
        finally:
            proxy.close()


# --------------------------------------------------------------------------
# D14: Redis restart under load
# --------------------------------------------------------------------------

D14_CONNS = 32        # the closed loop's concurrency, and the paced load's connections
D14_RECOVER_S = 5.0   # the checklist: back to >= 95% of the baseline within 5 s
D14_SHARE = 0.95


def d14_mix(us):
    """The D14 load: GET an enterprise (70%, one Redis read) or PATCH it (30%, one
    script call), so that every request needs Redis."""
    gets = [http_request_bytes("GET", "/v1/enterprises/" + u) for u in us]

    def make(rng):
        if rng.random() < 0.3:
            return http_request_bytes("PATCH", "/v1/enterprises/" + rng.choice(us),
                                      {"employees": rng.randrange(1, 10**6)},
                                      content_type=MERGE_PATCH)
        return rng.choice(gets)
    return make


def run_for(env, seconds, what):
    """Lets the load run for 'seconds', checking that huiqid stays alive."""
    t_end = time.monotonic() + seconds
    wait_until(lambda: env.assert_alive(what) or time.monotonic() >= t_end, seconds + 10,
               what, interval=0.05)


def recovery_time(times, t_up, baseline, t_last):
    """Seconds from t_up to the end of the first 1 s window (sliding by 50 ms) whose
    2xx rate is >= D14_SHARE of the baseline; None when none ends by t_last."""
    a = t_up
    while a + 1.0 <= t_last:
        if ok_rate(times, a, a + 1.0) >= D14_SHARE * baseline:
            return a + 1.0 - t_up
        a += 0.05
    return None


def restart_under_load(o, restarts, max_s, base_s, hold_s):
    """Reliability D14. The maximum throughput of the D14 mix is measured closed
    loop over D14_CONNS connections for max_s; then the same mix runs paced at half
    of it. 'restarts' times (alternately SHUTDOWN and kill -9; Redis down 1 s): the
    baseline is the 2xx rate over base_s before the restart; while Redis is down
    the answers are 503s with Retry-After and a documented code; within 5 s of
    Redis answering PING the 2xx rate is back to >= 95% of the baseline (a whole
    1 s window), and it stays there for hold_s. huiqid never exits; every answer
    of the whole run is a 2xx or such a 503; afterwards the ledger is exact with
    nothing in flight."""
    with Env(o, huiqid_args=LEDGER_ARGS) as env:
        us = [code(i, series="D") for i in range(200)]
        import_ents(env.c, [{"uscc": u, "name": "重启负载 %d" % i, "employees": 1}
                            for i, u in enumerate(us)])
        make = d14_mix(us)
        with Load(env.huiqid_port, make, conns=D14_CONNS) as full:
            run_for(env, 0.5 + max_s, "the closed-loop maximum")
        top = ok_rate(ok_times(full.all_answers()), full.t0 + 0.5, full.t0 + 0.5 + max_s)
        bad = [(a.status, a.code) for a in full.all_answers() if not 200 <= (a.status or 0) < 300]
        check(not bad, "closed loop with Redis up: %d answers not 2xx, e.g. %r", len(bad), bad[:5])
        rate = top / 2
        recover_bound = D14_RECOVER_S * o.slow
        figures = []
        with Load(env.huiqid_port, make, conns=D14_CONNS, rate=rate, seed=2) as load:
            run_for(env, 0.5, "the paced load's start")
            for i in range(restarts):
                t_base = time.monotonic()
                run_for(env, base_s, "the baseline")
                t_down = time.monotonic()
                baseline = ok_rate(ok_times(load.all_answers()), t_base, t_down)
                check(baseline > 0, "no 2xx answer in the baseline window")
                if i % 2:
                    env.kill_redis()
                else:
                    env.shutdown_redis()
                t_gone = time.monotonic()
                run_for(env, 1.0, "Redis down")
                env.start_redis()
                t_up = time.monotonic()

                def recovered():
                    env.assert_alive("after Redis came back")
                    return recovery_time(ok_times(load.all_answers()), t_up, baseline,
                                         time.monotonic()) is not None

                try:
                    wait_until(recovered, recover_bound + 1.5, "recovery", interval=0.25)
                except TestFailure:
                    pass  # judged below, with the figures
                run_for(env, hold_s + 0.1, "the recovered load")
                t_last = time.monotonic()
                answers = load.all_answers()
                times = ok_times(answers)
                down = [a for a in answers if t_gone + 0.1 <= a.t < t_up]
                served = sum(1 for a in down if valid_503(a))
                check(served > 0 and served == len(down), "restart %d: %d of %d answers while "
                      "Redis was down were 503 with Retry-After and a documented code: %r", i,
                      served, len(down), [(a.status, a.code) for a in down
                                          if not valid_503(a)][:5])
                rec = recovery_time(times, t_up, baseline, t_last)
                check(rec is not None and rec <= recover_bound, "restart %d: the 2xx rate did "
                      "not come back to %.0f%% of its baseline %.0f/s within %.1f s of Redis "
                      "answering PING (recovered after %s s; 1 s windows from then: %s)", i,
                      D14_SHARE * 100, baseline, recover_bound, rec,
                      [round(ok_rate(times, t_up + k, t_up + k + 1)) for k in
                       range(int(t_last - t_up))])
                held = ok_rate(times, t_up + rec, t_up + rec + hold_s)
                check(held >= D14_SHARE * baseline, "restart %d: back to %.0f%% of the baseline "
                      "%.0f/s after %.2f s, but only %.0f/s over the next %.0f s", i,
                      D14_SHARE * 100, baseline, rec, held, hold_s)
                first = times[bisect.bisect_left(times, t_up)] - t_up
                figures.append((baseline, len(down), first, rec, held))
        answers = load.all_answers()
        bad = [(a.status, a.code, a.retry_after) for a in answers
               if not (200 <= (a.status or 0) < 300 or valid_503(a))]
        check(not bad, "%d answers were neither 2xx nor a 503 with Retry-After and a documented "
              "code, e.g. %r", len(bad), bad[:5])
        env.assert_alive("after the restarts")
        end = wait_ledger(env, lambda led: led["inflight"] == 0, 5 * o.slow,
                          "no Redis command in flight once the load stopped")
        report(o, "closed-loop maximum %.0f req/s (%d connections); paced at %.0f req/s; "
               "ledger %d commands = %d replies + %d NULL + %d in flight" % (
                   top, D14_CONNS, rate, end["commands"], end["replies"], end["lost"],
                   end["inflight"]))
        for i, (baseline, n, first, rec, held) in enumerate(figures):
            report(o, "restart %d (%s): baseline %.0f 2xx/s; %d answers while down, all 503; "
                   "first 2xx %.2f s after PONG, a whole 1 s window at >= 95%% ending %.2f s "
                   "after it, then %.0f 2xx/s (%.1f%%) for %.0f s" % (
                       i, "kill -9" if i % 2 else "SHUTDOWN", baseline, n, first, rec, held,
                       100.0 * held / baseline, hold_s))


def test_redis_restart_under_load(o):
    """Reliability D14, quick: one Redis restart (see restart_under_load)."""
    restart_under_load(o, 1, 2.0, 3.0, 2.0)


def test_redis_restarts_under_load(o):
    """Reliability D14 at full size: four restarts, longer windows."""
    restart_under_load(o, 4, 5.0, 5.0, 5.0)

"""Measurement for checklist A1 (a diagnostic, not part of make test; HUIQID=path to use another build): 10 x kill -9 of Redis
under the Writers load of tests_faults; per trial, time from the kill to /readyz 503
and to huiqi_redis_up 0, time from Redis answering PING to /readyz 200; after all
trials the callback ledger from /metrics:
commands_total == roundtrip_count + errors{lost} + inflight."""
import sys, time
import os
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
HUIQID = os.environ.get("HUIQID", os.path.join(ROOT, "build", "huiqid"))
import harness
from harness import Env, Client, wait_until
import tests_faults as tf

def metrics(env):
    c = Client("127.0.0.1", env.huiqid_port, timeout=5)
    try:
        return tf.metrics(c)
    finally:
        c.close()

def ledger(m):
    return (m["huiqi_redis_commands_total"], m["huiqi_redis_roundtrip_seconds_count"],
            m['huiqi_redis_errors_total{kind="lost"}'], m['huiqi_redis_errors_total{kind="timeout"}'],
            m["huiqi_redis_inflight"])

o = harness.Options(HUIQID, verbose=True)
N = int(sys.argv[1]) if len(sys.argv) > 1 else 10
with Env(o, huiqid_args=tf.FAULT_ARGS + ["--metrics-public", "on"]) as env:
    w = tf.Writers(env, o, n=4, seed=11, max_ents=40, timeout=10)
    rows = []
    with w:
        tf.wait_acks_after(env, w, time.monotonic() + 0.5, o, "warm-up")
        m0, t0 = metrics(env), time.monotonic()
        time.sleep(2.0)
        m1, t1 = metrics(env), time.monotonic()
        rate = (m1["huiqi_redis_commands_total"] - m0["huiqi_redis_commands_total"]) / (t1 - t0)
        print("Redis command rate under the writers: %.0f cmds/s (%d writes acked so far)" % (rate, w.acks))
        for trial in range(N):
            tf.wait_acks_after(env, w, time.monotonic() + 0.3, o, "before kill")
            env.kill_redis(); tk = time.monotonic()
            t503 = tup0 = None
            while time.monotonic() - tk < 5 and (t503 is None or tup0 is None):
                if t503 is None and env.readyz_status().status == 503:
                    t503 = time.monotonic() - tk
                if tup0 is None and metrics(env).get("huiqi_redis_up") == 0:
                    tup0 = time.monotonic() - tk
                time.sleep(0.005)
            infl_down = metrics(env)["huiqi_redis_inflight"]
            while time.monotonic() - tk < 1.5:
                env.assert_alive("down"); time.sleep(0.05)
            env.start_redis(); tu = time.monotonic()
            wait_until(lambda: env.readyz_status().status == 200, 10, "ready")
            tr = time.monotonic() - tu
            tf.wait_acks_after(env, w, time.monotonic(), o, "after")
            rows.append((t503, tup0, infl_down, tr))
            print("trial %d: /readyz 503 after %.3fs, redis_up 0 after %.3fs, inflight while down %d; /readyz 200 %.3fs after PONG" %
                  (trial, t503 if t503 is not None else -1, tup0 if tup0 is not None else -1, infl_down, tr))
    time.sleep(0.5)
    m = metrics(env)
    cmds, rtt, lost, tmo, infl = ledger(m)
    print("ledger after the writers stopped: commands %d = replies %d + lost %d + inflight %d ? %s (timeouts %d, disconnects %d, connects %d)" % (
        cmds, rtt, lost, infl, cmds == rtt + lost + infl, tmo, m["huiqi_redis_disconnects_total"], m["huiqi_redis_connects_total"]))
    d = [r[0] for r in rows if r[0] is not None]; u = [r[3] for r in rows]
    print("detect: max %.3fs median %.3fs over %d; ready after PONG: max %.3fs median %.3fs" % (
        max(d), sorted(d)[len(d)//2], len(d), max(u), sorted(u)[len(u)//2]))
    print("writes", len(w.all_ops()), "problems", w.problems[:3])
    st = tf.verify_writes(env, o, w, "diag a1")
    print("verify_writes OK", st)

"""Diagnostic copy of tests_faults.test_redis_restart_storm (a diagnostic, not part of make test; HUIQID=path to use another build):
same storm, but logs a timeline and always runs verify_writes, to tell a stale read
from a lost acknowledged write."""
import random, sys, threading, time
import os
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
HUIQID = os.environ.get("HUIQID", os.path.join(ROOT, "build", "huiqid"))
import harness
from harness import Env, TestFailure, make_uscc, wait_until
import tests_faults as tf

def run(o, seed_i):
    with Env(o, huiqid_args=tf.FAULT_ARGS) as env:
        w = tf.Writers(env, o, n=3, seed=14, max_ents=30, timeout=10)
        probs = []
        stop_reader = threading.Event()
        events = []
        def reader():
            c = env.new_client()
            rng = random.Random(5 + seed_i)
            while not stop_reader.is_set():
                with w.lock:
                    known = list(w.latest.items())
                if not known:
                    stop_reader.wait(0.02); continue
                u, (ver, t_ack) = rng.choice(known)
                t_req = time.monotonic()
                try:
                    r = c.get("/v1/enterprises/" + u)
                except Exception as e:
                    continue
                if r.status == 200 and r.json["version"] < ver:
                    probs.append((t_req, u, r.json["version"], ver, t_ack))
            c.close()
        rt = threading.Thread(target=reader, daemon=True)
        with w:
            rt.start()
            tf.wait_acks_after(env, w, time.monotonic() + 1.0, o, "warm-up")
            t_storm = time.monotonic(); i = 0
            while time.monotonic() - t_storm < 16:
                t_cycle = time.monotonic()
                if i % 2:
                    env.kill_redis(); events.append((time.monotonic(), "kill-9"))
                else:
                    env.shutdown_redis(); events.append((time.monotonic(), "shutdown"))
                time.sleep(0.3)
                env.start_redis(); events.append((time.monotonic(), "started"))
                i += 1
                wait_until(lambda: time.monotonic() - t_cycle >= 2.0, 10, "next")
            wait_until(lambda: env.readyz_status().status == 200, 10, "ready")
            tf.wait_acks_after(env, w, time.monotonic(), o, "after")
            stop_reader.set(); rt.join(30)
        t0 = t_storm
        print("run %d: %d stale reads" % (seed_i, len(probs)))
        for t, u, got, ver, t_ack in probs[:10]:
            prev = [e for e in events if e[0] <= t]
            print("  t=%.3f GET %s v%d after ack v%d (acked t=%.3f); last event %s" % (
                t - t0, u[-6:], got, ver, t_ack - t0,
                "%s at %.3f" % (prev[-1][1], prev[-1][0] - t0) if prev else None))
        try:
            st = tf.verify_writes(env, o, w, "diag")
            print("  verify_writes OK", st)
        except TestFailure as e:
            print("  verify_writes FAILED:", str(e)[:3000])
        return len(probs)

o = harness.Options(HUIQID, verbose=True)
o.keepalive = True
for k in range(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
    harness.ENVS.clear()
    run(o, k)
    for env in harness.ENVS:
        env.close(); env.cleanup_dir()

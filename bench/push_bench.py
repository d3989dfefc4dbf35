#!/usr/bin/env python3
"""Push pipeline benchmark (issue: "Bulk matching jobs and the push pipeline").

Imports the bench city (bench/bench's NDJSON, PUSH_N enterprises) into a fresh Redis
(deploy/redis.conf) and huiqid on free loopback ports, starts nginx as the webhook
receiver (it answers 204 and logs each call's webhook-id), then:

  1. publishes a policy matching about 100,000 enterprises to a `policy.matched`
     webhook (default settings: 16 requests in flight): the time from the publish request until every delivery is accepted
     (the job is done and delivered == queued, and nginx logged that many distinct
     webhook-ids); meanwhile bench/loadgen reads packages at a steady rate, and the
     p99 of those reads is reported;
  2. publishes a policy matching everyone to a `package.batch` webhook (500
     recipients per call): the time until all its calls are accepted.

Everything listens on 127.0.0.1 and stops by itself. Prints `key value` lines (also
written to var/push/last-run.txt).

  make push-bench            (PUSH_N=1110000)
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD", "build")
N = int(os.environ.get("PUSH_N", "1110000"))
READ_RATE = int(os.environ.get("PUSH_READ_RATE", "2000"))
STAGES = os.environ.get("PUSH_STAGES", "matched,batch").split(",")
READ_MIX = os.environ.get("PUSH_READ_MIX", "read")  # loadgen's mix while the job runs
PERF = os.environ.get("PUSH_PERF")  # a file: perf records huiqid during the stages
TODAY = "2026-11-22"
OUT = os.path.join(ROOT, os.environ.get("PUSH_OUT", "var/push"))
LINES = []


def kv(k, v):
    line = "%s %s" % (k, v)
    print(line, flush=True)
    LINES.append(line)


def say(msg):
    print("push-bench: " + msg, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_for(fn, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if fn():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("push-bench: timed out waiting for " + what)


class Api:
    def __init__(self, port, key):
        self.port, self.key = port, key
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def call(self, method, path, body=None, ctype="application/json"):
        h = {"Authorization": "Bearer " + self.key}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h["Content-Type"] = ctype
        try:
            self.c.request(method, path, body=data, headers=h)
            r = self.c.getresponse()
            raw = r.read()
        except (OSError, http.client.HTTPException):
            self.c.close()  # a fresh connection next time
            raise OSError("huiqid did not answer %s %s" % (method, path))
        return r.status, (json.loads(raw) if raw else None)


def ids_logged(path):
    try:
        with open(path) as f:
            return len({line.split(" ", 1)[0] for line in f if line.strip()})
    except OSError:
        return 0


def run_job(api, policy, ids_log, label, timeout=600):
    """Creates and publishes 'policy'; returns (seconds, job) once every delivery
    of its job is accepted."""
    st, p = api.call("POST", "/v1/policies", policy)
    if st != 201:
        raise SystemExit("push-bench: POST /v1/policies answered %d %s" % (st, p))
    t0 = time.time()
    st, pub = api.call("POST", "/v1/policies/%d/publish" % p["id"])
    if st != 200 or not pub.get("job"):
        raise SystemExit("push-bench: publish answered %d %s" % (st, pub))
    job = pub["job"]
    end = t0 + timeout
    while time.time() < end:
        st, j = api.call("GET", "/v1/jobs/%d" % job)
        if st == 200 and j["state"] != "running" and j["queued"] and \
                j["delivered"] + j["failed"] + j["expired"] >= j["queued"]:
            return time.time() - t0, j
        time.sleep(0.05)
    raise SystemExit("push-bench: %s did not finish in %d s: %s" % (label, timeout, j))


def main():
    os.makedirs(OUT, exist_ok=True)
    for tool in ("redis-server", "nginx"):
        if shutil.which(tool) is None and not os.path.exists("/usr/sbin/" + tool):
            raise SystemExit("push-bench: %s is missing (./deploy/install-deps.sh --bench)" % tool)
    subprocess.run(["make", "-s", "BUILD=" + BUILD, BUILD + "/huiqid", BUILD + "/bench/bench",
                    BUILD + "/bench/loadgen"], cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp(prefix="huiqi-push.")
    procs = []
    try:
        ndjson = os.path.join(tmp, "city.ndjson")
        say("generating %d enterprises" % N)
        subprocess.run([os.path.join(ROOT, BUILD, "bench/bench"), "--n", str(N), "--policies",
                        "20", "--today", TODAY, "--only-data", "--ndjson", ndjson,
                        "--policies-json", os.path.join(tmp, "p.json")],
                       check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        usccs = os.path.join(tmp, "usccs.txt")
        with open(ndjson) as f, open(usccs, "w") as o:
            for i, line in enumerate(f):
                if i % 7 == 0:
                    o.write(json.loads(line)["uscc"] + "\n")

        rp, hp, np_ = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen(
            ["redis-server", os.path.join(ROOT, "deploy/redis.conf"), "--port", str(rp),
             "--dir", tmp, "--logfile", os.path.join(tmp, "redis.log")]))
        wait_for(lambda: socket.create_connection(("127.0.0.1", rp)).close() or True, 10, "Redis")

        ids_log = os.path.join(tmp, "ids.log")
        conf = os.path.join(tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write("""worker_processes 1; daemon off; pid %s/nginx.pid; error_log %s/nginx.err;
events { worker_connections 4096; }
http {
  client_body_temp_path %s; proxy_temp_path %s; fastcgi_temp_path %s;
  uwsgi_temp_path %s; scgi_temp_path %s;
  log_format ids '$http_webhook_id $request_length';
  keepalive_requests 1000000;
  client_max_body_size 64m;
  server {
    listen 127.0.0.1:%d;
    access_log %s ids buffer=256k flush=100ms;
    location / { return 204; }
  }
}
""" % ((tmp,) * 7 + (np_, ids_log)))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        procs.append(subprocess.Popen([nginx, "-c", conf, "-p", tmp]))
        wait_for(lambda: socket.create_connection(("127.0.0.1", np_)).close() or True, 10, "nginx")

        key = subprocess.run([sys.executable, os.path.join(ROOT, "tools/huiqi"), "keys",
                              "generate"], capture_output=True, text=True).stdout.strip()
        env = dict(os.environ, HUIQI_ADMIN_KEY=key)
        procs.append(subprocess.Popen(
            [os.path.join(ROOT, BUILD, "huiqid"), "--listen", "127.0.0.1:%d" % hp, "--redis",
             "127.0.0.1:%d" % rp, "--access-log", "off", "--log-level", "warn", "--today", TODAY,
             "--webhook-allow", "127.0.0.1/32", "--webhook-allow-http", "on"],
            env=env, stderr=open(os.path.join(tmp, "huiqid.log"), "w")))
        api = Api(hp, key)

        def ready():
            return api.call("GET", "/v1/policies?limit=1")[0] == 200
        wait_for(ready, 30, "huiqid")

        say("importing")
        t0 = time.time()
        with open(ndjson, "rb") as f:
            st, r = api.call("POST", "/v1/enterprises:import", f.read(), "application/x-ndjson")
        if st != 200 or r["accepted"] != N:
            raise SystemExit("push-bench: import answered %d %s" % (st, r))
        kv("push_enterprises", N)
        kv("import_s", "%.1f" % (time.time() - t0))

        perf = None
        if PERF:
            perf = subprocess.Popen(["perf", "record", "-g", "-o", PERF, "-p",
                                     str(procs[-1].pid)], stderr=subprocess.DEVNULL)
        # 1. policy.matched to one endpoint, about 100,000 matches.
        # The webhooks keep their defaults (16 requests in flight, no rate limit).
        w1body = {"url": "http://127.0.0.1:%d/matched" % np_, "events": ["policy.matched"]}
        if os.environ.get("PUSH_INFLIGHT"):
            w1body["inflight"] = int(os.environ["PUSH_INFLIGHT"])
        st, w1 = api.call("POST", "/v1/webhooks", w1body)
        rule = {"all": ["size.micro"], "any": ["region.320282"]}
        if "matched" not in STAGES:
            rule = {"all": ["size.micro", "neg.dishonest", "neg.abnormal"]}
        st, a = api.call("POST", "/v1/audience", {"rule": rule})
        kv("matched_audience", a["count"])
        say("policy.matched: publishing a policy matching %d; reads at %d/s meanwhile" %
            (a["count"], READ_RATE))
        lg = subprocess.Popen(
            [os.path.join(ROOT, BUILD, "bench/loadgen"), "--port", str(hp), "--key", key,
             "--rate", str(READ_RATE), "--duration", "600", "--conns", "16", "--mix", READ_MIX,
             "--usccs", usccs, "--policies", "1"],
            stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        secs, job = run_job(api, {"title": "push bench: 100k", "tags": ["fin.loan_discount"],
                                  "rule": rule, "mode": "apply"}, ids_log, "policy.matched")
        lg.send_signal(signal.SIGINT)
        try:
            out, _ = lg.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            lg.kill()
            out = ""
        kv("matched_seconds", "%.2f" % secs)
        kv("matched_delivered", job["delivered"])
        kv("matched_failed", job["failed"])
        time.sleep(0.3)  # nginx flushes its log every 100 ms
        kv("matched_distinct_ids_at_receiver", ids_logged(ids_log))
        if out.strip():
            j = json.loads(out.strip().splitlines()[-1])
            kv("api_reads_during_job_rate", j["rate_achieved"])
            kv("api_reads_during_job_p50_ms", j["latency_ms"]["p50"])
            kv("api_reads_during_job_p99_ms", j["latency_ms"]["p99"])
            kv("api_reads_during_job_errors", j["errors"])

        # 2. package.batch, 500 recipients a call, a policy matching everyone.
        if "batch" not in STAGES:
            return
        api.call("DELETE", "/v1/webhooks/%d" % w1["id"])
        os.rename(ids_log, ids_log + ".1")
        subprocess.run([nginx, "-c", conf, "-p", tmp, "-s", "reopen"], check=False)
        time.sleep(0.3)
        api.call("POST", "/v1/webhooks", {
            "url": "http://127.0.0.1:%d/batch" % np_, "events": ["package.batch"],
            "batch": 500})
        say("package.batch: publishing a policy matching everyone")
        secs, job = run_job(api, {"title": "push bench: everyone", "tags": ["fin.loan_discount"],
                                  "rule": {}, "mode": "apply"}, ids_log, "package.batch")
        kv("batch_recipients", job.get("matched"))
        kv("batch_calls", job["delivered"])
        kv("batch_seconds", "%.2f" % secs)
        time.sleep(0.3)
        kv("batch_distinct_ids_at_receiver", ids_logged(ids_log))
    finally:
        if PERF and perf:
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=60)
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        with open(os.path.join(OUT, "last-run.txt"), "w") as f:
            f.write("\n".join(LINES) + "\n")
        shutil.rmtree(tmp, ignore_errors=True)
    if N == 1110000 and STAGES == ["matched", "batch"] and \
            os.path.exists(os.path.join(ROOT, "var/bench/last-run.txt")):
        # docs/benchmarks.md shows the latest full-size run next to make bench's.
        subprocess.run([os.path.join(ROOT, "bench/run.sh"), "--report-only"], cwd=ROOT)


if __name__ == "__main__":
    main()

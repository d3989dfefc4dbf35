#!/bin/bash
# The HTTP half of the performance gate (`make perf-gate`, run by .ci/run):
# reliability.md D16 asks to gate regressions of the HTTP and Redis figures at
# +10%, but req/s and p99 on a shared 2-core VM move by a fifth from run to run
# (docs/benchmarks.md), so a gate on them would either fail at random or let real
# regressions through. What repeats is the work a request costs: huiqid runs under
# callgrind, and for each endpoint the gate sends GATE_HTTP_REQS requests one after
# the other on one connection and records
#   - instructions per request (callgrind Ir of the whole process between a zero
#     and a dump, so parsing, auth, the handler, JSON and the hiredis and libuv
#     code on the way are all in it; system calls are not), and
#   - Redis commands per request (INFO commandstats before and after),
# then compares both with bench/gate-http-baseline.txt: more than GATE_MAX_PCT (10)
# percent more instructions, or more Redis commands than the baseline allows (10%
# plus 0.05 a request; huiqid's background commands, measured for 1 s before each
# phase, are taken off), fails. The city is
# small (GATE_HTTP_N enterprises, 200 policies) and loaded by a native huiqid
# first; the callgrind one then starts from Redis. GATE_UPDATE=1 writes a new
# baseline (after a deliberate change; say why in the commit).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
N=${GATE_HTTP_N:-20000}
NP=200
REQS=${GATE_HTTP_REQS:-400}
MAX_PCT=${GATE_MAX_PCT:-10}
BASE=bench/gate-http-baseline.txt
OUT=var/bench/gate-http
TODAY=2026-11-22
say() { echo "perf-gate (HTTP): $*" >&2; }
die() { say "$*"; exit 1; }
mkdir -p "$OUT"
rm -f "$OUT"/callgrind.out*

TMP=$(mktemp -d /tmp/huiqi-gate-http.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    cp "$TMP/huiqid.log" "$OUT/huiqid.log" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# wait_ready URL PID SECONDS
wait_ready() {
    local end=$((SECONDS + $3))
    while [ $SECONDS -lt $end ]; do
        curl -sf "$1/readyz" >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# The city, and REQS (+3 to warm up) more enterprises that the register phase creates.
"$BUILD/bench/bench" --n $((N + REQS + 3)) --policies "$NP" --today "$TODAY" --only-data \
    --ndjson "$TMP/all.ndjson" --policies-json "$TMP/policies.json" >/dev/null
head -n "$N" "$TMP/all.ndjson" >"$TMP/city.ndjson"
tail -n $((REQS + 3)) "$TMP/all.ndjson" >"$TMP/new.ndjson"

RP=$(free_port)
redis-server "$ROOT/deploy/redis.conf" --port "$RP" --dir "$TMP" --logfile "$TMP/redis.log" \
    --save "" >/dev/null &
PIDS+=($!)
REDIS_PID=$!
for _ in $(seq 100); do redis-cli -p "$RP" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
HPORT=$(free_port)
URL=http://127.0.0.1:$HPORT
export HUIQI_KEY
HUIQI_KEY=$(python3 tools/huiqi keys generate)
HUIQID_ARGS=(--listen "127.0.0.1:$HPORT" --redis "127.0.0.1:$RP" --access-log off --log-level warn
    --today "$TODAY")

say "loading $N enterprises and $NP policies with a native huiqid"
HUIQI_ADMIN_KEY=$HUIQI_KEY "$BUILD/huiqid" "${HUIQID_ARGS[@]}" 2>>"$TMP/huiqid.log" &
HPID=$!
PIDS+=("$HPID")
wait_ready "$URL" "$HPID" 60 || die "huiqid did not start; see $OUT/huiqid.log"
python3 - "$URL" "$TMP/city.ndjson" "$TMP/policies.json" <<'PY' || die "loading the city failed"
import http.client, json, os, sys, time, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
h = {"Authorization": "Bearer " + os.environ["HUIQI_KEY"]}
def call(method, path, body=None, ctype="application/json"):
    c.request(method, path, body, dict(h, **({"Content-Type": ctype} if body is not None else {})))
    r = c.getresponse()
    return r.status, r.read()
for _ in range(100):  # the bootstrap key is written at start; wait until it is usable
    if call("GET", "/v1/policies?limit=1")[0] == 200:
        break
    time.sleep(0.1)
st, d = call("POST", "/v1/enterprises:import", open(sys.argv[2], "rb").read(), "application/x-ndjson")
r = json.loads(d)
if st != 200 or r.get("rejected"):
    sys.exit("import answered %d: %s" % (st, d[:300]))
jobs = []
for p in json.load(open(sys.argv[3])):
    st, d = call("POST", "/v1/policies", json.dumps(p).encode())
    if st != 201:
        sys.exit("POST /v1/policies answered %d: %s" % (st, d[:300]))
    st, d = call("POST", "/v1/policies/%d/publish" % json.loads(d)["id"])
    if st != 200:
        sys.exit("publish answered %d: %s" % (st, d[:300]))
    j = json.loads(d).get("job")
    if j:
        jobs.append(j)
end = time.time() + 300
while jobs and time.time() < end:  # no webhooks: the jobs only walk their audiences
    jobs = [j for j in jobs if json.loads(call("GET", "/v1/jobs/%d" % j)[1]).get("state") == "running"]
    time.sleep(0.2)
if jobs:
    sys.exit("%d push jobs still running" % len(jobs))
PY
kill -TERM "$HPID"
wait "$HPID" 2>/dev/null || true

say "starting huiqid under callgrind (loads the city from Redis)"
HUIQI_ADMIN_KEY=$HUIQI_KEY valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
    --dump-line=no "$BUILD/huiqid" "${HUIQID_ARGS[@]}" 2>>"$TMP/huiqid.log" &
HPID=$!
PIDS+=("$HPID")
wait_ready "$URL" "$HPID" 600 || die "huiqid under callgrind did not become ready; see $OUT/huiqid.log"

python3 - "$URL" "$RP" "$HPID" "$OUT" "$REQS" "$TMP/city.ndjson" "$TMP/new.ndjson" \
    "$TMP/policies.json" >"$OUT/got.txt" <<'PY' || die "the requests failed"
import glob, http.client, json, os, re, subprocess, sys, time, urllib.parse
url, rport, pid, out, reqs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
city = [json.loads(l) for l in open(sys.argv[6])]
new = [l.encode() for l in open(sys.argv[7])]
rules = [p["rule"] for p in json.load(open(sys.argv[8]))]
u = urllib.parse.urlsplit(url)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
auth = {"Authorization": "Bearer " + os.environ["HUIQI_KEY"]}
step = max(1, len(city) // reqs)
usccs = [city[i * step % len(city)]["uscc"] for i in range(reqs + 3)]

def call(method, path, body=None, ctype="application/json"):
    c.request(method, path, body, dict(auth, **({"Content-Type": ctype} if body is not None else {})))
    r = c.getresponse()
    return r.status, r.read()

def redis_calls():
    """Commands Redis has run, but for the INFO calls that ask."""
    text = subprocess.run(["redis-cli", "-p", rport, "info", "commandstats"], capture_output=True,
                          text=True, check=True).stdout
    return sum(int(m.group(2)) for m in re.finditer(r"^cmdstat_(\S+?):calls=(\d+)", text, re.M)
               if m.group(1) != "info")

def background_rate():
    """huiqid's own commands per second while no request comes (its push queue
    polls, its timers): subtracted from each phase, whose length depends on how
    busy the machine is, so that the figure is what the requests cost."""
    a, t = redis_calls(), time.time()
    time.sleep(1.0)
    return (redis_calls() - a) / (time.time() - t)

def control(*args):
    # vgdb reaches a huiqid blocked in epoll_wait through ptrace (root or
    # CAP_SYS_PTRACE); without it this would wait for ever, so it has a limit.
    try:
        subprocess.run(["callgrind_control", *args, pid], check=True, timeout=120,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        sys.exit("callgrind_control %s failed (%s): %s" % (" ".join(args), e, getattr(e, "stderr", b"")))

phases = [
    ("get_package", lambda i: ("GET", "/v1/enterprises/%s/policies" % usccs[i], None), 200),
    ("get_enterprise", lambda i: ("GET", "/v1/enterprises/%s" % usccs[i], None), 200),
    ("get_audience", lambda i: ("GET", "/v1/policies/%d/audience" % (i % len(rules) + 1), None), 200),
    ("post_audience", lambda i: ("POST", "/v1/audience",
                                 json.dumps({"rule": rules[i % len(rules)]}).encode()), 200),
    ("patch_enterprise", lambda i: ("PATCH", "/v1/enterprises/%s" % usccs[i],
                                    b'{"employees":%d}' % (37 + 101 * i % 400)), 200),
    ("post_enterprise", lambda i: ("POST", "/v1/enterprises", new[i]), 201),
]
for name, make, want in phases:
    def send(i):
        method, path, body = make(i)
        st, d = call(method, path, body,
                     "application/merge-patch+json" if method == "PATCH" else "application/json")
        if st != want:
            sys.exit("%s %s answered %d, not %d: %s" % (method, path, st, want, d[:300]))
    # Warm up outside the count (first-time allocations, huiqid's per-policy render
    # cache): GETs go over the very requests once; the others (registrations must
    # not repeat) get 3 of their own.
    for i in range(3) if make(0)[0] != "GET" else range(3, reqs + 3):
        send(i)
    rate = background_rate()
    control("-z")
    before, t0 = redis_calls(), time.time()
    for i in range(3, reqs + 3):
        send(i)
    after = redis_calls() - rate * (time.time() - t0)
    n_before = len(glob.glob(out + "/callgrind.out.*"))
    control("-d", name)
    for _ in range(600):
        files = glob.glob(out + "/callgrind.out.*")
        if len(files) > n_before:
            break
        time.sleep(0.1)
    dump = max(glob.glob(out + "/callgrind.out.*"), key=os.path.getmtime)
    ir = None
    for _ in range(100):  # the dump may still be being written
        m = re.search(r"^(?:summary|totals): (\d+)", open(dump).read(), re.M)
        if m:
            ir = int(m.group(1))
            break
        time.sleep(0.1)
    if ir is None:
        sys.exit("no total in " + dump)
    print("%s %d %.3f" % (name, ir // reqs, (after - before) / reqs))
    sys.stdout.flush()
PY

python3 - "$OUT/got.txt" "$BASE" "$MAX_PCT" "${GATE_UPDATE:-0}" "$N" "$REQS" <<'PY'
import sys
got_f, base, max_pct, update, n, reqs = sys.argv[1:7]
max_pct = float(max_pct)
got = {}
for line in open(got_f):
    k, ir, rc = line.split()
    got[k] = (int(ir), float(rc))
cpu = "?"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
if update == "1":
    with open(base, "w") as f:
        f.write("# bench/gate_http.sh baseline: per request, instructions of huiqid (callgrind Ir)\n"
                "# and Redis commands, %s requests a phase on %s enterprises; machine: %s.\n"
                "# Written with GATE_UPDATE=1.\n" % (reqs, n, cpu))
        for k, (ir, rc) in got.items():
            f.write("%s %d %.3f\n" % (k, ir, max(0.0, rc)))
    print("perf-gate (HTTP): wrote %s" % base)
    sys.exit(0)
ref = {}
for line in open(base):
    if line.strip() and not line.startswith("#"):
        k, ir, rc = line.split()
        ref[k] = (int(ir), float(rc))
bad = 0
print("%-17s %12s %12s %8s %10s %10s" % ("request", "baseline Ir", "this Ir", "change",
                                         "Redis/req", "baseline"))
for k, (ir, rc) in got.items():
    if k not in ref:
        sys.exit("perf-gate (HTTP): %s is not in %s; GATE_UPDATE=1 to add it" % (k, base))
    rir, rrc = ref[k]
    ch = 100.0 * (ir - rir) / rir
    flag = ""
    if ch > max_pct:
        flag += "  REGRESSION (instructions > +%g%%)" % max_pct
    if rc > rrc * (1 + max_pct / 100) + 0.05:
        flag += "  REGRESSION (Redis commands)"
    bad += bool(flag)
    print("%-17s %12s %12s %+7.1f%% %10.3f %10.3f%s" % (k, "{:,}".format(rir), "{:,}".format(ir), ch,
                                                      rc, rrc, flag))
missing = [k for k in ref if k not in got]
if missing:
    sys.exit("perf-gate (HTTP): no figure for %s" % ", ".join(missing))
if bad:
    sys.exit("perf-gate (HTTP): %d request kind(s) regressed; if that is intended, GATE_UPDATE=1 "
             "make perf-gate and say why in the commit" % bad)
print("perf-gate (HTTP): pass")
PY

#!/bin/bash
# Load and soak tests of huiqid over HTTP (issue: "Load and soak"). Generates a city
# with bench/bench (LOAD_N enterprises, LOAD_NP policies), imports it into a fresh
# Redis (deploy/redis.conf) + huiqid on free loopback ports, then:
#   1. wrk, closed loop, LOAD_CONNS (256) connections, the mixed read/write workload
#      (bench/wrk_mixed.lua) for LOAD_DURATION: maximum throughput, p50/p99;
#   2. bench/loadgen, open loop, at 80% of that maximum: p50/p99/p99.9 measured from
#      each request's intended send time;
#   3. the same rate (50% of max) with and without 1,000 slow connections that send
#      one byte a second: the p99 ratio;
#   4. unless LOAD_SOAK=0: a soak at 50% of max for SOAK_SECONDS (600), huiqid's RSS
#      sampled every 10 s; growth after a 60 s warm-up.
# Steps 1-3 run LOAD_RUNS (3) times each and report the median (reliability.md
# section 7), with every run's figure alongside.
# Everything stops by itself. Raw results: var/load/last-run.txt (key value lines).
#   make load        (steps 1-3)      make soak (steps 1 and 4)
#   make load-smoke  (20k enterprises, 3 s steps, 20 s soak; for CI)
# With two cores or more, after the import huiqid and Redis run on CPU 0 and wrk and
# loadgen on CPU 1 (as in make bench: the load generator shares the box, so it gets
# a core of its own instead of taking turns with the server), and Redis's AOF rewrite
# child on CPU 1 too (Redis's aof_rewrite_cpulist); LOAD_PIN=0 leaves placement to
# the scheduler.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
MAKE=${MAKE:-make}
N=${LOAD_N:-1110000}
NP=${LOAD_NP:-200}
CONNS=${LOAD_CONNS:-256}
DURATION=${LOAD_DURATION:-30}
SOAK=${LOAD_SOAK:-1}
STEPS=${LOAD_STEPS:-1}
RUNS=${LOAD_RUNS:-3}
SOAK_SECONDS=${SOAK_SECONDS:-600}
SLOW=${LOAD_SLOW_CONNS:-1000}
OUT=${LOAD_OUT:-var/load}
TODAY=2026-11-22
mkdir -p "$OUT"
RAW="$OUT/last-run.txt"
: >"$RAW"
kv() { echo "$1 $2" | tee -a "$RAW"; }
say() { echo "load: $*" >&2; }
die() { say "$*"; exit 1; }

command -v wrk >/dev/null || ./deploy/install-deps.sh --bench >/dev/null || die "cannot install wrk"
$MAKE -s -j"$(nproc)" BUILD="$BUILD" "$BUILD/huiqid" "$BUILD/bench/bench" "$BUILD/bench/loadgen" >/dev/null
# 1,000 slow connections and 256 normal ones on both sides of loopback.
ulimit -n 65536 2>/dev/null || ulimit -n 4096

TMP=$(mktemp -d /tmp/huiqi-load.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    # The servers' logs stay with the results (Redis's shows AOF rewrites and slow
    # fsyncs, the likely cause of an outlying run).
    cp "$TMP/redis.log" "$OUT/redis.log" 2>/dev/null || true
    cp "$TMP/huiqid.log" "$OUT/huiqid.log" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

say "generating $N enterprises and $NP policies"
"$BUILD/bench/bench" --n "$N" --policies "$NP" --today "$TODAY" --only-data \
    --ndjson "$TMP/city.ndjson" --policies-json "$TMP/policies.json" >/dev/null
python3 - "$TMP/city.ndjson" "$TMP/usccs.txt" <<'PY'
import json, random, sys
rng = random.Random(7)
codes = [json.loads(l)["uscc"] for l in open(sys.argv[1])]
rng.shuffle(codes)
open(sys.argv[2], "w").write("\n".join(codes[:200000]) + "\n")
PY

PIN=0
if [ "${LOAD_PIN:-1}" != 0 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    PIN=1
fi
# Pinned, Redis's AOF rewrite child (a core's worth of work for about 20 s on this
# city) runs on CPU 1 instead of inheriting CPU 0 from Redis: on a real server it
# would take a spare core, not a third of huiqid's.
REDIS_PIN=()
[ "$PIN" = 1 ] && REDIS_PIN=(--aof_rewrite_cpulist 1 --bgsave_cpulist 1)
RP=$(free_port)
redis-server "$ROOT/deploy/redis.conf" --port "$RP" --dir "$TMP" --logfile "$TMP/redis.log" \
    --save "" "${REDIS_PIN[@]}" >/dev/null &
PIDS+=($!)
for _ in $(seq 100); do redis-cli -p "$RP" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
HPORT=$(free_port)
URL=http://127.0.0.1:$HPORT
export HUIQI_KEY
HUIQI_KEY=$(python3 tools/huiqi keys generate)
HUIQI_ADMIN_KEY=$HUIQI_KEY "$BUILD/huiqid" --listen "127.0.0.1:$HPORT" --redis "127.0.0.1:$RP" \
    --access-log off --log-level warn --today "$TODAY" 2>>"$TMP/huiqid.log" &
HPID=$!
PIDS+=("$HPID")
for _ in $(seq 300); do curl -sf "$URL/readyz" >/dev/null && break; sleep 0.1; done
AUTH="Authorization: Bearer $HUIQI_KEY"
for _ in $(seq 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "$AUTH" "$URL/v1/policies?limit=1")" = 200 ] && break
    sleep 0.1
done

say "importing"
curl -sS --fail-with-body --max-time 3600 -X POST -H 'Content-Type: application/x-ndjson' \
    -H "$AUTH" -H 'Expect:' -T "$TMP/city.ndjson" "$URL/v1/enterprises:import" -o "$TMP/import.json"
python3 - "$URL" "$TMP/policies.json" <<'PY'
import http.client, json, os, sys, time, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
h = {"Authorization": "Bearer " + os.environ["HUIQI_KEY"], "Content-Type": "application/json"}
jobs = []
for p in json.load(open(sys.argv[2])):
    c.request("POST", "/v1/policies", json.dumps(p).encode(), h)
    r = c.getresponse(); d = json.loads(r.read())
    c.request("POST", "/v1/policies/%d/publish" % d["id"], None, h)
    r = c.getresponse(); j = json.loads(r.read()).get("job")
    if j: jobs.append(j)
# No webhooks are registered, so the jobs only walk their audiences; wait for them.
for j in jobs:
    for _ in range(6000):
        c.request("GET", "/v1/jobs/%d" % j, None, h)
        r = c.getresponse(); s = json.loads(r.read())
        if s.get("state") != "running": break
        time.sleep(0.05)
PY
kv load_enterprises "$N"
kv load_policies "$NP"
kv huiqid_rss_kb_loaded "$(awk '/VmRSS/ {print $2}' /proc/$HPID/status)"

# Between phases: the server drains what the last one left and Redis finishes any
# AOF rewrite, so one phase's backlog is not measured in the next.
settle() {
    sleep 3
    for _ in $(seq 300); do
        redis-cli -p "$RP" info persistence | grep -q 'aof_rewrite_in_progress:0' && break
        sleep 0.2
    done
}
# AOF rewrites Redis has started so far (one in progress counts as started).
aof_rewrites() {
    redis-cli -p "$RP" info persistence | tr -d '\r' | awk -F: '
        $1 == "aof_rewrites" {n = $2} $1 == "aof_rewrite_in_progress" {p = $2}
        END {print n + p}'
}
# The import wrote the whole city to the AOF: compact it first, as an operator would
# after a bulk load. Redis rewrites again once the AOF has doubled, which the writes
# of the runs below (about 1 KiB of AOF a PATCH) do not reach; a run that meets a
# rewrite anyway is marked in the results.
redis-cli -p "$RP" bgrewriteaof >/dev/null
sleep 1
settle
LG_PIN=()
if [ "$PIN" = 1 ]; then
    taskset -a -p 0x1 "$HPID" >/dev/null 2>&1 || true
    taskset -a -p 0x1 "${PIDS[0]}" >/dev/null 2>&1 || true
    LG_PIN=(taskset -c 1)
    kv load_pinning "huiqid and Redis on CPU 0, wrk and loadgen (and Redis's AOF rewrite child) on CPU 1"
fi
loadgen() { "${LG_PIN[@]}" "$BUILD/bench/loadgen" --port "$HPORT" --usccs "$TMP/usccs.txt" --policies "$NP" "$@"; }
field() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); v=d
for k in sys.argv[2].split("."): v=v[k]
print(v)' "$1" "$2"; }

# median_run VALUES...: the index (from 0) of the median value (the lower middle
# of an even count).
median_run() {
    local i=0 v
    for v in "$@"; do echo "$v $((i++))"; done | sort -g -k1,1 |
        awk '{r[NR] = $2} END {print r[int((NR + 1) / 2)]}'
}

# Each figure is the median of RUNS runs (reliability.md section 7: at least 3),
# so that one run that meets an AOF rewrite or a noisy neighbour does not decide it.
WRK_ALL=()
WRK_AOF=()
for run in $(seq "$RUNS"); do
    [ "$run" = 1 ] || settle
    A0=$(aof_rewrites)
    say "wrk: $CONNS connections, mixed workload, ${DURATION}s (run $run of $RUNS)"
    LOAD_USCCS=$TMP/usccs.txt LOAD_POLICIES=$NP "${LG_PIN[@]}" wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency \
        -s bench/wrk_mixed.lua "$URL" >"$TMP/wrk-$run.txt" 2>&1 || die "wrk failed: $(cat "$TMP/wrk-$run.txt")"
    cat "$TMP/wrk-$run.txt" >&2
    WRK_ALL+=("$(awk '/^Requests\/sec/ {printf "%d", $2}' "$TMP/wrk-$run.txt")")
    WRK_AOF+=("$(( $(aof_rewrites) - A0 ))")
done
# The run with the median rate gives the latencies reported next to it.
MED=$(median_run "${WRK_ALL[@]}")
WRK_RPS=${WRK_ALL[$MED]}
cp "$TMP/wrk-$((MED + 1)).txt" "$TMP/wrk.txt"
kv load_runs "$RUNS"
kv load_duration_s "$DURATION"
kv wrk_conns "$CONNS"
kv wrk_rps_runs "${WRK_ALL[*]}"
kv wrk_aof_rewrites_runs "${WRK_AOF[*]}"
kv wrk_rps "$WRK_RPS"
kv wrk_p50 "$(awk '$1 == "50%" {print $2}' "$TMP/wrk.txt")"
kv wrk_p99 "$(awk '$1 == "99%" {print $2}' "$TMP/wrk.txt")"
kv wrk_non2xx "$(awk '/^wrk_non2xx/ {print $2}' "$TMP/wrk.txt")"

# open_loop NAME RATE CONNS [loadgen options]: RUNS runs; NAME_p99_runs lists each
# run's p99, and the other NAME_ figures are those of the run with the median p99.
open_loop() {
    local name=$1 rate=$2 conns=$3
    shift 3
    local js=() p99s=() aofs=() run a0
    for run in $(seq "$RUNS"); do
        settle
        say "loadgen: $name, open loop at $rate req/s, $conns connections $*, ${DURATION}s (run $run of $RUNS)"
        a0=$(aof_rewrites)
        js+=("$(loadgen --rate "$rate" --duration "$DURATION" --conns "$conns" --mix mixed "$@")")
        aofs+=("$(( $(aof_rewrites) - a0 ))")
        echo "${js[-1]}" >&2
        p99s+=("$(field "${js[-1]}" latency_ms.p99)")
    done
    local med j
    med=$(median_run "${p99s[@]}")
    j=${js[$med]}
    kv "${name}_rate" "$rate"
    kv "${name}_achieved" "$(field "$j" rate_achieved)"
    kv "${name}_p50_ms" "$(field "$j" latency_ms.p50)"
    kv "${name}_p99_ms" "${p99s[$med]}"
    kv "${name}_p999_ms" "$(field "$j" latency_ms.p999)"
    kv "${name}_errors" "$(field "$j" errors)"
    kv "${name}_p99_runs" "${p99s[*]}"
    kv "${name}_aof_rewrites_runs" "${aofs[*]}"
}

if [ "$STEPS" = 1 ]; then
    open_loop open80 $((WRK_RPS * 80 / 100)) "$CONNS"
    R50=$((WRK_RPS * 50 / 100))
    open_loop slow_base "$R50" 64
    open_loop slow_with "$R50" 64 --slow-conns "$SLOW"
    kv slow_conns "$SLOW"
fi

if [ "$SOAK" = 1 ]; then
    settle
    RS=$((WRK_RPS * 50 / 100))
    say "soak: $RS req/s for ${SOAK_SECONDS}s, RSS every 10 s"
    loadgen --rate "$RS" --duration "$SOAK_SECONDS" --conns 64 --mix mixed >"$TMP/soak.json" &
    LG=$!
    T0=$(date +%s)
    SAMPLES=()
    while kill -0 "$LG" 2>/dev/null; do
        SAMPLES+=("$(( $(date +%s) - T0 )):$(awk '/VmRSS/ {print $2}' /proc/$HPID/status)")
        sleep 10
    done
    wait "$LG"
    cat "$TMP/soak.json" >&2
    kv soak_rate "$RS"
    kv soak_seconds "$SOAK_SECONDS"
    kv soak_rss_kb "${SAMPLES[*]}"
    kv soak_p99_ms "$(field "$(cat "$TMP/soak.json")" latency_ms.p99)"
    kv soak_errors "$(field "$(cat "$TMP/soak.json")" errors)"
    python3 - "${SAMPLES[@]}" <<'PY' | tee -a "$RAW"
import sys
s = [tuple(map(int, x.split(":"))) for x in sys.argv[1:]]
warm = [kb for t, kb in s if t >= 60] or [kb for t, kb in s]
print("soak_rss_growth_after_warmup_kb %d" % (max(warm) - warm[0]))
PY
fi
kill -0 "$HPID" || die "huiqid died during the load test; see $TMP/huiqid.log"
say "done; raw results in $RAW"
# The figures go into docs/benchmarks.md with the last make bench's (a full-size run only).
if [ "$N" = 1110000 ] && [ -s var/bench/last-run.txt ]; then ./bench/run.sh --report-only || true; fi

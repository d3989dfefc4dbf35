#!/bin/sh
# The performance gate (`make perf-gate`, run by .ci/run): instructions counted by
# callgrind in the matcher's hot paths (bench/gate.c: every policy's count and count
# by district, 20,000 packages, audiences listed the way push jobs and the API do)
# on a fixed synthetic city of GATE_N enterprises, against bench/gate-baseline.txt.
# A phase more than GATE_MAX_PCT (10) percent above its baseline fails the gate.
# Instruction counts repeat exactly for the same binary and data, so the gate does
# not depend on what else the machine is doing; it does depend on the compiler and
# on the word loops the CPU offers under valgrind (AVX2 on the reference machine),
# which is why the baseline records the machine. GATE_UPDATE=1 writes a new
# baseline from this run (after a deliberate change; say why in the commit).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
N=${GATE_N:-200000}
MAX_PCT=${GATE_MAX_PCT:-10}
DATA=var/bench/gate
BASE=bench/gate-baseline.txt
mkdir -p "$DATA"
"$BUILD/bench/bench" --data "$DATA" --n "$N" --policies 2000 --today 2026-11-22 --only-data \
    >"$DATA/gen.txt"
valgrind --tool=callgrind --callgrind-out-file="$DATA/callgrind.out" --collect-atstart=no \
    --toggle-collect='gate_*' "$BUILD/bench/gate" "$DATA" "$N" >"$DATA/gate.txt" 2>"$DATA/valgrind.txt" || {
    cat "$DATA/gate.txt" "$DATA/valgrind.txt" >&2
    echo "perf-gate: the gate program failed (a count differs from the truth?)" >&2
    exit 1
}
callgrind_annotate --inclusive=yes --threshold=100 "$DATA/callgrind.out" >"$DATA/annotate.txt"
python3 - "$DATA/annotate.txt" "$BASE" "$MAX_PCT" "${GATE_UPDATE:-0}" "$N" <<'PY'
import os, re, sys
ann, base, max_pct, update, n = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4] == "1", sys.argv[5]
got = {}
for line in open(ann):
    m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+\*?\s*\S*:(gate_\w+)\b", line)
    if m and m.group(2) not in got:
        got[m.group(2)] = int(m.group(1).replace(",", ""))
phases = ["gate_counts", "gate_groups", "gate_packages", "gate_lists"]
missing = [p for p in phases if p not in got]
if missing:
    sys.exit("perf-gate: no instruction count for %s in %s" % (", ".join(missing), ann))
cpu = "?"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
if update:
    with open(base, "w") as f:
        f.write("# bench/gate.sh baseline: instructions (callgrind Ir, inclusive) per phase on\n"
                "# %s enterprises; machine: %s. Written with GATE_UPDATE=1.\n" % (n, cpu))
        for p in phases:
            f.write("%s %d\n" % (p, got[p]))
    print("perf-gate: wrote %s" % base)
    sys.exit(0)
ref = {}
for line in open(base):
    if line.strip() and not line.startswith("#"):
        k, v = line.split()
        ref[k] = int(v)
bad = 0
print("%-14s %16s %16s %9s" % ("phase", "baseline Ir", "this build Ir", "change"))
for p in phases:
    r, g = ref.get(p), got[p]
    ch = 100.0 * (g - r) / r if r else float("inf")
    flag = ""
    if ch > max_pct:
        flag = "  REGRESSION (> +%g%%)" % max_pct
        bad += 1
    print("%-14s %16s %16s %+8.1f%%%s" % (p, "{:,}".format(r) if r else "-", "{:,}".format(g), ch, flag))
if bad:
    sys.exit("perf-gate: %d phase(s) regressed; if that is intended, GATE_UPDATE=1 make perf-gate "
             "and say why in the commit" % bad)
print("perf-gate: pass")
PY

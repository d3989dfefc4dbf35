#!/bin/sh
# Runs one libFuzzer harness for a number of executions instead of a time:
#
#   tests/fuzz/runs.sh HARNESS TOTAL WORKERS
#
# WORKERS processes run $FUZZ_BUILD/fuzz_HARNESS at once, each with its own seed
# and TOTAL/WORKERS executions (libFuzzer's -runs, which counts the corpus it
# loads too), with the flags in $FUZZ_FLAGS (the Makefile's), over the one corpus
# in $FUZZ_BUILD/corpus-HARNESS (the caller has copied the seeds there). Each
# worker's output goes to $FUZZ_BUILD/logs/HARNESS-K.log. Fails if any worker
# fails (a crash, a leak, a timeout, an abort of the harness's own checks: the
# log's tail is printed, the input is where the flags' -artifact_prefix says).
# Prints each worker's final line and the executions in all, with the time they
# took. `make fuzz-http-runs` calls it.
set -eu
harness=$1
total=$2
workers=$3
dir=$FUZZ_BUILD
flags=$FUZZ_FLAGS
mkdir -p "$dir/logs" "$dir/artifacts"
per=$(( (total + workers - 1) / workers ))
start=$(date +%s)
pids=""
k=1
while [ "$k" -le "$workers" ]; do
    # shellcheck disable=SC2086 # $flags is a list of flags
    UBSAN_OPTIONS=print_stacktrace=1 "./$dir/fuzz_$harness" $flags -seed="$k" -runs="$per" \
        "$dir/corpus-$harness" >"$dir/logs/$harness-$k.log" 2>&1 &
    pids="$pids $!"
    k=$((k + 1))
done
fail=0
k=1
for pid in $pids; do
    if ! wait "$pid"; then
        echo "fuzz_$harness worker $k failed; the end of $dir/logs/$harness-$k.log:" >&2
        tail -n 60 "$dir/logs/$harness-$k.log" >&2
        fail=1
    fi
    k=$((k + 1))
done
elapsed=$(( $(date +%s) - start ))
[ "$elapsed" -gt 0 ] || elapsed=1
execs=0
k=1
while [ "$k" -le "$workers" ]; do
    log="$dir/logs/$harness-$k.log"
    grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | sed "s/^/fuzz_$harness worker $k: /" || true
    n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    execs=$((execs + ${n:-0}))
    k=$((k + 1))
done
echo "fuzz_$harness: $execs executions in ${elapsed} s by $workers workers" \
    "($((execs / elapsed)) a second), asked for $total"
[ "$fail" -eq 0 ] || exit 1
if [ "$execs" -lt "$total" ]; then
    echo "fuzz_$harness: fewer executions than asked for" >&2
    exit 1
fi

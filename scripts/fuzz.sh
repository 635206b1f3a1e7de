#!/usr/bin/env bash
# Run the libFuzzer targets of fuzz/ (built with clang in build-fuzz).
#   scripts/fuzz.sh TARGET|all SECONDS [extra libFuzzer flags...]
#   scripts/fuzz.sh summary      Markdown table of build-fuzz/fuzz-stats.txt
# TARGET is a name from fuzz/ (fuzz_gguf, gguf, ...). Each target runs for
# SECONDS on a scratch copy of its committed seed corpus
# (build-fuzz/corpus/<target>, kept between runs so coverage accumulates);
# crash reproducers go to build-fuzz/artifacts/<target>/. The last libFuzzer
# status line of every target (executions, cov, ft) is appended to
# build-fuzz/fuzz-stats.txt. Exits non-zero when any target finds a crash,
# a leak, a timeout or an out-of-memory.
# MEND_FUZZ_JOBS=N runs N worker processes per target (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = summary ]; then
    # per target: runs, seconds, executions summed; cov / ft of the last run
    echo "| target | runs | seconds | executions | cov | ft | failed runs |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    awk '{
        t = $2; sub("secs=", "", $3); sub("execs=", "", $4); sub("rc=", "", $5)
        runs[t]++; secs[t] += $3; ex[t] += $4; if ($5 != 0) bad[t]++
        for (i = 6; i <= NF; i++) { if ($i == "cov:") cov[t] = $(i + 1); if ($i == "ft:") ft[t] = $(i + 1) }
    } END { for (t in runs) printf "| `%s` | %d | %d | %d | %s | %s | %d |\n", t, runs[t], secs[t], ex[t], cov[t], ft[t], bad[t] }' \
        build-fuzz/fuzz-stats.txt | sort
    exit 0
fi
if [ $# -lt 2 ]; then
    echo "usage: scripts/fuzz.sh TARGET|all SECONDS [libFuzzer flags...]" >&2
    exit 2
fi
what=$1 secs=$2
shift 2
B=build-fuzz
if [ ! -f $B/build.ninja ]; then
    cmake -S . -B $B -G Ninja -DCMAKE_C_COMPILER=clang -DMEND_FUZZ=ON -DCMAKE_BUILD_TYPE=Release >&2
fi
cmake --build $B --target fuzz -j"$(nproc)" >&2

if [ "$what" = all ]; then
    targets=$(ls fuzz/fuzz_*.c | xargs -n1 basename | sed 's/\.c$//')
else
    targets=fuzz_${what#fuzz_}
fi
jobs=${MEND_FUZZ_JOBS:-1}
fail=0
for t in $targets; do
    [ -x $B/fuzz/$t ] || { echo "fuzz.sh: $t was not built" >&2; fail=1; continue; }
    mkdir -p $B/corpus/$t $B/artifacts/$t $B/logs
    cp -n fuzz/corpus/$t/* $B/corpus/$t/ 2>/dev/null || true
    log=$B/logs/$t.log
    args=(-max_total_time="$secs" -timeout=30 -rss_limit_mb=3072 -dict=fuzz/mend.dict
          -artifact_prefix=$B/artifacts/$t/ -print_final_stats=1 "$@" $B/corpus/$t)
    echo "== $t ($secs s)" >&2
    set +e
    if [ "$jobs" -gt 1 ]; then
        ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
            $B/fuzz/$t -jobs="$jobs" -workers="$jobs" "${args[@]}" > "$log" 2>&1
    else
        ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
            $B/fuzz/$t "${args[@]}" > "$log" 2>&1
    fi
    rc=$?
    set -e
    last=$(grep -E "^#[0-9]+" "$log" | tail -1 || true)
    execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{s += $2} END {print s + 0}')
    echo "$(date -u +%FT%TZ) $t secs=$secs execs=$execs rc=$rc last: $last" | tee -a $B/fuzz-stats.txt >&2
    if [ $rc -ne 0 ]; then
        echo "fuzz.sh: $t failed (rc $rc); see $log and $B/artifacts/$t/" >&2
        grep -E 'ERROR|runtime error|SUMMARY' "$log" | head -5 >&2
        fail=1
    fi
done
exit $fail

#!/usr/bin/env bash
# Run the libFuzzer targets of fuzz/ (built with clang in build-fuzz).
#   scripts/fuzz.sh TARGET|all SECONDS [extra libFuzzer flags...]
#       campaign: random seed, SECONDS per target, on a growing corpus
#   scripts/fuzz.sh ci [TARGET|all]
#       deterministic pass (what scripts/test.sh runs): replay the committed
#       seeds and reproducers, then a fixed-seed run of a fixed number of
#       executions per target from the committed seeds only
#   scripts/fuzz.sh summary      Markdown table of build-fuzz/fuzz-stats.txt
# TARGET is a name from fuzz/ (fuzz_gguf, gguf, ...).
#
# Campaign: each target runs for SECONDS on a scratch copy of its committed
# seed corpus (build-fuzz/corpus/<target>, kept between runs so coverage
# accumulates). MEND_FUZZ_JOBS=N runs N worker processes per target
# (default 1). MEND_FUZZ_NOBUILD=1 runs the targets as built (no rebuild).
#
# ci: first every file of fuzz/corpus/<target>/ and of the fixed-crash
# reproducers tests/hardening/regressions/<target>/ is run once, whole; then
# libFuzzer mutates from those files alone (a fresh copy in
# build-fuzz/ci/<target>) with -seed=MEND_FUZZ_SEED (default 1) for
# -runs executions (a per-target count sized for about 25 s of one core;
# MEND_FUZZ_RUNS=N overrides it), with no time limit, no corpus reload and
# no mutations from traced comparison operands (-use_cmp=0: they include
# pointers) and, where allowed, no address randomization (setarch -R), so
# the same code gives the same inputs and the same verdict every time.
# MEND_FUZZ_PAR targets run at once (default: the number of cores, up to 2).
#
# Crash reproducers go to build-fuzz/artifacts/<target>/. The last libFuzzer
# status line of every run (executions, cov, ft) is appended to
# build-fuzz/fuzz-stats.txt. Exits non-zero when any target finds a crash,
# a leak, a timeout or an out-of-memory.
set -euo pipefail
cd "$(dirname "$0")/.."
B=build-fuzz
if [ "${1:-}" = summary ]; then
    # per target: runs, seconds, executions summed; the highest cov / ft of a
    # run (the campaign corpus only grows; a ci run starts from the seeds)
    echo "| target | runs | seconds | executions | cov | ft | failed runs |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    awk '{
        t = $2; sub("secs=", "", $3); sub("execs=", "", $4); sub("rc=", "", $5)
        runs[t]++; secs[t] += $3; ex[t] += $4; if ($5 != 0) bad[t]++
        for (i = 6; i <= NF; i++) {
            if ($i == "cov:" && $(i + 1) + 0 > cov[t] + 0) cov[t] = $(i + 1)
            if ($i == "ft:" && $(i + 1) + 0 > ft[t] + 0) ft[t] = $(i + 1)
        }
    } END { for (t in runs) printf "| `%s` | %d | %d | %d | %s | %s | %d |\n", t, runs[t], secs[t], ex[t], cov[t], ft[t], bad[t] + 0 }' \
        $B/fuzz-stats.txt | sort
    exit 0
fi
mode=campaign
if [ "${1:-}" = ci ]; then
    mode=ci
    what=${2:-all}
    [ $# -le 2 ] || { echo "usage: scripts/fuzz.sh ci [TARGET|all]" >&2; exit 2; }
    set --
elif [ $# -lt 2 ]; then
    echo "usage: scripts/fuzz.sh TARGET|all SECONDS [libFuzzer flags...] | ci [TARGET|all] | summary" >&2
    exit 2
else
    what=$1 secs=$2
    shift 2
fi
if [ ! -f $B/build.ninja ]; then
    cmake -S . -B $B -G Ninja -DCMAKE_C_COMPILER=clang -DMEND_FUZZ=ON -DCMAKE_BUILD_TYPE=Release >&2
fi
[ "${MEND_FUZZ_NOBUILD:-0}" = 1 ] || cmake --build $B --target fuzz -j"$(nproc)" >&2

if [ "$what" = all ]; then
    targets=$(ls fuzz/fuzz_*.c | xargs -n1 basename | sed 's/\.c$//')
else
    targets=fuzz_${what#fuzz_}
fi
REG=tests/hardening/regressions
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1
# one OpenMP thread: the inputs are tiny, and idle workers spinning between
# parallel regions took most of a second core (fuzz_gguf ran 2.4x slower)
export OMP_NUM_THREADS=1

# executions of the ci run per target: about 25 s of one core each (CPU time
# measured from the committed inputs: 20 000 runs took 0.4 s for fuzz_bank
# and 5.4 s for fuzz_hf_config)
ci_runs() {
    case $1 in
    fuzz_bank) echo 1000000 ;;
    fuzz_safetensors) echo 600000 ;;
    fuzz_tasks) echo 500000 ;;
    fuzz_adapter) echo 400000 ;;
    fuzz_tokenize) echo 300000 ;;
    fuzz_gguf) echo 150000 ;;
    fuzz_hf_config) echo 80000 ;;
    *) echo 100000 ;;
    esac
}

# record the outcome of one libFuzzer run: stats line, and the error on failure
record() {   # target seconds log rc [note]
    local t=$1 s=$2 log=$3 rc=$4 note=${5:-} last execs
    last=$(grep -aE "^#[0-9]+" "$log" | tail -1 || true)
    execs=$(grep -aE '^stat::number_of_executed_units' "$log" | awk '{s += $2} END {print s + 0}')
    echo "$(date -u +%FT%TZ) $t secs=$s execs=$execs rc=$rc ${note:+$note }last: $last" | tee -a $B/fuzz-stats.txt >&2
    if [ "$rc" -ne 0 ]; then
        echo "fuzz.sh: $t failed (rc $rc); see $log and $B/artifacts/$t/" >&2
        grep -aE 'ERROR|runtime error|SUMMARY|Test unit written' "$log" | head -6 >&2 || true
    fi
}

# ci: replay, then the fixed-seed run of one target; status in $B/ci/<t>.rc
ci_one() {
    local t=$1 seed=${MEND_FUZZ_SEED:-1} runs=${MEND_FUZZ_RUNS:-$(ci_runs "$1")} rc=0 t0 files
    local dir=$B/ci/$t log=$B/logs/$t.ci.log
    rm -rf "$dir"
    mkdir -p "$dir" $B/artifacts/$t $B/logs
    files=$(find fuzz/corpus/$t $REG/$t -type f 2>/dev/null | sort || true)
    echo "== $t ($2 of $3): replay $(echo "$files" | grep -c . || true) committed inputs, then $runs runs with seed $seed" >&2
    # 1. every committed input once, at full length
    if [ -n "$files" ]; then
        # shellcheck disable=SC2086
        $B/fuzz/$t -timeout=60 -rss_limit_mb=3072 -artifact_prefix=$B/artifacts/$t/ $files \
            > $B/logs/$t.replay.log 2>&1 || rc=$?
        if [ $rc -ne 0 ]; then
            echo "fuzz.sh: $t crashed on a committed input (rc $rc); see $B/logs/$t.replay.log" >&2
            grep -aE 'Running:|ERROR|runtime error|SUMMARY' $B/logs/$t.replay.log | grep -B1 -E 'ERROR|runtime|SUMMARY' | head -6 >&2 || true
            echo $rc > $B/ci/$t.rc
            return
        fi
        # shellcheck disable=SC2086
        cp $files "$dir"/
    fi
    # 2. a bounded run whose inputs depend only on the code and the seed
    t0=$(date +%s)
    $norand $B/fuzz/$t -seed="$seed" -runs="$runs" -reload=0 -use_cmp=0 -timeout=60 -rss_limit_mb=3072 \
        -dict=fuzz/mend.dict -artifact_prefix=$B/artifacts/$t/ -print_final_stats=1 "$dir" > "$log" 2>&1 || rc=$?
    record "$t" $(($(date +%s) - t0)) "$log" $rc "ci-seed=$seed"
    echo $rc > $B/ci/$t.rc
}

fail=0
if [ $mode = ci ]; then
    # without address randomization where the kernel allows it: a few
    # coverage counters follow heap and stack addresses
    norand=
    if setarch "$(uname -m)" -R true 2>/dev/null; then norand="setarch $(uname -m) -R"; fi
    par=${MEND_FUZZ_PAR:-$(env -u OMP_NUM_THREADS nproc)}   # (nproc obeys OMP_NUM_THREADS)
    [ "$par" -le 2 ] || par=2
    n=$(echo $targets | wc -w) k=0
    for t in $targets; do
        k=$((k + 1))
        [ -x $B/fuzz/$t ] || { echo "fuzz.sh: $t was not built" >&2; fail=1; continue; }
        while [ "$(jobs -rp | wc -l)" -ge "$par" ]; do wait -n || true; done
        rm -f $B/ci/$t.rc
        ci_one "$t" $k "$n" &
    done
    wait
    for t in $targets; do
        [ -x $B/fuzz/$t ] || continue
        [ "$(cat $B/ci/$t.rc 2>/dev/null || echo 1)" = 0 ] || fail=1
    done
    [ $fail = 0 ] && echo "fuzz.sh ci: every target replayed its committed inputs and passed its seeded run" >&2
    exit $fail
fi

jobs=${MEND_FUZZ_JOBS:-1}
for t in $targets; do
    [ -x $B/fuzz/$t ] || { echo "fuzz.sh: $t was not built" >&2; fail=1; continue; }
    mkdir -p $B/corpus/$t $B/artifacts/$t $B/logs
    cp -n fuzz/corpus/$t/* $B/corpus/$t/ 2>/dev/null || true
    log=$B/logs/$t.log
    args=(-max_total_time="$secs" -timeout=30 -rss_limit_mb=3072 -dict=fuzz/mend.dict
          -artifact_prefix=$B/artifacts/$t/ -print_final_stats=1 "$@" $B/corpus/$t)
    echo "== $t ($secs s)" >&2
    rc=0
    if [ "$jobs" -gt 1 ]; then
        $B/fuzz/$t -jobs="$jobs" -workers="$jobs" "${args[@]}" > "$log" 2>&1 || rc=$?
    else
        $B/fuzz/$t "${args[@]}" > "$log" 2>&1 || rc=$?
    fi
    record "$t" "$secs" "$log" $rc
    [ $rc -eq 0 ] || fail=1
done
exit $fail

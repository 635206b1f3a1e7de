#!/bin/sh
# Wall time and CPU seconds of one task, mend eval vs lm-eval (HF backend,
# batch 1), same machine, same thread count, run back to back; the load
# average before and after each run is printed, since the machine may be shared.
# usage: bench/lmeval/bench_speed.sh MEND_BIN TASK [LIMIT] [THREADS] [OUT_DIR]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
mend=$1
task=$2
limit=${3:-}
threads=${4:-2}
out=${5:-/tmp/mend-bench-$task}
data=${MEND_DATA:-$repo/../shared/data}
model=${MEND_HOME:-$HOME/.cache/mend}/models/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$out"
# the machine may be shared: passive OpenMP waiting for both tools, so that
# threads blocked at a barrier yield instead of spinning
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
rm -f "$out/mend.jsonl"
echo "load before mend: $(cut -d' ' -f1-3 /proc/loadavg)"
lim=""
if [ -n "$limit" ]; then lim="--limit $limit"; fi
/usr/bin/time -f "mend %e s wall, %U s user, %S s sys" "$mend" -t "$threads" eval "$model" \
  --task "$data/tasks/$task.jsonl" $lim --out "$out/mend.jsonl" > "$out/mend.txt" 2> "$out/mend.err"
tail -n 2 "$out/mend.err"
echo "load before lm-eval: $(cut -d' ' -f1-3 /proc/loadavg)"
THREADS=$threads "$here/run_lmeval.sh" "$out/lmeval" "$task" "$limit" 1 > /dev/null
grep -E "Elapsed|User time|System time" "$out/lmeval/stderr.txt" | sed 's/^\s*/lm-eval /'
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

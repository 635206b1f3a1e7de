#!/usr/bin/env bash
# Core speed, mend vs llama.cpp, side by side in one run on the same GGUF:
# prompt processing of 512 tokens (pp512) and generation of 128 tokens
# (tg128) at THREADS threads. Each (tool, test) pair is its own process under
# /usr/bin/time -v, run alternately, so every row reports
#   t/s        the tool's own wall-clock figure (mean +/- sd of REPS runs after
#              llama-bench's warm-up: the whole prompt, or one generation step)
#   tok/CPU-s  tokens processed (warm-up included) per CPU second of the whole
#              process (user + sys), which survives a loaded machine better
#   peak RSS   maximum resident set size of the process
#
#   bench/bench_core.sh [MODEL]
# Environment: THREADS (2), REPS (3), MEND_BIN (build/mend),
#   MEND_ISA (unset: the widest this CPU has; avx2 or avx2-novnni: mend held
#     to AVX2, against the llama.cpp built without AVX-512),
#   MEND_PEERS (/opt/mend-peers, or /opt/mend-peers-avx2 when MEND_ISA is
#     avx2*, /opt/mend-peers-avx512 when it is avx512; scripts/peers.sh with
#     MEND_PEERS_ISA=avx2 / avx512 builds those).
# The table header names the instruction set each side ran.
# Prints Markdown with ratios mend / llama.cpp (> 1: mend is faster / larger).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
MODEL="${1:-${MEND_HOME:-$HOME/.cache/mend}/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
THREADS="${THREADS:-2}"
REPS="${REPS:-3}"
MEND_BIN="${MEND_BIN:-$here/build/mend}"
ISA="${MEND_ISA:-}"
case "$ISA" in
  avx2*) PEERS="${MEND_PEERS:-/opt/mend-peers-avx2}" ;;
  avx512) PEERS="${MEND_PEERS:-/opt/mend-peers-avx512}" ;;
  *) PEERS="${MEND_PEERS:-/opt/mend-peers}" ;;
esac
LLAMA_BENCH="$PEERS/bin/llama-bench"
NP=512
NG=128

[[ -f "$MODEL" ]] || { echo "bench_core: model $MODEL not found" >&2; exit 1; }
[[ -x "$MEND_BIN" ]] || { echo "bench_core: $MEND_BIN not built" >&2; exit 1; }
[[ -x "$LLAMA_BENCH" ]] || { echo "bench_core: $LLAMA_BENCH missing; run scripts/peers.sh" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export MEND_ISA="$ISA"
mend_isa=$("$MEND_BIN" info "$MODEL" 2>/dev/null | sed -n 's/^isa: //p')
[[ -n "$mend_isa" ]] || { echo "bench_core: mend info did not name its instruction set" >&2; exit 1; }

# run TAG CMD...: time a process, keep its stdout
run() {
  local tag=$1; shift
  echo "bench_core: $tag" >&2
  /usr/bin/time -v -o "$tmp/$tag.time" "$@" > "$tmp/$tag.out" 2> "$tmp/$tag.err" \
    || { cat "$tmp/$tag.err" >&2; exit 1; }
}

for test in pp tg; do
  if [[ $test == pp ]]; then lp=(-p $NP -n 0); mp=(-p $NP -n 0); else lp=(-p 0 -n $NG); mp=(-p 0 -n $NG); fi
  run "llama-$test" "$LLAMA_BENCH" -m "$MODEL" -t "$THREADS" -r "$REPS" -o csv "${lp[@]}"
  run "mend-$test" "$MEND_BIN" -t "$THREADS" bench "$MODEL" -r "$REPS" "${mp[@]}"
done

python3 - "$tmp" "$REPS" "$NP" "$NG" "$MODEL" "$THREADS" "$PEERS" "$mend_isa" <<'PY'
import csv, os, re, sys
tmp, reps, np_, ng, model, threads, peers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]
mend_isa = sys.argv[8]

def timev(tag):
    t = open(os.path.join(tmp, tag + ".time")).read()
    get = lambda k: re.search(re.escape(k) + r":\s*([0-9.:]+)", t).group(1)
    return float(get("User time (seconds)")) + float(get("System time (seconds)")), int(get("Maximum resident set size (kbytes)"))

def llama(tag):
    r = list(csv.DictReader(open(os.path.join(tmp, tag + ".out"))))[0]
    return float(r["avg_ts"]), float(r["stddev_ts"])

def mend(tag):
    for line in open(os.path.join(tmp, tag + ".out")):
        m = re.search(r"\| (pp|tg)\d+ \| ([0-9.]+) ± ([0-9.]+) \|", line)
        if m: return float(m.group(2)), float(m.group(3))
    raise SystemExit("bench_core: no result in mend output")

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
try: peer = open(os.path.join(peers, "VERSION")).read().strip()
except OSError: peer = "llama.cpp"
# the peer's build: "(avx2)" in its stamp, else native (this CPU's widest)
m = re.search(r"\((\w+)\)$", peer)
peer_isa = m.group(1) if m else "native"
load = open("/proc/loadavg").read().split()[:3]
print(f"Model `{os.path.basename(model)}`, {threads} threads, {reps} runs after a warm-up; CPU {cpu}; "
      f"load average at the end {' '.join(load)}. mend ISA: {mend_isa} (MEND_ISA={os.environ.get('MEND_ISA') or 'unset'}); "
      f"peer: llama-bench from {peer} (scripts/peers.sh, {peer_isa} build).")
print()
print(f"| test | mend [{mend_isa}] t/s | llama.cpp [{peer_isa}] t/s | ratio | mend tok/CPU-s | llama.cpp tok/CPU-s | ratio "
      "| mend peak RSS | llama.cpp peak RSS |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for test, n, tokens in (("pp", np_, (reps + 1) * np_), ("tg", ng, reps * ng + 1)):
    mt, ms = mend(f"mend-{test}")
    lt, ls = llama(f"llama-{test}")
    mc, mr = timev(f"mend-{test}")
    lc, lr = timev(f"llama-{test}")
    print(f"| {test}{n} | {mt:.1f} ± {ms:.1f} | {lt:.1f} ± {ls:.1f} | {mt/lt:.2f} | {tokens/mc:.1f} | {tokens/lc:.1f} | "
          f"{(tokens/mc)/(tokens/lc):.2f} | {mr/1024:.1f} MiB | {lr/1024:.1f} MiB |")
PY

#!/usr/bin/env bash
# Markdown tables from run_tables.sh's results.tsv.
# Usage: bench/compress/make_tables.sh OUTDIR
set -euo pipefail
RES="${1:-/tmp/mend-compress-tables}/results.tsv"
echo "| file | ppl (mend, gptq protocol) | ctx | windows | file MiB |"
echo "|---|---|---|---|---|"
awk -F'\t' '$2=="mend-gptq" {printf "| %s | %.3f | %s | %s | %.1f |\n", $1, $5, $3, $4, $7/1048576}' "$RES" | sort
echo
echo "| file | llama-perplexity | mend ppl --protocol llamacpp | mend vs llama.cpp | chunks | file MiB |"
echo "|---|---|---|---|---|---|"
awk -F'\t' '$2=="llama.cpp" {l[$1]=$5; c[$1]=$4; b[$1]=$7; o[++n]=$1} $2=="mend-llamacpp" {m[$1]=$5}
  END {for (i=1;i<=n;i++) {f=o[i]; d = (f in m) ? sprintf("%+.3f%%", 100*(m[f]-l[f])/l[f]) : "-";
       printf "| %s | %.4f | %s | %s | %s | %.1f |\n", f, l[f], (f in m)? sprintf("%.4f", m[f]) : "-", d, c[f], b[f]/1048576}}' "$RES" | sort
echo
awk -F'\t' '$1=="compress" {printf "- %s: %s s, %.1f MiB\n", $2, $4, $3/1048576}' "$RES"

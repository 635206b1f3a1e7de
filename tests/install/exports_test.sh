#!/usr/bin/env bash
# libmend.so exports the public mend_* names and nothing else (the version
# script src/mend.map), and its SONAME carries MEND_VERSION's major.
# usage: exports_test.sh LIBMEND_SO EXPECTED_SONAME
set -euo pipefail
lib=$1 want=$2
all=$(nm -D --defined-only "$lib" | awk '{print $3}')
n=$(printf '%s\n' "$all" | grep -c '^mend_' || true)
other=$(printf '%s\n' "$all" | grep -v '^mend_' || true)
if [ -n "$other" ]; then
    echo "libmend.so exports names without the mend_ prefix:"
    printf '%s\n' "$other" | head -20
    exit 1
fi
# the public API is there (a few names from each part of mend.h)
for s in mend_last_error mend_model_load mend_tokenize mend_forward mend_perplexity mend_set_isa; do
    printf '%s\n' "$all" | grep -qx "$s" || { echo "libmend.so does not export $s"; exit 1; }
done
soname=$(objdump -p "$lib" | awk '$1 == "SONAME" {print $2}')
[ "$soname" = "$want" ] || { echo "SONAME is '$soname', expected $want"; exit 1; }
echo "libmend.so: $n mend_* symbols exported, nothing else; SONAME $soname"

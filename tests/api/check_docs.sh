#!/bin/sh
# Compile every ```c program of docs/api.md against include/ alone, so the
# reference's examples break the build of the suite when the API moves.
# usage: check_docs.sh CC SOURCE_DIR
set -eu
cc=$1
src=$2
tmp=$(mktemp -d /tmp/mend_api_docs_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
awk -v dir="$tmp" '
    /^```c$/ { n++; out = sprintf("%s/ex%d.c", dir, n); inblock = 1; next }
    /^```$/  { if (inblock) close(out); inblock = 0; next }
    inblock  { print > out }
' "$src/docs/api.md"
count=0
for f in "$tmp"/ex*.c; do
    [ -e "$f" ] || { echo "docs/api.md holds no C examples"; exit 1; }
    if ! "$cc" -std=c11 -Wall -Wextra -Wno-unused-parameter -Werror -fsyntax-only -I"$src/include" "$f"; then
        echo "docs/api.md: example $(basename "$f" .c | tr -d ex) does not compile"
        exit 1
    fi
    count=$((count + 1))
done
echo "$count examples of docs/api.md compile"

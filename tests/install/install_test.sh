#!/usr/bin/env bash
# The installed library as a user meets it: `cmake --install` into a
# temporary prefix, the examples built by their Makefile through
# `pkg-config --cflags --libs mend` (shared, and with STATIC=1 the static
# library through `pkg-config --static`), then run and checked against the
# library itself:
#   examples/generate on tests/fixtures/logits/tiny_llama.gguf, its top
#   tokens and greedy continuation checked by check_generate (the library's
#   forward in one batch);
#   examples/perplexity on the HF fixture's GGUF, equal to `mend ppl` under
#   both protocols;
#   the command line itself (src/cli, a client of the public headers only)
#   compiled against the prefix's headers and linked to its libmend.so, its
#   perplexity equal to the built mend's.
# usage: install_test.sh CMAKE BUILD_DIR SOURCE_DIR MEND_BIN CHECK_GENERATE
set -euo pipefail
cmake=$1 build=$2 src=$3 mend=$4 check=$5
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

"$cmake" --install "$build" --prefix "$prefix" >/dev/null
for f in lib/libmend.a lib/libmend.so lib/libmend.so.0 include/mend.h bin/mend lib/pkgconfig/mend.pc; do
    [ -e "$prefix/$f" ] || { echo "install: $prefix/$f missing"; exit 1; }
done
soname=$(objdump -p "$prefix/lib/libmend.so" | awk '$1 == "SONAME" {print $2}')
[ "$soname" = libmend.so.0 ] || { echo "install: SONAME is '$soname', expected libmend.so.0"; exit 1; }

export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
cp -r "$src/examples" "$tmp/shared"
cp -r "$src/examples" "$tmp/static"
make -s -C "$tmp/shared" RPATH=1 >/dev/null
make -s -C "$tmp/static" STATIC=1 >/dev/null
# the shared build must resolve libmend from the prefix, the static one not at all
loaded=$(ldd "$tmp/shared/generate" | awk '$1 == "libmend.so.0" {print $3}')
[ -n "$loaded" ] && [ "$(realpath "$loaded")" = "$(realpath "$prefix/lib/libmend.so.0")" ] ||
    { echo "examples: generate loads '$loaded', not $prefix/lib/libmend.so.0"; exit 1; }
if ldd "$tmp/static/generate" | grep -q libmend; then echo "examples: STATIC=1 still loads libmend.so"; exit 1; fi

tiny=$src/tests/fixtures/logits/tiny_llama.gguf
for kind in shared static; do
    "$tmp/$kind/generate" "$tiny" -n 12 -k 5 --ids 95,28,77,7,65,77,23,18 >"$tmp/gen-$kind.txt"
    cat "$tmp/gen-$kind.txt"
    # the example runs on the CPU's widest kernels; so does the check
    env -u MEND_ISA "$check" "$tiny" "$tmp/gen-$kind.txt"
done

# perplexity through the installed library = the mend command's
hf=$src/tests/fixtures/hf/llama.gguf
text=$src/tests/fixtures/hf/make_hf_fixture.py
for proto in gptq llamacpp; do
    mine=$("$tmp/shared/perplexity" "$hf" "$text" --protocol $proto --ctx 48 --chunks 5 2>/dev/null |
        awk '$1 == "ppl" {print $2}')
    # the example runs on the CPU's widest kernels, whatever MEND_ISA the suite's
    # per-ISA stage set; so does the command it is compared with
    cli=$(env -u MEND_ISA "$mend" ppl "$hf" --text "$text" --protocol $proto --ctx 48 --chunks 5 2>/dev/null |
        awk '$1 == "PPL" {print $3}')
    echo "$proto: examples/perplexity $mine, mend ppl $cli"
    awk -v a="$mine" -v b="$cli" 'BEGIN { d = a - b; if (d < 0) d = -d;
        exit !(a != "" && b != "" && d <= 1e-4 + 1e-7 * b) }' ||
        { echo "perplexity: $proto differs"; exit 1; }
done
echo "install test passed"

# the command line builds against the installed library alone: its own
# sources and the prefix's headers, linked to libmend.so (jansson is the
# command line's own dependency: repair's plan and stage files)
cc=${CC:-cc}
# shellcheck disable=SC2046
"$cc" -O1 -std=gnu11 -o "$tmp/mend-installed" "$src"/src/cli/*.c -I"$src/src/cli" \
    $(pkg-config --cflags mend) $(pkg-config --libs mend) -ljansson -lm -Wl,-rpath,"$prefix/lib"
loaded=$(ldd "$tmp/mend-installed" | awk '$1 == "libmend.so.0" {print $3}')
[ "$(realpath "$loaded")" = "$(realpath "$prefix/lib/libmend.so.0")" ] ||
    { echo "command line: loads '$loaded', not $prefix/lib/libmend.so.0"; exit 1; }
a=$(env -u MEND_ISA "$tmp/mend-installed" ppl "$hf" --text "$text" --ctx 48 --chunks 5 2>/dev/null | awk '$1 == "PPL" {print $3}')
b=$(env -u MEND_ISA "$mend" ppl "$hf" --text "$text" --ctx 48 --chunks 5 2>/dev/null | awk '$1 == "PPL" {print $3}')
echo "command line against the installed libmend.so: ppl $a, built mend $b"
[ -n "$a" ] && [ "$a" = "$b" ] || { echo "command line: the installed build's ppl differs"; exit 1; }

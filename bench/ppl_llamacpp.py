#!/usr/bin/env python3
"""llama.cpp's WikiText perplexity (llama-perplexity -c CTX), optionally in
parallel parts, for comparison with `mend ppl --protocol llamacpp`.

llama-perplexity has no chunk offset, and on a shared machine one process
with spinning worker threads can take hours. Chunks are independent (each
starts from an empty cache), so the text can be cut at chunk boundaries into
P files that tokenize to exactly the original tokens of their chunks; P
single-thread llama-perplexity processes then score them, and the parts'
final estimates are combined:
    sum nll_j = count_j * ln(ppl_j)
    sum nll_j^2 from the +/-: err_j = ppl_j * sqrt((m2_j - m1_j^2) / (count_j - 1))
Every cut is checked by re-tokenizing the part with llama.cpp's tokenizer
(llama-cpp-python, vocab only) and comparing with the slice of the whole
text's tokens. The files are written so that llama-perplexity's -f (which
drops one trailing newline) reads exactly the part.

Usage: ppl_llamacpp.py MODEL TEXT [--ctx 512] [--parts 4] [--peers DIR] [--work DIR]
Needs: llama-cpp-python (for tokenization only), $MEND_PEERS/bin/llama-perplexity.
"""
import argparse
import math
import os
import re
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("text")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--parts", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="threads per llama-perplexity process")
    ap.add_argument("--peers", default=os.environ.get("MEND_PEERS", "/opt/mend-peers"))
    ap.add_argument("--work", default="/tmp/mend-ppl-llamacpp")
    a = ap.parse_args()

    import llama_cpp

    vocab = llama_cpp.Llama(a.model, vocab_only=True, verbose=False)
    raw = open(a.text, "rb").read()
    text = raw[:-1] if raw.endswith(b"\n") else raw   # what -f keeps
    add_bos = vocab.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true"
    if add_bos and a.parts > 1:
        sys.exit("ppl_llamacpp: the model adds BOS; cut texts would gain one BOS each - use --parts 1")
    toks = vocab.tokenize(text, add_bos=add_bos, special=False)
    n_chunk = len(toks) // a.ctx
    per = n_chunk // a.parts
    if per < 2:
        sys.exit("ppl_llamacpp: too few chunks for that many parts")
    offs = [0]
    for t in toks:
        offs.append(offs[-1] + len(vocab.detokenize([t])))
    if offs[-1] != len(text):
        sys.exit("ppl_llamacpp: token pieces do not add up to the text; cannot cut")
    bounds = [j * per * a.ctx for j in range(a.parts)] + [len(toks)]
    os.makedirs(a.work, exist_ok=True)
    procs, counts, n_chunks = [], [], 0
    for j in range(a.parts):
        lo, hi = offs[bounds[j]], offs[bounds[j + 1]]
        part = text[lo:hi]
        if vocab.tokenize(part, add_bos=add_bos, special=False) != toks[bounds[j]:bounds[j + 1]]:
            sys.exit(f"ppl_llamacpp: part {j} does not re-tokenize to its slice")
        data = raw[lo:] if j == a.parts - 1 else (part + b"\n" if part.endswith(b"\n") else part)
        path = os.path.join(a.work, f"part{j}.txt")
        open(path, "wb").write(data)
        chunks = (bounds[j + 1] - bounds[j]) // a.ctx
        n_chunks += chunks
        counts.append(chunks * (a.ctx - 1 - a.ctx // 2))
        err = open(os.path.join(a.work, f"part{j}.log"), "w")
        cmd = [os.path.join(a.peers, "bin", "llama-perplexity"), "-m", a.model, "-f", path,
               "-c", str(a.ctx), "-t", str(a.threads)]
        procs.append(subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT))
        print(f"part {j}: tokens {bounds[j]}..{bounds[j + 1]}, {chunks} chunks", file=sys.stderr)
    sum1 = sum2 = 0.0
    for j, p in enumerate(procs):
        if p.wait() != 0:
            sys.exit(f"ppl_llamacpp: llama-perplexity failed on part {j}, see {a.work}/part{j}.log")
        log = open(os.path.join(a.work, f"part{j}.log")).read()
        m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", log)
        ppl, err = float(m.group(1)), float(m.group(2))
        c = counts[j]
        m1 = math.log(ppl)
        m2 = (err / ppl) ** 2 * (c - 1) + m1 * m1
        sum1 += c * m1
        sum2 += c * m2
        print(f"part {j}: PPL = {ppl:.4f} +/- {err:.5f} over {c} tokens", file=sys.stderr)
    n = sum(counts)
    m1, m2 = sum1 / n, sum2 / n
    ppl = math.exp(m1)
    print(f"llama.cpp {a.parts} part(s), {n_chunks} chunks, {n} scored tokens")
    print(f"PPL = {ppl:.4f} +/- {ppl * math.sqrt(max(m2 - m1 * m1, 0.0) / (n - 1)):.5f}")


if __name__ == "__main__":
    main()

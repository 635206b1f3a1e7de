#!/usr/bin/env python3
"""Markdown tables of bench/tune/run_repair.sh: per compressed model, the
original, the compressed model and the model behind each trained prompt, on
WikiText-2 perplexity and on every task, with the share of the compression
gap each prompt closes.

    repair_table.py OUTDIR NAME [NAME ...]

Reads OUTDIR/scores/TAG/{ppl.txt, TASK.jsonl} for TAG in original, NAME,
NAME-ce, NAME-kl. Headline metric per task: exact match for generation, acc
otherwise (lm-eval's). The mean over tasks is the plain mean of the task
means, its standard error from the per-task ones. "gap closed" is
(row - compressed) / (original - compressed), for perplexity on the mean
log-likelihood (log ppl) as well as on ppl itself. "vs compressed" pairs
each example with its own score on the compressed model (the mean over
tasks of the per-example differences, with its standard error).
"""
import json
import math
import os
import re
import sys


def load_task(path, keyed=False):
    vals = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                o = json.loads(line)
                vals[o["index"]] = float(o["em"]) if o["kind"] == "generation_qa" else float(o["acc"])
    return vals if keyed else [vals[i] for i in sorted(vals)]


def paired(sc, tag, base, tasks):
    """Mean over tasks of the per-example difference tag - base, and its
    standard error (per task from the paired differences)."""
    ms, ses = [], []
    for k in tasks:
        a = load_task(os.path.join(sc, tag, k + ".jsonl"), True)
        b = load_task(os.path.join(sc, base, k + ".jsonl"), True)
        m, se = mean_se([a[i] - b[i] for i in sorted(set(a) & set(b))])
        ms.append(m)
        ses.append(se)
    return sum(ms) / len(ms), math.sqrt(sum(x * x for x in ses)) / len(ses)


def mean_se(v):
    n = len(v)
    m = sum(v) / n
    var = sum((x - m) ** 2 for x in v) / (n - 1) if n > 1 else 0.0
    return m, math.sqrt(var / n)


def read_ppl(path):
    txt = open(path).read()
    m = re.search(r"PPL = ([0-9.]+) \+/- ([0-9.]+)", txt)
    return float(m.group(1)), float(m.group(2))


def gap(x, orig, comp):
    d = orig - comp
    return "%.0f%%" % (100.0 * (x - comp) / d) if abs(d) > 1e-12 else "–"


def main(out, names):
    sc = os.path.join(out, "scores")
    tasks = sorted(f[:-6] for f in os.listdir(os.path.join(sc, "original")) if f.endswith(".jsonl"))
    for name in names:
        tags = [("original", "original"), (name, "compressed"), (name + "-ce", "+ prompt, cross-entropy"),
                (name + "-kl", "+ prompt, --distill")]
        tags = [(t, lab) for t, lab in tags if os.path.isdir(os.path.join(sc, t))]
        res = {}
        for t, _ in tags:
            res[t] = {k: mean_se(load_task(os.path.join(sc, t, k + ".jsonl"))) for k in tasks
                      if os.path.exists(os.path.join(sc, t, k + ".jsonl"))}
        print("### %s\n" % name)
        print("| row | " + " | ".join(tasks) + " | mean of %d | vs compressed (paired) | gap closed (mean) | "
              "WikiText-2 ppl | gap closed (ppl / log ppl) |" % len(tasks))
        print("|---|" + "---:|" * (len(tasks) + 5))
        orig_mean = comp_mean = None
        orig_ppl = comp_ppl = None
        for t, lab in tags:
            r = res[t]
            if len(r) != len(tasks):
                continue
            m = sum(r[k][0] for k in tasks) / len(tasks)
            se = math.sqrt(sum(r[k][1] ** 2 for k in tasks)) / len(tasks)
            p, pe = read_ppl(os.path.join(sc, t, "ppl.txt"))
            if t == "original":
                orig_mean, orig_ppl = m, p
            elif t == name:
                comp_mean, comp_ppl = m, p
            g_mean = gap(m, orig_mean, comp_mean) if t not in ("original", name) else ""
            g_ppl = ("%s / %s" % (gap(p, orig_ppl, comp_ppl), gap(math.log(p), math.log(orig_ppl), math.log(comp_ppl)))
                     if t not in ("original", name) else "")
            cells = " | ".join("%.4f" % r[k][0] for k in tasks)
            vs = "%+.4f ± %.4f" % paired(sc, t, name, tasks) if t != name else ""
            print("| %s | %s | %.4f ± %.4f | %s | %s | %.3f ± %.3f | %s |" % (lab, cells, m, se, vs, g_mean, p, pe,
                                                                          g_ppl))
        n = {k: len(load_task(os.path.join(sc, "original", k + ".jsonl"))) for k in tasks}
        print("\nexamples per task: " + ", ".join("%s %d" % (k, n[k]) for k in tasks) + "\n")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])

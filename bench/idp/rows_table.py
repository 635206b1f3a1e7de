#!/usr/bin/env python3
"""Tables of the IDP study of one `mend repair` output directory, built from
the per-example results lines (Markdown on stdout).

    rows_table.py DIR

DIR/results/{original,compressed,single,idp}/TASK.jsonl come from `mend
repair`; DIR/rows/PROMPT/TASK.jsonl (each bank prompt alone) and
DIR/rows/select-A-B/TASK.jsonl (the picks and scores of the attention, router
and loss selectors with layers A..B-1) from bench/idp/run_rows.sh.

A selector's row takes, for every example, the outcome of the prompt it
picked from that prompt's own run: the same numbers a `mend eval --bank
--select S` run gives (checked below against the run mend repair made).
Rows marked "analysis" use information a deployed selector does not have:
the oracle uses the label; "attention, calibrated" divides each prompt's
attention score by that prompt's mean score over the inputs of the *other*
tasks (no labels, but other evaluation inputs), which removes the
input-independent part of the score.

Headline metric per task as mend repair's report: exact match for
generation, acc otherwise. "vs single" is the mean over all examples of all
tasks of (row - single prompt), paired per example, with its standard error.
"""
import json
import math
import os
import sys
from collections import Counter, OrderedDict


def load(path):
    out = {}
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                o = json.loads(line)
                out[o["index"]] = o
    return out


def metric(o):
    if o["kind"] == "generation_qa":
        return float(o["em"])
    return float(o["acc"])


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def main(d):
    bank = json.load(open(os.path.join(d, "bank", "bank.json")))
    prompts = [p["name"] for p in bank["prompts"]]
    tasks = sorted(f[:-6] for f in os.listdir(os.path.join(d, "results", "compressed")) if f.endswith(".jsonl"))
    fixed = OrderedDict()
    for name, sub in (("original", "results/original"), ("compressed, no prompt", "results/compressed")):
        fixed[name] = {t: load(os.path.join(d, sub, t + ".jsonl")) for t in tasks}
    per_prompt = {p: {t: load(os.path.join(d, "rows", p, t + ".jsonl")) for t in tasks} for p in prompts}
    for p in prompts:
        fixed["+ prompt " + p] = per_prompt[p]
    fixed["+ single prompt (all corpora)"] = {t: load(os.path.join(d, "results/single", t + ".jsonl")) for t in tasks}
    ran = {t: load(os.path.join(d, "results/idp", t + ".jsonl")) for t in tasks}
    sel_dirs = sorted(x for x in os.listdir(os.path.join(d, "rows")) if x.startswith("select-"))
    sels = OrderedDict((s, {t: load(os.path.join(d, "rows", s, t + ".jsonl")) for t in tasks}) for s in sel_dirs)

    # the examples every row has
    common = {}
    for t in tasks:
        ids = set(fixed["compressed, no prompt"][t])
        for rows in list(fixed.values()) + list(sels.values()):
            ids &= set(rows[t])
        common[t] = sorted(ids)

    def picked(sel_rows, sel, t, i):
        return sel_rows[t][i]["idp"]["picks"][sel]

    def calibrated_pick(sel_rows, t, i):
        # prior of prompt k: mean attention score over the other tasks' inputs
        pri = calibrated_pick.cache.get((id(sel_rows), t))
        if pri is None:
            acc = [0.0] * len(prompts)
            n = 0
            for u in tasks:
                if u == t:
                    continue
                for j in common[u]:
                    s = sel_rows[u][j]["idp"]["scores"]["attention"]
                    acc = [a + math.log(x) for a, x in zip(acc, s)]
                    n += 1
            if n == 0:   # a single task: its own inputs (then not leave-one-out)
                for j in common[t]:
                    s = sel_rows[t][j]["idp"]["scores"]["attention"]
                    acc = [a + math.log(x) for a, x in zip(acc, s)]
                    n += 1
            pri = [a / n for a in acc]
            calibrated_pick.cache[(id(sel_rows), t)] = pri
        s = sel_rows[t][i]["idp"]["scores"]["attention"]
        v = [math.log(x) - p for x, p in zip(s, pri)]
        return prompts[max(range(len(v)), key=lambda k: (v[k], -k))]
    calibrated_pick.cache = {}

    def oracle_pick(t, i):
        best, key = None, None
        for p in prompts:
            o = per_prompt[p][t][i]
            k = metric(o)
            if key is None or k > key:
                best, key = p, k
        return best

    # rows: name -> per task list of (value, pick or None)
    rows = OrderedDict()
    for name, r in fixed.items():
        rows[name] = {t: [(metric(r[t][i]), None) for i in common[t]] for t in tasks}
    rows["IDP attention, as mend repair ran it (layers %s)" % ":".join(map(str, bank.get("selector", {}).get("layers", [0, 3])))] = \
        {t: [(metric(ran[t][i]), ran[t][i]["idp"]["choice"]) for i in common[t] if i in ran[t]] for t in tasks}
    for s, sr in sels.items():
        rng = s[len("select-"):].replace("-", ":")
        for sel in ("attention", "router", "loss"):
            if not all(sel in sr[t][i]["idp"]["picks"] for t in tasks for i in common[t]):
                continue
            name = "IDP %s%s" % (sel, " (layers %s)" % rng if sel == "attention" else "")
            if name in rows:
                continue  # router and loss do not depend on the probed layers: the first run that has them
            rows[name] = {t: [(metric(per_prompt[p][t][i]), p) for i in common[t]
                              for p in [picked(sr, sel, t, i)]] for t in tasks}
        name = "IDP attention, calibrated (layers %s; analysis)" % rng
        rows[name] = {t: [(metric(per_prompt[p][t][i]), p) for i in common[t]
                          for p in [calibrated_pick(sr, t, i)]] for t in tasks}
    rows["oracle over the bank (uses labels; analysis)"] = \
        {t: [(metric(per_prompt[p][t][i]), p) for i in common[t] for p in [oracle_pick(t, i)]] for t in tasks}

    single = rows["+ single prompt (all corpora)"]
    print("examples per task: " + ", ".join("%s %d" % (t, len(common[t])) for t in tasks) + "\n")
    print("| row | " + " | ".join(tasks) + " | mean | vs single |")
    print("|---|" + "---:|" * (len(tasks) + 2))
    for name, r in rows.items():
        vals = [mean([v for v, _ in r[t]]) for t in tasks]
        diffs = [a[0] - b[0] for t in tasks if len(r[t]) == len(single[t]) for a, b in zip(r[t], single[t])]
        if diffs and len(diffs) > 1:
            m = mean(diffs)
            se = math.sqrt(sum((x - m) ** 2 for x in diffs) / (len(diffs) - 1) / len(diffs))
            vs = "%+.4f ± %.4f" % (m, se)
        else:
            vs = ""
        print("| %s | %s | %.4f | %s |" % (name, " | ".join("%.4f" % v for v in vals), mean(vals), vs))

    split = sum(1 for t in tasks for i in common[t]
                if len({metric(per_prompt[p][t][i]) for p in prompts}) > 1)
    total = sum(len(common[t]) for t in tasks)
    print("\nExamples on which the bank's prompts disagree (some right, some wrong): %d of %d (%.1f%%);"
          " the oracle can only gain on these." % (split, total, 100.0 * split / total if total else 0.0))
    print("\nWhich prompt each selector chose (examples per task; prompts in bank order: %s)\n" % ", ".join(prompts))
    print("| selector | " + " | ".join(tasks) + " |")
    print("|---|" + "---|" * len(tasks))
    for name, r in rows.items():
        if r[tasks[0]] and r[tasks[0]][0][1] is not None:
            cells = []
            for t in tasks:
                c = Counter(p for _, p in r[t])
                cells.append(" ".join(str(c.get(p, 0)) for p in prompts))
            print("| %s | %s |" % (name, " | ".join(cells)))

    for s, sr in sels.items():
        rng = s[len("select-"):].replace("-", ":")
        print("\nAttention scores, layers %s: mean mass per prompt block over all inputs, and how"
              " much of a score is the prompt rather than the input\n" % rng)
        logs = [[math.log(x) for x in sr[t][i]["idp"]["scores"]["attention"]] for t in tasks for i in common[t]]
        K = len(prompts)
        mk = [mean([l[k] for l in logs]) for k in range(K)]
        print("| prompt | mean score | rank-1 share |")
        print("|---|---:|---:|")
        top = Counter(max(range(K), key=lambda k: l[k]) for l in logs)
        for k, p in enumerate(prompts):
            print("| %s | %.4f | %.1f%% |" % (p, mean([math.exp(l[k]) for l in logs]), 100.0 * top.get(k, 0) / len(logs)))
        # spread of log-scores between prompts (per input) vs the spread of a
        # prompt's centred log-score across inputs
        between = mean([math.sqrt(sum((l[k] - mean(l)) ** 2 for k in range(K)) / K) for l in logs])
        within = mean([math.sqrt(mean([(l[k] - mean(l) - (mk[k] - mean(mk))) ** 2 for l in logs])) for k in range(K)])
        print("\nstd of log-score across prompts within an input: %.4f; std of a prompt's (centred) log-score"
              " across inputs: %.4f" % (between, within))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))

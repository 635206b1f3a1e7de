#!/usr/bin/env python3
"""The per-example data behind a `mend repair` table, kept small enough to
commit, and the paired table rebuilt from it (several runs merged by task).

    rows.py export OUT_DIR DEST.tsv.gz [--tasks T1,T2]
    rows.py table DATA.tsv.gz [DATA.tsv.gz ...]

export: one line per example of every task the run has results for, with
the headline metric of each of the four rows (acc; em for generation QA,
as `mend report --repair` pairs them; empty where a row lacks the example),
and one line per WikiText-2 window with its mean NLL per row. The header
records the run's plan (repair.json) and the fingerprint of its compressed
model (as the bank's bank.json records it), so that data from runs on other machines can
be told apart. --tasks keeps only those tasks.

table: the paired differences of `mend repair`'s report (mean of the
per-example differences over the examples both rows hold, ± the sample
standard deviation of the differences / sqrt(n); * beyond 2 SE; recovered
share only where compressed - original exceeds 2 SE), per task and for the
mean over the tasks every row has (error sqrt(sum SE^2) / N), from one or
more exports. A task may come from one export only: a split run gives each
task's four rows from one session, so each task is paired within itself.
"""
import gzip
import json
import math
import os
import sys

ROWS = ["original", "compressed", "single", "idp"]
PAIRS = [("compressed", "original"), ("single", "compressed"), ("idp", "compressed"), ("idp", "single")]


def die(msg):
    sys.stderr.write("rows.py: " + msg + "\n")
    sys.exit(1)


def headline(path, lineno, o):
    for key in ("task", "index"):
        if key not in o:
            die("%s:%d: field '%s' is missing" % (path, lineno, key))
    if o.get("kind") == "generation_qa" or ("em" in o and "acc" not in o):
        key = "em"
    else:
        key = "acc"
    v = o.get(key)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        die("%s:%d: field '%s' is not a finite number" % (path, lineno, key))
    return o["task"], int(o["index"]), float(v)


def read_results(path):
    vals = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                o = json.loads(line)
            except ValueError:
                # a killed run's partial last line: mend drops it on resume too
                continue
            task, idx, v = headline(path, lineno, o)
            vals.setdefault((task, idx), v)   # the first of a repeated index wins
    return vals


def export(out_dir, dest, keep):
    plan_path = os.path.join(out_dir, "repair.json")
    try:
        with open(plan_path) as f:
            plan = json.load(f)
    except (OSError, ValueError) as e:
        die("%s: %s" % (plan_path, e))
    fp = ""
    bpath = os.path.join(out_dir, "bank", "bank.json")   # trained here, or copied from --bank-dir
    if os.path.exists(bpath):
        try:
            with open(bpath) as f:
                b = json.load(f)
            fp = "%s (recipe %s)" % (b.get("model_fingerprint"), b.get("model_recipe"))
        except ValueError as e:
            die("%s: %s" % (bpath, e))
    data = {r: {} for r in ROWS}
    for r in ROWS:
        d = os.path.join(out_dir, "results", r)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if name.endswith(".jsonl"):
                data[r].update(read_results(os.path.join(d, name)))
    keys = sorted(set().union(*[set(v) for v in data.values()]))
    if keep:
        keys = [k for k in keys if k[0] in keep]
    wnll = {}
    for r in ROWS:
        p = os.path.join(out_dir, "ppl", r + ".json")
        if os.path.exists(p):
            try:
                with open(p) as f:
                    w = json.load(f).get("window_nll")
            except ValueError as e:
                die("%s: %s" % (p, e))
            if not isinstance(w, list) or not all(isinstance(x, (int, float)) for x in w):
                die("%s: field 'window_nll' is not an array of numbers" % p)
            wnll[r] = w
    tmp = dest + ".tmp"
    with gzip.open(tmp, "wt") as f:
        f.write("# mend repair per-example headline metrics (acc; em for generation QA) and WikiText-2 window NLL\n")
        f.write("# compress %s, budget %s, model %s\n" % (plan.get("compress"), plan.get("budget"),
                                                       os.path.basename(str(plan.get("model")))))
        f.write("# prompts trained on model fingerprint %s\n" % (fp or "unknown"))
        f.write("# settings: %s\n" % plan.get("settings", ""))
        f.write("kind\ttask\tindex\t" + "\t".join(ROWS) + "\n")
        for task, idx in keys:
            cells = []
            for r in ROWS:
                v = data[r].get((task, idx))
                cells.append("" if v is None else ("%g" % v))
            f.write("ex\t%s\t%d\t%s\n" % (task, idx, "\t".join(cells)))
        n_win = max([len(w) for w in wnll.values()] or [0])
        for i in range(n_win):
            cells = [("%.9g" % wnll[r][i]) if r in wnll and i < len(wnll[r]) else "" for r in ROWS]
            f.write("win\twikitext2\t%d\t%s\n" % (i, "\t".join(cells)))
    os.replace(tmp, dest)
    sys.stderr.write("rows.py: %s: %d examples, %d windows\n" % (dest, len(keys), n_win))


def load(path):
    ex, win = {}, {}
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if line.startswith("#") or line.startswith("kind\t") or not line:
                continue
            cells = line.split("\t")
            if len(cells) != 3 + len(ROWS):
                die("%s:%d: %d fields, expected %d" % (path, lineno, len(cells), 3 + len(ROWS)))
            try:
                vals = [float(c) if c else None for c in cells[3:]]
                idx = int(cells[2])
            except ValueError:
                die("%s:%d: a field is not a number" % (path, lineno))
            row = dict(zip(ROWS, vals))
            if cells[0] == "ex":
                ex.setdefault(cells[1], {})[idx] = row
            elif cells[0] == "win":
                win[idx] = row
            else:
                die("%s:%d: kind '%s' is neither ex nor win" % (path, lineno, cells[0]))
    return ex, win


def paired(items, a, b):
    d = [x[a] - x[b] for x in items if x[a] is not None and x[b] is not None]
    n = len(d)
    if n < 2:
        return n, float("nan"), float("nan")
    m = sum(d) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / (n - 1))
    return n, m, sd / math.sqrt(n)


def cell(n, m, se):
    if not math.isfinite(m):
        return "–"
    if se == 0 and m == 0:
        return "0"
    return "%+.4f ± %.4f%s" % (m, se, " \\*" if abs(m) > 2 * se else "")


def recovered(gap, gap_se, rep):
    # gap: compressed - original (negative: compression lowered the metric)
    if not (math.isfinite(gap) and abs(gap) > 2 * gap_se and gap < 0):
        return "–"
    return "%.0f%%" % (100.0 * rep / -gap)


def mean_of(xs, key):
    v = [x[key] for x in xs if x[key] is not None]
    return sum(v) / len(v) if v else float("nan")


def table(paths):
    tasks, win, sources = {}, {}, {}
    for p in paths:
        ex, w = load(p)
        for t, rows in ex.items():
            if t in tasks:
                die("task %s is in both %s and %s: each task must come from one run" % (t, sources[t], p))
            tasks[t], sources[t] = rows, p
        if w:
            if win:
                die("WikiText-2 windows are in more than one file (%s)" % p)
            win = w
    print("| task | n | original | compressed | single | IDP | compressed − original | single − compressed "
          "| IDP − compressed | IDP − single | recovered: single | recovered: IDP |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    acc = [[0.0, 0.0] for _ in PAIRS]
    n_mean = 0
    for t in sorted(tasks):
        items = list(tasks[t].values())
        ps = [paired(items, a, b) for a, b in PAIRS]
        ns = sorted(set(p[0] for p in ps))
        n = str(ns[0]) if len(ns) == 1 else "%d–%d" % (ns[0], ns[-1])
        means = ["%.4f" % mean_of(items, r) for r in ROWS]
        print("| %s | %s | %s | %s | %s | %s |" % (t, n, " | ".join(means), " | ".join(cell(*p) for p in ps),
                                                   recovered(ps[0][1], ps[0][2], ps[1][1]),
                                                   recovered(ps[0][1], ps[0][2], ps[2][1])))
        if all(p[0] >= 2 for p in ps):
            n_mean += 1
            for k, p in enumerate(ps):
                acc[k][0] += p[1]
                acc[k][1] += p[2] ** 2
    if n_mean:
        ms = [(n_mean, a[0] / n_mean, math.sqrt(a[1]) / n_mean) for a in acc]
        print("| **mean of %d tasks** | | | | | | %s | %s | %s |" % (
            n_mean, " | ".join(cell(*m) for m in ms), recovered(ms[0][1], ms[0][2], ms[1][1]),
            recovered(ms[0][1], ms[0][2], ms[2][1])))
    if win:
        items = list(win.values())
        # lower NLL is better: the gap is compressed - original > 0
        ps = [paired(items, a, b) for a, b in PAIRS]
        ppl = {r: math.exp(mean_of(items, r)) for r in ROWS}
        rec = []
        for r in ("single", "idp"):
            real = math.isfinite(ps[0][1]) and ps[0][1] > 2 * ps[0][2]
            rec.append("%.0f%%" % (100.0 * (ppl["compressed"] - ppl[r]) / (ppl["compressed"] - ppl["original"]))
                       if real and math.isfinite(ppl[r]) else "–")
        print("| WikiText-2 (window NLL; ppl) | %d | %s | %s | %s |" % (
            len(items), " | ".join("%.3f" % ppl[r] if math.isfinite(ppl[r]) else "–" for r in ROWS),
            " | ".join(cell(*p) for p in ps),
            " | ".join(rec)))


def main(argv):
    if len(argv) >= 3 and argv[0] == "export":
        keep = None
        if len(argv) == 5 and argv[3] == "--tasks":
            keep = set(argv[4].split(","))
        elif len(argv) != 3:
            die("usage: rows.py export OUT_DIR DEST.tsv.gz [--tasks T1,T2]")
        export(argv[1], argv[2], keep)
    elif len(argv) >= 2 and argv[0] == "table":
        table(argv[1:])
    else:
        die("usage: rows.py export OUT_DIR DEST.tsv.gz [--tasks T1,T2] | rows.py table DATA.tsv.gz ...")


if __name__ == "__main__":
    main(sys.argv[1:])

#!/usr/bin/env python3
"""Table of a `mend eval --bank B --select S,... --per-prompt` run: accuracy of
no prompt, each single prompt, each selector's picks and the oracle, per task,
and how often each selector chose each prompt (Markdown on stdout).

    idp_table.py RESULTS.jsonl [...]

Every row is computed over the same examples (the lines that hold per-prompt
outcomes). MC tasks use acc (and acc_norm in a second table), generation uses
exact match, LAMBADA greedy accuracy."""
import json
import sys
from collections import OrderedDict, defaultdict


def main(paths):
    per_task = OrderedDict()
    for p in paths:
        with open(p) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                o = json.loads(line)
                idp = o.get("idp")
                if not idp or "per_prompt" not in idp:
                    continue
                per_task.setdefault(o["task"], []).append(idp)
    if not per_task:
        print("no lines with per-prompt outcomes")
        return 1
    first = next(iter(per_task.values()))[0]
    prompts = list(first["per_prompt"].keys())          # "none" first
    sels = [s for s in first["picks"].keys() if s != "oracle"]
    rows = [("compressed, no prompt", lambda e: "none")]
    rows += [("+ prompt " + p, (lambda p: lambda e: p)(p)) for p in prompts if p != "none"]
    rows += [("IDP " + s, (lambda s: lambda e: e["picks"][s])(s)) for s in sels]
    rows += [("oracle (uses labels; analysis only)", lambda e: e["oracle"])]
    tasks = list(per_task.keys())

    def table(metric):
        out = ["| row | " + " | ".join(tasks) + " | mean |", "|---|" + "---:|" * (len(tasks) + 1)]
        for name, pick in rows:
            vals = []
            for t in tasks:
                xs = []
                for e in per_task[t]:
                    r = e["per_prompt"][pick(e)]
                    v = r.get(metric, r.get("acc"))
                    xs.append(v if v is not None else 0.0)
                vals.append(sum(xs) / len(xs))
            out.append("| %s | %s | %.4f |" % (name, " | ".join("%.4f" % v for v in vals), sum(vals) / len(vals)))
        return "\n".join(out)

    n = {t: len(v) for t, v in per_task.items()}
    print("examples per task: " + ", ".join("%s %d" % (t, n[t]) for t in tasks) + "\n")
    print("accuracy (acc; exact match for generation)\n")
    print(table("acc") + "\n")
    if any("acc_norm" in e["per_prompt"]["none"] for v in per_task.values() for e in v):
        print("acc_norm where the task has it (acc elsewhere)\n")
        print(table("acc_norm") + "\n")
    print("choices per task (count of examples)\n")
    hdr = "| selector | task | " + " | ".join(prompts) + " |"
    print(hdr)
    print("|---|---|" + "---:|" * len(prompts))
    for s in sels + ["oracle"]:
        for t in tasks:
            c = defaultdict(int)
            for e in per_task[t]:
                c[e["oracle"] if s == "oracle" else e["picks"][s]] += 1
            print("| %s | %s | %s |" % (s, t, " | ".join(str(c[p]) for p in prompts)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

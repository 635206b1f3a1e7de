"""Per-example comparison of `mend eval` results with lm-eval's logged samples
(converted by samples_to_fixture.py): loglikelihood differences, greedy flags,
predictions and metrics, task by task.

usage: compare.py MEND_RESULTS.jsonl[,MORE.jsonl] LMEVAL_FIXTURE_DIR [NAME]
  NAME: the fixtures samples_to_fixture.py --name NAME wrote
  (lmeval_NAME_<task>.jsonl); default the default model's (lmeval_<task>.jsonl)
"""
import glob
import json
import os
import sys

import numpy as np


def load(paths):
    rows = {}
    for p in paths:
        for line in open(p):
            if line.strip():
                o = json.loads(line)
                rows.setdefault(o["task"], {})[o["index"]] = o
    return rows


def main():
    mend = load(sys.argv[1].split(","))
    pre = "lmeval_%s_" % sys.argv[3] if len(sys.argv) > 3 else "lmeval_"
    # one model's files only: lmeval_<task>.jsonl does not match lmeval_gemma3_<task>.jsonl
    tasks = ("piqa", "arc_easy", "boolq", "copa", "hellaswag", "winogrande", "lambada_openai", "triviaqa")
    ref = load([p for p in sorted(glob.glob(os.path.join(sys.argv[2], pre + "*.jsonl")))
                if os.path.basename(p)[len(pre):-len(".jsonl")] in tasks])
    print("| task | n | max abs dll | mean abs dll | argmax agree | pred agree | metric mend | metric lm-eval |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    tot_n = tot_agree = 0
    for task in sorted(ref):
        if task not in mend:
            continue
        idx = sorted(set(ref[task]) & set(mend[task]))
        d, agree, am_agree = [], 0, 0
        mm, mr = [], []
        for i in idx:
            a, b = mend[task][i], ref[task][i]
            if b["kind"] == "generation_qa":
                agree += a["pred"] == b["pred"]
                am_agree += a["pred"] == b["pred"]
                mm.append(a["em"]), mr.append(b["em"])
                if a["pred"] != b["pred"]:
                    print("  %s[%d]: mend %r lm-eval %r" % (task, i, a["pred"], b["pred"]), file=sys.stderr)
                continue
            la, lb = np.array(a["ll"]), np.array(b["ll"])
            d.extend(np.abs(la - lb).tolist())
            same = a["acc"] == b["acc"] and a.get("acc_norm") == b.get("acc_norm") and \
                a["is_greedy"] == b["is_greedy"]
            agree += same
            am_agree += int(np.argmax(la) == np.argmax(lb))
            mm.append(a["acc"]), mr.append(b["acc"])
            if not same:
                srt = np.sort(lb)[::-1]
                print("  %s[%d]: mend ll %s lm-eval ll %s (lm-eval top-2 margin %.2e)" %
                      (task, i, a["ll"], b["ll"], srt[0] - srt[1] if len(srt) > 1 else 0), file=sys.stderr)
        tot_n += len(idx)
        tot_agree += agree
        print("| %s | %d | %s | %s | %d | %d | %.4f | %.4f |" % (
            task, len(idx), "%.2e" % max(d) if d else "-", "%.2e" % np.mean(d) if d else "-",
            am_agree, agree, np.mean(mm), np.mean(mr)))
    print("\nper-example agreement: %d / %d = %.2f%%" % (tot_agree, tot_n, 100.0 * tot_agree / max(tot_n, 1)))


if __name__ == "__main__":
    main()

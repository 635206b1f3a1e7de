"""Convert an lm-eval --log_samples run of the bench/lmeval task YAMLs into
mend-format result lines (one JSON object per example, the fields `mend eval`
writes) plus the aggregated metrics lm-eval reported, for the parity tests.

usage: samples_to_fixture.py LMEVAL_OUT_DIR FIXTURE_DIR [N] [--name NAME]
  writes FIXTURE_DIR/lmeval_<task>.jsonl (first N examples, default all) and
  FIXTURE_DIR/lmeval_summary.json (lm-eval's own aggregates over its run);
  with --name (another model's fixtures beside the default model's),
  lmeval_NAME_<task>.jsonl and lmeval_NAME_summary.json
"""
import argparse
import glob
import json
import os

KIND = {"piqa": "multiple_choice", "arc_easy": "multiple_choice", "boolq": "multiple_choice",
        "copa": "multiple_choice", "hellaswag": "multiple_choice", "winogrande": "schema",
        "lambada_openai": "language_modeling", "triviaqa": "generation_qa"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("limit", nargs="?", type=int)
    ap.add_argument("--name", default="")
    a = ap.parse_args()
    src, dst, limit = a.src, a.dst, a.limit
    pre = "lmeval_%s_" % a.name if a.name else "lmeval_"
    os.makedirs(dst, exist_ok=True)
    res_file = sorted(glob.glob(os.path.join(src, "*", "results_*.json")))[-1]
    results = json.load(open(res_file))
    summary = {}
    for full, metrics in results["results"].items():
        task = full[len("mend_"):]
        s = {}
        for k, v in metrics.items():
            if "," not in k:
                continue
            name, _filter = k.split(",", 1)
            if isinstance(v, (int, float)):
                s[name] = v
        s["n"] = results["n-samples"][full]["effective"]
        summary[task] = s
    json.dump(summary, open(os.path.join(dst, pre + "summary.json"), "w"), indent=1, sort_keys=True)
    for path in sorted(glob.glob(os.path.join(src, "*", "samples_mend_*.jsonl"))):
        task = os.path.basename(path)[len("samples_mend_"):].rsplit("_", 1)[0]
        kind = KIND[task]
        rows = [json.loads(l) for l in open(path)]
        rows.sort(key=lambda r: r["doc_id"])
        if limit:
            rows = rows[:limit]
        with open(os.path.join(dst, "%s%s.jsonl" % (pre, task)), "w") as f:
            for r in rows:
                o = {"task": task, "index": r["doc_id"], "kind": kind, "model": "lm-eval-hf",
                     "prompt": None}
                if kind == "generation_qa":
                    o["raw"] = r["resps"][0][0]
                    o["pred"] = r["filtered_resps"][0]
                    o["em"] = float(r["exact_match"])
                else:
                    lls = [float(x[0]) for x in r["filtered_resps"]]
                    gr = [x[1] in (True, "True") for x in r["filtered_resps"]]
                    o["ll"] = lls
                    o["is_greedy"] = gr
                    o["acc"] = float(r["acc"])
                    if kind == "multiple_choice":
                        o["acc_norm"] = float(r["acc_norm"])
                f.write(json.dumps(o) + "\n")
        print(task, len(rows))


if __name__ == "__main__":
    main()

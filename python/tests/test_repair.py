"""mend.repair is the repair job (mend_repair_run): a run through Python and
`mend repair` with the same options write the same compressed model, prompts
and results lines and the same report above its timing section; a true
return from the progress callable stops the run at a stage, and the same
call resumes it. And the check every job makes: a prompt or bank trained on
another model is a warning in mend.evaluate, as in `mend eval`."""
import json
import subprocess

import pytest

import mend
from conftest import CORPUS, HF_GGUF, SRC

TASKS = [f"{SRC}/tests/fixtures/eval/toy_mc.jsonl", f"{SRC}/tests/fixtures/eval/toy_gen.jsonl"]
OPTS = dict(budget="quick", steps=4, spec_steps=2, nsamples=8, seqlen=64, train_seqlen=64, ppl_ctx=64, ppl_windows=4)
CLI_OPTS = ["--budget", "quick", "--steps", "4", "--spec-steps", "2", "--nsamples", "8", "--seqlen", "64",
            "--train-seqlen", "64", "--ppl-ctx", "64", "--ppl-windows", "4"]


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    d = tmp_path_factory.mktemp("repair_texts")
    corpus, ppl = d / "corpus.txt", d / "ppl.txt"
    corpus.write_text(CORPUS * 4)
    ppl.write_text(CORPUS * 2)
    return str(corpus), str(ppl)


def _above_cost(md):
    return md.split("## Cost")[0]


def test_repair_matches_the_command(mend_bin, tmp_path, texts):
    corpus, ppl = texts
    stages = []

    def progress(label, done, total, item):
        if label == "stage":
            stages.append((done, total, item))

    md = mend.repair(HF_GGUF, "gptq:int4g32", tmp_path / "py", tasks=TASKS, ppl_text=ppl,
                     domains={"a": corpus, "b": corpus}, calib=[corpus], progress=progress, **OPTS)
    assert [s[0] for s in stages] == list(range(1, 17)) and all(s[1] == 16 for s in stages)
    subprocess.run([mend_bin, "-t", "1", "repair", HF_GGUF, "--compress", "gptq:int4g32", "-o", str(tmp_path / "cli"),
                    "--tasks", ",".join(TASKS), "--ppl-text", ppl, "--bank", f"a={corpus},b={corpus}",
                    "--calib", corpus] + CLI_OPTS, check=True, capture_output=True)
    cli_md = (tmp_path / "cli" / "report.md").read_text()
    assert _above_cost(md.replace(str(tmp_path / "py"), "OUT")) == _above_cost(cli_md.replace(str(tmp_path / "cli"),
                                                                                             "OUT"))
    for f in ["model.gguf", "bank/a/adapter_model.safetensors", "bank/single/adapter_model.safetensors",
              "bank/bank.json"]:
        assert (tmp_path / "py" / f).read_bytes() == (tmp_path / "cli" / f).read_bytes(), f
    for run in ["original", "compressed", "single", "idp"]:
        for task in ["toy_mc", "toy_gen"]:
            a = [json.loads(x) for x in (tmp_path / "py" / "results" / run / f"{task}.jsonl").read_text().splitlines()]
            b = [json.loads(x) for x in (tmp_path / "cli" / "results" / run / f"{task}.jsonl").read_text().splitlines()]
            drop = lambda r: {k: v for k, v in r.items() if k not in ("model", "seconds")}   # noqa: E731
            assert [drop(r) for r in a] == [drop(r) for r in b], (run, task)
    assert _above_cost(mend.repair_report(tmp_path / "py")) == _above_cost(md)


def test_repair_stops_and_resumes(tmp_path, texts):
    corpus, ppl = texts

    def stop_at_bank(label, done, total, item):
        return label == "stage" and done == 3

    kw = dict(tasks=TASKS[:1], ppl_text=ppl, domains={"a": corpus}, calib=[corpus], **OPTS)
    with pytest.raises(mend.MendError, match="stopped"):
        mend.repair(HF_GGUF, "gptq:int4g32", tmp_path / "r", progress=stop_at_bank, **kw)
    assert (tmp_path / "r" / "model.gguf").exists() and not (tmp_path / "r" / "report.md").exists()
    seen = []
    md = mend.repair(HF_GGUF, "gptq:int4g32", tmp_path / "r", progress=lambda *e: seen.append(e), **kw)
    done_earlier = [e for e in seen if e[0] == "stage" and "done earlier" in e[3]]
    assert len(done_earlier) == 2 and "## Cost" in md


def test_repair_refuses_a_bad_spec(tmp_path):
    with pytest.raises(mend.MendError, match="q9_0"):
        mend.repair(HF_GGUF, "gptq:q9_0", tmp_path / "r", tasks=TASKS, ppl_text=TASKS[0], progress=False)
    assert not (tmp_path / "r").exists()


def test_a_prompt_or_bank_for_another_model_is_a_warning(mend_bin, tmp_path, texts):
    # as `mend eval` warns: the prompt was trained on the tiny model, the
    # evaluation runs on a compressed copy of it
    corpus, _ = texts
    subprocess.run([mend_bin, "-t", "1", "tune", HF_GGUF, "--corpus", corpus, "-o", str(tmp_path / "p"), "--tokens", "3",
                    "--steps", "2", "--seqlen", "16", "--no-distill", "--no-plot"], check=True, capture_output=True)
    subprocess.run([mend_bin, "-t", "1", "bank", "build", HF_GGUF, "-o", str(tmp_path / "b"), "--domain", f"a={corpus}",
                    "--steps", "2", "--seqlen", "16", "--n-virtual", "3", "--no-distill", "--no-learned",
                    "--router-windows", "2", "--router-window", "16"], check=True, capture_output=True)
    other = str(tmp_path / "q8.gguf")
    mend.compress(HF_GGUF, other, "q8_0", method="rtn", progress=False)
    with pytest.warns(UserWarning, match=r"prompt .*/p was trained on model fingerprint .* retrain it"):
        mend.evaluate(other, TASKS[0], limit=2, prompt=str(tmp_path / "p"), progress=False)
    with pytest.warns(UserWarning, match=r"bank .*/b was trained on model fingerprint"):
        mend.evaluate(other, TASKS[0], limit=2, bank=str(tmp_path / "b"), select="attention", progress=False)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the model they were trained on: no warning
        mend.evaluate(HF_GGUF, TASKS[0], limit=2, prompt=str(tmp_path / "p"), progress=False)

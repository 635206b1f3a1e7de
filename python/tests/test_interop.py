"""The Python path against the other implementations of the same thing:
a prompt tuned through mend.tune, loaded by PEFT on the transformers model,
gives mend's logits; mend.evaluate writes the results file of `mend eval`
byte for byte (with a prompt, through a bank, resumed after a stop); and
mend.compress writes the file of `mend compress`."""
import os
import subprocess

import numpy as np
import pytest

import mend
from conftest import CORPUS, HF_DIR, HF_GGUF, data, src

PROMPT = src("tests", "fixtures", "tune", "mend_adapter")


@pytest.fixture(scope="module")
def peft_model():
    """PEFT and transformers, or a skip that says which is missing."""
    torch = pytest.importorskip("torch", reason="torch is not importable: no PEFT comparison")
    pytest.importorskip("peft", reason="peft is not importable: no PEFT comparison")
    transformers = pytest.importorskip("transformers", reason="transformers is not importable: no PEFT comparison")
    return torch, transformers


def test_prompt_tuned_in_python_loads_in_peft(peft_model, tmp_path):
    """mend.tune on the Hugging Face fixture; PeftModel.from_pretrained reads
    the adapter, and its logits over the text (after the virtual tokens) equal
    mend's with the prompt within 1e-4 of the logits' scale."""
    torch, transformers = peft_model
    from peft import PeftModel
    m = mend.Model(HF_DIR, packed=False)
    with open(src("tests", "fixtures", "hf", "make_hf_fixture.py")) as f:
        text = f.read()
    r = mend.tune(m, tmp_path / "p", texts=[text], n_virtual=4, seqlen=32, batch=2, steps=6, lr=0.05, progress=False)
    assert r.steps_done == 6
    base = transformers.AutoModelForCausalLM.from_pretrained(HF_DIR, dtype=torch.float32).eval()
    peft = PeftModel.from_pretrained(base, str(tmp_path / "p")).eval()
    assert peft.peft_config["default"].num_virtual_tokens == 4
    ids = m.tokenize("def main():\n    return fixture(1, 2)\n", add_special=False)
    with torch.no_grad():
        want = peft(input_ids=torch.tensor(ids[None].astype(np.int64))).logits[0].numpy()[-len(ids):]
    emb, fp = mend.read_prompt(tmp_path / "p", m)
    assert fp == m.fingerprint()
    got = m.logits(ids, prompt=emb)
    scale = np.abs(want).max()
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4 * scale
    # the prompt moves the logits: the comparison is not of the bare model
    assert np.abs(m.logits(ids) - want).max() > 1e-2 * scale


def cli(mend_bin, *args):
    return subprocess.run([mend_bin, *map(str, args), "-t", "1"], capture_output=True, text=True, check=True)


def tasks():
    # multiple choice past one group of 32, schema, language modelling, generation
    return [data("tasks", "arc_easy.jsonl"), data("tasks", "winogrande.jsonl"),
            data("tasks", "lambada_openai.jsonl"), data("tasks", "triviaqa.jsonl")]


def cli_eval(mend_bin, out, limit, *opts):
    args = ["eval", HF_GGUF, "--out", out, "--limit", limit, *opts]
    for t in tasks():
        args += ["--task", t]
    cli(mend_bin, *args)
    with open(out, "rb") as f:
        return f.read()


def test_evaluate_writes_the_cli_file_with_a_prompt(mend_bin, tmp_path):
    want = cli_eval(mend_bin, tmp_path / "cli.jsonl", 40, "--prompt", PROMPT)
    recs = mend.evaluate(HF_GGUF, tasks(), tmp_path / "py.jsonl", limit=40, prompt=PROMPT, progress=False)
    got = (tmp_path / "py.jsonl").read_bytes()
    assert got == want
    assert len(recs) == want.count(b"\n") and recs[0]["prompt"] == "mend_adapter"
    assert {r["task"] for r in recs} == {"arc_easy", "winogrande", "lambada_openai", "triviaqa"}


def test_evaluate_resumed_after_a_stop_writes_the_cli_file(mend_bin, tmp_path):
    want = cli_eval(mend_bin, tmp_path / "cli.jsonl", 12)
    out = tmp_path / "py.jsonl"

    def stop_at_17(done, total):
        if done == 17:
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        mend.evaluate(HF_GGUF, tasks(), out, limit=12, progress=stop_at_17)
    assert out.read_bytes().count(b"\n") == 17
    with open(out, "ab") as f:   # a killed run's partial line
        f.write(b'{"task": "arc_ea')
    with pytest.raises(mend.MendError, match="resume"):
        mend.evaluate(HF_GGUF, tasks(), out, limit=12, progress=False)
    rest = mend.evaluate(HF_GGUF, tasks(), out, limit=12, resume=True, progress=False)
    assert len(rest) == want.count(b"\n") - 17
    assert out.read_bytes() == want
    with pytest.raises(mend.MendError, match="prompt"):
        mend.evaluate(HF_GGUF, tasks(), out, limit=12, prompt=PROMPT, resume=True, progress=False)


def test_evaluate_through_a_bank_writes_the_cli_file(mend_bin, tmp_path):
    m = mend.Model(HF_GGUF, packed=False)
    corpus = tmp_path / "c.txt"
    corpus.write_text(CORPUS)
    bank = mend.Bank.build(m, tmp_path / "bank", {"a": corpus, "b": corpus}, n_virtual=3, steps=2, seqlen=16,
                           router_windows=2, router_window=16, learned=False, progress=False)
    want = cli_eval(mend_bin, tmp_path / "cli.jsonl", 35, "--bank", bank.dir, "--select", "attention,loss")
    recs = mend.evaluate(m, tasks(), tmp_path / "py.jsonl", limit=35, bank=bank.dir, select="attention,loss",
                         progress=False)
    assert (tmp_path / "py.jsonl").read_bytes() == want
    assert recs[0]["prompt"] == "bank:attention" and set(recs[0]["idp"]["picks"]) == {"attention", "loss"}
    # one example at a time (per-prompt scoring) too
    want = cli_eval(mend_bin, tmp_path / "cli1.jsonl", 3, "--bank", bank.dir, "--select", "loss", "--per-prompt")
    mend.evaluate(m, tasks(), tmp_path / "py1.jsonl", limit=3, bank=bank.dir, select="loss", per_prompt=True,
                  progress=False)
    assert (tmp_path / "py1.jsonl").read_bytes() == want


def test_summaries_and_report_of_a_results_file(tmp_path):
    path = tmp_path / "r.jsonl"
    recs = mend.evaluate(HF_GGUF, [data("tasks", "arc_easy.jsonl"), data("tasks", "lambada_openai.jsonl")], path,
                         limit=6, progress=False)
    s = mend.summarize(path)
    assert [x.task for x in s] == ["arc_easy", "lambada_openai"] and s[0].n == 6
    assert s[0].acc == pytest.approx(np.mean([r["acc"] for r in recs[:6]]))
    assert s[0].acc_norm is not None and s[1].ppl is not None and s[0].ppl is None
    md = mend.report_markdown({"tiny": path})
    assert "| arc_easy |" in md and "tiny" in md
    # scoring without a file: the same numbers
    t = mend.Task(data("tasks", "arc_easy.jsonl"), limit=6)
    assert (t.name, t.kind, t.n) == ("arc_easy", "multiple_choice", 6) and t.line(0) == 1
    with mend.Model(HF_GGUF, packed=False) as m:
        scored = mend.Scorer(m).score(t)
    assert [x.acc for x in scored] == [r["acc"] for r in recs[:6]]
    assert np.allclose(scored[0].ll, recs[0]["ll"], rtol=1e-9)


def test_compress_writes_the_cli_file(mend_bin, tmp_path):
    cli(mend_bin, "compress", HF_GGUF, "-o", tmp_path / "cli.gguf", "--method", "rtn", "--type", "q4_1",
        "--embd-type", "q8_0")
    mend.compress(HF_GGUF, tmp_path / "py.gguf", "q4_1", "rtn", embd_type="q8_0", progress=False)
    assert (tmp_path / "py.gguf").read_bytes() == (tmp_path / "cli.gguf").read_bytes()


def test_compress_gptq_writes_the_cli_file(mend_bin, tmp_path, corpus_file):
    cli(mend_bin, "compress", HF_GGUF, "-o", tmp_path / "cli.gguf", "--bits", "4", "--group", "32", "--calib",
        corpus_file, "--nsamples", 4, "--seqlen", 16, "--seed", 2, "--no-checkpoint")
    mend.compress(HF_GGUF, tmp_path / "py.gguf", "int4-g32-asym", "gptq", calib=corpus_file, nsamples=4,
                  seqlen=16, seed=2, progress=False)
    assert (tmp_path / "py.gguf").read_bytes() == (tmp_path / "cli.gguf").read_bytes()

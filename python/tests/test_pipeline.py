"""The pipeline through Python on the tiny llama fixture: compression with
progress and cancel, prompt tuning with cancel and resume, banks (build,
read, info, select), perplexity with a prompt and with a bank, the model's
feature line, and tqdm as an optional dependency."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import mend
from conftest import CORPUS, HF_GGUF, src

TINY = dict(n_virtual=3, seqlen=16, batch=2, steps=4, lr=0.05, val_frac=0.2, val_seqs=2, ckpt_every=1)


@pytest.fixture(scope="module")
def model():
    with mend.Model(HF_GGUF, packed=False) as m:
        yield m


@pytest.fixture(scope="module")
def bank(model, tmp_path_factory, corpus_file):
    d = tmp_path_factory.mktemp("bank") / "tiny"
    rivers = tmp_path_factory.mktemp("rivers") / "rivers.txt"
    rivers.write_text("\n\n".join(p for p in CORPUS.split("\n\n") if "river" in p or "mill" in p) * 6)
    return mend.Bank.build(model, d, {"all": corpus_file, "rivers": str(rivers)}, n_virtual=3, steps=3, seqlen=16,
                           router_windows=2, router_window=16, learned_windows=4, learned_window=16, progress=False)


def test_features_and_formats(model):
    assert model.features().startswith("llama: GQA 4/2")
    assert mend.qfmt("Q4_K") == "q4_K" and mend.qfmt("int3-g64-sym") == "int3-g64-sym"
    with pytest.raises(mend.MendError, match="q9_9"):
        mend.qfmt("q9_9")


def test_compress_rtn_with_progress(tmp_path):
    events = []
    r = mend.compress(HF_GGUF, tmp_path / "q8.gguf", "q8_0", progress=events.append)
    assert r.n_quantized > 0 and r.file_bytes == os.path.getsize(tmp_path / "q8.gguf")
    assert events and events[-1].stage == "write" and all(isinstance(e, mend.CompressEvent) for e in events)
    fp = mend.Model(tmp_path / "q8.gguf").fingerprint()
    assert fp.source == mend.Model(HF_GGUF).fingerprint().model and fp.recipe


def test_compress_gptq_pruned_with_calibration(tmp_path, corpus_file):
    calib = mend.calibration(HF_GGUF, [corpus_file], nsamples=4, seqlen=16, seed=3)
    assert calib.shape == (4, 16) and calib.dtype == np.int32
    assert np.array_equal(calib, mend.calibration(HF_GGUF, corpus_file, nsamples=4, seqlen=16, seed=3))
    # the same windows given as text files or as tokens: the same weights
    a = mend.compress(HF_GGUF, tmp_path / "a.gguf", "int4-g32-asym", "gptq", calib=corpus_file, nsamples=4,
                      seqlen=16, seed=3, prune="sparsegpt", sparsity="2:4", progress=False)
    b = mend.compress(HF_GGUF, tmp_path / "b.gguf", "int4-g32-asym", "gptq", calib=calib, prune="sparsegpt",
                      sparsity="2:4", progress=False)
    assert a.n_quantized == b.n_quantized
    wa = mend.Model(tmp_path / "a.gguf", packed=False).logits([5, 6, 7])
    wb = mend.Model(tmp_path / "b.gguf", packed=False).logits([5, 6, 7])
    assert np.array_equal(wa, wb)
    with pytest.raises(mend.MendError, match="calib"):
        mend.compress(HF_GGUF, tmp_path / "c.gguf", "q4_0", "gptq", progress=False)


def test_compress_cancel_and_resume(tmp_path, corpus_file):
    out, ckpt = tmp_path / "g.gguf", str(tmp_path / "g.ckpt")

    def stop_after_layer_0(ev):
        if ev.stage == "layer done":
            raise KeyboardInterrupt("enough")

    with pytest.raises(KeyboardInterrupt, match="enough"):
        mend.compress(HF_GGUF, out, "q4_0", "gptq", calib=corpus_file, nsamples=4, seqlen=16, checkpoint=ckpt,
                      progress=stop_after_layer_0)
    assert not out.exists() and os.path.exists(ckpt)
    # resumed after layer 0, stopped after layer 1 by a true return: the library's sentence
    with pytest.raises(mend.MendError, match="stopped"):
        mend.compress(HF_GGUF, out, "q4_0", "gptq", calib=corpus_file, nsamples=4, seqlen=16, checkpoint=ckpt,
                      progress=lambda ev: ev.stage == "layer done")
    r = mend.compress(HF_GGUF, out, "q4_0", "gptq", calib=corpus_file, nsamples=4, seqlen=16, checkpoint=ckpt,
                      progress=False)
    assert r.resumed_layers == 2
    whole = mend.compress(HF_GGUF, tmp_path / "w.gguf", "q4_0", "gptq", calib=corpus_file, nsamples=4, seqlen=16,
                          progress=False)
    assert whole.resumed_layers == 0
    assert (tmp_path / "w.gguf").read_bytes() == out.read_bytes()


def test_tune_cancel_resume_equals_a_whole_run(model, tmp_path):
    seen = []

    def stop_at_2(p):
        seen.append(p)
        return p.step >= 2

    with pytest.raises(mend.MendError, match="cancel"):
        mend.tune(model, tmp_path / "p", texts=[CORPUS], progress=stop_at_2, **TINY)
    assert seen[0].step == 0 and seen[-1].step == 2
    infos = []
    r = mend.tune(model, tmp_path / "p", texts=[CORPUS], resume=True, progress=False, on_info=infos.append, **TINY)
    assert r.steps_done == 4 and math.isfinite(r.best_val) and infos[0].n_train_seqs > 0
    whole = mend.tune(model, tmp_path / "w", texts=[CORPUS], progress=False, **TINY)
    emb, fp = mend.read_prompt(tmp_path / "p", model)
    assert emb.shape == (3, 64) and fp == model.fingerprint()
    assert np.array_equal(emb, mend.read_prompt(tmp_path / "w", 64)[0])
    rec = mend.read_record(tmp_path / "p")
    assert rec.steps == 4 and rec.train_tokens == 4 * 2 * 16
    # continue it: the new prompt counts the tokens behind its start
    mend.tune(model, tmp_path / "c", texts=[CORPUS], init_prompt=tmp_path / "p", progress=False,
              **{k: v for k, v in TINY.items() if k != "n_virtual"})
    assert mend.read_record(tmp_path / "c").start_tokens == rec.train_tokens
    with pytest.raises(mend.MendError, match="windows"):
        mend.tune(model, tmp_path / "x", texts=[CORPUS], windows="diagonal")


def test_write_prompt_reads_back(model, tmp_path):
    p = np.random.default_rng(1).normal(0, 0.1, (2, 64)).astype(np.float32)
    mend.write_prompt(tmp_path / "w", p, model=model, base_model="tiny")
    got, fp = mend.read_prompt(tmp_path / "w", model)
    assert np.array_equal(got, p) and fp.model == model.fingerprint().model
    assert mend.read_record(tmp_path / "w") is None
    with pytest.raises(mend.MendError, match="adapter"):
        mend.read_prompt(tmp_path / "w", 65)


def test_bank_info_and_prompts(bank, model):
    i = bank.info()
    assert (i.n_prompts, i.nv, i.dim, i.default_selector) == (2, 3, 64, "attention")
    assert i.trained_on == bank.fingerprint() and i.trained_on.model == model.fingerprint().model
    assert i.attn_calibration and i.learned_router and len(i.attn_calibration["offsets"]) == 2
    again = mend.Bank(i.dir, model)
    names = [p.name for p in again.prompts()]
    assert names == ["all", "rivers"] and again.prompt("rivers").emb.shape == (3, 64)
    assert again.prompt(1).centroid.shape == (64,)
    emb, _ = mend.read_prompt(os.path.join(i.dir, "rivers"), model)
    assert np.array_equal(again.prompt("rivers").emb, emb)
    with pytest.raises(mend.MendError, match="nope"):
        again.prompt("nope")


@pytest.mark.parametrize("select", ["attention", "attention-calibrated", "router", "loss", "learned"])
def test_selectors_pick_the_argmax(bank, model, select):
    s = bank.selector(model, select)
    inputs = [model.tokenize(t) for t in ("The river runs past the mill.", "A soft prompt repairs the model.")]
    for ids in inputs:
        k, scores = s.pick(ids)
        assert scores.shape == (2,) and k == int(np.argmax(scores))
    choice, scores = s.pick_many(inputs)
    assert choice.tolist() == [s.pick(x)[0] for x in inputs] and scores.shape == (2, 2)


def test_fixed_and_none_selectors(bank, model):
    ids = model.tokenize("The fox.")
    assert bank.selector(model, "fixed:rivers").pick(ids)[0] == 1
    assert bank.selector(model, "none").pick(ids)[0] == -1
    with pytest.raises(mend.MendError, match="psychic"):
        bank.selector(model, "psychic")


def test_perplexity_with_a_prompt_and_a_bank(bank, model):
    ids = model.tokenize(CORPUS)
    plain = mend.perplexity(model, ids=ids, n_ctx=16)
    emb = bank.prompt("all").emb
    with_p = model.perplexity(ids=ids, n_ctx=16, prompt=emb)
    with_dir = model.perplexity(ids=ids, n_ctx=16, prompt=os.path.join(bank.dir, "all"))
    assert with_p.ppl == with_dir.ppl != plain.ppl and with_p.n_scored == plain.n_scored
    fixed = model.perplexity(ids=ids, n_ctx=16, bank=bank.dir, select="fixed:all")
    assert fixed.ppl == pytest.approx(with_p.ppl, rel=1e-6) and "fixed:all" in fixed.report
    r = model.perplexity(ids=ids, n_ctx=16, bank=bank.dir, select="none", per_prompt=True)
    assert r.ppl == pytest.approx(plain.ppl, rel=1e-6)
    assert [row[0] for row in r.rows][:3] == ["no prompt", "all", "rivers"]
    assert r.rows[1][1] == pytest.approx(with_p.ppl, rel=1e-6)
    idp = mend.IDP(model, bank.dir, "attention,loss")
    assert idp.label.endswith(":attention") and set(idp.pick(ids[:20])) == {"attention", "loss"}
    assert model.perplexity(ids=ids, n_ctx=16, bank=idp).report
    idp.close()


def test_tqdm_is_optional(tmp_path):
    """progress=True without tqdm: silent, and nothing fails."""
    code = ("import sys; sys.modules['tqdm'] = None; sys.modules['tqdm.auto'] = None\n"
            "import mend\n"
            f"r = mend.compress({HF_GGUF!r}, {str(tmp_path / 'q.gguf')!r}, 'q8_0', progress=True)\n"
            "print(r.n_quantized > 0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True" and out.stderr == ""

"""Logits through the Python binding against independent references: the
Hugging Face fixture (tests/fixtures/hf, make_hf_fixture.py) run by
transformers, and the NumPy float64 forward of golden.json, within the
tolerance of tests/io/test_hf.c (2e-3)."""
import json

import numpy as np
import pytest

import mend
from conftest import HF_DIR, HF_GGUF, src

TOL = 2e-3


@pytest.fixture(scope="module")
def golden():
    with open(src("tests", "fixtures", "hf", "golden.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def hf_model():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    m = transformers.AutoModelForCausalLM.from_pretrained(HF_DIR, torch_dtype=torch.float32)
    m.eval()
    return m


def hf_logits(hf_model, ids=None, embeds=None):
    import torch
    with torch.no_grad():
        if embeds is not None:
            out = hf_model(inputs_embeds=torch.tensor(embeds[None], dtype=torch.float32))
        else:
            out = hf_model(input_ids=torch.tensor(np.asarray(ids, dtype=np.int64)[None]))
    return out.logits[0].numpy()


@pytest.mark.parametrize("path", [HF_DIR, HF_GGUF], ids=["hf-dir", "gguf"])
def test_logits_equal_transformers(path, golden, hf_model):
    ids = np.array(golden["tokens"], dtype=np.int32)
    got = mend.Model(path).logits(ids)
    want = hf_logits(hf_model, ids)
    assert got.dtype == np.float32 and got.shape == want.shape == (len(ids), 300)
    assert np.abs(got - want).max() < TOL


def test_logits_equal_numpy_reference(golden):
    ids = golden["tokens"]
    got = mend.Model(HF_DIR).logits(ids)
    head = np.array(golden["llama"]["logits_head"])
    assert np.abs(got[:, :head.shape[1]] - head).max() < TOL
    lse = np.log(np.exp(got.astype(np.float64) - got.max(1, keepdims=True)).sum(1)) + got.max(1)
    assert np.abs(lse - np.array(golden["llama"]["lse"])).max() < TOL
    assert got.argmax(1).tolist() == golden["llama"]["argmax"]


def test_last_only_is_the_last_row(golden):
    m = mend.Model(HF_GGUF)
    full = m.logits(golden["tokens"])
    last = m.logits(golden["tokens"], last_only=True)
    assert last.shape == (300,)
    assert np.abs(last - full[-1]).max() < 1e-5


def test_soft_prompt_as_peft_places_it(golden, hf_model):
    """A soft prompt runs before the text, which keeps the positions after
    it: transformers on [prompt; embeddings of ids] gives the same logits."""
    ids = np.array(golden["tokens"], dtype=np.int32)
    table = hf_model.get_input_embeddings().weight.detach().numpy()
    prompt = np.random.default_rng(7).normal(0, 0.5, (3, table.shape[1])).astype(np.float32)
    m = mend.Model(HF_DIR)
    got = m.logits(ids, prompt=prompt)
    want = hf_logits(hf_model, embeds=np.concatenate([prompt, table[ids]]))[3:]
    assert got.shape == (len(ids), 300)
    assert np.abs(got - want).max() < TOL
    # embeddings in: the same as the ids they embed
    assert np.abs(m.logits(embeds=table[ids]) - m.logits(ids)).max() < 1e-4


def test_greedy_generation_follows_the_logits(golden):
    m = mend.Model(HF_GGUF)
    prompt = golden["tokens"][:4]
    new = m.generate_ids(prompt, n=6, stop_at_eog=False)
    assert len(new) == 6
    full = m.logits(np.concatenate([prompt, new]))
    for i, t in enumerate(new):
        row = full[len(prompt) - 1 + i]
        assert row[t] >= row.max() - 1e-4


def test_tokenizer_matches_hf_tokenizers(golden):
    m = mend.Model(HF_DIR)
    ids = m.tokenize(golden["text"], add_special=False, parse_special=True)
    assert ids.dtype == np.int32 and ids.tolist() == golden["text_ids"]
    assert m.detokenize(ids, render_special=True) == golden["text"]
    assert b"".join(m.token_piece(t) for t in ids).decode() == golden["text"]
    assert m.bos == 1 and m.eos == 2 and not m.add_bos and m.is_eog(2)

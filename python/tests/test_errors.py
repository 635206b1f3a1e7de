"""Failures of the C library arrive as mend.MendError carrying
mend_last_error()'s sentence (the same sentence the mend command prints)."""
import subprocess

import numpy as np
import pytest

import mend
from conftest import HF_GGUF, src



def test_missing_file():
    with pytest.raises(mend.MendError) as e:
        mend.Model("/nonexistent/model.gguf")
    assert e.value.code == "EIO" and e.value.status < 0
    assert "/nonexistent/model.gguf" in str(e.value)


def test_truncated_file_gives_the_cli_sentence(tmp_path, mend_bin):
    bad = tmp_path / "cut.gguf"
    with open(HF_GGUF, "rb") as f:
        bad.write_bytes(f.read(3000))
    with pytest.raises(mend.MendError) as e:
        mend.Model(bad)
    assert e.value.code == "EFORMAT"
    assert str(bad) in str(e.value)
    cli = subprocess.run([mend_bin, "info", str(bad)], capture_output=True, text=True)
    assert cli.returncode != 0 and str(e.value) in cli.stderr


def test_bad_arguments():
    m = mend.Model(HF_GGUF)
    with pytest.raises(mend.MendError, match="outside the vocabulary of 300"):
        m.logits([5, 300])
    with pytest.raises(mend.MendError, match="expected shape"):
        m.logits(embeds=np.zeros((2, 7), np.float32))
    with pytest.raises(mend.MendError) as e:
        mend.set_isa("sse9")
    assert e.value.code == "EINVAL" and "sse9" in str(e.value)
    with pytest.raises(mend.MendError, match="gptq or llamacpp"):
        m.perplexity(ids=np.arange(100) % 300, protocol="wiki")
    with pytest.raises(mend.MendError, match="needs at least"):
        m.perplexity(ids=[1, 2, 3], n_ctx=16)


def test_no_tokenizer():
    m = mend.Model(src("tests", "fixtures", "logits", "tiny_llama.gguf"))
    with pytest.raises(mend.MendError, match="no tokenizer"):
        m.tokenize("hello")
    assert m.logits([1, 2, 3]).shape == (3, 96)


def test_a_callback_exception_cancels_and_propagates():
    m = mend.Model(HF_GGUF)
    ids = np.arange(200, dtype=np.int32) % 300

    def progress(done, total, ppl):
        raise KeyError("stop here")

    with pytest.raises(KeyError, match="stop here"):
        m.perplexity(ids=ids, n_ctx=32, progress=progress)
    # a true return cancels: the library's own error
    with pytest.raises(mend.MendError, match="cancel"):
        m.perplexity(ids=ids, n_ctx=32, progress=lambda d, t, p: True)


def test_the_pipeline_fails_with_mends_sentences(tmp_path):
    m = mend.Model(HF_GGUF, packed=False)
    with pytest.raises(mend.MendError, match="/nonexistent/corpus.txt") as e:
        mend.tune(m, tmp_path / "p", "/nonexistent/corpus.txt", progress=False)
    assert e.value.code == "EIO"
    with pytest.raises(mend.MendError, match="/nonexistent/task.jsonl"):
        mend.evaluate(m, "/nonexistent/task.jsonl", progress=False)
    with pytest.raises(mend.MendError, match="/nonexistent/bank"):
        mend.Bank("/nonexistent/bank")
    with pytest.raises(mend.MendError, match="/nonexistent/bank"):
        m.perplexity(ids=np.arange(64) % 300, n_ctx=16, bank="/nonexistent/bank")
    with pytest.raises(mend.MendError, match="/nonexistent/prompt"):
        m.perplexity(ids=np.arange(64) % 300, n_ctx=16, prompt="/nonexistent/prompt")
    with pytest.raises(mend.MendError) as e:
        mend.compress(HF_GGUF, tmp_path / "x.gguf", "int5-g7-asym", progress=False)
    assert e.value.code == "EINVAL" and "group size 7" in str(e.value)
    with pytest.raises(mend.MendError, match="toy_mc.jsonl:"):
        bad = tmp_path / "toy_mc.jsonl"
        bad.write_text('{"query": "q", "choices": ["a", "b"], "gold": 5}\n')
        mend.Task(bad)

"""Perplexity through Python equals `mend ppl` on the same text and model,
under both protocols; the protocol loop with a Python scorer."""
import math
import os
import re
import subprocess

import numpy as np
import pytest

import mend
from conftest import HF_GGUF, src

TEXT = src("tests", "fixtures", "hf", "make_hf_fixture.py")


def cli_ppl(mend_bin, model, text, protocol, n_ctx, n_chunks):
    out = subprocess.run([mend_bin, "ppl", model, "--text", text, "--protocol", protocol, "--ctx", str(n_ctx),
                          "--chunks", str(n_chunks), "-t", "1"], capture_output=True, text=True, check=True).stdout
    return float(re.search(r"^PPL = ([0-9.]+)", out, re.M).group(1))


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


@pytest.mark.parametrize("protocol", ["gptq", "llamacpp"])
def test_equals_the_cli(protocol, mend_bin):
    r = mend.Model(HF_GGUF).perplexity(read(TEXT), protocol=protocol, n_ctx=48, n_chunks=5)
    assert r.n_chunks == 5 and r.n_ctx == 48 and len(r.window_nll) == 5
    assert r.n_scored == 5 * (47 if protocol == "gptq" else 23)
    assert r.ppl == pytest.approx(cli_ppl(mend_bin, HF_GGUF, TEXT, protocol, 48, 5), rel=1e-9, abs=1e-4)


def test_default_model_equals_the_cli(mend_bin):
    model = os.path.join(os.environ.get("MEND_HOME", os.path.expanduser("~/.cache/mend")), "models",
                         "SmolLM2-135M-Instruct.Q4_1.gguf")
    text = os.path.join(os.environ.get("MEND_DATA", src("..", "shared", "data")), "ppl", "wiki.test.raw")
    if not (os.path.exists(model) and os.path.exists(text)):
        pytest.skip("the default model or wiki.test.raw is absent")
    r = mend.Model(model).perplexity(read(text), protocol="llamacpp", n_chunks=2)
    assert r.ppl == pytest.approx(cli_ppl(mend_bin, model, text, "llamacpp", 512, 2), abs=1e-4)


def test_ppl_run_with_a_python_scorer():
    """A scorer giving every token probability 1/300 has perplexity 300;
    the windows and scored positions follow the protocols."""
    tokens = np.arange(130, dtype=np.int32)
    seen = []

    def uniform(win, first):
        seen.append((len(win), first, int(win[0])))
        return np.full(len(win) - 1 - first, math.log(300.0))

    r = mend.ppl_run(tokens, uniform, protocol="gptq", n_ctx=32)
    assert r.ppl == pytest.approx(300.0) and r.n_chunks == 4 and r.n_scored == 4 * 31
    assert seen == [(32, 0, 0), (32, 0, 32), (32, 0, 64), (32, 0, 96)]
    seen.clear()
    r = mend.ppl_run(tokens, uniform, protocol="llamacpp", n_ctx=32, bos=7)
    assert r.n_chunks == 4 and r.n_scored == 4 * 15
    assert all(first == 16 and w0 == 7 for _, first, w0 in seen)


def test_nll_from_logits():
    row = np.array([1.0, 2.0, 3.0], np.float32)
    want = -(3.0 - math.log(math.exp(1) + math.exp(2) + math.exp(3)))
    assert mend.nll_from_logits(row, 2) == pytest.approx(want, rel=1e-6)

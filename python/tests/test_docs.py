"""Every Python example of docs/api.md runs: each ```python block is a
program whose first line names its arguments (`# usage: python NAME.py
ARG...`); each argument is given a fixture of the tiny llama model."""
import os
import re
import subprocess
import sys

import pytest

import mend
from conftest import CORPUS, HF_GGUF, src


def examples():
    with open(src("docs", "api.md")) as f:
        text = f.read()
    return re.findall(r"^```python\n(.*?)^```$", text, re.M | re.S)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    d = tmp_path_factory.mktemp("docs")
    corpus, rivers = d / "corpus.txt", d / "rivers.txt"
    corpus.write_text(CORPUS * 10)
    rivers.write_text("\n\n".join(p for p in CORPUS.split("\n\n") if "river" in p or "mill" in p) * 40)
    m = mend.Model(HF_GGUF, packed=False)
    bank = mend.Bank.build(m, d / "bank", {"all": str(corpus), "rivers": str(rivers)}, n_virtual=3, steps=2,
                           seqlen=16, router_windows=2, router_window=16, learned_windows=4, learned_window=16,
                           progress=False)
    return {"SRC.gguf": HF_GGUF, "MODEL": HF_GGUF, "OUT.gguf": str(d / "out.gguf"), "CORPUS.txt": str(corpus),
            "RIVERS.txt": str(rivers), "TEXT_FILE": str(corpus), "OUT_DIR": str(d / "prompt"),
            "NEW_BANK_DIR": str(d / "new_bank"), "BANK_DIR": bank.dir, "TEXT": "The river runs past the mill.",
            "TASK.jsonl": src("tests", "fixtures", "eval", "toy_mc.jsonl"),
            "PROMPT_DIR": src("tests", "fixtures", "tune", "mend_adapter"), "RESULTS.jsonl": str(d / "results.jsonl"),
            "REPAIR_DIR": str(d / "repair")}


def test_there_is_one_example_per_capability():
    names = [re.match(r"# usage: python (\S+)\.py", e).group(1) for e in examples()]
    assert names == ["compress", "tune", "bank", "select", "evaluate", "ppl", "idp", "repair"]


@pytest.mark.parametrize("code", examples(), ids=lambda e: re.match(r"# usage: python (\S+)\.py", e).group(1))
def test_example_runs(code, paths, tmp_path):
    args = re.match(r"# usage: python \S+ (.*)\n", code).group(1).split()
    missing = [a for a in args if a not in paths]
    assert not missing, f"no fixture for {missing}"
    prog = tmp_path / "example.py"
    prog.write_text(code)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # the mend this test imports, from another directory too
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(mend.__file__)), env.get("PYTHONPATH", "")])
    if env.get("MEND_LIBRARY"):
        env["MEND_LIBRARY"] = os.path.abspath(env["MEND_LIBRARY"])
    r = subprocess.run([sys.executable, str(prog), *[paths[a] for a in args]], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip()

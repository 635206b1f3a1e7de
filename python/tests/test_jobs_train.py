"""mend.Bank.build is the bank build job (mend_bank_build_run): a bank built
through Python and one built by `mend bank build` with the same options are
the same files, byte for byte; the job's progress reaches the caller and a
true return stops the build, which resumes."""
import subprocess

import pytest

import mend
from conftest import CORPUS, HF_GGUF

OPTS = dict(n_virtual=3, steps=4, seqlen=16, router_windows=2, router_window=16, learned_windows=4,
            learned_window=16)
FILES = ["bank.json", "a/adapter_model.safetensors", "a/adapter_config.json", "b/adapter_model.safetensors",
         "b/adapter_config.json"]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    d = tmp_path_factory.mktemp("domains")
    a, b = d / "a.txt", d / "b.txt"
    a.write_text(CORPUS)
    b.write_text("\n\n".join(p for p in CORPUS.split("\n\n") if "river" in p or "fox" in p) * 6)
    return {"a": str(a), "b": str(b)}


def test_bank_build_matches_the_command(mend_bin, tmp_path, corpora):
    events = []
    bank = mend.Bank.build(HF_GGUF, tmp_path / "py", corpora, progress=lambda *ev: events.append(ev), **OPTS)
    assert len(bank) == 2 and bank.prompt("b").emb.shape == (3, 64)
    labels = {e[0] for e in events}
    assert {"[1/2 a]", "[2/2 b]"} <= labels and any(e[0].startswith("router") for e in events)
    subprocess.run([mend_bin, "-t", "1", "bank", "build", HF_GGUF, "-o", str(tmp_path / "cli"), "--domain",
                    f"a={corpora['a']}", "--domain", f"b={corpora['b']}", "--no-distill", "--n-virtual", "3",
                    "--steps", "4", "--seqlen", "16", "--router-windows", "2", "--router-window", "16",
                    "--learned-windows", "4", "--learned-window", "16"], check=True, capture_output=True)
    for f in FILES:
        assert (tmp_path / "py" / f).read_bytes() == (tmp_path / "cli" / f).read_bytes(), f


def test_bank_build_stops_and_resumes(tmp_path, corpora):
    def stop_in_b(label, done, total, item):
        return label == "[2/2 b]" and done >= 2

    with pytest.raises(mend.MendError, match="stopped"):
        mend.Bank.build(HF_GGUF, tmp_path / "bank", corpora, progress=stop_in_b, **OPTS)
    assert (tmp_path / "bank" / "a" / "adapter_model.safetensors").exists()
    assert not (tmp_path / "bank" / "bank.json").exists()
    labels = []
    bank = mend.Bank.build(HF_GGUF, tmp_path / "bank", corpora, progress=lambda *ev: labels.append(ev[0]), **OPTS)
    assert "[1/2 a]" not in labels and "[2/2 b]" in labels   # a finished, b resumed
    assert bank.info().learned_router is not None


def test_bank_build_refuses_a_bad_name(tmp_path, corpora):
    with pytest.raises(mend.MendError, match=r"names\[0\]"):
        mend.Bank.build(HF_GGUF, tmp_path / "bank", {"no/slash": corpora["a"]}, progress=False, **OPTS)

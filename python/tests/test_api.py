"""The rest of the binding: model description, process settings, sampling,
run states and chat templates."""
import os
import re

import numpy as np
import pytest

import mend
from conftest import HF_GGUF, src



def test_info_and_fingerprint():
    m = mend.Model(HF_GGUF)
    i = m.info()
    assert (i.arch, i.n_vocab, i.dim, i.n_layers, i.n_heads, i.n_kv_heads, i.head_dim) == ("llama", 300, 64, 2, 4, 2,
                                                                                          16)
    assert i.tied_embeddings and i.n_params > 0
    fp = m.fingerprint()
    assert len(fp.model) == 16 and fp.source is None
    assert mend.fp_hex(mend.fp_parse(fp.model)) == fp.model
    with pytest.raises(mend.MendError):
        mend.fp_parse("xyz")


def test_threads_and_isa():
    n = mend.get_threads()
    mend.set_threads(1)
    assert mend.get_threads() == 1
    mend.set_threads(n)
    assert mend.isa() in ("scalar", "avx2", "avx512")
    assert mend.isa_describe().startswith(mend.isa())
    mend.set_isa("scalar")
    assert mend.isa() == "scalar"
    mend.set_isa(None)
    assert mend.isa() == mend.isa_detected()


def test_sampler():
    logits = np.array([0.0, 5.0, 1.0, 4.9], np.float32)
    assert mend.Sampler(4).sample(logits) == 1
    a = [mend.Sampler(4, temperature=1.0, seed=3).sample(logits) for _ in range(3)]
    assert len(set(a)) == 1 and a[0] in (1, 3)
    top1 = mend.Sampler(4, temperature=5.0, top_k=1, seed=9)
    assert all(top1.sample(logits) == 1 for _ in range(20))


def test_state_forward_in_steps_equals_one_batch():
    m = mend.Model(HF_GGUF)
    ids = np.array([5, 120, 33, 250, 7, 7, 199], np.int32)
    whole = m.logits(ids)
    st = m.state(n_ctx=16, max_batch=4)
    assert st.n_ctx == 16
    st.forward(tokens=ids[:4], logits=False)
    rest = st.forward(tokens=ids[4:], pos=4, logits_all=True)
    assert np.abs(rest - whole[4:]).max() < 1e-4
    # the same continuation as one row on the cached prefix
    rows = np.array([[4, 0, 0, 0, 0, 0]], np.int32)
    one = st.forward_rows(ids[4:5], rows, out_rows=[0], slot0=4)
    assert one.shape == (1, 300) and np.abs(one[0] - whole[4]).max() < 1e-4


def test_chat_format():
    tmpl = "{% for m in messages %}<|im_start|>...{% endfor %}"
    out = mend.chat_format(tmpl, "Hi", system="Be brief.")
    assert out == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    with pytest.raises(mend.MendError):
        mend.chat_format("{{ no chatml here }}", "Hi")


def test_installed_package_carries_the_headers_version_and_library():
    if mend.__version__ is None:
        pytest.skip("python/ used in place, not installed")
    with open(src("include", "mend.h")) as f:
        want = re.search(r'#define MEND_VERSION "([0-9.]+)"', f.read()).group(1)
    assert mend.__version__ == want
    if not os.environ.get("MEND_LIBRARY"):
        assert os.path.dirname(mend._capi.lib._name) == os.path.dirname(mend.__file__)


def test_close_frees_once_and_with_closes():
    with mend.Model(HF_GGUF) as m:
        st = m.state(n_ctx=8, max_batch=4)
        smp = mend.Sampler(300)
        for obj in (st, smp):
            obj.close()
            obj.close()
            assert obj._h is None
    assert m._h is None
    m.close()


def test_import_is_light():
    # a short task pays for `import mend` on every run (BENCHMARKS.md, the
    # Python package against the command line): NumPy, importlib.metadata,
    # logging and a child process (ctypes.util.find_library) wait until they
    # are needed
    import subprocess
    import sys
    code = ("import sys, mend; print(' '.join(m for m in ('numpy', 'importlib.metadata', 'subprocess', 'tqdm', "
            "'logging') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
    # and they still answer when asked
    code = "import mend; print(mend.__version__ is None or mend.__version__.count('.') == 2, mend.model.np.float32)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split()[0] == "True"

import os
import shutil

import pytest

SRC = os.environ.get("MEND_SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HF_DIR = os.path.join(SRC, "tests", "fixtures", "hf", "llama")
HF_GGUF = os.path.join(SRC, "tests", "fixtures", "hf", "llama.gguf")

# a small corpus of paragraphs (blank lines between them) for tuning and calibration on the tiny model
CORPUS = ("The quick brown fox jumps over the lazy dog near the river bank.\n\n"
          "A compressed model loses some accuracy, and a soft prompt trained through it can repair part of it.\n\n"
          "Soft prompts are a few learned vectors placed before the text of every input.\n\n"
          "The river runs past the old mill, where the miller grinds the wheat every morning.\n\n"
          "Prompt banks hold one prompt per domain, and a selector picks one for each input.\n\n"
          "The lazy dog sleeps in the sun while the fox runs across the field again and again.\n\n") * 4


def src(*rel):
    return os.path.join(SRC, *rel)


def data(*rel):
    """A file of the shared data directory (MEND_DATA, else ../shared/data
    beside the checkout), or a skip when it is absent."""
    path = os.path.join(os.environ.get("MEND_DATA") or src("..", "shared", "data"), *rel)
    if not os.path.exists(path):
        pytest.skip(f"{path} is absent (set MEND_DATA to the shared data directory)")
    return path


@pytest.fixture(scope="session")
def mend_bin():
    """The mend command (MEND_BIN, else build/mend of the checkout, else PATH)."""
    for cand in (os.environ.get("MEND_BIN"), src("build", "mend"), shutil.which("mend")):
        if cand and os.access(cand, os.X_OK):
            return cand
    pytest.skip("no mend command (set MEND_BIN or build the checkout)")


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(CORPUS)
    return str(path)


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One thread, as test_api runs: the fixture model is tiny, so more threads
    would only wait for each other on a busy machine; and the command runs
    with -t 1 where bits are compared (equal bits need equal summation orders)."""
    import mend
    n = mend.get_threads()
    mend.set_threads(1)
    yield
    mend.set_threads(n)

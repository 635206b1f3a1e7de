import os
import shutil

import pytest

SRC = os.environ.get("MEND_SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def src(*rel):
    return os.path.join(SRC, *rel)


@pytest.fixture(scope="session")
def mend_bin():
    """The mend command (MEND_BIN, else build/mend of the checkout, else PATH)."""
    for cand in (os.environ.get("MEND_BIN"), src("build", "mend"), shutil.which("mend")):
        if cand and os.access(cand, os.X_OK):
            return cand
    pytest.skip("no mend command (set MEND_BIN or build the checkout)")

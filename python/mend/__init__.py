"""mend: compressed LLMs repaired with soft prompts. A ctypes binding of the
C library libmend (include/mend.h); NumPy arrays in and out.

    import mend
    m = mend.Model("model.gguf")
    print(m.info())
    logits = m.logits(m.tokenize("Hello"))

Errors raise mend.MendError, whose str() is mend_last_error()'s sentence.
"""
from importlib import metadata as _metadata

from ._capi import MendError, lib as _lib
from .core import get_threads, isa, isa_describe, isa_detected, set_isa, set_threads, strerror
from .model import (Fingerprint, Model, ModelInfo, PplResult, Sampler, State, chat_format, fp_hex, fp_parse,
                    nll_from_logits, ppl_run)

try:   # the version of include/mend.h's MEND_VERSION, recorded by the build (pyproject.toml)
    __version__ = _metadata.version("mend-llm")
except _metadata.PackageNotFoundError:   # python/ used in place, not installed
    __version__ = None

__all__ = ["MendError", "Model", "ModelInfo", "Fingerprint", "PplResult", "State", "Sampler", "chat_format",
           "fp_hex", "fp_parse", "nll_from_logits", "ppl_run", "set_isa", "isa", "isa_describe", "isa_detected",
           "set_threads", "get_threads", "strerror"]

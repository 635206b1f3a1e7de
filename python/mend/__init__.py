"""mend: compressed LLMs repaired with soft prompts. A ctypes binding of the
C library libmend (include/mend.h); NumPy arrays in and out.

    import mend
    m = mend.Model("model.gguf")
    print(m.info())
    logits = m.logits(m.tokenize("Hello"))

The whole pipeline: mend.compress, mend.tune, mend.Bank (build, read,
select), mend.evaluate, mend.perplexity (plain, with a prompt, with a bank),
and all of it at once: mend.repair.
Errors raise mend.MendError, whose str() is mend_last_error()'s sentence.
"""
from ._capi import MendError, lib as _lib
from .banks import Bank, BankInfo, BankPrompt, RouterStats, Selector, select_centroid
from .compression import CompressEvent, CompressResult, calibration, compress, qfmt
from .core import get_threads, isa, isa_describe, isa_detected, set_isa, set_threads, strerror
from .evaluation import IDP, ExampleResult, Scorer, Task, TaskSummary, evaluate, report_markdown, summarize
from .model import (Fingerprint, Model, ModelInfo, PplResult, Sampler, State, chat_format, fp_hex, fp_parse,
                    nll_from_logits, perplexity, ppl_run)
from .repairing import repair, repair_report
from .tuning import TuneInfo, TuneProgress, TuneRecord, TuneResult, read_prompt, read_record, tune, write_prompt


def __getattr__(name):
    # __version__ is looked up when first asked for: importlib.metadata costs
    # about 0.04 CPU s, a fifth of `import mend`, on every start
    if name != "__version__":
        raise AttributeError(f"module 'mend' has no attribute {name!r}")
    from importlib import metadata
    try:   # the version of include/mend.h's MEND_VERSION, recorded by the build (pyproject.toml)
        version = metadata.version("mend-llm")
    except metadata.PackageNotFoundError:   # python/ used in place, not installed
        version = None
    globals()["__version__"] = version
    return version


__all__ = ["MendError", "Model", "ModelInfo", "Fingerprint", "PplResult", "State", "Sampler", "chat_format",
           "fp_hex", "fp_parse", "nll_from_logits", "ppl_run", "perplexity", "set_isa", "isa", "isa_describe",
           "isa_detected", "set_threads", "get_threads", "strerror",
           "compress", "calibration", "qfmt", "CompressEvent", "CompressResult",
           "tune", "read_prompt", "write_prompt", "read_record", "TuneProgress", "TuneInfo", "TuneResult",
           "TuneRecord",
           "Bank", "BankInfo", "BankPrompt", "RouterStats", "Selector", "select_centroid",
           "Task", "Scorer", "IDP", "ExampleResult", "TaskSummary", "evaluate", "summarize", "report_markdown",
           "repair", "repair_report"]

"""The whole repair (include/mend/jobs.h, mend_repair_run): compress a model,
train (or take) a prompt bank and a single prompt, evaluate original /
compressed / single prompt / IDP on the tasks and WikiText-2, and write the
report — `mend repair` as one call, writing the same directory."""
import ctypes
import glob
import os
from ctypes import byref, c_char_p, c_void_p

from . import _capi
from ._capi import MendError, check, lib
from .banks import _run_job
from .model import Model

EINVAL = -4


def _data_dir(data):
    """The data directory (tasks/, ppl/, corpus/): data, else $MEND_DATA, else
    ../shared/data from the working directory."""
    for d in (data, os.environ.get("MEND_DATA"), os.path.join("..", "shared", "data")):
        if d and os.path.isdir(d):
            return d
    return None


def _c_strings(items):
    arr = (c_char_p * max(1, len(items)))(*[os.fsencode(x) for x in items])
    return arr, len(items)


def repair(model, compress, out, *, budget="standard", tasks=None, ppl_text=None, domains=None, calib=None,
           bank_dir=None, data=None, limit=None, ppl_windows=None, ppl_ctx=None, steps=None, spec_steps=None,
           nsamples=None, seqlen=None, train_seqlen=None, progress=True):
    """Run (or resume) `mend repair MODEL --compress SPEC -o OUT` as one library
    call, and return the report (Markdown; also in OUT/report.md).

    model: path or mend.Model (its path is used). compress: a spec such as
    "gptq:int3g64", "sparsegpt:0.5" or "sparsegpt:0.5+q4_0". budget: "quick",
    "standard" or "full". tasks: task files (default: every *.jsonl of the
    data directory's tasks/); ppl_text: default tasks' sibling
    ppl/wiki.test.raw. domains: bank domains, each "NAME" (corpus/NAME.txt
    of the data directory) or "NAME=FILE", or a {name: file} dict (default:
    the six corpora). calib: calibration texts (default: the corpora).
    bank_dir: use this bank (and its single prompt) instead of training one;
    it must have been trained for the compressed model (refused otherwise).
    data: the data directory (default $MEND_DATA, then ../shared/data). The
    numeric options override the budget's settings.

    progress(label, done, total, item) is called for every step of the
    stages' counters, and with label "stage" when a stage starts (done the
    stage number, total their count, item what it does); a true return or an
    exception stops the run, which resumes when called again. True: a tqdm
    bar per counter when tqdm is installed. Stage lines, notes and the
    report go to logging.getLogger("mend") at INFO, warnings to
    warnings.warn."""
    if not isinstance(compress, str) or not compress:
        raise MendError(EINVAL, "repair: compress expects a spec such as 'gptq:int3g64'")
    check(lib.mend_repair_spec_check(compress.encode()))
    d = _data_dir(data)
    if tasks is None:
        if d is None:
            raise MendError(EINVAL, "repair: no tasks given and no data directory found (data=, or MEND_DATA)")
        tasks = sorted(glob.glob(os.path.join(d, "tasks", "*.jsonl")))
        if not tasks:
            raise MendError(EINVAL, f"repair: {os.path.join(d, 'tasks')} holds no *.jsonl task files")
    if isinstance(tasks, (str, os.PathLike)):
        tasks = [tasks]
    if ppl_text is None:
        if d is None:
            raise MendError(EINVAL, "repair: no ppl_text given and no data directory found (data=, or MEND_DATA)")
        ppl_text = os.path.join(d, "ppl", "wiki.test.raw")
    if isinstance(domains, dict):
        domains = [f"{k}={os.fspath(v)}" for k, v in domains.items()]
    domains = list(domains or [])
    calib = [os.fspath(c) for c in (calib or [])]
    corpus = os.path.join(d, "corpus") if d is not None and os.path.isdir(os.path.join(d, "corpus")) else None

    j = _capi.mend_repair_job()
    lib.mend_repair_job_init(byref(j))
    j.model = os.fsencode(model.path if isinstance(model, Model) else os.fspath(model))
    j.compress = compress.encode()
    j.out = os.fsencode(out)
    j.budget = budget.encode() if budget else None
    c_tasks, j.n_tasks = _c_strings([os.fspath(t) for t in tasks])
    c_domains, j.n_domains = _c_strings(domains)
    c_calib, j.n_calib = _c_strings(calib)
    j.tasks, j.domains, j.calib = c_tasks, c_domains, c_calib
    j.ppl_text = os.fsencode(ppl_text)
    j.corpus_dir = None if corpus is None else os.fsencode(corpus)
    j.bank_dir = None if bank_dir is None else os.fsencode(bank_dir)
    for name, v in (("limit", limit), ("ppl_windows", ppl_windows), ("ppl_ctx", ppl_ctx), ("steps", steps),
                    ("spec_steps", spec_steps), ("nsamples", nsamples), ("seqlen", seqlen),
                    ("train_seqlen", train_seqlen)):
        if v is not None:
            setattr(j, name, int(v))
    _run_job(lib.mend_repair_run, byref(j), progress=progress)
    with open(os.path.join(out, "report.md"), encoding="utf-8") as f:
        return f.read()


def repair_report(out):
    """The report of the repair run in out, rebuilt from its files
    (mend_repair_report; report.md and its charts are rewritten)."""
    md = c_void_p()
    check(lib.mend_repair_report(os.fsencode(out), byref(md), _capi.event_fn(0), None))
    try:
        return ctypes.string_at(md.value).decode("utf-8")
    finally:
        _capi.libc.free(md)

"""Zero-shot evaluation (include/mend/eval.h) and inference-time dynamic
prompting over a bank (include/mend/idp.h): task files, scorers, results
lines and files, summaries, reports, and mend.evaluate, which writes the
results file `mend eval` writes."""
from __future__ import annotations  # np.ndarray in field annotations: no numpy import at class creation

import ctypes
import json
import os
from ctypes import byref, c_int, c_size_t, c_void_p
from dataclasses import dataclass
from typing import Optional

from . import _capi
from ._capi import MendError, check, lib, take_string
from ._np import np
from ._progress import Callback, reporter, run
from .banks import _run_job
from .compression import _model
from .model import _Handle, _ids, basename

EINVAL = -4
KINDS = {0: "multiple_choice", 1: "schema", 2: "language_modeling", 3: "generation_qa"}


def _arr(ptr, n, dtype):
    return np.ctypeslib.as_array(ptr, shape=(n,)).astype(dtype) if ptr and n else np.zeros(0, dtype)


@dataclass(frozen=True)
class ExampleResult:
    """One example's outcome (mend_eval_result)."""
    index: int
    kind: str
    ll: np.ndarray          # log-likelihood of each option (MC, schema) or the continuation (LM)
    greedy: np.ndarray      # 1 where the option is the greedy continuation
    n_tokens: np.ndarray
    n_chars: np.ndarray     # MC: each choice's length in code points
    pred: int
    pred_norm: int
    gold: int
    acc: float
    acc_norm: float
    em: float
    pred_text: Optional[str]
    raw_text: Optional[str]
    truncated: int


def _result(index, r):
    n = r.n
    return ExampleResult(index, KINDS.get(r.kind, str(r.kind)), _arr(r.ll, n, np.float64), _arr(r.greedy, n, np.int32),
                         _arr(r.n_tokens, n, np.int32), _arr(r.n_chars, n, np.int32), r.pred, r.pred_norm, r.gold,
                         r.acc, r.acc_norm, r.em, None if r.pred_text is None else r.pred_text.decode("utf-8", "replace"),
                         None if r.raw_text is None else r.raw_text.decode("utf-8", "replace"), r.truncated)


class Task(_Handle):
    """A task file (mend_task_load): JSONL in one of the four shapes of
    docs/eval.md; limit > 0 keeps the first limit examples."""
    _FREE = "mend_task_free"

    def __init__(self, path, limit=0):
        self._h = c_void_p()
        check(lib.mend_task_load(byref(self._h), os.fsencode(path), int(limit)))
        i = _capi.mend_task_info()
        lib.mend_task_get_info(self._h, byref(i))
        self.name, self.path = i.name.decode(), i.path.decode()
        self.kind, self.n, self.n_total = lib.mend_task_kind_name(i.kind).decode(), i.n, i.n_total

    def __len__(self):
        return self.n

    def __repr__(self):
        return f"mend.Task({self.path!r}: {self.kind}, {self.n} of {self.n_total} examples)"

    def line(self, i):
        """The 1-based line of example i in the file (0: out of range)."""
        return lib.mend_task_example_line(self._h, int(i))


class Scorer(_Handle):
    """A scorer over a model, optionally behind a soft prompt
    (mend_eval_backend_model): prompt an (n_virtual, dim) array or an
    adapter directory; window 0: the model's context length minus the
    prompt; max_batch 0: 256."""
    _FREE = "mend_eval_backend_free"

    def __init__(self, model, prompt=None, window=0, max_batch=0):
        self.model = model   # must outlive the scorer
        if isinstance(prompt, (str, os.PathLike)):
            prompt = _read_prompt_checked(model, prompt)
        p = None if prompt is None else np.ascontiguousarray(prompt, dtype=np.float32)
        self._h = c_void_p()
        check(lib.mend_eval_backend_model(byref(self._h), model._h,
                                          None if p is None else p.ctypes.data_as(_capi.f32_p),
                                          0 if p is None else p.shape[0], int(window), int(max_batch)))

    @property
    def window(self):
        return lib.mend_eval_backend_window(self._h)

    @window.setter
    def window(self, n):
        lib.mend_eval_backend_set_window(self._h, int(n))

    def score(self, task, indices=None):
        """ExampleResults of examples indices (default: all) of task, in packed
        forwards (mend_eval_examples)."""
        idx = np.arange(task.n, dtype=np.uintp) if indices is None else np.asarray(indices, dtype=np.uintp)
        out = []
        for q0 in range(0, len(idx), 32):
            part = np.ascontiguousarray(idx[q0:q0 + 32])
            rs = (_capi.mend_eval_result * len(part))()
            check(lib.mend_eval_examples(self._h, task._h, part.ctypes.data_as(ctypes.POINTER(c_size_t)), len(part),
                                         rs, None))
            for q in range(len(part)):
                out.append(_result(int(part[q]), rs[q]))
                lib.mend_eval_result_free(byref(rs[q]))
        return out


def _read_prompt_checked(model, adapter_dir):
    """The prompt in adapter_dir for model (a mend.Model), with a warning
    when it records another model (mend_prompt_read_checked)."""
    emb, nv, d = _capi.f32_p(), c_int(), model.info().dim
    _run_job(lib.mend_prompt_read_checked, model._h, os.fsencode(model.path), os.fsencode(adapter_dir), byref(emb),
             byref(nv))
    try:
        return np.ctypeslib.as_array(emb, shape=(nv.value, d)).copy()
    finally:
        _capi.libc.free(emb)


class IDP(_Handle):
    """Inference-time dynamic prompting (mend_idp): a bank's prompts for a
    model and one or more selectors (select: a name or a list, e.g.
    "attention", ["learned", "loss"]; default: the bank's); the first picks
    the prompt, the others are recorded. layers overrides the attention
    selectors' probed layers, max_tokens the selection budget; per_prompt
    also scores every example / window with no prompt and with each prompt."""
    _FREE = "mend_idp_close"

    def __init__(self, model, bank_dir, select=None, layers=None, max_tokens=0, per_prompt=False):
        self.model = model   # must outlive the run
        self._h = c_void_p()
        # opened as mend eval opens it (mend_idp_open_checked): a bank trained
        # on another model is a warning (warnings.warn) naming the command
        # that retrains it
        sel = None if select is None else (select if isinstance(select, str) else ",".join(select)).encode()
        lay = None if layers is None else f"{int(layers[0])}:{int(layers[1])}".encode()
        _run_job(lib.mend_idp_open_checked, byref(self._h), model._h, os.fsencode(model.path), os.fsencode(bank_dir),
                 sel, lay, int(max_tokens), int(bool(per_prompt)))
        self.selectors = [lib.mend_idp_sel_name(self._h, j).decode() for j in range(lib.mend_idp_n_sel(self._h))]

    @property
    def label(self):
        """"BANK:SELECTOR", the prompt label of results lines."""
        return lib.mend_idp_label(self._h).decode()

    def prompt_name(self, k):
        return lib.mend_idp_prompt_name(self._h, int(k)).decode()

    def pick(self, tokens):
        """Every selector's pick for tokens, {selector: prompt name} ("none"
        for no prompt, "oracle" when the scorer decides)."""
        x, p = _ids(tokens)
        ch = (c_int * len(self.selectors))()
        check(lib.mend_idp_pick_all(self._h, p, len(x), ch))
        return {s: ("oracle" if c == -2 else self.prompt_name(c)) for s, c in zip(self.selectors, ch)}

    def eval_setup(self, window=0, max_batch=0):
        """Ready the scorers for evaluation (mend_idp_eval_setup) once; returns
        the window they share."""
        if not lib.mend_idp_eval_window(self._h):
            check(lib.mend_idp_eval_setup(self._h, int(window), int(max_batch)))
        return lib.mend_idp_eval_window(self._h)

    def summary(self):
        """The run so far as Markdown: choices per task and selector, timings."""
        out = c_void_p()
        check(lib.mend_idp_summary(self._h, byref(out)))
        return take_string(out)


def _line_bar(bar, done, total):
    bar.update(done, total)


def evaluate(model, tasks, out=None, *, limit=0, prompt=None, bank=None, select=None, select_layers=None,
             per_prompt=False, ctx=0, batch=0, packed=False, resume=False, progress=True):
    """Score task files as `mend eval` does and return the results lines as
    dicts (docs/eval.md lists the fields); with out, the lines are also
    appended to that file, flushed one by one, and the file equals the one
    `mend eval MODEL --task ... --out OUT` writes with the same options,
    byte for byte.

    model: a path (loaded as the command loads it: weights dequantized to
    f32, or packed=True for the packed kernels, labelled "+packed") or a
    mend.Model (its packed setting labels the lines). tasks: a path, a
    mend.Task or a list of them. limit: the first examples of each task.
    prompt: an adapter directory; or bank (a directory) with select (a
    selector name or a comma list), select_layers (A, B) and per_prompt, or
    a mend.IDP (whose summary() then counts these examples).
    ctx: the window in tokens, batch: positions per forward. resume: skip
    the examples out already holds (a partial last line from a killed run is
    dropped). progress(done, total) after each example; a true return or an
    exception stops (the lines written so far stay). True: a tqdm bar when
    tqdm is installed."""
    from .model import Model
    if prompt is not None and bank is not None:
        raise MendError(EINVAL, "evaluate: give prompt or bank, not both")
    if (select is not None or select_layers is not None or per_prompt) and (bank is None or isinstance(bank, IDP)):
        raise MendError(EINVAL, "evaluate: select, select_layers and per_prompt go with a bank directory")
    task_list = [tasks] if isinstance(tasks, (str, os.PathLike, Task)) else list(tasks)
    owned = []
    try:
        ts = []
        for t in task_list:
            if not isinstance(t, Task):
                t = Task(t, limit)
                owned.append(t)
            ts.append(t)
        names = [t.name for t in ts]
        if len(set(names)) != len(names):
            raise MendError(EINVAL, f"evaluate: two tasks have the same name among {names}; results lines are keyed "
                                    "by task name")
        if isinstance(model, Model):
            m = model
        else:
            m = Model(model, packed=packed)
            owned.append(m)
        model_label = basename(m.path) + ("+packed" if m.packed else "")
        scorer = Scorer(m, prompt, ctx, batch)
        owned.append(scorer)
        idp = None
        prompt_label = basename(prompt) if prompt is not None else None
        if isinstance(bank, IDP):
            idp = bank
        elif bank is not None:
            idp = IDP(m, bank, select, select_layers, 0, per_prompt)
            owned.append(idp)
        if idp is not None:
            scorer.window = idp.eval_setup(ctx, batch)
            prompt_label = idp.label
        done = {t.name: set() for t in ts}
        if out is not None and os.path.exists(out):
            _resume(out, resume, ts, done, model_label, prompt_label)
        if prompt is not None:
            check(lib.mend_eval_backend_reserve(scorer._h, 1))   # the prompt's keys and values, once
        todo = [[i for i in range(t.n) if i not in done[t.name]] for t in ts]
        total = sum(len(x) for x in todo)
        fn, close = reporter(progress, total, "eval", "ex", _line_bar)
        records = []
        f = open(out, "a", encoding="utf-8", newline="\n") if out is not None else None
        state = {"n": 0}

        def on_line(user, lp):
            line = lp[0].line.decode("utf-8")
            if f is not None:
                f.write(line + "\n")
                f.flush()
            records.append(json.loads(line))
            state["n"] += 1
            return fn(state["n"], total)

        cb = Callback(on_line)
        c_cb = _capi.eval_line_fn(cb)
        try:
            for t, idx in zip(ts, todo):
                a = (c_size_t * len(idx))(*idx)   # no NumPy on this path: scoring a file makes no arrays
                run(lib.mend_eval_run(scorer._h, idp._h if idp else None, t._h, a, len(a), model_label.encode(),
                                      None if prompt_label is None else prompt_label.encode(), c_cb, None, None), cb)
        finally:
            close()
            if f is not None:
                f.close()
        return records
    finally:
        for o in reversed(owned):
            o.close()


def _resume(out, resume, tasks, done, model_label, prompt_label):
    """Mark the examples out already holds, as mend eval --resume does."""
    res = _capi.mend_results()
    check(lib.mend_results_load(os.fsencode(out), byref(res)))
    try:
        if res.file_size > 0 and not resume:
            raise MendError(EINVAL, f"{out} already holds {res.n} results; pass resume=True to continue it or "
                                    "choose another out")
        if res.partial:
            os.truncate(out, res.valid_bytes)
        kinds = {t.name: t.kind for t in tasks}
        for i in range(res.n):
            r = res.rec[i]
            name = r.task.decode()
            if name not in kinds:
                continue
            if kinds[name] != lib.mend_task_kind_name(r.kind).decode():
                raise MendError(EINVAL, f"{out}:{r.line}: task {name} is {lib.mend_task_kind_name(r.kind).decode()} "
                                        f"there but {kinds[name]} here")
            rp = None if r.prompt is None else r.prompt.decode()
            if r.model.decode() != model_label or rp != prompt_label:
                raise MendError(EINVAL, f"{out}:{r.line}: task {name} was scored with model {r.model.decode()}, "
                                        f"prompt {rp or 'none'}: choose another out")
            done[name].add(r.index)
    finally:
        lib.mend_results_free(byref(res))


@dataclass(frozen=True)
class TaskSummary:
    """One task's metrics with lm-eval's standard errors (mend_task_summary);
    fields that do not apply to the task's kind are None."""
    task: str
    kind: str
    n: int
    acc: float
    acc_se: float
    acc_norm: Optional[float]
    acc_norm_se: Optional[float]
    ppl: Optional[float]
    ppl_se: Optional[float]
    em: Optional[float]
    em_se: Optional[float]
    truncated: int
    duplicates: int


def _load(path):
    res = _capi.mend_results()
    check(lib.mend_results_load(os.fsencode(path), byref(res)))
    return res


def summarize(path):
    """The TaskSummary of every task of a results file, in order of first appearance."""
    res = _load(path)
    s, n = ctypes.POINTER(_capi.mend_task_summary)(), c_size_t()
    try:
        check(lib.mend_results_summarize(byref(res), byref(s), byref(n)))
        out = []
        for k in range(n.value):
            x = s[k]
            kind = lib.mend_task_kind_name(x.kind).decode()
            lm, gen = kind == "language_modeling", kind == "generation_qa"
            out.append(TaskSummary(x.task.decode(), kind, x.n, x.acc, x.acc_se,
                                   x.acc_norm if x.has_acc_norm else None, x.acc_norm_se if x.has_acc_norm else None,
                                   x.ppl if lm else None, x.ppl_se if lm else None, x.em if gen else None,
                                   x.em_se if gen else None, x.truncated, x.duplicates))
        lib.mend_summaries_free(s, n)
        return out
    finally:
        lib.mend_results_free(byref(res))


def report_markdown(runs):
    """A Markdown table of results files (mend_report_markdown): runs maps a
    column title to a results file path."""
    items = list(runs.items())
    loaded, sums = [], []
    try:
        arr = (_capi.mend_report_run * len(items))()
        for k, (name, path) in enumerate(items):
            res = _load(path)
            loaded.append(res)
            s, n = ctypes.POINTER(_capi.mend_task_summary)(), c_size_t()
            check(lib.mend_results_summarize(byref(res), byref(s), byref(n)))
            sums.append((s, n))
            arr[k].name, arr[k].s, arr[k].n = str(name).encode(), s, n
        md = c_void_p()
        check(lib.mend_report_markdown(arr, len(items), byref(md)))
        return take_string(md)
    finally:
        for s, n in sums:
            lib.mend_summaries_free(s, n)
        for res in loaded:
            lib.mend_results_free(byref(res))

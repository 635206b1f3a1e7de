"""Prompt banks and selectors (include/mend/bank.h): read, build and write
banks, their trained selectors, and a prompt picked per input."""
from __future__ import annotations  # np.ndarray in field annotations: no numpy import at class creation

import ctypes
import math
import os
import warnings
from ctypes import byref, c_char_p, c_int, c_void_p
from dataclasses import dataclass
from typing import Optional

from . import _capi
from ._capi import MendError, check, lib
from ._np import np
from ._progress import Bar, Callback, reporter, run
from .model import Fingerprint, Model, _fingerprint, _Handle, _ids
from .tuning import _c_texts, _texts

EINVAL = -4


def _s(b):
    return None if b is None else b.decode("utf-8", "replace")


def _floats(ptr, n):
    return None if not ptr else np.ctypeslib.as_array(ptr, shape=(n,)).copy()


@dataclass(frozen=True)
class BankInfo:
    """Everything bank.json says (mend_bank_info)."""
    dir: Optional[str]
    base_model: Optional[str]
    trained_on: Optional[Fingerprint]     # None for banks built before fingerprints
    n_prompts: int
    nv: int
    dim: int
    default_selector: str
    layer0: int
    layer1: int
    router_tokens: int
    attn_calibration: Optional[dict]      # layer0, layer1, windows, offsets (per prompt)
    learned_router: Optional[dict]        # normalize, train_windows, train_acc, heldout_acc


@dataclass(frozen=True)
class BankPrompt:
    name: str
    adapter: str
    domain: str
    corpus: Optional[str]
    steps: int                        # -1: unknown
    best_val: float                   # nan: unknown
    centroid: Optional[np.ndarray]    # (dim,) router centroid
    emb: Optional[np.ndarray]         # (nv, dim) once the prompts are loaded


@dataclass(frozen=True)
class RouterStats:
    n_windows: int
    n_train: int
    n_heldout: int
    train_acc: float
    heldout_acc: float
    label_hist: list      # windows the loss selector gave to each prompt


def _dim(model_or_dim):
    return model_or_dim if isinstance(model_or_dim, int) else model_or_dim.info().dim


class Bank(_Handle):
    """A prompt bank (mend_bank): a directory with bank.json and one PEFT
    adapter per prompt. Bank(dir) reads bank.json; Bank(dir, model) also
    loads the prompts for that model (or a hidden size)."""
    _FREE = "mend_bank_free"

    def __init__(self, bank_dir=None, model=None, *, _handle=None):
        self._h = c_void_p()
        if _handle is not None:
            self._h = _handle
        else:
            check(lib.mend_bank_read(os.fsencode(bank_dir), byref(self._h)))
        self.dir = None if bank_dir is None else os.fspath(bank_dir)
        self.loaded = False
        if model is not None:
            self.load_prompts(model)

    def __repr__(self):
        return f"mend.Bank({self.dir!r})"

    @classmethod
    def new(cls, dim, nv, base_model=None, trained_on=None, layers=(0, 0)):
        """An empty bank in memory (mend_bank_new) for prompts of nv x dim; its
        default selector is "attention" on layers [layers[0], layers[1]).
        trained_on: a mend.Model (its fingerprint is recorded) or None."""
        h = c_void_p()
        fp = None
        if trained_on is not None:
            fp = _capi.mend_fp()
            check(lib.mend_model_fingerprint(trained_on._h, byref(fp)))
        check(lib.mend_bank_new(byref(h), int(dim), int(nv), None if base_model is None else str(base_model).encode(),
                                None if fp is None else byref(fp), int(layers[0]), int(layers[1])))
        return cls(_handle=h)

    def add_prompt(self, name, adapter=None, domain=None, corpus=None, steps=-1, best_val=math.nan, centroid=None):
        """Append a prompt (mend_bank_add_prompt): its adapter directory relative
        to the bank (default: name), domain, corpus path, and centroid ((dim,)
        floats or None). Returns its index."""
        c = None if centroid is None else np.ascontiguousarray(centroid, dtype=np.float32)
        enc = lambda v: None if v is None else os.fsencode(v)   # noqa: E731
        return check(lib.mend_bank_add_prompt(self._h, name.encode(), enc(adapter), enc(domain), enc(corpus),
                                              int(steps), float(best_val),
                                              None if c is None else c.ctypes.data_as(_capi.f32_p)))

    def load_prompts(self, model):
        """Read every prompt's adapter for a model (or a hidden size)."""
        check(lib.mend_bank_load_prompts(self._h, _dim(model)))
        self.loaded = True
        return self

    def write(self, bank_dir=None):
        """Write bank.json atomically into bank_dir (default: the bank's own)."""
        d = bank_dir if bank_dir is not None else self.dir
        if d is None:
            raise MendError(EINVAL, "Bank.write: a bank built in memory needs a directory")
        check(lib.mend_bank_write(os.fsencode(d), self._h))
        self.dir = os.fspath(d)

    def info(self):
        i = _capi.mend_bank_info()
        lib.mend_bank_get_info(self._h, byref(i))
        attn = None
        if i.has_attn_calibration:
            attn = dict(layer0=i.attn_layer0, layer1=i.attn_layer1, windows=i.attn_windows,
                        offsets=_floats(i.attn_offsets, i.n_prompts))
        learned = None
        if i.has_learned_router:
            learned = dict(normalize=bool(i.learned_normalize), train_windows=i.learned_train_windows,
                           train_acc=i.learned_train_acc, heldout_acc=i.learned_heldout_acc)
        return BankInfo(_s(i.dir), _s(i.base_model), _fingerprint(i.trained_on) if i.trained_on.has_model else None,
                        i.n_prompts, i.nv, i.dim, _s(i.default_selector), i.layer0, i.layer1, i.router_tokens, attn,
                        learned)

    def fingerprint(self):
        """The Fingerprint of the model the prompts were trained on (None: not recorded)."""
        return self.info().trained_on

    def __len__(self):
        return self.info().n_prompts

    def prompt(self, k):
        """Prompt k (an index or a name) as a BankPrompt."""
        if isinstance(k, str):
            name, k = k, lib.mend_bank_find(self._h, k.encode())
            if k < 0:
                raise MendError(EINVAL, f"{self.dir or 'bank'}: no prompt called '{name}'")
        p, i = _capi.mend_bank_prompt_info(), self.info()
        check(lib.mend_bank_get_prompt(self._h, int(k), byref(p)))
        emb = None if not p.emb else np.ctypeslib.as_array(p.emb, shape=(i.nv, i.dim)).copy()
        return BankPrompt(_s(p.name), _s(p.adapter), _s(p.domain), _s(p.corpus), p.steps, p.best_val,
                          _floats(p.centroid, i.dim), emb)

    def prompts(self):
        return [self.prompt(k) for k in range(len(self))]

    def selector(self, model, select=None, layers=None, max_tokens=0):
        """A Selector over this bank's prompts (loaded here if they are not) for model."""
        return Selector(model, self, select, layers, max_tokens)

    # ---- trained selectors
    def calibrate(self, model, corpus=None, texts=None, n_windows=16, window=128):
        """Measure the attention calibration on the corpora (mend_select_calibrate);
        write() afterwards to keep it."""
        if not self.loaded:
            self.load_prompts(model)
        data = _texts(corpus, texts)
        ct, lens = _c_texts(data)
        check(lib.mend_select_calibrate(model._h, self._h, ct, lens, len(data), int(n_windows), int(window)))

    def train_router(self, model, corpus=None, texts=None, n_windows=None, window=None, normalize=None, l2=None,
                     iters=None, progress=True):
        """Fit the learned router on the corpora (mend_router_train; options left
        None keep mend_router_opts_default's) and give it to the bank; write()
        afterwards to keep it. progress(done, total) after each labelled window;
        a true return or an exception stops. Returns RouterStats."""
        if not self.loaded:
            self.load_prompts(model)
        o = _capi.mend_router_opts()
        lib.mend_router_opts_default(byref(o))
        for k, v in dict(n_windows=n_windows, window=window, l2=l2, iters=iters).items():
            if v is not None:
                setattr(o, k, v)
        if normalize is not None:
            o.normalize = int(bool(normalize))
        data = _texts(corpus, texts)
        ct, lens = _c_texts(data)
        fn, close = reporter(progress, None, "router", "window", lambda bar, d, t: bar.update(d, t))
        cb = Callback(lambda user, d, t: fn(d, t))
        r, st = c_void_p(), _capi.mend_router_stats()
        try:
            run(lib.mend_router_train(model._h, self._h, ct, lens, len(data), byref(o), _capi.router_progress_fn(cb),
                                      None, byref(r), byref(st)), cb)
        finally:
            close()
        lib.mend_bank_set_learned_router(self._h, r)
        return RouterStats(st.n_windows, st.n_train, st.n_heldout, st.train_acc, st.heldout_acc,
                           list(st.label_hist[:len(self)]))

    @classmethod
    def build(cls, model, out_dir, domains, *, teacher=None, init_prompt=None, n_virtual=20, steps=200, seqlen=256,
              batch=1, lr=3e-3, seed=1234, eval_every=50, val_seqs=8, layers=None, router_windows=16,
              router_window=256, learned=True, learned_windows=None, learned_window=None, progress=True):
        """Build a bank of domain prompts: `mend bank build` as one library call
        (mend_bank_build_run), writing the same files. One prompt per domain
        (domains: {name: corpus path}) into out_dir/NAME (a finished adapter
        is kept, a partial one resumes from its checkpoint), the router
        centroid of each domain, bank.json, the attention calibration and
        (learned) the learned router. model, teacher: paths or mend.Model
        objects (the job loads the file at their path); without a teacher the
        prompts train on next-token cross-entropy. init_prompt: an adapter
        directory every prompt starts from. layers: the attention selector's
        (A, B) (default (0, 3), or all layers of a shallower model).
        progress(label, done, total, item) for every step of the job's
        counters (each domain's training, the router's windows); a true
        return or an exception stops the build, which resumes when run
        again. True: a tqdm bar per counter when tqdm is installed. The job's
        warnings are issued with warnings.warn, its report and notes are
        logged (logging.getLogger("mend"), INFO). Returns the Bank, its
        prompts loaded."""
        path = lambda m: os.fsencode(m.path if isinstance(m, Model) else os.fspath(m))   # noqa: E731
        names = list(domains)
        j = _capi.mend_bank_job()
        lib.mend_bank_job_init(byref(j))
        enc_names = (c_char_p * max(1, len(names)))(*[n.encode() for n in names])
        enc_corpora = (c_char_p * max(1, len(names)))(*[os.fsencode(domains[n]) for n in names])
        j.model, j.out = path(model), os.fsencode(out_dir)
        j.names, j.corpora, j.n_domains = enc_names, enc_corpora, len(names)
        if teacher is None:
            j.no_distill = 1
        else:
            j.teacher = path(teacher)
        j.init_adapter = None if init_prompt is None else os.fsencode(init_prompt)
        j.steps, j.seqlen, j.batch, j.n_virtual = int(steps), int(seqlen), int(batch), int(n_virtual)
        j.eval_every, j.val_seqs, j.lr, j.seed = int(eval_every), int(val_seqs), float(lr), int(seed)
        if layers is not None:
            j.layer0, j.layer1 = int(layers[0]), int(layers[1])
        j.router_windows, j.router_window = int(router_windows), int(router_window)
        j.learned = int(bool(learned))
        j.learned_windows = int(learned_windows or 0)
        j.learned_window = int(learned_window or 0)
        _run_job(lib.mend_bank_build_run, byref(j), progress=progress)
        b = cls(out_dir)
        return b.load_prompts(b.info().dim)


def _log():
    import logging   # at the first message: importing it costs a short task's start-up (BENCHMARKS.md)
    return logging.getLogger("mend")


def _run_job(fn, *args, progress=False):
    """Call fn, a library function that reports through events (mend/jobs.h:
    its last two arguments are the handler and its user pointer), with args;
    the events go to a _JobEvents(progress), and the call's status or the
    handler's exception is raised as run() does."""
    handler = _JobEvents(progress)
    cb = Callback(lambda user, ev: handler(ev[0]))
    try:
        return run(fn(*args, _capi.event_fn(cb), None), cb)
    finally:
        handler.close()


class _JobEvents:
    """A job's events (mend_event) for Python: progress counters to the
    caller's progress (a callable, or a tqdm bar per counter for True),
    warnings to warnings.warn, report text and notes to the "mend" logger."""

    def __init__(self, progress):
        if not (callable(progress) or progress in (True, False, None)):
            raise MendError(EINVAL, f"progress: expected a callable, True or False, got {progress!r}")
        self.progress, self.bar, self.label, self.total = progress, None, "", 0

    def __call__(self, ev):
        s = lambda b: None if b is None else b.decode("utf-8", "replace")   # noqa: E731
        if ev.kind == _capi.MEND_EV_WARNING:
            warnings.warn(s(ev.text), stacklevel=3)
        elif ev.kind in (_capi.MEND_EV_TEXT, _capi.MEND_EV_NOTE):
            _log().info("%s", s(ev.text).rstrip("\n"))
        elif ev.kind == _capi.MEND_EV_PROGRESS_START:
            self.close()
            self.label, self.total = s(ev.label) or "", ev.total
            if self.progress is True:
                self.bar = Bar(ev.total or None, self.label, s(ev.unit) or "it")
        elif ev.kind == _capi.MEND_EV_PROGRESS:
            item = s(ev.item)
            if callable(self.progress):
                return self.progress(self.label, ev.done, self.total, item)
            if self.bar is not None:
                self.bar.update(ev.done, **({"last": item.rstrip(",")} if item else {}))
        elif ev.kind == _capi.MEND_EV_PROGRESS_END:
            self.close()
        elif ev.kind == _capi.MEND_EV_STAGE:
            self.close()
            text = s(ev.text)
            _log().info("[%s %d/%d] %s", s(ev.stage_name), ev.stage, ev.n_stages, text)
            if callable(self.progress):
                return self.progress("stage", ev.stage, ev.n_stages, text)
        return 0

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Selector(_Handle):
    """A selector over a bank's prompts for a model (mend_selector): attention,
    attention-calibrated, router, loss, learned, fixed:NAME or none. pick()
    gives the chosen prompt (-1: none) and every prompt's score."""
    _FREE = "mend_selector_free"

    def __init__(self, model, bank, select=None, layers=None, max_tokens=0):
        self.model, self.bank = model, bank   # both must outlive the selector
        if not bank.loaded:
            bank.load_prompts(model)
        spec = _capi.mend_select_spec()
        name = select if select is not None else bank.info().default_selector
        check(lib.mend_select_parse(name.encode(), bank._h, byref(spec)))
        if layers is not None:
            spec.layer0, spec.layer1 = int(layers[0]), int(layers[1])
        if max_tokens:
            spec.max_tokens = int(max_tokens)
        self._h = c_void_p()
        check(lib.mend_selector_new(byref(self._h), model._h, bank._h, byref(spec)))
        self.name = name
        self.n_prompts = len(bank)

    def pick(self, tokens):
        """(k, scores): the chosen prompt's index (-1: none) and the (K,) scores."""
        x, p = _ids(tokens)
        k, scores = c_int(), np.zeros(self.n_prompts, np.float32)
        check(lib.mend_selector_pick(self._h, p, len(x), byref(k), scores.ctypes.data_as(_capi.f32_p)))
        return k.value, scores

    def pick_many(self, inputs):
        """(choices (n,), scores (n, K)) for a list of token arrays at once."""
        arrs = [_ids(t)[0] for t in inputs]
        ptrs = (_capi.i32_p * len(arrs))(*[a.ctypes.data_as(_capi.i32_p) for a in arrs])
        ns = (c_int * len(arrs))(*[len(a) for a in arrs])
        choice = np.zeros(len(arrs), np.int32)
        scores = np.zeros((len(arrs), self.n_prompts), np.float32)
        check(lib.mend_selector_pick_many(self._h, ptrs, ns, len(arrs), choice.ctypes.data_as(ctypes.POINTER(c_int)),
                                          scores.ctypes.data_as(_capi.f32_p)))
        return choice, scores


def select_centroid(model, text, n_windows=16, window=256):
    """The router feature of a domain's text (mend_select_centroid): (dim,)
    float32 and the number of windows that had text."""
    data = text.encode() if isinstance(text, str) else bytes(text)
    out, used = np.zeros(model.info().dim, np.float32), c_int()
    check(lib.mend_select_centroid(model._h, data, len(data), int(n_windows), int(window),
                                   out.ctypes.data_as(_capi.f32_p), byref(used)))
    return out, used.value

"""Soft prompts (include/mend/tune.h): PEFT prompt-tuning adapters on disk
and prompt tuning through the frozen model (mend_tune_run)."""
import ctypes
import os
from ctypes import byref, c_char_p, c_int, c_size_t
from dataclasses import dataclass
from typing import Optional

from . import _capi
from ._capi import MendError, check, lib
from ._np import np
from ._progress import Callback, reporter, run
from .compression import _model

EINVAL = -4
WINDOWS = {"stream": 0, "paragraph": 1}
SCHEDULES = {"linear": 0, "cosine": 1, "constant": 2}
INITS = {"vocab": 0, "text": 1, "random": 2, "prompt": 3}


@dataclass(frozen=True)
class TuneProgress:
    """One training step (step 0: the initial validation), mend_tune_progress."""
    step: int
    steps: int
    loss: float
    ce: float
    lr: float
    grad_norm: float
    evaluated: int      # 1: val_loss / val_ce are fresh
    val_loss: float
    val_ce: float
    best_val: float
    best_step: int
    elapsed: float
    tokens_per_s: float
    resumed_from: int
    epoch: int


@dataclass(frozen=True)
class TuneInfo:
    """The prepared data (mend_tune_info)."""
    n_paragraphs: int
    n_val_paragraphs: int
    n_train_tokens: int
    n_val_tokens: int
    n_train_seqs: int
    n_val_seqs: int
    trainer_bytes: int


@dataclass(frozen=True)
class TuneResult:
    steps_done: int
    final_loss: float
    best_val: float
    first_val: float
    best_step: int
    elapsed: float
    tokens_per_s: float
    out_dir: str


@dataclass(frozen=True)
class TuneRecord:
    """An adapter's train.json (mend_tune_read_record)."""
    steps: int
    batch: int
    seqlen: int
    train_tokens: int
    start_tokens: int


def _dim(model_or_dim):
    return model_or_dim if isinstance(model_or_dim, int) else model_or_dim.info().dim


def read_prompt(adapter_dir, dim):
    """The soft prompt of a PEFT prompt-tuning adapter directory, for a model of
    hidden size dim (an int or a mend.Model): (n_virtual, dim) float32 and the
    Fingerprint of the model it records (None when it records none)."""
    from .model import _fingerprint
    emb, nv, fp = _capi.f32_p(), c_int(), _capi.mend_fp()
    d = _dim(dim)
    check(lib.mend_adapter_read_fp(os.fsencode(adapter_dir), d, byref(emb), byref(nv), byref(fp)))
    try:
        out = np.ctypeslib.as_array(emb, shape=(nv.value, d)).copy()
    finally:
        _capi.libc.free(emb)
    return out, (_fingerprint(fp) if fp.has_model else None)


def write_prompt(adapter_dir, prompt, model=None, base_model=None, init=None, init_text=None):
    """Write prompt ((n_virtual, dim) float32) as a PEFT prompt-tuning adapter
    (mend_adapter_write); model (a mend.Model) fills the heads, layers and the
    fingerprint of the model it was trained on."""
    a = np.ascontiguousarray(prompt, dtype=np.float32)
    if a.ndim != 2:
        raise MendError(EINVAL, f"write_prompt: prompt has shape {a.shape}, expected (n_virtual, dim)")
    meta = _capi.mend_adapter_meta()
    meta.base_model = None if base_model is None else str(base_model).encode()
    meta.init = None if init is None else init.encode()
    meta.init_text = None if init_text is None else init_text.encode()
    fp = _capi.mend_fp()
    if model is not None:
        i = model.info()
        meta.num_attention_heads, meta.num_layers = i.n_heads, i.n_layers
        check(lib.mend_model_fingerprint(model._h, byref(fp)))
        meta.trained_on = ctypes.pointer(fp)
    check(lib.mend_adapter_write(os.fsencode(adapter_dir), a.ctypes.data_as(_capi.f32_p), a.shape[0], a.shape[1],
                                 byref(meta)))


def read_record(adapter_dir):
    """The adapter's train.json as a TuneRecord, None when it has none."""
    rec, found = _capi.mend_tune_record(), c_int()
    check(lib.mend_tune_read_record(os.fsencode(adapter_dir), byref(rec), byref(found)))
    return TuneRecord(rec.steps, rec.batch, rec.seqlen, rec.train_tokens, rec.start_tokens) if found.value else None


def read_file(path):
    """A whole file's bytes through mend_read_file (the command's reader: its
    errors are mend's sentences)."""
    buf, n = ctypes.c_void_p(), c_size_t()
    check(lib.mend_read_file(os.fsencode(path), 2 << 30, byref(buf), byref(n)))
    try:
        return ctypes.string_at(buf, n.value)
    finally:
        _capi.libc.free(buf)


def _texts(corpus, texts):
    out = [read_file(p) for p in ([corpus] if isinstance(corpus, (str, os.PathLike)) else list(corpus or []))]
    out += [t.encode() if isinstance(t, str) else bytes(t) for t in (texts or [])]
    if not out:
        raise MendError(EINVAL, "tune: no training text (give corpus paths or texts)")
    return out


def _c_texts(data):
    """C arrays of the texts and their lengths (the bytes stay owned by data)."""
    return (c_char_p * len(data))(*data), (c_size_t * len(data))(*[len(d) for d in data])


def _step_bar(bar, p):
    if p.step > 0:
        bar.update(p.step, p.steps, loss=f"{p.loss:.4f}",
                   **({"val": f"{p.val_loss:.4f}"} if p.evaluated else {}))


def _opts(o, fields):
    """Set the given fields of a C options struct (None: keep the C default)."""
    for k, v in fields.items():
        if v is not None:
            setattr(o, k, v)


def tune(model, out_dir, corpus=None, *, texts=None, teacher=None, n_virtual=None, seqlen=None, windows=None,
         batch=None, steps=None, lr=None, warmup=None, schedule=None, weight_decay=None, clip=None, init=None,
         init_text=None, init_prompt=None, start_tokens=None, seed=None, val_frac=None, val_seqs=None, eval_every=None, ckpt_every=None,
         resume=False, max_seconds=None, stop_after=None, base_model=None, progress=True, on_info=None):
    """Train a soft prompt for model (mend_tune_run) and write it to out_dir as a
    PEFT prompt-tuning adapter, with last/, loss.csv, train.json and
    checkpoint.bin.

    model, teacher: mend.Model objects loaded with packed=False, or paths
    (loaded so). teacher: distill, KL(teacher || model + prompt); without
    one the objective is next-token cross-entropy. corpus: text files (a
    path or a list), texts: strings or bytes; paragraphs are separated by
    blank lines. Every option left None keeps mend_tune_opts_default's value
    (docs/tune.md): n_virtual 20, seqlen 512, windows "stream" |
    "paragraph", batch 4, steps 100, lr 1e-3, warmup min(100, steps/10),
    schedule "linear" | "cosine" | "constant", weight_decay 1e-5, clip 1.0,
    seed 1234, val_frac 0.05, val_seqs 16, eval_every 50, ckpt_every 50.
    init: "vocab" (default), "random" or "text" (with init_text); or
    init_prompt: an (n_virtual, dim) array or an adapter directory to start
    from (start_tokens: the text tokens it was trained on, default: its
    train.json's count). resume: continue from out_dir/checkpoint.bin (same options: the
    bits of an uninterrupted run). max_seconds: end early, writing the
    adapter. base_model: recorded in adapter_config.json (default: model's
    path). progress(p: TuneProgress) after every step and after the
    initial validation (step 0); a true return or an exception stops the run,
    which keeps its last checkpoint. True: a tqdm bar when tqdm is installed.
    on_info(info: TuneInfo) once the data is prepared. Returns a TuneResult."""
    m, own_m = _model(model, packed=False)
    t, own_t = (None, False) if teacher is None else _model(teacher, packed=False)
    try:
        o = _capi.mend_tune_opts()
        lib.mend_tune_opts_default(byref(o))
        for name, table, value in (("windows", WINDOWS, windows), ("schedule", SCHEDULES, schedule),
                                   ("init", INITS, init)):
            if value is not None and value not in table:
                raise MendError(EINVAL, f"tune: {name} '{value}' is not one of {', '.join(table)}")
        start = None
        if init_prompt is not None:
            start = read_prompt(init_prompt, m)[0] if isinstance(init_prompt, (str, os.PathLike)) else \
                np.ascontiguousarray(init_prompt, dtype=np.float32)
            if start.ndim != 2 or start.shape[1] != m.info().dim:
                raise MendError(EINVAL, f"tune: init_prompt has shape {start.shape}, expected (n_virtual, "
                                        f"{m.info().dim})")
            if n_virtual is not None and n_virtual != start.shape[0]:
                raise MendError(EINVAL, f"tune: init_prompt has {start.shape[0]} virtual tokens, n_virtual says "
                                        f"{n_virtual}")
            n_virtual, init = start.shape[0], "prompt"
            o.init_prompt = start.ctypes.data_as(_capi.f32_p)
            if isinstance(init_prompt, (str, os.PathLike)) and start_tokens is None:
                rec = read_record(init_prompt)   # its train.json: the tokens behind it
                start_tokens = rec.train_tokens + rec.start_tokens if rec else 0
        if init_text is not None:
            init = "text"
        _opts(o, dict(n_virtual=n_virtual, seqlen=seqlen, windows=WINDOWS.get(windows), batch=batch, steps=steps,
                      lr=lr, warmup=warmup, schedule=SCHEDULES.get(schedule), weight_decay=weight_decay, clip=clip,
                      init=INITS.get(init), init_text=None if init_text is None else init_text.encode(), seed=seed,
                      val_frac=val_frac, val_seqs=val_seqs, eval_every=eval_every, ckpt_every=ckpt_every,
                      max_seconds=max_seconds, stop_after=stop_after, start_tokens=start_tokens))
        o.objective = 1 if t is not None else 0
        o.resume = int(bool(resume))
        o.out_dir = os.fsencode(out_dir)
        o.base_model = os.fsencode(base_model if base_model is not None else m.path)
        data = _texts(corpus, texts)
        ctexts, lens = _c_texts(data)
        fn, close = reporter(progress, o.steps, "tune", "step", _step_bar)
        cb = Callback(lambda user, p: fn(TuneProgress(*[getattr(p[0], f) for f, _ in _capi.mend_tune_progress._fields_])))
        info_cb = Callback(lambda user, i: (on_info or (lambda _: None))(
            TuneInfo(*[getattr(i[0], f) for f, _ in _capi.mend_tune_info._fields_])))
        res = _capi.mend_tune_result()
        try:
            status = lib.mend_tune_run(m._h, t._h if t is not None else None, ctexts, lens, len(data), byref(o),
                                       _capi.tune_info_fn(info_cb), _capi.tune_progress_fn(cb), None, byref(res))
            info_cb.reraise()
            run(status, cb)
        finally:
            close()
        return TuneResult(res.steps_done, res.final_loss, res.best_val, res.first_val, res.best_step, res.elapsed,
                          res.tokens_per_s, os.fspath(out_dir))
    finally:
        if own_t:
            t.close()
        if own_m:
            m.close()

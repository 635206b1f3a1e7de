"""Compression (include/mend/compress.h): calibration samples and
mend_compress (RTN or GPTQ into a ggml type or mend's generic grid, with
optional magnitude / Wanda / SparseGPT pruning)."""
import ctypes
import os
from ctypes import byref, c_char, c_char_p, c_int
from dataclasses import dataclass

from . import _capi
from ._capi import MendError, check, lib
from ._np import np
from ._progress import Callback, reporter, run

EINVAL = -4
METHODS = {"rtn": 0, "gptq": 1}


@dataclass(frozen=True)
class CompressEvent:
    """What the progress callback receives (mend_compress_event)."""
    layer: int          # current layer (0-based)
    n_layers: int
    stage: str          # "qkv", "o", "gate/up", "down", "next", "layer done", "write"
    done: int           # work units done in this run
    total: int
    loss: float         # "layer done": GPTQ's error estimate summed over the layer


@dataclass(frozen=True)
class CompressResult:
    resumed_layers: int
    n_quantized: int
    bytes_quantized: int
    file_bytes: int
    n_fallback: int
    fallback_type: str
    seconds: float


def _model(model, **load):
    """(Model, owned): a mend.Model as given, or one loaded from a path."""
    from .model import Model
    if isinstance(model, Model):
        return model, False
    return Model(model, **load), True


def qfmt(name):
    """The canonical name of a quantization format ("q4_K", "int4-g128-asym");
    MendError for a name mend does not know."""
    f = _capi.mend_qfmt()
    check(lib.mend_qfmt_parse(byref(f), name.encode()))
    buf = (c_char * 64)()
    return lib.mend_qfmt_name(byref(f), buf, 64).decode()


def calibration(model, paths, nsamples=128, seqlen=2048, seed=0):
    """Calibration windows (mend_calib_build): an (nsamples, seqlen) int32
    array of tokens, sample i from file i mod len(paths) at a seeded
    paragraph start. model: a mend.Model or a path (its tokenizer is used)."""
    m, owned = _model(model, repack=False)
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    arr = (c_char_p * len(paths))(*[os.fsencode(p) for p in paths])
    c = _capi.mend_calib()
    try:
        check(lib.mend_calib_build(byref(c), m._tokenizer(), arr, len(paths), int(nsamples), int(seqlen), int(seed)))
        out = np.ctypeslib.as_array(c.tokens, shape=(c.nsamples, c.seqlen)).copy()
    finally:
        lib.mend_calib_free(byref(c))
        if owned:
            m.close()
    return out


def _calib_desc(paths, seed):
    """What mend compress records of its calibration text in the output's metadata."""
    names = []
    for p in paths:
        buf = (c_char * 256)()
        names.append(lib.mend_basename(os.fsencode(p), buf, 256).decode())
    return f"seed {seed}:" + "".join(" " + n for n in names)


def _event_bar(bar, ev):
    bar.update(ev.done, ev.total, layer=f"{ev.layer + 1}/{ev.n_layers}", stage=ev.stage)


def compress(src, out, fmt="q4_0", method="rtn", *, calib=None, nsamples=128, seqlen=2048, seed=0, prune=None,
             sparsity="50%", joint=False, act_order=None, damp=None, block=None, fit_importance=None, sink_weight=None,
             embd_type=None, checkpoint=None, progress=True):
    """Compress the GGUF file src into out (mend_compress; written atomically).

    fmt: a ggml type ("q4_0", "q4_K", "q8_0", "f16", ...) or mend's generic
    grid ("int4-g128-asym", "int3-row-sym"). method: "rtn" or "gptq".
    calib: calibration for GPTQ and for Wanda / SparseGPT pruning, either
    text files (a path or a list; nsamples windows of seqlen tokens drawn
    with seed, as `mend compress --calib`) or an (nsamples, seqlen) array of
    token ids. prune: None, "magnitude", "wanda" or "sparsegpt", to
    sparsity ("50%", "0.5" or "2:4"); joint: SparseGPT and GPTQ in one pass.
    act_order (default: on, off when pruning), damp, block, fit_importance
    (default: on for ggml types), sink_weight: GPTQ settings as the command's.
    embd_type: None keeps token_embd / output, or a ggml type (RTN).
    checkpoint: a path; a killed or cancelled GPTQ run resumes from it.
    progress(event: CompressEvent) is called for every stage of every layer;
    a true return or an exception stops the run (after a "layer done"
    event the checkpoint holds that layer). True: a tqdm bar (when tqdm is
    installed); False: nothing. Returns a CompressResult."""
    o = _capi.mend_compress_opts()
    lib.mend_compress_opts_init(byref(o))
    if method not in METHODS:
        raise MendError(EINVAL, f"compress: method '{method}' is not rtn or gptq")
    o.method = METHODS[method]
    check(lib.mend_qfmt_parse(byref(o.fmt), fmt.encode()))
    if embd_type is not None:
        t = lib.mend_type_from_name(embd_type.encode())
        if t < 0:
            raise MendError(EINVAL, f"compress: embd_type '{embd_type}' is not a ggml type")
        o.embd_type = t
    po = None
    if prune is not None:
        po = _capi.mend_prune_opts()
        m = c_int()
        check(lib.mend_prune_method_parse(prune.encode(), byref(m)))
        po.method = m.value
        check(lib.mend_sparsity_parse(byref(po.sp), str(sparsity).encode()))
        po.joint = int(bool(joint))
        o.prune = ctypes.pointer(po)
    if act_order is not None:   # else the library's default: on unless pruning
        o.act_order = int(act_order)
    if fit_importance is not None:   # else on for ggml types
        o.fit_importance = int(fit_importance)
    if damp is not None:
        o.damp = float(damp)
    if block is not None:
        o.block = int(block)
    if sink_weight is not None:
        o.sink_weight = int(sink_weight)
    tokens = None
    if calib is not None:
        if isinstance(calib, np.ndarray):
            tokens = np.ascontiguousarray(calib, dtype=np.int32)
            if tokens.ndim != 2:
                raise MendError(EINVAL, f"compress: calib tokens have shape {calib.shape}, expected (nsamples, seqlen)")
        else:
            paths = [calib] if isinstance(calib, (str, os.PathLike)) else list(calib)
            tokens = calibration(src, paths, nsamples, seqlen, seed)
            o.calib_desc = _calib_desc(paths, seed).encode()
        o.calib = tokens.ctypes.data_as(_capi.i32_p)
        o.nsamples, o.seqlen = tokens.shape
    if checkpoint is not None:
        o.checkpoint = os.fsencode(checkpoint)
    fn, close = reporter(progress, None, "compress", "step", _event_bar)
    cb = Callback(lambda user, ev: fn(CompressEvent(ev[0].layer, ev[0].n_layers, ev[0].stage.decode(), ev[0].done,
                                                    ev[0].total, ev[0].loss)))
    o.progress = _capi.compress_progress_fn(cb)
    res = _capi.mend_compress_result()
    try:
        run(lib.mend_compress(os.fsencode(src), os.fsencode(out), byref(o), byref(res)), cb)
    finally:
        close()
    ft = lib.mend_type_name(res.fallback_type)
    return CompressResult(res.resumed_layers, res.n_quantized, res.bytes_quantized, res.file_bytes, res.n_fallback,
                          ft.decode() if ft and res.n_fallback else None, res.seconds)

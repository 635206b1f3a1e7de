"""Models, run states, samplers and perplexity: Python classes over the C
functions declared in mend._capi. NumPy in and out: token ids are int32,
logits and embeddings float32."""
from __future__ import annotations  # np.ndarray in field annotations: no numpy import at class creation

import ctypes
import dataclasses
import os
from ctypes import byref, c_char, c_double, c_int, c_int32, c_size_t, c_uint64, c_void_p
from dataclasses import dataclass
from typing import Optional

from . import _capi
from ._capi import MendError, check, lib, take_string
from ._np import np
from ._progress import Callback, reporter

EINVAL = -4   # MEND_EINVAL
PROTOCOLS = {"gptq": _capi.MEND_PPL_GPTQ, "llamacpp": _capi.MEND_PPL_LLAMACPP}


def _ids(ids):
    """ids as a contiguous int32 array and its C pointer"""
    a = np.ascontiguousarray(ids, dtype=np.int32).reshape(-1)
    return a, a.ctypes.data_as(_capi.i32_p)


def _floats(x, cols, what):
    """x as a contiguous (rows, cols) float32 array and its C pointer"""
    a = np.ascontiguousarray(x, dtype=np.float32)
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.ndim != 2 or a.shape[1] != cols:
        raise MendError(EINVAL, f"{what}: expected shape (n, {cols}), got {np.shape(x)}")
    return a, a.ctypes.data_as(_capi.f32_p)


@dataclass(frozen=True)
class ModelInfo:
    arch: str
    n_vocab: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    hidden_dim: int
    ctx_len: int
    rope_theta: float
    norm_eps: float
    tied_embeddings: bool
    n_params: int
    repacked_bytes: int


@dataclass(frozen=True)
class Fingerprint:
    """16-hex-digit fingerprints (docs/formats.md); source and recipe only for
    files `mend compress` wrote, else None."""
    model: Optional[str]
    source: Optional[str]
    recipe: Optional[str]


@dataclass(frozen=True)
class PplResult:
    ppl: float          # the protocol's perplexity
    ppl_err: float      # llama.cpp's +/-
    nll_sum: float      # sum of -log p over scored tokens
    nll2_sum: float     # sum of (-log p)^2
    n_scored: int
    n_chunks: int       # windows scored
    n_ctx: int          # window length used
    window_nll: np.ndarray   # mean nll of each scored window
    report: Optional[str] = None    # with a bank: Markdown (bank, timing, rows, choice histograms)
    rows: Optional[list] = None     # with a bank and per_prompt: (name, ppl, err) of no prompt, each prompt, ...


def _fingerprint(fp):
    """A C mend_fp as a Fingerprint."""
    return Fingerprint(fp_hex(fp.model) if fp.has_model else None, fp_hex(fp.source) if fp.has_source else None,
                       fp_hex(fp.recipe) if fp.has_recipe else None)


def basename(path):
    """The last component of path, trailing slashes dropped (mend_basename):
    the model and prompt labels of results lines."""
    buf = (c_char * 4096)()
    return lib.mend_basename(os.fsencode(path), buf, 4096).decode("utf-8", "replace")


def fp_hex(fp):
    buf = (c_char * 17)()
    lib.mend_fp_hex(c_uint64(fp), buf)
    return buf.value.decode()


def fp_parse(text):
    """16 lowercase hex digits -> int; MendError otherwise."""
    out = c_uint64()
    check(lib.mend_fp_parse(text.encode(), byref(out)))
    return out.value


def chat_format(template, user, system=None):
    """One user turn formatted with a ChatML template, ready for generation
    (system None: the template's default system text, "": none)."""
    out = c_void_p()
    check(lib.mend_chat_format(template.encode(), None if system is None else system.encode(), user.encode(),
                               byref(out)))
    return take_string(out)


def nll_from_logits(logits, target):
    """-log softmax(logits)[target], in double."""
    row, p = _floats(logits, np.shape(logits)[-1], "nll_from_logits")
    return lib.mend_nll_from_logits(p, row.shape[1], int(target))


def _ppl_opts(protocol, n_ctx, n_chunks, n_batch, bos, n_tokens):
    if protocol not in PROTOCOLS:
        raise MendError(EINVAL, f"perplexity: protocol '{protocol}' is not gptq or llamacpp")
    # room for every window: n_chunks of them, or as many as the shortest window allows
    wnll = np.zeros(n_chunks if n_chunks > 0 else n_tokens // 2 + 1, dtype=np.float64)
    opts = _capi.mend_ppl_opts(PROTOCOLS[protocol], int(n_ctx), int(n_chunks), int(n_batch), int(bos),
                               wnll.ctypes.data_as(ctypes.POINTER(c_double)))
    return opts, wnll


def _ppl_call(run, progress, wnll):
    """run(progress_fn, result) with progress(done, total, running_ppl) wrapped
    (a callable, True: a tqdm bar when tqdm is installed, None: nothing)"""
    fn, close = reporter(progress, None, "ppl", "window", lambda bar, d, t, p: bar.update(d, t, ppl=f"{p:.3f}"))
    cb = Callback(fn)
    c_progress = _capi.ppl_progress_fn(lambda user, done, total, ppl: cb(done, total, ppl))
    res = _capi.mend_ppl_result()
    try:
        status = run(c_progress, res)
    finally:
        close()
    cb.reraise()
    check(status)
    return PplResult(res.ppl, res.ppl_err, res.nll_sum, res.nll2_sum, res.n_scored, res.n_chunks, res.n_ctx,
                     wnll[:res.n_chunks].copy())


def ppl_run(tokens, score, protocol="gptq", n_ctx=0, n_chunks=0, n_batch=0, bos=-1, progress=None):
    """The perplexity protocol's loop over tokens with any scorer:
    score(window, first) returns the nll of window[first+j+1] given what
    precedes it, for j in range(len(window) - 1 - first)."""
    ids, p = _ids(tokens)
    opts, wnll = _ppl_opts(protocol, n_ctx, n_chunks, n_batch, bos, len(ids))

    def c_score(user, win, n, first, nll):
        w = np.ctypeslib.as_array(win, shape=(n,)).copy()
        out = np.asarray(score(w, first), dtype=np.float64).reshape(-1)
        if out.shape[0] != n - 1 - first:
            raise ValueError(f"ppl_run: score returned {out.shape[0]} values, expected {n - 1 - first}")
        ctypes.memmove(nll, out.ctypes.data, out.nbytes)
        return 0

    sc = Callback(lambda *a: c_score(*a) != 0)
    c_sc = _capi.ppl_score_fn(sc)
    r = _ppl_call(lambda cp, res: lib.mend_ppl_run(p, len(ids), byref(opts), c_sc, None, cp, None, byref(res)),
                  progress, wnll)
    sc.reraise()
    return r


class _Handle:
    """A C object (self._h) that its class's _FREE function releases: at
    close(), on leaving a with block, or when the object is collected."""
    _FREE = None
    _h = None

    def close(self):
        if self._h:
            getattr(lib, self._FREE)(self._h)
            self._h = None

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Model(_Handle):
    """A GGUF file or a Hugging Face directory, loaded by mend_model_load.
    packed=False dequantizes every matrix to f32 at load; repack=False skips
    the interleaved copy of q4_0/q4_1/q5_0/q2_K/q3_K/q4_K/q6_K matrices
    (mend_load_opts)."""
    _FREE = "mend_model_free"

    def __init__(self, path, packed=True, repack=True):
        self.path = os.fspath(path)
        self.packed = bool(packed)
        self._h = c_void_p()
        opts = _capi.mend_load_opts(1 if packed else 0, 0 if repack else 1)
        check(lib.mend_model_load(byref(self._h), os.fsencode(self.path), byref(opts)))
        self._tok = lib.mend_model_tokenizer(self._h)
        info = _capi.mend_model_info()
        lib.mend_model_get_info(self._h, byref(info))
        self._info = ModelInfo(info.arch.decode(), info.n_vocab, info.dim, info.n_layers, info.n_heads,
                               info.n_kv_heads, info.head_dim, info.hidden_dim, info.ctx_len, info.rope_theta,
                               info.norm_eps, bool(info.tied_embeddings), info.n_params, info.repacked_bytes)

    def __repr__(self):
        return f"mend.Model({self.path!r})"

    # ---- description
    def info(self):
        return self._info

    def fingerprint(self):
        fp = _capi.mend_fp()
        check(lib.mend_model_fingerprint(self._h, byref(fp)))
        return _fingerprint(fp)

    def features(self):
        """One line naming the architecture and every feature it uses, e.g.
        "llama: GQA 4/2, rope base 10000" (mend_describe_features)."""
        buf = (c_char * 512)()
        lib.mend_describe_features(self._h, buf, 512)
        return buf.value.decode("utf-8", "replace")

    def meta(self, key):
        """A string of the model's metadata (GGUF key), or None."""
        v = lib.mend_model_meta_str(self._h, key.encode())
        return None if v is None else v.decode("utf-8", "replace")

    # ---- tokenizer
    def _tokenizer(self):
        if not self._tok:
            raise MendError(EINVAL, f"{self.path}: the model has no tokenizer")
        return self._tok

    def tokenize(self, text, add_special=True, parse_special=False):
        """Token ids (int32 array); add_special adds BOS/EOS as the model's
        metadata says, parse_special recognises special-token text."""
        data = text.encode() if isinstance(text, str) else bytes(text)
        out, n = _capi.i32_p(), c_size_t()
        check(lib.mend_tokenize(self._tokenizer(), data, len(data), int(add_special), int(parse_special),
                                byref(out), byref(n)))
        try:
            return np.ctypeslib.as_array(out, shape=(n.value,)).copy() if n.value else np.zeros(0, np.int32)
        finally:
            _capi.libc.free(out)

    def detokenize(self, ids, render_special=False):
        a, p = _ids(ids)
        out = c_void_p()
        check(lib.mend_detokenize_ex(self._tokenizer(), p, len(a), int(render_special), byref(out)))
        return take_string(out)

    def token_piece(self, token):
        """The bytes of one token."""
        tok, cap = self._tokenizer(), 64
        while True:
            buf = ctypes.create_string_buffer(cap)
            n = check(lib.mend_token_piece(tok, int(token), buf, cap))
            if n <= cap:
                return buf.raw[:n]
            cap = n

    @property
    def bos(self):
        return lib.mend_token_bos(self._tokenizer())

    @property
    def eos(self):
        return lib.mend_token_eos(self._tokenizer())

    @property
    def add_bos(self):
        return bool(lib.mend_tokenizer_add_bos(self._tokenizer()))

    def is_eog(self, token):
        return bool(lib.mend_token_is_eog(self._tokenizer(), int(token)))

    def chat(self, user, system=None):
        """A user turn through the model's chat template (ChatML), as text."""
        tmpl = self.meta("tokenizer.chat_template")
        if tmpl is None:
            raise MendError(EINVAL, f"{self.path}: the model has no tokenizer.chat_template")
        return chat_format(tmpl, user, system)

    # ---- forward pass
    def state(self, n_ctx=None, max_batch=512):
        return State(self, n_ctx or self._info.ctx_len, max_batch)

    def logits(self, ids=None, embeds=None, prompt=None, last_only=False):
        """Logits (n, n_vocab) float32 of every position of ids (token ids) or
        embeds ((n, dim) embedding vectors); prompt: a soft prompt
        ((n_virtual, dim)) run first, so the text's positions follow it (as
        PEFT's prompt tuning). last_only: the last position's row only."""
        if (ids is None) == (embeds is None):
            raise MendError(EINVAL, "Model.logits: give exactly one of ids and embeds")
        x = _ids(ids)[0] if ids is not None else _floats(embeds, self._info.dim, "Model.logits: embeds")[0]
        n_virtual = 0 if prompt is None else _floats(prompt, self._info.dim, "Model.logits: prompt")[0].shape[0]
        st = self.state(n_virtual + len(x), max_batch=max(1, min(512, n_virtual + len(x))))
        try:
            if n_virtual:
                st.forward(embeds=prompt, pos=0, logits=False)
            if ids is not None:
                return st.forward(tokens=x, pos=n_virtual, logits_all=not last_only)
            return st.forward(embeds=x, pos=n_virtual, logits_all=not last_only)
        finally:
            st.close()

    # ---- generation
    def generate_ids(self, ids, n=128, temperature=0.0, top_p=0.95, top_k=0, seed=0, prompt=None,
                     stop_at_eog=True):
        """Continue ids by up to n tokens (greedy at temperature 0); returns
        the new ids. prompt: a soft prompt placed before ids."""
        x, _ = _ids(ids)
        n_virtual = 0 if prompt is None else np.shape(prompt)[0]
        st = self.state(n_virtual + len(x) + n, max_batch=max(1, min(512, max(n_virtual, len(x)))))
        smp = Sampler(self._info.n_vocab, temperature, top_p, top_k, seed)
        out = []
        try:
            if n_virtual:
                st.forward(embeds=prompt, pos=0, logits=False)
            row = st.forward(tokens=x, pos=n_virtual)
            pos = n_virtual + len(x)
            while len(out) < n:
                t = smp.sample(row)
                if stop_at_eog and self._tok and self.is_eog(t):
                    break
                out.append(t)
                if len(out) < n:
                    row = st.forward(tokens=[t], pos=pos)
                    pos += 1
        finally:
            smp.close()
            st.close()
        return np.array(out, dtype=np.int32)

    def generate(self, text, n=128, chat=False, system=None, **kw):
        """The continuation of text (with chat=True: the reply to text as a
        user turn of the chat template), as text. Options as generate_ids."""
        if chat:
            ids = self.tokenize(self.chat(text, system), add_special=False, parse_special=True)
        else:
            ids = self.tokenize(text)
        return self.detokenize(self.generate_ids(ids, n=n, **kw))

    # ---- perplexity
    def perplexity(self, text=None, ids=None, protocol="gptq", n_ctx=0, n_chunks=0, n_batch=0, progress=None,
                   prompt=None, bank=None, select=None, select_layers=None, select_tokens=128, per_prompt=False):
        """Perplexity of text (str) or of token ids under a protocol of
        docs/ppl.md, as `mend ppl` measures it: "gptq" (windows of n_ctx,
        default 2048) or "llamacpp" (chunks of n_ctx, default 512, second half
        scored, the model's BOS first; a text loses one trailing newline, as
        llama.cpp's -f). n_chunks > 0 scores only the first windows.
        prompt: a soft prompt ((n_virtual, dim) array or an adapter
        directory) before every window (mend_perplexity_prompt). bank: a bank
        directory (or a mend.IDP) with a prompt chosen per window from its
        first select_tokens tokens (as `mend ppl --select-tokens`) by select (a selector name or a
        comma list; default the bank's), select_layers (A, B), per_prompt
        (also every prompt alone: result.rows); result.report is the
        Markdown `mend ppl --bank` prints (mend_idp_perplexity).
        progress(done, total, running_ppl) is called after each window; a
        true return or an exception cancels; True: a tqdm bar when tqdm is
        installed."""
        if (text is None) == (ids is None):
            raise MendError(EINVAL, "Model.perplexity: give exactly one of text and ids")
        if prompt is not None and bank is not None:
            raise MendError(EINVAL, "Model.perplexity: give prompt or bank, not both")
        llamacpp = protocol == "llamacpp"
        if text is not None:
            if llamacpp and text.endswith("\n"):
                text = text[:-1]
            ids = self.tokenize(text, add_special=llamacpp)
        bos = self.bos if llamacpp and self._tok and self.add_bos else -1
        x, p = _ids(ids)
        opts, wnll = _ppl_opts(protocol, n_ctx, n_chunks, n_batch, bos, len(x))
        if bank is not None:
            return self._ppl_bank(x, p, opts, wnll, bank, select, select_layers, select_tokens, per_prompt, progress)
        if prompt is not None:
            from .tuning import read_prompt
            pr = read_prompt(prompt, self)[0] if isinstance(prompt, (str, os.PathLike)) else \
                _floats(prompt, self._info.dim, "Model.perplexity: prompt")[0]
            pp = pr.ctypes.data_as(_capi.f32_p)
            return _ppl_call(lambda cp, res: lib.mend_perplexity_prompt(self._h, pp, pr.shape[0], p, len(x), byref(opts),
                                                                        cp, None, byref(res)), progress, wnll)
        return _ppl_call(lambda cp, res: lib.mend_perplexity(self._h, p, len(x), byref(opts), cp, None, byref(res)),
                         progress, wnll)

    def _ppl_bank(self, x, p, opts, wnll, bank, select, select_layers, select_tokens, per_prompt, progress):
        from .evaluation import IDP
        idp = bank if isinstance(bank, IDP) else IDP(self, bank, select, select_layers, select_tokens, per_prompt)
        rep = _capi.mend_idp_ppl_report()
        try:
            r = _ppl_call(lambda cp, res: lib.mend_idp_perplexity(idp._h, p, len(x), byref(opts), int(select_tokens),
                                                                  cp, None, byref(res), byref(rep)), progress, wnll)
            text = ctypes.string_at(rep.text).decode("utf-8", "replace") if rep.text else None
            rows = [(rep.rows[k].name.decode(), rep.rows[k].ppl, rep.rows[k].err) for k in range(rep.n_rows)] \
                if rep.rows else None
            return dataclasses.replace(r, report=text, rows=rows)
        finally:
            lib.mend_idp_ppl_report_free(byref(rep))
            if idp is not bank:
                idp.close()


def _rows(rows, n):
    """rows: (n, 6) ints pos, a0, a1, b0, b1, c0 -> a C array of mend_row"""
    r = np.ascontiguousarray(rows, dtype=np.int32)
    if r.shape != (n, 6):
        raise MendError(EINVAL, f"forward_rows: rows has shape {r.shape}, expected ({n}, 6)")
    return r, r.ctypes.data_as(ctypes.POINTER(_capi.mend_row))


class State(_Handle):
    """A run state (mend_state): KV cache for n_ctx positions, batches of up
    to max_batch positions."""
    _FREE = "mend_state_free"

    def __init__(self, model, n_ctx, max_batch=512):
        self.model = model   # kept alive as long as the state
        self._h = c_void_p()
        check(lib.mend_state_new(byref(self._h), model._h, int(n_ctx), int(max_batch)))
        self.n_vocab = model.info().n_vocab

    @property
    def n_ctx(self):
        return lib.mend_state_n_ctx(self._h)

    def forward(self, tokens=None, embeds=None, pos=0, logits=True, logits_all=False):
        """Run tokens (ids) or embeds ((n, dim)) at positions pos.. (mend_forward);
        returns the logits of every position (logits_all), of the last one,
        or None (logits=False)."""
        if tokens is not None:
            x, tp, ep = *_ids(tokens), None
        else:
            x, ep = _floats(embeds, self.model.info().dim, "State.forward: embeds") if embeds is not None else (
                np.zeros(0), None)
            tp = None
        n = len(x)
        out = None
        if logits:
            out = np.empty((n, self.n_vocab) if logits_all else (self.n_vocab,), dtype=np.float32)
        check(lib.mend_forward(self._h, tp, ep, n, int(pos), None if out is None else out.ctypes.data_as(_capi.f32_p),
                               int(logits_all)))
        return out

    def forward_rows(self, tokens, rows, out_rows, slot0=0, slots=None):
        """Several sequences in one call (mend_forward_rows, or with slots
        mend_forward_rows_at): rows is (n, 6) of pos, a0, a1, b0, b1, c0;
        returns the logits (len(out_rows), n_vocab) of the rows out_rows."""
        x, tp = _ids(tokens)
        r, rp = _rows(rows, len(x))
        o = np.ascontiguousarray(out_rows, dtype=np.int32).reshape(-1)
        out = np.empty((len(o), self.n_vocab), dtype=np.float32)
        op = o.ctypes.data_as(ctypes.POINTER(c_int)) if len(o) else None
        lp = out.ctypes.data_as(_capi.f32_p) if len(o) else None
        if slots is None:
            check(lib.mend_forward_rows(self._h, tp, len(x), int(slot0), rp, lp, op, len(o)))
        else:
            s = np.ascontiguousarray(slots, dtype=np.int32).reshape(-1)
            check(lib.mend_forward_rows_at(self._h, tp, len(x), s.ctypes.data_as(ctypes.POINTER(c_int)), rp, lp, op,
                                           len(o)))
        return out


class Sampler(_Handle):
    """Next-token choice (mend_sampler): greedy at temperature <= 0, else
    softmax(logits / temperature) within top_k and top_p, seeded."""
    _FREE = "mend_sampler_free"

    def __init__(self, n_vocab, temperature=0.0, top_p=1.0, top_k=0, seed=0):
        self._h = c_void_p()
        opts = _capi.mend_sampler_opts(float(temperature), float(top_p), int(top_k), int(seed))
        check(lib.mend_sampler_new(byref(self._h), int(n_vocab), byref(opts)))
        self.n_vocab = int(n_vocab)

    def sample(self, logits):
        row, p = _floats(logits, self.n_vocab, "Sampler.sample: logits")
        return check(lib.mend_sample(self._h, p))


def perplexity(model, text=None, ids=None, **kw):
    """Model.perplexity of a mend.Model or a model path (loaded packed, as
    `mend ppl` loads it); the same options, with prompt= or bank=."""
    if isinstance(model, Model):
        return model.perplexity(text, ids, **kw)
    with Model(model) as m:
        return m.perplexity(text, ids, **kw)

"""The C declarations of include/mend.h for ctypes: the library, its structs,
its callback types and the argument/result types of every function.

This module only declares; mend.model and mend.core hold the Python classes.
When the header gains functions (compress, tune, banks, evaluate), their
declarations go into _FUNCTIONS here and their classes beside Model.
"""
import ctypes
import ctypes.util
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_double, c_float, c_int, c_int32, c_int64,
                    c_size_t, c_uint64, c_void_p)

_HERE = os.path.dirname(os.path.abspath(__file__))


def _load():
    # MEND_LIBRARY: another libmend.so (e.g. a build tree's), else the one
    # installed inside this package
    path = os.environ.get("MEND_LIBRARY") or os.path.join(_HERE, "libmend.so")
    try:
        return ctypes.CDLL(path)
    except OSError as e:
        raise ImportError(f"mend: cannot load the C library {path}: {e}") from e


lib = _load()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.free.argtypes = [c_void_p]
libc.free.restype = None


# ---- structs (field for field as in mend.h)
class mend_load_opts(Structure):
    _fields_ = [("keep_packed", c_int), ("no_repack", c_int)]


class mend_model_info(Structure):
    _fields_ = [("arch", c_char * 32), ("n_vocab", c_int), ("dim", c_int), ("n_layers", c_int), ("n_heads", c_int),
                ("n_kv_heads", c_int), ("head_dim", c_int), ("hidden_dim", c_int), ("ctx_len", c_int),
                ("rope_theta", c_float), ("norm_eps", c_float), ("tied_embeddings", c_int), ("n_params", c_int64),
                ("repacked_bytes", c_size_t)]


class mend_fp(Structure):
    _fields_ = [("has_model", c_int), ("has_source", c_int), ("has_recipe", c_int), ("model", c_uint64),
                ("source", c_uint64), ("recipe", c_uint64)]


class mend_row(Structure):
    _fields_ = [("pos", c_int), ("a0", c_int), ("a1", c_int), ("b0", c_int), ("b1", c_int), ("c0", c_int)]


class mend_sampler_opts(Structure):
    _fields_ = [("temperature", c_float), ("top_p", c_float), ("top_k", c_int), ("seed", c_uint64)]


class mend_ppl_opts(Structure):
    _fields_ = [("protocol", c_int), ("n_ctx", c_int), ("n_chunks", c_int), ("n_batch", c_int), ("bos", c_int32),
                ("window_nll", POINTER(c_double))]


class mend_ppl_result(Structure):
    _fields_ = [("ppl", c_double), ("nll_sum", c_double), ("nll2_sum", c_double), ("n_scored", c_int64),
                ("n_chunks", c_int), ("n_ctx", c_int), ("ppl_err", c_double)]


# ---- enums and callbacks
MEND_PPL_GPTQ, MEND_PPL_LLAMACPP = 0, 1
FP_MATCH = {0: "same", 1: "same_recipe", 2: "other", 3: "unknown"}

ppl_progress_fn = CFUNCTYPE(c_int, c_void_p, c_int, c_int, c_double)
ppl_score_fn = CFUNCTYPE(c_int, c_void_p, POINTER(c_int32), c_int, c_int, POINTER(c_double))

# opaque handles
model_p = c_void_p
tokenizer_p = c_void_p
state_p = c_void_p
sampler_p = c_void_p
i32_p = POINTER(c_int32)
f32_p = POINTER(c_float)

# ---- functions: name -> (restype, argtypes)
_FUNCTIONS = {
    # errors, threads, instruction set
    "mend_last_error": (c_char_p, []),
    "mend_strerror": (c_char_p, [c_int]),
    "mend_set_threads": (None, [c_int]),
    "mend_get_threads": (c_int, []),
    "mend_set_isa": (c_int, [c_char_p]),
    "mend_isa": (c_char_p, []),
    "mend_isa_describe": (c_char_p, []),
    "mend_isa_detected": (c_char_p, []),
    # models
    "mend_model_load": (c_int, [POINTER(model_p), c_char_p, POINTER(mend_load_opts)]),
    "mend_model_free": (None, [model_p]),
    "mend_model_get_info": (None, [model_p, POINTER(mend_model_info)]),
    "mend_model_tokenizer": (tokenizer_p, [model_p]),
    "mend_model_meta_str": (c_char_p, [model_p, c_char_p]),
    # fingerprints
    "mend_model_fingerprint": (c_int, [model_p, POINTER(mend_fp)]),
    "mend_fp_hex": (None, [c_uint64, POINTER(c_char)]),
    "mend_fp_parse": (c_int, [c_char_p, POINTER(c_uint64)]),
    "mend_fp_compare": (c_int, [POINTER(mend_fp), POINTER(mend_fp)]),
    # tokenizer
    "mend_tokenize": (c_int, [tokenizer_p, c_char_p, c_size_t, c_int, c_int, POINTER(i32_p), POINTER(c_size_t)]),
    "mend_token_piece": (c_int, [tokenizer_p, c_int32, POINTER(c_char), c_size_t]),
    "mend_detokenize": (c_int, [tokenizer_p, i32_p, c_size_t, POINTER(c_void_p)]),
    "mend_detokenize_ex": (c_int, [tokenizer_p, i32_p, c_size_t, c_int, POINTER(c_void_p)]),
    "mend_tokenizer_n_vocab": (c_int, [tokenizer_p]),
    "mend_token_bos": (c_int32, [tokenizer_p]),
    "mend_token_eos": (c_int32, [tokenizer_p]),
    "mend_tokenizer_add_bos": (c_int, [tokenizer_p]),
    "mend_token_is_eog": (c_int, [tokenizer_p, c_int32]),
    # forward pass
    "mend_state_new": (c_int, [POINTER(state_p), model_p, c_int, c_int]),
    "mend_state_free": (None, [state_p]),
    "mend_state_n_ctx": (c_int, [state_p]),
    "mend_forward": (c_int, [state_p, i32_p, f32_p, c_int, c_int, f32_p, c_int]),
    "mend_forward_rows": (c_int, [state_p, i32_p, c_int, c_int, POINTER(mend_row), f32_p, POINTER(c_int), c_int]),
    "mend_forward_rows_at": (c_int, [state_p, i32_p, c_int, POINTER(c_int), POINTER(mend_row), f32_p,
                                     POINTER(c_int), c_int]),
    # sampling, chat templates
    "mend_sampler_new": (c_int, [POINTER(sampler_p), c_int, POINTER(mend_sampler_opts)]),
    "mend_sampler_free": (None, [sampler_p]),
    "mend_sample": (c_int32, [sampler_p, f32_p]),
    "mend_chat_format": (c_int, [c_char_p, c_char_p, c_char_p, POINTER(c_void_p)]),
    # perplexity
    "mend_ppl_run": (c_int, [i32_p, c_size_t, POINTER(mend_ppl_opts), ppl_score_fn, c_void_p, ppl_progress_fn,
                             c_void_p, POINTER(mend_ppl_result)]),
    "mend_perplexity": (c_int, [model_p, i32_p, c_size_t, POINTER(mend_ppl_opts), ppl_progress_fn, c_void_p,
                                POINTER(mend_ppl_result)]),
    "mend_nll_from_logits": (c_double, [f32_p, c_int, c_int32]),
}

for _name, (_res, _args) in _FUNCTIONS.items():
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args


class MendError(Exception):
    """A failed mend call: status is the negative MEND_E* code, code its name
    ("EFORMAT", ...), and str(error) the library's sentence."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.code = lib.mend_strerror(status).decode()


def check(status):
    """Raises MendError for a negative status, with mend_last_error()'s sentence."""
    if status < 0:
        raise MendError(status, lib.mend_last_error().decode("utf-8", "replace"))
    return status


def take_string(ptr):
    """A malloc'd NUL-terminated string from the library, as str; freed."""
    try:
        return ctypes.string_at(ptr).decode("utf-8", "replace")
    finally:
        libc.free(ptr)

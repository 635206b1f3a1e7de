"""The C declarations of include/mend.h for ctypes: the library, its structs,
its callback types and the argument/result types of every function.

This module only declares; mend.model, mend.core, mend.compression,
mend.tuning, mend.banks and mend.evaluation hold the Python classes. When the
header gains functions, their declarations go into _FUNCTIONS here.
"""
import ctypes
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_double, c_float, c_int, c_int32, c_int64,
                    c_long, c_size_t, c_uint32, c_uint64, c_void_p)

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
# free() for the strings and arrays the library returns: the C library the
# process already has (dlopen(NULL)), not ctypes.util.find_library("c"),
# which runs ldconfig in a child process on every import
libc = ctypes.CDLL(None)
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


# mend/compress.h
class mend_qfmt(Structure):
    _fields_ = [("type", c_uint32), ("bits", c_int), ("group", c_int), ("sym", c_int)]


class mend_sparsity(Structure):
    _fields_ = [("ratio", c_double), ("n", c_int), ("m", c_int)]


class mend_prune_opts(Structure):
    _fields_ = [("method", c_int), ("sp", mend_sparsity), ("joint", c_int)]


class mend_calib(Structure):
    _fields_ = [("nsamples", c_int), ("seqlen", c_int), ("tokens", POINTER(c_int32)), ("hash", c_uint64)]


class mend_compress_event(Structure):
    _fields_ = [("layer", c_int), ("n_layers", c_int), ("stage", c_char_p), ("done", c_int64), ("total", c_int64),
                ("loss", c_double)]


compress_progress_fn = CFUNCTYPE(c_int, c_void_p, POINTER(mend_compress_event))


class mend_compress_opts(Structure):
    _fields_ = [("method", c_int), ("fmt", mend_qfmt), ("embd_type", c_int), ("damp", c_double), ("block", c_int),
                ("act_order", c_int), ("fit_importance", c_int), ("sink_weight", c_int),
                ("calib", POINTER(c_int32)), ("nsamples", c_int), ("seqlen", c_int), ("calib_desc", c_char_p),
                ("checkpoint", c_char_p), ("progress", compress_progress_fn), ("progress_user", c_void_p),
                ("prune", POINTER(mend_prune_opts))]


class mend_compress_result(Structure):
    _fields_ = [("resumed_layers", c_int), ("n_quantized", c_int64), ("bytes_quantized", c_int64),
                ("file_bytes", c_int64), ("n_fallback", c_int), ("fallback_type", c_uint32), ("seconds", c_double)]


# mend/tune.h
class mend_adapter_meta(Structure):
    _fields_ = [("base_model", c_char_p), ("init", c_char_p), ("init_text", c_char_p),
                ("num_attention_heads", c_int), ("num_layers", c_int), ("trained_on", POINTER(mend_fp))]


class mend_tune_opts(Structure):
    _fields_ = [("n_virtual", c_int), ("seqlen", c_int), ("windows", c_int), ("batch", c_int), ("steps", c_int),
                ("lr", c_double), ("beta1", c_double), ("beta2", c_double), ("adam_eps", c_double),
                ("weight_decay", c_double), ("clip", c_double), ("warmup", c_int), ("schedule", c_int),
                ("objective", c_int), ("init", c_int), ("init_text", c_char_p), ("init_prompt", POINTER(c_float)),
                ("start_tokens", c_int64), ("seed", c_uint64), ("val_frac", c_double), ("val_seqs", c_int),
                ("eval_every", c_int), ("ckpt_every", c_int), ("stop_after", c_int), ("resume", c_int),
                ("max_seconds", c_double), ("out_dir", c_char_p), ("base_model", c_char_p)]


class mend_tune_record(Structure):
    _fields_ = [("steps", c_int64), ("batch", c_int64), ("seqlen", c_int64), ("train_tokens", c_int64),
                ("start_tokens", c_int64)]


class mend_tune_progress(Structure):
    _fields_ = [("step", c_int), ("steps", c_int), ("loss", c_double), ("ce", c_double), ("lr", c_double),
                ("grad_norm", c_double), ("evaluated", c_int), ("val_loss", c_double), ("val_ce", c_double),
                ("best_val", c_double), ("best_step", c_int), ("elapsed", c_double), ("tokens_per_s", c_double),
                ("resumed_from", c_int), ("epoch", c_int)]


class mend_tune_info(Structure):
    _fields_ = [("n_paragraphs", c_int), ("n_val_paragraphs", c_int), ("n_train_tokens", c_int64),
                ("n_val_tokens", c_int64), ("n_train_seqs", c_int), ("n_val_seqs", c_int), ("trainer_bytes", c_size_t)]


class mend_tune_result(Structure):
    _fields_ = [("steps_done", c_int), ("final_loss", c_double), ("best_val", c_double), ("first_val", c_double),
                ("best_step", c_int), ("elapsed", c_double), ("tokens_per_s", c_double)]


tune_progress_fn = CFUNCTYPE(c_int, c_void_p, POINTER(mend_tune_progress))
tune_info_fn = CFUNCTYPE(c_int, c_void_p, POINTER(mend_tune_info))


# mend/bank.h
MEND_BANK_MAX_PROMPTS = 256


class mend_bank_info(Structure):
    _fields_ = [("dir", c_char_p), ("base_model", c_char_p), ("trained_on", mend_fp), ("n_prompts", c_int),
                ("nv", c_int), ("dim", c_int), ("default_selector", c_char_p), ("layer0", c_int), ("layer1", c_int),
                ("router_tokens", c_int), ("has_attn_calibration", c_int), ("attn_layer0", c_int),
                ("attn_layer1", c_int), ("attn_windows", c_int), ("attn_offsets", POINTER(c_float)),
                ("has_learned_router", c_int), ("learned_normalize", c_int), ("learned_train_windows", c_int),
                ("learned_train_acc", c_double), ("learned_heldout_acc", c_double)]


class mend_bank_prompt_info(Structure):
    _fields_ = [("name", c_char_p), ("adapter", c_char_p), ("domain", c_char_p), ("corpus", c_char_p),
                ("centroid", POINTER(c_float)), ("steps", c_int), ("best_val", c_double), ("emb", POINTER(c_float))]


class mend_router_opts(Structure):
    _fields_ = [("n_windows", c_int), ("window", c_int), ("normalize", c_int), ("l2", c_double), ("iters", c_int)]


class mend_router_stats(Structure):
    _fields_ = [("n_windows", c_int), ("n_train", c_int), ("n_heldout", c_int), ("train_acc", c_double),
                ("heldout_acc", c_double), ("label_hist", c_int * MEND_BANK_MAX_PROMPTS)]


router_progress_fn = CFUNCTYPE(c_int, c_void_p, c_int, c_int)


# mend/jobs.h
MEND_EV_TEXT, MEND_EV_NOTE, MEND_EV_WARNING, MEND_EV_PROGRESS_START, MEND_EV_PROGRESS, MEND_EV_PROGRESS_END, \
    MEND_EV_STAGE = range(7)


class mend_event(Structure):
    _fields_ = [("kind", c_int), ("text", c_char_p), ("label", c_char_p), ("unit", c_char_p), ("done", c_int64),
                ("total", c_int64), ("row_items", c_int), ("item", c_char_p), ("stage", c_int), ("n_stages", c_int),
                ("stage_name", c_char_p)]


event_fn = CFUNCTYPE(c_int, c_void_p, POINTER(mend_event))


class mend_repair_job(Structure):
    _fields_ = [("model", c_char_p), ("compress", c_char_p), ("out", c_char_p), ("budget", c_char_p),
                ("tasks", POINTER(c_char_p)), ("n_tasks", c_int), ("ppl_text", c_char_p),
                ("domains", POINTER(c_char_p)), ("n_domains", c_int), ("calib", POINTER(c_char_p)), ("n_calib", c_int),
                ("corpus_dir", c_char_p), ("bank_dir", c_char_p), ("limit", c_int), ("ppl_windows", c_int),
                ("ppl_ctx", c_int), ("steps", c_int), ("spec_steps", c_int), ("nsamples", c_int), ("seqlen", c_int),
                ("train_seqlen", c_int)]


class mend_bank_job(Structure):
    _fields_ = [("model", c_char_p), ("names", POINTER(c_char_p)), ("corpora", POINTER(c_char_p)),
                ("n_domains", c_int), ("out", c_char_p), ("teacher", c_char_p), ("no_distill", c_int),
                ("models_dir", c_char_p), ("init_adapter", c_char_p), ("steps", c_int), ("seqlen", c_int),
                ("batch", c_int), ("n_virtual", c_int), ("eval_every", c_int), ("val_seqs", c_int), ("lr", c_double),
                ("seed", c_uint64), ("layer0", c_int), ("layer1", c_int), ("router_windows", c_int),
                ("router_window", c_int), ("learned", c_int), ("learned_windows", c_int), ("learned_window", c_int)]


class mend_select_spec(Structure):
    _fields_ = [("kind", c_int), ("fixed", c_int), ("layer0", c_int), ("layer1", c_int), ("calibrated", c_int),
                ("max_tokens", c_int)]


# mend/eval.h
class mend_task_info(Structure):
    _fields_ = [("name", c_char_p), ("path", c_char_p), ("kind", c_int), ("n", c_size_t), ("n_total", c_size_t)]


class mend_eval_stats(Structure):
    _fields_ = [("tokens_run", c_int64), ("tokens_naive", c_int64), ("truncated", c_int64)]


class mend_eval_result(Structure):
    _fields_ = [("kind", c_int), ("n", c_int), ("ll", POINTER(c_double)), ("greedy", POINTER(c_int)),
                ("n_tokens", POINTER(c_int)), ("n_chars", POINTER(c_int)), ("pred", c_int), ("pred_norm", c_int),
                ("gold", c_int), ("acc", c_double), ("acc_norm", c_double), ("em", c_double),
                ("pred_text", c_char_p), ("raw_text", c_char_p), ("truncated", c_int)]


class mend_eval_line(Structure):
    _fields_ = [("index", c_size_t), ("r", POINTER(mend_eval_result)), ("line", c_char_p), ("truncated", c_int)]


eval_line_fn = CFUNCTYPE(c_int, c_void_p, POINTER(mend_eval_line))


class mend_result_rec(Structure):
    _fields_ = [("task", c_char_p), ("model", c_char_p), ("prompt", c_char_p), ("index", c_long), ("kind", c_int),
                ("acc", c_double), ("acc_norm", c_double), ("em", c_double), ("ll", c_double),
                ("has_acc_norm", c_int), ("truncated", c_int), ("line", c_int)]


class mend_results(Structure):
    _fields_ = [("path", c_char_p), ("rec", POINTER(mend_result_rec)), ("n", c_size_t), ("valid_bytes", c_size_t),
                ("file_size", c_size_t), ("partial", c_int)]


class mend_task_summary(Structure):
    _fields_ = [("task", c_char_p), ("kind", c_int), ("n", c_size_t), ("acc", c_double), ("acc_se", c_double),
                ("acc_norm", c_double), ("acc_norm_se", c_double), ("ppl", c_double), ("ppl_se", c_double),
                ("em", c_double), ("em_se", c_double), ("has_acc_norm", c_int), ("truncated", c_long),
                ("duplicates", c_size_t)]


class mend_report_run(Structure):
    _fields_ = [("name", c_char_p), ("s", POINTER(mend_task_summary)), ("n", c_size_t)]


# mend/idp.h
class mend_idp_ppl_row(Structure):
    _fields_ = [("name", c_char * 96), ("ppl", c_double), ("err", c_double)]


class mend_idp_ppl_report(Structure):
    _fields_ = [("text", c_void_p), ("rows", POINTER(mend_idp_ppl_row)), ("n_rows", c_int)]


# ---- enums and callbacks
MEND_PPL_GPTQ, MEND_PPL_LLAMACPP = 0, 1
MEND_QFMT_GENERIC = 0x4d00
FP_MATCH = {0: "same", 1: "same_recipe", 2: "other", 3: "unknown"}

ppl_progress_fn = CFUNCTYPE(c_int, c_void_p, c_int, c_int, c_double)
ppl_score_fn = CFUNCTYPE(c_int, c_void_p, POINTER(c_int32), c_int, c_int, POINTER(c_double))

# opaque handles
model_p = c_void_p
bank_p = c_void_p
router_p = c_void_p
selector_p = c_void_p
task_p = c_void_p
backend_p = c_void_p
idp_p = c_void_p
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
    "mend_describe_features": (None, [model_p, POINTER(c_char), c_size_t]),
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
    "mend_perplexity_prompt": (c_int, [model_p, f32_p, c_int, i32_p, c_size_t, POINTER(mend_ppl_opts),
                                       ppl_progress_fn, c_void_p, POINTER(mend_ppl_result)]),
    # files
    "mend_basename": (c_char_p, [c_char_p, POINTER(c_char), c_size_t]),
    "mend_read_file": (c_int, [c_char_p, c_size_t, POINTER(c_void_p), POINTER(c_size_t)]),
    # compression (mend/compress.h)
    "mend_qfmt_name": (c_char_p, [POINTER(mend_qfmt), POINTER(c_char), c_size_t]),
    "mend_qfmt_parse": (c_int, [POINTER(mend_qfmt), c_char_p]),
    "mend_type_from_name": (c_int, [c_char_p]),
    "mend_type_name": (c_char_p, [c_uint32]),
    "mend_sparsity_parse": (c_int, [POINTER(mend_sparsity), c_char_p]),
    "mend_prune_method_parse": (c_int, [c_char_p, POINTER(c_int)]),
    "mend_calib_build": (c_int, [POINTER(mend_calib), tokenizer_p, POINTER(c_char_p), c_int, c_int, c_int,
                                 c_uint64]),
    "mend_calib_free": (None, [POINTER(mend_calib)]),
    "mend_compress_opts_init": (None, [POINTER(mend_compress_opts)]),
    "mend_compress": (c_int, [c_char_p, c_char_p, POINTER(mend_compress_opts), POINTER(mend_compress_result)]),
    # soft prompts and tuning (mend/tune.h)
    "mend_adapter_write": (c_int, [c_char_p, f32_p, c_int, c_int, POINTER(mend_adapter_meta)]),
    "mend_adapter_read_fp": (c_int, [c_char_p, c_int, POINTER(f32_p), POINTER(c_int), POINTER(mend_fp)]),
    "mend_tune_opts_default": (None, [POINTER(mend_tune_opts)]),
    "mend_tune_read_record": (c_int, [c_char_p, POINTER(mend_tune_record), POINTER(c_int)]),
    "mend_tune_run": (c_int, [model_p, model_p, POINTER(c_char_p), POINTER(c_size_t), c_int, POINTER(mend_tune_opts),
                              tune_info_fn, tune_progress_fn, c_void_p, POINTER(mend_tune_result)]),
    # banks and selectors (mend/bank.h)
    "mend_bank_read": (c_int, [c_char_p, POINTER(bank_p)]),
    "mend_bank_load_prompts": (c_int, [bank_p, c_int]),
    "mend_bank_write": (c_int, [c_char_p, bank_p]),
    "mend_bank_free": (None, [bank_p]),
    "mend_bank_find": (c_int, [bank_p, c_char_p]),
    "mend_bank_get_info": (None, [bank_p, POINTER(mend_bank_info)]),
    "mend_bank_get_prompt": (c_int, [bank_p, c_int, POINTER(mend_bank_prompt_info)]),
    "mend_bank_new": (c_int, [POINTER(bank_p), c_int, c_int, c_char_p, POINTER(mend_fp), c_int, c_int]),
    "mend_bank_add_prompt": (c_int, [bank_p, c_char_p, c_char_p, c_char_p, c_char_p, c_int, c_double, f32_p]),
    "mend_bank_set_router_tokens": (None, [bank_p, c_int]),
    "mend_bank_set_learned_router": (None, [bank_p, router_p]),
    "mend_learned_router_free": (None, [router_p]),
    "mend_select_centroid": (c_int, [model_p, c_char_p, c_size_t, c_int, c_int, f32_p, POINTER(c_int)]),
    "mend_select_calibrate": (c_int, [model_p, bank_p, POINTER(c_char_p), POINTER(c_size_t), c_int, c_int, c_int]),
    "mend_router_opts_default": (None, [POINTER(mend_router_opts)]),
    "mend_router_train": (c_int, [model_p, bank_p, POINTER(c_char_p), POINTER(c_size_t), c_int,
                                  POINTER(mend_router_opts), router_progress_fn, c_void_p, POINTER(router_p),
                                  POINTER(mend_router_stats)]),
    "mend_select_parse": (c_int, [c_char_p, bank_p, POINTER(mend_select_spec)]),
    "mend_select_parse_layers": (c_int, [c_char_p, POINTER(c_int), POINTER(c_int)]),
    "mend_selector_new": (c_int, [POINTER(selector_p), model_p, bank_p, POINTER(mend_select_spec)]),
    "mend_selector_free": (None, [selector_p]),
    "mend_selector_pick": (c_int, [selector_p, i32_p, c_int, POINTER(c_int), f32_p]),
    "mend_selector_pick_many": (c_int, [selector_p, POINTER(i32_p), POINTER(c_int), c_int, POINTER(c_int), f32_p]),
    # evaluation (mend/eval.h)
    "mend_task_load": (c_int, [POINTER(task_p), c_char_p, c_size_t]),
    "mend_task_free": (None, [task_p]),
    "mend_task_kind_name": (c_char_p, [c_int]),
    "mend_task_get_info": (None, [task_p, POINTER(mend_task_info)]),
    "mend_task_example_line": (c_int, [task_p, c_size_t]),
    "mend_eval_backend_model": (c_int, [POINTER(backend_p), model_p, f32_p, c_int, c_int, c_int]),
    "mend_eval_backend_free": (None, [backend_p]),
    "mend_eval_backend_window": (c_int, [backend_p]),
    "mend_eval_backend_set_window": (None, [backend_p, c_int]),
    "mend_eval_backend_reserve": (c_int, [backend_p, c_int]),
    "mend_eval_examples": (c_int, [backend_p, task_p, POINTER(c_size_t), c_int, POINTER(mend_eval_result),
                                   POINTER(mend_eval_stats)]),
    "mend_eval_result_free": (None, [POINTER(mend_eval_result)]),
    "mend_eval_run": (c_int, [backend_p, idp_p, task_p, POINTER(c_size_t), c_size_t, c_char_p, c_char_p,
                              eval_line_fn, c_void_p, POINTER(mend_eval_stats)]),
    "mend_results_load": (c_int, [c_char_p, POINTER(mend_results)]),
    "mend_results_free": (None, [POINTER(mend_results)]),
    "mend_results_summarize": (c_int, [POINTER(mend_results), POINTER(POINTER(mend_task_summary)),
                                       POINTER(c_size_t)]),
    "mend_summaries_free": (None, [POINTER(mend_task_summary), c_size_t]),
    "mend_report_markdown": (c_int, [POINTER(mend_report_run), c_size_t, POINTER(c_void_p)]),
    # inference-time dynamic prompting (mend/idp.h)
    "mend_idp_open": (c_int, [POINTER(idp_p), model_p, c_char_p]),
    "mend_idp_add_selector": (c_int, [idp_p, c_char_p, POINTER(mend_select_spec)]),
    "mend_idp_start": (c_int, [idp_p, c_int]),
    "mend_idp_close": (None, [idp_p]),
    "mend_idp_bank": (bank_p, [idp_p]),
    "mend_idp_label": (c_char_p, [idp_p]),
    "mend_idp_n_sel": (c_int, [idp_p]),
    "mend_idp_sel_name": (c_char_p, [idp_p, c_int]),
    "mend_idp_prompt_name": (c_char_p, [idp_p, c_int]),
    "mend_idp_pick_all": (c_int, [idp_p, i32_p, c_int, POINTER(c_int)]),
    "mend_idp_eval_setup": (c_int, [idp_p, c_int, c_int]),
    "mend_idp_eval_window": (c_int, [idp_p]),
    "mend_idp_summary": (c_int, [idp_p, POINTER(c_void_p)]),
    "mend_idp_perplexity": (c_int, [idp_p, i32_p, c_size_t, POINTER(mend_ppl_opts), c_int, ppl_progress_fn, c_void_p,
                                    POINTER(mend_ppl_result), POINTER(mend_idp_ppl_report)]),
    "mend_idp_ppl_report_free": (None, [POINTER(mend_idp_ppl_report)]),
    # jobs (mend/jobs.h)
    "mend_bank_job_init": (None, [POINTER(mend_bank_job)]),
    "mend_bank_build_run": (c_int, [POINTER(mend_bank_job), event_fn, c_void_p]),
    "mend_prompt_read_checked": (c_int, [model_p, c_char_p, c_char_p, POINTER(f32_p), POINTER(c_int), event_fn,
                                         c_void_p]),
    "mend_idp_open_checked": (c_int, [POINTER(idp_p), model_p, c_char_p, c_char_p, c_char_p, c_char_p, c_int, c_int,
                                      event_fn, c_void_p]),
    "mend_repair_job_init": (None, [POINTER(mend_repair_job)]),
    "mend_repair_run": (c_int, [POINTER(mend_repair_job), event_fn, c_void_p]),
    "mend_repair_report": (c_int, [c_char_p, POINTER(c_void_p), event_fn, c_void_p]),
    "mend_repair_spec_check": (c_int, [c_char_p]),
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

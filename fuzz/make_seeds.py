#!/usr/bin/env python3
"""Seed corpora for the fuzz targets (fuzz/corpus/<target>/): small valid
inputs of every reader, built with the gguf package and by hand, plus the
repository's own small fixtures. Run from the repository root with the
peer venv: $(scripts/pyenv.sh) fuzz/make_seeds.py"""
import json, os, struct
import numpy as np
import gguf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
C = os.path.join(ROOT, "fuzz", "corpus")
SEP = b"\n--8<--\n"


def put(target, name, data):
    d = os.path.join(C, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def fixture(rel):
    with open(os.path.join(ROOT, rel), "rb") as f:
        return f.read()


def safetensors(tensors, meta=None):
    """tensors: list of (name, dtype string, shape, raw bytes)"""
    hdr, off, blob = {}, 0, b""
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, dt, shape, raw in tensors:
        hdr[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blob += raw
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def tiny_gguf(path, quant):
    """A one-layer llama (dim 32, 2 heads, 1 kv head, ffn 32, 16 tokens, SPM vocab)."""
    rng = np.random.default_rng(1)
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(64)
    w.add_embedding_length(32)
    w.add_block_count(1)
    w.add_feed_forward_length(32)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    toks = ["<unk>", "<s>", "</s>"] + ["\u2581a", "\u2581b", "a", "b", "c", "ab", "\u2581", "bc", "ca",
                                       "<0x00>", "<0x0A>", "<0xFF>", "cab"]
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores([float(-i) for i in range(len(toks))])
    w.add_token_types([2, 3, 3] + [1] * 9 + [6, 6, 6, 1])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def t(name, shape, q=None):
        a = rng.standard_normal(shape).astype(np.float32) * 0.1
        if q is not None:
            w.add_tensor(name, gguf.quants.quantize(a, q), raw_dtype=q)
        else:
            w.add_tensor(name, a)

    qt = gguf.GGMLQuantizationType.Q8_0 if quant else None
    t("token_embd.weight", (16, 32), qt)
    t("blk.0.attn_norm.weight", (32,))
    t("blk.0.attn_q.weight", (32, 32), qt)
    t("blk.0.attn_k.weight", (16, 32), qt)
    t("blk.0.attn_v.weight", (16, 32))
    t("blk.0.attn_output.weight", (32, 32))
    t("blk.0.ffn_norm.weight", (32,))
    t("blk.0.ffn_gate.weight", (32, 32), gguf.GGMLQuantizationType.Q4_0 if quant else None)
    t("blk.0.ffn_up.weight", (32, 32))
    t("blk.0.ffn_down.weight", (32, 32))
    t("output_norm.weight", (32,))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    # the named seeds are rewritten in place; the minimized campaign corpora
    # committed beside them (files named by their sha1) are kept
    tmp = os.path.join(C, "tmp.gguf")
    os.makedirs(C, exist_ok=True)
    for quant in (0, 1):
        tiny_gguf(tmp, quant)
        put("fuzz_gguf", "tiny_llama_q%d.gguf" % quant, fixture(tmp))
    os.remove(tmp)
    put("fuzz_gguf", "tiny_spm_vocab.gguf", fixture("tests/fixtures/tok/tiny_spm.gguf"))
    put("fuzz_gguf", "tiny_smollm_vocab.gguf", fixture("tests/fixtures/tok/tiny_smollm.gguf"))

    f32 = np.arange(8, dtype=np.float32).tobytes()
    put("fuzz_safetensors", "st_dtypes.safetensors", fixture("tests/fixtures/hf/st_dtypes.safetensors"))
    put("fuzz_safetensors", "mixed.safetensors", safetensors(
        [("a", "F32", [2, 4], f32), ("b", "F16", [4], np.ones(4, np.float16).tobytes()),
         ("c", "BF16", [2], b"\x80\x3f\x00\x40"), ("d", "I64", [1], b"\x01" * 8), ("e", "F32", [0], b"")],
        {"format": "pt"}))
    put("fuzz_safetensors", "scalar.safetensors", safetensors([("s", "F32", [], f32[:4])]))

    hf = "tests/fixtures/hf/llama/"
    for i, name in enumerate(["config.json", "tokenizer.json", "tokenizer_config.json",
                              "model.safetensors.index.json"]):
        put("fuzz_hf_config", name, bytes([i]) + fixture(hf + name))
    put("fuzz_hf_config", "spm_tokenizer.json", b"\x01" + fixture("tests/fixtures/tok/tiny_spm_hf.json"))

    emb = (np.arange(8, dtype=np.float32) / 8).tobytes()
    cfg = {"peft_type": "PROMPT_TUNING", "task_type": "CAUSAL_LM", "num_virtual_tokens": 2, "token_dim": 4,
           "num_transformer_submodules": 1, "prompt_tuning_init": "RANDOM", "inference_mode": True}
    st = safetensors([("prompt_embeddings", "F32", [2, 4], emb)], {"format": "pt"})
    put("fuzz_adapter", "f32", st + SEP + json.dumps(cfg).encode())
    put("fuzz_adapter", "no_config", st)
    put("fuzz_adapter", "bf16", safetensors([("prompt_embeddings", "BF16", [1, 4], b"\x80\x3f" * 4)]) + SEP +
        json.dumps(dict(cfg, num_virtual_tokens=1)).encode())

    bank = {"format": "mend-prompt-bank", "version": 1, "base_model": "m.gguf", "dim": 4,
            "num_virtual_tokens": 2,
            "prompts": [{"name": "wiki", "adapter": "wiki", "domain": "wiki", "corpus": "/x/wiki.txt",
                         "centroid": [0.5, -1, 0, 2], "steps": 10, "best_val": 3.5},
                        {"name": "code", "adapter": "sub/code", "domain": "code", "corpus": None,
                         "centroid": None}],
            "selector": {"default": "fixed:wiki", "layers": [0, 4]},
            "router": {"feature": "mean_final_norm_hidden", "metric": "cosine", "tokens": 4096}}
    put("fuzz_bank", "bank.json", json.dumps(bank, indent=1).encode())
    minimal = {k: v for k, v in bank.items() if k != "router"}
    put("fuzz_bank", "minimal.json", json.dumps(dict(minimal, prompts=bank["prompts"][1:],
                                                     selector={"default": "attention"})).encode())
    # the fields a bank gained later: the model it was trained on, the
    # calibrated attention rule's offsets and the learned router
    full = dict(bank, model_fingerprint="944dcb6b26156e39", model_recipe="f0c211ee0652d05c",
                selector={"default": "learned", "layers": [0, 4]},
                attention_calibration={"layers": [0, 4], "windows": 8, "offsets": [0.25, -0.125]},
                learned_router={"feature": "mean_token_embedding", "normalize": True,
                                "weights": [0.5, -0.5, 0.25, 0, 1, 0, -1, 0.125], "bias": [0.1, -0.1],
                                "train_windows": 16, "train_accuracy": 0.75, "heldout_accuracy": 0.5})
    put("fuzz_bank", "trained_on_learned.json", json.dumps(full, indent=1).encode())
    put("fuzz_bank", "calibrated.json", json.dumps(dict(full, learned_router=None, model_recipe=None,
                                                        selector={"default": "attention-calibrated"})).encode())

    for name in ["toy_gen", "toy_lm", "toy_mc", "toy_schema", "bad_gold", "bad_mixed"]:
        put("fuzz_tasks", name + ".jsonl", fixture("tests/fixtures/eval/%s.jsonl" % name))

    texts = [b"Hello world!", b"<|im_start|>user\nWhat is 2+2?<|im_end|>\n", b"  caf\xc3\xa9 \xf0\x9f\x98\x80 1234567",
             b"\xff\xfe\xed\xa0\x80 bad utf8 \xc0\xaf", b"\tTabs\r\n\n\n   spaces    end", b"ab cab bca abc"]
    for i, t in enumerate(texts):
        for sel in range(8):
            put("fuzz_tokenize", "t%d_%d" % (i, sel), bytes([sel | 0x18]) + t)
    put("fuzz_tokenize", "ids", bytes([0x20]) + bytes(range(64)))


main()

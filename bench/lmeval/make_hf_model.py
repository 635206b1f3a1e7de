"""Dequantize the default GGUF into a Hugging Face model directory for the
lm-evaluation-harness peer run (transformers' GGUF loader: weights become
float32, the Q/K rows are un-permuted to the HF layout, the tokenizer is
rebuilt from the GGUF metadata).

transformers' GGUF tokenizer conversion ignores tokenizer.ggml.pre and always
splits with GPT-2's expression, so for the pre-tokenizer names listed in PRE
the HF form of that rule (what llama.cpp applies for the name) replaces it:
"smollm" splits every number character (\p{N}, which includes ¼) alone before
the GPT-2 split, so " ¼" is " " + "¼", not one byte-level word. Other BPE
names are refused rather than exported with the wrong split.

usage: make_hf_model.py GGUF OUT_DIR
"""
import os
import sys

import torch
from gguf import GGUFReader
from tokenizers import pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

GPT2_SPLIT = {"default", "gpt2", "gpt-2"}  # what the converter does already
PRE = {
    "smollm": lambda: pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ]),
}


def gguf_string(path, key):
    field = GGUFReader(path).fields.get(key)
    if field is None:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def main():
    gguf, out = sys.argv[1], sys.argv[2]
    d, f = os.path.split(os.path.abspath(gguf))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    kind, pre = gguf_string(gguf, "tokenizer.ggml.model"), gguf_string(gguf, "tokenizer.ggml.pre")
    if kind == "gpt2" and pre in PRE:
        tok.backend_tokenizer.pre_tokenizer = PRE[pre]()
    elif kind == "gpt2" and pre is not None and pre not in GPT2_SPLIT:
        sys.exit(f"{gguf}: tokenizer.ggml.pre is {pre!r}; transformers' GGUF loader ignores it, "
                 "and make_hf_model.py has no HF form of it (add one to PRE)")
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
    # the GGUF-loaded model refuses save_pretrained (it counts as "quantized");
    # its weights are plain float32 already, so copy them into a fresh model
    cfg = model.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    plain = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected, unexpected
    assert all("lm_head" in k for k in missing), missing  # tied to the embeddings
    plain.tie_weights()
    os.makedirs(out, exist_ok=True)
    tok.save_pretrained(out)
    plain.save_pretrained(out)
    model = plain
    print("wrote", out)
    print("add_bos:", getattr(tok, "add_bos_token", None), "bos:", tok.bos_token, tok.bos_token_id,
          "eos:", tok.eos_token, tok.eos_token_id)
    print("pre-tokenizer:", kind, pre)
    print("encode('Hello world'):", tok("Hello world")["input_ids"])
    print("max_position_embeddings:", model.config.max_position_embeddings)


if __name__ == "__main__":
    main()

"""Dequantize the default GGUF into a Hugging Face model directory for the
lm-evaluation-harness peer run (transformers' GGUF loader: weights become
float32, the Q/K rows are un-permuted to the HF layout, the tokenizer is
rebuilt from the GGUF metadata).

usage: make_hf_model.py GGUF OUT_DIR
"""
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    gguf, out = sys.argv[1], sys.argv[2]
    d, f = os.path.split(os.path.abspath(gguf))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
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
    print("encode('Hello world'):", tok("Hello world")["input_ids"])
    print("max_position_embeddings:", model.config.max_position_embeddings)


if __name__ == "__main__":
    main()

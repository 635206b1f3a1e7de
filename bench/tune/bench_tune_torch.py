#!/usr/bin/env python3
"""The PyTorch peer of `mend tune`: PEFT prompt tuning of the same model on
CPU, the same work per step (batch x seqlen text tokens behind n virtual
tokens, forward + backward to the prompt only, AdamW on the prompt).

The model is the Hugging Face float32 export of the GGUF mend trains
(bench/lmeval/make_hf_model.py writes it), so both sides multiply the same
f32 weights. The text is corpus/wiki.txt cut into sequences of seqlen
tokens with the model's tokenizer.

Prints one line per step and a summary: wall seconds per step and text
tokens per second, and process CPU seconds per step (the fair measure on a
shared machine), over steps 2..N (step 1 warms up).

usage: $(scripts/pyenv.sh) bench/tune/bench_tune_torch.py HF_DIR [--threads 2]
       [--steps 6] [--batch 4] [--seqlen 256] [--tokens 20]
"""
import argparse
import os
import time

import torch
from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model
from transformers import AutoTokenizer, LlamaForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hf_dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--corpus", default=os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data",
                                                     "corpus", "wiki.txt"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(a.hf_dir)
    model = LlamaForCausalLM.from_pretrained(a.hf_dir, dtype=torch.float32)
    model.config.use_cache = False
    cfg = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=a.tokens,
                             prompt_tuning_init=PromptTuningInit.SAMPLE_VOCAB)
    model = get_peft_model(model, cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    print("trainable parameters:", sum(p.numel() for p in params))
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-5)
    ids = tok(open(a.corpus, encoding="utf-8").read(), add_special_tokens=False)["input_ids"]
    n_seq = len(ids) // a.seqlen
    seqs = torch.tensor(ids[:n_seq * a.seqlen]).view(n_seq, a.seqlen)
    t_wall = t_cpu = None
    for step in range(1, a.steps + 1):
        w0, c0 = time.perf_counter(), time.process_time()
        x = seqs[(step - 1) * a.batch:step * a.batch]
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        w1, c1 = time.perf_counter(), time.process_time()
        print(f"step {step}: loss {loss.item():.4f}  wall {w1 - w0:.2f} s  cpu {c1 - c0:.2f} s", flush=True)
        if step == 1:
            t_wall, t_cpu = w1, c1
    n = a.steps - 1
    wall, cpu = (time.perf_counter() - t_wall) / n, (time.process_time() - t_cpu) / n
    toks = a.batch * a.seqlen
    print(f"torch: {n} steps of {a.batch} x {a.seqlen} tokens (+{a.tokens} virtual), {a.threads} threads: "
          f"{wall:.2f} s/step wall ({toks / wall:.1f} tokens/s), {cpu:.2f} CPU s/step "
          f"({toks / cpu:.1f} tokens per CPU second)")


if __name__ == "__main__":
    main()

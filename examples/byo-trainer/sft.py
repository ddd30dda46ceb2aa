#!/usr/bin/python3
"""Bring your own trainer: SFT of an HF Llama/Qwen2 folder in PyTorch, as a `uses: exec` stage.

Reads an HF model folder (config.json + model.safetensors, F32/F16/BF16; e.g. a tfjs sft checkpoint),
trains every weight with AdamW on token ids from tokenize.ts (loss on completion tokens), and
writes an HF folder: config.json, model.safetensors (F32), and the tokenizer, generation and
completion-format files of the input, which the tfjs sample, dpo, grpo and eval stages read as is.
The checkpoint format is the contract; the model is the PyTorch implementation the parity tests
use (test/engine/reference/reference.py), written from the HF architecture.

  /usr/bin/python3 examples/byo-trainer/sft.py <model dir> <tokens.jsonl> <out dir> [--steps 20] [--lr 1e-3] [--batch 8]

Needs Debian's python3-torch (and libopenblas0-pthread for speed); run it with /usr/bin/python3.
"""
import argparse
import json
import os
import random
import shutil
import struct
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "test", "engine", "reference"))
from reference import forward, masked_loss, write_safetensors  # noqa: E402

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def read_safetensors(path):
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in DTYPES:
            raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']}; F32, F16 and BF16 are read")
        start, end = info["data_offsets"]
        raw = bytearray(data[start:end])
        tensors[name] = torch.frombuffer(raw, dtype=DTYPES[info["dtype"]]).reshape(info["shape"]).float()
    return tensors


def main(model_dir, tokens_file, out_dir, steps=20, lr=1e-3, batch=8):
    torch.manual_seed(int(os.environ.get("PIPELINE_SEED", "0")))
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    params = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    if cfg.get("tie_word_embeddings"):
        params.pop("lm_head.weight", None)
    for t in params.values():
        t.requires_grad_(True)
    with open(tokens_file) as f:
        examples = [json.loads(line) for line in f if line.strip()]
    if not examples:
        raise ValueError(f"{tokens_file}: no examples")
    rng = random.Random(int(os.environ.get("PIPELINE_SEED", "0")))
    opt = torch.optim.AdamW(params.values(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    for step in range(steps):
        rows = rng.sample(examples, min(batch, len(examples)))
        width = max(len(r["ids"]) for r in rows)
        ids = torch.tensor([r["ids"] + [0] * (width - len(r["ids"])) for r in rows])
        mask = torch.tensor([[1] * len(r["ids"]) + [0] * (width - len(r["ids"])) for r in rows])
        loss_mask = torch.tensor([r["loss_mask"] + [0] * (width - len(r["ids"])) for r in rows])
        logits, _ = forward(cfg, params, ids, mask)
        loss = masked_loss(logits, ids, loss_mask)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        opt.step()
        print(f"step {step + 1}/{steps}: loss {loss.item():.4f}", flush=True)
    os.makedirs(out_dir, exist_ok=True)
    write_safetensors(os.path.join(out_dir, "model.safetensors"), params)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump({**cfg, "torch_dtype": "float32"}, f, indent=2)
    for name in sorted(os.listdir(model_dir)):
        if name not in ("config.json", "model.safetensors") and name.endswith((".json", ".txt", ".model")):
            shutil.copy(os.path.join(model_dir, name), os.path.join(out_dir, name))
    print(f"wrote {out_dir}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="SFT of an HF Llama/Qwen2 folder in PyTorch")
    parser.add_argument("model_dir")
    parser.add_argument("tokens_file")
    parser.add_argument("out_dir")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=8)
    a = parser.parse_args()
    main(a.model_dir, a.tokens_file, a.out_dir, a.steps, a.lr, a.batch)

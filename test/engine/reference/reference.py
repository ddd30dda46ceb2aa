#!/usr/bin/python3
"""Reference numbers for the TensorFlow.js engine, from PyTorch.

The Llama / Qwen2 forward is written here from the HF architecture (modeling_llama.py,
modeling_qwen2.py) rather than imported from transformers, so the parity tests compare two
independent implementations.

  fixtures: /usr/bin/python3 test/engine/reference/reference.py fixtures test/engine/reference
            writes <out>/{llama-tiny,qwen2-tiny}/{config.json,model.safetensors,reference.json}
  serve:    OMP_NUM_THREADS=1 /usr/bin/python3 test/engine/reference/reference.py serve '<json>'
            bench/engine.ts's PyTorch side: answers "train" / "gen" lines with {"seconds": ...}
  lora:     /usr/bin/python3 test/engine/reference/reference.py lora test/engine/reference
            writes <out>/qwen2-tiny/lora.json: LoRA adapters (PEFT names), loss and their gradients
  generate: /usr/bin/python3 test/engine/reference/reference.py generate '<json>'
            bench/real.ts's PyTorch side: greedy decoding with the KV cache from an HF folder
            (single or sharded safetensors, F32/BF16/F16), printing seconds, tokens and peak RSS

Needs Debian's python3-torch (apt-get install -y python3-torch libopenblas0-pthread).
"""
import json
import math
import os
import struct
import sys
import time

import torch

torch.set_num_threads(1)


# ---------------------------------------------------------------- safetensors (no extra package)
def write_safetensors(path, tensors, dtype="F32"):
    header, chunks, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        if dtype == "BF16":
            raw = t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
        else:
            raw = t.to(torch.float32).numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    js = json.dumps(header).encode()
    js += b" " * ((8 - len(js) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)) + js + b"".join(chunks))


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        start = 8 + n
        out = {}
        kinds = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
        for name, e in header.items():
            if name == "__metadata__":
                continue
            a, b = e["data_offsets"]
            f.seek(start + a)
            raw = bytearray(f.read(b - a))
            out[name] = torch.frombuffer(raw, dtype=kinds[e["dtype"]]).reshape(e["shape"]).float()
    return out


def read_folder(folder):
    """config.json and every weight of an HF folder: model.safetensors or the shards its index names."""
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(os.path.join(folder, "model.safetensors")):
        files = ["model.safetensors"]
    else:
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    params = {}
    for name in files:
        params.update(read_safetensors(os.path.join(folder, name)))
    return cfg, params


# ---------------------------------------------------------------- the model
def dims(cfg):
    h = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads", h)
    hd = cfg.get("head_dim") or cfg["hidden_size"] // h
    qwen = cfg["model_type"] == "qwen2"
    return h, kv, hd, qwen or cfg.get("attention_bias", False), (not qwen) and cfg.get("attention_bias", False)


def param_shapes(cfg):
    h, kv, hd, qkv_bias, o_bias = dims(cfg)
    d, inner = cfg["hidden_size"], cfg["intermediate_size"]
    out = [("model.embed_tokens.weight", (cfg["vocab_size"], d))]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}"
        out.append((f"{p}.input_layernorm.weight", (d,)))
        for name, rows in (("q_proj", h * hd), ("k_proj", kv * hd), ("v_proj", kv * hd)):
            out.append((f"{p}.self_attn.{name}.weight", (rows, d)))
            if qkv_bias:
                out.append((f"{p}.self_attn.{name}.bias", (rows,)))
        out.append((f"{p}.self_attn.o_proj.weight", (d, h * hd)))
        if o_bias:
            out.append((f"{p}.self_attn.o_proj.bias", (d,)))
        out.append((f"{p}.post_attention_layernorm.weight", (d,)))
        for name, shape in (("gate_proj", (inner, d)), ("up_proj", (inner, d)), ("down_proj", (d, inner))):
            out.append((f"{p}.mlp.{name}.weight", shape))
    out.append(("model.norm.weight", (d,)))
    if not cfg.get("tie_word_embeddings", False):
        out.append(("lm_head.weight", (cfg["vocab_size"], d)))
    return out


def init_params(cfg, std, seed):
    g = torch.Generator().manual_seed(seed)
    params = {}
    for name, shape in param_shapes(cfg):
        if name.endswith("norm.weight"):
            t = 1 + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith(".bias"):
            t = 0.1 * torch.randn(shape, generator=g)
        else:
            t = std * torch.randn(shape, generator=g)
        params[name] = t.requires_grad_(True)
    return params


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_tables(cfg, positions):
    hd = dims(cfg)[2]
    inv = cfg.get("rope_theta", 10000.0) ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = positions.to(torch.float64)[..., None] * inv
    emb = torch.cat([ang, ang], -1)
    return emb.cos().float(), emb.sin().float()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], -1)


def forward(cfg, params, ids, mask, cache=None, lora=None):
    """ids, mask: (B, T) over the new tokens; mask covers past + new keys when cache is given.
    lora: {module: (A (r, in), B (out, r), scale)} adds scale * x A^T B^T (LoRA eq. 3, no dropout).
    Returns logits (B, T, V) and the new cache [(k, v)] with k, v (B, Hkv, Tk, hd)."""
    h, kv, hd, _, _ = dims(cfg)
    b, t = ids.shape
    full_mask = mask
    positions = (full_mask.cumsum(-1) - 1).clamp(min=0)[:, -t:]
    cos, sin = rope_tables(cfg, positions)
    cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, hd)
    tk = full_mask.shape[1]
    causal = torch.ones(t, tk, dtype=torch.bool).tril(tk - t)
    allowed = causal[None] & full_mask[:, None, :].bool()  # (B, T, Tk)
    bias = torch.where(allowed, 0.0, -1e9)[:, None]  # (B, 1, T, Tk)
    x = params["model.embed_tokens.weight"][ids]
    eps = cfg.get("rms_norm_eps", 1e-6)

    def lin(x, name):
        y = x @ params[name + ".weight"].T
        if lora and name in lora:
            a, b_, scale = lora[name]
            y = y + scale * ((x @ a.T) @ b_.T)
        return y + params[name + ".bias"] if name + ".bias" in params else y

    new_cache = []
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}"
        a = rms_norm(x, params[f"{p}.input_layernorm.weight"], eps)
        q = lin(a, f"{p}.self_attn.q_proj").view(b, t, h, hd).transpose(1, 2)
        k = lin(a, f"{p}.self_attn.k_proj").view(b, t, kv, hd).transpose(1, 2)
        v = lin(a, f"{p}.self_attn.v_proj").view(b, t, kv, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:
            k = torch.cat([cache[i][0], k], 2)
            v = torch.cat([cache[i][1], v], 2)
        new_cache.append((k, v))
        kr = k.repeat_interleave(h // kv, 1)  # HF repeat_kv
        vr = v.repeat_interleave(h // kv, 1)
        scores = q @ kr.transpose(-1, -2) / math.sqrt(hd) + bias
        ctx = (scores.softmax(-1) @ vr).transpose(1, 2).reshape(b, t, h * hd)
        x = x + lin(ctx, f"{p}.self_attn.o_proj")
        m = rms_norm(x, params[f"{p}.post_attention_layernorm.weight"], eps)
        g = lin(m, f"{p}.mlp.gate_proj")
        x = x + lin(torch.nn.functional.silu(g) * lin(m, f"{p}.mlp.up_proj"), f"{p}.mlp.down_proj")
    x = rms_norm(x, params["model.norm.weight"], eps)
    head = params["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else params["lm_head.weight"]
    return x @ head.T, new_cache


def masked_loss(logits, ids, loss_mask):
    """Mean cross-entropy of ids[:, 1:] under logits[:, :-1], over targets where loss_mask[:, 1:] is 1."""
    logp = logits[:, :-1].log_softmax(-1)
    picked = logp.gather(-1, ids[:, 1:, None])[..., 0]
    w = loss_mask[:, 1:].float()
    return -(picked * w).sum() / w.sum()


def greedy(cfg, params, prompt, new_tokens):
    """Greedy decoding by full recomputation (no cache): the TS KV-cache path must agree."""
    ids = list(prompt)
    for _ in range(new_tokens):
        x = torch.tensor([ids])
        logits, _ = forward(cfg, params, x, torch.ones_like(x))
        ids.append(int(logits[0, -1].argmax()))
    return ids[len(prompt):]


# ---------------------------------------------------------------- fixtures
FIXTURES = {
    "llama-tiny": dict(
        config={"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 64, "hidden_size": 32,
                "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": False,
                "hidden_act": "silu", "torch_dtype": "float32"},
        dtype="F32", seed=1),
    "qwen2-tiny": dict(
        config={"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 64, "hidden_size": 32,
                "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
                "head_dim": 12, "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
                "tie_word_embeddings": True, "hidden_act": "silu", "torch_dtype": "bfloat16"},
        dtype="BF16", seed=2),
}
INPUT_IDS = [[1, 17, 42, 5, 33, 8, 61, 2], [3, 9, 9, 27, 50, 12, 4, 40]]
LOSS_MASK = [[0, 0, 0, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 0, 1, 1]]
GRAD_NAMES = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight",
              "model.layers.0.input_layernorm.weight", "model.norm.weight"]
PROMPTS = [[5, 6, 7], [10, 20, 30, 40, 50]]


def fixtures(out_dir):
    for name, spec in FIXTURES.items():
        cfg = spec["config"]
        params = init_params(cfg, 0.2, spec["seed"])
        folder = os.path.join(out_dir, name)
        os.makedirs(folder, exist_ok=True)
        write_safetensors(os.path.join(folder, "model.safetensors"), params, spec["dtype"])
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        if spec["dtype"] == "BF16":  # compute with exactly the stored values
            params = {k: v.detach().to(torch.bfloat16).float().requires_grad_(True) for k, v in params.items()}
        ids = torch.tensor(INPUT_IDS)
        logits, _ = forward(cfg, params, ids, torch.ones_like(ids))
        loss = masked_loss(logits, ids, torch.tensor(LOSS_MASK))
        loss.backward()
        grads = {n: params[n].grad.flatten().tolist() for n in GRAD_NAMES if n in params}
        reference = {
            "command": "/usr/bin/python3 test/engine/reference/reference.py fixtures test/engine/reference",
            "torch": torch.__version__,
            "input_ids": INPUT_IDS, "loss_mask": LOSS_MASK,
            "logits": [[[round(v, 7) for v in row] for row in seq] for seq in logits.tolist()],
            "loss": loss.item(),
            "grads": {n: [round(v, 8) for v in g] for n, g in grads.items()},
            "greedy": [{"prompt": p, "tokens": greedy(cfg, params, p, 10)} for p in PROMPTS],
        }
        with open(os.path.join(folder, "reference.json"), "w") as f:
            json.dump(reference, f)
        print(f"{folder}: loss {loss.item():.6f}")


LORA = {"fixture": "qwen2-tiny", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj", "down_proj"], "seed": 7}


def lora_reference(out_dir):
    """Loss and adapter gradients of the qwen2-tiny fixture with LoRA on q, v and down projections.
    B is drawn non-zero (a fresh adapter has B = 0, which would make A's gradient zero)."""
    spec = FIXTURES[LORA["fixture"]]
    cfg = spec["config"]
    params = {k: v.detach().to(torch.bfloat16).float() for k, v in init_params(cfg, 0.2, spec["seed"]).items()}
    g = torch.Generator().manual_seed(LORA["seed"])
    scale = LORA["lora_alpha"] / LORA["r"]
    lora, adapters = {}, {}
    for i in range(cfg["num_hidden_layers"]):
        for target in LORA["target_modules"]:
            module = f"model.layers.{i}.{'mlp' if target.endswith(('gate_proj', 'up_proj', 'down_proj')) else 'self_attn'}.{target}"
            out, inputs = params[module + ".weight"].shape
            a = (0.3 * torch.randn(LORA["r"], inputs, generator=g)).requires_grad_(True)
            b = (0.3 * torch.randn(out, LORA["r"], generator=g)).requires_grad_(True)
            lora[module] = (a, b, scale)
            adapters[f"base_model.model.{module}.lora_A.weight"] = a
            adapters[f"base_model.model.{module}.lora_B.weight"] = b
    ids = torch.tensor(INPUT_IDS)
    logits, _ = forward(cfg, params, ids, torch.ones_like(ids), lora=lora)
    loss = masked_loss(logits, ids, torch.tensor(LOSS_MASK))
    loss.backward()
    reference = {
        "command": "/usr/bin/python3 test/engine/reference/reference.py lora test/engine/reference",
        "torch": torch.__version__,
        "r": LORA["r"], "lora_alpha": LORA["lora_alpha"], "target_modules": LORA["target_modules"],
        "adapters": {n: {"shape": list(t.shape), "values": [round(v, 8) for v in t.detach().flatten().tolist()]} for n, t in adapters.items()},
        "loss": loss.item(),
        "grads": {n: [round(v, 9) for v in t.grad.flatten().tolist()] for n, t in adapters.items()},
    }
    path = os.path.join(out_dir, LORA["fixture"], "lora.json")
    with open(path, "w") as f:
        json.dump(reference, f)
    print(f"{path}: loss {loss.item():.6f}")


# ---------------------------------------------------------------- peer benchmark
def serve(spec):
    """The PyTorch side of bench/engine.ts, kept alive so the two sides can take turns (interleaved
    rounds on a shared machine). spec: {config, batch, seq, gen_batch, prompt_len, new_tokens, threads}.
    Builds the same work as bench/engine.ts, warms both up, prints {"ready": ...}, then answers each
    stdin line "train" (one AdamW step with clipping) or "gen" (one greedy generation with the KV
    cache) with one JSON line {"seconds": ..., "cpu_seconds": ...} (wall and this process's CPU time). Ends at EOF."""
    torch.set_num_threads(spec.get("threads", 1))
    cfg = spec["config"]
    params = init_params(cfg, 0.02, 0)
    opt = torch.optim.AdamW(params.values(), lr=1e-3, weight_decay=0.1)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg["vocab_size"], (spec["batch"], spec["seq"]), generator=g)
    ones = torch.ones_like(ids)
    prompts = torch.randint(0, cfg["vocab_size"], (spec["gen_batch"], spec["prompt_len"]), generator=g)

    def train():
        logits, _ = forward(cfg, params, ids, ones)
        loss = masked_loss(logits, ids, ones)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        opt.step()

    @torch.no_grad()
    def generate():
        mask = torch.ones_like(prompts)
        logits, cache = forward(cfg, params, prompts, mask)
        for _ in range(spec["new_tokens"]):
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            mask = torch.cat([mask, torch.ones_like(nxt)], 1)
            logits, cache = forward(cfg, params, nxt, mask, cache)

    work = {"train": train, "gen": generate}
    # Warm-up, as many calls as bench/engine.ts makes on its side (spec "warmup"): first allocations.
    for fn in work.values():
        for _ in range(spec.get("warmup", 1)):
            fn()
    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        fn = work.get(line.strip())
        if fn is None:
            print(json.dumps({"error": f"unknown request {line.strip()!r} (expected train or gen)"}), flush=True)
            continue
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}), flush=True)


@torch.no_grad()
def generate_from_folder(spec):
    """spec: {dir, prompts: [[ids]] (same length), new_tokens, threads, rounds}. Greedy with the KV
    cache, as bench/real.ts's onnxruntime side; prints one JSON line: the fastest round's seconds,
    the tokens of the first row, and this process's peak RSS (bytes)."""
    import resource
    torch.set_num_threads(spec.get("threads", 1))
    cfg, params = read_folder(spec["dir"])
    prompts = torch.tensor(spec["prompts"])
    times = []
    for _ in range(spec.get("rounds", 1)):
        start = time.perf_counter()
        mask = torch.ones_like(prompts)
        logits, cache = forward(cfg, params, prompts, mask)
        tokens = []
        for _ in range(spec["new_tokens"]):
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            tokens.append(nxt[:, 0].tolist())
            mask = torch.cat([mask, torch.ones_like(nxt)], 1)
            logits, cache = forward(cfg, params, nxt, mask, cache)
        times.append(time.perf_counter() - start)
    rows = [[step[b] for step in tokens] for b in range(prompts.shape[0])]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": min(times), "tokens": rows, "peak_rss_bytes": peak, "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "fixtures":
        fixtures(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(json.loads(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "generate":
        generate_from_folder(json.loads(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "lora":
        lora_reference(sys.argv[2])
    else:
        sys.exit(__doc__)

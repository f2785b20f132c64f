"""PyTorch's side of `npm run bench -- train-open`: LoRA SFT steps on a random-weight Qwen2-family
model of the given shape, written in plain torch (no transformers, no PEFT), as a company engineer
would run it on this CPU. Prints one JSON line: tokens/s, seconds per step, peak RSS.

The model is transformers' Qwen2 (Llama with q/k/v biases): RMSNorm, RoPE over the head's two
halves, grouped-query attention through F.scaled_dot_product_attention (transformers' default
"sdpa" path; its "eager" one on torch < 2.0, which has no fused attention), SwiGLU MLP, tied or untied head; frozen float32 base (requires_grad False), LoRA as
PEFT's formula y = x·Wᵀ + b + (alpha/r)·dropout(x)·Aᵀ·Bᵀ on q/k/v/o/gate/up/down (A Kaiming-uniform,
B zero), AdamW on A and B, the loss over every position. --dtype bf16 runs the forward under
torch.autocast("cpu", dtype=torch.bfloat16), as transformers' Trainer does with bf16=True.
"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class LoraLinear(nn.Module):
    def __init__(self, n_in, n_out, bias, rank, alpha, dropout):
        super().__init__()
        bound = math.sqrt(3.0 / n_in)
        self.weight = nn.Parameter(torch.empty(n_out, n_in).uniform_(-bound, bound), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(n_out).uniform_(-0.1, 0.1), requires_grad=False) if bias else None
        self.lora_A = nn.Parameter(torch.empty(rank, n_in).uniform_(-1 / math.sqrt(n_in), 1 / math.sqrt(n_in)))
        self.lora_B = nn.Parameter(torch.zeros(n_out, rank))
        self.scale = alpha / rank
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x):
        return F.linear(x, self.weight, self.bias) + (self.drop(x) @ self.lora_A.t() @ self.lora_B.t()) * self.scale


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n), requires_grad=False)
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def attention(q, k, v):
    """Causal attention: torch's fused kernel where it has one (2.0+, transformers' "sdpa"),
    else transformers' "eager" path (scores, causal mask, softmax in float32, times v)."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    T = q.shape[-2]
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    mask = torch.full((T, T), float("-inf")).triu(1)
    p = torch.softmax(scores.float() + mask, dim=-1).to(q.dtype)
    return p @ v


class Block(nn.Module):
    def __init__(self, c, lora):
        super().__init__()
        h, g, d = c["heads"], c["kv_heads"], c["hidden"] // c["heads"]
        self.h, self.g, self.d = h, g, d
        self.input_layernorm = RMSNorm(c["hidden"], c["eps"])
        self.q_proj = LoraLinear(c["hidden"], h * d, True, *lora)
        self.k_proj = LoraLinear(c["hidden"], g * d, True, *lora)
        self.v_proj = LoraLinear(c["hidden"], g * d, True, *lora)
        self.o_proj = LoraLinear(h * d, c["hidden"], False, *lora)
        self.post_attention_layernorm = RMSNorm(c["hidden"], c["eps"])
        self.gate_proj = LoraLinear(c["hidden"], c["intermediate"], False, *lora)
        self.up_proj = LoraLinear(c["hidden"], c["intermediate"], False, *lora)
        self.down_proj = LoraLinear(c["intermediate"], c["hidden"], False, *lora)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        a = self.input_layernorm(x)
        q = self.q_proj(a).view(B, T, self.h, self.d).transpose(1, 2)
        k = self.k_proj(a).view(B, T, self.g, self.d).transpose(1, 2)
        v = self.v_proj(a).view(B, T, self.g, self.d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(self.h // self.g, dim=1)
        v = v.repeat_interleave(self.h // self.g, dim=1)
        y = attention(q, k, v)
        x = x + self.o_proj(y.transpose(1, 2).reshape(B, T, self.h * self.d))
        m = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(m)) * self.up_proj(m))


class Model(nn.Module):
    def __init__(self, c, lora):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab"], c["hidden"])
        self.embed_tokens.weight.requires_grad_(False)
        with torch.no_grad():
            self.embed_tokens.weight.uniform_(-0.05, 0.05)
        self.layers = nn.ModuleList([Block(c, lora) for _ in range(c["layers"])])
        self.norm = RMSNorm(c["hidden"], c["eps"])
        self.lm_head = None if c["tied"] else nn.Linear(c["hidden"], c["vocab"], bias=False).requires_grad_(False)
        d = c["hidden"] // c["heads"]
        inv = 1.0 / (c["theta"] ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
        self.inv_freq = inv

    def forward(self, ids, targets):
        T = ids.shape[1]
        angles = torch.outer(torch.arange(T, dtype=torch.float64), self.inv_freq)
        emb = torch.cat((angles, angles), dim=-1)
        cos, sin = emb.cos().float(), emb.sin().float()
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, cos, sin)
        x = self.norm(x)
        head = self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        logits = F.linear(x, head)
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1), ignore_index=-1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--hidden", type=int, required=True)
    p.add_argument("--intermediate", type=int, required=True)
    p.add_argument("--layers", type=int, required=True)
    p.add_argument("--heads", type=int, required=True)
    p.add_argument("--kv-heads", type=int, required=True)
    p.add_argument("--vocab", type=int, required=True)
    p.add_argument("--tied", type=int, default=1)
    p.add_argument("--theta", type=float, default=1e6)
    p.add_argument("--eps", type=float, default=1e-6)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, default=32)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    c = dict(hidden=a.hidden, intermediate=a.intermediate, layers=a.layers, heads=a.heads, kv_heads=a.kv_heads,
             vocab=a.vocab, tied=bool(a.tied), theta=a.theta, eps=a.eps)
    model = Model(c, (a.rank, a.alpha, a.dropout))
    model.train()
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, a.vocab, (a.batch, a.seq + 1), generator=g)
    x, y = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()

    def step():
        opt.zero_grad(set_to_none=True)
        if a.dtype == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(x, y)
        else:
            loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    t = time.perf_counter()
    loss = 0.0
    for _ in range(a.steps):
        loss = step()
    sec = (time.perf_counter() - t) / a.steps
    print(json.dumps({
        "tokensPerSec": a.batch * a.seq / sec,
        "secPerStep": sec,
        "peakRssMiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loss": loss,
        "trainable": sum(q.numel() for q in params),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()

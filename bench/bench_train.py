"""Training throughput of lmforge's model against a nanoGPT-style GPT of the same size, in one run.

    .venv/bin/python bench/bench_train.py [--preset configs/demo.toml] [--rounds 5] [--steps 4]
    # on a GPU: GPT-2-small with bf16 autocast, torch.compile and flash attention (SDPA), ours only
    python bench/bench_train.py --preset configs/gpt2-small.toml --device cuda --dtype bfloat16 --compile --only-ours

Both models get the preset's width, depth, heads (plain multi-head attention for the comparison), context,
micro-batch and vocabulary, and run the same training step: forward, cross-entropy, backward, gradient
clipping at 1.0, AdamW (fused on CUDA). The reference is the GPT-2 architecture as nanoGPT builds it: learned
positions, LayerNorm with biases, one fused QKV projection with bias, SDPA causal attention, a 4× GELU MLP with
biases, tied head, no dropout. It is written here from that description, not copied. Rounds alternate between
the two models, each round in a fresh process; the median step time of each is reported, and the ratio.

MFU counts 6 FLOPs per matmul weight plus 12 · layers · dim · seq for attention for each model (its own
weights). Its peak: --peak-flops, else on CUDA the trainer's table of known devices, else on CPU the best of
fp32 matmuls of 2048² measured between rounds, so a CPU MFU reads as "share of this machine's matmul rate".
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import multiprocessing
import pathlib
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from model import ModelConfig, Transformer  # noqa: E402
from train import config as config_module  # noqa: E402
from train.metrics import peak_flops  # noqa: E402
from train.optim import build_optimizer  # noqa: E402
from train.trainer import loss_of, precision_context  # noqa: E402


class NanoGPTBlock(nn.Module):
    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.ln_1 = nn.LayerNorm(dim)
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.c_proj = nn.Linear(dim, dim)
        self.ln_2 = nn.LayerNorm(dim)
        self.c_fc = nn.Linear(dim, 4 * dim)
        self.mlp_proj = nn.Linear(4 * dim, dim)

    def forward(self, x):
        batch, seq, dim = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(dim, dim=2)
        q, k, v = (t.view(batch, seq, self.n_heads, dim // self.n_heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(batch, seq, dim)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class NanoGPTStyle(nn.Module):
    def __init__(self, vocab_size: int, dim: int, n_layers: int, n_heads: int, max_seq_len: int):
        super().__init__()
        self.dim, self.n_layers = dim, n_layers
        self.wte = nn.Embedding(vocab_size, dim)
        self.wpe = nn.Embedding(max_seq_len, dim)
        self.blocks = nn.ModuleList(NanoGPTBlock(dim, n_heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        for name, param in self.named_parameters():
            if name.endswith("weight") and param.dim() == 2:
                std = 0.02 / math.sqrt(2 * n_layers) if "proj" in name else 0.02
                nn.init.normal_(param, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(param)

    def forward(self, tokens):
        positions = torch.arange(tokens.size(1), device=tokens.device)
        x = self.wte(tokens) + self.wpe(positions)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))

    def flops_per_token(self, seq_len: int) -> float:
        matmul = sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Linear))
        return 6 * matmul + 12 * self.n_layers * self.dim * seq_len


def cpu_matmul_peak(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def step_time(model, optimizer, batches, amp, device, warmup: int) -> float:
    """Seconds per optimiser step (one micro-batch each), after `warmup` steps."""

    def one(batch):
        with amp():
            loss = loss_of(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    for batch in batches[:warmup]:
        one(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in batches:
        loss = one(batch)
    loss.item()  # waits for the device
    return (time.perf_counter() - start) / len(batches)


def build(name: str, args) -> tuple[nn.Module, object, int, int]:
    """The contender, the preset, the sequence length and the micro-batch size."""
    preset = config_module.load(args.preset)
    model_config = ModelConfig(
        **{**preset.model.__dict__, "vocab_size": args.vocab_size, "n_kv_heads": preset.model.n_heads}
    )
    torch.manual_seed(0)
    if name == "lmforge":
        model = Transformer(model_config)
    else:
        model = NanoGPTStyle(
            args.vocab_size, model_config.dim, model_config.n_layers, model_config.n_heads, model_config.max_seq_len
        )
    return model, preset, preset.data.seq_len, args.micro_batch_size or preset.training.micro_batch_size


def measure(name: str, args) -> dict:
    """One round of one contender, in a process of its own so neither inherits the other's allocator state."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, preset, seq_len, micro = build(name, args)
    model = model.to(device)
    optimizer = build_optimizer(model, preset.optim, device)
    runnable = torch.compile(model) if args.compile else model
    generator = torch.Generator().manual_seed(0)
    batches = [
        torch.randint(0, args.vocab_size, (micro, seq_len + 1), generator=generator).to(device)
        for _ in range(args.steps)
    ]
    amp = precision_context(args.dtype, device)
    seconds = step_time(runnable, optimizer, batches, amp, device, warmup=3 if args.compile else 1)
    peak_memory = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return {
        "seconds": seconds,
        "tokens": micro * seq_len,
        "flops_per_token": model.flops_per_token(seq_len),
        "parameters": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
        "peak_memory": peak_memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=str(REPO / "configs" / "demo.toml"))
    parser.add_argument(
        "--vocab-size", type=int, default=2048, help="the preset's 0 means the tokenizer's; this stands in"
    )
    parser.add_argument("--micro-batch-size", type=int, default=0, help="default: the preset's")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per round")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--only-ours", action="store_true", help="skip the reference model")
    parser.add_argument("--peak-flops", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    args = parser.parse_args()

    device = torch.device(args.device)
    names = ["lmforge"] if args.only_ours else ["lmforge", "nanoGPT-style"]
    spawn = multiprocessing.get_context("spawn")
    peak = peak_flops(device, args.peak_flops)
    results = {name: [] for name in names}
    for round_index in range(args.rounds):
        for name in names if round_index % 2 == 0 else names[::-1]:  # neither always goes first
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
                results[name].append(pool.submit(measure, name, args).result())
        if not peak and device.type == "cpu":
            peak = max(peak, cpu_matmul_peak())
    preset = config_module.load(args.preset)
    first = results[names[0]][0]
    print(
        f"shape: dim {preset.model.dim}, layers {preset.model.n_layers}, heads {preset.model.n_heads}, seq "
        f"{preset.data.seq_len}, tokens per step {first['tokens']}, vocab {args.vocab_size}; device {device}, "
        f"{args.dtype}, compile {args.compile}, threads {first['threads']}; peak {peak / 1e12:.3f} TFLOP/s"
    )
    rates = {}
    for name, runs in results.items():
        median = statistics.median(r["seconds"] for r in runs)
        rates[name] = runs[0]["tokens"] / median
        mfu = f", MFU {runs[0]['flops_per_token'] * rates[name] / peak:.1%}" if peak else ""
        memory = f", peak memory {max(r['peak_memory'] for r in runs) / 1e9:.1f} GB" if device.type == "cuda" else ""
        print(
            f"{name}: {runs[0]['parameters'] / 1e6:.2f}M parameters, {runs[0]['flops_per_token'] / 1e6:.1f} MFLOPs/token; "
            f"{median * 1e3:.1f} ms/step (median of {len(runs)}), {rates[name]:,.0f} tokens/s{mfu}{memory}"
        )
    if len(rates) == 2:
        print(f"lmforge / nanoGPT-style tokens per second: {rates['lmforge'] / rates['nanoGPT-style']:.2f}×")


if __name__ == "__main__":
    main()

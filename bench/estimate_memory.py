"""GPU memory each training preset needs per device, estimated from its shapes, for docs/distributed.md.

    .venv/bin/python bench/estimate_memory.py [--gpus 8] [--vocab-size 50304]

An estimate, not a measurement (no GPU was lent when it was written; measure with `bench_train.py --device cuda`,
which reports peak memory). It counts, in bytes, with bf16 compute over float32 master weights and AdamW:
- model states: 4 (weights) + 4 (gradients) + 8 (two Adam moments) per parameter, divided by tp, and by dp
  with FSDP; plus the bf16 compute copies: all of them without FSDP, two blocks and the root (embedding and head,
  gathered through a whole step) with it; plus, with FSDP and more than one micro-batch a step, the float32
  gradient of the whole (tp-split) model that FSDP2 accumulates unsharded until the last micro-batch reduces it.
- activations kept for backward per token and block (flash attention, no recomputation): the norms' inputs, the
  normed inputs of attention and MLP, q, k, v, the attention output and its copy into wo, and four tensors of the
  MLP's width, all bf16; split by tp where the plan splits them (norm inputs only with sequence parallelism).
- the loss: per token, the float32 log-softmax over the (tp-split) vocabulary, its gradient and the bf16 logits'
  gradient, 10 bytes per vocabulary entry; the largest single term for small models with large vocabularies.
Allocator fragmentation, NCCL buffers and the CUDA context (1–3 GB) come on top.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys

import torch

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from model import Transformer  # noqa: E402
from train import config as config_module  # noqa: E402

PRESETS = ("gpt2-small", "350m", "1b")
GB = 1e9


def estimate(config, gpus: int, tp: int, fsdp: bool, sequence_parallel: bool) -> dict:
    model = config.model
    with torch.device("meta"):
        transformer = Transformer(model)
    params = transformer.num_params()
    block = sum(p.numel() for p in transformer.layers[0].parameters())
    root = params - block * model.n_layers
    dp = gpus // tp
    tokens = config.training.micro_batch_size * config.data.seq_len
    accumulation = config.training.batch_tokens // (tokens * dp)
    d, width, kv_share = model.dim, model.hidden_dim, model.kv_heads / model.n_heads

    states = 16 * params / tp / (dp if fsdp else 1)
    compute_copies = 2 * ((2 * block + root) if fsdp else params) / tp
    unsharded_gradient = 4 * params / tp if fsdp and dp > 1 and accumulation > 1 else 0
    norm_inputs = 2 * d / (tp if sequence_parallel else 1)
    per_layer = 2 * (norm_inputs + 2 * d + 3 * d / tp + 2 * d * kv_share / tp) + 8 * width / tp
    activations = tokens * (model.n_layers * per_layer + 4 * d + 10 * model.vocab_size / tp)
    total = states + compute_copies + unsharded_gradient + activations
    return {
        "params": params,
        "dp": dp,
        "accumulation": accumulation,
        "states": states + compute_copies,
        "unsharded_gradient": unsharded_gradient,
        "activations": activations,
        "total": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--vocab-size", type=int, default=50304, help="the presets' 0 means the tokenizer's")
    args = parser.parse_args()
    print(
        "| preset | micro-batch | layout | accumulation | weights, gradients, Adam, bf16 copies | FSDP's unsharded "
        "gradient | activations and loss | total per GPU |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for preset in PRESETS:
        config = config_module.load(str(REPO / "configs" / f"{preset}.toml"))
        config.model.vocab_size = args.vocab_size
        layouts = [
            ("1 GPU", 1, 1, False, False),
            (f"{args.gpus} GPUs, DDP", args.gpus, 1, False, False),
            (f"{args.gpus} GPUs, FSDP", args.gpus, 1, True, False),
            (f"{args.gpus} GPUs, tp 2 × FSDP dp {args.gpus // 2}, SP", args.gpus, 2, True, True),
        ]
        for name, gpus, tp, fsdp, sequence_parallel in layouts:
            e = estimate(config, gpus, tp, fsdp, sequence_parallel)
            micro = f"{config.training.micro_batch_size} × {config.data.seq_len}"
            print(
                f"| {preset} ({e['params'] / 1e6:,.0f}M) | {micro} | {name} | {e['accumulation']} | "
                f"{e['states'] / GB:.1f} GB | {e['unsharded_gradient'] / GB:.1f} GB | {e['activations'] / GB:.1f} GB | "
                f"**{math.ceil(e['total'] / GB * 10) / 10:.1f} GB** |"
            )


if __name__ == "__main__":
    main()

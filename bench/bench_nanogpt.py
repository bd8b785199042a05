"""lmforge's trainer against real nanoGPT (its `train.py` as published, run beside ours, never copied into the
repository) on the same bins, the same model shape and the same tokens per step, in one run.

    .venv/bin/python bench/bench_nanogpt.py --nanogpt ../shared/peers/nanogpt          # CPU, the demo's shape
    # on a GPU: GPT-2-small's shape, bf16, torch.compile, 16 × 1024 tokens a micro-batch, 8 micro-batches a step
    python bench/bench_nanogpt.py --nanogpt peers/nanogpt --preset configs/gpt2-small.toml --vocab-size 50304 \\
        --device cuda --dtype bfloat16 --compile --batch-tokens 131072 --steps 40 --warmup 10 --rounds 2

Both trainers get the preset's width, depth, heads, context and micro-batch, the same vocabulary (nanoGPT's
`meta.pkl` holds ours, padded) and `--batch-tokens` a step (nanoGPT: batch_size × block_size × accumulation);
each trains its own architecture (lmforge: the preset's Llama block, with its grouped-query attention if the
preset has it; nanoGPT: GPT-2's, no biases, no dropout) from the same token files (`train.bin` and `val.bin` for
nanoGPT are our bins' shards concatenated). Without `--bins`/`--tokenizer`, a 2,048-id tokenizer and bins are
made from generated text (bench/bench_distributed.py's data).

Each round runs both in fresh processes, alternating which goes first. A trainer's figure is the median step
time over the steps after `--warmup` (compilation, the first allocations): lmforge's from `metrics.jsonl`
(training time only), nanoGPT's from its `iter N: … time T ms` lines (its whole loop, a host sync every step
for the loss it prints). MFU: lmforge's own (`mfu` in its step lines, against the trainer's peak table), and
nanoGPT's printed one, which is against an A100's 312 TFLOP/s, converted to the same peak. Peak memory is
lmforge's `peak_memory_gb` on CUDA (nanoGPT does not report it).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

import torch

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_distributed import build_data  # noqa: E402

from train import config as config_module  # noqa: E402
from train.metrics import peak_flops, read_records  # noqa: E402
from train.trainer import VOCAB_PADDING  # noqa: E402

NANOGPT_FILES = ("train.py", "model.py", "configurator.py")
NANOGPT_PEAK = 312e12  # what nanoGPT's printed MFU is relative to (an A100's bf16 peak)
NANOGPT_ITER = re.compile(r"^iter (\d+): loss [-\d.naninf]+, time ([\d.]+)ms, mfu (-?[\d.]+)%", re.M)


def nanogpt_dataset(peer: pathlib.Path, bins: pathlib.Path, vocab_size: int, work: pathlib.Path) -> pathlib.Path:
    """A folder to run nanoGPT in: its three files and data/lmforge/{train,val}.bin and meta.pkl from our bins."""
    missing = [name for name in NANOGPT_FILES if not (peer / name).is_file()]
    if missing:
        raise SystemExit(f"--nanogpt {peer}: no {', '.join(missing)} there (nanoGPT's train.py, model.py, ...)")
    folder = work / "nanogpt"
    data = folder / "data" / "lmforge"
    data.mkdir(parents=True, exist_ok=True)
    for name in NANOGPT_FILES:
        shutil.copyfile(peer / name, folder / name)
    meta = json.loads((bins / "meta.json").read_text())
    if meta["dtype"] != "uint16":
        raise SystemExit(f"{bins}: nanoGPT reads uint16 tokens, these bins hold {meta['dtype']}")
    for split in ("train", "val"):
        with open(data / f"{split}.bin", "wb") as joined:
            for shard in meta["splits"][split]["shards"]:
                joined.write((bins / split / f"{shard}.bin").read_bytes())
    with open(data / "meta.pkl", "wb") as handle:
        pickle.dump({"vocab_size": vocab_size}, handle)
    return folder


def run_nanogpt(folder: pathlib.Path, shape: dict, args, out: pathlib.Path, env: dict) -> dict:
    accumulation = args.batch_tokens // (shape["micro_batch_size"] * shape["seq_len"])
    command = [
        sys.executable,
        "train.py",
        "--dataset=lmforge",
        f"--batch_size={shape['micro_batch_size']}",
        f"--block_size={shape['seq_len']}",
        f"--gradient_accumulation_steps={accumulation}",
        f"--n_layer={shape['n_layers']}",
        f"--n_head={shape['n_heads']}",
        f"--n_embd={shape['dim']}",
        f"--max_iters={args.steps}",
        f"--lr_decay_iters={args.steps}",
        f"--warmup_iters={args.warmup}",
        "--eval_interval=1000000",  # once, before the first step, with one batch
        "--eval_iters=1",
        "--log_interval=1",
        f"--compile={args.compile}",
        f"--dtype={args.dtype}",
        f"--device={args.device}",
        f"--out_dir={out}",
        "--always_save_checkpoint=False",
    ]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"nanoGPT: exit code {done.returncode}\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    per_iteration = f"tokens per iteration will be: {args.batch_tokens:,}"
    if per_iteration not in done.stdout:
        raise RuntimeError(f"nanoGPT did not train {args.batch_tokens:,} tokens a step:\n{done.stdout[:2000]}")
    iterations = [(int(i), float(ms) / 1000, float(mfu) / 100) for i, ms, mfu in NANOGPT_ITER.findall(done.stdout)]
    timed = [(seconds, mfu) for step, seconds, mfu in iterations if step > args.warmup]
    if not timed:
        raise RuntimeError(f"nanoGPT printed no step after {args.warmup}:\n{done.stdout[-2000:]}")
    return {
        "seconds": statistics.median(s for s, _ in timed),
        "nanogpt_mfu": statistics.median(m for _, m in timed),  # against NANOGPT_PEAK; its own running average
        "parameters": re.search(r"number of parameters: ([\d.]+M)", done.stdout).group(1),  # without positions
    }


def run_lmforge(data: tuple[str, str], shape: dict, args, run_dir: pathlib.Path, env: dict) -> dict:
    tokenizer, bins = data
    command = [
        sys.executable,
        "-m",
        "train",
        "--config",
        args.preset,
        "--run.dir",
        str(run_dir),
        "--data.sources",
        f'[{{path="{bins}"}}]',
        "--data.tokenizer",
        tokenizer,
        "--model.vocab_size",
        str(shape["vocab_size"]),
        "--data.seq_len",
        str(shape["seq_len"]),
        "--model.max_seq_len",
        str(shape["seq_len"]),
        "--training.micro_batch_size",
        str(shape["micro_batch_size"]),
        "--training.batch_tokens",
        str(args.batch_tokens),
        "--training.steps",
        str(args.steps),
        "--training.device",
        args.device,
        "--training.dtype",
        args.dtype,
        "--training.compile",
        str(args.compile).lower(),
        "--schedule.warmup_steps",
        str(args.warmup),
        "--logging.interval",
        "1",
        "--logging.eval_interval",
        "0",
        "--logging.sample_tokens",
        "0",
        "--logging.tensorboard",
        "false",
        "--checkpoint.interval",
        "0",
    ]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"lmforge: exit code {done.returncode}\n{done.stderr[-3000:]}")
    records = [r for r in read_records(str(run_dir / "metrics.jsonl")) if "tokens_per_second" in r]
    timed = [r for r in records if r["step"] > args.warmup]
    return {
        "seconds": statistics.median(args.batch_tokens / r["tokens_per_second"] for r in timed),
        "mfu": statistics.median(r["mfu"] for r in timed) if "mfu" in timed[0] else None,
        "peak_memory_gb": max((r.get("peak_memory_gb", 0.0) for r in records), default=0.0) or None,
        "parameters": re.search(r"model: ([\d.]+M) parameters", done.stderr).group(1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nanogpt", required=True, help="a folder with nanoGPT's train.py, model.py, configurator.py")
    parser.add_argument("--preset", default=str(REPO / "configs" / "demo.toml"))
    parser.add_argument("--bins", help="an lmforge bin directory (default: made from generated text)")
    parser.add_argument("--tokenizer", help="its tokenizer directory (with --bins)")
    parser.add_argument("--vocab-size", type=int, default=0, help="default: the tokenizer's, padded as lmforge pads")
    parser.add_argument("--micro-batch-size", type=int, default=0, help="default: the preset's")
    parser.add_argument("--batch-tokens", type=int, default=0, help="tokens a step (default: the preset's)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3, help="steps left out of the figures")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--work", help="where data and runs go (default: a temporary folder, removed)")
    args = parser.parse_args()
    if bool(args.bins) != bool(args.tokenizer):
        parser.error("--bins and --tokenizer go together")

    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="bench-nanogpt-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        data = (args.tokenizer, args.bins) if args.bins else build_data(work)
        preset = config_module.load(args.preset)
        tokenizer_vocab = json.loads((pathlib.Path(data[1]) / "meta.json").read_text())["vocab_size"]
        shape = {
            "dim": preset.model.dim,
            "n_layers": preset.model.n_layers,
            "n_heads": preset.model.n_heads,
            "n_kv_heads": preset.model.n_kv_heads,
            "seq_len": preset.data.seq_len,
            "micro_batch_size": args.micro_batch_size or preset.training.micro_batch_size,
            "vocab_size": args.vocab_size or VOCAB_PADDING * -(-tokenizer_vocab // VOCAB_PADDING),
        }
        args.batch_tokens = args.batch_tokens or preset.training.batch_tokens
        if args.batch_tokens % (shape["micro_batch_size"] * shape["seq_len"]):
            parser.error("--batch-tokens must be a multiple of the micro-batch size × the context")
        folder = nanogpt_dataset(pathlib.Path(args.nanogpt).resolve(), pathlib.Path(data[1]), shape["vocab_size"], work)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        print(
            f"shape {shape}, {args.batch_tokens:,} tokens a step, {args.device} {args.dtype}"
            f"{', compiled' if args.compile else ''}; {args.rounds} rounds of {args.steps} steps",
            flush=True,
        )

        results: dict[str, list[dict]] = {"lmforge": [], "nanoGPT": []}
        for round_index in range(args.rounds):
            order = ["lmforge", "nanoGPT"] if round_index % 2 == 0 else ["nanoGPT", "lmforge"]
            for name in order:
                run = work / f"{name}-{round_index}"
                shutil.rmtree(run, ignore_errors=True)
                if name == "lmforge":
                    result = run_lmforge(data, shape, args, run, env)
                else:
                    result = run_nanogpt(folder, shape, args, run, env)
                results[name].append(result)
                print(f"round {round_index + 1} {name}: {result['seconds'] * 1000:.0f} ms a step", flush=True)

        peak = peak_flops(torch.device(args.device), 0.0)
        figures = {name: statistics.median(r["seconds"] for r in runs) for name, runs in results.items()}
        ours, theirs = results["lmforge"][0], results["nanoGPT"]
        nano_mfu = statistics.median(r["nanogpt_mfu"] for r in theirs) * NANOGPT_PEAK / peak if peak else None
        our_mfu = statistics.median(r["mfu"] for r in results["lmforge"]) if ours["mfu"] is not None else None
        print()
        print("| trainer | ms a step | tokens/s | MFU | peak memory |")
        print("|---|---|---|---|---|")
        rows = (
            (f"lmforge ({ours['parameters']} parameters)", figures["lmforge"], our_mfu, ours["peak_memory_gb"]),
            (f"nanoGPT ({theirs[0]['parameters']} parameters)", figures["nanoGPT"], nano_mfu, None),
        )
        for name, seconds, mfu, memory in rows:
            print(
                f"| {name} | {seconds * 1000:.0f} | {args.batch_tokens / seconds:,.0f} | "
                f"{f'{mfu:.1%}' if mfu is not None else '-'} | {f'{memory:.1f} GB' if memory else '-'} |"
            )
        print(f"\nlmforge / nanoGPT, tokens per second: {figures['nanoGPT'] / figures['lmforge']:.2f}×")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""How long the step loop stalls for a checkpoint, written in the loop and in the background
(checkpoint.async_save), on the 350M preset on CPU.

    .venv/bin/python bench/bench_checkpoint.py [--preset configs/350m.toml] [--rounds 3] [--seq 64]

The preset's model (its vocabulary padded from 50,257, GPT-2's) and AdamW with state are built once; then rounds
alternate: a checkpoint written in the loop (the stall is the whole write: shards, hashes, manifest), and one in
the background (the stall is the copy into host memory; the write goes on beside the next steps). Each round also
times training steps (one micro-batch of --seq tokens) alone and while a background write runs, so the write's
cost to the steps beside it on a machine's few cores is in the figures too. Medians over the rounds.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

import torch

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from model import Transformer  # noqa: E402
from train import checkpoint, config as config_module, parallel  # noqa: E402
from train.optim import build_optimizer  # noqa: E402
from train.trainer import loss_of  # noqa: E402


def step(model, optimizer, batch) -> float:
    started = time.perf_counter()
    loss_of(model, batch).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default=str(REPO / "configs/350m.toml"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seq", type=int, default=64, help="tokens of the one micro-batch of a timed step")
    parser.add_argument("--dir", default=None, help="where checkpoints go (default: a temporary directory)")
    args = parser.parse_args()

    config = config_module.load(args.preset)
    config.model.vocab_size = config.model.vocab_size or 50304  # GPT-2's 50,257 padded to 128
    torch.manual_seed(0)
    model = Transformer(config.model)
    optimizer = build_optimizer(model, config.optim, torch.device("cpu"))
    batch = torch.randint(0, config.model.vocab_size, (1, args.seq + 1))
    step(model, optimizer, batch)  # AdamW's state exists from here
    layout = parallel.Layout(torch.device("cpu"))
    state_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    state_bytes += sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values())
    print(
        f"{args.preset}: {model.num_params() / 1e6:.0f}M parameters, {state_bytes / 1e9:.2f} GB of weights and optimiser state"
    )

    root = pathlib.Path(args.dir or tempfile.mkdtemp(prefix="bench-checkpoint-"))
    figures: dict[str, list[float]] = {
        "sync_stall": [],
        "async_stall": [],
        "async_write": [],
        "step": [],
        "step_beside": [],
    }
    try:
        for round_number in range(args.rounds):
            figures["step"].append(step(model, optimizer, batch))
            for background in (False, True):
                run = root / f"round-{round_number}-{'async' if background else 'sync'}"
                writer = checkpoint.Checkpointer(str(run), keep=1, layout=layout, background=background)
                started = time.perf_counter()
                writer.save(1, model, optimizer, {"step": 1}, config)
                stall = time.perf_counter() - started
                if background:
                    beside = []
                    while writer._pending is not None and not writer._pending.done():
                        beside.append(step(model, optimizer, batch))
                    writer.close()
                    figures["async_stall"].append(stall)
                    figures["async_write"].append(writer.write_seconds)
                    figures["step_beside"].extend(beside)
                else:
                    figures["sync_stall"].append(stall)
                assert checkpoint.verify(str(run / "checkpoints" / "step-00000001"))
                shutil.rmtree(run)
            print(
                f"round {round_number + 1}: in the loop {figures['sync_stall'][-1]:.2f} s; in the background: "
                f"stall {figures['async_stall'][-1]:.2f} s, written in {figures['async_write'][-1]:.2f} s"
            )
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    median = {name: statistics.median(values) if values else float("nan") for name, values in figures.items()}
    print(
        f"median stall per checkpoint: in the loop {median['sync_stall']:.2f} s, in the background "
        f"{median['async_stall']:.2f} s ({median['sync_stall'] / median['async_stall']:.1f}× less); the background "
        f"write took {median['async_write']:.2f} s"
    )
    print(
        f"a step of {args.seq} tokens: {median['step']:.2f} s alone, {median['step_beside']:.2f} s beside a "
        f"background write ({len(figures['step_beside'])} steps)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

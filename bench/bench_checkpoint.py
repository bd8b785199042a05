"""How long the step loop stalls for a checkpoint, written in the loop and in the background
(checkpoint.async_save), on the 350M preset on CPU.

    .venv/bin/python bench/bench_checkpoint.py [--preset configs/350m.toml] [--rounds 3] [--seq 64]
    .venv/bin/python bench/bench_checkpoint.py --gil     # what a writer thread leaves the loop's Python

The preset's model (its vocabulary padded from 50,257, GPT-2's) and AdamW with state are built once; then rounds
alternate: a checkpoint written in the loop (the stall is the whole write: shards, hashes, manifest), and one in
the background (the stall is the copy into host memory; the write goes on beside the next steps). Each round also
times training steps (one micro-batch of --seq tokens) alone and while a background write runs, so the write's
cost to the steps beside it on a machine's few cores is in the figures too. Medians over the rounds.

--gil: small matmuls counted in one thread while another serialises 800 MB of tensors the way DCP's safetensors
storage does (`safetensors.torch.save`, bytes in memory), with `safetensors.torch.save_file`, and copies the same
bytes with torch: the matmuls a second left, and the longest pause, show which of them hold the GIL.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import threading
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


def gil_probe() -> None:
    from safetensors.torch import save, save_file

    torch.set_num_threads(1)
    tensors = {f"w{i}": torch.randn(1024, 8192) for i in range(24)}  # 800 MB
    target, source = torch.empty(24 * 1024 * 8192), torch.cat([t.flatten() for t in tensors.values()])
    small = torch.randn(512, 512)
    folder = tempfile.mkdtemp(prefix="bench-gil-")

    def beside(label: str, work) -> None:
        stop, counts = threading.Event(), {"done": 0, "worst": 0.0}

        def count() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                (small @ small).sum()
                counts["worst"] = max(counts["worst"], time.perf_counter() - started)
                counts["done"] += 1

        thread = threading.Thread(target=count)
        thread.start()
        started = time.perf_counter()
        work()
        seconds = time.perf_counter() - started
        stop.set()
        thread.join()
        print(
            f"{label}: {seconds:.2f} s; beside it {counts['done'] / seconds:,.0f} matmuls a second, the longest "
            f"{counts['worst'] * 1000:.0f} ms"
        )

    try:
        beside("nothing (sleep)", lambda: time.sleep(2))
        beside("safetensors.torch.save (DCP's way)", lambda: save(tensors))
        beside("safetensors.torch.save_file", lambda: save_file(tensors, os.path.join(folder, "t.safetensors")))
        beside("torch copy of the same bytes", lambda: [target.copy_(source) for _ in range(3)])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default=str(REPO / "configs/350m.toml"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seq", type=int, default=64, help="tokens of the one micro-batch of a timed step")
    parser.add_argument("--dir", default=None, help="where checkpoints go (default: a temporary directory)")
    parser.add_argument("--gil", action="store_true", help="only the GIL probe (above)")
    args = parser.parse_args()
    if args.gil:
        gil_probe()
        return 0

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

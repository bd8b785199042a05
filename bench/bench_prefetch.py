"""Does preparing batches in a background thread cost CPU steps? The trainer as shipped (train.data.Prefetcher)
against the same trainer drawing each batch in the step loop, the demo preset's shape on CPU.

    .venv/bin/python bench/bench_prefetch.py [--rounds 4] [--steps 14] [--warmup 4]

Each round runs both, each a fresh `python -m train` process, alternating which goes first; a run's figure is the
median tokens/s of its steps after --warmup (the trainer's own, training time only); medians over rounds and the
per-round ratios. The data: bench/bench_distributed.py's (a 2,048-id tokenizer and bins from generated text).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

MODES = ("prefetched", "in-loop")


class InLoop:
    """Prefetcher's interface, drawing each batch when the step loop asks for it."""

    def __init__(self, loader, pin: bool, depth: int = 4):
        self._loader = loader

    def next_batch(self):
        return self._loader.next_batch()

    def state_dict(self) -> dict:
        return self._loader.state_dict()

    def close(self) -> None:
        pass


def train_once(mode: str, data: pathlib.Path, run: pathlib.Path, steps: int) -> int:
    """One run in this process (the child's side)."""
    import train.trainer
    from train import cli

    if mode == "in-loop":
        train.trainer.Prefetcher = InLoop  # type: ignore[misc,assignment]
    return cli.main(
        [
            "--config", str(REPO / "configs" / "demo.toml"), "--run.dir", str(run),
            "--data.sources", f'[{{path="{data / "bins"}"}}]', "--data.tokenizer", str(data / "tok"),
            "--training.steps", str(steps), "--training.device", "cpu", "--logging.interval", "1",
            "--logging.eval_interval", "0", "--logging.sample_tokens", "0", "--checkpoint.interval", "0",
            "--logging.tensorboard", "false",
        ]
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=14)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "DATA", "RUN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, data, run = args.child
        return train_once(mode, pathlib.Path(data), pathlib.Path(run), args.steps)

    from bench_distributed import build_data

    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-prefetch-"))
    try:
        build_data(work)
        figures: dict[str, list[float]] = {mode: [] for mode in MODES}
        for round_number in range(args.rounds):
            for mode in MODES if round_number % 2 == 0 else MODES[::-1]:
                run = work / f"{mode}-{round_number}"
                command = [sys.executable, __file__, "--steps", str(args.steps), "--child", mode, str(work), str(run)]
                subprocess.run(command, check=True, capture_output=True)
                records = [json.loads(line) for line in open(run / "metrics.jsonl")]
                rates = [
                    r["tokens_per_second"] for r in records if "tokens_per_second" in r and r["step"] > args.warmup
                ]
                figures[mode].append(statistics.median(rates))
            print(f"round {round_number + 1}: " + ", ".join(f"{m} {figures[m][-1]:,.0f}" for m in MODES), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians = {mode: statistics.median(values) for mode, values in figures.items()}
    pairs = [a / b for a, b in zip(figures["prefetched"], figures["in-loop"])]
    print(
        f"median tokens/s: prefetched {medians['prefetched']:,.0f}, in the loop {medians['in-loop']:,.0f}: "
        f"{medians['prefetched'] / medians['in-loop']:.3f}× (pairs {', '.join(f'{p:.3f}' for p in pairs)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

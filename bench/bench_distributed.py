"""What each parallel layout costs on CPU: the trainer (`python -m train` / `torchrun -m train`) on the demo
preset's shape, one process with 2 threads against 2 processes × 1 thread as DDP (FSDP2's replicate), FSDP and
TP (with and without sequence parallelism), in one run.

    .venv/bin/python bench/bench_distributed.py [--rounds 3] [--steps 12]

Two cores cannot show a speed-up; the figures are the overhead each layout adds. Every layout trains the same
global batch (8,192 tokens a step) on bins encoded from generated text. Rounds alternate the order of the
layouts; each figure is the median over rounds of: tokens per second over the steps after the first `--warmup`
(from RUN/metrics.jsonl), and CPU-seconds per step, summed over the job's processes (their CPU times sampled
with psutil as steps are logged).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import random
import statistics
import subprocess
import sys
import tempfile
import time

import psutil
import pyarrow as pa
import pyarrow.parquet as pq

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.common import synthetic  # noqa: E402
from tests.trainruns import torchrun_command  # noqa: E402
from tokenizer import (  # noqa: E402
    corpus,
    encode,
    train as tokenizer_train,  # noqa: E402
)
from train.metrics import read_records  # noqa: E402

LAYOUTS = {
    "one process × 2 threads": (1, []),
    "DDP 2 × 1 (replicate)": (2, []),
    "FSDP 2 × 1": (2, ["--parallel.fsdp", "true"]),
    "TP 2 × 1": (2, ["--parallel.tp", "2"]),
    "TP 2 × 1, sequence parallel": (2, ["--parallel.tp", "2", "--parallel.sequence_parallel", "true"]),
}


def build_data(root: pathlib.Path) -> tuple[str, str]:
    """A 2,048-id tokenizer and train bins from generated articles."""
    rng = random.Random(0)
    texts = ["\n\n".join(synthetic.article_paragraphs(rng, rng.choice(["en", "de", "fr", "es"]))) for _ in range(800)]
    shard = root / "part-00000.parquet"
    pq.write_table(pa.table({"id": [f"doc-{i}" for i in range(len(texts))], "text": texts}), shard)
    tokenizer_train.train(
        corpus.CorpusSpec([str(shard)]), tokenizer_train.TrainConfig(vocab_size=2048), str(root / "tok")
    )
    encode.encode_corpus(
        str(root / "tok"), corpus.CorpusSpec([str(shard)]), str(root / "bins"), encode.EncodeConfig(val_fraction=0.02)
    )
    return str(root / "tok"), str(root / "bins")


def run_layout(
    name: str, processes: int, extra: list[str], data: tuple[str, str], run_dir: pathlib.Path, steps: int, warmup: int
) -> dict:
    tokenizer, bins = data
    arguments = [
        "--config",
        str(REPO / "configs" / "demo.toml"),
        "--run.dir",
        str(run_dir),
        "--data.sources",
        f'[{{path="{bins}"}}]',
        "--data.tokenizer",
        tokenizer,
        "--training.steps",
        str(steps),
        "--logging.interval",
        "1",
        "--logging.eval_interval",
        "0",
        "--logging.eval_batches",
        "1",
        "--logging.tensorboard",
        "false",
        "--checkpoint.interval",
        "100000",
        *extra,
    ]
    if processes == 1:
        command, threads = [sys.executable, "-m", "train", *arguments], "2"
    else:
        command, threads = torchrun_command(processes, *arguments), "1"
    env = {**os.environ, "OMP_NUM_THREADS": threads, "PYTHONPATH": str(REPO)}
    job = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics, samples = run_dir / "metrics.jsonl", {}  # step → CPU seconds of the job so far
    while job.poll() is None:
        logged = metrics.read_text().count("\n") if metrics.exists() else 0  # one line a step
        if logged and logged not in samples:
            samples[logged] = job_cpu_seconds(job.pid)
        time.sleep(0.02)
    if job.returncode:
        raise RuntimeError(f"{name}: exit code {job.returncode}\n{job.stderr.read()[-3000:]}")
    records = [r for r in read_records(str(metrics)) if "tokens_per_second" in r]
    timed = [r for r in records if r["step"] > warmup]
    seconds = sum(8192 / r["tokens_per_second"] for r in timed)
    first, last = min(s for s in samples if s > warmup), max(samples)
    return {
        "tokens_per_second": 8192 * len(timed) / seconds,
        "cpu_seconds_per_step": (samples[last] - samples[first]) / (last - first),
    }


def job_cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and all its children still running."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            times = process.cpu_times()
            total += times.user + times.system
    except psutil.NoSuchProcess:
        pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3, help="steps left out of the figures")
    args = parser.parse_args()
    results = {name: [] for name in LAYOUTS}
    with tempfile.TemporaryDirectory() as scratch:
        root = pathlib.Path(scratch)
        data = build_data(root)
        names = list(LAYOUTS)
        for round_index in range(args.rounds):
            for name in names if round_index % 2 == 0 else names[::-1]:
                processes, extra = LAYOUTS[name]
                run_dir = root / f"run-{round_index}-{names.index(name)}"
                results[name].append(run_layout(name, processes, extra, data, run_dir, args.steps, args.warmup))
                print(f"round {round_index + 1}: {name}: {results[name][-1]}", flush=True)
    base = statistics.median(r["tokens_per_second"] for r in results[names[0]])
    print(
        f"\ndemo shape (dim 256, 4 layers, seq 256, 8,192 tokens a step), {args.steps} steps, the first "
        f"{args.warmup} left out, medians of {args.rounds} rounds"
    )
    print("| layout | tokens/s | vs one process | CPU-seconds per step |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        rate = statistics.median(r["tokens_per_second"] for r in runs)
        cpu = statistics.median(r["cpu_seconds_per_step"] for r in runs)
        print(f"| {name} | {rate:,.0f} | {rate / base:.2f}× | {cpu:.2f} |")


if __name__ == "__main__":
    main()

"""What the trainer's tests share: the tiny model's settings, a run's arguments, its losses and weights, and a
torchrun launcher for real multi-process jobs on gloo."""

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.textdata import corpus_texts, write_shards
from tokenizer import corpus, encode, train as tokenizer_train

TINY_RUN = [
    "--model.dim",
    "32",
    "--model.n_layers",
    "2",
    "--model.n_heads",
    "4",
    "--model.n_kv_heads",
    "2",
    "--model.multiple_of",
    "16",
    "--model.max_seq_len",
    "32",
    "--data.seq_len",
    "32",
    "--training.micro_batch_size",
    "4",
    "--training.batch_tokens",
    "256",
    "--training.device",
    "cpu",
    "--schedule.warmup_steps",
    "2",
    "--optim.lr",
    "3e-3",
    "--logging.interval",
    "1",
    "--logging.eval_interval",
    "0",
    "--logging.eval_batches",
    "2",
    "--logging.tensorboard",
    "false",
]

# A learning rate that makes the first steps' loss or gradient norm infinite, with nothing to soften it.
POISONED = ["--optim.lr", "1e30", "--schedule.warmup_steps", "0", "--training.grad_clip", "0"]

# The distributed tests' run: 8 steps, a checkpoint every 2, so that any layout can resume from any of them.
DISTRIBUTED_STEPS = ["--training.steps", "8", "--checkpoint.interval", "2", "--checkpoint.keep", "10"]
HALF_MICRO_BATCH = ["--training.micro_batch_size", "2"]  # with dp=2: the same global batch in 2 micro-batches

ONE_PROCESS_SHARD = "shard-00001-model-00001-of-00001.safetensors"  # what DCP names the file of the first writer


def build_data(root):
    """A tokenizer and two bin directories (different texts), 10% validation."""
    shards = write_shards(root / "shards", corpus_texts(count=200))
    tokenizer_train.train(corpus.CorpusSpec(shards), tokenizer_train.TrainConfig(vocab_size=600), str(root / "tok"))
    for name, seed in (("web", 1), ("books", 2)):
        paths = write_shards(root / f"{name}-shards", corpus_texts(count=60, seed=seed), shards=2)
        encode.encode_corpus(
            str(root / "tok"), corpus.CorpusSpec(paths), str(root / name), encode.EncodeConfig(val_fraction=0.1)
        )
    return root


def run_args(data, run_dir, *extra):
    sources = f'[{{path="{data / "web"}", weight=3}}, {{path="{data / "books"}", weight=1}}]'
    return [
        "--data.sources",
        sources,
        "--data.tokenizer",
        str(data / "tok"),
        "--run.dir",
        str(run_dir),
        *TINY_RUN,
        *extra,
    ]


def teardown_env(report) -> dict:
    """Runs a job's ranks through tests/teardown_worker.py, which writes what of the job each left behind."""
    return {"module": "tests.teardown_worker", "env": {"TEARDOWN_REPORT": str(report)}}


def assert_left_nothing_of_the_job(report, processes: int) -> None:
    """Once the trainer returned, on every rank: no thread of the process groups (gloo's) is left."""
    for rank in range(processes):
        with open(f"{report}.{rank}.json") as handle:
            threads = json.load(handle)
        assert [name for name in threads["after"] if "gloo" in name] == [], f"rank {rank}: {threads}"


def records(run_dir) -> list[dict]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as handle:
        return [json.loads(line) for line in handle]


def losses(run_dir) -> dict:
    return {r["step"]: r["loss"] for r in records(run_dir) if "loss" in r}


def weights(checkpoint_dir) -> dict:
    """A checkpoint's weights, assembled into one process's model, by name."""
    from model import Transformer
    from train import checkpoint

    model = Transformer(checkpoint.load_config(str(checkpoint_dir)).model)
    checkpoint.load_weights(str(checkpoint_dir), model)
    return model.state_dict()


def torchrun_command(processes: int, *arguments: str, module: str = "train") -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(processes),
        "--monitor-interval",
        "0.2",
        "-m",
        module,
        *arguments,
    ]


def launcher_env(**extra: str) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **extra}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ranks(
    processes: int, *arguments: str, module: str = "train", timeout: float = 240, env: dict | None = None
) -> list[subprocess.CompletedProcess]:
    """The ranks of a job started with torchrun's environment but without its agent, which ends the other ranks as
    soon as one exits: each rank's own exit code and output."""
    port = free_port()
    started = [
        subprocess.Popen(
            [sys.executable, "-m", module, *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={
                **launcher_env(**(env or {})),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "WORLD_SIZE": str(processes),
                "LOCAL_WORLD_SIZE": str(processes),
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
            },
        )
        for rank in range(processes)
    ]
    finished = []
    try:
        for process in started:
            stdout, stderr = process.communicate(timeout=timeout)
            finished.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    finally:
        for process in started:
            process.kill()
    return finished


def torchrun(
    processes: int, *arguments: str, module: str = "train", timeout: float = 240, env: dict | None = None
) -> subprocess.CompletedProcess:
    """A real job of `processes` ranks on gloo, as a user starts it."""
    return subprocess.run(
        torchrun_command(processes, *arguments, module=module),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=launcher_env(**(env or {})),
        cwd=REPO,
    )


def assert_same_curve(run, baseline, steps):
    """The run's losses at `steps` are the one-process baseline's (tests/conftest.py `baseline`)."""
    got, expected = losses(run), losses(baseline)
    assert set(steps) <= set(got)
    assert [got[s] for s in steps] == pytest.approx([expected[s] for s in steps], rel=1e-5, abs=1e-6)


def assert_ok(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

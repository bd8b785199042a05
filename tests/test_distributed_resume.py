"""The trainer's distributed jobs when they resume or fail: checkpoints move between layouts (tp=2 → one process,
tp=2 → dp2×tp2, dp2×tp2 → FSDP dp=2, FSDP dp=2 → one process) and continue the one-process curve; a bad layout, a
non-finite step, a killed rank and SIGTERM each end every rank the same way. Real torchrun launches on gloo."""

import json
import re
import shutil
import signal
import subprocess
import time

import psutil
import pytest
import torch

from tests.conftest import REPO
from tests.trainruns import (
    DISTRIBUTED_STEPS,
    HALF_MICRO_BATCH,
    POISONED,
    assert_left_nothing_of_the_job,
    assert_ok,
    assert_same_curve,
    launcher_env,
    losses,
    ranks,
    records,
    run_args,
    teardown_env,
    torchrun,
    torchrun_command,
    weights,
)
from train import checkpoint, cli, generate as generate_module


def test_checkpoints_reshard_between_layouts_and_continue_the_curve(train_data, baseline, tmp_path, capsys):
    tp2 = tmp_path / "tp2"
    assert_ok(
        torchrun(
            2,
            *run_args(
                train_data,
                tp2,
                *DISTRIBUTED_STEPS,
                "--parallel.tp",
                "2",
                "--parallel.sequence_parallel",
                "true",
                "--checkpoint.exit_at_step",
                "4",
            ),
        )
    )
    assert_same_curve(tp2, baseline, [1, 2, 3, 4])

    one = tmp_path / "tp2-then-one"  # tp=2 → one process
    shutil.copytree(tp2, one)
    assert cli.main(["--resume", "auto", *run_args(train_data, one, *DISTRIBUTED_STEPS)]) == 0
    assert_same_curve(one, baseline, [5, 6, 7, 8])

    # tp=2 → dp2×tp2 with FSDP on 4 processes, checkpointing in the background → FSDP dp=2 → one process
    mixed = tmp_path / "mixed"
    shutil.copytree(tp2, mixed)
    result = torchrun(
        4,
        "--resume",
        "auto",
        *run_args(
            train_data,
            mixed,
            *DISTRIBUTED_STEPS,
            *HALF_MICRO_BATCH,
            "--parallel.tp",
            "2",
            "--parallel.fsdp",
            "true",
            "--parallel.sequence_parallel",
            "true",
            "--checkpoint.exit_at_step",
            "6",
            "--checkpoint.async_save",  # the shards written in the background, over a gloo group of their own
            "true",
        ),
    )
    assert_ok(result)
    assert "dp 2 × tp 2, FSDP, sequence parallel" in result.stderr
    assert_same_curve(mixed, baseline, [5, 6])
    assert_ok(
        torchrun(
            2,
            "--resume",
            "auto",
            *run_args(
                train_data,
                mixed,
                *DISTRIBUTED_STEPS,
                *HALF_MICRO_BATCH,
                "--parallel.fsdp",
                "true",
                "--checkpoint.exit_at_step",
                "7",
            ),
        )
    )
    assert_same_curve(mixed, baseline, [7])
    assert cli.main(["--resume", "auto", *run_args(train_data, mixed, *DISTRIBUTED_STEPS)]) == 0
    assert_same_curve(mixed, baseline, [8])
    assert sorted(losses(mixed)) == list(range(1, 9))

    # every rank wrote its own shards; one process reads any of them whole
    step6 = mixed / "checkpoints" / "step-00000006"
    assert len(list((step6 / "model").glob("shard-*.safetensors"))) == 4
    assert len(list((step6 / "rng").glob("rank-*.safetensors"))) == 4
    assert checkpoint.format_version(str(step6)) == 2
    for run, step in ((tp2, 4), (mixed, 6), (mixed, 8)):
        name = f"step-{step:08d}"
        got, expected = weights(run / "checkpoints" / name), weights(baseline / "checkpoints" / name)
        assert all(torch.allclose(got[key], expected[key], atol=1e-5) for key in expected)
    capsys.readouterr()
    assert (
        generate_module.main(
            [
                "--checkpoint",
                str(step6),
                "--prompt",
                "The",
                "--max-new-tokens",
                "5",
                "--temperature",
                "0",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.startswith("The")


@pytest.mark.parametrize(
    "world_size, arguments, message",
    [
        (4, ["--parallel.tp", "3"], "parallel.tp (3) must divide the number of processes (4)"),
        (8, ["--parallel.tp", "8"], "parallel.tp (8) must divide model.n_heads (4)"),
        (4, ["--parallel.tp", "4"], "parallel.tp (4) must divide model.n_kv_heads (2)"),
        (
            2,
            [
                "--parallel.tp",
                "2",
                "--parallel.sequence_parallel",
                "true",
                "--data.seq_len",
                "31",
                "--training.batch_tokens",
                "248",
            ],
            "data.seq_len (31) must be a multiple of parallel.tp (2) with parallel.sequence_parallel",
        ),
        (
            4,
            [],
            "training.batch_tokens (256) must be a multiple of micro_batch_size × data.seq_len × dp (4 × 32 × 4 = 512)",
        ),
    ],
)
def test_a_bad_layout_fails_before_any_work_with_one_line(
    train_data, tmp_path, monkeypatch, capsys, world_size, arguments, message
):
    # the environment torchrun gives rank 0; the check comes before the process group, so nothing waits for peers
    for name, value in (("WORLD_SIZE", world_size), ("RANK", 0), ("LOCAL_RANK", 0)):
        monkeypatch.setenv(name, str(value))
    assert cli.main(run_args(train_data, tmp_path / "run", *arguments)) == 2
    assert capsys.readouterr().err == f"python -m train: error: {message}\n"
    assert not (tmp_path / "run").exists()


def test_under_torchrun_a_bad_layout_is_one_line_and_exit_code_2(train_data, tmp_path):
    result = torchrun(2, *run_args(train_data, tmp_path / "run", "--parallel.tp", "3"))
    assert result.returncode != 0
    assert result.stderr.count("python -m train: error: parallel.tp (3) must divide the number of processes (2)") == 1
    assert re.search(r"exitcode\s*:\s*2", result.stderr)


def test_when_weights_and_biases_cannot_start_every_rank_stops_alike(train_data, tmp_path):
    # online without an API key (a HOME with no netrc or W&B settings): rank 0 alone starts W&B, and its error
    # reaches every rank, so none goes on into the first step's collectives waiting for it
    arguments = run_args(train_data, tmp_path / "run", "--logging.wandb", "true", "--logging.wandb_mode", "online")
    results = ranks(2, *arguments, env={"HOME": str(tmp_path), "WANDB_API_KEY": ""}, timeout=120)
    assert [result.returncode for result in results] == [2, 2]
    assert "python -m train: error: logging.wandb: W&B could not start: No API key" in results[0].stderr
    assert results[1].stderr == ""  # a job's error is one line, rank 0's


def test_every_rank_takes_the_same_decision_on_a_non_finite_step(train_data, tmp_path):
    run = tmp_path / "poisoned"
    # without torchrun's agent, which ends the other rank as soon as one exits: each rank's own exit code
    results = ranks(
        2,
        *run_args(
            train_data,
            run,
            "--training.steps",
            "6",
            *POISONED,
            "--training.on_nonfinite",
            "skip",
            "--training.max_skipped_steps",
            "2",
            "--checkpoint.interval",
            "1",
            *HALF_MICRO_BATCH,
        ),
        **teardown_env(tmp_path / "teardown"),
    )
    assert [result.returncode for result in results] == [3, 3]
    assert_left_nothing_of_the_job(tmp_path / "teardown", 2)  # an error every rank agreed on leaves together
    assert results[0].stderr.count("3 consecutive skipped steps") == 1  # said once, by rank 0
    assert "consecutive skipped steps" not in results[1].stderr
    skipped = [r["step"] for r in records(run) if r.get("skipped")]
    assert len(skipped) == 2 and skipped == sorted(skipped)
    # the checkpoints are complete, every rank wrote them at the same steps, the skipped ones included (their
    # update was dropped, not the step); the step that stopped the run writes none
    assert checkpoint.latest(str(run)) == str(run / "checkpoints" / f"step-{skipped[-1]:08d}")


def start_job(train_data, run, processes=2):
    """A long job; returns the launcher and its rank processes once the first step is logged."""
    launcher = subprocess.Popen(
        torchrun_command(
            processes,
            *run_args(
                train_data,
                run,
                "--training.steps",
                "100000",
                "--checkpoint.interval",
                "100000",
                "--training.micro_batch_size",
                "2",
            ),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=launcher_env(),
        cwd=REPO,
    )
    deadline = time.monotonic() + 120
    while not (run / "metrics.jsonl").exists() or not (run / "metrics.jsonl").read_text().strip():
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()
        time.sleep(0.2)
    ranks = {}
    for child in psutil.Process(launcher.pid).children(recursive=True):
        rank = child.environ().get("RANK")
        if rank is not None and "train" in child.cmdline():
            ranks[int(rank)] = child
    assert sorted(ranks) == list(range(processes))
    return launcher, ranks


def test_a_killed_rank_ends_the_job_naming_it(train_data, tmp_path):
    launcher, ranks = start_job(train_data, tmp_path / "killed")
    try:
        ranks[1].send_signal(signal.SIGKILL)
        out, err = launcher.communicate(timeout=90)  # the others are ended too: no hang
    finally:
        launcher.kill()
    assert launcher.returncode != 0
    assert re.search(r"rank\s*:\s*1 \(local_rank: 1\)", err) and re.search(r"exitcode\s*:\s*-9", err)
    assert not ranks[0].is_running()


def test_sigterm_on_one_rank_stops_every_rank_at_the_same_step_with_one_checkpoint(train_data, tmp_path):
    run = tmp_path / "preempted"
    launcher, ranks = start_job(train_data, run)
    try:
        ranks[1].send_signal(signal.SIGTERM)  # rank 0 never hears of it but from rank 1
        out, err = launcher.communicate(timeout=120)
    finally:
        launcher.kill()
    assert launcher.returncode == 0, err[-3000:]
    step = int(out.split("stopped at step ")[1].split(";")[0])
    assert checkpoint.latest(str(run)) == str(run / "checkpoints" / f"step-{step:08d}")
    assert max(losses(run)) == step
    state = json.loads((run / "checkpoints" / f"step-{step:08d}" / "trainer.json").read_text())
    assert state["step"] == step and state["data"]["samples"] == step * 8  # 256 tokens a step, 32 a sample
    assert weights(run / "checkpoints" / f"step-{step:08d}")  # complete and readable

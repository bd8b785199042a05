"""The trainer as a job of several processes: real torchrun launches on gloo, float32, the tiny model. Every layout
must reproduce the loss curve of one process with the same global batch (resuming and failing:
test_distributed_resume.py)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.trainruns import (
    DISTRIBUTED_STEPS,
    HALF_MICRO_BATCH,
    assert_left_nothing_of_the_job,
    assert_ok,
    assert_same_curve,
    free_port,
    launcher_env,
    records,
    run_args,
    teardown_env,
    torchrun,
)


@pytest.fixture(scope="module")
def tensor_parallel(tmp_path_factory):
    output = tmp_path_factory.mktemp("tp") / "result.json"
    assert_ok(torchrun(2, str(output), module="tests.tensor_parallel_worker"))
    return json.loads(output.read_text())


def test_task_scores_are_the_same_whole_split_over_tp_and_dealt_over_fsdp(tensor_parallel):
    scores = tensor_parallel["task_scores"]
    whole = [value for value, _ in scores["whole"]]
    for layout in ("tensor_parallel", "fsdp"):
        assert [value for value, _ in scores[layout]] == pytest.approx(whole, abs=1e-5), layout
        assert [flag for _, flag in scores[layout]] == [flag for _, flag in scores["whole"]]


@pytest.mark.parametrize("variant", ["sequence_parallel", "replicated_norms"])
def test_tensor_parallel_gives_the_logits_losses_and_tied_weights_of_one_process(tensor_parallel, variant):
    result = tensor_parallel[variant]
    assert result["logits_max_diff"] <= 1e-5
    whole, split = zip(*result["losses"])
    assert split == pytest.approx(whole, rel=1e-5) and len(whole) == 4 and whole[-1] != whole[0]
    norms_whole, norms_split = zip(*result["grad_norms"])
    assert norms_split == pytest.approx(norms_whole, rel=1e-5) and min(norms_whole) > 0.5  # clipping at 0.5 acts
    assert result["tied_before"] and result["tied_after"]  # the plan re-ties embedding and head
    assert result["weights_max_diff"] < 1e-4


def test_fsdp_bf16_keeps_the_rotary_table_and_gradient_reduction_in_float32(tensor_parallel):
    result = tensor_parallel["mixed_precision"]
    assert result["rotary_dtypes"] == ["torch.float32"] and result["gradient_dtype"] == "torch.float32"
    assert result["bf16_loss"] == pytest.approx(result["float32_loss"], abs=2e-2)


@pytest.mark.parametrize("sharding", [[], ["--parallel.fsdp", "true"]], ids=["replicas", "fsdp"])
def test_data_parallel_with_accumulation_gives_the_losses_of_one_process(train_data, baseline, tmp_path, sharding):
    run, report = tmp_path / "dp2", tmp_path / "teardown"
    result = torchrun(
        2,
        *run_args(train_data, run, *DISTRIBUTED_STEPS, *HALF_MICRO_BATCH, *sharding, "--checkpoint.exit_at_step", "4"),
        **teardown_env(report),
    )
    assert_ok(result)
    assert_left_nothing_of_the_job(report, 2)  # the process groups' threads were joined before the exit
    assert_same_curve(run, baseline, [1, 2, 3, 4])
    by_step = {r["step"]: r for r in records(run) if "loss" in r}
    expected = {r["step"]: r for r in records(baseline) if "loss" in r}
    assert [by_step[s]["grad_norm"] for s in (1, 2, 3, 4)] == pytest.approx(
        [expected[s]["grad_norm"] for s in (1, 2, 3, 4)], rel=1e-5
    )
    assert [r["step"] for r in records(run) if "loss" in r] == [1, 2, 3, 4]  # rank 0 alone writes metrics
    assert result.stdout.count("stopped at step 4") == 1  # and prints
    assert "2 micro-batches of 2 × 32 per step on each of 2 data-parallel ranks" in result.stderr


def test_two_launchers_meet_through_a_c10d_rendezvous_as_two_nodes(train_data, baseline, tmp_path):
    # what docs/distributed.md runs on each node, here twice on one machine
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "2",
        "--nproc_per_node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{port}",
        "--rdzv-id",
        "two-nodes",
        "-m",
        "train",
        *run_args(
            train_data, tmp_path / "run", *DISTRIBUTED_STEPS, *HALF_MICRO_BATCH, "--checkpoint.exit_at_step", "2"
        ),
    ]
    nodes = [
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=launcher_env(), cwd=REPO
        )
        for _ in range(2)
    ]
    try:
        outputs = [node.communicate(timeout=180) for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    assert [node.returncode for node in nodes] == [0, 0], outputs
    assert sum("2 processes: dp 2 × tp 1" in err for _, err in outputs) == 1
    assert_same_curve(tmp_path / "run", baseline, [1, 2])


def test_compiled_tensor_parallel_keeps_the_curve(train_data, baseline, tmp_path):
    # on CPU, compiled blocks under tensor parallelism lose the embedding's gradient (torch 2.13): the whole
    # model is compiled instead, and the curve must be the one of one process
    run = tmp_path / "compiled"
    result = torchrun(
        2,
        *run_args(
            train_data,
            run,
            *DISTRIBUTED_STEPS,
            "--parallel.tp",
            "2",
            "--parallel.sequence_parallel",
            "true",
            "--training.compile",
            "true",
            "--checkpoint.exit_at_step",
            "3",
        ),
        **teardown_env(tmp_path / "teardown"),
    )
    assert_ok(result)
    assert_left_nothing_of_the_job(tmp_path / "teardown", 2)  # DTensors and the compiled graphs hold the mesh
    assert "torch.compile: the whole model, not each block" in result.stderr
    assert_same_curve(run, baseline, [1, 2, 3])

"""The GPU path, where a GPU is (marked `cuda`, skipped elsewhere): ten steps of the GPT-2-small shape with
torch.compile and bf16 autocast, a resume that continues the run exactly, generation and export from the run.
On the GPU machine: `python -m pytest tests/test_cuda.py -q` (about two minutes, most of it compiling)."""

import json
import shutil

import pytest
import torch

from tests.conftest import REPO
from tests.trainruns import losses, records
from train import checkpoint, cli, export, generate as generate_module

pytestmark = pytest.mark.cuda

# configs/gpt2-small.toml's shape (12 × 768, 12 heads, tied head) on the tests' small corpus: a shorter context
# and batch, so that the test's bins hold several windows of each source.
GPT2_SMALL = [
    "--config",
    str(REPO / "configs" / "gpt2-small.toml"),
    "--data.seq_len",
    "256",
    "--model.max_seq_len",
    "256",
    "--training.micro_batch_size",
    "8",
    "--training.batch_tokens",
    "4096",
    "--training.steps",
    "10",
    "--training.device",
    "cuda",
    "--training.dtype",
    "bfloat16",
    "--training.compile",
    "true",
    "--schedule.warmup_steps",
    "2",
    "--checkpoint.interval",
    "5",
    "--logging.interval",
    "1",
    "--logging.eval_interval",
    "5",
    "--logging.eval_batches",
    "2",
    "--logging.sample_tokens",
    "8",
    "--logging.tensorboard",
    "false",
]


def gpt2_small(data, run_dir, *extra):
    sources = f'[{{path="{data / "web"}", weight=3}}, {{path="{data / "books"}", weight=1}}]'
    return [*GPT2_SMALL, "--data.sources", sources, "--data.tokenizer", str(data / "tok"), "--run.dir", str(run_dir),
            *extra]  # fmt: skip


def test_ten_compiled_bf16_steps_resume_generate_and_export(train_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(gpt2_small(train_data, run)) == 0
    whole = losses(run)
    assert sorted(whole) == list(range(1, 11)) and whole[10] < whole[1]
    lines = [r for r in records(run) if "loss" in r]
    assert all(r["peak_memory_gb"] > 0 and 0 < r["mfu"] < 1 for r in lines)
    assert any("sample" in r for r in records(run)) and any("val.loss" in r for r in records(run))

    # resumed from step 5 in a copy of the run: the same batches and weights, so the first resumed step's loss
    # (a forward pass over identical weights) is bit for bit the uninterrupted run's
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    assert cli.main(["--resume", str(copy / "checkpoints" / "step-00000005"), *gpt2_small(train_data, copy)]) == 0
    resumed = losses(copy)
    assert sorted(resumed) == list(range(1, 11)) and resumed[6] == whole[6]
    # later steps also depend on the backward pass, whose CUDA kernels may add in a different order
    assert [resumed[s] for s in range(6, 11)] == pytest.approx([whole[s] for s in range(6, 11)], rel=1e-3)
    state = json.load(open(copy / "checkpoints" / "step-00000010" / "trainer.json"))
    assert state["data"] == json.load(open(run / "checkpoints" / "step-00000010" / "trainer.json"))["data"]

    capsys.readouterr()
    arguments = ["--checkpoint", str(run), "--prompt", "Die kleine Stadt", "--max-new-tokens", "16", "--seed", "3"]
    assert generate_module.main([*arguments, "--device", "cuda"]) == 0
    first = capsys.readouterr().out
    assert generate_module.main([*arguments, "--device", "cuda"]) == 0
    assert capsys.readouterr().out == first and first.startswith("Die kleine Stadt")

    hf = tmp_path / "hf"
    assert export.main(["--checkpoint", str(run), "--output", str(hf), "--dtype", "bfloat16"]) == 0
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf, torch_dtype=torch.bfloat16).cuda()
    ours, _ = generate_module.load_run(str(run))
    batch = torch.tensor([[1, 5, 9, 200, 37, 3]], device="cuda")
    with torch.no_grad():
        theirs = model(batch).logits.float()
        mine = ours.to("cuda")(batch).float()
    assert (theirs.argmax(-1) == mine.argmax(-1)).float().mean() > 0.8  # bf16 export of a float32 run
    assert checkpoint.verify(str(run / "checkpoints" / "step-00000010"))

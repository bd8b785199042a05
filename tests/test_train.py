"""The trainer: configuration, the bin loader and its mixture, resumption, checkpoints, non-finite losses,
generation from a run. Runs on CPU in float32 through the real command lines."""

import json
import math
import os
import shutil

import numpy as np
import pytest
import torch

from pipeline.settings import UsageError, parse_overrides
from tests.conftest import REPO
from tests.trainruns import ONE_PROCESS_SHARD, POISONED, losses, run_args, weights
from tokenizer.bins import BinReader
from train import checkpoint, cli, config as config_module, generate as generate_module
from train.data import MixtureLoader
from train.optim import build_optimizer, lr_factor

CONFIGS = REPO / "configs"


def test_the_loader_is_deterministic_mixes_exactly_and_resumes_at_its_position(train_data):
    readers = [BinReader(str(train_data / "web")), BinReader(str(train_data / "books"))]

    def loader(seed=5, batch=4, rank=0, world=1):
        return MixtureLoader(readers, [3, 1], ["web", "books"], 32, batch, seed, rank, world)

    first, second = loader(), loader()
    batches = [first.next_batch() for _ in range(10)]
    assert all(torch.equal(a, second.next_batch()) for a in batches)
    assert batches[0].shape == (4, 33) and batches[0].dtype == torch.int64
    assert first.state_dict() == {"samples": 40, "cursors": {"web": 30, "books": 10}}  # exactly 3:1
    assert not torch.equal(loader(seed=6).next_batch(), batches[0])

    resumed = loader()
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))  # as a checkpoint stores it
    assert all(torch.equal(resumed.next_batch(), first.next_batch()) for _ in range(5))

    # an epoch of a source visits each of its windows once, every window is the stream's tokens there
    web = first.sources[0]
    seen = [tuple(web.window(c).tolist()) for c in range(web.windows)]
    every = {tuple(readers[0].tokens(w * 32, 33).tolist()) for w in range(web.windows)}
    assert sorted(web._order.tolist()) == list(range(web.windows)) and set(seen) == every
    assert [tuple(web.window(c).tolist()) for c in range(web.windows, 2 * web.windows)] != seen  # reshuffled

    # two ranks of a two-process run split exactly what one process with twice the micro-batch reads
    whole = loader(batch=8).next_batch()
    halves = [loader(rank=r, world=2).next_batch() for r in (0, 1)]
    assert torch.equal(torch.cat(halves), whole)


def test_schedules_and_weight_decay_groups():
    cosine = config_module.ScheduleConfig(kind="cosine", warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(5, 100, cosine) == pytest.approx(0.5)
    assert lr_factor(10, 100, cosine) == pytest.approx(1.0)
    assert lr_factor(55, 100, cosine) == pytest.approx(0.55)
    assert lr_factor(100, 100, cosine) == pytest.approx(0.1)
    wsd = config_module.ScheduleConfig(kind="wsd", warmup_steps=10, min_lr_ratio=0.0, decay_fraction=0.2)
    assert [lr_factor(s, 100, wsd) for s in (50, 80, 90, 100)] == pytest.approx([1.0, 1.0, 0.5, 0.0])

    from model import ModelConfig, Transformer

    model = Transformer(ModelConfig(vocab_size=64, dim=16, n_layers=1, n_heads=2, multiple_of=16))
    optimizer = build_optimizer(model, config_module.OptimConfig(weight_decay=0.1), torch.device("cpu"))
    decayed, plain = optimizer.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert sorted(names[id(p)] for p in plain["params"]) == [
        "layers.0.attention_norm.weight",
        "layers.0.ffn_norm.weight",
        "norm.weight",
        "tok_embeddings.weight",
    ]
    assert len(decayed["params"]) == 7  # wq, wk, wv, wo, w1, w2, w3


def test_configuration_errors_name_the_setting(train_data, tmp_path, capsys):
    with pytest.raises(UsageError, match=r"unknown setting optim\.lrr \(did you mean optim\.lr\?\)"):
        config_module.load(None, parse_overrides(["--optim.lrr", "1e-3"]))
    with pytest.raises(UsageError, match="training.steps: expected int"):
        config_module.load(None, parse_overrides(["--training.steps=many"]))
    loaded = config_module.load(
        str(CONFIGS / "demo.toml"),
        parse_overrides(
            [
                "--optim.betas",
                "[0.8, 0.9]",
                "--training.compile",
                "true",
                "--training.batch_tokens",
                "16384",
                "--data.sources",
                '[{path="bins/web/"}]',
            ]
        ),
    )
    assert loaded.optim.betas == [0.8, 0.9] and loaded.training.compile is True
    assert loaded.training.batch_tokens == 16384 and loaded.data.sources[0].name == "web"
    assert loaded.model.n_kv_heads == 4  # from the preset file

    assert cli.main(run_args(train_data, tmp_path / "r", "--training.batch_tokens", "100")) == 2
    assert "multiple of micro_batch_size" in capsys.readouterr().err
    assert cli.main(run_args(train_data, tmp_path / "r", "--data.sources", '[{path="nowhere"}]')) == 2
    assert "nowhere has no meta.json" in capsys.readouterr().err
    from model import Transformer

    expected = {"demo.toml": 3.5, "gpt2-small.toml": 124, "350m.toml": 360, "1b.toml": 1076}  # millions, 50,304 ids
    for preset, millions in expected.items():
        model_config = config_module.load(str(CONFIGS / preset)).model
        model_config.vocab_size = 2048 if preset == "demo.toml" else 50304
        with torch.device("meta"):
            assert Transformer(model_config).num_params() / 1e6 == pytest.approx(millions, rel=0.02)
    # every training preset is checked; configs/curate-*.toml are curation recipes (tests/test_library.py)
    assert sorted(p.name for p in CONFIGS.iterdir() if not p.name.startswith("curate-")) == sorted(expected)


def test_an_interrupted_and_resumed_run_equals_an_uninterrupted_one(train_data, tmp_path, capsys):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    common = ["--training.steps", "8", "--checkpoint.interval", "2", "--checkpoint.keep", "2"]
    assert cli.main(run_args(train_data, whole, *common, "--peak-flops", "1e11")) == 0
    with open(whole / "metrics.jsonl") as handle:
        record = json.loads(handle.readline())
    from model import Transformer

    flops = Transformer(config_module.load(str(whole / "config.toml")).model).flops_per_token(32)
    assert record["mfu"] == pytest.approx(record["tokens_per_second"] * flops / 1e11)
    assert cli.main(run_args(train_data, parts, *common, "--checkpoint.exit_at_step", "3")) == 0
    assert "stopped at step 3" in capsys.readouterr().out
    assert sorted(losses(parts)) == [1, 2, 3]
    assert cli.main(run_args(train_data, parts, *common)) == 2  # a run directory with checkpoints needs --resume
    assert "--resume auto" in capsys.readouterr().err
    assert cli.main(["--resume", "auto", *run_args(train_data, parts, *common)]) == 0

    expected, resumed = losses(whole), losses(parts)
    assert sorted(resumed) == list(range(1, 9))
    assert resumed == expected  # bit for bit: same batches, same optimiser state, same schedule
    assert expected[8] < expected[1]
    names = sorted(os.listdir(parts / "checkpoints"))
    assert names == ["step-00000006", "step-00000008"]  # keep = 2
    final_whole = weights(whole / "checkpoints/step-00000008")
    final_parts = weights(parts / "checkpoints/step-00000008")
    assert all(torch.equal(final_whole[k], final_parts[k]) for k in final_whole)
    state = json.load(open(parts / "checkpoints/step-00000008/trainer.json"))
    assert state["step"] == 8 and state["tokens"] == 8 * 256 and sum(state["data"]["cursors"].values()) == 64
    saved = config_module.load(str(parts / "config.toml"))
    assert saved.model.vocab_size == 640 and saved.training.steps == 8 and saved.model.dim == 32
    assert (parts / "report.html").exists() and (parts / "report" / "loss.png").stat().st_size > 1000
    assert os.path.exists(parts / "tokenizer" / "tokenizer.json")


def write_format_1(source, target):
    """A checkpoint as the single-process trainer wrote it before format 2 (docs/formats.md), holding the state of
    the checkpoint `source`."""
    from safetensors.torch import save_model

    from model import Transformer
    from train import parallel

    config = checkpoint.load_config(str(source))
    model = Transformer(config.model)
    optimizer = build_optimizer(model, config.optim, torch.device("cpu"))
    checkpoint.load_weights(str(source), model)
    checkpoint.load_training_state(str(source), model, optimizer, parallel.Layout(torch.device("cpu")))
    target.mkdir()
    save_model(model, str(target / "model.safetensors"))
    torch.save(optimizer.state_dict(), target / "optimizer.pt")
    torch.save({"cpu": torch.get_rng_state()}, target / "rng.pt")
    for name in ("trainer.json", "config.toml"):
        shutil.copyfile(source / name, target / name)
    files = {
        path.name: {"bytes": path.stat().st_size, "xxh3_128": checkpoint._file_hash(str(path))}
        for path in sorted(target.iterdir())
    }
    step = json.loads((source / "trainer.json").read_text())["step"]
    (target / "manifest.json").write_text(json.dumps({"version": 1, "step": step, "files": files}))


def test_a_format_1_checkpoint_resumes_and_a_torn_metrics_line_is_skipped(train_data, tmp_path, caplog):
    whole, old = tmp_path / "whole", tmp_path / "old"
    common = ["--training.steps", "6", "--checkpoint.interval", "3"]
    assert cli.main(run_args(train_data, whole, *common)) == 0
    assert cli.main(run_args(train_data, old, *common, "--checkpoint.exit_at_step", "3")) == 0
    step3 = old / "checkpoints" / "step-00000003"
    write_format_1(step3, tmp_path / "format-1")
    shutil.rmtree(step3)
    (tmp_path / "format-1").rename(step3)
    assert checkpoint.format_version(str(step3)) == 1 and sorted(os.listdir(step3)) == [
        "config.toml",
        "manifest.json",
        "model.safetensors",
        "optimizer.pt",
        "rng.pt",
        "trainer.json",
    ]
    with open(old / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 4, "loss": 6.4')  # a crash in the middle of a write
    assert cli.main(["--resume", "auto", *run_args(train_data, old, *common)]) == 0
    assert "line 4 is not complete JSON" in caplog.text
    assert losses(old) == losses(whole)  # bit for bit, through the format-1 optimiser state
    assert checkpoint.format_version(str(old / "checkpoints" / "step-00000006")) == 2


def test_resume_auto_never_picks_a_corrupt_or_half_written_checkpoint(train_data, tmp_path, capsys, caplog):
    caplog.set_level("INFO")
    run = tmp_path / "run"
    assert (
        cli.main(
            run_args(train_data, run, "--training.steps", "6", "--checkpoint.interval", "2", "--checkpoint.keep", "3")
        )
        == 0
    )
    root = run / "checkpoints"
    assert checkpoint.latest(str(run)) == str(root / "step-00000006")

    shard = root / "step-00000006" / "model" / ONE_PROCESS_SHARD
    raw = bytearray(shard.read_bytes())
    raw[-5] ^= 0xFF  # same size, one flipped byte
    shard.write_bytes(bytes(raw))
    half = root / "step-00000010"  # a directory that never got its manifest
    shutil.copytree(root / "step-00000004", half)
    os.remove(half / "manifest.json")
    (root / ".step-00000012.abc").mkdir()  # a staging directory of a run killed mid-write
    optimizer = root / "step-00000004" / "optimizer" / ONE_PROCESS_SHARD
    optimizer.write_bytes(optimizer.read_bytes()[:-100])  # truncated
    assert checkpoint.latest(str(run)) == str(root / "step-00000002")
    assert "step-00000006: incomplete or corrupt" in caplog.text

    assert (
        cli.main(
            [
                "--resume",
                "auto",
                *run_args(
                    train_data, run, "--training.steps", "6", "--checkpoint.interval", "2", "--checkpoint.keep", "3"
                ),
            ]
        )
        == 0
    )
    assert "resuming from" in caplog.text and "step-00000002 (step 2)" in caplog.text
    assert sorted(losses(run)) == list(range(1, 7))
    assert checkpoint.latest(str(run)) == str(root / "step-00000006")  # rewritten; the manifest-less one ignored
    assert not (root / ".step-00000012.abc").exists()
    with pytest.raises(checkpoint.CheckpointError, match="no complete checkpoint"):
        checkpoint.resolve(str(tmp_path / "empty"))


def test_a_non_finite_loss_stops_the_run_naming_the_step(train_data, tmp_path, capsys):
    run = tmp_path / "nan"
    poisoned = ["--training.steps", "6", "--checkpoint.interval", "1", *POISONED]
    assert cli.main(run_args(train_data, run, *poisoned)) == 3
    message = capsys.readouterr().err
    step = int(message.split("step ")[1].split(":")[0])
    assert 1 < step <= 6 and "not finite" in message and ("nan" in message or "inf" in message)
    kept = sorted(os.listdir(run / "checkpoints"))
    assert kept and kept[-1] == f"step-{step - 1:08d}"  # nothing written for the poisoned step
    for name in kept:
        assert all(torch.isfinite(t).all() for t in weights(run / "checkpoints" / name).values())

    skipping = tmp_path / "skip"
    assert (
        cli.main(
            run_args(
                train_data, skipping, *poisoned, "--training.on_nonfinite", "skip", "--training.max_skipped_steps", "2"
            )
        )
        == 3
    )
    assert "3 consecutive skipped steps" in capsys.readouterr().err
    with open(skipping / "metrics.jsonl") as handle:
        assert sum(1 for r in map(json.loads, handle) if r.get("skipped")) == 2


def test_generation_from_a_run_uses_its_tokenizer_and_is_repeatable(train_data, tmp_path, capsys):
    run = tmp_path / "gen"
    assert (
        cli.main(
            run_args(
                train_data, run, "--training.steps", "3", "--checkpoint.interval", "3", "--logging.tensorboard", "true"
            )
        )
        == 0
    )
    capsys.readouterr()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3]
    assert [round(e.value, 5) for e in events.Scalars("loss")] == [round(v, 5) for v in losses(run).values()]
    arguments = [
        "--checkpoint",
        str(run),
        "--prompt",
        "Die kleine Stadt",
        "--max-new-tokens",
        "12",
        "--temperature",
        "1.0",
        "--seed",
        "4",
    ]
    assert generate_module.main(arguments) == 0
    first = capsys.readouterr().out
    assert generate_module.main(arguments) == 0
    assert capsys.readouterr().out == first and first.startswith("Die kleine Stadt")
    assert generate_module.main(["--checkpoint", str(tmp_path / "none")]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err

    model, encoder = generate_module.load_run(str(run))
    ids = encoder.encode(["Die kleine Stadt"])[0]
    new = generate_module.generate(model, [encoder.end_of_text, *ids], 12, temperature=0.0)
    with torch.no_grad():
        logits = model(torch.tensor([[encoder.end_of_text, *ids]]))[0, -1]
    assert new[0] == int(logits.argmax()) and not math.isnan(float(logits.sum()))
    assert np.all(np.asarray(new) < model.config.vocab_size)


def test_sigterm_stops_after_the_step_with_a_checkpoint(train_data, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "preempted"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "train",
            *run_args(train_data, run, "--training.steps", "100000", "--checkpoint.interval", "100000"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / "metrics.jsonl").exists() or not (run / "metrics.jsonl").read_text().strip():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, err
    step = int(out.split("stopped at step ")[1].split(";")[0])
    assert checkpoint.latest(str(run)) == str(run / "checkpoints" / f"step-{step:08d}")
    assert max(losses(run)) == step

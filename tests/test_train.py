"""The trainer: configuration, the bin loader and its mixture, resumption, checkpoints, non-finite losses,
generation from a run. Runs on CPU in float32 through the real command lines."""

import json
import logging
import math
import os
import shutil
import sys

import numpy as np
import pytest
import torch

from pipeline.common.settings import UsageError, parse_overrides
from tests.conftest import REPO
from tests.trainruns import ONE_PROCESS_SHARD, POISONED, losses, records, run_args, weights
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
    state = first.state_dict()
    assert (state["samples"], state["cursors"]) == (40, {"web": 30, "books": 10})  # exactly 3:1
    assert not torch.equal(loader(seed=6).next_batch(), batches[0])

    resumed, older = loader(), loader()
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))  # as a checkpoint stores it
    older.load_state_dict({"samples": 40, "cursors": {"web": 30, "books": 10}})  # as checkpoints before shares did
    assert all(torch.equal(resumed.next_batch(), first.next_batch()) for _ in range(5))
    for _ in range(5):
        older.next_batch()
    assert older.state_dict() == first.state_dict()

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


def test_new_mixture_weights_on_resume_apply_from_the_first_sample(train_data):
    readers = [BinReader(str(train_data / "web")), BinReader(str(train_data / "books"))]

    def loader(weights):
        return MixtureLoader(readers, weights, ["web", "books"], 32, 4, 5)

    even = loader([1, 1])
    for _ in range(32):  # 128 samples, 64 of each
        even.next_batch()
    annealed = loader([9, 1])  # resumed with a 90/10 mix
    annealed.load_state_dict(json.loads(json.dumps(even.state_dict())))
    start, states = annealed.cursors.copy(), []
    for batch in range(1, 33):
        annealed.next_batch()
        states.append(json.loads(json.dumps(annealed.state_dict())))
        drawn = annealed.cursors - start
        assert np.all(np.abs(drawn - annealed.shares * 4 * batch) < 1), (batch, drawn)  # the new shares at every step
    assert (annealed.cursors - start).tolist() == [115, 13]  # of the next 128 samples: 90/10 (the old rule gave 128/0)
    assert states[-1]["origin"] == {"samples": 128, "cursors": {"web": 64, "books": 64}}

    # a later resume with the same weights continues the same sequence
    again = loader([9, 1])
    again.load_state_dict(states[15])
    replay = loader([9, 1])
    replay.load_state_dict(json.loads(json.dumps(even.state_dict())))
    for _ in range(16):
        replay.next_batch()
    assert all(torch.equal(again.next_batch(), replay.next_batch()) for _ in range(16))
    assert again.state_dict() == states[-1]


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

    # millions of parameters, with 50,304 ids (the CPU presets: their tools' default vocabularies)
    expected = {"demo.toml": 3.5, "ablate.toml": 1.38, "gpt2-small.toml": 124, "350m.toml": 360, "1b.toml": 1076}
    vocabularies = {"demo.toml": 2048, "ablate.toml": 4096}
    for preset, millions in expected.items():
        model_config = config_module.load(str(CONFIGS / preset)).model
        model_config.vocab_size = vocabularies.get(preset, 50304)
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
    assert "line 5 is not complete JSON" in caplog.text  # after the loss lines and the checkpoint line of steps 1-3
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


def test_an_explicit_resume_sets_the_later_checkpoints_aside(train_data, tmp_path, capsys):
    whole, run = tmp_path / "whole", tmp_path / "run"
    common = ["--training.steps", "12", "--checkpoint.interval", "4", "--checkpoint.keep", "2"]
    assert cli.main(run_args(train_data, whole, *common)) == 0
    assert cli.main(run_args(train_data, run, *common, "--checkpoint.keep", "3")) == 0
    older = run / "checkpoints" / "step-00000004"
    # back to step 4 (to try another setting, say): stop at 6, then continue as a scheduler would, with auto
    assert (
        cli.main(["--resume", str(older), *run_args(train_data, run, *common, "--checkpoint.exit_at_step", "6")]) == 0
    )
    assert "stopped at step 6" in capsys.readouterr().out
    assert checkpoint.latest(str(run)) == str(run / "checkpoints" / "step-00000006")  # not the abandoned step 12
    assert sorted(os.listdir(run / "checkpoints")) == ["step-00000004", "step-00000006"]
    (aside,) = (run / "abandoned").iterdir()
    assert sorted(os.listdir(aside)) == ["metrics.jsonl", "step-00000008", "step-00000012"]
    assert max(json.loads(line)["step"] for line in open(aside / "metrics.jsonl")) == 12  # the abandoned history
    assert cli.main(["--resume", "auto", *run_args(train_data, run, *common)]) == 0
    assert losses(run) == losses(whole)  # steps 7..12 continue the new history, bit for bit
    assert sorted(os.listdir(run / "checkpoints")) == ["step-00000008", "step-00000012"]  # keep = 2, new ones only


def test_tokens_per_second_counts_only_training_time_whatever_the_intervals(train_data, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from train import metrics as metrics_module

    ticks = iter(range(10**6))  # a clock that advances one second each time it is read: every step takes 1 s
    monkeypatch.setattr(metrics_module, "time", SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    run = tmp_path / "rates"
    intervals = ["--logging.interval", "3", "--logging.eval_interval", "4", "--checkpoint.interval", "5"]
    assert cli.main(run_args(train_data, run, "--training.steps", "13", *intervals, "--peak-flops", "1e11")) == 0
    lines = [r for r in map(json.loads, open(run / "metrics.jsonl")) if "tokens_per_second" in r]
    assert [r["step"] for r in lines] == [3, 6, 9, 12, 13]
    assert {r["tokens_per_second"] for r in lines} == {256.0}  # 256 tokens a step, one second a step
    assert len({r["mfu"] for r in lines}) == 1


def test_intervals_of_zero_mean_only_at_the_end_and_negatives_are_refused(train_data, tmp_path, capsys):
    run = tmp_path / "zero"
    assert (
        cli.main(
            run_args(train_data, run, "--training.steps", "5", "--checkpoint.interval", "0", "--logging.interval", "0")
        )
        == 0
    )
    assert sorted(os.listdir(run / "checkpoints")) == ["step-00000005"]
    assert list(losses(run)) == [5]
    for setting in ("checkpoint.interval", "logging.interval", "checkpoint.exit_after_minutes"):
        assert cli.main(run_args(train_data, tmp_path / "negative", f"--{setting}", "-1")) == 2
        assert f"{setting} (-1" in capsys.readouterr().err


def test_a_skipped_step_still_checkpoints_and_stops_when_due(train_data, tmp_path, capsys):
    run = tmp_path / "skips"
    skipping = [*POISONED, "--training.on_nonfinite", "skip", "--training.max_skipped_steps", "100"]
    common = ["--training.steps", "5", "--checkpoint.interval", "100", *skipping]
    assert cli.main(run_args(train_data, run, *common, "--checkpoint.exit_at_step", "3")) == 0
    assert "stopped at step 3" in capsys.readouterr().out
    records = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert [r["step"] for r in records if r.get("skipped")] == [2, 3]  # the exit step was itself skipped
    assert sorted(os.listdir(run / "checkpoints")) == ["step-00000003"]
    state = json.load(open(run / "checkpoints/step-00000003/trainer.json"))
    assert (state["step"], state["skipped_steps"]) == (3, 2)
    assert cli.main(["--resume", "auto", *run_args(train_data, run, *common)]) == 0
    assert checkpoint.latest(str(run)) == str(run / "checkpoints" / "step-00000005")  # the last step, skipped too
    assert json.load(open(run / "checkpoints/step-00000005/trainer.json"))["skipped_steps"] == 4


def test_a_wall_clock_budget_stops_with_a_checkpoint_before_the_deadline(train_data, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="train")
    run = tmp_path / "budget"
    common = ["--training.steps", "4", "--checkpoint.interval", "100"]
    # 6 ms: the first step alone overruns it, so the run stops after it, as a job whose slot ends would
    assert cli.main(run_args(train_data, run, *common, "--checkpoint.exit_after_minutes", "1e-4")) == 0
    assert "stopped at step 1" in capsys.readouterr().out
    assert "checkpoint.exit_after_minutes" in caplog.text
    assert sorted(os.listdir(run / "checkpoints")) == ["step-00000001"]
    assert cli.main(["--resume", "auto", *run_args(train_data, run, *common)]) == 0
    assert sorted(losses(run)) == [1, 2, 3, 4]


def test_every_rank_hashes_its_own_share_of_a_checkpoint(tmp_path):
    for index in range(7):
        (tmp_path / f"dir-{index % 2}").mkdir(exist_ok=True)
        (tmp_path / f"dir-{index % 2}" / f"file-{index}").write_bytes(bytes([index]) * (index + 1))
    shares = [checkpoint._record_files(str(tmp_path), rank, 3) for rank in range(3)]
    names = [name for share in shares for name in share]
    assert sorted(names) == sorted(f"dir-{i % 2}/file-{i}" for i in range(7)) and len(set(names)) == 7
    assert [len(share) for share in shares] == [3, 2, 2]
    assert shares[0] | shares[1] | shares[2] == checkpoint._record_files(str(tmp_path), 0, 1)
    assert checkpoint._record_files(str(tmp_path), 0, 1)["dir-1/file-5"]["bytes"] == 6


def test_async_checkpoints_resume_bit_exactly(train_data, tmp_path, capsys):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    common = ["--training.steps", "6", "--checkpoint.interval", "2", "--checkpoint.keep", "3"]
    background = ["--checkpoint.async_save", "true"]
    assert cli.main(run_args(train_data, whole, *common)) == 0
    assert cli.main(run_args(train_data, parts, *common, *background, "--checkpoint.exit_at_step", "3")) == 0
    assert "stopped at step 3" in capsys.readouterr().out
    assert sorted(os.listdir(parts / "checkpoints")) == ["step-00000002", "step-00000003"]  # both committed
    assert all(checkpoint.verify(str(path)) for path in (parts / "checkpoints").iterdir())
    assert cli.main(["--resume", "auto", *run_args(train_data, parts, *common, *background)]) == 0
    assert losses(parts) == losses(whole)  # steps 4-6 from the background-written step 3, bit for bit
    final_whole = weights(whole / "checkpoints/step-00000006")
    final_parts = weights(parts / "checkpoints/step-00000006")
    assert all(torch.equal(final_whole[k], final_parts[k]) for k in final_whole)
    stalls = [r for r in records(parts) if "checkpoint_stall_seconds" in r]
    assert [r["step"] for r in stalls] == [2, 3, 4, 6] and all(r["checkpoint_stall_seconds"] > 0 for r in stalls)


def test_a_background_checkpoint_holds_the_state_of_its_step_and_commits_after_the_write(tmp_path, monkeypatch):
    import threading

    from train import parallel

    model = tiny_model()
    optimizer = build_optimizer(model, config_module.OptimConfig(), torch.device("cpu"))
    model(torch.zeros(1, 8, dtype=torch.long)).sum().backward()
    optimizer.step()
    expected = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    release, hashing = threading.Event(), threading.Event()
    record_files = checkpoint._record_files

    def held_back(*args):
        hashing.set()
        assert release.wait(60)
        return record_files(*args)

    monkeypatch.setattr(checkpoint, "_record_files", held_back)
    writer = checkpoint.Checkpointer(
        str(tmp_path), keep=2, layout=parallel.Layout(torch.device("cpu")), background=True
    )
    config = config_module.Config()
    final = writer.save(7, model, optimizer, {"step": 7}, config)
    assert hashing.wait(60)  # the shards are written and the loop has its model back, but nothing is committed
    assert checkpoint.latest(str(tmp_path)) is None and not os.path.exists(final)
    with torch.no_grad():  # the next steps change the weights while the checkpoint is being written
        for parameter in model.parameters():
            parameter.add_(1.0)
    release.set()
    writer.close()
    assert checkpoint.latest(str(tmp_path)) == final and checkpoint.verify(final)
    reloaded = tiny_model()
    checkpoint.load_weights(final, reloaded)
    assert all(torch.equal(reloaded.state_dict()[name], expected[name]) for name in expected)
    assert json.load(open(os.path.join(final, "trainer.json"))) == {"step": 7}


def test_a_failed_background_write_is_raised_and_leaves_no_checkpoint(tmp_path, monkeypatch, caplog):
    from train import parallel

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "_record_files", disk_full)
    model = tiny_model()
    optimizer = build_optimizer(model, config_module.OptimConfig(), torch.device("cpu"))
    writer = checkpoint.Checkpointer(
        str(tmp_path), keep=2, layout=parallel.Layout(torch.device("cpu")), background=True
    )
    writer.save(1, model, optimizer, {"step": 1}, config_module.Config())
    with pytest.raises(OSError, match="No space left"):
        writer.close()
    assert os.listdir(tmp_path / "checkpoints") == []  # the staging directory went too
    # a run already failing for another reason: the write's failure is logged, and the run's own error raised
    writer = checkpoint.Checkpointer(
        str(tmp_path), keep=2, layout=parallel.Layout(torch.device("cpu")), background=True
    )
    writer.save(2, model, optimizer, {"step": 2}, config_module.Config())
    writer.close(quiet=True)
    assert "written in the background failed too" in caplog.text and "No space left" in caplog.text


def wandb_history(run_dir) -> tuple[str, dict[int, dict], int | None, str]:
    """The W&B run id, the logged values by step, the exit code and the project, read back from an offline run's transaction
    log: W&B's record format (LevelDB's log: 32 KiB blocks of CRC32, length, type chunks) holding protobuf
    Records."""
    import struct

    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    data, position, chunks, history, exit_code, project = path.read_bytes(), 7, [], {}, None, ""
    while position + 7 <= len(data):
        left = 32768 - position % 32768
        _, length, kind = struct.unpack("<IHB", data[position : position + 7]) if left >= 7 else (0, 0, 0)
        if length == 0 and kind == 0:  # a block's padding
            position += left
            continue
        chunks.append(data[position + 7 : position + 7 + length])
        position += 7 + length
        if kind in (1, 4):  # a whole record, or the last chunk of one
            record = wandb_internal_pb2.Record.FromString(b"".join(chunks))
            chunks = []
            if record.WhichOneof("record_type") == "history":
                values = {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item
                }
                step = values.pop("_step", None) or record.history.step.num
                history.setdefault(step, {}).update(values)
            elif record.WhichOneof("record_type") == "exit":
                exit_code = record.exit.exit_code
            elif record.WhichOneof("record_type") == "run":
                project = record.run.project
    return path.name[len("run-") : -len(".wandb")], history, exit_code, project


def test_weights_and_biases_gets_every_metric_and_a_resume_continues_its_run(train_data, tmp_path, capsys, monkeypatch):
    run = tmp_path / "wandb-run"
    common = ["--training.steps", "4", "--logging.wandb", "true", "--logging.wandb_mode", "offline"]
    common += ["--logging.wandb_project", "ablations-42"]
    assert cli.main(run_args(train_data, run, *common, "--checkpoint.exit_at_step", "2")) == 0
    run_id, first, exit_code, project = wandb_history(run)
    assert exit_code == 0 and project == "ablations-42"
    assert (run / "wandb-id").read_text().strip() == run_id
    assert {step: values["loss"] for step, values in first.items()} == losses(run)
    shutil.move(run / "wandb", tmp_path / "first-wandb")
    assert cli.main(["--resume", "auto", *run_args(train_data, run, *common)]) == 0
    resumed_id, history, _, _ = wandb_history(run)
    assert resumed_id == run_id  # the same W&B run goes on
    assert {step: values["loss"] for step, values in history.items() if "loss" in values} == {
        step: loss for step, loss in losses(run).items() if step > 2
    }
    validation = [r for r in records(run) if "val.loss" in r]
    assert history[4]["val/loss"] == validation[-1]["val.loss"] and validation[-1]["step"] == 4

    failing = tmp_path / "failing"  # a run that stops on a non-finite loss: W&B marks its run failed
    assert cli.main(run_args(train_data, failing, *common, *POISONED)) == 3
    assert wandb_history(failing)[2] == 1

    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    capsys.readouterr()
    assert cli.main(run_args(train_data, tmp_path / "no-wandb", *common)) == 2
    assert "logging.wandb: the wandb package is not installed" in capsys.readouterr().err
    assert cli.main(run_args(train_data, tmp_path / "without", "--training.steps", "1")) == 0  # not needed when off


def tiny_model(**overrides):
    from model import ModelConfig, Transformer
    from tests.test_model import TINY

    return Transformer(ModelConfig(**{**TINY, "vocab_size": 128, "n_kv_heads": 2, **overrides}))


def test_activation_checkpointing_keeps_the_gradients_and_saves_less(train_data, tmp_path, caplog):
    import copy
    from collections import Counter

    from torch.utils._python_dispatch import TorchDispatchMode

    from train import parallel

    class CountOps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops: Counter = Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops[func] += 1
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    base, batch = tiny_model(), torch.randint(0, 128, (2, 17))
    results = {}
    for mode in ("none", "selective", "full"):
        model = copy.deepcopy(base)
        parallel.apply_activation_checkpointing(model, mode)
        saved: list[int] = []  # what the forward pass keeps for the backward pass, outside checkpointed blocks

        def pack(tensor, saved=saved):
            saved.append(tensor.numel() * tensor.element_size())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss = torch.nn.functional.cross_entropy(model(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
        with CountOps() as backward:
            loss.backward()
        results[mode] = loss, {n: p.grad for n, p in model.named_parameters()}, sum(saved), backward.ops
        assert list(model.state_dict()) == list(base.state_dict())  # names (and so checkpoints) unchanged
    loss, grads, kept, ops = results["none"]
    for mode in ("selective", "full"):
        assert torch.equal(results[mode][0], loss)
        assert all(torch.equal(results[mode][1][name], grad) for name, grad in grads.items()), mode
        assert results[mode][2] < kept / 3  # the blocks' activations are not held in the autograd graph
    matmuls = [results[mode][3][torch.ops.aten.mm.default] for mode in ("none", "selective", "full")]
    assert matmuls[0] == matmuls[1] < matmuls[2]  # selective recomputes no matmul, full recomputes every block's
    assert sum(results["selective"][3].values()) > sum(ops.values())  # but it does recompute the cheap ops

    caplog.set_level(logging.INFO, logger="train")
    run = tmp_path / "plain"  # and through the command line: the setting reaches the run, the curve is the same
    assert cli.main(run_args(train_data, run, "--training.steps", "3")) == 0
    for mode in ("selective", "full"):
        checkpointed = tmp_path / mode
        assert cli.main(run_args(train_data, checkpointed, "--training.steps", "3",
                                 "--training.activation_checkpointing", mode)) == 0  # fmt: skip
        assert losses(checkpointed) == pytest.approx(losses(run), rel=1e-6)
        assert config_module.load(str(checkpointed / "config.toml")).training.activation_checkpointing == mode
        assert f"activation checkpointing: {mode}, 2 blocks" in caplog.text  # applied to the model, not only parsed


def test_a_model_made_on_the_meta_device_gets_the_weights_of_one_made_whole():
    from train import parallel

    for tied in (True, False):
        torch.manual_seed(7)
        whole = tiny_model(tie_embeddings=tied)
        with torch.device("meta"):
            made = tiny_model(tie_embeddings=tied)
        parallel.materialize(made, torch.device("cpu"), seed=7)
        assert (made.output.weight is made.tok_embeddings.weight) is tied
        expected = whole.state_dict()
        assert all(torch.equal(value, expected[name]) for name, value in made.state_dict().items())
        assert torch.equal(made.rope_freqs, whole.rope_freqs)
    torch.manual_seed(8)
    assert not torch.equal(tiny_model().tok_embeddings.weight, whole.tok_embeddings.weight)  # the seed matters


def test_validation_samples_run_eagerly_and_add_no_compiled_graphs(train_data):
    from torch._dynamo.utils import counters

    from train.trainer import Sampler

    config = config_module.load(None, parse_overrides(run_args(train_data, "unused", "--logging.sample_tokens", "6")))
    model = tiny_model(vocab_size=640, max_seq_len=32)
    for block in model.layers:
        block.compile(backend="eager")  # as parallel.apply_compile does, with a backend that needs no compiler
    torch._dynamo.reset()
    counters.clear()
    model(torch.randint(0, 640, (2, 32))).sum().backward()  # a training step's shapes
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1
    text = Sampler(config)(model)
    assert isinstance(text, str) and model.training
    assert counters["stats"]["unique_graphs"] == graphs  # generation's changing shapes compiled nothing


def test_a_loss_spike_is_skipped_counted_and_the_decisions_survive_a_resume(train_data, tmp_path, monkeypatch, caplog):
    """OLMo-core's rule (`training.spike_sigmas`): on a healthy run it changes nothing; a step whose loss jumps far
    above the last steps' is not applied, is counted and logged, and a run resumed across it skips the same steps."""
    from train import trainer

    guard = ["--training.steps", "14", "--training.spike_min_history", "4", "--training.spike_window", "8"]
    healthy, unguarded = tmp_path / "healthy", tmp_path / "unguarded"
    assert cli.main(run_args(train_data, healthy, *guard)) == 0
    assert cli.main(run_args(train_data, unguarded, *guard, "--training.spike_sigmas", "0")) == 0
    assert losses(healthy) == losses(unguarded)  # nothing skipped on a healthy run
    assert not [r for r in records(healthy) if "spike" in r]

    calls = {"n": 0}
    plain_loss = trainer.loss_of

    def spiking(model, batch):  # both micro-batches of step 10 have their loss, and gradient, ×50
        calls["n"] += 1
        loss = plain_loss(model, batch)
        return loss * 50 if calls["n"] in (19, 20) else loss

    monkeypatch.setattr(trainer, "loss_of", spiking)
    spiked = tmp_path / "spiked"
    assert cli.main(run_args(train_data, spiked, *guard)) == 0
    skips = [r for r in records(spiked) if r.get("spike")]
    assert [r["step"] for r in skips] == [10] and skips[0]["spikes_skipped"] == 1
    assert "loss" in skips[0]["spike"] and "step 10: a spike, update skipped" in caplog.text
    assert losses(spiked)[11] == pytest.approx(losses(healthy)[11], rel=0.2)  # the spike did not reach the weights
    state = json.load(open(spiked / "checkpoints/step-00000014/trainer.json"))
    assert state["spikes_skipped"] == 1 and len(state["spike_guard"]["losses"]) == 8

    calls["n"] = 0
    parts = tmp_path / "parts"
    common = [*guard, "--checkpoint.interval", "7"]
    assert cli.main(run_args(train_data, parts, *common, "--checkpoint.exit_at_step", "7")) == 0
    calls["n"] = 14  # the resumed run starts at step 8
    assert cli.main(["--resume", "auto", *run_args(train_data, parts, *common)]) == 0
    assert losses(parts) == losses(spiked)
    assert [r["step"] for r in records(parts) if r.get("spike")] == [10]

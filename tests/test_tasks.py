"""Benchmark tasks scored by log-likelihood (`train.tasks`, `python -m train.eval --task`): on the Hugging Face export
of a trained run, every pair's log-likelihood equals what transformers computes for it the way
lm-evaluation-harness's `hf` model does (its encoding of a pair, the left cut, the sum over the continuation), and
the accuracies follow from them as the harness computes them. The comparison with lm-evaluation-harness itself is
`bench/bench_lm_eval.py` (its dependencies are heavy)."""

import json
import math

import pytest
import torch

from pipeline.common import tasks
from tests.conftest import SHARED_FIXTURES, fixture_eval_specs
from tests.trainruns import run_args
from train import cli, export, tasks as scoring

transformers = pytest.importorskip("transformers")

LIMIT = 12


@pytest.fixture(scope="module")
def exported(train_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tasks")
    run = folder / "run"
    # a context of 512 tokens: most items fit whole, as they would in a real model's
    assert cli.main(run_args(train_data, run, "--training.steps", "3", "--model.max_seq_len", "512")) == 0
    assert export.main(["--checkpoint", str(run), "--output", str(folder / "hf")]) == 0
    return run, folder / "hf"


def harness_loglikelihood(model, tokenizer, context: str, continuation: str) -> tuple[float, bool]:
    """What lm-evaluation-harness's HFLM computes for one request, written out with transformers."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        continuation, context = context[-spaces:] + continuation, context[:-spaces]
    whole = tokenizer(context + continuation)["input_ids"]  # the tokenizer's own special tokens, as lm-eval 0.4.13
    context_ids = tokenizer(context)["input_ids"]
    continuation_ids = whole[len(context_ids) :]
    limit = model.config.max_position_embeddings
    inputs = (context_ids + continuation_ids)[-(limit + 1) :][:-1]
    continuation_ids = continuation_ids[-len(inputs) :]  # what the window holds (the harness assumes it all fits)
    with torch.no_grad():
        log_probs = torch.log_softmax(model(torch.tensor([inputs])).logits[0].float(), dim=-1)
    picked = log_probs[len(inputs) - len(continuation_ids) :]
    target = torch.tensor(continuation_ids)
    return picked.gather(1, target[:, None]).sum().item(), bool(torch.equal(picked.argmax(-1), target))


@pytest.mark.skipif(not SHARED_FIXTURES.is_dir(), reason="needs ../shared/fixtures")
def test_every_fixture_task_scores_as_the_harness_does(exported, tmp_path, capsys):
    from train import eval as evaluation

    run, hf_folder = exported
    specs = fixture_eval_specs()
    arguments = ["--checkpoint", str(hf_folder), "--limit", str(LIMIT), "--batch-size", "5"]
    for spec in specs:
        arguments += ["--task", spec]
    output, per_item = tmp_path / "tasks.json", tmp_path / "items.jsonl"
    assert evaluation.main([*arguments, "--output", str(output), "--per-item", str(per_item)]) == 0
    assert "centred accuracy over 7 task(s)" in capsys.readouterr().out
    results = json.loads(output.read_text())
    rows = [json.loads(line) for line in per_item.read_text().splitlines()]
    assert len(rows) == LIMIT * len(specs)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(hf_folder)).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(hf_folder))
    for spec in map(tasks.parse_spec, specs):
        items = tasks.read_task(spec)[:LIMIT]
        mine = [row for row in rows if row["task"] == spec.name]
        for item, row in zip(items, mine):
            reference = [harness_loglikelihood(model, tokenizer, *pair) for pair in item.pairs()]
            assert row["loglikelihoods"] == pytest.approx([value for value, _ in reference], abs=1e-4)
            assert row["greedy"] == [flag for _, flag in reference]
            best = max(range(len(reference)), key=lambda n: reference[n][0])
            if len(reference) > 1:
                assert row["acc"] == float(best == item.gold)
        summary = results["tasks"]["tasks"][spec.name]
        assert summary["items"] == LIMIT and summary["acc"] == pytest.approx(sum(r["acc"] for r in mine) / LIMIT)
    assert results["tasks"]["tasks"]["lambada"]["kind"] == "cloze"
    assert results["tasks"]["tasks"]["piqa"]["kind"] == "multiple_choice"
    # the checkpoint and its export score alike
    again = tmp_path / "checkpoint.json"
    assert (
        evaluation.main(["--checkpoint", str(run), "--limit", str(LIMIT), "--task", specs[2], "--output", str(again)])
        == 0
    )
    assert json.loads(again.read_text())["tasks"]["tasks"]["piqa"]["acc"] == results["tasks"]["tasks"]["piqa"]["acc"]


def test_accuracies_follow_the_harness_rules(monkeypatch):
    """acc: the highest total; acc_norm: the highest per character of the choice (without its space); the gold
    continuation's bits per byte; chance from the number of choices."""
    items = [
        tasks.TaskItem("q a", ("q",), (" aa", " b"), 1),  # b: the higher total, the lower per character
        tasks.TaskItem("q c", ("q",), (" c", " dddd"), 0),
    ]
    values = iter([-4.0, -3.0, -1.0, -6.0])  # choice n of item i scores this
    monkeypatch.setattr(
        scoring, "score_pairs", lambda model, pairs, batch_size, layout: [(next(values), False) for _ in pairs]
    )
    pairs = [([1], [2])] * 4  # what the stub above ignores
    (result,) = scoring.score_tasks(None, [scoring.PreparedTask("t", items, pairs)])
    assert result.kind == "multiple_choice" and result.chance == 0.5
    assert [s.acc for s in result.items] == [1.0, 1.0]
    assert [s.acc_norm for s in result.items] == [0.0, 1.0]  # -4/2 > -3/1; -1/1 > -6/4
    assert result.items[0].gold_bits_per_byte == pytest.approx(3.0 / math.log(2) / 2)  # " b": two bytes
    assert result.summary()["centred_acc"] == 1.0 and result.summary()["acc_norm"] == 0.5


@pytest.mark.skipif(not SHARED_FIXTURES.is_dir(), reason="needs ../shared/fixtures")
def test_tasks_are_scored_in_the_loop_as_train_eval_scores_the_checkpoint(train_data, tmp_path):
    """`[eval] tasks`: at every interval and at the end, each task's accuracies and the centred mean reach
    metrics.jsonl and the report's figure; the last ones are what `train.eval --task` gives the final checkpoint."""
    from train import eval as evaluation

    piqa, lambada = fixture_eval_specs(["piqa", "lambada"])
    run = tmp_path / "run"
    tasks_value = json.dumps([piqa, lambada])
    arguments = ["--training.steps", "4", "--eval.tasks", tasks_value, "--eval.interval", "2", "--eval.limit", "6"]
    assert cli.main(run_args(train_data, run, *arguments)) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scored = [record for record in records if "tasks.centred_acc" in record]
    assert [record["step"] for record in scored] == [2, 4]
    assert {"tasks.piqa.acc", "tasks.piqa.acc_norm", "tasks.lambada.acc"} <= set(scored[-1])
    output = tmp_path / "final.json"
    assert evaluation.main(["--checkpoint", str(run), "--task", piqa, "--task", lambada, "--limit", "6",
                            "--output", str(output)]) == 0  # fmt: skip
    final = json.loads(output.read_text())["tasks"]
    assert scored[-1]["tasks.piqa.acc"] == final["tasks"]["piqa"]["acc"]
    assert scored[-1]["tasks.centred_acc"] == pytest.approx(final["centred_acc"])
    assert (run / "report" / "tasks.png").read_bytes().startswith(b"\x89PNG")
    bad = tmp_path / "bad"
    assert cli.main(run_args(train_data, bad, "--eval.tasks", '["x=piqa:/no/such/file.jsonl"]')) == 2

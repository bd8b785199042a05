"""Benchmark tasks scored by log-likelihood, as lm-evaluation-harness scores them.

Items come from `pipeline.common.tasks` (the one registry of published task formats, which decontamination reads
too). Each (context, continuation) pair is encoded as the harness's Hugging Face model does (`encode_pair`): a
context's trailing spaces move to the continuation, the continuation's tokens are those of context + continuation
past the context's own, `<|endoftext|>` first (the export's tokenizer adds it, and the harness keeps the tokenizer's
special tokens), and the left is cut to the model's context (a continuation longer than that is scored on the tokens the window holds). Pairs are scored in padded batches, longest first; each gets the sum of its continuation's log-probabilities
and whether every continuation token is the model's greedy choice.

Per item and task: multiple choice (two or more choices): `acc` (the highest log-likelihood is the gold one),
`acc_norm` (the same, each divided by its choice's length in characters, the harness's normalisation), and the bits
per byte of the gold continuation; cloze (one continuation, LAMBADA's last word): `acc` (greedy) and the perplexity
of the continuations. `centred` is the accuracy rescaled so that chance is 0 and perfect is 1 (DCLM's CORE).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F

from pipeline.common.tasks import TaskItem, TaskSpec, read_task

TARGET_DELIMITER = " "  # what the harness puts between a context and a choice (our choices carry it)


@dataclasses.dataclass
class ItemScore:
    item: int
    loglikelihoods: list[float]
    greedy: list[bool]
    gold: int
    acc: float
    acc_norm: float
    gold_bits_per_byte: float


@dataclasses.dataclass
class TaskResult:
    name: str
    kind: str  # "multiple_choice" or "cloze"
    items: list[ItemScore]
    chance: float

    def summary(self) -> dict:
        count = max(1, len(self.items))
        acc = sum(item.acc for item in self.items) / count
        result = {
            "task": self.name,
            "kind": self.kind,
            "items": len(self.items),
            "acc": acc,
            "centred_acc": (acc - self.chance) / (1 - self.chance),
            "gold_bits_per_byte": sum(item.gold_bits_per_byte for item in self.items) / count,
        }
        if self.kind == "multiple_choice":
            result["acc_norm"] = sum(item.acc_norm for item in self.items) / count
        else:
            result["perplexity"] = math.exp(-sum(item.loglikelihoods[0] for item in self.items) / count)
        return result


def encode_pair(encoder, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-evaluation-harness's `HFLM._encode_pair`, for our encoder: the harness (0.4.13) encodes with the tokenizer's
    own special tokens, and an lmforge export's tokenizer starts every text with `<|endoftext|>`, as the model saw
    every document start in training."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        continuation = context[-spaces:] + continuation
        context = context[:-spaces]
    whole = [encoder.end_of_text, *encoder.encode([context + continuation])[0]]
    context_ids = [encoder.end_of_text, *encoder.encode([context])[0]] if context else [encoder.end_of_text]
    return context_ids, whole[len(context_ids) :] if context else whole[1:]


@torch.no_grad()
def score_pairs(
    model, pairs: Sequence[tuple[list[int], list[int]]], batch_size: int = 16, layout=None
) -> list[tuple[float, bool]]:
    """(sum of the continuation's log-probabilities, whether it is the greedy one) per (context, continuation) ids.
    With a `layout` of several processes the pairs are dealt to the data-parallel ranks (the tensor-parallel ranks of
    one data-parallel rank score the same ones) and the results gathered, so every rank returns all of them; every
    rank runs the same number of forward passes (a rank with nothing left runs a one-token batch), as FSDP's
    collectives need."""
    from train import parallel

    device = model.rope_freqs.device
    limit = model.config.max_seq_len
    ranks, rank = (layout.dp, layout.dp_rank) if layout is not None and layout.distributed else (1, 0)
    order = sorted(range(len(pairs)), key=lambda n: -(len(pairs[n][0]) + len(pairs[n][1])))
    mine = order[rank::ranks]  # dealt longest first, so that every rank's batches are alike
    batches = math.ceil(math.ceil(len(pairs) / ranks) / batch_size)
    found: dict[int, tuple[float, bool]] = {}
    for start in range(0, batches * batch_size, batch_size):
        batch = mine[start : start + batch_size]
        rows = []
        for number in batch:
            context, continuation = pairs[number]
            whole = (context + continuation)[-(limit + 1) :]
            rows.append((whole[:-1], min(len(continuation), len(whole) - 1)))  # what the window holds of it
        width = max((len(inputs) for inputs, _ in rows), default=1)
        tokens = torch.zeros(max(1, len(rows)), width, dtype=torch.long)
        for row, (inputs, _) in enumerate(rows):
            tokens[row, : len(inputs)] = torch.tensor(inputs)
        log_probs = F.log_softmax(parallel.full_value(model(tokens.to(device))).float(), dim=-1).cpu()
        for row, number in enumerate(batch):
            inputs, length = rows[row]
            targets = torch.tensor(pairs[number][1][-length:])
            positions = log_probs[row, len(inputs) - length : len(inputs)]
            total = positions.gather(1, targets[:, None]).sum().item()
            found[number] = (total, bool(torch.equal(positions.argmax(dim=-1), targets)))
    if ranks > 1:
        import torch.distributed as dist

        gathered: list = [None] * ranks
        dist.all_gather_object(gathered, found, group=layout.submesh("dp").get_group())
        for part in gathered:
            found.update(part)
    return [found[number] for number in range(len(pairs))]


def _choice_text(choice: str) -> str:
    return choice[len(TARGET_DELIMITER) :] if choice.startswith(TARGET_DELIMITER) else choice


def _item_scores(items: Sequence[TaskItem], found: list[list[tuple[float, bool]]]) -> tuple[str, list[ItemScore]]:
    """Each item's measures from its pairs' (log-likelihood, greedy)."""
    cloze = all(len(item.pairs()) == 1 for item in items)
    results = []
    for number, (item, pairs) in enumerate(zip(items, found)):
        likelihoods = [value for value, _ in pairs]
        greedy = [flag for _, flag in pairs]
        choices = item.choices if len(item.choices) == len(pairs) else item.choices * len(pairs)
        lengths = [float(len(_choice_text(choice))) or 1.0 for choice in choices]
        gold_text = item.pairs()[item.gold][1]
        bits = -likelihoods[item.gold] / math.log(2) / max(1, len(gold_text.encode("utf-8")))
        if cloze:
            acc = acc_norm = float(greedy[0])
        else:
            acc = float(max(range(len(pairs)), key=lambda n: likelihoods[n]) == item.gold)
            acc_norm = float(max(range(len(pairs)), key=lambda n: likelihoods[n] / lengths[n]) == item.gold)
        results.append(ItemScore(number, likelihoods, greedy, item.gold, acc, acc_norm, bits))
    return ("cloze" if cloze else "multiple_choice"), results


@dataclasses.dataclass
class PreparedTask:
    """A task's scorable items (the first `limit`) and their (context, continuation) pairs, encoded once."""

    name: str
    items: list[TaskItem]
    pairs: list[tuple[list[int], list[int]]]


def prepare_tasks(specs: Iterable[TaskSpec], encoder, limit: int = 0) -> list[PreparedTask]:
    """Each task read and encoded; ValueError (TaskError too) for a file that cannot be read or scored."""
    prepared = []
    for spec in specs:
        items = [item for item in read_task(spec) if item.scorable][: limit or None]
        if not items:
            raise ValueError(f"{spec}: no item has contexts and choices to score (a text-only format)")
        pairs = [encode_pair(encoder, *pair) for item in items for pair in item.pairs()]
        prepared.append(PreparedTask(spec.name, items, pairs))
    return prepared


def score_tasks(model, tasks: Sequence[PreparedTask], batch_size: int = 16, layout=None) -> list[TaskResult]:
    """Every task's items scored (on every rank of `layout`, dealt and gathered: see `score_pairs`)."""
    results = []
    for task in tasks:
        scored = iter(score_pairs(model, task.pairs, batch_size, layout))
        kind, scores = _item_scores(task.items, [[next(scored) for _ in item.pairs()] for item in task.items])
        chance = 0.0 if kind == "cloze" else sum(1 / len(item.pairs()) for item in task.items) / len(task.items)
        results.append(TaskResult(task.name, kind, scores, chance))
    return results


def evaluate_tasks(
    model, encoder, specs: Iterable[TaskSpec], limit: int = 0, batch_size: int = 16, layout=None
) -> list[TaskResult]:
    """Each task's first `limit` items (0: all), read, encoded and scored."""
    return score_tasks(model, prepare_tasks(specs, encoder, limit), batch_size, layout)


def aggregate(results: Sequence[TaskResult]) -> float:
    """The mean centred accuracy over tasks (DCLM's CORE: 0 at chance, 1 perfect)."""
    return sum(result.summary()["centred_acc"] for result in results) / max(1, len(results))


class PeriodicTasks:
    """The training loop's task evaluation (`[eval]`): the items read and their pairs encoded once, scored on every
    call with the model in eval mode. Returns the metrics record's fields: `tasks.<name>.acc` (and `.acc_norm`,
    `.gold_bits_per_byte`) and `tasks.centred_acc`."""

    def __init__(self, specs: Sequence[str], encoder, limit: int = 0, batch_size: int = 16):
        from pipeline.common.tasks import parse_spec

        self.batch_size = batch_size
        self.tasks = prepare_tasks(map(parse_spec, specs), encoder, limit)

    def __call__(self, model, layout=None, context=None) -> dict:
        was_training = model.training
        model.eval()
        try:
            with context() if context is not None else contextlib.nullcontext():
                results = score_tasks(model, self.tasks, self.batch_size, layout)
        finally:
            model.train(was_training)
        record: dict = {}
        for result in results:
            summary = result.summary()
            for key in ("acc", "acc_norm", "gold_bits_per_byte"):
                if key in summary:
                    record[f"tasks.{result.name}.{key}"] = summary[key]
        record["tasks.centred_acc"] = aggregate(results)
        return record

    @staticmethod
    def describe(record: dict) -> str:
        """The record as one line: the aggregate, then each task's accuracy."""
        accuracies = ", ".join(
            f"{key.split('.')[1]} {value:.3f}" for key, value in record.items() if key.endswith(".acc")
        )
        return f"tasks: centred accuracy {record['tasks.centred_acc']:.4f} ({accuracies})"

"""Benchmark tasks in the formats they are published in: the one registry that decontamination
(`python -m pipeline decontam`) and evaluation (`python -m train.eval --task`) read.

A task is named on the command line as `NAME=FORMAT:PATH`, e.g. `piqa=piqa:data/valid.jsonl`. Each format maps a
file's items to `TaskItem`s, prompted as lm-evaluation-harness's task definition prompts the task:

    hellaswag   llama.cpp's HellaSwag text: 6 lines per item (`label: context`, the gold index, 4 endings);
                the harness's preprocessing (` [title]` → `. `, `[…]` removed, doubled spaces)
    lambada     OpenAI's LAMBADA JSON lines `{"text"}`: the last word is the target
    piqa        `{"goal","sol1","sol2"}` JSON lines, labels in the `…-labels….lst` file beside it (one 0/1 a line)
    winogrande  `{"sentence" with "_","option1","option2","answer"}`: partial scoring (one context per option, the
                text after `_` the shared continuation)
    boolq       Google's `{"question","passage","answer": true/false}`
    arc         AI2's ARC JSON lines `{"question": {"stem","choices":[{"text","label"}]},"answerKey"}`
    mosaicml    llm-foundry's multiple-choice ICL format `{"query","choices","gold"}`
    jsonl       any JSON lines file; `jsonl:PATH#FIELD` names the text field (default `text`): text only, for
                decontamination
    parquet     any Parquet file; `parquet:PATH#COLUMN` likewise

A file that does not fit its format raises `TaskError` naming the file and line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
from collections.abc import Callable, Iterator

from pipeline.common.remote import open_input


class TaskError(ValueError):
    """A task file that is missing or does not fit its format; the message names the file (and line)."""


@dataclasses.dataclass(frozen=True)
class TaskItem:
    """One item. `contexts` and `choices` pair up choice by choice, or one of them has a single element that every
    choice shares (winogrande's continuation); `gold` indexes the choices. `text` is the item as a web page would
    quote it (its question or passage with the right answer), what decontamination looks for besides the choices.
    Text-only items (the jsonl and parquet formats) have no contexts or choices."""

    text: str
    contexts: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    gold: int = -1

    def pairs(self) -> list[tuple[str, str]]:
        """(context, continuation) per choice."""
        count = max(len(self.contexts), len(self.choices))
        contexts = self.contexts * count if len(self.contexts) == 1 else self.contexts
        choices = self.choices * count if len(self.choices) == 1 else self.choices
        return list(zip(contexts, choices))

    @property
    def scorable(self) -> bool:
        return bool(self.contexts and self.choices)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    name: str
    format: str
    path: str
    field: str = ""  # jsonl/parquet: the text field

    def __str__(self) -> str:
        return f"{self.name}={self.format}:{self.path}" + (f"#{self.field}" if self.field else "")


def parse_spec(value: str) -> TaskSpec:
    """`NAME=FORMAT:PATH[#FIELD]`; raises TaskError naming what is wrong."""
    name, equals, rest = value.partition("=")
    fmt, colon, path = rest.partition(":")
    if not equals or not colon or not name or not path:
        raise TaskError(
            f"{value!r}: expected NAME=FORMAT:PATH, e.g. piqa=piqa:valid.jsonl (formats: {', '.join(FORMATS)})"
        )
    if fmt not in FORMATS:
        raise TaskError(f"{value!r}: unknown task format {fmt!r} (formats: {', '.join(FORMATS)})")
    path, _, field = path.partition("#")
    if field and fmt not in ("jsonl", "parquet"):
        raise TaskError(f"{value!r}: #FIELD is for the jsonl and parquet formats only")
    return TaskSpec(name, fmt, path, field)


def task_spec(value: str) -> TaskSpec:
    """`parse_spec` as an argparse type: a malformed value is the command's usage error."""
    try:
        return parse_spec(value)
    except TaskError as exc:
        raise argparse.ArgumentTypeError(str(exc))


def add_task_argument(
    parser: argparse.ArgumentParser, required: bool = False, help: str = "an evaluation set, repeatable"
) -> None:
    """`--task NAME=FORMAT:PATH`, repeatable, read into TaskSpecs: the flag of every command that reads tasks."""
    parser.add_argument(
        "--task",
        action="append",
        type=task_spec,
        default=[],
        required=required,
        metavar="NAME=FORMAT:PATH",
        help=f"{help} (formats: {', '.join(FORMATS)})",
    )


def read_task(spec: TaskSpec) -> list[TaskItem]:
    """The task's items, in file order; raises TaskError for a missing file, an empty one, or one that does not fit
    the format."""
    try:
        items = FORMATS[spec.format](spec.path, spec.field)
    except OSError as exc:
        raise TaskError(f"{spec.path}: cannot read the {spec.name} task: {exc}")
    if not items:
        raise TaskError(f"{spec.path}: the {spec.name} task has no items")
    return items


def _lines(path: str) -> Iterator[tuple[int, str]]:
    with open_input(path) as stream:
        data = stream.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        at = data.count(b"\n", 0, exc.start) + 1
        raise TaskError(f"{path}, line {at}: not UTF-8 ({exc.reason})") from None
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield number, line


def _records(path: str, fields: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """JSON objects of a JSON lines file, each checked for `fields`."""
    for number, line in _lines(path):
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise TaskError(f"{path}, line {number}: not JSON: {exc}")
        missing = [field for field in fields if not isinstance(record, dict) or field not in record]
        if missing:
            raise TaskError(f"{path}, line {number}: no {missing[0]!r} field; is this the right format?")
        yield number, record


def _labels(path: str) -> list[str]:
    """The labels file beside a data file: `valid.jsonl` → `valid-labels.lst` (also `valid-labels-head200.lst` for
    `valid-head200.jsonl`)."""
    folder, name = os.path.split(path)
    stem = name.rsplit(".", 1)[0]
    candidates = [os.path.join(folder, f"{stem}-labels.lst")]
    if "-" in stem:
        first, rest = stem.split("-", 1)
        candidates.append(os.path.join(folder, f"{first}-labels-{rest}.lst"))
    for candidate in candidates:
        try:
            return [line for _, line in _lines(candidate)]
        except OSError:
            continue
    raise TaskError(f"{path}: no labels file beside it (looked for {' or '.join(candidates)})")


def _hellaswag_clean(text: str) -> str:
    """lm-evaluation-harness's HellaSwag preprocessing."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _hellaswag(path: str, _field: str) -> list[TaskItem]:
    lines = list(_lines(path))
    if len(lines) % 6:
        raise TaskError(f"{path}: {len(lines)} lines, not 6 per item (context, label, 4 endings)")
    items = []
    for start in range(0, len(lines), 6):
        number, label = lines[start + 1]
        if label.strip() not in "0123" or not label.strip():
            raise TaskError(f"{path}, line {number}: the gold label should be 0 to 3, not {label!r}")
        context = _hellaswag_clean(lines[start][1])
        endings = tuple(" " + _hellaswag_clean(line) for _, line in lines[start + 2 : start + 6])
        gold = int(label)
        items.append(TaskItem(context + endings[gold], (context,), endings, gold))
    return items


def _lambada(path: str, _field: str) -> list[TaskItem]:
    items = []
    for number, record in _records(path, ("text",)):
        context, space, target = record["text"].rpartition(" ")
        if not space:
            raise TaskError(f"{path}, line {number}: a LAMBADA text needs at least two words")
        items.append(TaskItem(record["text"], (context,), (" " + target,), 0))
    return items


def _piqa(path: str, _field: str) -> list[TaskItem]:
    records = list(_records(path, ("goal", "sol1", "sol2")))
    labels = _labels(path)
    if len(labels) != len(records):
        raise TaskError(f"{path}: {len(records)} items but {len(labels)} labels")
    items = []
    for (number, record), label in zip(records, labels):
        if label.strip() not in ("0", "1"):
            raise TaskError(f"{path}, item at line {number}: label {label!r} is not 0 or 1")
        gold = int(label)
        choices = (" " + record["sol1"], " " + record["sol2"])
        items.append(TaskItem(record["goal"] + choices[gold], (f"Question: {record['goal']}\nAnswer:",), choices, gold))
    return items


def _winogrande(path: str, _field: str) -> list[TaskItem]:
    items = []
    for number, record in _records(path, ("sentence", "option1", "option2", "answer")):
        sentence = record["sentence"]
        if "_" not in sentence or str(record["answer"]) not in ("1", "2"):
            raise TaskError(f"{path}, line {number}: a WinoGrande item needs a `_` and an answer of 1 or 2")
        blank = sentence.index("_")
        options = (record["option1"], record["option2"])
        gold = int(record["answer"]) - 1
        continuation = " " + sentence[blank + 1 :].strip()
        contexts = tuple(sentence[:blank] + option for option in options)
        items.append(TaskItem(sentence.replace("_", options[gold], 1), contexts, (continuation,), gold))
    return items


def _boolq(path: str, _field: str) -> list[TaskItem]:
    items = []
    for _, record in _records(path, ("question", "passage", "answer")):
        context = f"{record['passage']}\nQuestion: {record['question']}?\nAnswer:"
        items.append(
            TaskItem(
                f"{record['passage']} {record['question']}", (context,), (" no", " yes"), int(bool(record["answer"]))
            )
        )
    return items


def _arc(path: str, _field: str) -> list[TaskItem]:
    items = []
    for number, record in _records(path, ("question", "answerKey")):
        question = record["question"]
        try:
            stem, choices = question["stem"], question["choices"]
            labels = [choice["label"] for choice in choices]
            gold = labels.index(record["answerKey"])
            texts = tuple(" " + choice["text"] for choice in choices)
        except (KeyError, TypeError, ValueError):
            raise TaskError(f"{path}, line {number}: not an ARC item (question.stem, question.choices, answerKey)")
        items.append(TaskItem(stem + texts[gold], (f"Question: {stem}\nAnswer:",), texts, gold))
    return items


def _mosaicml(path: str, _field: str) -> list[TaskItem]:
    items = []
    for number, record in _records(path, ("query", "choices", "gold")):
        choices, gold = record["choices"], record["gold"]
        if not isinstance(choices, list) or not isinstance(gold, int) or not 0 <= gold < len(choices):
            raise TaskError(f"{path}, line {number}: `gold` must index `choices`")
        query = record["query"]
        texts = tuple(" " + str(choice) for choice in choices)
        items.append(TaskItem(query.removeprefix("Question: ") + texts[gold], (f"{query}\nAnswer:",), texts, gold))
    return items


def _jsonl(path: str, field: str) -> list[TaskItem]:
    field = field or "text"
    return [TaskItem(str(record[field])) for _, record in _records(path, (field,))]


def _parquet(path: str, field: str) -> list[TaskItem]:
    import pyarrow.parquet as pq

    field = field or "text"
    with open_input(path) as stream:
        table = pq.read_table(stream)
    if field not in table.column_names:
        raise TaskError(f"{path}: no column {field!r} (columns: {', '.join(table.column_names)})")
    return [TaskItem(str(text)) for text in table.column(field).to_pylist() if text is not None]


FORMATS: dict[str, Callable[[str, str], list[TaskItem]]] = {
    "hellaswag": _hellaswag,
    "lambada": _lambada,
    "piqa": _piqa,
    "winogrande": _winogrande,
    "boolq": _boolq,
    "arc": _arc,
    "mosaicml": _mosaicml,
    "jsonl": _jsonl,
    "parquet": _parquet,
}

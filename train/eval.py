"""`python -m train.eval --checkpoint RUN_DIR|CHECKPOINT|HF_DIR --input GLOB`: loss, perplexity and bits per byte
of a model on any corpus the tokenizer reads (Parquet/Arrow, JSON lines, plain text).

Each document is read as in the bins, `<|endoftext|>` then its tokens, and every token after the first is
predicted once, in windows of the model's context. Bits per byte divides the summed loss (in bits) by the
documents' UTF-8 bytes, so it compares models with different tokenizers and vocabularies; loss and perplexity are
per token. A Hugging Face folder written by `train.export` is read back into the same model, so a checkpoint and
its export give the same figures.

`--contamination` with `--task NAME=FORMAT:PATH` (the task formats of `pipeline.common.tasks`, which curation's
decontamination reads too) needs no model: it reports which items of each evaluation set share an n-gram (13 words
by default, `--ngram`) with the documents of `--input`, e.g. a curation output's shards.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import sys
from collections.abc import Iterable

import torch
import torch.nn.functional as F

from model import Transformer
from pipeline.common import contamination, tasks
from pipeline.common.settings import UsageError, report
from pipeline.common.words import word_hashes
from tokenizer import corpus
from tokenizer.encoding import Encoder
from train import checkpoint, export, tasks as task_scoring
from train.generate import add_checkpoint_argument, load_run

PROGRAM = "python -m train.eval"
EXAMPLE = """examples:
  python -m train.eval --checkpoint runs/demo --input 'out/wiki/part-*.parquet'
  python -m train.eval --checkpoint hf/demo --input 'held-out/*.jsonl.zst' --text-column content --output eval.json
  # how much of PIQA's validation set the curated shards hold
  python -m train.eval --contamination --task piqa=piqa:evals/piqa/valid.jsonl --input 'out/cc/part-*.parquet'
"""


@dataclasses.dataclass
class Evaluation:
    documents: int = 0
    tokens: int = 0  # predicted tokens
    bytes: int = 0  # UTF-8 bytes of the documents
    nats: float = 0.0  # summed cross-entropy

    @property
    def loss(self) -> float:
        return self.nats / max(1, self.tokens)

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss)

    @property
    def bits_per_byte(self) -> float:
        return self.nats / math.log(2) / max(1, self.bytes)

    def to_json(self) -> dict:
        return {
            **dataclasses.asdict(self),
            "loss": self.loss,
            "perplexity": self.perplexity,
            "bits_per_byte": self.bits_per_byte,
        }


def load(target: str, device: str = "cpu") -> tuple[Transformer, Encoder]:
    """A run, a checkpoint, or a Hugging Face folder written by `train.export`."""
    if os.path.isfile(os.path.join(target, "config.json")):
        return export.load_hf(target).to(device), Encoder(os.path.join(target, export.TOKENIZER_SUBDIR), "hf")
    return load_run(target, device)


@torch.no_grad()
def _score(model: Transformer, windows: list[list[int]], evaluation: Evaluation) -> None:
    device = model.rope_freqs.device
    width = max(len(window) for window in windows)
    inputs = torch.zeros(len(windows), width - 1, dtype=torch.long)
    targets = torch.full((len(windows), width - 1), -100, dtype=torch.long)
    for row, window in enumerate(windows):
        inputs[row, : len(window) - 1] = torch.tensor(window[:-1])
        targets[row, : len(window) - 1] = torch.tensor(window[1:])
    logits = model(inputs.to(device)).float()
    evaluation.nats += F.cross_entropy(
        logits.flatten(0, 1), targets.to(device).flatten(), ignore_index=-100, reduction="sum"
    ).item()
    evaluation.tokens += int((targets != -100).sum())


def evaluate(model: Transformer, encoder: Encoder, texts: Iterable[str], batch_size: int = 8) -> Evaluation:
    context = model.config.max_seq_len
    evaluation = Evaluation()
    windows: list[list[int]] = []
    for text in texts:
        ids = [encoder.end_of_text, *encoder.encode([text])[0]]
        # windows overlap by one token: the last target of one is the first input of the next
        windows.extend(ids[start : start + context + 1] for start in range(0, len(ids) - 1, context))
        evaluation.documents += 1
        evaluation.bytes += len(text.encode("utf-8", "surrogatepass"))
        while len(windows) >= batch_size:
            _score(model, windows[:batch_size], evaluation)
            windows = windows[batch_size:]
    if windows:
        _score(model, windows, evaluation)
    return evaluation


def evaluate_files(
    model: Transformer,
    encoder: Encoder,
    paths: list[str],
    text_column: str = corpus.DEFAULT_TEXT_COLUMN,
    lines: bool = False,
    max_documents: int = 0,
    batch_size: int = 8,
) -> tuple[Evaluation, dict]:
    """The model on the documents of `paths`: the Evaluation, and the figures `--output` writes (with what was
    read and set aside). `python -m train.ablate` reports these same figures."""
    read = corpus.ReadReport()
    records = corpus.iter_records(corpus.CorpusSpec(paths, text_column, lines), read)
    texts = (record.text for record in itertools.islice(records, max_documents or None))
    result = evaluate(model, encoder, texts, batch_size)
    return result, {**result.to_json(), "read": read.to_json()}


def contamination_of(specs: list, texts: Iterable[str], ngram: int = contamination.DEFAULT_NGRAM) -> dict:
    """Per task: its items, and those sharing an n-gram with one of `texts` (their numbers, 0-based in file order)."""
    index = contamination.NgramIndex.build(specs, ngram=ngram, min_ngram=min(ngram, contamination.DEFAULT_MIN_NGRAM))
    found: set[tuple[int, int]] = set()
    documents = matching = 0
    for text in texts:
        documents += 1
        items = index.items_of(word_hashes(text))
        matching += bool(items)
        found |= items
    result: dict = {"ngram": ngram, "documents": documents, "documents_matching": matching, "tasks": {}}
    for number, task in enumerate(index.meta["tasks"]):
        numbers = sorted(item for task_number, item in found if task_number == number)
        result["tasks"][task["name"]] = {
            "items": task["items"],
            "contaminated": len(numbers),
            "share": len(numbers) / task["items"],
            "contaminated_items": numbers,
        }
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description=__doc__.strip(), epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_checkpoint_argument(parser, exports=True, required=False)
    parser.add_argument(
        "--contamination",
        action="store_true",
        help="no model: report the items of each --task that share an n-gram with the documents of --input",
    )
    tasks.add_task_argument(parser)
    parser.add_argument("--ngram", type=int, default=contamination.DEFAULT_NGRAM, help="--contamination's n-gram size")
    parser.add_argument(
        "--input",
        action="extend",
        nargs="+",
        default=[],
        metavar="GLOB",
        help="Parquet/Arrow, JSON lines or plain text (.gz, .bz2, .xz, .zst); several globs, repeatable",
    )
    parser.add_argument(
        "--text-column",
        default=corpus.DEFAULT_TEXT_COLUMN,
        help="column or JSON field holding the text (default: %(default)s)",
    )
    parser.add_argument("--lines", action="store_true", help="plain text: a document per line")
    parser.add_argument("--max-documents", type=int, default=0, help="stop after this many (default: all)")
    parser.add_argument("--limit", type=int, default=0, help="--task: the first N items of each task (default: all)")
    parser.add_argument("--per-item", metavar="JSONL", help="--task: write every item's scores to this file")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default: %(default)s)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", metavar="JSON", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not args.input and not (args.task and not args.contamination):
        report(PROGRAM, "--input is needed (or --task with --checkpoint)")
        return 2
    try:
        paths = corpus.expand(args.input) if args.input else []
    except (FileNotFoundError, OSError) as exc:
        report(PROGRAM, f"--input: {exc}")
        return 2
    if args.contamination:
        return report_contamination(args, paths)
    if not args.checkpoint:
        report(PROGRAM, "--checkpoint is needed (or --contamination with --task)")
        return 2
    specs = args.task
    try:
        model, encoder = load(args.checkpoint, args.device)
    except (UsageError, checkpoint.CheckpointError, FileNotFoundError, KeyError) as exc:
        report(PROGRAM, f"--checkpoint: {exc}")
        return 2
    figures: dict = {}
    if specs:
        try:
            figures["tasks"] = report_tasks(model, encoder, specs, args)
        except (tasks.TaskError, ValueError) as exc:
            report(PROGRAM, f"--task: {exc}")
            return 2
    if paths:
        result, figures["corpus"] = evaluate_files(
            model, encoder, paths, args.text_column, args.lines, args.max_documents, args.batch_size
        )
        if not result.tokens:  # loss 0 and perplexity 1 would read as a perfect model
            problems = "; ".join(corpus.ReadReport.lines(figures["corpus"]["read"])) or "no document has text"
            report(PROGRAM, f"nothing to evaluate in {len(paths)} input file(s): {problems}")
            return 1
        print(
            f"{result.documents:,} documents, {result.tokens:,} tokens, {result.bytes:,} bytes: loss "
            f"{result.loss:.4f}, perplexity {result.perplexity:.2f}, bits per byte {result.bits_per_byte:.4f}"
        )
        for line in corpus.ReadReport.lines(figures["corpus"]["read"]):
            print(line)
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(figures["corpus"] if list(figures) == ["corpus"] else figures, handle, indent=2)
    return 0


def report_tasks(model, encoder, specs: list, args) -> dict:
    """Each task scored (train.tasks), printed; per-item scores to --per-item."""
    results = task_scoring.evaluate_tasks(model, encoder, specs, args.limit, args.batch_size)
    summaries = {result.name: result.summary() for result in results}
    for name, summary in summaries.items():
        norm = f", acc_norm {summary['acc_norm']:.4f}" if "acc_norm" in summary else ""
        print(f"{name}: {summary['items']:,} items, acc {summary['acc']:.4f}{norm}, "
              f"gold bits per byte {summary['gold_bits_per_byte']:.4f}")  # fmt: skip
    core = task_scoring.aggregate(results)
    print(f"centred accuracy over {len(results)} task(s): {core:.4f} (0 at chance, 1 perfect)")
    if args.per_item:
        with open(args.per_item, "w") as handle:
            for result in results:
                for item in result.items:
                    handle.write(json.dumps({"task": result.name, **dataclasses.asdict(item)}) + "\n")
    return {"tasks": summaries, "centred_acc": core}


def report_contamination(args, paths: list[str]) -> int:
    try:
        specs = args.task
        if not specs:
            raise tasks.TaskError("--contamination needs at least one --task NAME=FORMAT:PATH")
        read = corpus.ReadReport()
        records = corpus.iter_records(corpus.CorpusSpec(paths, args.text_column, args.lines), read)
        texts = (record.text for record in itertools.islice(records, args.max_documents or None))
        result = {**contamination_of(specs, texts, args.ngram), "read": read.to_json()}
    except (tasks.TaskError, ValueError) as exc:
        report(PROGRAM, f"--task: {exc}")
        return 2
    for name, task in result["tasks"].items():
        print(f"{name}: {task['contaminated']:,} of {task['items']:,} items ({task['share']:.1%}) share a "
              f"{result['ngram']}-gram with the {result['documents']:,} documents")  # fmt: skip
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

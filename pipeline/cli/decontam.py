"""`python -m pipeline decontam index|check`: the benchmark n-gram index a recipe's `decontamination` names
(`pipeline.common.contamination`), and which documents of a corpus it finds."""

from __future__ import annotations

import argparse
import json
import time

from pipeline.common import contamination, tasks
from pipeline.common.settings import UsageError

FIXTURES = "../shared/fixtures/evals"
INDEX_EXAMPLE = f"""examples:
  # every benchmark lmforge reads, 13-grams over normalised words (the default)
  python -m pipeline decontam index --output evals.ngrams.npz \\
      --task hellaswag=hellaswag:{FIXTURES}/hellaswag/hellaswag_val_full-head200.txt \\
      --task piqa=piqa:{FIXTURES}/piqa/valid-head200.jsonl \\
      --task arc_challenge=arc:{FIXTURES}/arc_challenge/ARC-Challenge-Test-head200.jsonl
  # then, on a preset: python -m pipeline commoncrawl --warcs 'data/*.warc.gz' --output out/cc \
  #     --decontamination evals.ngrams.npz [--decontamination-mode cut]
  # or in a recipe's source table: decontamination = "evals.ngrams.npz" (on the command line of `run`:
  #     --sources.commoncrawl.decontamination evals.ngrams.npz)
  # any JSON lines or Parquet file with a text field: mine=jsonl:questions.jsonl#question

formats: {", ".join(tasks.FORMATS)} (pipeline/common/tasks.py describes each)
"""


def build_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "decontam",
        help="build a benchmark n-gram index for decontamination",
        description="Benchmark decontamination: an index of the n-grams of evaluation sets, which a recipe's "
        "`decontamination` (flag --decontamination) uses to drop or cut the documents that share one.",
    )
    commands = parser.add_subparsers(dest="decontam_command", required=True, metavar="index")
    index = commands.add_parser(
        "index",
        help="hash the n-grams of evaluation sets into an index file",
        description="Reads each task in its published format and writes the hashes of its items' n-grams (the "
        "item's text and each choice; a segment shorter than --ngram but at least --min-ngram words is one n-gram "
        "of its own length) with the task's name, format, path, item count and SHA-1.",
        epilog=INDEX_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tasks.add_task_argument(index, required=True)
    index.add_argument("--output", required=True, metavar="INDEX", help="the index file to write (.npz)")
    index.add_argument(
        "--ngram", type=int, default=contamination.DEFAULT_NGRAM, help="words per n-gram (default: %(default)s)"
    )
    index.add_argument(
        "--min-ngram",
        type=int,
        default=contamination.DEFAULT_MIN_NGRAM,
        help="the fewest words a shorter segment needs to count (default: %(default)s)",
    )
    index.set_defaults(run=run_index)


def run_index(args, extra: list[str]) -> int:
    from pipeline.output import sinks

    if extra:
        raise UsageError(f"decontam index: unknown arguments: {' '.join(extra)}")
    started = time.perf_counter()
    try:
        index = contamination.NgramIndex.build(args.task, args.ngram, args.min_ngram)
    except (tasks.TaskError, ValueError) as exc:
        raise UsageError(str(exc))
    sinks.write_bytes(args.output, index.to_bytes())
    summary = {
        "index": args.output,
        "ngrams": len(index),
        "ngram": index.ngram,
        "min_ngram": index.min_ngram,
        "tasks": {task["name"]: task["items"] for task in index.meta["tasks"]},
        "seconds": round(time.perf_counter() - started, 2),
    }
    print(json.dumps(summary))
    return 0

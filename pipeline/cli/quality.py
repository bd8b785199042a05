"""`python -m pipeline quality train|score`: a quality classifier trained on labelled corpora, and the scores it
gives a corpus (to choose a recipe's `min_quality` or `quality_keep`). The work is `pipeline.steps.quality`'s."""

from __future__ import annotations

import argparse
import json

from pipeline.common.corpus import DEFAULT_TEXT_FIELD
from pipeline.common.settings import UsageError
from pipeline.steps import quality_training as quality

TRAIN_EXAMPLE = """examples:
  # Wikipedia and books as what to keep, crawl pages as what to drop, at most 50,000 documents a class
  python -m pipeline quality train --positive 'out/wiki/part-*.parquet' 'out/books/part-*.parquet' \\
      --negative 'out/cc/part-*.parquet' --max-docs 50000 --output models/quality
  # then in a recipe: [sources.commoncrawl] quality_model = "models/quality", quality_keep = 0.5
  # or on a preset's command line: --quality-model commoncrawl=models/quality --quality-keep commoncrawl=0.5
"""

SCORE_EXAMPLE = """examples:
  # the score distribution of a crawl's shards, and the thresholds that keep 90%, 50% and 10% of it
  python -m pipeline quality score --model models/quality --input 'out/cc/part-*.parquet' \\
      --keep 0.9 --keep 0.5 --keep 0.1 --output scores.json
"""


def build_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "quality",
        help="train a quality classifier (fastText) on labelled corpora, or score a corpus with one",
        description="A model-based quality filter, as GPT-3's and DCLM's: a fastText classifier of normalised text "
        "(lower case, words, digits as 0) that a recipe scores after the heuristic filters (quality_model, then "
        "min_quality or quality_keep).",
    )
    commands = parser.add_subparsers(dest="quality_command", required=True, metavar="train|score")
    train = commands.add_parser(
        "train",
        help="train on positive (keep) and negative (drop) corpora",
        description="Train a fastText classifier on word n-grams of positive and negative documents, balanced to "
        "the smaller class, with a seeded held-out split. OUTPUT gets model.bin and quality.json (the data it saw, "
        "the settings, held-out precision, recall, F1 and ROC AUC, and the scores of each class). Any corpus "
        "the one reader reads: shards, JSON lines, text files (a file a document).",
        epilog=TRAIN_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--positive", nargs="+", required=True, metavar="GLOB", help="documents to keep")
    train.add_argument("--negative", nargs="+", required=True, metavar="GLOB", help="documents to drop")
    train.add_argument("--output", required=True, metavar="DIR", help="where model.bin and quality.json go")
    add_text_column(train)
    train.add_argument("--max-docs", type=int, metavar="N", help="at most N documents a class (a uniform sample)")
    train.add_argument("--ngrams", type=int, default=quality.DEFAULT_NGRAMS, help="word n-grams (default: %(default)s)")
    train.add_argument("--epochs", type=int, default=quality.DEFAULT_EPOCHS, help="(default: %(default)s)")
    train.add_argument("--lr", type=float, default=quality.DEFAULT_LR, help="learning rate (default: %(default)s)")
    train.add_argument("--dim", type=int, default=quality.DEFAULT_DIM, help="vector size (default: %(default)s)")
    train.add_argument(
        "--buckets",
        type=int,
        default=quality.DEFAULT_BUCKETS,
        help="hashed n-gram rows: the model is buckets × dim × 4 bytes (default: %(default)s)",
    )
    train.add_argument(
        "--heldout",
        type=float,
        default=quality.DEFAULT_HELDOUT,
        metavar="FRACTION",
        help="of each class, set aside to measure the model (default: %(default)s)",
    )
    train.add_argument("--seed", type=int, default=0, help="sampling, split and initialisation (default: %(default)s)")
    train.add_argument(
        "--threads",
        type=int,
        default=quality.DEFAULT_THREADS,
        help=f"fastText's lock-free training threads, at least {quality.MIN_THREADS} (fastText 0.9.3 initialises a "
        "tenth of the model per thread); the seed fixes the sample, split and initialisation, the threads make "
        "two trainings differ slightly (default: %(default)s)",
    )
    train.add_argument(
        "--autotune",
        type=int,
        default=0,
        metavar="SECONDS",
        help="let fastText's autotune search the training settings for this long, judged on the held-out split "
        "(whose measures are then optimistic); 0: the settings above (default: %(default)s)",
    )
    train.set_defaults(run=run_train)

    score = commands.add_parser(
        "score",
        help="the score distribution of a corpus and the thresholds that keep given fractions",
        description="Score every document of a corpus with a quality model: quantiles, a histogram, and for each "
        "--keep fraction the threshold (score ≥ it) that keeps at least that fraction, for min_quality.",
        epilog=SCORE_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    score.add_argument("--model", required=True, metavar="DIR", help="a `quality train` folder or a fastText .bin")
    score.add_argument("--input", nargs="+", required=True, metavar="GLOB", help="the corpus")
    add_text_column(score)
    score.add_argument(
        "--keep",
        type=float,
        action="append",
        metavar="FRACTION",
        help=f"a fraction to keep, repeatable (default: {', '.join(map(str, quality.KEEP_FRACTIONS))})",
    )
    score.add_argument("--output", metavar="JSON", help="write the numbers there too")
    score.set_defaults(run=run_score)


def add_text_column(parser) -> None:
    parser.add_argument(
        "--text-column",
        default=DEFAULT_TEXT_FIELD,
        metavar="NAME",
        help="the text column of Parquet/Arrow or field of JSON lines (default: %(default)s)",
    )


def run_train(args, extra: list[str]) -> int:
    _refuse(extra)
    try:
        report = quality.train_classifier(
            args.positive,
            args.negative,
            args.output,
            text_field=args.text_column,
            max_docs=args.max_docs,
            ngrams=args.ngrams,
            epochs=args.epochs,
            lr=args.lr,
            dim=args.dim,
            buckets=args.buckets,
            heldout=args.heldout,
            seed=args.seed,
            threads=args.threads,
            autotune=args.autotune,
        )
    except (FileNotFoundError, ValueError) as exc:  # a setting out of range, a glob matching nothing, a small class
        raise UsageError(f"quality train: {exc}")
    except RuntimeError as exc:  # fastText's own stop: "Encountered NaN" when a learning rate too high diverges
        stopped = str(exc).rstrip(".")
        raise UsageError(
            f"quality train: fastText stopped: {stopped} (the weights diverged: try a lower --lr, now {args.lr})"
        )
    used, held = report["train"], report["heldout"]
    print(f"trained on {used['positive']:,} positive and {used['negative']:,} negative documents")
    if report["metrics"]:
        metrics = report["metrics"]
        print(
            f"held out ({held['positive']:,} + {held['negative']:,}), at 0.5: precision {metrics['precision']:.3f}, "
            f"recall {metrics['recall']:.3f}, F1 {metrics['f1']:.3f}, ROC AUC {metrics['roc_auc']:.3f}"
        )
    if report["threshold"]:
        chosen = report["threshold"]
        print(
            f"threshold {chosen['value']:.4f} (F1-best on the held-out split; a recipe's min_quality unless given): "
            f"precision {chosen['metrics']['precision']:.3f}, recall {chosen['metrics']['recall']:.3f}, "
            f"F1 {chosen['metrics']['f1']:.3f}"
        )
    for warning in report["warnings"]:
        print(f"WARNING: this model says little: {warning}")
    for name in ("positive", "negative"):
        skipped = report["data"][name]["skipped"]
        if skipped:
            print(f"{name}: set aside {', '.join(f'{n} {reason}' for reason, n in sorted(skipped.items()))}")
    print(f"model and quality.json in {args.output} ({report['seconds']['total']:.1f} s)")
    return 0


def run_score(args, extra: list[str]) -> int:
    _refuse(extra)
    for fraction in args.keep or []:
        if not 0 < fraction <= 1:
            raise UsageError(f"--keep: a fraction above 0 and at most 1: {fraction}")
    try:
        result = quality.score_files(args.model, args.input, args.text_column, args.keep or quality.KEEP_FRACTIONS)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(f"quality score: {exc}")
    scores = result["scores"]
    print(f"{scores['documents']:,} documents scored, mean {scores['mean']}")
    for q, value in scores["quantiles"].items():
        print(f"  quantile {q:>5}: {value:.4f}")
    for fraction, threshold in result["keep"].items():
        if threshold is not None:
            print(f"  keep {fraction:>5}: min_quality = {threshold:.4f}")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
            handle.write("\n")
        print(f"written to {args.output}")
    return 0


def _refuse(extra: list[str]) -> None:
    if extra:
        raise UsageError(f"quality: unknown argument {extra[0]!r}")

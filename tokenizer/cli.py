"""`python -m tokenizer <train|encode>`: byte-level BPE training and token bins from curated shards or any
text corpus."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from pipeline.common.settings import UsageError, report
from tokenizer import corpus, encode, train

log = logging.getLogger("tokenizer")

TRAIN_EXAMPLE = """examples:
  # 32k vocabulary on the curated shards, GPT-4's split pattern
  python -m tokenizer train --input 'out/cc/part-*.parquet' --vocab-size 32000 --output tok/
  # 1 GB seeded sample of a JSON-lines corpus, Llama 3's pattern, two extra special tokens
  python -m tokenizer train --input 'corpus/*.jsonl.zst' --text-column content --max-bytes 1e9 \\
      --pattern llama3 --special-tokens '<|user|>,<|assistant|>' --output tok/
"""

ENCODE_EXAMPLE = """examples:
  python -m tokenizer encode --tokenizer tok/ --input 'out/cc/part-*.parquet' --output bins/
  # one bin shard per 4 input shards, 1% validation
  python -m tokenizer encode --tokenizer tok/ --input 'out/*/part-*.parquet' --inputs-per-shard 4 \\
      --val-fraction 0.01 --output bins/
"""


PROGRAM = "python -m tokenizer"


def _size(value: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of bytes: {value!r}")


def add_corpus_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("corpus")
    group.add_argument(
        "--input",
        action="extend",
        nargs="+",
        required=True,
        metavar="GLOB",
        help="Parquet/Arrow shards, JSON lines or plain text (.gz, .bz2, .xz, .zst); local, http(s) or any Beam "
        "filesystem; several globs, repeatable",
    )
    group.add_argument(
        "--text-column",
        default=corpus.DEFAULT_TEXT_COLUMN,
        help="column or JSON field holding the text (default: %(default)s)",
    )
    group.add_argument("--lines", action="store_true", help="plain text: a document per line (default: per file)")


def corpus_spec(args) -> corpus.CorpusSpec:
    try:
        paths = corpus.expand(args.input)
    except (FileNotFoundError, OSError) as exc:
        raise UsageError(f"--input: {exc}")
    return corpus.CorpusSpec(paths=paths, text_column=args.text_column, lines=args.lines)


class Progress:
    """A byte progress bar on a terminal; nothing otherwise."""

    def __init__(self, total: int, what: str):
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="B", unit_scale=True, desc=what)

    def __call__(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_train(args) -> int:
    if args.pattern not in train.PATTERNS:
        from tokenizers import Regex

        try:
            Regex(args.pattern)
        except Exception as exc:  # tokenizers raises a bare Exception for Oniguruma errors
            raise UsageError(f"--pattern: not a known name ({', '.join(train.PATTERNS)}) nor a valid regex: {exc}")
    config = train.TrainConfig(
        vocab_size=args.vocab_size,
        pattern=args.pattern,
        extra_special_tokens=tuple(t.strip() for t in args.special_tokens.split(",") if t.strip()),
        min_frequency=args.min_frequency,
        max_bytes=args.max_bytes,
        max_doc_chars=args.max_doc_chars,
        seed=args.seed,
        model_max_length=args.model_max_length,
    )
    spec = corpus_spec(args)
    log.info("%d input file(s), first %s", len(spec.paths), spec.paths[0])
    progress = Progress(sum(corpus.file_size(p) for p in spec.paths), "read")
    started = time.time()
    try:
        meta = train.train(spec, config, args.output, progress)
    except ValueError as exc:
        raise UsageError(str(exc))
    finally:
        progress.close()
    print(
        f"tokenizer: {os.path.join(args.output, train.TOKENIZER_FILE)}  ({meta['vocab_size']} ids, "
        f"{meta['sample']['documents']} documents, {meta['sample']['bytes'] / 1e6:.1f} MB, {time.time() - started:.1f}s)"
    )
    print(f"special:   {', '.join(f'{t}={i}' for t, i in list(meta['special_tokens'].items())[:3])}, …")
    print_read_report(meta["read"])
    return 0


def print_read_report(read: dict) -> None:
    """What the corpus reader set aside, so that no input is lost without the user seeing it."""
    for line in corpus.ReadReport.lines(read):
        print(line)


def run_encode(args) -> int:
    if not os.path.isfile(os.path.join(args.tokenizer, train.TOKENIZER_FILE)):
        raise UsageError(
            f"--tokenizer: no {train.TOKENIZER_FILE} in {args.tokenizer} (train one with `python -m tokenizer train`)"
        )
    if not 0 <= args.val_fraction < 1:
        raise UsageError("--val-fraction must be in [0, 1)")
    spec = corpus_spec(args)
    config = encode.EncodeConfig(
        val_fraction=args.val_fraction,
        inputs_per_shard=max(1, args.inputs_per_shard),
        workers=args.workers,
        backend=args.encoder,
    )
    progress = Progress(sum(corpus.file_size(p) for p in spec.paths), "encode")
    started = time.time()
    try:
        meta = encode.encode_corpus(args.tokenizer, spec, args.output, config, progress)
    except ValueError as exc:
        raise UsageError(str(exc))
    finally:
        progress.close()
    train_split, val_split = meta["splits"]["train"], meta["splits"]["val"]
    print(f"bins:  {args.output}  ({meta['dtype']}, {len(train_split['shards'])} shard(s))")
    print(f"train: {train_split['tokens']:,} tokens in {train_split['documents']:,} documents")
    print(
        f"val:   {val_split['tokens']:,} tokens in {val_split['documents']:,} documents  ({time.time() - started:.1f}s)"
    )
    print_read_report(meta["read"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROGRAM, description="lmforge tokenizer: byte-level BPE and token bins.")
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    trainer = commands.add_parser(
        "train",
        help="train a byte-level BPE tokenizer",
        epilog=TRAIN_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a byte-level BPE tokenizer (HF tokenizers) on a corpus, streamed.",
    )
    add_corpus_arguments(trainer)
    trainer.add_argument(
        "--vocab-size", type=int, default=32_000, help="including special tokens (default: %(default)s)"
    )
    trainer.add_argument(
        "--pattern",
        default=train.DEFAULT_PATTERN,
        help=f"split regex: {', '.join(train.PATTERNS)} or a regex of your own (default: %(default)s, GPT-4's)",
    )
    trainer.add_argument(
        "--special-tokens",
        default="",
        metavar="TOK,…",
        help=f"more special tokens, after the {train.RESERVED_SPECIALS} reserved ids (<|endoftext|>=0, <|reserved_1..15|>)",
    )
    trainer.add_argument(
        "--min-frequency", type=int, default=2, help="pairs seen fewer times are never merged (default: %(default)s)"
    )
    trainer.add_argument(
        "--max-bytes", type=_size, help="train on a seeded sample of at most this many bytes (e.g. 2e9)"
    )
    trainer.add_argument(
        "--model-max-length",
        type=int,
        default=train.TrainConfig.model_max_length,
        help="the context length written for transformers' AutoTokenizer (default: %(default)s; "
        "python -m train.export writes the model's)",
    )
    trainer.add_argument(
        "--max-doc-chars",
        type=int,
        default=train.TrainConfig.max_doc_chars,
        help="cut longer documents (default: %(default)s)",
    )
    trainer.add_argument("--seed", type=int, default=0, help="seed of the --max-bytes sample (default: %(default)s)")
    trainer.add_argument("--output", required=True, metavar="TOKDIR")
    trainer.set_defaults(run=run_train)

    encoder = commands.add_parser(
        "encode",
        help="encode a corpus into memory-mapped token bins",
        epilog=ENCODE_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Encode a corpus into token bins (docs/formats.md), one process per core.",
    )
    encoder.add_argument("--tokenizer", required=True, metavar="TOKDIR")
    add_corpus_arguments(encoder)
    encoder.add_argument("--output", required=True, metavar="BINDIR")
    encoder.add_argument(
        "--val-fraction",
        type=float,
        default=encode.DEFAULT_VAL_FRACTION,
        help="share of documents (by id hash) in the validation split (default: %(default)s)",
    )
    encoder.add_argument(
        "--inputs-per-shard", type=int, default=1, help="input files per bin shard (default: %(default)s)"
    )
    encoder.add_argument("--workers", type=int, default=0, help="encoding processes (default: one per core)")
    encoder.add_argument(
        "--encoder",
        choices=("tiktoken", "hf"),
        default="tiktoken",
        help="tiktoken (checked against HF on every shard, HF if they differ) or HF only (default: %(default)s)",
    )
    encoder.set_defaults(run=run_encode)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.run(args)
    except UsageError as exc:
        report(PROGRAM, exc)
        return 2

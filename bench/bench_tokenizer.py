"""Tokenizer stage against the obvious alternatives, on one corpus in one run.

    .venv/bin/python bench/bench_tokenizer.py [--vocab-size 8000] [--repeats 3]

Corpus: the real text in ../shared/fixtures (Project Gutenberg books, cleaned articles of the Latgalian,
Ukrainian and Japanese Wikipedia dumps, tinyshakespeare) written as Parquet shards like the pipeline's;
every tenth document is held out.

1. Training time: `tokenizer.train.train` reading the shards (Arrow batches, streaming) versus HF
   `Tokenizer.train_from_iterator` on the same texts already in memory, same settings. Goal ≤ 1.1×.
2. Encoding throughput on all cores: `tokenizer.encode.encode_corpus` (spawned workers, tiktoken) writing
   bins, versus HF `encode_batch` with its own threads on the texts in memory. Goal ≥ 3×.
3. Compression on the held-out documents: UTF-8 bytes per token, this tokenizer versus a sentencepiece BPE
   model of the same vocabulary size trained on the same text (byte fallback on), lossless like ours, and
   with sentencepiece's lossy defaults for reference. Goal: more bytes/token than the lossless one.
Runs alternate; medians are reported.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tokenizer import corpus, encode, train  # noqa: E402
from tokenizer.encoding import Encoder  # noqa: E402

FIXTURES = REPO.parent / "shared" / "fixtures"


def load_documents() -> list[str]:
    from pipeline.sources import mediawiki, wikipedia

    if not FIXTURES.is_dir():
        sys.exit(f"needs the real text in {FIXTURES}")
    documents = []
    for path in sorted((FIXTURES / "prose").glob("*.txt")):
        text = path.read_text(encoding="utf-8-sig").replace("\r\n", "\n")
        documents += [chunk for chunk in text.split("\n\n\n") if chunk.strip()]  # chapters and sections
    for dump in sorted((FIXTURES / "wikipedia").glob("*wiki-*.xml*")):
        if "truncated" in dump.name or "tiny" in dump.name:
            continue
        cleaner = wikipedia.CleanWikitext(mediawiki.read_siteinfo(str(dump)), keep_tables=False).cleaner
        for page in mediawiki.read_dump(str(dump)):
            if isinstance(page, mediawiki.Page):
                text = cleaner.clean(page.text)
                if text:
                    documents.append(text)
    return documents


def write_shards(folder: pathlib.Path, documents: list[str], shards: int = 4) -> list[str]:
    folder.mkdir(parents=True)
    for shard in range(shards):
        part = [(f"doc-{i}", d) for i, d in enumerate(documents) if i % shards == shard]
        pq.write_table(
            pa.table({"id": [p[0] for p in part], "text": [p[1] for p in part]}), folder / f"part-{shard:05d}.parquet"
        )
    return sorted(str(p) for p in folder.glob("*.parquet"))


def time_it(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", type=int, default=1, help="repeat the corpus (a longer encoding run)")
    args = parser.parse_args()

    documents = load_documents() * args.copies
    held_out = documents[::10]
    training = [d for i, d in enumerate(documents) if i % 10]
    megabytes = sum(len(d.encode()) for d in training) / 1e6
    print(
        f"corpus: {len(training)} training documents ({megabytes:.1f} MB), {len(held_out)} held out "
        f"({sum(len(d.encode()) for d in held_out) / 1e6:.1f} MB); vocabulary {args.vocab_size}; {os.cpu_count()} cores"
    )
    config = train.TrainConfig(vocab_size=args.vocab_size)

    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        spec = corpus.CorpusSpec(write_shards(folder / "shards", training))

        # 1. training
        ours, direct = [], []
        for repeat in range(args.repeats):
            runs = [
                ("ours", lambda: train.train(spec, config, str(folder / "tok"))),
                ("direct", lambda: train.train_from_texts(list(training), config)),
            ]
            for name, run in runs if repeat % 2 == 0 else runs[::-1]:
                (ours if name == "ours" else direct).append(time_it(run))
        ratio = statistics.median(ours) / statistics.median(direct)
        print(
            f"training: shards {statistics.median(ours):.2f} s, in-memory HF {statistics.median(direct):.2f} s "
            f"(runs {', '.join(f'{a:.2f}/{b:.2f}' for a, b in zip(ours, direct))}); ratio {ratio:.2f}x (goal <= 1.1)"
        )

        # 2. encoding
        tokdir = str(folder / "tok")
        encoder = Encoder(tokdir, "hf")
        ours, direct = [], []
        for repeat in range(args.repeats):

            def run_ours():
                encode.encode_corpus(tokdir, spec, str(folder / f"bins-{time.monotonic_ns()}"), encode.EncodeConfig())

            def run_direct():
                encoder.hf.encode_batch(training, add_special_tokens=False)

            runs = [("ours", run_ours), ("direct", run_direct)]
            for name, run in runs if repeat % 2 == 0 else runs[::-1]:
                (ours if name == "ours" else direct).append(time_it(run))
        ours_rate, direct_rate = megabytes / statistics.median(ours), megabytes / statistics.median(direct)
        print(
            f"encoding: bins on all cores {ours_rate:.1f} MB/s ({statistics.median(ours):.2f} s, with reading and "
            f"writing), HF encode_batch {direct_rate:.1f} MB/s ({statistics.median(direct):.2f} s); "
            f"speed-up {ours_rate / direct_rate:.2f}x (goal >= 3)"
        )

        # 3. compression
        held_bytes = sum(len(d.encode()) for d in held_out)
        ours_ids = Encoder(tokdir).encode(held_out)
        ours_tokens = sum(map(len, ours_ids))
        print(f"compression on held-out text: ours {held_bytes / ours_tokens:.3f} bytes/token ({ours_tokens:,} tokens)")
        for name, settings, texts in SENTENCEPIECE_SETTINGS(training):
            bytes_per_token, round_trips, seconds = sentencepiece_compression(
                folder, texts, held_out, args.vocab_size, settings
            )
            print(
                f"  sentencepiece BPE, {name}: {bytes_per_token:.3f} bytes/token, {round_trips}/{len(held_out)} held-out "
                f"documents decode to themselves (trained in {seconds:.1f} s)"
            )


def SENTENCEPIECE_SETTINGS(training: list[str]):
    """Lossless (the fair comparison: every byte kept, as byte-level BPE keeps it) and sentencepiece's
    defaults (NFKC, whitespace collapsed: fewer tokens because newlines and repeated spaces are lost)."""
    lossless = dict(
        normalization_rule_name="identity", remove_extra_whitespaces=False, allow_whitespace_only_pieces=True
    )
    return [
        ("lossless (identity normalisation, trained on the same documents)", lossless, training),
        (
            "defaults (nmt_nfkc, trained on lines: lossy)",
            {},
            [line for d in training for line in d.split("\n") if line.strip()],
        ),
    ]


def sentencepiece_compression(folder, texts, held_out, vocab_size, settings) -> tuple[float, int, float]:
    import sentencepiece as spm

    prefix = str(folder / "spm")
    started = time.perf_counter()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_prefix=prefix,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        character_coverage=0.9995,
        max_sentence_length=1 << 24,
        num_threads=os.cpu_count(),
        minloglevel=2,
        **settings,
    )
    seconds = time.perf_counter() - started
    model = spm.SentencePieceProcessor(model_file=prefix + ".model")
    ids = model.encode(held_out)
    round_trips = sum(model.decode(i) == d for i, d in zip(ids, held_out))
    return sum(len(d.encode()) for d in held_out) / sum(map(len, ids)), round_trips, seconds


if __name__ == "__main__":
    main()

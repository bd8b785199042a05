"""One key with a huge state: 50,000 copies of one page (a templated page, a boilerplate article) through
`python -m pipeline dedup`'s stages, on the DirectRunner, with a few hundred other documents beside them.

    .venv/bin/python bench/bench_hub.py [--copies 50000] [--others 500] [--near]

Without --near the copies are exact: one exact-dedup group of 50,000 (its combiner holds the survivor and the
removed ids). With --near each copy has a different number in it, so they reach MinHash: every band of every
copy falls in the same LSH bucket, and the connected-components steps see a hub node with 50,000 neighbours.
Reports the wall time, the kept and removed counts, and the largest per-key state (the largest bucket and
cluster, from the dedup counters; the largest report row).
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import random
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pyarrow.parquet as pq  # noqa: E402

from pipeline import recipe as recipes  # noqa: E402
from pipeline.beam import curate  # noqa: E402
from pipeline.common import synthetic  # noqa: E402
from pipeline.common.schema import Document  # noqa: E402
from pipeline.output import sinks  # noqa: E402


def write_corpus(folder: pathlib.Path, copies: int, others: int, near: bool) -> None:
    rng = random.Random(0)
    vocab = synthetic.vocabulary()
    page = synthetic.word_document(rng, 300, vocab)
    docs = [
        Document(id=f"copy-{i:06d}", text=f"{page} Item {i}." if near else page, source="commoncrawl")
        for i in range(copies)
    ]
    docs += [
        Document(id=f"other-{i:04d}", text=synthetic.word_document(rng, 300, vocab), source="commoncrawl")
        for i in range(others)
    ]
    folder.mkdir(parents=True)
    per_file = 10_000
    for index, start in enumerate(range(0, len(docs), per_file)):
        sinks.write_documents(str(folder / f"part-{index:05d}.parquet"), docs[start : start + per_file])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=50_000)
    parser.add_argument("--others", type=int, default=500)
    parser.add_argument("--near", action="store_true", help="copies that differ by a number (MinHash's hub)")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger().setLevel(logging.INFO)  # importing Beam may already have configured the root logger
    logging.getLogger("apache_beam").setLevel(logging.WARNING)  # the largest bucket and cluster are logged
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        write_corpus(folder / "in", args.copies, args.others, args.near)
        recipe = recipes.from_table(
            {
                "output": {"dir": str(folder / "out")},
                "sources": {"shards": {"inputs": [str(folder / "in" / "*.parquet")]}},
            }
        )
        mode = "in_memory" if args.workers == 1 else "multi_processing"
        started = time.perf_counter()
        stats = curate.run(recipe, [f"--direct_num_workers={args.workers}", f"--direct_running_mode={mode}"])
        seconds = time.perf_counter() - started
        report = pq.read_table(folder / "out" / "duplicates").to_pylist()
        largest = max((row["cluster_size"] for row in report), default=0)
        print(
            f"{'near' if args.near else 'exact'} copies: {args.copies:,} + {args.others} others, "
            f"{args.workers} worker(s): {seconds:.1f} s"
        )
        print(f"kept {stats.kept:,}, dropped {dict(stats.dropped)}, problems {stats.problems()}")
        print(f"largest duplicate group in the report: {largest:,} documents")


if __name__ == "__main__":
    main()

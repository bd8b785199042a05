"""datatrove's MinHash deduplication (its four stages, as its examples/minhash_deduplication.py builds them) on a
folder of Parquet shards, with FineWeb's settings: 5-grams, 14 buckets × 8 hashes, 64-bit hashes. Run by
`bench/bench_spark.py dedup` with the python of datatrove's own venv (never imported by lmforge).

    PEER_VENV/bin/python bench/datatrove_minhash.py --input SHARDS_DIR --output DIR --workers 2

Writes the kept documents as DIR/deduped/*.jsonl.gz (their `id` is the shard's id column).
"""

from __future__ import annotations

import argparse
import os


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
    )
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers.jsonl import JsonlWriter
    from datatrove.utils.hashing import HashConfig

    config = MinhashConfig(hash_config=HashConfig(precision=64), num_buckets=14, hashes_per_bucket=8, n_grams=5)
    out = args.output
    tasks = len([name for name in os.listdir(args.input) if name.endswith(".parquet")])

    def reader():
        return ParquetReader(args.input, text_key="text", id_key="id", glob_pattern="*.parquet")

    signatures = LocalPipelineExecutor(
        pipeline=[reader(), MinhashDedupSignature(output_folder=f"{out}/signatures", config=config)],
        tasks=tasks,
        workers=args.workers,
        logging_dir=f"{out}/logs/signatures",
    )
    buckets = LocalPipelineExecutor(
        pipeline=[MinhashDedupBuckets(input_folder=f"{out}/signatures", output_folder=f"{out}/buckets", config=config)],
        tasks=config.num_buckets,
        workers=args.workers,
        logging_dir=f"{out}/logs/buckets",
        depends=signatures,
    )
    clusters = LocalPipelineExecutor(
        pipeline=[MinhashDedupCluster(input_folder=f"{out}/buckets", output_folder=f"{out}/remove_ids", config=config)],
        tasks=1,
        logging_dir=f"{out}/logs/clusters",
        depends=buckets,
    )
    filtered = LocalPipelineExecutor(
        pipeline=[
            reader(),
            MinhashDedupFilter(input_folder=f"{out}/remove_ids"),
            JsonlWriter(output_folder=f"{out}/deduped"),
        ],
        tasks=tasks,
        workers=args.workers,
        logging_dir=f"{out}/logs/filter",
        depends=clusters,
    )
    filtered.run()


if __name__ == "__main__":
    main()

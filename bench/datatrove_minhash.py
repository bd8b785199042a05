"""datatrove's MinHash deduplication (its four stages, as its examples/minhash_deduplication.py builds them) on a
folder of Parquet shards, with FineWeb's settings: 5-grams, 14 buckets × 8 hashes, 64-bit hashes. Run by
`bench/bench_spark.py dedup` with the python of datatrove's own venv (never imported by lmforge).

    PEER_VENV/bin/python bench/datatrove_minhash.py --input SHARDS_DIR --output DIR --workers 2
    PEER_VENV/bin/python bench/datatrove_minhash.py --input SHARDS_DIR --output DIR --signatures 1,2,3

Writes the kept documents as DIR/deduped/*.jsonl.gz (their `id` is the shard's id column).
"""

from __future__ import annotations

import argparse
import os


def write_signatures(folder: str, output: str, seeds: list[int]) -> None:
    """datatrove's MinHash signatures (the first stage's own `get_shingles` and `get_signature`) of every document of
    the Parquet shards in `folder`, in the shards' sorted order, for each seed: OUTPUT/signatures-SEED.npy, one row of
    14 × 8 64-bit hashes a document (`bench_spark.py recall` bands them)."""
    import glob

    import numpy as np
    import pyarrow.parquet as pq
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
    from datatrove.utils.hashing import HashConfig

    texts = pq.read_table(sorted(glob.glob(os.path.join(folder, "*.parquet"))), columns=["text"]).column("text")
    for seed in seeds:
        config = MinhashConfig(
            hash_config=HashConfig(precision=64), num_buckets=14, hashes_per_bucket=8, n_grams=5, seed=seed
        )
        stage = MinhashDedupSignature(output_folder=os.path.join(output, "unused"), config=config)
        rows = [
            np.array(stage.get_signature(stage.get_shingles(text)), dtype=np.uint64).ravel()
            for text in texts.to_pylist()
        ]
        np.save(os.path.join(output, f"signatures-{seed}.npy"), np.stack(rows))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--signatures", metavar="SEEDS", help="only write the signatures for these seeds (1,2,3)")
    args = parser.parse_args()
    if args.signatures:
        write_signatures(args.input, args.output, [int(seed) for seed in args.signatures.split(",")])
        return

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

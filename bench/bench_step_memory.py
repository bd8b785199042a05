"""Peak memory of each step of the curation pipeline without a runner: every DoFn, CombineFn and step function
fed the same fixed-size bundles, 10k to 1M elements in all, in a fresh process per run. A step whose peak grows
with the number of elements holds something it should not; shard writing may hold one shard, no more.

    .venv/bin/python bench/bench_step_memory.py [--sizes 10000,100000,1000000] [--steps sign,stars,...]

Steps: `sign` (MinHash signatures and band keys of 256-document batches), `exact` (the exact-dedup combiner over
groups of 4 copies), `buckets` (star edges of LSH buckets of 8 members), `stars` (large-star and small-star on nodes of 8 neighbours), `remove` (the removal join's
step), `funnels` (merging one funnel per unit), `shards` (writing 10,000-document shards one after the other).
Documents are 60-word synthetic texts. Prints peak RSS per step and size, and the ratio largest / smallest.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import resource
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BUNDLE = 256
SHARD_DOCUMENTS = 10_000


def documents(count: int):
    from pipeline.common import synthetic
    from pipeline.common.schema import Document

    rng = random.Random(0)
    vocab = synthetic.vocabulary()
    for index in range(count):
        yield Document(id=f"d-{index:07d}", text=synthetic.word_document(rng, 60, vocab), source="commoncrawl")


def bundles(items, size: int = BUNDLE):
    bundle = []
    for item in items:
        bundle.append(item)
        if len(bundle) == size:
            yield bundle
            bundle = []
    if bundle:
        yield bundle


def run_step(step: str, count: int, folder: str) -> dict:
    from pipeline.beam import write
    from pipeline.dedup import minhash, stages
    from pipeline.output.stats import Funnel

    started = time.perf_counter()
    if step == "sign":
        fn = stages._SignFn(minhash.MinHashConfig.create(0.8, 112), ())
        fn.setup()
        for batch in bundles(documents(count)):
            for _ in fn.process(batch):
                pass
    elif step == "exact":
        combine = stages._KeepSurvivor(())
        for group in bundles(documents(count), 4):
            accumulator = combine.create_accumulator()
            for doc in group:
                accumulator = combine.add_input(accumulator, doc)
            combine.extract_output(accumulator)
    elif step == "buckets":
        for bucket in range(count // 8):
            members = [((0, 0, f"n-{bucket}-{k}"), None) for k in range(8)]
            for _ in stages._bucket_edges((f"band-{bucket}".encode(), members), None):
                pass
    elif step == "stars":
        for node in range(count):
            neighbours = {(0, 0, f"n-{node + k}") for k in range(1, 9)}
            key = (0, 0, f"n-{node}")
            for _ in minhash.large_star(key, neighbours):
                pass
            for _ in minhash.small_star(key, neighbours):
                pass
    elif step == "remove":
        for doc in documents(count):
            for _ in stages._remove_marked((doc.id, {"docs": [doc], "removed": []})):
                pass
    elif step == "funnels":
        combine = write._MergeFunnels()
        accumulator = combine.create_accumulator()
        for index in range(count):
            funnel = Funnel(input_files=1, records_read=3, records_in=2, kept=1)
            funnel.drop(f"filters.rule_{index % 20}")
            accumulator = combine.add_input(accumulator, funnel)
        combine.extract_output(accumulator)
    elif step == "shards":
        fn = write._WriteShardFn(folder, "parquet", write.DOCUMENTS)
        shards = -(-count // SHARD_DOCUMENTS)
        for index, shard in enumerate(bundles(documents(count), SHARD_DOCUMENTS)):
            for _ in fn.process((index, {"items": shard, "ids": [None]}), shards):
                pass
    else:
        raise SystemExit(f"no step {step!r}")
    return {
        "seconds": time.perf_counter() - started,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--steps", default="sign,exact,buckets,stars,remove,funnels,shards")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"{'step':8} " + " ".join(f"{size:>12,}" for size in sizes) + "   largest/smallest")
    for step in args.steps.split(","):
        peaks = []
        for size in sizes:
            with tempfile.TemporaryDirectory() as folder:
                command = [sys.executable, __file__, "--child", step, str(size), folder]
                result = subprocess.run(command, capture_output=True, text=True, check=True)
                peaks.append(json.loads(result.stdout.strip().splitlines()[-1])["peak_mb"])
        print(f"{step:8} " + " ".join(f"{peak:10.0f}MB" for peak in peaks) + f"   {max(peaks) / min(peaks):.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, step, size, folder = sys.argv
        print(json.dumps(run_step(step, int(size), folder)))
    else:
        main()

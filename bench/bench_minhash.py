"""MinHash deduplication: signature throughput against a reference, and the Beam pipeline at growing sizes.

    .venv/bin/python bench/bench_minhash.py signatures [--docs 2000] [--repeats 5]
    .venv/bin/python bench/bench_minhash.py pipeline [--sizes 25000,50000,100000] [--workers 2]

`signatures`: documents per second on one core for ~1 KB and ~5 KB documents, this project's `Signer`
beside a straightforward reference computed the way FineWeb's tooling does it (per document: SHA-1 of
each 5-word shingle string, then numpy broadcasting of the hashes against the permutations modulo the
Mersenne prime). Both normalise the text the same way. Runs alternate; medians are reported.

`pipeline`: `python -m pipeline dedup` on DirectRunner over generated shards (10% of documents are near
copies of another), with wall time, the peak resident memory of the runner process and of the largest
SDK worker process (sampled every 0.2 s), and the largest LSH bucket and cluster (what bounds the memory
the pipeline's own steps hold per key), read from the command's log.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import pathlib
import random
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.common import synthetic  # noqa: E402
from pipeline.common.schema import Document  # noqa: E402
from pipeline.dedup import minhash, normalise  # noqa: E402
from pipeline.output import sinks  # noqa: E402

MERSENNE_PRIME = np.uint64((1 << 61) - 1)
MAX_HASH = np.uint64((1 << 32) - 1)


class ReferenceSigner:
    """Per document: SHA-1 shingle hashes, broadcast against (a, b) permutations mod 2⁶¹ − 1."""

    def __init__(self, num_perm: int, ngram: int, seed: int = 1):
        gen = np.random.RandomState(seed)
        self.a = gen.randint(1, MERSENNE_PRIME, size=num_perm, dtype=np.uint64)
        self.b = gen.randint(0, MERSENNE_PRIME, size=num_perm, dtype=np.uint64)
        self.ngram = ngram

    def signature(self, text: str) -> np.ndarray:
        words = normalise(text).split()
        n = min(self.ngram, len(words)) or 1
        shingles = [" ".join(words[i : i + n]) for i in range(max(len(words) - n + 1, 1))]
        hashes = np.array(
            [struct.unpack("<Q", hashlib.sha1(s.encode("utf-8")).digest()[:8])[0] for s in shingles], dtype=np.uint64
        ).reshape(-1, 1)
        return np.minimum((hashes * self.a + self.b) % MERSENNE_PRIME, MAX_HASH).min(axis=0)


def documents(count: int, approx_bytes: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    vocab = synthetic.vocabulary()
    words = max(approx_bytes // 6, 5)  # about six bytes per word with its space
    return [synthetic.word_document(rng, words, vocab) for _ in range(count)]


def bench_signatures(args) -> dict:
    config = minhash.MinHashConfig.create()
    ours = minhash.Signer(config.num_perm, config.ngram, config.seed)
    reference = ReferenceSigner(config.num_perm, config.ngram)
    results = {}
    for size in (1000, 5000):
        texts = documents(args.docs, size, seed=size)
        ours_runs, reference_runs = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for offset in range(0, len(texts), 256):  # the Beam stage signs batches of up to 256
                ours.signatures(texts[offset : offset + 256])
            ours_runs.append(time.perf_counter() - start)
            start = time.perf_counter()
            for text in texts:
                reference.signature(text)
            reference_runs.append(time.perf_counter() - start)
        ours_s, reference_s = statistics.median(ours_runs), statistics.median(reference_runs)
        results[f"~{size // 1000} KB"] = {
            "mean_bytes": round(sum(map(len, texts)) / len(texts)),
            "lmforge_docs_per_s": round(len(texts) / ours_s),
            "reference_docs_per_s": round(len(texts) / reference_s),
            "speedup": round(reference_s / ours_s, 2),
        }
    return {"documents": args.docs, "repeats": args.repeats, "num_perm": config.num_perm, "results": results}


def write_corpus(folder: pathlib.Path, count: int, shards: int = 16) -> dict[str, str]:
    """`count` ~1 KB documents; 10% are near copies (2% of words changed) of an earlier one. Returns copy id →
    original id (`bench_spark.py dedup` scores recall with it)."""
    rng = random.Random(count)
    vocab = synthetic.vocabulary()
    texts: list[str] = []
    planted: dict[str, str] = {}
    for number in range(count):
        if texts and rng.random() < 0.1:
            original = rng.randrange(len(texts))
            texts.append(synthetic.edit_words(rng, texts[original], 0.02, vocab))
            planted[f"doc-{number:07d}"] = f"doc-{original:07d}"
        else:
            texts.append(synthetic.word_document(rng, 170, vocab))
    day = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    docs = [Document(id=f"doc-{i:07d}", text=t, source="bench", date=day) for i, t in enumerate(texts)]
    folder.mkdir(parents=True)
    for shard in range(shards):
        sinks.write_documents(str(folder / sinks.shard_name(shard, shards)), docs[shard::shards])
    return planted


def peak_memory(process, peaks: dict, stop: threading.Event) -> None:
    import psutil

    root = psutil.Process(process.pid)
    while not stop.is_set():
        try:
            peaks["runner"] = max(peaks.get("runner", 0), root.memory_info().rss)
            for child in root.children(recursive=True):
                try:
                    peaks["worker"] = max(peaks.get("worker", 0), child.memory_info().rss)
                except psutil.Error:
                    pass
        except psutil.Error:
            return
        stop.wait(0.2)


def bench_pipeline(args) -> dict:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            corpus = pathlib.Path(tmp) / f"in-{size}"
            write_corpus(corpus, size)
            output = pathlib.Path(tmp) / f"out-{size}"
            peaks, stop = {}, threading.Event()
            log_path = pathlib.Path(tmp) / f"log-{size}.txt"
            log_file = log_path.open("w")
            start = time.perf_counter()
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pipeline",
                    "dedup",
                    "--input",
                    str(corpus / "*.parquet"),
                    "--output",
                    str(output),
                    f"--direct_num_workers={args.workers}",
                ],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
            sampler = threading.Thread(target=peak_memory, args=(process, peaks, stop))
            sampler.start()
            process.wait()
            seconds = time.perf_counter() - start
            stop.set()
            sampler.join()
            if process.returncode:
                raise SystemExit(f"dedup of {size} documents failed ({process.returncode})")
            log_file.close()
            stats = json.loads((output / "stats.json").read_text())
            largest = dict(
                re.findall(r"largest (LSH bucket|near-duplicate cluster): (\d+) documents", log_path.read_text())
            )
            rows.append(
                {
                    "documents": size,
                    "seconds": round(seconds, 1),
                    "docs_per_s": round(size / seconds),
                    "near_duplicates_removed": stats["dropped"].get("near_duplicate", 0),
                    "exact_duplicates_removed": stats["dropped"].get("duplicate", 0),
                    "runner_peak_mb": round(peaks.get("runner", 0) / 2**20),
                    "worker_peak_mb": round(peaks.get("worker", 0) / 2**20),
                    "largest_bucket": int(largest.get("LSH bucket", 0)),
                    "largest_cluster": int(largest.get("near-duplicate cluster", 0)),
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr)
    return {"workers": args.workers, "runs": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    signatures = sub.add_parser("signatures")
    signatures.add_argument("--docs", type=int, default=2000)
    signatures.add_argument("--repeats", type=int, default=5)
    pipeline = sub.add_parser("pipeline")
    pipeline.add_argument("--sizes", default="25000,50000,100000")
    pipeline.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    result = bench_signatures(args) if args.what == "signatures" else bench_pipeline(args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

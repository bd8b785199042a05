"""Curation on Spark against Beam, side by side on this machine; run alone (a benchmark beside a test run is noise).

    .venv/bin/python bench/bench_spark.py engines [--pages 3000] [--files 8] [--repeats 3]
    .venv/bin/python bench/bench_spark.py faults [--pages 60]
    .venv/bin/python bench/bench_spark.py memory [--pages 1500] [--factor 8] [--spark-conf KEY=VALUE]
    .venv/bin/python bench/bench_spark.py dedup [--docs 25000,100000] [--repeats 1] [--no-peer] [--engines spark]
        [--spark-conf spark.python.worker.memory=128m] [--shard-size 16MB]
    .venv/bin/python bench/bench_spark.py recall [--docs 100000] [--seeds 1,2,3,4,5]

`engines`: the same pages (with ../shared: real pages, 45% English and the rest rewritten into 13 other languages,
as `bench_commoncrawl.py --peer datatrove` writes them; else generated pages) in --files WARCs, curated by the
whole `python -m pipeline commoncrawl` command on Beam's DirectRunner with two workers and on Spark `local[2]`,
interleaved, each run into a fresh folder (nothing reused); wall seconds (medians), pages per second per core, the
ratio Beam wall / Spark wall (goal ≥ 0.9), and whether both wrote the same bytes.

`faults`: the recipe of every kind of input that tests/test_spark.py runs on a standalone cluster (Common Crawl
WARCs, a Wikipedia multistream dump, local text; exact and MinHash dedup, the quality classifier), on Spark
`local[2]`: once whole; once with its driver killed (SIGKILL to the driver, its JVM and its Python workers) after two
units were committed, then run again. Both must write the DirectRunner's bytes, and the rerun must read the units
committed before the kill back (their commit files untouched). Exits 1 when a check fails.

`memory`: one unit that grows (a single-stream Wikipedia dump of --pages and --factor × --pages real pages, as
`bench_unit_memory.py` writes it) through the Spark engine on `local[1]`, shards of 2 MB (so that the task writing a
shard holds less than the unit's): the peak RSS of the Python workers (sampled every 0.2 s). What bounds it past the
unit step is PySpark's aggregation memory (`spark.python.worker.memory`, 512m by default: a grouping spills to disk
beyond it), so `--spark-conf spark.python.worker.memory=300m` shows the bound moving with the setting.

`dedup`: --docs ~1 KB documents (several sizes: --docs 25000,100000), 10% of them planted near copies (2% of words changed) of an earlier one, as
Parquet; `python -m pipeline dedup` with FineWeb's settings (5-grams, 14 bands × 8 rows) on Beam (two workers) and
on Spark `local[2]`, and datatrove 0.10.1's four MinHash stages with the same settings on two workers (its own venv,
bench/results/peer-datatrove, made by `bench_commoncrawl.py --peer datatrove` or here); wall seconds, documents
per second, the peak RSS of the command's process and of its largest Python worker (sampled every 0.2 s), and the
precision and recall of the removed documents against the planted clusters.

`recall`: whether the recall of `dedup` differs by more than its hash seed moves it: the same planted corpus signed by
lmforge (`minhash.Signer`) and by datatrove (its signature stage's own shingling and hashing, in its venv) for each
of --seeds, both banded 14 × 8 and joined the same way (union-find of band collisions, the smallest id kept); the
precision and recall per seed, and each tool's mean and range.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_commoncrawl import mixed_warcs, peer_venv  # noqa: E402
from bench_minhash import write_corpus  # noqa: E402

SPARK = ["--engine", "spark", "--spark-master", "local[2]"]
BEAM = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def outputs(folder: pathlib.Path) -> dict[str, bytes]:
    files = [*folder.glob("part-*"), *folder.glob("duplicates/part-*"), folder / "stats.json", folder / "README.md"]
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(files)}


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def engines(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        (folder / "warcs").mkdir()
        warcs = mixed_warcs(folder / "warcs", args.pages, args.files)
        base = [sys.executable, "-m", "pipeline", "commoncrawl", "--warcs", *warcs]
        runs: dict[str, list[float]] = {"beam": [], "spark": []}
        same = True
        for repeat in range(args.repeats):
            written = {}
            for engine, flags in (("beam", BEAM), ("spark", SPARK)):
                output = folder / f"{engine}-{repeat}"
                runs[engine].append(timed([*base, "--output", str(output), *flags]))
                written[engine] = outputs(output)
                stats = json.loads((output / "stats.json").read_text())
                shutil.rmtree(output)
                print(f"{engine} run {repeat + 1}: {runs[engine][-1]:.1f} s, {stats['kept']} kept", file=sys.stderr)
            same = same and written["beam"] == written["spark"]
    beam, spark = statistics.median(runs["beam"]), statistics.median(runs["spark"])
    return {
        "pages": args.pages,
        "files": args.files,
        "repeats": args.repeats,
        "beam_s": [round(s, 1) for s in runs["beam"]],
        "spark_s": [round(s, 1) for s in runs["spark"]],
        "beam_pages_per_s_per_core": round(args.pages / beam / 2, 1),
        "spark_pages_per_s_per_core": round(args.pages / spark / 2, 1),
        "beam_over_spark_wall": round(beam / spark, 3),
        "identical_outputs": same,
    }


def faults(args) -> dict:
    import os
    import signal

    from pipeline.beam import curate as beam_curate
    from tests.sparkcluster import (
        committed_units,
        mixed_recipe,
        spark_command,
        wait_for_units,
        with_output,
        write_recipe,
    )

    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        table = mixed_recipe(root, pages=args.pages, articles=max(args.pages // 3, 4))
        beam_curate.run(with_output(table, root / "direct"), ["--direct_num_workers=2"])
        direct = outputs(root / "direct")
        recipe_file = write_recipe(table, root / "recipe.toml")
        whole_s = timed(spark_command(recipe_file, root / "whole", "local[2]"))
        command = spark_command(recipe_file, root / "killed", "local[2]")
        killed = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_units(root / "killed", killed, 2)
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
        before = committed_units(root / "killed")
        mid_run = not (root / "killed" / "stats.json").exists()
        rerun_s = timed(command)
        after = committed_units(root / "killed")
        result = {
            "units": len(after),
            "committed_before_the_kill": len(before),
            "killed_mid_run": mid_run,
            "reused_untouched": all(after.get(path) == written for path, written in before.items()),
            "whole_run_s": round(whole_s, 1),
            "rerun_s": round(rerun_s, 1),
            "whole_run_identical": outputs(root / "whole") == direct,
            "rerun_identical": outputs(root / "killed") == direct,
        }
    checks = ("killed_mid_run", "reused_untouched", "whole_run_identical", "rerun_identical")
    result["passed"] = all(result[check] for check in checks)
    return result


def sample_python_workers(process: subprocess.Popen, peaks: dict, stop: threading.Event) -> None:
    """The largest peak RSS of any Python process below `process` (PySpark's workers, Beam's SDK workers,
    datatrove's), and of the process itself."""
    import psutil

    root = psutil.Process(process.pid)
    while not stop.wait(0.2):
        try:
            children = root.children(recursive=True)
            peaks["driver"] = max(peaks.get("driver", 0), root.memory_info().rss)
        except psutil.NoSuchProcess:
            return
        for child in children:
            try:
                if "python" in child.name():
                    peaks["worker"] = max(peaks.get("worker", 0), child.memory_info().rss)
            except psutil.Error:
                continue


def timed_with_peaks(command: list[str]) -> tuple[float, dict]:
    """Seconds, and the peak RSS (MB) of the command's process and of its largest Python worker."""
    peaks: dict[str, int] = {}
    stop = threading.Event()
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sampler = threading.Thread(target=sample_python_workers, args=(process, peaks, stop))
    sampler.start()
    code = process.wait()
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    if code:
        raise subprocess.CalledProcessError(code, command)
    return seconds, {name: round(value / 2**20) for name, value in peaks.items()}


def memory(args) -> dict:
    from bench_unit_memory import write_single_stream
    from bench_wikipedia import require_fixtures

    require_fixtures()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        for factor in (1, args.factor):
            dump = folder / f"xxwiki-{factor}x-pages-articles.xml.bz2"
            write_single_stream(dump, args.pages * factor)
            output = folder / f"out-{factor}"
            command = [sys.executable, "-m", "pipeline", "wikipedia", "--dump", str(dump), "--output", str(output),
                       "--no-dedup", "--shard-size", "2MB", "--engine", "spark", "--spark-master", "local[1]",
                       *(f"--conf={setting}" for setting in args.spark_conf)]  # fmt: skip
            seconds, peaks = timed_with_peaks(command)
            stats = json.loads((output / "stats.json").read_text())
            results[f"{factor}x"] = {
                "pages": args.pages * factor,
                "dump_mb": round(dump.stat().st_size / 1e6, 1),
                "kept": stats["kept"],
                "seconds": round(seconds, 1),
                "peak_worker_mb": peaks.get("worker", 0),
            }
    results["spark_conf"] = args.spark_conf
    results["peak_ratio"] = round(
        results[f"{args.factor}x"]["peak_worker_mb"] / max(results["1x"]["peak_worker_mb"], 1), 2
    )
    return results


def precision_recall(ids: list[str], kept: set[str], planted: dict[str, str]) -> dict:
    """Against the planted clusters (each copy joined to its original): a cluster of k documents should lose
    k − 1; a removal beyond that, or from a document that has no copy, is a false one."""
    parent = {doc: doc for doc in ids}

    def root(doc):
        while parent[doc] != doc:
            parent[doc] = parent[parent[doc]]
            doc = parent[doc]
        return doc

    for copy, original in planted.items():
        parent[root(copy)] = root(original)
    clusters: dict[str, list[str]] = {}
    for doc in ids:
        clusters.setdefault(root(doc), []).append(doc)
    removed = set(ids) - kept
    correct = sum(min(len(removed.intersection(c)), len(c) - 1) for c in clusters.values())
    expected = sum(len(c) - 1 for c in clusters.values())
    return {
        "removed": len(removed),
        "expected": expected,
        "precision": round(correct / max(len(removed), 1), 4),
        "recall": round(correct / max(expected, 1), 4),
    }


def kept_ids(folder: pathlib.Path) -> set[str]:
    import pyarrow.parquet as pq

    return set(pq.read_table(sorted(folder.glob("part-*.parquet")), columns=["id"]).column("id").to_pylist())


def dedup_size(count: int, repeats: int, python: pathlib.Path | None, engines: list[str], args) -> dict:
    """One corpus size: lmforge on `engines` (beam, spark; Spark with the --spark-conf settings, both with
    --shard-size when given), and datatrove (`python`: its venv's; None: not run)."""
    settings = ["--bands", "14", "--rows", "8", "--ngram", "5", "--num-perm", "112"]  # exact dedup stays on
    settings += ["--shard-size", args.shard_size] if args.shard_size else []
    spark_conf = args.spark_conf
    names = [*engines, *(["datatrove"] if python else [])]
    spark = [*SPARK, *(f"--conf={setting}" for setting in spark_conf)]
    runs: dict[str, list[float]] = {name: [] for name in names}
    quality, memory = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        planted = write_corpus(folder / "in", count)
        ids = [f"doc-{i:07d}" for i in range(count)]
        base = [sys.executable, "-m", "pipeline", "dedup", "--input", str(folder / "in" / "*.parquet"), *settings]
        for repeat in range(repeats):
            for name in names:
                output = folder / f"{name}-{repeat}"
                if name == "datatrove":
                    command = [str(python), str(REPO / "bench" / "datatrove_minhash.py"), "--input",
                               str(folder / "in"), "--output", str(output), "--workers", "2"]  # fmt: skip
                else:
                    command = [*base, "--output", str(output), *(BEAM if name == "beam" else spark)]
                seconds, memory[name] = timed_with_peaks(command)
                runs[name].append(seconds)
                kept = datatrove_kept(output) if name == "datatrove" else kept_ids(output)
                quality[name] = precision_recall(ids, kept, planted)
                shutil.rmtree(output)
            print(f"{count} docs, run {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in runs.items()),
                  file=sys.stderr)  # fmt: skip
    results: dict = {}
    for name, seconds in runs.items():
        median = statistics.median(seconds)
        results[name] = {
            "seconds": [round(s, 1) for s in seconds],
            "docs_per_s": round(count / median),
            "peak_mb": memory[name],
            **quality[name],
        }
    if python:
        for engine in engines:
            results[f"{engine}_over_datatrove_throughput"] = round(
                statistics.median(runs["datatrove"]) / statistics.median(runs[engine]), 2
            )
    return results


def dedup(args) -> dict:
    python = None
    if not args.no_peer:
        work = REPO / "bench" / "results" / "peer-datatrove"
        work.mkdir(parents=True, exist_ok=True)
        python = peer_venv(work)
    sizes = [int(size) for size in args.docs.split(",")]
    engines = args.engines.split(",")
    return {
        "repeats": args.repeats,
        "spark_conf": args.spark_conf,
        "shard_size": args.shard_size or "the default",
        **{str(size): dedup_size(size, args.repeats, python, engines, args) for size in sizes},
    }


def datatrove_kept(folder: pathlib.Path) -> set[str]:
    import gzip

    kept = set()
    for path in sorted((folder / "deduped").glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as stream:
            kept.update(json.loads(line)["id"] for line in stream)
    return kept


def band_recall(ids: list[str], signatures, planted: dict[str, str], bands: int = 14, rows: int = 8) -> dict:
    """Documents sharing any band of `rows` hashes joined (union-find), the smallest id of each group kept: the
    precision and recall of what LSH banding alone finds, for either tool's signatures."""
    parent = list(range(len(ids)))

    def root(node):
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for band in range(bands):
        first: dict[bytes, int] = {}
        for node, key in enumerate(map(bytes, signatures[:, band * rows : (band + 1) * rows])):
            other = first.setdefault(key, node)
            if other != node:
                parent[root(node)] = root(other)
    groups: dict[int, list[int]] = {}
    for node in range(len(ids)):
        groups.setdefault(root(node), []).append(node)
    return precision_recall(ids, {ids[min(group)] for group in groups.values()}, planted)


def recall(args) -> dict:
    """Recall over hash seeds: the planted corpus of `dedup`, signed by lmforge (`minhash.Signer`, its seed setting)
    and by datatrove (its signature stage's own functions, its seed) for each seed, banded 14 × 8 the same way."""
    import numpy as np
    import pyarrow.parquet as pq

    from pipeline.dedup import minhash

    work = REPO / "bench" / "results" / "peer-datatrove"
    work.mkdir(parents=True, exist_ok=True)
    python = peer_venv(work)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    results: dict = {"documents": args.docs, "seeds": seeds, "lmforge": {}, "datatrove": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        planted = write_corpus(folder / "in", args.docs)
        table = pq.read_table(sorted((folder / "in").glob("*.parquet")), columns=["id", "text"])
        ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
        command = [str(python), str(REPO / "bench" / "datatrove_minhash.py"), "--input", str(folder / "in"),
                   "--output", str(folder), "--signatures", args.seeds]  # fmt: skip
        subprocess.run(command, check=True)
        for seed in seeds:
            ours = minhash.Signer(112, 5, seed).signatures(texts)
            results["lmforge"][seed] = band_recall(ids, ours, planted)
            results["datatrove"][seed] = band_recall(ids, np.load(folder / f"signatures-{seed}.npy"), planted)
    for tool in ("lmforge", "datatrove"):
        found = [run["recall"] for run in results[tool].values()]
        results[f"{tool}_recall"] = {"mean": round(statistics.mean(found), 4), "min": min(found), "max": max(found)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("engines")
    run.add_argument("--pages", type=int, default=3000)
    run.add_argument("--files", type=int, default=8)
    run.add_argument("--repeats", type=int, default=3)
    run = commands.add_parser("faults")
    run.add_argument("--pages", type=int, default=60)
    run = commands.add_parser("memory")
    run.add_argument("--pages", type=int, default=1500)
    run.add_argument("--factor", type=int, default=8)
    run.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE", help="a Spark setting")
    run = commands.add_parser("dedup")
    run.add_argument("--docs", default="100000", help="corpus sizes, comma-separated")
    run.add_argument("--repeats", type=int, default=1)
    run.add_argument("--no-peer", action="store_true", help="lmforge's engines only, no datatrove")
    run.add_argument("--engines", default="beam,spark", help="lmforge's engines to run: beam, spark or both")
    run.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE", help="a Spark setting")
    run.add_argument("--shard-size", help="lmforge's --shard-size (what one task holds while it writes a shard)")
    run = commands.add_parser("recall")
    run.add_argument("--docs", type=int, default=100_000)
    run.add_argument("--seeds", default="1,2,3,4,5", help="hash seeds, comma-separated")
    args = parser.parse_args()
    commands_run = {"engines": engines, "faults": faults, "memory": memory, "dedup": dedup, "recall": recall}
    result = commands_run[args.command](args)
    print(json.dumps(result, indent=2))
    if result.get("passed") is False:
        sys.exit(1)


if __name__ == "__main__":
    main()

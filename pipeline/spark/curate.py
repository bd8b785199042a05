"""Running a recipe on Spark, from Python or from `python -m pipeline … --engine spark`: the same sources, steps,
per-unit commits, dedup rules, shard placement and sinks as on Beam (`pipeline.beam.curate`), so both engines write
the same shards, duplicates report, stats.json and dataset card for the same recipe and inputs.

    from pipeline import recipe
    from pipeline.spark import curate

    r = recipe.load("cc.toml", [("output.dir", "s3://bucket/cc")])
    stats = curate.run(r, "spark://master:7077", {"spark.executor.memory": "8g"})   # a Funnel, as in stats.json

Under `spark-submit` (or in a notebook, on Databricks) the running SparkContext is used; `master` and the settings
are then the ones it was started with. Spark's own `part-…` files are never written: each shard is written by one
task through `pipeline.output.shards`, atomically, rows sorted by id.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence

from pipeline.common.remote import beam_path, is_local, local_path
from pipeline.output import card, report, shards, sinks
from pipeline.output.stats import Funnel
from pipeline.recipe import RECIPE_FILE, Recipe, save
from pipeline.sources import DocumentSettings
from pipeline.spark import dedup, read, session
from pipeline.spark.read import SparkSource
from pipeline.steps import langid, quality
from pipeline.steps.units import WORK_DIR

log = logging.getLogger(__name__)


def _shard_index(index: int) -> int:
    return index


def _sizes_and_funnels(part) -> list[tuple[dict, Funnel]]:
    """A task's (shard set, item size) and ("funnel", Funnel) items → the sizes summed per set, the funnels merged."""
    sizes: dict[int, int] = {}
    funnel = Funnel()
    for tag, value in part:
        if tag == "funnel":
            funnel.merge(value)
        else:
            sizes[tag] = sizes.get(tag, 0) + value
    return [(sizes, funnel)]


def write_shard_sets(context, sets: list[tuple], num_shards: int, fmt: str, shard_bytes: int, funnels: list):
    """Shard sets, each (items, output folder, ShardKind), written as on Beam: each item's shard is `shards.shard_of`
    its key, a shard's rows sorted by key, empty shards written too, and (without `num_shards`) as many shards as it
    takes for about `shard_bytes` each, counted over the whole set first. One task writes one shard, so what a task
    holds is one shard. Two jobs in all: the sizes of every set, with every stage's `funnels` (RDDs of Funnels)
    merged on the way; then every shard. Returns ([(path, rows)] per set, the merged Funnel)."""
    measured = [context.union(funnels).map(lambda funnel: ("funnel", funnel))] if funnels else []
    if not num_shards:
        for number, (items, _, kind) in enumerate(sets):
            measured.append(items.map(lambda item, number=number, kind=kind: (number, kind.size(item))))
    totals: dict[int, int] = {}
    merged = Funnel()
    if measured:
        tasks = context.defaultParallelism  # narrow: the many small partitions read by a few tasks
        for sizes, funnel in context.union(measured).coalesce(tasks).mapPartitions(_sizes_and_funnels).collect():
            merged.merge(funnel)
            for number, size in sizes.items():
                totals[number] = totals.get(number, 0) + size
    writers = []
    for number, (items, output_dir, kind) in enumerate(sets):
        count = num_shards or shards.shard_count(totals.get(number, 0), shard_bytes)

        def write(index, part, number=number, output_dir=output_dir, kind=kind, count=count):
            rows = [item for _, item in part]
            return [(number, shards.write_shard(output_dir, index, count, fmt, kind, rows), len(rows))]

        keyed = items.map(lambda item, kind=kind, count=count: (shards.shard_of(kind.key(item), count), item))
        writers.append(keyed.partitionBy(count, _shard_index).mapPartitionsWithIndex(write))
    written: list[list[tuple[str, int]]] = [[] for _ in sets]
    for number, path, rows in context.union(writers).collect():
        written[number].append((path, rows))
    return written, merged


def model_files(recipe: Recipe) -> list[str]:
    """The files every executor reads: the language-ID model, each source's quality classifier, word lists, PII
    patterns and benchmark index."""
    files = [recipe.langid_model or langid.default_model_path()]
    for settings in recipe.sources.values():
        if isinstance(settings, DocumentSettings):
            if settings.quality_model:
                files.append(quality.model_file(settings.quality_model))
            files += settings.files().values()  # word lists, PII patterns, a benchmark index
    return files


def curate(context, recipe: Recipe, sources: Sequence[SparkSource], checkpoint_base: str | None = None) -> Funnel:
    """The whole recipe on a running SparkContext: sources, unique ids, deduplication (unless switched off), shards,
    the duplicates report, stats.json and the dataset card. Returns the run's Funnel. `checkpoint_base`: the output
    folder as Spark's Hadoop filesystems name it, under which components checkpoint (default: the output folder)."""
    from pyspark import StorageLevel

    out = recipe.output
    level = StorageLevel.DISK_ONLY  # what a stage's output holds is on the executors' disks, never in memory whole
    partitions = context.defaultParallelism  # of every shuffle: a PySpark task costs ~70 ms of CPU however small
    units, planned = read.plan(context, list(sources))
    funnels: list = []  # RDDs of every stage's Funnels, gathered in one job at the end
    read_docs = []
    for source, source_units in zip(sources, units):
        docs, source_funnels = source.read(context, source_units, level)
        read_docs.append(docs)
        funnels += source_funnels
    docs = read_docs[0] if len(read_docs) == 1 else context.union(read_docs)
    docs, id_funnels = dedup.unique_ids(docs, level, partitions)
    funnels.append(id_funnels)
    report_dir = sinks.join(out.dir, card.REPORT_DIR)
    sets = []  # the shard sets to write: the documents first, and the duplicates report
    checkpoints = largest = None
    if recipe.dedup.enabled:
        prefer = tuple(recipe.dedup.prefer)
        docs, exact_funnels, report_rows = dedup.exact(docs, prefer, level, partitions)
        funnels.append(exact_funnels)
        config = recipe.minhash_config()
        if config is not None:
            checkpoints = session.checkpoint_dir(context, checkpoint_base or out.dir)
            docs, near_funnels, near_rows, largest = dedup.near(docs, config, prefer, level, partitions)
            funnels.append(near_funnels)
            report_rows = context.union([report_rows, near_rows])
        if recipe.dedup.line_dedup:
            docs, line_funnels = dedup.common_lines(
                docs, recipe.sources, recipe.kinds, recipe.dedup.line_min_documents, level, partitions
            )
            funnels.append(line_funnels)
        sets.append((report_rows, report_dir, shards.REPORT))
    sets = [(docs, out.dir, shards.DOCUMENTS), *sets]
    written, merged = write_shard_sets(context, sets, out.num_shards, out.format, recipe.shard_bytes, funnels)
    if largest:
        log.info(
            "largest LSH bucket: %d documents; largest near-duplicate cluster: %d",
            *(group.value for group in largest.values()),
        )
    kept = Funnel(kept=sum(rows for _, rows in written[0]))
    stats = shards.write_stats(shards.merge_funnels([*planned, merged, kept]), sinks.join(out.dir, "stats.json"))
    paths = [path for shard_set in written for path, _ in shard_set]
    shards.publish(stats, (out.dir, report_dir), paths)
    card.write_card(stats, recipe)
    if checkpoints is not None and is_local(checkpoints):
        shutil.rmtree(local_path(checkpoints), ignore_errors=True)
    return stats


def run(recipe: Recipe, master: str | None = None, conf: dict[str, str] | None = None) -> Funnel:
    """Checks the recipe, lists its inputs, starts Spark (or joins the running context) and checks its executors,
    writes `OUTPUT/recipe.toml` and runs the recipe; draws the report (`OUTPUT/report.html`) last. Returns the run's
    Funnel, as written to `OUTPUT/stats.json`. `master`: local[N], spark://HOST:PORT, yarn, k8s://…; None: the
    one spark-submit was given, else local[*]. An output given in Hadoop's names for object stores (s3a://,
    abfss://) is written through the same sinks under Beam's (s3://, azfs://)."""
    out = recipe.output
    hadoop_output = out.dir
    out.dir = beam_path(out.dir)
    if out.dir != hadoop_output:
        log.info("output %s: written as %s", hadoop_output, out.dir)
    recipe.check()
    sources = [  # lists the inputs: a user's mistake stops the run before Spark starts
        SparkSource(recipe.source(name), out.dir, recipe.langid_model, out.unit_file_bytes) for name in recipe.sources
    ]
    if is_local(out.dir):
        os.makedirs(local_path(out.dir), exist_ok=True)
    context, started = session.start(master, conf or {})
    try:
        session.check_executors(context, model_files(recipe), sinks.join(out.dir, WORK_DIR))
        save(recipe, sinks.join(out.dir, RECIPE_FILE))
        try:
            curate(context, recipe, sources, hadoop_output)
        except Exception as exc:
            if type(exc).__module__.startswith(("py4j", "pyspark")):  # a Java stack trace: its Python error is enough
                raise RuntimeError(f"the Spark job failed: {session.first_line(exc)}") from None
            raise
    finally:
        if started:
            context.stop()
    report.write(out.dir)
    return Funnel.from_json(sinks.read_json(sinks.join(out.dir, "stats.json")))

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

from pipeline.common.remote import is_local, local_path
from pipeline.output import card, report, shards, sinks
from pipeline.output.stats import Funnel
from pipeline.recipe import RECIPE_FILE, Recipe, save
from pipeline.sources import DocumentSettings
from pipeline.spark import dedup, session
from pipeline.spark.read import SparkSource
from pipeline.steps import langid, quality
from pipeline.steps.units import WORK_DIR

log = logging.getLogger(__name__)


def _shard_index(index: int) -> int:
    return index


def write_shards(items, output_dir: str, num_shards: int, fmt: str, kind: shards.ShardKind, shard_bytes: int):
    """Items → shards placed as on Beam (`shards.shard_of` of each item's key, rows sorted by key, empty shards
    written too), one task per shard, so what a task holds is one shard. Returns [(path, rows)] per shard."""
    count = num_shards or shards.shard_count(items.map(kind.size).sum(), shard_bytes)
    key = kind.key

    def write(index, part):
        rows = [item for _, item in part]
        return [(shards.write_shard(output_dir, index, count, fmt, kind, rows), len(rows))]

    keyed = items.map(lambda item: (shards.shard_of(key(item), count), item)).partitionBy(count, _shard_index)
    return keyed.mapPartitionsWithIndex(write).collect()


def model_files(recipe: Recipe) -> list[str]:
    """The models every executor reads: the language-ID model and each source's quality classifier."""
    files = [recipe.langid_model or langid.default_model_path()]
    for settings in recipe.sources.values():
        if isinstance(settings, DocumentSettings) and settings.quality_model:
            files.append(quality.model_file(settings.quality_model))
    return files


def curate(context, recipe: Recipe, sources: Sequence[SparkSource]) -> Funnel:
    """The whole recipe on a running SparkContext: sources, unique ids, deduplication (unless switched off), shards,
    the duplicates report, stats.json and the dataset card. Returns the run's Funnel."""
    from pyspark import StorageLevel

    out = recipe.output
    level = StorageLevel.DISK_ONLY  # what a stage's output holds is on the executors' disks, never in memory whole
    partitions = context.defaultParallelism * 2
    funnels: list[Funnel] = []
    read = []
    for source in sources:
        docs, source_funnels, _ = source.read(context, level)
        read.append(docs)
        funnels += source_funnels
    docs = read[0] if len(read) == 1 else context.union(read)
    docs, id_funnel = dedup.unique_ids(docs, level, partitions)
    funnels.append(id_funnel)
    report_dir = sinks.join(out.dir, card.REPORT_DIR)
    written = []  # every shard this run writes: the earlier runs' others go once all of them exist
    checkpoints = None
    if recipe.dedup.enabled:
        prefer = tuple(recipe.dedup.prefer)
        docs, exact_funnel, report_rows = dedup.exact(docs, prefer, level, partitions)
        funnels.append(exact_funnel)
        config = recipe.minhash_config()
        if config is not None:
            checkpoints = session.checkpoint_dir(context, out.dir)
            docs, near_funnel, near_rows, largest = dedup.near(docs, config, prefer, level, partitions)
            funnels.append(near_funnel)
            report_rows = context.union([report_rows, near_rows])
            log.info("largest LSH bucket: %d documents; largest near-duplicate cluster: %d", *largest.values())
        report_shards = write_shards(
            report_rows, report_dir, out.num_shards, out.format, shards.REPORT, recipe.shard_bytes
        )
        written += [path for path, _ in report_shards]
    kept_shards = write_shards(docs, out.dir, out.num_shards, out.format, shards.DOCUMENTS, recipe.shard_bytes)
    written += [path for path, _ in kept_shards]
    funnels.append(Funnel(kept=sum(rows for _, rows in kept_shards)))
    stats = shards.write_stats(shards.merge_funnels(funnels), sinks.join(out.dir, "stats.json"))
    shards.publish(stats, (out.dir, report_dir), written)
    card.write_card(stats, recipe)
    if checkpoints is not None and is_local(checkpoints):
        shutil.rmtree(local_path(checkpoints), ignore_errors=True)
    return stats


def run(recipe: Recipe, master: str = session.DEFAULT_MASTER, conf: dict[str, str] | None = None) -> Funnel:
    """Checks the recipe, lists its inputs, starts Spark (or joins the running context) and checks its executors,
    writes `OUTPUT/recipe.toml` and runs the recipe; draws the report (`OUTPUT/report.html`) last. Returns the run's
    Funnel, as written to `OUTPUT/stats.json`."""
    recipe.check()
    out = recipe.output
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
            curate(context, recipe, sources)
        except Exception as exc:
            if type(exc).__module__.startswith(("py4j", "pyspark")):  # a Java stack trace: its Python error is enough
                raise RuntimeError(f"the Spark job failed: {session.first_line(exc)}") from None
            raise
    finally:
        if started:
            context.stop()
    report.write(out.dir)
    return Funnel.from_json(sinks.read_json(sinks.join(out.dir, "stats.json")))

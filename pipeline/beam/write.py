"""Writing on Beam: documents and duplicate reports into deterministic shards (`pipeline.output.sinks` writes
each file), the earlier run's other shards removed once the new set is complete, and the funnels of every stage
merged into one `stats.json`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import posixpath

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

from pipeline.common.remote import expand_glob
from pipeline.common.schema import REPORT_SCHEMA, documents_to_table
from pipeline.output import sinks
from pipeline.output.stats import Funnel

log = logging.getLogger(__name__)


def shard_of(key: str, num_shards: int) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") % num_shards


class _WriteShardFn(beam.DoFn):
    def __init__(self, output_dir: str, fmt: str, kind: ShardKind):
        self.output_dir = output_dir
        self.fmt = fmt
        self.kind = kind

    def process(self, element, num_shards: int):
        index, grouped = element
        items = sorted(grouped["items"], key=self.kind.key)
        path = sinks.join(self.output_dir, sinks.shard_name(index, num_shards, self.fmt) + self.kind.suffix)
        sinks.write_table(path, self.kind.to_table(items), self.fmt)
        Metrics.counter("write", self.kind.counter).inc(len(items))
        Metrics.distribution("write", f"{self.kind.counter}_per_shard").update(len(items))
        yield path, len(items)


class ShardKind:
    """What a set of shards holds: how an item is keyed (shard choice and row order), sized and tabled, and what
    follows the format's extension in its file names."""

    def __init__(self, key, size, to_table, counter: str, suffix: str = ""):
        self.key, self.size, self.to_table, self.counter, self.suffix = key, size, to_table, counter, suffix


DOCUMENTS = ShardKind(
    lambda doc: doc.id, lambda doc: len(doc.text.encode("utf-8", "surrogatepass")), documents_to_table, "kept"
)
REPORT = ShardKind(
    lambda row: row["cluster_id"],
    lambda row: sum(len(i) for i in row["removed_ids"]) + len(row["kept_id"]),
    lambda rows: pa.Table.from_pylist(rows, schema=REPORT_SCHEMA),
    "report_rows",
    # `part-…-of-….parquet.report`: in the shards' format, so that `datasets` loads it with the shards' builder
    # as the dataset card's second config, yet no glob of the kept documents (`OUT/**/*.parquet`) finds it
    ".report",
)
DEFAULT_SHARD_BYTES = 256 * 10**6


def _shard_count(total_bytes: int, shard_bytes: int) -> int:
    return max(1, math.ceil(total_bytes / shard_bytes))


class WriteShards(beam.PTransform):
    """Items → `part-NNNNN-of-MMMMM.<fmt>`, each item's shard chosen by a hash of its key and rows sorted by key,
    so the same items give the same files whatever the runner and the number of workers (empty shards are written
    too). The number of shards is `num_shards`, or (0) as many as it takes for about `shard_bytes` of content
    each, counted over the whole collection first: one shard is what one worker holds while it writes, so memory
    per worker follows the shard size, not the corpus. Returns (path, rows written) per shard. Shards of an
    earlier run in the same folder are left as they are: `PublishShards` removes them once this set is complete."""

    def __init__(
        self,
        output_dir: str,
        num_shards: int = 0,
        fmt: str = "parquet",
        kind: ShardKind = DOCUMENTS,
        shard_bytes: int = DEFAULT_SHARD_BYTES,
    ):
        super().__init__()
        self.output_dir = output_dir
        self.num_shards = num_shards
        self.fmt = fmt
        self.kind = kind
        self.shard_bytes = shard_bytes

    def expand(self, items):
        if self.num_shards:
            count = items.pipeline | "Count" >> beam.Create([self.num_shards])
        else:
            count = (
                items
                | "Sizes" >> beam.Map(self.kind.size)
                | "Total" >> beam.CombineGlobally(sum)
                | "Count" >> beam.Map(_shard_count, self.shard_bytes)
            )
        num_shards = beam.pvalue.AsSingleton(count)
        key = self.kind.key
        keyed = items | "ByShard" >> beam.Map(lambda item, n: (shard_of(key(item), n), item), num_shards)
        every_shard = count | "ShardIds" >> beam.FlatMap(lambda n: [(i, None) for i in range(n)])
        return (
            {"items": keyed, "ids": every_shard}
            | "Group" >> beam.CoGroupByKey()
            | "Write" >> beam.ParDo(_WriteShardFn(self.output_dir, self.fmt, self.kind), num_shards)
        )


class WriteDocuments(beam.PTransform):
    """Documents → shards (see WriteShards); returns (the `kept` funnel per shard, the shards' paths)."""

    def __init__(
        self, output_dir: str, num_shards: int = 0, fmt: str = "parquet", shard_bytes: int = DEFAULT_SHARD_BYTES
    ):
        super().__init__()
        self.shards = WriteShards(output_dir, num_shards, fmt, DOCUMENTS, shard_bytes)

    def expand(self, docs):
        written = docs | "Shards" >> self.shards
        kept = written | "Kept" >> beam.Map(lambda shard: Funnel(kept=shard[1]))
        return kept, written | "Paths" >> beam.Keys()


SHARD_PATTERN = "part-*-of-*"


def stale_shards(directory: str, current: set[str]) -> list[str]:
    """The shard files in `directory` (not below it) that are not this run's `current` names: an earlier run's
    shards of another count or format, and unfinished writes (`….tmp-*`) of a run that was stopped."""
    found = expand_glob(sinks.join(directory, SHARD_PATTERN))
    return [path for path in found if posixpath.basename(path) not in current]


def _publish(stats: Funnel, directories: tuple[str, ...], written: list[str]) -> Funnel:
    """Once every shard of this run is written: the earlier runs' shards that are not among them go, so that
    each folder holds exactly this run's set (`_work/` keeps what a rerun reuses)."""
    for directory in directories:
        current = {posixpath.basename(path) for path in written if posixpath.dirname(path) == directory.rstrip("/")}
        for path in stale_shards(directory, current):
            log.info("removing %s: not a shard of this run", path)
            sinks.delete(path)
    return stats


class PublishShards(beam.PTransform):
    """stats → stats, after removing the shards in `directories` (the output folder, its duplicates report folder)
    that this run did not write; it runs once every path of `written` (a side input) exists."""

    def __init__(self, directories: tuple[str, ...], written):
        super().__init__()
        self.directories, self.written = directories, written

    def expand(self, stats):
        return stats | "Remove" >> beam.Map(_publish, self.directories, beam.pvalue.AsList(self.written))


class _MergeFunnels(beam.CombineFn):
    def create_accumulator(self):
        return Funnel()

    def add_input(self, accumulator, funnel):
        return accumulator.merge(funnel)

    def merge_accumulators(self, accumulators):
        merged = Funnel()
        for accumulator in accumulators:
            merged.merge(accumulator)
        return merged

    def extract_output(self, accumulator):
        return accumulator


def _write_stats(funnel: Funnel, path: str) -> Funnel:
    for problem in funnel.problems():
        log.error("stats do not add up: %s", problem)
    sinks.write_json(path, funnel.to_json())
    return funnel


class WriteStats(beam.PTransform):
    """A PCollection of funnels from every stage → one `stats.json`."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def expand(self, funnels):
        return funnels | "Merge" >> beam.CombineGlobally(_MergeFunnels()) | "Write" >> beam.Map(_write_stats, self.path)

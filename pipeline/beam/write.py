"""Writing on Beam: documents and duplicate reports into deterministic shards (`pipeline.output.shards` places and
writes each one), the earlier run's other shards removed once the new set is complete, and the funnels of every
stage merged into one `stats.json`.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline.output import shards
from pipeline.output.shards import DEFAULT_SHARD_BYTES, DOCUMENTS, REPORT, ShardKind, shard_count, shard_of
from pipeline.output.stats import Funnel

__all__ = ["DOCUMENTS", "REPORT", "PublishShards", "WriteDocuments", "WriteShards", "WriteStats"]


class _WriteShardFn(beam.DoFn):
    def __init__(self, output_dir: str, fmt: str, kind: ShardKind):
        self.output_dir = output_dir
        self.fmt = fmt
        self.kind = kind

    def process(self, element, num_shards: int):
        index, grouped = element
        items = list(grouped["items"])
        path = shards.write_shard(self.output_dir, index, num_shards, self.fmt, self.kind, items)
        Metrics.counter("write", self.kind.counter).inc(len(items))
        Metrics.distribution("write", f"{self.kind.counter}_per_shard").update(len(items))
        yield path, len(items)


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
                | "Count" >> beam.Map(shard_count, self.shard_bytes)
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


class PublishShards(beam.PTransform):
    """stats → stats, after removing the shards in `directories` (the output folder, its duplicates report folder)
    that this run did not write; it runs once every path of `written` (a side input) exists."""

    def __init__(self, directories: tuple[str, ...], written):
        super().__init__()
        self.directories, self.written = directories, written

    def expand(self, stats):
        return stats | "Remove" >> beam.Map(shards.publish, self.directories, beam.pvalue.AsList(self.written))


class _MergeFunnels(beam.CombineFn):
    def create_accumulator(self):
        return Funnel()

    def add_input(self, accumulator, funnel):
        return accumulator.merge(funnel)

    def merge_accumulators(self, accumulators):
        return shards.merge_funnels(accumulators)

    def extract_output(self, accumulator):
        return accumulator


class WriteStats(beam.PTransform):
    """A PCollection of funnels from every stage → one `stats.json`."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def expand(self, funnels):
        return (
            funnels
            | "Merge" >> beam.CombineGlobally(_MergeFunnels())
            | "Write" >> beam.Map(shards.write_stats, self.path)
        )

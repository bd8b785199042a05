"""Shard placement, the same on every engine: which shard an item goes to, how a shard's rows are ordered and
written (through `pipeline.output.sinks`), how many shards a corpus gets, the earlier runs' shards removed once a
new set is complete, and the funnels of every stage merged into one `stats.json`. `pipeline.beam.write` and
`pipeline.spark.curate` only distribute this work, so both engines write the same bytes."""

from __future__ import annotations

import hashlib
import logging
import math
import posixpath
from collections.abc import Iterable

import pyarrow as pa

from pipeline.common.remote import expand_glob
from pipeline.common.schema import REPORT_SCHEMA, documents_to_table
from pipeline.output import sinks
from pipeline.output.stats import Funnel

log = logging.getLogger(__name__)

DEFAULT_SHARD_BYTES = 256 * 10**6
SHARD_PATTERN = "part-*-of-*"


def shard_of(key: str, num_shards: int) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") % num_shards


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


def shard_count(total_bytes: int, shard_bytes: int) -> int:
    """As many shards as it takes for about `shard_bytes` of content each (at least one)."""
    return max(1, math.ceil(total_bytes / shard_bytes))


def write_shard(output_dir: str, index: int, num_shards: int, fmt: str, kind: ShardKind, items: Iterable) -> str:
    """One shard's items, rows sorted by the kind's key, written atomically; returns its path."""
    rows = sorted(items, key=kind.key)
    path = sinks.join(output_dir, sinks.shard_name(index, num_shards, fmt) + kind.suffix)
    sinks.write_table(path, kind.to_table(rows), fmt)
    return path


def stale_shards(directory: str, current: set[str]) -> list[str]:
    """The shard files in `directory` (not below it) that are not this run's `current` names: an earlier run's
    shards of another count or format, and unfinished writes (`….tmp-*`) of a run that was stopped."""
    found = expand_glob(sinks.join(directory, SHARD_PATTERN))
    return [path for path in found if posixpath.basename(path) not in current]


def publish(stats: Funnel, directories: tuple[str, ...], written: list[str]) -> Funnel:
    """Once every shard of this run is written: the earlier runs' shards that are not among them go, so that
    each folder holds exactly this run's set (`_work/` keeps what a rerun reuses)."""
    for directory in directories:
        current = {posixpath.basename(path) for path in written if posixpath.dirname(path) == directory.rstrip("/")}
        for path in stale_shards(directory, current):
            log.info("removing %s: not a shard of this run", path)
            sinks.delete(path)
    return stats


def merge_funnels(funnels: Iterable[Funnel]) -> Funnel:
    merged = Funnel()
    for funnel in funnels:
        merged.merge(funnel)
    return merged


def write_stats(funnel: Funnel, path: str) -> Funnel:
    """The run's funnel as `stats.json`, its identities checked (a failed one is logged, and the command's summary
    names it too)."""
    for problem in funnel.problems():
        log.error("stats do not add up: %s", problem)
    sinks.write_json(path, funnel.to_json())
    return funnel

"""The Beam layer: thin composite transforms around the plain per-document modules.

    paths ─► ProcessWarcs ─► documents ─► ExactDedup ─► WriteShards ─► shards
                 │ stats                      │ stats        │ stats
                 └────────────────────────────┴──────────────┴─► WriteStats ─► stats.json

Each WARC's documents are committed under `<output>/_work/<settings fingerprint>/` before they are passed
on, so a rerun with the same settings reads finished WARCs back instead of processing them again.
"""

from __future__ import annotations

import hashlib
import logging

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline import dedup, sinks
from pipeline.config import ProcessConfig
from pipeline.schema import Document
from pipeline.sources.commoncrawl import warc_key
from pipeline.stats import Funnel, stage_of

log = logging.getLogger(__name__)

STATS_TAG = "stats"


def report_counters(funnel: Funnel) -> None:
    """The funnel as Beam counters (one namespace per stage), so they show in the runner's UI."""
    for name in ("input_files", "warc_records", "records_in"):
        Metrics.counter("read", name).inc(getattr(funnel, name))
    for reason, count in funnel.records_skipped.items():
        Metrics.counter("read", f"skipped.{reason}").inc(count)
    for reason, count in funnel.dropped.items():
        Metrics.counter(stage_of(reason), f"dropped.{reason}").inc(count)
    Metrics.counter("read", "errors").inc(len(funnel.errors))


class ProcessWarcFn(beam.DoFn):
    def __init__(self, config: ProcessConfig, work_dir: str):
        self.config = config
        self.work_dir = work_dir
        self.processor = None

    def setup(self):
        from pipeline.process import WarcProcessor  # loads fastText; runs once per worker

        self.processor = WarcProcessor(self.config)

    def teardown(self):
        if self.processor is not None:
            self.processor.close()

    def process(self, path: str):
        key = warc_key(path)
        docs_path = sinks.join(self.work_dir, f"{key}.parquet")
        stats_path = sinks.join(self.work_dir, f"{key}.stats.json")
        if sinks.exists(docs_path):
            log.info("%s: already processed, reading %s", path, docs_path)
            funnel = Funnel.from_json(sinks.read_json(stats_path))
            docs = sinks.read_documents(docs_path)
        else:
            funnel = Funnel()
            docs = list(self.processor.process(path, funnel))
            if any(error["retryable"] for error in funnel.errors):
                log.warning("%s: network failure, not committed; a rerun will read it again", path)
            else:
                sinks.write_json(stats_path, funnel.to_json())  # the documents file, written last, commits
                sinks.write_documents(docs_path, docs)
        report_counters(funnel)
        yield beam.pvalue.TaggedOutput(STATS_TAG, funnel)
        yield from docs


class ProcessWarcs(beam.PTransform):
    """WARC paths → kept documents, with a `stats` output of one Funnel per WARC."""

    def __init__(self, config: ProcessConfig, output_dir: str):
        super().__init__()
        self.config = config
        self.work_dir = sinks.join(sinks.join(output_dir, "_work"), f"commoncrawl-{config.fingerprint()}")

    def expand(self, paths):
        results = (
            paths
            # one WARC per element, spread over the workers
            | "Spread" >> beam.Reshuffle()
            | "Process" >> beam.ParDo(ProcessWarcFn(self.config, self.work_dir)).with_outputs(STATS_TAG, main="docs")
        )
        # Documents are counted as kept only once they are written (after dedup).
        stats = results[STATS_TAG] | "PreDedup" >> beam.Map(_without_kept)
        return results.docs, stats


def _without_kept(funnel: Funnel) -> Funnel:
    funnel.kept = 0
    return funnel


class _KeepSurvivor(beam.CombineFn):
    """(survivor, copies) over the documents sharing an exact-duplicate key."""

    def __init__(self, prefer_sources: tuple[str, ...]):
        self.prefer_sources = prefer_sources

    def create_accumulator(self):
        return None, 0

    def _better(self, a: Document | None, b: Document | None) -> Document | None:
        if a is None or b is None:
            return a or b
        return dedup.pick_survivor((a, b), self.prefer_sources)

    def add_input(self, accumulator, doc):
        best, count = accumulator
        return self._better(best, doc), count + 1

    def merge_accumulators(self, accumulators):
        best, count = None, 0
        for other, other_count in accumulators:
            best, count = self._better(best, other), count + other_count
        return best, count

    def extract_output(self, accumulator):
        return accumulator


class ExactDedup(beam.PTransform):
    """Keeps one document per normalised-text hash; returns (documents, stats)."""

    def __init__(self, prefer_sources: tuple[str, ...] = ()):
        super().__init__()
        self.prefer_sources = prefer_sources

    def expand(self, docs):
        groups = (
            docs
            | "Key" >> beam.Map(lambda doc: (dedup.exact_key(doc.text), doc))
            | "Survivor" >> beam.CombinePerKey(_KeepSurvivor(self.prefer_sources))
            | "Groups" >> beam.Values()
        )
        survivors = groups | "Survivors" >> beam.Map(lambda group: group[0])
        stats = groups | "Copies" >> beam.Map(_duplicates_funnel)
        return survivors, stats


def _duplicates_funnel(group) -> Funnel:
    funnel = Funnel()
    copies = group[1] - 1
    if copies:
        funnel.drop("duplicate", copies)
        Metrics.counter("dedup", "dropped.duplicate").inc(copies)
    return funnel


def shard_of(doc_id: str, num_shards: int) -> int:
    return int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "little") % num_shards


class _WriteShardFn(beam.DoFn):
    def __init__(self, output_dir: str, num_shards: int, fmt: str):
        self.output_dir = output_dir
        self.num_shards = num_shards
        self.fmt = fmt

    def process(self, element):
        index, grouped = element
        docs = sorted(grouped["docs"], key=lambda doc: doc.id)
        path = sinks.join(self.output_dir, sinks.shard_name(index, self.num_shards, self.fmt))
        sinks.write_documents(path, docs, self.fmt)
        Metrics.counter("write", "kept").inc(len(docs))
        Metrics.counter("write", "shards").inc()
        yield Funnel(kept=len(docs))


class WriteShards(beam.PTransform):
    """Documents → `part-NNNNN-of-MMMMM.<fmt>`, each document's shard chosen by a hash of its id and rows
    sorted by id, so the same documents always give the same files (empty shards are written too)."""

    def __init__(self, output_dir: str, num_shards: int, fmt: str = "parquet"):
        super().__init__()
        self.output_dir = output_dir
        self.num_shards = num_shards
        self.fmt = fmt

    def expand(self, docs):
        keyed = docs | "ByShard" >> beam.Map(lambda doc: (shard_of(doc.id, self.num_shards), doc))
        every_shard = docs.pipeline | "ShardIds" >> beam.Create([(i, None) for i in range(self.num_shards)])
        return (
            {"docs": keyed, "ids": every_shard}
            | "Group" >> beam.CoGroupByKey()
            | "Write" >> beam.ParDo(_WriteShardFn(self.output_dir, self.num_shards, self.fmt))
        )


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
        return (
            funnels
            | "Merge" >> beam.CombineGlobally(_MergeFunnels())
            | "Write" >> beam.Map(_write_stats, self.path)
        )

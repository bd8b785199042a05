"""The Beam layer: a few generic composite transforms around the plain per-document modules.

    ReadSource ─► documents ─► Deduplicate ─────────────► WriteDocuments ─► shards
    (any source)     (ExactDedup, MinHashDedup) │ report ─► WriteShards ─► duplicates/
         │ stats                  │ stats                  │ stats
         └────────────────────────┴────────────────────────┴─► WriteStats ─► stats.json

ReadSource runs any source of `pipeline.sources` through the one unit processor (`pipeline.process`); each unit
of work (a WARC, a part of a dump, a text file) is committed under `<output>/_work/` as its documents stream.
`pipeline.curate` assembles a whole run from a recipe.
"""

from __future__ import annotations

import hashlib
import logging
import math
import posixpath

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

from pipeline import dedup, logs, minhash, process, sinks
from pipeline.process import DEFAULT_FILE_BYTES, UnitProcessor, UnitStore, fingerprint
from pipeline.remote import expand_glob
from pipeline.schema import REPORT_SCHEMA, documents_to_table
from pipeline.sources import Source
from pipeline.stats import Funnel, stage_of

log = logging.getLogger(__name__)

STATS_TAG = "stats"
WORK_DIR = "_work"


def report_counters(funnel: Funnel) -> None:
    """The funnel as Beam counters (one namespace per stage), so they show in the runner's UI."""
    for name in ("input_files", "records_read", "records_in"):
        Metrics.counter("read", name).inc(getattr(funnel, name))
    for reason, count in funnel.records_skipped.items():
        Metrics.counter("read", f"skipped.{reason}").inc(count)
    for reason, count in funnel.dropped.items():
        Metrics.counter(stage_of(reason), f"dropped.{reason}").inc(count)
    Metrics.counter("read", "errors").inc(len(funnel.errors))


class _PlanFn(beam.DoFn):
    """A source's input → its units; an input that cannot be planned (an unreadable index) becomes a Funnel
    error, and the run's other inputs go on."""

    def __init__(self, source: Source, store: UnitStore):
        self.source = source
        self.store = store

    def setup(self):
        logs.to_stderr_in_local_workers()

    def process(self, source_input):
        path = self.source.input_path(source_input)
        try:
            units = list(self.source.plan(source_input))
        except (OSError, ValueError, EOFError) as exc:
            log.error("%s: cannot plan: %s", path, exc)
            funnel = Funnel(input_files=1)
            funnel.error(path, None, f"{type(exc).__name__}: {exc}")
            report_counters(funnel)
            self._record(path, 0)
            yield beam.pvalue.TaggedOutput(STATS_TAG, funnel)
            return
        self._record(path, len(units))
        yield from units

    def _record(self, path: str, units: int) -> None:
        if self.source.splits_inputs:  # the progress display knows the units of the other sources' inputs
            self.store.record_plan(path, units)


class _ProcessUnitFn(beam.DoFn):
    """One unit → its kept documents (streamed, and committed as they stream) and its Funnel on `stats`."""

    def __init__(self, source: Source, store: UnitStore, langid_model: str | None):
        self.source = source
        self.store = store
        self.langid_model = langid_model
        self.processor = None

    def setup(self):
        logs.to_stderr_in_local_workers()
        self.processor = UnitProcessor(self.source, self.langid_model)  # loads fastText: once per worker

    def teardown(self):
        if self.processor is not None:
            self.processor.close()

    def process(self, unit):
        for item in self.store.run(self.processor, unit):
            if isinstance(item, Funnel):
                report_counters(item)
                yield beam.pvalue.TaggedOutput(STATS_TAG, item)
            else:
                yield item


class ReadSource(beam.PTransform):
    """Any source (`pipeline.sources`), from the pipeline's start → kept documents, with a `stats` output of one
    Funnel per unit. Its inputs are listed on the driver when the transform is made; finished units are
    committed under `<output>/_work/<name>-<fingerprint>/`, so a rerun with the same settings, language-ID
    model and code reads them back instead of processing them again."""

    def __init__(
        self, source: Source, output_dir: str, langid_model: str | None = None, max_file_bytes: int = DEFAULT_FILE_BYTES
    ):
        super().__init__()
        self.source = source
        self.inputs = source.inputs()
        self.langid_model = langid_model
        name = f"{source.name}-{fingerprint(source, langid_model, process.code_version(source))}"
        self.store = UnitStore(sinks.join(sinks.join(output_dir, WORK_DIR), name), max_file_bytes)

    def expand(self, pbegin):
        planned = (
            pbegin
            | "Inputs" >> beam.Create(self.inputs)
            | "Plan" >> beam.ParDo(_PlanFn(self.source, self.store)).with_outputs(STATS_TAG, main="units")
        )
        results = (
            planned.units
            | "Spread" >> beam.Reshuffle()  # one unit per element, spread over the workers
            | "Process"
            >> beam.ParDo(_ProcessUnitFn(self.source, self.store, self.langid_model)).with_outputs(
                STATS_TAG, main="docs"
            )
        )
        # Documents are counted as kept only once they are written (after dedup).
        stats = results[STATS_TAG] | "PreDedup" >> beam.Map(_without_kept)
        return results.docs, (stats, planned[STATS_TAG]) | "AllStats" >> beam.Flatten()


def _without_kept(funnel: Funnel) -> Funnel:
    funnel.kept = 0
    return funnel


class _KeepSurvivor(beam.CombineFn):
    """(survivor, ids of the other copies) over the documents sharing an exact-duplicate key. The ids
    held are one group's, like the members of one LSH bucket."""

    def __init__(self, prefer_sources: tuple[str, ...]):
        self.prefer_sources = prefer_sources

    def create_accumulator(self):
        return None, []

    def _merge(self, a, b):
        """Merges b into a, extending a's list in place: a group of many copies (boilerplate pages)
        must not cost a list copy per document."""
        (best_a, removed), (best_b, removed_b) = a, b
        removed.extend(removed_b)
        if best_a is None or best_b is None:
            return best_a or best_b, removed
        best = dedup.pick_survivor((best_a, best_b), self.prefer_sources)
        removed.append((best_b if best is best_a else best_a).id)
        return best, removed

    def add_input(self, accumulator, doc):
        return self._merge(accumulator, (doc, []))

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for accumulator in accumulators:
            merged = self._merge(merged, accumulator)
        return merged

    def extract_output(self, accumulator):
        return accumulator


def _report_row(kind: str, kept_id: str, removed_ids) -> dict:
    removed = sorted(removed_ids)
    return {
        "cluster_id": f"{kind}:{kept_id}",
        "kind": kind,
        "cluster_size": 1 + len(removed),
        "kept_id": kept_id,
        "removed_ids": removed,
    }


class ExactDedup(beam.PTransform):
    """Keeps one document per normalised-text hash; returns (documents, stats, report rows)."""

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
        stats = groups | "Copies" >> beam.Map(lambda group: _dropped("duplicate", len(group[1])))
        report = (
            groups
            | "Duplicated" >> beam.Filter(lambda group: group[1])
            | "Rows" >> beam.Map(lambda group: _report_row("exact", group[0].id, group[1]))
        )
        return survivors, stats, report


def _dropped(reason: str, count: int) -> Funnel:
    funnel = Funnel()
    if count:
        funnel.drop(reason, count)
        Metrics.counter(stage_of(reason), f"dropped.{reason}").inc(count)
    return funnel


class _SignFn(beam.DoFn):
    """Batches of documents → (band key, graph node) per band, or (band key, (node, signature)) when
    candidates are verified."""

    def __init__(self, config: minhash.MinHashConfig, prefer_sources: tuple[str, ...]):
        self.config = config
        self.prefer_sources = prefer_sources

    def setup(self):
        self.signer = minhash.Signer(self.config.num_perm, self.config.ngram, self.config.seed)

    def process(self, batch):
        signatures = self.signer.signatures([doc.text for doc in batch])
        Metrics.counter("dedup", "signatures").inc(len(batch))
        for doc, signature in zip(batch, signatures):
            node = dedup.survivor_key(doc, self.prefer_sources)
            member = (node, signature) if self.config.verify else (node, None)
            for key in minhash.band_keys(signature, self.config.bands, self.config.rows):
                yield key, member


def _bucket_edges(bucket, threshold: float | None):
    _, members = bucket
    members = list(members)
    if len(members) > 1:
        Metrics.distribution("dedup", "bucket_size").update(len(members))
        yield from minhash.bucket_edges(members, threshold)


class _StarStep(beam.PTransform):
    """One large-star or small-star step: every node sees its neighbours (edges in both directions)."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def expand(self, edges):
        return (
            edges
            | "BothWays" >> beam.FlatMap(lambda edge: (edge, edge[::-1]))
            | "Neighbours" >> beam.GroupByKey()
            | "Step" >> beam.FlatMap(lambda node: self.step(node[0], set(node[1])))
        )


def _unconverged(node) -> int:
    """1 when the node breaks the final shape (every component a star around its smallest node): it
    has a parent and children, or more than one parent."""
    _, roles = node
    parents = {value for role, value in roles if role == "parent"}
    has_children = any(role == "child" for role, _ in roles)
    return int(len(parents) > 1 or (bool(parents) and has_children))


UNCONVERGED_COUNTER = "components.unconverged"


class ConnectedComponents(beam.PTransform):
    """Undirected edges → (node, smallest node of its component) for every node that has an edge, by
    `rounds` rounds of large-star then small-star (Kiveris et al., 2014). Nothing is gathered on one
    worker: each step groups by node. Convergence is checked at the end; the nodes that break the final
    shape are counted in the `dedup/components.unconverged` counter (zero once converged), so a driver
    can rerun with more rounds."""

    def __init__(self, rounds: int):
        super().__init__()
        self.rounds = rounds

    def expand(self, edges):
        for index in range(self.rounds):
            edges = (
                edges
                | f"LargeStar{index}" >> _StarStep(minhash.large_star)
                | f"SmallStar{index}" >> _StarStep(minhash.small_star)
            )
        edges = edges | "Distinct" >> beam.Distinct()
        _ = (
            edges
            | "Roles" >> beam.FlatMap(lambda edge: ((edge[0], ("parent", edge[1])), (edge[1], ("child", edge[0]))))
            | "ByNode" >> beam.GroupByKey()
            | "Check" >> beam.Map(_unconverged)
            | "Count" >> beam.CombineGlobally(sum)
            | "Counter" >> beam.Map(lambda count: Metrics.counter("dedup", UNCONVERGED_COUNTER).inc(count))
        )
        return edges


def _cluster_row(cluster) -> dict:
    root, children = cluster
    removed = {node[2] for node in children}
    Metrics.distribution("dedup", "cluster_size").update(1 + len(removed))
    return _report_row("near", root[2], removed)


def _remove_marked(element):
    _, grouped = element
    docs = list(grouped["docs"])
    if grouped["removed"]:
        yield beam.pvalue.TaggedOutput(STATS_TAG, _dropped("near_duplicate", len(docs)))
    else:
        yield from docs


class MinHashDedup(beam.PTransform):
    """Near-duplicate removal: signatures → LSH buckets → star edges → connected components → one
    survivor per component (the smallest survivor key). Returns (documents, stats, report rows).

    Memory per worker is bounded by the largest bucket or component (ids only); documents themselves
    only pass through a join by id."""

    def __init__(
        self, config: minhash.MinHashConfig, prefer_sources: tuple[str, ...] = (), rounds: int = minhash.DEFAULT_ROUNDS
    ):
        super().__init__()
        self.config = config
        self.prefer_sources = prefer_sources
        self.rounds = rounds

    def expand(self, docs):
        threshold = self.config.threshold if self.config.verify else None
        edges = (
            docs
            | "Batch" >> beam.BatchElements(min_batch_size=16, max_batch_size=256)
            | "Sign" >> beam.ParDo(_SignFn(self.config, self.prefer_sources))
            | "Buckets" >> beam.GroupByKey()
            | "Stars" >> beam.FlatMap(_bucket_edges, threshold)
            | "Components" >> ConnectedComponents(self.rounds)
        )
        clusters = edges | "ByRoot" >> beam.Map(lambda edge: (edge[1], edge[0])) | "Clusters" >> beam.GroupByKey()
        report = clusters | "Rows" >> beam.Map(_cluster_row)
        removed = clusters | "Removed" >> beam.FlatMap(lambda c: ((node[2], True) for node in set(c[1])))
        results = (
            {"docs": docs | "ById" >> beam.Map(lambda doc: (doc.id, doc)), "removed": removed}
            | "Join" >> beam.CoGroupByKey()
            | "Keep" >> beam.FlatMap(_remove_marked).with_outputs(STATS_TAG, main="docs")
        )
        return results.docs, results[STATS_TAG], report


class Deduplicate(beam.PTransform):
    """Exact dedup, then (unless `minhash` is None) MinHash near-duplicate removal. Returns (documents,
    stats, report rows); the survivor of every group is the same rule's (`dedup.survivor_key`)."""

    def __init__(
        self,
        minhash_config: minhash.MinHashConfig | None,
        prefer_sources: tuple[str, ...] = (),
        rounds: int = minhash.DEFAULT_ROUNDS,
    ):
        super().__init__()
        self.minhash_config = minhash_config
        self.prefer_sources = prefer_sources
        self.rounds = rounds

    def expand(self, docs):
        docs, exact_stats, exact_report = docs | "Exact" >> ExactDedup(self.prefer_sources)
        if self.minhash_config is None:
            return docs, exact_stats, exact_report
        docs, near_stats, near_report = docs | "MinHash" >> MinHashDedup(
            self.minhash_config, self.prefer_sources, self.rounds
        )
        return (
            docs,
            (exact_stats, near_stats) | "Stats" >> beam.Flatten(),
            (exact_report, near_report) | "Report" >> beam.Flatten(),
        )


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


class UniqueIds(beam.PTransform):
    """Documents → (documents with unique ids, stats). Documents that share an id (an input listed twice, two
    corpora whose records carry the same `id`) would otherwise reach the shards twice, and the near-duplicate
    stage, which joins by id, would treat them as one. Of the documents with one id, the same text is kept once
    (the others are dropped as `duplicate_id`); a different text is kept under `<id>~<8 hex digits of its
    text's SHA-1>` and counted in `renamed_ids`. Which copy keeps the id is decided by content, not arrival."""

    def expand(self, docs):
        results = (
            docs
            | "ById" >> beam.Map(lambda doc: (doc.id, doc))
            | "Group" >> beam.GroupByKey()
            | "Resolve" >> beam.FlatMap(_resolve_ids).with_outputs(STATS_TAG, main="docs")
        )
        return results.docs, results[STATS_TAG]


def _resolve_ids(element):
    doc_id, grouped = element
    docs = list(grouped)
    if len(docs) == 1:
        yield docs[0]
        return
    by_text = sorted(
        ((hashlib.sha1(doc.text.encode("utf-8")).hexdigest(), doc) for doc in docs),
        key=lambda pair: (pair[0], pair[1].source, pair[1].url or ""),
    )
    seen: set[str] = set()
    for digest, doc in by_text:
        if digest in seen:
            continue
        if seen:
            doc.id = f"{doc_id}~{digest[:8]}"
        seen.add(digest)
        yield doc
    log.warning("id %s: %d documents (%d with another text, renamed)", doc_id, len(docs), len(seen) - 1)
    funnel = _dropped("duplicate_id", len(docs) - len(seen))
    funnel.renamed_ids = len(seen) - 1
    Metrics.counter("dedup", "renamed_ids").inc(funnel.renamed_ids)
    yield beam.pvalue.TaggedOutput(STATS_TAG, funnel)


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

"""Deduplication on Beam: unique ids, exact duplicates, MinHash near-duplicates through connected components, and
boilerplate lines across the run (CCNet's).
The rules they apply (normalisation, keys, which copy survives) are `pipeline.dedup`'s and
`pipeline.dedup.minhash`'s, plain functions tested without a pipeline. Each stage returns its documents, a
PCollection of `Funnel`s (its drops) and, for the duplicate stages, the report rows of `duplicates/`.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline import dedup
from pipeline.dedup import lines, minhash
from pipeline.output.stats import STATS_TAG, Funnel, stage_of


class _KeepSurvivor(beam.CombineFn):
    """(survivor, ids of the other copies) over the documents sharing an exact-duplicate key. The ids
    held are one group's, like the members of one LSH bucket."""

    def __init__(self, prefer_sources: tuple[str, ...]):
        self.prefer_sources = prefer_sources

    def create_accumulator(self):
        return None, []

    def _merge(self, a, b):
        return dedup.merge_copies(a, b, self.prefer_sources)

    def add_input(self, accumulator, doc):
        return self._merge(accumulator, (doc, []))

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for accumulator in accumulators:
            merged = self._merge(merged, accumulator)
        return merged

    def extract_output(self, accumulator):
        return accumulator


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
            | "Rows" >> beam.Map(lambda group: dedup.report_row("exact", group[0].id, group[1]))
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
        Metrics.counter("dedup", "signatures").inc(len(batch))
        yield from minhash.band_members(self.signer, batch, self.config, self.prefer_sources)


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
            | "Check" >> beam.Map(lambda node: int(minhash.breaks_star(node[1])))
            | "Count" >> beam.CombineGlobally(sum)
            | "Counter" >> beam.Map(lambda count: Metrics.counter("dedup", UNCONVERGED_COUNTER).inc(count))
        )
        return edges


def _cluster_row(cluster) -> dict:
    row = dedup.cluster_row(*cluster)
    Metrics.distribution("dedup", "cluster_size").update(row["cluster_size"])
    return row


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


class UniqueIds(beam.PTransform):
    """Documents → (documents with unique ids, stats). Documents that share an id (an input listed twice, two
    corpora whose records carry the same `id`) would otherwise reach the shards twice, and the near-duplicate
    stage, which joins by id, would treat them as one. Of the documents with one id, the same text is kept once
    (the others are dropped as `duplicate_id`); a different text is kept under a new id (`dedup.resolve_ids`)."""

    def expand(self, docs):
        results = (
            docs
            | "ById" >> beam.Map(lambda doc: (doc.id, doc))
            | "Group" >> beam.GroupByKey()
            | "Resolve" >> beam.FlatMap(_resolve_ids).with_outputs(STATS_TAG, main="docs")
        )
        return results.docs, results[STATS_TAG]


def _resolve_ids(element):
    docs, funnel = dedup.resolve_ids(element[0], list(element[1]))
    yield from docs
    if funnel is not None:
        for reason, count in funnel.dropped.items():
            Metrics.counter(stage_of(reason), f"dropped.{reason}").inc(count)
        Metrics.counter("dedup", "renamed_ids").inc(funnel.renamed_ids)
        yield beam.pvalue.TaggedOutput(STATS_TAG, funnel)


def _common_line(group, min_documents: int):
    """(line hash, ids of the documents that have it) → (document id, hash) for each, when there are enough."""
    line, ids = group
    ids = list(ids)
    if len(ids) >= min_documents:
        Metrics.distribution("dedup", "line_group_size").update(len(ids))
        for doc_id in ids:
            yield doc_id, line


class _RewriteLines(beam.DoFn):
    def __init__(self, sources: dict, kinds: dict[str, str]):
        self.sources, self.kinds = sources, kinds

    def setup(self):
        self.refilters = lines.Refilters(self.sources, self.kinds)

    def process(self, element):
        _, grouped = element
        common = set(grouped["common"])
        for doc in grouped["docs"]:
            if not common:
                yield doc
                continue
            source = self.refilters.source(doc)
            kept, funnel = lines.rewrite(doc, common, self.refilters.for_source(source), source)
            for reason, count in funnel.dropped.items():
                Metrics.counter(stage_of(reason), f"dropped.{reason}").inc(count)
            yield beam.pvalue.TaggedOutput(STATS_TAG, funnel)
            if kept is not None:
                yield kept


class RemoveCommonLines(beam.PTransform):
    """CCNet's boilerplate lines (`pipeline.dedup.lines`): the lines found in at least `min_documents` documents
    removed from each, which is filtered again by its source's filters. Returns (documents, stats). A worker holds
    one line's document ids at a time (the largest group), and documents only pass through a join by id."""

    def __init__(self, sources: dict, kinds: dict[str, str], min_documents: int = lines.DEFAULT_MIN_DOCUMENTS):
        super().__init__()
        self.sources, self.kinds, self.min_documents = sources, kinds, min_documents

    def expand(self, docs):
        common = (
            docs
            | "Lines" >> beam.FlatMap(lambda doc: ((line, doc.id) for line in lines.document_line_hashes(doc)))
            | "ByLine" >> beam.GroupByKey()
            | "Common" >> beam.FlatMap(_common_line, self.min_documents)
        )
        results = (
            {"docs": docs | "ById" >> beam.Map(lambda doc: (doc.id, doc)), "common": common}
            | "Join" >> beam.CoGroupByKey()
            | "Rewrite" >> beam.ParDo(_RewriteLines(self.sources, self.kinds)).with_outputs(STATS_TAG, main="docs")
        )
        return results.docs, results[STATS_TAG]

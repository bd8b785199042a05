"""Deduplication on Spark: unique ids, exact duplicates, MinHash near-duplicates through connected components and
CCNet's boilerplate lines, with
the rules of `pipeline.dedup` and `pipeline.dedup.minhash` (keys, survivor choice, LSH bands, large-star/small-star)
that the Beam stages (`pipeline.dedup.stages`) apply too, so both engines keep the same documents.

Each stage returns (documents, an RDD of the Funnels of its drops, report rows), all lazy: the run gathers every
stage's funnels in one job at its end. What one task holds is one key's group: the documents of one id, the survivor and removed ids of one exact key, the members of one LSH
bucket, the neighbours of one graph node; documents themselves only pass through joins by id.
"""

from __future__ import annotations

import functools
import itertools
import logging
from typing import Any

from pipeline import dedup
from pipeline.dedup import lines, minhash
from pipeline.output.stats import Funnel

log = logging.getLogger(__name__)

SIGN_BATCH = 256  # documents signed in one numpy pass (as Beam's BatchElements at most)
MAX_ROUNDS = 64  # large-star/small-star converges in O(log² n) rounds (Kiveris et al., 2014): 64 is never reached


def _dropped(reason: str, count: int) -> Funnel:
    funnel = Funnel()
    if count:
        funnel.drop(reason, count)
    return funnel


def _resolve(element) -> list[tuple[str, Any]]:
    docs, funnel = dedup.resolve_ids(element[0], list(element[1]))
    return [("doc", doc) for doc in docs] + ([("funnel", funnel)] if funnel is not None else [])


def unique_ids(docs, storage_level, partitions: int) -> tuple[Any, Any]:
    """Documents → (documents with unique ids, the Funnels of `duplicate_id` drops and renamed ids)."""
    by_id = docs.map(lambda doc: (doc.id, doc)).groupByKey(partitions)
    resolved = by_id.flatMap(_resolve).persist(storage_level)
    funnels = resolved.filter(lambda item: item[0] == "funnel").map(lambda item: item[1])
    return resolved.filter(lambda item: item[0] == "doc").map(lambda item: item[1]), funnels


def exact(docs, prefer_sources: tuple[str, ...], storage_level, partitions: int) -> tuple[Any, Any, Any]:
    """One document per normalised-text hash; the copies' ids held per key are one group's, combined on the map side
    as Beam's CombinePerKey does."""
    merge = functools.partial(dedup.merge_copies, prefer_sources=prefer_sources)
    groups = (
        docs.map(lambda doc: (dedup.exact_key(doc.text), doc))
        .combineByKey(lambda doc: (doc, []), lambda group, doc: merge(group, (doc, [])), merge, partitions)
        .values()
        .persist(storage_level)
    )
    funnels = groups.mapPartitions(lambda part: [_dropped("duplicate", sum(len(group[1]) for group in part))])
    report = groups.filter(lambda group: group[1]).map(lambda group: dedup.report_row("exact", group[0].id, group[1]))
    return groups.map(lambda group: group[0]), funnels, report


def _sign(config: minhash.MinHashConfig, prefer_sources: tuple[str, ...], docs):
    """A partition's documents → (band key, (graph node, signature or None)) per band."""
    signer = minhash.cached_signer(config.num_perm, config.ngram, config.seed)
    docs = iter(docs)
    while batch := list(itertools.islice(docs, SIGN_BATCH)):
        yield from minhash.band_members(signer, batch, config, prefer_sources)


def _star_step(edges, step, partitions: int):
    """Every node sees its neighbours (edges in both directions), then one large- or small-star step."""
    return (
        edges.flatMap(lambda edge: (edge, edge[::-1]))
        .groupByKey(partitions)
        .flatMap(lambda node: step(node[0], set(node[1])))
    )


def _roles(edge) -> tuple:
    return (edge[0], ("parent", edge[1])), (edge[1], ("child", edge[0]))


def connected_components(edges, storage_level, partitions: int):
    """Undirected edges → (node, smallest node of its component) for every node with an edge: rounds of large-star
    then small-star until every component is a star around its smallest node, checked after each round. Each
    round's edges are checkpointed (reliably: an executor lost later does not take them along), so the lineage,
    and the plan Spark keeps, stays one round long however many rounds it takes."""
    previous = None
    for round_number in range(1, MAX_ROUNDS + 1):
        edges = _star_step(_star_step(edges, minhash.large_star, partitions), minhash.small_star, partitions)
        edges = edges.distinct(partitions).persist(storage_level)
        edges.checkpoint()
        unconverged = edges.flatMap(_roles).groupByKey(partitions).filter(lambda n: minhash.breaks_star(n[1])).count()
        if previous is not None:
            previous.unpersist()
        previous = edges
        log.info("connected components: round %d, %d nodes not yet in a star", round_number, unconverged)
        if not unconverged:
            return edges
    raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")


def _keep_unmarked(element) -> list:
    _, (docs, marks) = element
    return [] if list(marks) else list(docs)


def _count_marked(element) -> int:
    _, (docs, marks) = element
    return len(list(docs)) if list(marks) else 0


class _Largest:
    """The largest group a stage saw, for the log (an accumulator: a retried task may add again, which a maximum
    does not mind)."""

    def __init__(self, context):
        from pyspark.accumulators import AccumulatorParam

        class Maximum(AccumulatorParam):
            def zero(self, value):
                return 0

            def addInPlace(self, value1, value2):
                return max(value1, value2)

        self.accumulator = context.accumulator(0, Maximum())

    def seen(self, size: int) -> None:
        self.accumulator.add(size)

    @property
    def value(self) -> int:
        return self.accumulator.value


def _bucket_edges(bucket, threshold: float | None, largest: _Largest):
    members = bucket[1]
    largest.seen(len(members))
    return minhash.bucket_edges(members, threshold)


def _cluster_row(cluster, largest: _Largest) -> dict:
    row = dedup.cluster_row(*cluster)
    largest.seen(row["cluster_size"])
    return row


def near(
    docs, config: minhash.MinHashConfig, prefer_sources: tuple[str, ...], storage_level, partitions: int
) -> tuple[Any, Any, Any, dict]:
    """Near-duplicate removal: signatures → LSH buckets → star edges → connected components → one survivor per
    component (its smallest node). Also returns accumulators of the largest bucket and cluster (what bounds a
    task's memory), read once the report is written."""
    threshold = config.threshold if config.verify else None
    largest = {"bucket": _Largest(docs.context), "cluster": _Largest(docs.context)}
    buckets = docs.mapPartitions(lambda part: _sign(config, prefer_sources, part)).groupByKey(partitions)
    edges = buckets.flatMap(lambda bucket: _bucket_edges(bucket, threshold, largest["bucket"]))
    components = connected_components(edges, storage_level, partitions)
    clusters = components.map(lambda edge: (edge[1], edge[0])).groupByKey(partitions).persist(storage_level)
    report = clusters.map(lambda cluster: _cluster_row(cluster, largest["cluster"]))
    removed = clusters.flatMap(lambda cluster: ((node[2], True) for node in set(cluster[1])))
    joined = docs.map(lambda doc: (doc.id, doc)).cogroup(removed, partitions).persist(storage_level)
    funnels = joined.mapPartitions(lambda part: [_dropped("near_duplicate", sum(map(_count_marked, part)))])
    return joined.flatMap(_keep_unmarked), funnels, report, largest


def _rewrite_lines(sources: dict, kinds: dict[str, str], part):
    """A partition of (id, (documents, common line hashes)) → ("doc", document) and ("funnel", Funnel) items."""
    refilters = lines.Refilters(sources, kinds)
    merged = Funnel()
    for _, (docs, common) in part:
        common = set(common)
        for doc in docs:
            if common:
                source = refilters.source(doc)
                doc, funnel = lines.rewrite(doc, common, refilters.for_source(source), source)
                merged.merge(funnel)
            if doc is not None:
                yield "doc", doc
    yield "funnel", merged


def common_lines(docs, sources: dict, kinds: dict[str, str], min_documents: int, storage_level, partitions: int):
    """CCNet's boilerplate lines (`pipeline.dedup.lines`), as Beam's `RemoveCommonLines`: documents → (documents,
    Funnels). One task holds one line's document ids (the largest group)."""
    common = (
        docs.flatMap(lambda doc: ((line, doc.id) for line in lines.document_line_hashes(doc)))
        .groupByKey(partitions)
        .flatMap(lambda group: [(doc_id, group[0]) for doc_id in group[1]] if len(group[1]) >= min_documents else [])
    )
    rewritten = (
        docs.map(lambda doc: (doc.id, doc))
        .cogroup(common, partitions)
        .mapPartitions(functools.partial(_rewrite_lines, sources, kinds))
        .persist(storage_level)
    )
    funnels = rewritten.filter(lambda item: item[0] == "funnel").map(lambda item: item[1])
    return rewritten.filter(lambda item: item[0] == "doc").map(lambda item: item[1]), funnels

"""Reading on Spark: any source (`pipeline.sources`) through the one unit processor (`pipeline.steps.process`) and
the per-unit commit and resume (`pipeline.steps.units`), as `pipeline.beam.read` does on Beam.

Inputs are listed on the driver; each input is planned into units on an executor (a Wikipedia dump through its
index into parts; every source's inputs in one job), the units come back to the driver and are dealt out one unit
per task, so a unit is what Spark retries when an executor is lost: a rerun of a unit reads back what it had
committed. The tasks' output (documents,
and one Funnel per unit) is persisted on the executors' disks, so what follows reads it without running any unit
again.
"""

from __future__ import annotations

import atexit
import logging
from typing import Any

from pipeline.common.schema import Document
from pipeline.output.stats import Funnel
from pipeline.sources import DocumentSettings, Source
from pipeline.steps import quality
from pipeline.steps.process import UnitProcessor
from pipeline.steps.units import DEFAULT_FILE_BYTES, UnitStore, unit_store

log = logging.getLogger(__name__)

# The unit processors of this Python worker, by work folder: Spark reuses a worker for many tasks, and a processor
# (its language model, its extraction child) is made once per worker, as a Beam DoFn's setup() makes it.
_PROCESSORS: dict[str, UnitProcessor] = {}


def _processor(source: Source, store: UnitStore, langid_model: str | None) -> UnitProcessor:
    processor = _PROCESSORS.get(store.work_dir)
    if processor is None:
        processor = _PROCESSORS[store.work_dir] = UnitProcessor(source, langid_model)
        atexit.register(processor.close)
    return processor


def _plan(source: Source, store: UnitStore, source_input) -> list[tuple[str, Any]]:
    """An input → ("unit", unit) for each of its units, or one ("funnel", Funnel) naming the input that cannot be
    planned (an unreadable index), so the run's other inputs go on."""
    path = source.input_path(source_input)
    try:
        units = list(source.plan(source_input))
    except (OSError, ValueError, EOFError) as exc:
        log.error("%s: cannot plan: %s", path, exc)
        funnel = Funnel(input_files=1)
        funnel.error(path, None, f"{type(exc).__name__}: {exc}")
        units = []
        planned: list[tuple[str, Any]] = [("funnel", funnel)]
    else:
        planned = [("unit", unit) for unit in units]
    if source.splits_inputs:
        store.record_plan(path, len(units))
    return planned


def _process(source: Source, store: UnitStore, langid_model: str | None, units):
    """A task's units → their kept documents and, per unit, its Funnel (documents count as kept once written)."""
    processor = _processor(source, store, langid_model)
    for unit in units:
        for item in store.run(processor, unit):
            if isinstance(item, Funnel):
                item.kept = 0
            yield item


def _is_document(item) -> bool:
    return isinstance(item, Document)


class SparkSource:
    """One source of a recipe on Spark: its inputs listed when it is made (UsageError for the user's mistakes), its
    units committed under `<output>/_work/<name>-<fingerprint>/` as on Beam, so either engine reuses the other's."""

    def __init__(
        self, source: Source, output_dir: str, langid_model: str | None = None, max_file_bytes: int = DEFAULT_FILE_BYTES
    ):
        self.source = source
        self.inputs = source.inputs()
        self.langid_model = langid_model
        self.store = unit_store(source, output_dir, langid_model, max_file_bytes)

    def read(self, context, units: list, storage_level) -> tuple[Any, list]:
        """The planned units → (documents, [RDDs of Funnels]); nothing runs until an action needs them. The units'
        output is persisted, so the documents and the funnels are read from it, never made twice."""
        source, store, langid_model = self.source, self.store, self.langid_model
        if not units:
            return context.emptyRDD(), []
        items = (
            context.parallelize(units, len(units))  # one unit per task
            .mapPartitions(lambda task_units: _process(source, store, langid_model, task_units))
            .persist(storage_level)
        )
        funnels = [items.filter(lambda item: not _is_document(item))]
        docs = items.filter(_is_document)
        settings = source.settings
        if isinstance(settings, DocumentSettings) and settings.quality_model and settings.quality_keep < 1:
            docs, dropped = keep_best_quality(docs, settings.quality_keep)
            funnels.append(dropped)
        return docs, funnels


def plan(context, sources: list[SparkSource]) -> tuple[list[list], list[Funnel]]:
    """Every source's inputs planned into units on the executors, in one job: (each source's units, the Funnels of
    the inputs that could not be planned)."""
    inputs = [(number, source_input) for number, source in enumerate(sources) for source_input in source.inputs]
    if not inputs:
        return [[] for _ in sources], []
    planners = [(source.source, source.store) for source in sources]

    def plan_input(item) -> list[tuple[int, str, Any]]:
        number, source_input = item
        source, store = planners[number]
        return [(number, kind, value) for kind, value in _plan(source, store, source_input)]

    planned = context.parallelize(inputs, len(inputs)).flatMap(plan_input).collect()
    units: list[list] = [[] for _ in sources]
    funnels = []
    for number, kind, value in planned:
        if kind == "unit":
            units[number].append(value)
        else:
            funnels.append(value)
    return units, funnels


def _quantiles_of(combine_fn, scores) -> list:
    accumulator = combine_fn.create_accumulator()
    for score in scores:
        accumulator = combine_fn.add_input(accumulator, score)
    return [accumulator]


def _quality_drops(threshold: float, docs) -> list[Funnel]:
    funnel = Funnel()
    for doc in docs:
        if doc.quality < threshold:
            funnel.drop(quality.DROP_REASON)
            funnel.example(quality.DROP_REASON, doc.id, doc.url, doc.text)
    return [funnel]


def keep_best_quality(docs, fraction: float) -> tuple[Any, Any]:
    """Scored documents → (the best `fraction` of them, the Funnels of those dropped as `quality`). The threshold is
    read from the scores' quantiles through the very sketch Beam's `ApproximateQuantiles` uses, merged the same
    way, so both engines draw the line at the same score; documents at the threshold stay."""
    from apache_beam.transforms.stats import ApproximateQuantilesCombineFn

    combine_fn = ApproximateQuantilesCombineFn.create(num_quantiles=quality.KEEP_QUANTILES)
    accumulators = docs.map(lambda doc: doc.quality).mapPartitions(lambda s: _quantiles_of(combine_fn, s)).collect()
    quantiles = combine_fn.extract_output(combine_fn.merge_accumulators(accumulators))
    threshold = quality.keep_threshold(quantiles, fraction)
    if threshold is None:
        return docs, docs.context.emptyRDD()
    dropped = docs.mapPartitions(lambda part: _quality_drops(threshold, part))
    return docs.filter(lambda doc: doc.quality >= threshold), dropped

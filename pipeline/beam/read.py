"""Reading on Beam: any source (`pipeline.sources`) through the one unit processor (`pipeline.steps.process`).

    ReadSource ─► documents ─► UniqueIds ─► Deduplicate (pipeline.dedup.stages) ─► WriteDocuments ─► shards
    (any source)                                                 │ report ─► WriteShards ─► duplicates/
         │ stats                                │ stats                      │ stats
         └──────────────────────────────────────┴────────────────────────────┴─► WriteStats ─► stats.json

Each unit of work (a WARC, a part of a dump, a text file) is committed under `<output>/_work/` as its documents
stream. `pipeline.beam.curate` assembles a whole run from a recipe; `pipeline.beam.write` writes its outputs.
"""

from __future__ import annotations

import atexit
import gc
import logging

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.stats import ApproximateQuantiles
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from pipeline.beam import logs
from pipeline.output.stats import STATS_TAG, Funnel, stage_of
from pipeline.sources import DocumentSettings, Source
from pipeline.steps import quality
from pipeline.steps.process import UnitProcessor
from pipeline.steps.units import DEFAULT_FILE_BYTES, UnitStore, unit_store

log = logging.getLogger(__name__)

_freezes_at_exit = False


def freeze_objects_at_exit() -> None:
    """At this worker process's exit, objects are left to the process's end instead of a last collection that
    walks everything Beam and the libraries made (0.3 s a worker; the DirectRunner waits for its workers one
    after another). Once per process; the driver does the same in `pipeline/__main__.py`."""
    global _freezes_at_exit
    if not _freezes_at_exit:
        atexit.register(gc.freeze)
        _freezes_at_exit = True


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
        freeze_objects_at_exit()
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
        self.store = unit_store(source, output_dir, langid_model, max_file_bytes)

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
        stats = [results[STATS_TAG] | "PreDedup" >> beam.Map(_without_kept), planned[STATS_TAG]]
        docs = results.docs
        settings = self.source.settings
        if isinstance(settings, DocumentSettings) and settings.quality_model and settings.quality_keep < 1:
            docs, quality_stats = docs | "QualityKeep" >> KeepBestQuality(settings.quality_keep)
            stats.append(quality_stats)
        return docs, stats | "AllStats" >> beam.Flatten()


class KeepBestQuality(beam.PTransform):
    """Scored documents → (the best `fraction` of them, a Funnel per dropped one: `quality`, with its example).
    The threshold is read from the scores' quantiles (Beam's mergeable sketch, so it is the same on any runner and
    number of workers); documents scoring at the threshold stay, so ties keep slightly more."""

    def __init__(self, fraction: float):
        super().__init__()
        self.fraction = fraction

    def expand(self, docs):
        threshold = (
            docs
            | "Scores" >> beam.Map(lambda doc: doc.quality)
            | "Quantiles" >> ApproximateQuantiles.Globally(quality.KEEP_QUANTILES)
            | "Threshold" >> beam.Map(quality.keep_threshold, self.fraction)
        )
        results = docs | "Keep" >> beam.ParDo(_KeepAbove(), beam.pvalue.AsSingleton(threshold)).with_outputs(
            STATS_TAG, main="docs"
        )
        return results.docs, results[STATS_TAG]


class _KeepAbove(beam.DoFn):
    """Documents at or above the threshold; the others counted into one Funnel per bundle (not one per document: at
    crawl scale `quality_keep` drops millions)."""

    def start_bundle(self):
        self.funnel = Funnel()

    def process(self, doc, threshold):
        if threshold is None or doc.quality >= threshold:
            yield doc
            return
        self.funnel.drop(quality.DROP_REASON)
        self.funnel.example(quality.DROP_REASON, doc.id, doc.url, doc.text)
        Metrics.counter(stage_of(quality.DROP_REASON), f"dropped.{quality.DROP_REASON}").inc()

    def finish_bundle(self):
        if self.funnel.dropped:
            window = GlobalWindow()
            yield beam.pvalue.TaggedOutput(STATS_TAG, WindowedValue(self.funnel, window.max_timestamp(), (window,)))


def _without_kept(funnel: Funnel) -> Funnel:
    funnel.kept = 0
    return funnel

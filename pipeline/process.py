"""The unit processor: one funnel loop for every source, without Beam.

A source reads a unit of work into documents, drops, skips and read errors (`pipeline.sources`). The processor
runs the ordered per-document steps on each document (the source's own: extraction, wikitext cleaning, Gutenberg
stripping; then language ID and each quality filter), counts everything into a `Funnel`, and streams the kept
documents on. A step is a plain callable, `step(doc) -> drop reason or None`, that may rewrite the document. A
step that can work ahead (trafilatura in its child process) also has `submit(doc)` and `collect(doc)`: the
processor hands it the next document before running the later steps on the current one.

`UnitStore` commits a unit's documents while they stream (files of bounded size, then the unit's stats, which
commit it), so nothing holds a unit in memory and a rerun with the same settings and code reads units back.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.ipc

from pipeline import filters, langid, sinks
from pipeline.schema import ARROW_SCHEMA, Document, Dropped, ReadError, Skipped, documents_to_table
from pipeline.sources import DocumentSettings, Source
from pipeline.stats import Funnel, length_bucket

log = logging.getLogger(__name__)


class LanguageStep:
    """Labels the language; drops a language not wanted or a score too low. A language the source declares
    (a wiki's) stays in `language`; fastText's label is kept beside it."""

    def __init__(self, identifier: langid.LanguageIdentifier, selector: langid.LanguageSelector):
        self.identifier = identifier
        self.selector = selector

    def __call__(self, doc: Document) -> str | None:
        doc.language_label, doc.language_score = self.identifier.identify(doc.text)
        doc.language = doc.language or doc.language_label
        return self.selector(doc.language_label, doc.language_score)


class FilterStep:
    """A quality filter as a step: its rule becomes the drop reason `<filter>.<rule>`."""

    def __init__(self, quality_filter):
        self.filter = quality_filter

    def __call__(self, doc: Document) -> str | None:
        return filters.drop_reason(self.filter, doc)


def document_steps(settings: DocumentSettings, identifier: langid.LanguageIdentifier) -> list:
    """Language ID, then each quality filter in the order of `filters.FILTERS`."""
    selector = langid.LanguageSelector(set(settings.languages), settings.min_language_score)
    return [
        LanguageStep(identifier, selector),
        *map(FilterStep, filters.build_filters(settings.filters, settings.filter_settings)),
    ]


def _run(steps, doc: Document) -> str | None:
    for step in steps:
        reason = step(doc)
        if reason is not None:
            return reason
    return None


class UnitProcessor:
    """Runs one source's units. `langid_model`: a fastText model path (None: the bundled lid.176.ftz)."""

    def __init__(self, source: Source, langid_model: str | None = None):
        self.source = source
        self.common_steps: list = []
        self.keep_measures = False
        if isinstance(source.settings, DocumentSettings):
            self.common_steps = document_steps(source.settings, langid.LanguageIdentifier(langid_model))
            self.keep_measures = source.settings.keep_measures
        source.open()

    def close(self) -> None:
        self.source.close()

    def process(self, unit, funnel: Funnel) -> Iterator[Document]:
        """The kept documents of one unit, as they are produced; everything else is counted into `funnel`."""
        if self.source.counts_input(unit):
            funnel.input_files += 1
        steps = [*self.source.steps(unit), *self.common_steps]
        if self.common_steps:
            measure = _MeasureLength(funnel)  # once the source's own steps have made the text
            steps.insert(len(steps) - len(self.common_steps), measure)
        docs = self._documents(unit, funnel)
        ahead = next((i for i, step in enumerate(steps) if hasattr(step, "submit")), None)
        if ahead is None:
            for doc in docs:
                yield from self._decide(doc, _run(steps, doc), funnel)
            return
        before, worker, after = steps[:ahead], steps[ahead], steps[ahead + 1 :]
        in_flight = None
        for doc in docs:
            reason = _run(before, doc)
            if reason is not None:
                yield from self._decide(doc, reason, funnel)
                continue
            finished = (in_flight, worker.collect(in_flight)) if in_flight is not None else None
            in_flight = None
            reason = worker.submit(doc)
            if reason is not None:
                yield from self._decide(doc, reason, funnel)
            else:
                in_flight = doc
            if finished:
                yield from self._finish(*finished, after, funnel)
        if in_flight is not None:
            yield from self._finish(in_flight, worker.collect(in_flight), after, funnel)

    def _finish(self, doc: Document, reason: str | None, steps, funnel: Funnel) -> Iterator[Document]:
        yield from self._decide(doc, reason if reason is not None else _run(steps, doc), funnel)

    def _documents(self, unit, funnel: Funnel) -> Iterator[Document]:
        path = self.source.unit_path(unit)
        for item in self.source.read(unit):
            if isinstance(item, ReadError):
                log.warning("%s @ %s: %s", path, item.offset, item.error)
                funnel.error(path, item.offset, item.error, item.retryable)
                continue
            funnel.records_read += 1
            if isinstance(item, Skipped):
                log.debug("%s: %s skipped (%s)", path, item.where, item.reason)
                funnel.records_skipped[item.reason] += 1
                continue
            funnel.records_in += 1
            if isinstance(item, Dropped):
                log.info("%s: %s dropped (%s)", path, item.where, item.reason)
                funnel.drop(item.reason)
                continue
            if self.keep_measures:
                item.measures = {}
            yield item

    def _decide(self, doc: Document, reason: str | None, funnel: Funnel) -> Iterator[Document]:
        if reason is None:
            funnel.kept += 1
            if self.common_steps:
                funnel.lengths_after_filters[length_bucket(len(doc.text))] += 1
            yield doc
        else:
            log.debug("%s: dropped (%s)", doc.id, reason)
            funnel.drop(reason)
            if self.common_steps and doc.text:
                funnel.example(reason, doc.id, doc.url, doc.text)


class _MeasureLength:
    """A step that drops nothing: counts the document's length into the unit's funnel."""

    def __init__(self, funnel: Funnel):
        self.funnel = funnel

    def __call__(self, doc: Document) -> None:
        self.funnel.lengths_before_filters[length_bucket(len(doc.text))] += 1


# The modules whose code decides which documents a unit yields and what they hold.
PER_DOCUMENT_MODULES = (
    "corpus",
    "extract",
    "filters",
    "html",
    "langid",
    "process",
    "schema",
    "wikitext",
    "sources/__init__",
    "sources/commoncrawl",
    "sources/wikipedia",
    "sources/localtext",
    "sources/shards",
)
PER_DOCUMENT_LIBRARIES = ("trafilatura", "mwparserfromhell", "warcio", "charset-normalizer", "fasttext")


def code_version() -> str:
    """A hash of the per-document code and of the libraries it relies on: a rerun after any of them changed
    redoes its units instead of serving documents and stats the old code produced."""
    digest = hashlib.sha1()
    package = os.path.dirname(os.path.abspath(__file__))
    for module in PER_DOCUMENT_MODULES:
        with open(os.path.join(package, f"{module}.py"), "rb") as handle:
            digest.update(handle.read())
    for library in PER_DOCUMENT_LIBRARIES:
        try:
            digest.update(f"{library}={importlib.metadata.version(library)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{library}=none".encode())
    return digest.hexdigest()[:16]


def file_digest(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha1").hexdigest()


def fingerprint(source: Source, langid_model: str | None, version: str) -> str:
    """What a committed unit was made with: the source's settings, the language-ID model's content (not its
    path) and the code version. A unit committed under another fingerprint is never reused."""
    model = ""
    if isinstance(source.settings, DocumentSettings):
        model = file_digest(langid_model or langid.default_model_path())
    payload = json.dumps([source.kind, source.unit_settings(), model, version], sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:12]


DEFAULT_FILE_BYTES = 256 * 2**20  # of text per committed file: a unit of any size becomes several files
BATCH_DOCUMENTS = 1_000  # documents held before they are written as a row group


class UnitStore:
    """Finished units under one work folder: `<key>-NNNNN.arrow` files of at most `max_file_bytes` of text each
    (Arrow, not Parquet, so that a glob of the output's Parquet finds the kept documents only), then
    `<key>.stats.json` (the funnel and the files), whose appearance commits the unit."""

    def __init__(self, work_dir: str, max_file_bytes: int = DEFAULT_FILE_BYTES):
        self.work_dir = work_dir
        self.max_file_bytes = max_file_bytes

    def _stats_path(self, key: str) -> str:
        return sinks.join(self.work_dir, f"{key}.stats.json")

    def plan_path(self, input_path: str) -> str:
        name = hashlib.sha1(input_path.encode()).hexdigest()[:16]
        return sinks.join(self.work_dir, f"input-{name}.plan.json")

    def record_plan(self, input_path: str, units: int) -> None:
        """How many units an input became, for the progress display of a source that splits its inputs."""
        sinks.write_json(self.plan_path(input_path), {"input": input_path, "units": units})

    def committed(self, key: str) -> tuple[Funnel, list[str]] | None:
        path = self._stats_path(key)
        if not sinks.exists(path):
            return None
        data = sinks.read_json(path)
        return Funnel.from_json(data["funnel"]), [sinks.join(self.work_dir, name) for name in data["files"]]

    def run(self, processor: UnitProcessor, unit) -> Iterator[Document | Funnel]:
        """The unit's kept documents, read back when committed, else produced and committed as they stream;
        the unit's Funnel last. A unit whose network failed is not committed (a rerun reads it again)."""
        key = processor.source.unit_key(unit)
        found = self.committed(key) if processor.source.commits else None
        if found is not None:
            funnel, files = found
            log.info("%s: already processed, reading %d file(s)", key, len(files))
            for path in files:
                for batch in sinks.iter_document_batches(path):
                    yield from batch
            yield funnel
            return
        funnel = Funnel()
        if not processor.source.commits:
            yield from processor.process(unit, funnel)
            yield funnel
            return
        writer = _UnitWriter(self.work_dir, key, self.max_file_bytes)
        try:
            for doc in processor.process(unit, funnel):
                writer.add(doc)
                yield doc
            files = writer.close()
        except BaseException:
            writer.abort()
            raise
        if any(error["retryable"] for error in funnel.errors):
            log.warning("%s: network failure, not committed; a rerun will read it again", key)
            for path in files:
                sinks.delete(path)
        else:
            sinks.write_json(
                self._stats_path(key),
                {"funnel": funnel.to_json(), "files": [path.rsplit("/", 1)[-1] for path in files]},
            )
        yield funnel


class _UnitWriter:
    """Arrow files (zstd) of one unit, written a batch at a time and renamed into place when full or closed."""

    def __init__(self, work_dir: str, key: str, max_file_bytes: int):
        self.work_dir, self.key, self.max_file_bytes = work_dir, key, max_file_bytes
        self.files: list[str] = []
        self.batch: list[Document] = []
        self.file_bytes = 0
        self.stream: Any = None
        self.writer: pa.ipc.RecordBatchFileWriter | None = None
        self.temporary: str | None = None

    def add(self, doc: Document) -> None:
        self.batch.append(doc)
        self.file_bytes += len(doc.text)
        if len(self.batch) >= BATCH_DOCUMENTS or self.file_bytes >= self.max_file_bytes:
            self._flush()
        if self.file_bytes >= self.max_file_bytes:
            self._finish_file()

    def _flush(self) -> None:
        if not self.batch:
            return
        if self.writer is None:
            path = sinks.join(self.work_dir, f"{self.key}-{len(self.files):05d}.arrow")
            self.temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
            self.stream = sinks.create(self.temporary)
            self.writer = pa.ipc.new_file(self.stream, ARROW_SCHEMA, options=pa.ipc.IpcWriteOptions(compression="zstd"))
            self.files.append(path)
        self.writer.write_table(documents_to_table(self.batch))
        self.batch = []

    def _finish_file(self) -> None:
        if self.writer is None:
            return
        assert self.temporary is not None
        self.writer.close()
        self.stream.close()
        sinks.rename(self.temporary, self.files[-1])
        self.writer = self.stream = self.temporary = None
        self.file_bytes = 0

    def close(self) -> list[str]:
        self._flush()
        self._finish_file()
        return self.files

    def abort(self) -> None:
        if self.writer is not None and self.temporary is not None:
            self.writer.close()
            self.stream.close()
            sinks.delete(self.temporary)
        for path in self.files[:-1] if self.temporary else self.files:
            if sinks.exists(path):
                sinks.delete(path)

"""The unit processor: one funnel loop for every source, without Beam.

A source reads a unit of work into documents, drops, skips and read errors (`pipeline.sources`). The processor
runs the ordered per-document steps on each document (the source's own: extraction, wikitext cleaning, Gutenberg
stripping; then language ID and each quality filter), counts everything into a `Funnel`, and streams the kept
documents on. A step is a plain callable, `step(doc) -> drop reason or None`, that may rewrite the document. A
step that can work ahead (trafilatura in its child process) also has `submit(doc)` and `collect(doc)`: the
processor hands it the next document before running the later steps on the current one.

`pipeline.steps.units` commits a unit's documents while they stream, and reads committed units back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from pipeline.common.schema import Counted, Document, Dropped, ReadError, Skipped, valid_text
from pipeline.common.settings import describe_exception, printable
from pipeline.output.stats import Funnel, length_bucket
from pipeline.sources import DocumentSettings, Source
from pipeline.steps import decontam, filters, langid, pii, quality, wordlists

log = logging.getLogger(__name__)


class LanguageStep:
    """Labels the language; drops a language not wanted or a score too low. A language the source declares
    (a wiki's) stays in `language`; fastText's label is kept beside it."""

    name = "language"

    def __init__(self, identifier: langid.LanguageIdentifier, selector: langid.LanguageSelector):
        self.identifier = identifier
        self.selector = selector

    def __call__(self, doc: Document) -> str | None:
        doc.language_label, doc.language_score = self.identifier.identify(doc.text)
        doc.language = doc.language or doc.language_label
        return self.selector(doc.language_label, doc.language_score)


class DeclaredLanguage:
    """Language selection for documents whose source names their language (a code file's): no model runs."""

    name = "language"

    def __init__(self, selector: langid.LanguageSelector):
        self.selector = selector

    def __call__(self, doc: Document) -> str | None:
        return self.selector(doc.language or "unknown", 1.0)


class FilterStep:
    """A quality filter as a step: its rule becomes the drop reason `<filter>.<rule>`."""

    def __init__(self, quality_filter):
        self.filter = quality_filter
        self.name = quality_filter.name

    def __call__(self, doc: Document) -> str | None:
        return filters.drop_reason(self.filter, doc)


def document_steps(settings: DocumentSettings, identifier: langid.LanguageIdentifier) -> list:
    """Language ID, each quality filter in the order of `filters.FILTERS`, C4's bad words, the quality classifier's
    score (when the source has one), PII anonymisation, then benchmark decontamination (a cut document is filtered
    again)."""
    selector = langid.LanguageSelector(set(settings.languages), settings.min_language_score)
    filter_steps = list(map(FilterStep, filters.build_filters(settings.filters, settings.filter_settings)))
    language = LanguageStep(identifier, selector) if settings.identifies_language else DeclaredLanguage(selector)
    steps: list = [language, *filter_steps]
    if settings.badwords:
        steps.append(wordlists.BadWords(settings.badwords, settings.badwords_keep))
    if settings.quality_model:
        threshold = quality.resolved_min_quality(settings.quality_model, settings.min_quality, settings.quality_keep)
        steps.append(quality.QualityStep(quality.QualityModel(settings.quality_model), threshold))
    if settings.pii:
        steps.append(pii.PiiStep(extra=pii.read_patterns(settings.pii_patterns) if settings.pii_patterns else ()))
    if settings.decontamination:
        steps.append(
            decontam.DecontaminationStep(settings.decontamination, settings.decontamination_mode, filter_steps)
        )
    return steps


ERROR_PREFIX = "error."


def step_name(step) -> str:
    return getattr(step, "name", type(step).__name__.lower())


class StepGuard:
    """Where an unexpected exception in a source's reader or a step becomes the drop reason
    `error.<step>.<exception type>`: it costs that document, not the run. Each kind is logged once per worker, with
    the input and the document."""

    def __init__(self) -> None:
        self.logged: set[str] = set()
        self.messages: dict[int, str] = {}  # id() of a document that failed → the exception, for its example

    def failed(self, step: str, exc: Exception, path: str, where, doc: Document | None = None) -> str:
        reason = f"{ERROR_PREFIX}{step}.{type(exc).__name__}"
        if doc is not None:
            self.messages[id(doc)] = describe_exception(exc)
        if reason not in self.logged:
            self.logged.add(reason)
            log.warning(
                "%s @ %s: %s raised %s (counted as %s; further ones of this kind are counted, not logged)",
                path,
                where,
                step,
                describe_exception(exc),
                reason,
            )
        return reason


class _ValidText:
    """A step that drops nothing: the text a source's steps made (extraction, cleaning) as valid Unicode."""

    name = "valid_text"

    def __call__(self, doc: Document) -> None:
        doc.text = valid_text(doc.text)
        if doc.title is not None:
            doc.title = valid_text(doc.title)


class UnitProcessor:
    """Runs one source's units. `langid_model`: a fastText model path (None: the bundled lid.176.ftz)."""

    def __init__(self, source: Source, langid_model: str | None = None):
        self.source = source
        self.common_steps: list = []
        self.detailed: list = []  # steps that say why they dropped a document, for its report example
        self.keep_measures = False
        self.guard = StepGuard()
        if isinstance(source.settings, DocumentSettings):
            identifier = langid.LanguageIdentifier(langid_model)
            self.common_steps = document_steps(source.settings, identifier)
            self.detailed = [step for step in self.common_steps if hasattr(step, "details")]
            self.keep_measures = source.settings.keep_measures
            source.language_identifier = identifier
        source.open()

    def close(self) -> None:
        self.source.close()

    def process(self, unit, funnel: Funnel) -> Iterator[Document]:
        """The kept documents of one unit, as they are produced; everything else is counted into `funnel`."""
        if self.source.counts_input(unit):
            funnel.input_files += 1
        path = self.source.unit_path(unit)
        source_steps = self.source.steps(unit)  # they make new text (extraction, cleaning): made valid again
        steps = [*source_steps, *([_ValidText()] if source_steps else []), *self.common_steps]
        if self.common_steps:
            steps.insert(len(steps) - len(self.common_steps), _MeasureLength(funnel))  # the text is made by now
        documents_in, dropped_before = funnel.records_in, sum(self._errors(funnel).values())
        yield from self._steps(steps, self._documents(unit, path, funnel), path, funnel)
        for step in steps:
            changes = getattr(step, "changes", None)
            if changes:
                funnel.edits.update(changes)
                changes.clear()
        errors = sum(self._errors(funnel).values()) - dropped_before
        if errors:
            funnel.unit_error(path, self.source.unit_key(unit), errors, funnel.records_in - documents_in)

    @staticmethod
    def _errors(funnel: Funnel) -> dict[str, int]:
        return {reason: n for reason, n in funnel.dropped.items() if reason.startswith(ERROR_PREFIX)}

    def _steps(self, steps, docs: Iterator[Document], path: str, funnel: Funnel) -> Iterator[Document]:
        ahead = next((i for i, step in enumerate(steps) if hasattr(step, "submit")), None)
        if ahead is None:
            for doc in docs:
                yield from self._decide(doc, self._run(steps, doc, path), funnel)
            return
        before, worker, after = steps[:ahead], steps[ahead], steps[ahead + 1 :]
        in_flight = None
        for doc in docs:
            reason = self._run(before, doc, path)
            if reason is not None:
                yield from self._decide(doc, reason, funnel)
                continue
            finished = None
            if in_flight is not None:
                finished = (in_flight, self._call(worker.collect, worker, in_flight, path))
            in_flight = None
            reason = self._call(worker.submit, worker, doc, path)
            if reason is not None:
                yield from self._decide(doc, reason, funnel)
            else:
                in_flight = doc
            if finished:
                yield from self._finish(*finished, after, path, funnel)
        if in_flight is not None:
            reason = self._call(worker.collect, worker, in_flight, path)
            yield from self._finish(in_flight, reason, after, path, funnel)

    def _call(self, function, step, doc: Document, path: str) -> str | None:
        """One step on one document, under the guard."""
        try:
            return function(doc)
        except Exception as exc:
            return self.guard.failed(step_name(step), exc, path, doc.id, doc)

    def _run(self, steps, doc: Document, path: str) -> str | None:
        for step in steps:
            reason = self._call(step, step, doc, path)
            if reason is not None:
                return reason
        return None

    def _finish(self, doc: Document, reason: str | None, steps, path: str, funnel: Funnel) -> Iterator[Document]:
        yield from self._decide(doc, reason if reason is not None else self._run(steps, doc, path), funnel)

    def _records(self, unit, path: str, funnel: Funnel) -> Iterator:
        """What the source reads; a reader that breaks ends the unit with an input error (what it read stays)."""
        records = None
        while True:
            try:
                if records is None:  # inside the guard: a reader may raise before its first record
                    records = iter(self.source.read(unit))
                yield next(records)
            except StopIteration:
                return
            except Exception as exc:
                self.guard.failed("read", exc, path, "the reader")
                funnel.error(path, None, f"{ERROR_PREFIX}read: {describe_exception(exc)}")
                return

    def _documents(self, unit, path: str, funnel: Funnel) -> Iterator[Document]:
        for number, record in enumerate(self._records(unit, path, funnel)):
            if isinstance(record, Counted):
                funnel.index[record.name] += record.count
                continue
            try:
                item = self.source.document(record)
            except Exception as exc:  # a record the source could not turn into a document: counted as one
                funnel.records_read += 1
                funnel.records_in += 1
                where = getattr(record, "offset", None) or getattr(record, "key", None) or f"record {number}"
                funnel.drop(self.guard.failed("read", exc, path, where))
                continue
            if isinstance(item, ReadError):
                log.warning("%s @ %s: %s", path, item.offset, item.error)
                funnel.error(path, item.offset, printable(item.error), item.retryable)
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
            item.make_valid()
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
            error = self.guard.messages.pop(id(doc), None)
            detail = next((d for d in (s.details.pop(id(doc), None) for s in self.detailed) if d), None)
            if (self.common_steps or error) and doc.text:
                funnel.example(reason, doc.id, doc.url, valid_text(doc.text), error, detail)


class _MeasureLength:
    """A step that drops nothing: counts the document's length into the unit's funnel."""

    name = "lengths"

    def __init__(self, funnel: Funnel):
        self.funnel = funnel

    def __call__(self, doc: Document) -> None:
        self.funnel.lengths_before_filters[length_bucket(len(doc.text))] += 1

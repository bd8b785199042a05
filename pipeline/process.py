"""The per-document chain, without Beam: WARC file → HTML pages → text → language → filters.

`TextProcessor` is the part every source shares (language ID and quality filters); `WarcProcessor` adds
what is particular to web pages (URL blocklist, decoding, main-text extraction). Both count every
document they take in into a `Funnel`, so nothing is lost without a reason.
"""

from __future__ import annotations

import logging
from typing import Iterator

from pipeline import extract, filters, html, langid
from pipeline.config import ProcessConfig
from pipeline.schema import Document, commoncrawl_id, parse_warc_date
from pipeline.sources import commoncrawl
from pipeline.stats import Funnel

log = logging.getLogger(__name__)


class TextProcessor:
    def __init__(self, config: ProcessConfig):
        self.identifier = langid.LanguageIdentifier(config.langid_model)
        self.selector = langid.LanguageSelector(set(config.languages), config.min_language_score)
        self.filters = filters.build_filters(config.filters, config.filter_settings)

    def __call__(self, doc: Document) -> str | None:
        """Fills in the language; returns a drop reason, or None to keep the (possibly rewritten) document."""
        doc.language, doc.language_score = self.identifier.identify(doc.text)
        reason = self.selector(doc.language, doc.language_score)
        if reason is None:
            reason = filters.apply_filters(self.filters, doc)
        return reason


class WarcProcessor:
    """Turns one WARC file into kept documents, counting the rest. Call `close()` when done."""

    def __init__(self, config: ProcessConfig):
        self.config = config
        self.text = TextProcessor(config)
        self.blocklist = filters.UrlBlocklist.from_file(config.url_blocklist) if config.url_blocklist else None
        self.extractor = extract.IsolatedExtractor(config.extract_timeout)
        self.extractor.start()

    def close(self) -> None:
        self.extractor.close()

    def process(self, path: str, funnel: Funnel, crawl: str | None = None) -> Iterator[Document]:
        """Pages are pipelined: the extractor child works on the next page while this process runs
        language ID and the filters on the current one."""
        funnel.input_files += 1
        crawl = crawl or commoncrawl.crawl_of(path)
        in_flight = None
        for page, page_html in self._extractable_pages(path, funnel):
            finished = (in_flight, self._collect(path, in_flight)) if in_flight else None
            in_flight = page if self._submit(path, page, page_html, funnel) else None
            if finished:
                yield from self._finish(path, *finished, crawl, funnel)
        if in_flight:
            yield from self._finish(path, in_flight, self._collect(path, in_flight), crawl, funnel)

    def _extractable_pages(self, path: str, funnel: Funnel) -> Iterator[tuple[commoncrawl.HtmlPage, str]]:
        """(page, decoded HTML) for each HTML page worth extracting; counts everything else."""
        for item in commoncrawl.read_warc(path, self.config.max_html_bytes):
            if isinstance(item, commoncrawl.ReadError):
                log.warning("%s @ %s: %s", path, item.offset, item.error)
                funnel.error(path, item.offset, item.error, item.retryable)
                continue
            funnel.records_read += 1
            if isinstance(item, commoncrawl.SkippedRecord):
                funnel.records_skipped[item.reason] += 1
                continue
            funnel.records_in += 1
            if self.blocklist is not None and self.blocklist.blocks(item.url):
                funnel.drop("url_blocklist")
                continue
            try:
                yield item, commoncrawl.page_html(item, self.config.max_html_bytes)
            except html.Rejected as rejected:
                log.info("%s @ %d: %s", path, item.offset, rejected)
                funnel.drop(rejected.reason)

    def _submit(self, path: str, page: commoncrawl.HtmlPage, page_html: str, funnel: Funnel) -> bool:
        try:
            self.extractor.submit(page_html, page.url)
            return True
        except extract.ExtractionFailed as exc:  # the child could not be (re)started
            log.warning("%s @ %d: extraction failed: %s", path, page.offset, exc)
            funnel.drop("extraction_failed")
            return False

    def _collect(self, path: str, page: commoncrawl.HtmlPage) -> str | Exception:
        """The extracted text, or the exception that names why there is none."""
        try:
            return self.extractor.result()
        except extract.ExtractionTimeout as exc:
            log.warning("%s @ %d: extraction timed out (%s)", path, page.offset, page.url)
            return exc
        except extract.ExtractionFailed as exc:
            log.warning("%s @ %d: extraction failed: %s", path, page.offset, exc)
            return exc

    def _finish(
        self, path: str, page: commoncrawl.HtmlPage, text: str | Exception | None, crawl: str | None, funnel: Funnel
    ) -> Iterator[Document]:
        if isinstance(text, extract.ExtractionTimeout):
            reason = "extraction_timeout"
        elif isinstance(text, Exception):
            reason = "extraction_failed"
        elif not text or not text.strip():
            reason = "extraction_empty"
        else:
            doc = Document(
                id=commoncrawl_id(page.record_id, f"{path}@{page.offset}"),
                text=text,
                source=commoncrawl.SOURCE,
                url=page.url,
                crawl=crawl,
                date=parse_warc_date(page.date),
            )
            reason = self.text(doc)
        if reason is None:
            funnel.kept += 1
            yield doc
        else:
            log.debug("%s @ %d: dropped (%s)", path, page.offset, reason)
            funnel.drop(reason)

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
        funnel.input_files += 1
        crawl = crawl or commoncrawl.crawl_of(path)
        for item in commoncrawl.read_warc(path, self.config.max_html_bytes):
            if isinstance(item, commoncrawl.ReadError):
                log.warning("%s @ %s: %s", path, item.offset, item.error)
                funnel.error(path, item.offset, item.error, item.retryable)
                continue
            funnel.warc_records += 1
            if isinstance(item, commoncrawl.SkippedRecord):
                funnel.records_skipped[item.reason] += 1
                continue
            funnel.records_in += 1
            reason, doc = self._page(path, item, crawl)
            if reason is None:
                funnel.kept += 1
                yield doc
            else:
                log.debug("%s @ %d: dropped (%s)", path, item.offset, reason)
                funnel.drop(reason)

    def _page(self, path: str, page: commoncrawl.HtmlPage, crawl: str | None) -> tuple[str | None, Document | None]:
        if self.blocklist is not None and self.blocklist.blocks(page.url):
            return "url_blocklist", None
        try:
            page_html = commoncrawl.page_html(page, self.config.max_html_bytes)
        except html.Rejected as rejected:
            log.info("%s @ %d: %s", path, page.offset, rejected)
            return rejected.reason, None
        try:
            text = self.extractor(page_html, page.url)
        except extract.ExtractionTimeout:
            log.warning("%s @ %d: extraction timed out (%s)", path, page.offset, page.url)
            return "extraction_timeout", None
        except extract.ExtractionFailed as exc:
            log.warning("%s @ %d: extraction failed: %s", path, page.offset, exc)
            return "extraction_failed", None
        if not text or not text.strip():
            return "extraction_empty", None
        doc = Document(
            id=commoncrawl_id(page.record_id, f"{path}@{page.offset}"),
            text=text,
            source=commoncrawl.SOURCE,
            url=page.url,
            crawl=crawl,
            date=parse_warc_date(page.date),
        )
        return self.text(doc), doc

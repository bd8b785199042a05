"""The per-document chain of each source, without Beam: records → text → language → filters.

`TextProcessor` is the part every source shares (language ID and quality filters). `WarcProcessor` adds
what is particular to web pages (URL blocklist, decoding, main-text extraction), `WikipediaProcessor`
wikitext cleaning, `TextFileProcessor` local corpora (Gutenberg stripping). Each counts every record it
reads into a `Funnel`, so nothing is lost without a reason.
"""

from __future__ import annotations

import logging
from typing import Iterator

from pipeline import extract, filters, html, langid
from pipeline.config import ProcessConfig
from pipeline.schema import Document, commoncrawl_id, parse_warc_date
from pipeline.sources import commoncrawl, localtext, wikipedia
from pipeline.stats import Funnel
from pipeline.wikitext import WikitextCleaner

log = logging.getLogger(__name__)


class TextProcessor:
    def __init__(self, config: ProcessConfig):
        self.identifier = langid.LanguageIdentifier(config.langid_model)
        self.selector = langid.LanguageSelector(set(config.languages), config.min_language_score)
        self.filters = filters.build_filters(config.filters, config.filter_settings)

    def __call__(self, doc: Document) -> str | None:
        """Fills in the language; returns a drop reason, or None to keep the (possibly rewritten) document.
        A language the source declares (a wiki's) stays in `language`; fastText's label is kept beside it."""
        doc.language_label, doc.language_score = self.identifier.identify(doc.text)
        doc.language = doc.language or doc.language_label
        reason = self.selector(doc.language_label, doc.language_score)
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
        doc = None
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
        yield from _keep_or_drop(doc, reason, f"{path} @ {page.offset}", funnel)


def _keep_or_drop(doc: Document, reason: str | None, where: str, funnel: Funnel) -> Iterator[Document]:
    if reason is None:
        funnel.kept += 1
        yield doc
    else:
        log.debug("%s: dropped (%s)", where, reason)
        funnel.drop(reason)


class WikipediaProcessor:
    """Turns one part of a dump (`wikipedia.DumpPart`) into kept documents, counting the rest."""

    def __init__(self, config: ProcessConfig, namespaces=wikipedia.DEFAULT_NAMESPACES, keep_tables: bool = False):
        self.text = TextProcessor(config)
        self.namespaces = tuple(namespaces)
        self.keep_tables = keep_tables

    def cleaner(self, siteinfo: wikipedia.SiteInfo) -> WikitextCleaner:
        """A cleaner that knows the wiki's own names for files and categories (`Datei:`, `Категорія:`)."""
        names = siteinfo.namespaces
        return WikitextCleaner(
            file_prefixes=[names.get(6, ""), names.get(-2, "")],
            category_prefixes=[names.get(14, "")],
            keep_tables=self.keep_tables,
        )

    def process(self, part: wikipedia.DumpPart, funnel: Funnel) -> Iterator[Document]:
        if part.first:
            funnel.input_files += 1
        site = part.siteinfo
        cleaner = self.cleaner(site)
        for item in wikipedia.read_part(part, self.namespaces):
            if isinstance(item, wikipedia.ReadError):
                log.warning("%s @ %s: %s", part.path, item.offset, item.error)
                funnel.error(part.path, item.offset, item.error)
                continue
            funnel.records_read += 1
            if isinstance(item, wikipedia.SkippedPage):
                log.debug("%s: %r skipped (%s)", part.path, item.title, item.reason)
                funnel.records_skipped[item.reason] += 1
                continue
            funnel.records_in += 1
            where = f"{part.path}: {item.title!r}"
            try:
                text = cleaner.clean(item.text)
            except Exception as exc:  # mwparserfromhell on input it was never shown; one page, not the run
                log.warning("%s: wikitext cannot be cleaned: %s", where, exc)
                funnel.drop("cleaning_failed")
                continue
            if not text:
                funnel.drop("cleaned_empty")
                continue
            doc = Document(
                id=f"{wikipedia.SOURCE}/{site.dbname}/{item.page_id}",
                text=text,
                source=wikipedia.SOURCE,
                url=site.url(item.title),
                date=item.timestamp,
                language=site.language,
                title=item.title,
            )
            yield from _keep_or_drop(doc, self.text(doc), where, funnel)


class TextFileProcessor:
    """Turns one local text file into kept documents of source `source`, counting the rest."""

    def __init__(self, config: ProcessConfig, source: str = localtext.DEFAULT_SOURCE,
                 text_field: str = localtext.DEFAULT_TEXT_FIELD, lines: bool = False,
                 strip_gutenberg: bool = False, language: str | None = None):
        self.text = TextProcessor(config)
        self.source = source
        self.text_field = text_field
        self.lines = lines
        self.strip_gutenberg = strip_gutenberg
        self.language = language

    def process(self, path: str, name: str, funnel: Funnel) -> Iterator[Document]:
        """`name`: the file's path within the collection, which the document ids are made of."""
        funnel.input_files += 1
        for item in localtext.read_texts(path, name, self.text_field, self.lines):
            if isinstance(item, localtext.ReadError):
                log.warning("%s: %s", path, item.error)
                funnel.error(path, None, item.error)
                continue
            funnel.records_read += 1
            if isinstance(item, localtext.SkippedRecord):
                log.info("%s: skipped (%s)", item.where, item.reason)
                funnel.records_skipped[item.reason] += 1
                continue
            funnel.records_in += 1
            text, title = item.text, item.title
            if self.strip_gutenberg:
                title = title or localtext.gutenberg_title(text)
                text = localtext.strip_gutenberg(text)
            if not text.strip():
                funnel.drop("cleaned_empty")
                continue
            doc = Document(id=f"{self.source}/{item.key}", text=text, source=self.source, url=item.url,
                           date=item.date, language=self.language, title=title)
            yield from _keep_or_drop(doc, self.text(doc), f"{path}: {item.key}", funnel)

"""The Wikipedia source: MediaWiki XML dumps (`pipeline.sources.mediawiki` reads them) by file or by wiki name,
planned into runs of bz2 streams through a multistream index, each page's wikitext cleaned into plain text."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator

from pipeline.common.remote import input_key, is_url, open_input
from pipeline.common.schema import Document, ReadError, Skipped, wikipedia_id
from pipeline.common.settings import UsageError
from pipeline.sources import DocumentSettings, Source, listed_once
from pipeline.sources.mediawiki import (
    DEFAULT_DUMPS_BASE_URL,
    DEFAULT_NAMESPACES,
    DumpPart,
    Page,
    SiteInfo,
    dump_urls,
    plan_dump,
    read_part,
)
from pipeline.steps.wikitext import WikitextCleaner

log = logging.getLogger(__name__)

SOURCE = "wikipedia"


@dataclasses.dataclass
class Settings(DocumentSettings):
    """A recipe's Wikipedia table: `dumps` (with `indexes` in the same positions, or found beside them) or `wikis`."""

    dumps: list[str] = dataclasses.field(default_factory=list)  # .xml, .xml.bz2 (single or multistream), .xml.xz
    indexes: list[str] = dataclasses.field(default_factory=list)  # multistream indexes: the dumps are read in parallel
    wikis: list[str] = dataclasses.field(default_factory=list)  # enwiki, …: their multistream dump and index
    dump_date: str = "latest"  # with wikis: latest or YYYYMMDD
    dumps_base_url: str = DEFAULT_DUMPS_BASE_URL
    namespaces: list[int] = dataclasses.field(default_factory=lambda: list(DEFAULT_NAMESPACES))
    keep_tables: bool = False  # keep the text of wikitext tables
    streams_per_part: int = 0  # bz2 streams (100 pages each) per unit (0: up to 100, at least 64 units)
    filters: list[str] = dataclasses.field(default_factory=lambda: ["min_length"])
    min_language_score: float = 0.0
    pii: bool = False  # an encyclopedia's or a book's addresses are public ones, not PII


INPUT_SETTINGS = ("dumps", "indexes", "wikis", "dump_date", "dumps_base_url", "streams_per_part")


def _probe(path: str, where: str) -> None:
    """A missing dump or index is the user's to fix, so it is reported before the pipeline starts."""
    try:
        with open_input(path) as stream:
            stream.read(1)
    except OSError as exc:
        raise UsageError(f"{where}: cannot read {path}: {exc}")


def index_beside(dump: str) -> str | None:
    """Wikimedia's name for a local multistream dump's index, when that file is there."""
    if is_url(dump) or not dump.endswith("-multistream.xml.bz2"):
        return None
    index = dump[: -len(".xml.bz2")] + "-index.txt.bz2"
    return index if os.path.isfile(index) else None


class CleanWikitext:
    """Wikitext → plain text, knowing the wiki's own names for files and categories (`Datei:`, `Категорія:`)."""

    name = "wikitext"

    def __init__(self, siteinfo: SiteInfo, keep_tables: bool):
        names = siteinfo.namespaces
        self.cleaner = WikitextCleaner(
            file_prefixes=[names.get(6, ""), names.get(-2, "")],
            category_prefixes=[names.get(14, "")],
            keep_tables=keep_tables,
        )

    def __call__(self, doc: Document) -> str | None:
        try:
            text = self.cleaner.clean(doc.text)
        except Exception as exc:  # mwparserfromhell on input it was never shown; one page, not the run
            log.warning("%s: wikitext cannot be cleaned: %s", doc.id, exc)
            return "cleaning_failed"
        if not text:
            return "cleaned_empty"
        doc.text = text
        return None


class Wikipedia(Source):
    """Inputs are (dump, index or None) pairs; with an index a dump is planned into runs of bz2 streams that
    workers read on their own (seeking, or with HTTP Range requests); without one, it is one sequential unit."""

    Settings = Settings
    kind = SOURCE

    def inputs(self) -> list[tuple[str, str | None]]:
        s, where = self.settings, f"sources.{self.name}"
        if bool(s.dumps) == bool(s.wikis):
            raise UsageError(f"{where}: give dumps or wikis (one of them)")
        if s.streams_per_part < 0:
            raise UsageError(f"{where}.streams_per_part must be at least 1 (0: chosen from the index)")
        pairs: list[tuple[str, str | None]]
        if s.wikis:
            pairs = [dump_urls(wiki, s.dump_date, s.dumps_base_url) for wiki in s.wikis]
        else:
            if len(s.indexes) > len(s.dumps):
                raise UsageError(f"{where}.indexes: {len(s.indexes)} given for {len(s.dumps)} dumps")
            indexes = [*s.indexes, *[""] * (len(s.dumps) - len(s.indexes))]
            pairs = [(dump, index or index_beside(dump)) for dump, index in zip(s.dumps, indexes)]
        pairs = listed_once(pairs, where)
        for dump, index in pairs:
            _probe(dump, f"{where}.dumps")
            if index:
                _probe(index, f"{where}.indexes")
            log.info("dump %s%s", dump, f" with index {index}" if index else " (no index: one sequential reader)")
        return pairs

    def plan(self, dump_and_index) -> list[DumpPart]:
        dump, index = dump_and_index
        parts = plan_dump(dump, index, self.settings.streams_per_part or None)
        log.info("%s: %d part(s)%s", dump, len(parts), " through the index" if index else ", read sequentially")
        return parts

    def input_path(self, dump_and_index) -> str:
        dump, index = dump_and_index
        return index or dump

    def unit_key(self, part: DumpPart) -> str:
        if part.offsets is None:
            return input_key(part.path)
        return f"{input_key(part.path)}-{part.offsets[0]}-{part.offsets[-1]}-{part.next_offset}"

    def unit_path(self, part: DumpPart) -> str:
        return part.path

    def counts_input(self, part: DumpPart) -> bool:
        return part.first

    def unit_settings(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self.settings).items() if k not in INPUT_SETTINGS}

    def read(self, part: DumpPart) -> Iterator[Page | Skipped | ReadError]:
        for item in read_part(part, self.settings.namespaces):
            if isinstance(item, Page):
                item.site = part.siteinfo
            yield item

    def document(self, record: Page | Skipped | ReadError) -> Document | Skipped | ReadError:
        if not isinstance(record, Page):
            return record
        site = record.site or SiteInfo()
        return Document(
            id=wikipedia_id(site.dbname, record.page_id),
            text=record.text,
            source=SOURCE,
            url=site.url(record.title),
            date=record.timestamp,
            language=site.language,
            title=record.title,
        )

    def steps(self, part: DumpPart) -> list:
        return [CleanWikitext(part.siteinfo, self.settings.keep_tables)]

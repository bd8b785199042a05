"""Common Crawl: the `warc.paths.gz` listing, and WARC files read record by record into HTML pages.

Reading never raises for bad data: it yields `HtmlPage` for each HTML response, `Skipped` for every other
record (with the reason), and at most one `ReadError` when the rest of the file cannot be read. `CommonCrawl`
is the source: one unit per WARC, its pages extracted by trafilatura in a child process.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import logging
import os
import posixpath
import zlib
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

from pipeline.common.remote import (
    FetchError,
    RangeReader,
    SeekableInput,
    expand_glob,
    input_key,
    is_url,
    open_input,
    read_text_lines,
)
from pipeline.common.schema import Counted, Document, Dropped, ReadError, Skipped, commoncrawl_id, parse_warc_date
from pipeline.common.settings import UsageError, describe_exception
from pipeline.sources import DocumentSettings, Source, ccindex, listed_once
from pipeline.steps import extract, html, langid, wordlists

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://data.commoncrawl.org/"
SOURCE = "commoncrawl"


def crawl_listing_url(crawl: str, base_url: str = DEFAULT_BASE_URL) -> str:
    return _under(base_url, f"crawl-data/{crawl}/warc.paths.gz")


def index_listing_url(crawl: str, base_url: str = DEFAULT_BASE_URL) -> str:
    """The crawl's list of columnar index files (every subset's; the `subset=warc` ones are read)."""
    return _under(base_url, f"crawl-data/{crawl}/cc-index-table.paths.gz")


def _under(base: str, path: str) -> str:
    """`path`, relative as Common Crawl's listings and index give it, under `base`: a URL, a folder or a bucket
    (urljoin knows no s3:// or gs://, and would drop the base)."""
    return (base if base.endswith("/") else base + "/") + path.lstrip("/")


def resolve_paths(listing: list[str], base_url: str, offset: int = 0, limit: int | None = None) -> list[str]:
    """Take `limit` entries from `offset` of a listing, in listing order; relative paths resolve against
    `base_url` (as Common Crawl's listings are relative to its endpoint)."""
    chosen = listing[offset : None if limit is None else offset + limit]
    return [p if is_url(p) or "://" in p else _under(base_url, p) for p in chosen]


def read_listing(listing_path: str, base_url: str, offset: int = 0, limit: int | None = None) -> list[str]:
    return resolve_paths(read_text_lines(listing_path), base_url, offset, limit)


def crawl_of(path: str) -> str | None:
    """`CC-MAIN-2024-10` from a Common Crawl path (`crawl-data/CC-MAIN-2024-10/segments/…`)."""
    parts = urlsplit(path).path.split("/")
    for i, part in enumerate(parts[:-1]):
        if part == "crawl-data":
            return parts[i + 1]
    return None


@dataclasses.dataclass
class HtmlPage:
    url: str | None
    date: str | None
    record_id: str | None
    offset: int
    content_type: str | None
    body: bytes  # raw HTTP body, at most the cap plus chunk framing
    transfer_encoding: str | None
    content_encoding: str | None
    body_truncated: bool  # the body was longer than the cap
    path: str = ""  # the WARC, and its crawl, filled in by the source
    crawl: str | None = None


WarcItem = HtmlPage | Skipped | ReadError
_FRAMING_SLACK = 64 * 1024


@dataclasses.dataclass
class _Broken:
    """From `_iterate`: the record that starts at `offset` cannot be read; reading may go on after it."""

    offset: int


def read_warc(
    path: str, max_html_bytes: int = html.DEFAULT_MAX_HTML_BYTES, opener: Callable[..., Any] = open_input
) -> Iterator[WarcItem]:
    """Every record of a WARC (or ARC) file, gzip per record or not compressed; a file compressed as one
    gzip member (which warcio refuses by design) is read again as one stream. After a record that cannot be read
    (a corrupt gzip member), reading goes on from the next gzip member that holds a WARC record, so one broken
    record costs that record (an input error), not the rest of the file. `opener(path, start)` opens the file at
    byte `start`, as `open_input` does (a seek, or an HTTP range request)."""
    done = 0
    start: int | None = 0
    try:
        while start is not None:
            broken = None
            with opener(path, start) as stream:
                for item in _iterate(stream, max_html_bytes, start):
                    if isinstance(item, _Broken):
                        broken = item.offset
                        break
                    yield item
                    done += 1
            # past both the broken record and where this pass began (warcio's offsets are not exact around a
            # damaged record), so every pass starts further on and the loop ends
            start = None if broken is None else _next_member(path, max(broken, start) + 1, opener)
            if start is not None:
                log.warning("%s: the record at %d cannot be read; reading on from %d", path, broken, start)
        return
    except ArchiveLoadFailed as exc:
        if "non-chunked gzip" not in str(exc):
            yield ReadError(f"not a WARC/ARC file: {_one_line(exc)}", None)
            return
    except Exception as exc:
        yield ReadError(f"cannot open: {_one_line(exc)}", None, _transient(exc))
        return
    log.info("%s is one gzip member; reading it as a single stream", path)
    try:
        with opener(path) as raw, gzip.GzipFile(fileobj=raw) as stream:
            for index, item in enumerate(_iterate(stream, max_html_bytes)):
                if isinstance(item, _Broken):
                    return
                if index >= done:
                    yield item
    except Exception as exc:
        yield ReadError(f"cannot open: {_one_line(exc)}", None, _transient(exc))


_GZIP_MEMBER = b"\x1f\x8b\x08"
_SCAN_BYTES = 1 << 20


def _next_member(path: str, after: int, opener: Callable[..., Any]) -> int | None:
    """The offset of the first gzip member at or after `after` whose content starts a WARC record, or None (also
    when the file cannot be read again: the error that led here is counted already)."""
    try:
        return _find_member(path, after, opener)
    except Exception as exc:
        log.warning("%s: cannot read on after %d: %s", path, after, _one_line(exc))
        return None


def _find_member(path: str, after: int, opener: Callable[..., Any]) -> int | None:
    with opener(path, after) as stream:
        position, window = after, b""
        while True:
            chunk = stream.read(_SCAN_BYTES)
            window += chunk
            found = window.find(_GZIP_MEMBER)
            while found >= 0:
                if len(window) - found < 512 and chunk:
                    break  # read more before judging this candidate
                try:
                    head = zlib.decompressobj(31).decompress(window[found : found + 65536], 16)
                except zlib.error:
                    head = b""
                if head.startswith(b"WARC/"):
                    return position + found
                found = window.find(_GZIP_MEMBER, found + 1)
            if not chunk:
                return None
            keep = max(found, len(window) - 512) if found >= 0 else len(window) - 2
            position, window = position + keep, window[keep:]


def _iterate(stream, max_html_bytes: int, start: int = 0) -> Iterator[WarcItem | _Broken]:
    """The records from `start` (the stream is there already); a record that cannot be read yields a ReadError,
    then `_Broken` with its offset."""
    records = ArchiveIterator(stream, arc2warc=True)
    base = start - records.offset  # warcio counts from where the stream was, when it can tell
    offset = next_offset = start
    first = True
    while True:
        try:
            record = next(records)
        except StopIteration:
            if first and not start:  # nothing at all: an empty file is an input error, not silence
                yield ReadError("no WARC or ARC record: the file is empty", 0)
            return
        except ArchiveLoadFailed as exc:
            if "non-chunked gzip" in str(exc):
                raise
            yield ReadError(_one_line(exc), next_offset)
            yield _Broken(next_offset)
            return
        except Exception as exc:  # truncated gzip member, garbage between records, …
            yield ReadError(f"unreadable record: {_one_line(exc)}", next_offset, _transient(exc))
            if not isinstance(exc, FetchError):  # the bytes are bad, not the way to them: read on after them
                yield _Broken(next_offset)
            return
        target = record.rec_headers.get_header("WARC-Target-URI") or ""
        if first and not start and record.rec_type != "warcinfo" and "://" not in target:
            # warcio takes any line of text for an ARC header; real files start with a warcinfo (ARC:
            # filedesc) record or a record about a URL
            yield ReadError("not a WARC or ARC file", 0)
            return
        first = False
        try:
            item = _classify(record, max_html_bytes)
            # Asked only now: warcio reads the rest of the record to answer.
            offset = base + records.get_record_offset()
            next_offset = offset + records.get_record_length()
            if isinstance(item, HtmlPage):
                item.offset = offset
            elif isinstance(item, Skipped):
                item.where = offset
        except Exception as exc:
            yield ReadError(f"unreadable record payload: {_one_line(exc)}", next_offset, _transient(exc))
            if not isinstance(exc, FetchError):
                yield _Broken(next_offset)
            return
        missing = getattr(record.raw_stream, "limit", 0)
        if missing > 0:  # the file ended (or a gzip member broke) inside this record
            yield ReadError(f"record truncated: {missing} bytes of its content are missing", offset)
            continue
        yield item


def _capture_record(member: bytes, capture: ccindex.Capture, max_html_bytes: int) -> tuple[str | None, WarcItem]:
    """A capture's bytes as the one record the index row promises: (None, the record), or (why not, the error):
    "range" (the bytes end early), "record" (not one readable record) or "url_mismatch" (another URL's)."""
    if len(member) < capture.length:
        return "range", ReadError("the file ends inside the record")
    try:
        items = [i for i in _iterate(io.BytesIO(member), max_html_bytes, capture.offset) if not isinstance(i, _Broken)]
    except Exception as exc:  # warcio refuses bytes that are not a record at all
        items = [ReadError(_one_line(exc))]
    first = items[0] if items else ReadError("no record")
    if isinstance(first, ReadError) or len(items) != 1:
        return "record", first
    if isinstance(first, HtmlPage) and first.url != capture.url:
        return "url_mismatch", first
    return None, first


def _classify(record, max_html_bytes: int) -> WarcItem:
    if record.rec_type != "response":
        return Skipped("not_response", -1)
    headers = record.http_headers
    if headers is None or not headers.get_statuscode():
        return Skipped("no_http_headers", -1)
    if headers.get_statuscode() != "200":
        return Skipped("http_status", -1)
    content_type = headers.get_header("Content-Type")
    if not html.is_html(content_type):
        return Skipped("non_html", -1)
    limit = max_html_bytes + _FRAMING_SLACK
    body = record.raw_stream.read(limit + 1)
    return HtmlPage(
        url=record.rec_headers.get_header("WARC-Target-URI"),
        date=record.rec_headers.get_header("WARC-Date"),
        record_id=record.rec_headers.get_header("WARC-Record-ID"),
        offset=-1,
        content_type=content_type,
        body=body[:limit],
        transfer_encoding=headers.get_header("Transfer-Encoding"),
        content_encoding=headers.get_header("Content-Encoding"),
        body_truncated=len(body) > limit,
    )


def page_html(page: HtmlPage, max_html_bytes: int) -> str:
    """The page's HTML as text, or `html.Rejected` with the drop reason."""
    if page.body_truncated:
        raise html.Rejected("html_too_large", f"body over {max_html_bytes} bytes")
    body = page.body
    if page.transfer_encoding and "chunked" in page.transfer_encoding.lower():
        body = html.dechunk(body)
    body = html.decode_content(body, page.content_encoding, max_html_bytes)
    if len(body) > max_html_bytes:
        raise html.Rejected("html_too_large", f"body over {max_html_bytes} bytes")
    text, _ = html.decode_html(body, page.content_type)
    return text


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, FetchError) and exc.transient


def _one_line(exc: BaseException) -> str:
    """The exception on one line of printable characters. warcio quotes the line it could not parse, which in
    a file that is not a WARC is binary: a few of its characters are shown, escaped."""
    text = describe_exception(exc, 200)
    head, quoted, line = text.partition(", first line: ")
    return f"{head} (it starts {ascii(line[:40])})" if quoted else text


@dataclasses.dataclass
class Settings(DocumentSettings):
    """A recipe's Common Crawl table: one of crawl, warc_paths or warcs."""

    crawl: str = ""  # CC-MAIN-YYYY-WW: its warc.paths.gz from cc_base_url
    warc_paths: str = ""  # a paths listing like Common Crawl's (gzip or plain), a file or URL
    warcs: list[str] = dataclasses.field(default_factory=list)  # globs of WARC files on any filesystem
    cc_base_url: str = DEFAULT_BASE_URL  # where crawl-data/ lives; relative listing paths resolve against it
    max_warcs: int = 0  # take at most this many WARCs from the listing (0: all)
    warc_offset: int = 0  # skip this many listing entries first
    url_blocklist: str = ""  # domains or URLs to drop before extraction, one per line
    # FineWeb's URL word rules, each a word list file (one per line): a banned word among the URL's words, at least
    # url_soft_threshold soft banned words, or a banned subword anywhere in it drops the page before extraction
    url_banned_words: str = ""
    url_soft_banned_words: str = ""
    url_banned_subwords: str = ""
    url_soft_threshold: int = 2
    max_html_bytes: int = html.DEFAULT_MAX_HTML_BYTES  # drop pages whose body, before or after decoding, is larger
    extract_timeout: float = extract.DEFAULT_TIMEOUT_S  # seconds the extractor may spend on one page
    extractor: str = "trafilatura"  # or "resiliparse": about ten times faster, less precise (DCLM's choice)
    # With `languages` restricted and trafilatura: a cheap resiliparse extraction and language ID first; a page
    # whose wanted languages have under `prefilter_threshold` probability there is set aside (language.prefilter)
    # before trafilatura, and every other page goes the full way, so what is kept is the full path's.
    prefilter: bool = True
    prefilter_threshold: float = langid.DEFAULT_PREFILTER_THRESHOLD
    # Fetch only the captures Common Crawl's columnar index selects (by byte range) instead of whole WARCs: the index
    # files are `cc_index` (globs or URLs; giving them is index mode), else with `index` the crawl's
    # cc-index-table.paths.gz. `languages` select by the
    # index's CLD2 labels (`index_language_mode`: "primary", the first label, or "any" of the three) before the run's
    # own language ID decides; `index_hosts` (a file of hosts or domains), `index_url_patterns` (RE2) and
    # `index_filter` (a SQL expression over the index's columns) narrow it further.
    index: bool = False
    cc_index: list[str] = dataclasses.field(default_factory=list)
    index_language_mode: str = "primary"
    index_hosts: str = ""
    index_url_patterns: list[str] = dataclasses.field(default_factory=list)
    index_filter: str = ""
    index_gap_bytes: int = ccindex.DEFAULT_GAP_BYTES  # records closer than this share one range request
    index_unit_records: int = ccindex.DEFAULT_UNIT_RECORDS  # captures of one WARC per unit of work


URL_LISTS = ("url_blocklist", "url_banned_words", "url_soft_banned_words", "url_banned_subwords")
# Which inputs a run reads, not what a unit yields: out of the resume fingerprint (an index unit's key is not a WARC's,
# so `index` may be too)
INPUT_SETTINGS = ("crawl", "warc_paths", "warcs", "cc_base_url", "max_warcs", "warc_offset", "cc_index", "index")


@dataclasses.dataclass(frozen=True)
class IndexUnit:
    """Selected captures of one WARC from one index file; the file's first unit carries its counts."""

    index: str
    warc: str
    captures: tuple[ccindex.Capture, ...]
    counts: tuple[tuple[str, int], ...] = ()


class ExtractText:
    """trafilatura in a child process, as a step that works ahead: the unit processor `submit`s the next page
    while the later steps run on the current one, then `collect`s it."""

    name = "extract"

    def __init__(self, extractor: extract.IsolatedExtractor):
        self.extractor = extractor

    def submit(self, doc: Document) -> str | None:
        try:
            self.extractor.submit(doc.text, doc.url)
            return None
        except extract.ExtractionFailed as exc:  # the child could not be (re)started
            log.warning("%s: extraction failed: %s", doc.id, exc)
            return "extraction_failed"

    def collect(self, doc: Document) -> str | None:
        try:
            text = self.extractor.result()
        except extract.ExtractionTimeout:
            log.warning("%s: extraction timed out (%s)", doc.id, doc.url)
            return "extraction_timeout"
        except extract.ExtractionFailed as exc:
            log.warning("%s: extraction failed: %s", doc.id, exc)
            return "extraction_failed"
        if not text or not text.strip():
            return "extraction_empty"
        doc.text = text
        return None

    def __call__(self, doc: Document) -> str | None:
        return self.submit(doc) or self.collect(doc)


class CommonCrawl(Source):
    """One unit per WARC (or ARC) file; a page's document starts as its decoded HTML and is extracted first."""

    Settings = Settings
    kind = SOURCE

    def __init__(self, name: str, settings):
        super().__init__(name, settings)
        self.url_filter: wordlists.UrlFilter | None = None
        self.extractor: extract.IsolatedExtractor | None = None

    def inputs(self) -> list[str]:
        s = self.settings
        where = f"sources.{self.name}"
        if s.extractor not in extract.EXTRACTORS:
            raise UsageError(f"{where}.extractor: {s.extractor!r} is not one of {', '.join(extract.EXTRACTORS)}")
        if not 0 <= s.prefilter_threshold <= 1:
            raise UsageError(f"{where}.prefilter_threshold: a probability from 0 to 1: {s.prefilter_threshold}")
        if not self.index_mode and sum(map(bool, (s.crawl, s.warc_paths, s.warcs))) != 1:
            raise UsageError(f"{where}: give exactly one of crawl, warc_paths and warcs")
        for setting in URL_LISTS:
            path = getattr(s, setting)
            if path and not os.path.isfile(path) and not is_url(path):
                raise UsageError(f"{where}.{setting}: file not found: {path}")
            try:
                read_text_lines(path) if path else None
            except ValueError as exc:
                raise UsageError(f"{where}.{setting}: {exc}")
        if self.index_mode:
            return self._index_inputs(where)
        end = s.warc_offset + s.max_warcs if s.max_warcs else None
        try:
            if s.warcs:
                paths = []
                for pattern in s.warcs:
                    matched = expand_glob(pattern)
                    if not matched:
                        raise UsageError(f"{where}.warcs: no file matches {pattern}")
                    paths.extend(matched)
                return sorted(set(paths))[s.warc_offset : end]
            listing = s.warc_paths or crawl_listing_url(s.crawl, s.cc_base_url)
            paths = read_listing(listing, s.cc_base_url, s.warc_offset, s.max_warcs or None)
        except (FetchError, OSError) as exc:
            raise UsageError(f"{where}: cannot read the WARC listing: {exc}")
        if not paths:
            raise UsageError(f"{where}: the WARC listing is empty (check warc_offset and max_warcs)")
        return listed_once(paths, where)

    def _index_inputs(self, where: str) -> list[str]:
        s = self.settings
        if s.warcs or s.warc_paths:
            raise UsageError(
                f"{where}.index: the index names the WARCs: give crawl or cc_index, not warcs or warc_paths"
            )
        try:
            self.selection().check()
        except ValueError as exc:
            raise UsageError(f"{where}.{exc}")
        try:
            if s.cc_index:
                paths: list[str] = []
                for pattern in s.cc_index:
                    matched = [pattern] if is_url(pattern) else expand_glob(pattern)
                    if not matched:
                        raise UsageError(f"{where}.cc_index: no file matches {pattern}")
                    paths.extend(matched)
            elif s.crawl:
                listed = read_listing(index_listing_url(s.crawl, s.cc_base_url), s.cc_base_url)
                paths = [path for path in listed if "/subset=warc/" in path]
            else:
                raise UsageError(f"{where}.index: give crawl or cc_index")
        except (FetchError, OSError) as exc:
            raise UsageError(f"{where}: cannot read the index listing: {exc}")
        if not paths:
            raise UsageError(f"{where}: no index file to read")
        return listed_once(sorted(set(paths)), where)

    def selection(self) -> ccindex.Selection:
        """The index rules of the settings; a ValueError names the setting at fault (a language without an ISO 639-3
        code, a hosts file that cannot be read)."""
        s = self.settings
        try:
            hosts = tuple(read_text_lines(s.index_hosts)) if s.index_hosts else ()
        except (OSError, ValueError) as exc:
            raise ValueError(f"index_hosts: {exc}") from None
        try:
            languages = tuple(ccindex.iso639_3(code) for code in s.languages)
        except ValueError as exc:
            raise ValueError(f"languages: {exc}") from None
        return ccindex.Selection(languages, s.index_language_mode, hosts, tuple(s.index_url_patterns), s.index_filter)

    @property
    def index_mode(self) -> bool:
        """Whether captures are fetched through the index: `index = true`, or index files given."""
        return self.settings.index or bool(self.settings.cc_index)

    @property
    def splits_inputs(self) -> bool:
        return self.index_mode

    def plan(self, source_input: str) -> list:
        """Whole-WARC mode: the WARC itself. Index mode: the index file's selected captures, a unit per
        `index_unit_records` of one WARC (a file that selects nothing still gives one unit, for its counts)."""
        if not self.index_mode:
            return [source_input]
        s = self.settings
        with SeekableInput(source_input) as index_file:
            by_warc, counts = ccindex.select(index_file, source_input, self.selection())
            counts["index_bytes_read"] = index_file.bytes_read
        log.info("%s: %d of %d captures selected, in %d WARCs", source_input, counts["selected"],
                 counts["captures"], len(by_warc))  # fmt: skip
        units = [
            IndexUnit(source_input, _under(s.cc_base_url, warc), batch)
            for warc, captures in sorted(by_warc.items())
            for batch in ccindex.batches(captures, s.index_unit_records)
        ] or [IndexUnit(source_input, "", ())]
        units[0] = dataclasses.replace(units[0], counts=tuple(sorted(counts.items())))
        return units

    def unit_key(self, unit) -> str:
        if not isinstance(unit, IndexUnit):
            return input_key(unit)
        identity = f"{input_key(unit.index)}|{unit.warc}|{[(c.offset, c.length) for c in unit.captures]}"
        name = posixpath.basename(unit.warc) or posixpath.basename(unit.index)
        return f"{name}-{len(unit.captures)}-{hashlib.sha1(identity.encode()).hexdigest()[:16]}"

    def unit_path(self, unit) -> str:
        return unit.warc or unit.index if isinstance(unit, IndexUnit) else unit

    def counts_input(self, unit) -> bool:
        return not isinstance(unit, IndexUnit) or bool(unit.counts)

    def unit_settings(self) -> dict:
        settings = {k: v for k, v in dataclasses.asdict(self.settings).items() if k not in INPUT_SETTINGS}
        for setting in URL_LISTS:
            if settings[setting]:
                settings[setting] = read_text_lines(settings[setting])  # its content, not its path
        return settings

    def open(self) -> None:
        s = self.settings
        if any(getattr(s, setting) for setting in URL_LISTS):
            self.url_filter = wordlists.UrlFilter.from_files(
                s.url_blocklist,
                s.url_banned_words,
                s.url_soft_banned_words,
                s.url_banned_subwords,
                s.url_soft_threshold,
            )
        self.extractor = extract.IsolatedExtractor(self.settings.extract_timeout, extractor=self.settings.extractor)
        self.extractor.start()

    def close(self) -> None:
        if self.extractor is not None:
            self.extractor.close()
            self.extractor = None

    def read(self, unit) -> Iterator[WarcItem | Counted]:
        if isinstance(unit, IndexUnit):
            yield from self._read_captures(unit)
            return
        crawl = crawl_of(unit)
        for item in read_warc(unit, self.settings.max_html_bytes):
            if isinstance(item, HtmlPage):
                item.path, item.crawl = unit, crawl
            yield item

    def _read_captures(self, unit: IndexUnit) -> Iterator[WarcItem | Counted]:
        """The unit's captures fetched by byte range, each through the per-record path of whole WARCs. A capture that
        cannot be had costs itself, counted by kind (`failed.fetch`, `failed.range`, `failed.record`,
        `failed.url_mismatch`) and named in the log."""
        for name, count in unit.counts:
            yield Counted(name, count)
        crawl = crawl_of(unit.warc)
        with RangeReader(unit.warc) as ranges:
            for start, end, captures in ccindex.coalesce(unit.captures, self.settings.index_gap_bytes):
                try:
                    data = ranges.read(start, end - start)
                except (FetchError, OSError) as exc:
                    log.warning("%s: bytes %d-%d (%d captures) cannot be fetched: %s", unit.warc, start, end,
                                len(captures), _one_line(exc))  # fmt: skip
                    yield Counted("failed.fetch", len(captures))
                    continue
                yield Counted("bytes_fetched", len(data))
                for capture in captures:
                    member = data[capture.offset - start : capture.offset - start + capture.length]
                    failure, page = _capture_record(member, capture, self.settings.max_html_bytes)
                    if failure is not None:
                        log.warning("%s @ %d+%d (%s): capture failed: %s", unit.warc, capture.offset, capture.length,
                                    capture.url, failure)  # fmt: skip
                        yield Counted(f"failed.{failure}")
                        continue
                    yield Counted("fetched")
                    if isinstance(page, HtmlPage):
                        page.path, page.crawl = unit.warc, crawl
                    yield page

    def document(self, record: WarcItem) -> Document | Dropped | Skipped | ReadError:
        if not isinstance(record, HtmlPage):
            return record
        where = f"{record.path} @ {record.offset}"
        rule = self.url_filter.rule(record.url) if self.url_filter is not None else None
        if rule is not None:
            return Dropped(rule, where)
        try:
            page = page_html(record, self.settings.max_html_bytes)
        except html.Rejected as rejected:
            return Dropped(rejected.reason, f"{where}: {rejected}")
        return Document(
            id=commoncrawl_id(record.record_id, f"{record.path}@{record.offset}"),
            text=page,
            source=SOURCE,
            url=record.url,
            crawl=record.crawl,
            date=parse_warc_date(record.date),
        )

    @property
    def prefilters(self) -> bool:
        """Whether pages go through the language prefilter before extraction (`prefilter` above)."""
        s = self.settings
        return s.prefilter and bool(s.languages) and s.extractor == "trafilatura"

    def steps(self, unit) -> list:
        assert self.extractor is not None, "open() makes the extractor"
        if not self.prefilters:
            return [ExtractText(self.extractor)]
        assert self.language_identifier is not None, "the unit processor gives the run's language identifier"
        prefilter = langid.LanguagePrefilter(
            self.language_identifier, set(self.settings.languages), self.settings.prefilter_threshold,
            extract.page_text,
        )  # fmt: skip
        return [prefilter, ExtractText(self.extractor)]

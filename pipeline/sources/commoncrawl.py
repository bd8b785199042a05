"""Common Crawl: the `warc.paths.gz` listing, and WARC files read record by record into HTML pages.

Reading never raises for bad data: it yields `HtmlPage` for each HTML response, `SkippedRecord` for every
other record (with the reason), and at most one `ReadError` when the rest of the file cannot be read.
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
from typing import Callable, Iterator
from urllib.parse import urljoin, urlsplit

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

from pipeline import html
from pipeline.remote import FetchError, is_url, open_input, read_text_lines

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://data.commoncrawl.org/"
SOURCE = "commoncrawl"


def crawl_listing_url(crawl: str, base_url: str = DEFAULT_BASE_URL) -> str:
    return urljoin(_with_slash(base_url), f"crawl-data/{crawl}/warc.paths.gz")


def _with_slash(base: str) -> str:
    return base if base.endswith("/") else base + "/"


def resolve_paths(listing: list[str], base_url: str, offset: int = 0, limit: int | None = None) -> list[str]:
    """Take `limit` entries from `offset` of a listing, in listing order; relative paths resolve against
    `base_url` (as Common Crawl's listings are relative to its endpoint)."""
    chosen = listing[offset : None if limit is None else offset + limit]
    return [p if is_url(p) or "://" in p else urljoin(_with_slash(base_url), p.lstrip("/")) for p in chosen]


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


@dataclasses.dataclass
class SkippedRecord:
    reason: str
    offset: int


@dataclasses.dataclass
class ReadError:
    offset: int | None
    error: str
    retryable: bool = False  # the network failed, not the file: a rerun may read it


WarcItem = HtmlPage | SkippedRecord | ReadError
_FRAMING_SLACK = 64 * 1024


def read_warc(
    path: str,
    max_html_bytes: int = html.DEFAULT_MAX_HTML_BYTES,
    opener: Callable[[str], object] = open_input,
) -> Iterator[WarcItem]:
    """Every record of a WARC (or ARC) file, gzip per record or not compressed; a file compressed as one
    gzip member (which warcio refuses by design) is read again as one stream."""
    done = 0
    try:
        with opener(path) as stream:
            for item in _iterate(stream, max_html_bytes):
                yield item
                done += 1
        return
    except ArchiveLoadFailed as exc:
        if "non-chunked gzip" not in str(exc):
            yield ReadError(None, f"not a WARC/ARC file: {_one_line(exc)}")
            return
    except Exception as exc:
        yield ReadError(None, f"cannot open: {_one_line(exc)}", _transient(exc))
        return
    log.info("%s is one gzip member; reading it as a single stream", path)
    try:
        with opener(path) as raw, gzip.GzipFile(fileobj=raw) as stream:
            for index, item in enumerate(_iterate(stream, max_html_bytes)):
                if index >= done:
                    yield item
    except Exception as exc:
        yield ReadError(None, f"cannot open: {_one_line(exc)}", _transient(exc))


def _iterate(stream, max_html_bytes: int) -> Iterator[WarcItem]:
    records = ArchiveIterator(stream, arc2warc=True)
    offset = 0
    first = True
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except ArchiveLoadFailed as exc:
            if "non-chunked gzip" in str(exc):
                raise
            yield ReadError(offset, _one_line(exc))
            return
        except Exception as exc:  # truncated gzip member, garbage between records, …
            yield ReadError(offset, f"unreadable record: {_one_line(exc)}", _transient(exc))
            return
        target = record.rec_headers.get_header("WARC-Target-URI") or ""
        if first and record.rec_type != "warcinfo" and "://" not in target:
            # warcio takes any line of text for an ARC header; real files start with a warcinfo (ARC:
            # filedesc) record or a record about a URL
            yield ReadError(0, "not a WARC or ARC file")
            return
        first = False
        try:
            item = _classify(record, max_html_bytes)
            # Asked only now: warcio reads the rest of the record to answer.
            offset = item.offset = records.get_record_offset()
        except Exception as exc:
            yield ReadError(offset, f"unreadable record payload: {_one_line(exc)}", _transient(exc))
            return
        missing = getattr(record.raw_stream, "limit", 0)
        if missing > 0:  # the file ended (or a gzip member broke) inside this record
            yield ReadError(offset, f"record truncated: {missing} bytes of its content are missing")
            continue
        yield item


def _classify(record, max_html_bytes: int) -> WarcItem:
    if record.rec_type != "response":
        return SkippedRecord("not_response", -1)
    headers = record.http_headers
    if headers is None or not headers.get_statuscode():
        return SkippedRecord("no_http_headers", -1)
    if headers.get_statuscode() != "200":
        return SkippedRecord("http_status", -1)
    content_type = headers.get_header("Content-Type")
    if not html.is_html(content_type):
        return SkippedRecord("non_html", -1)
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
    text = f"{type(exc).__name__}: {exc}".strip()
    return " ".join(text.split())[:500]

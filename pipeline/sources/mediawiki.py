"""MediaWiki XML dumps: URL resolution, the multistream index, and streaming page parsing.

Three ways in, all yielding `Page`, `schema.Skipped` or `schema.ReadError`:
- `read_dump(path)`: the whole file with one reader (plain `.xml`, `.xml.bz2` single- or multistream,
  `.xml.xz`); the XML declaration decides the encoding (UTF-16 exports exist).
- `read_streams(path, offsets, end)`: the bz2 streams of a multistream dump that start at `offsets`
  (from the index), each decompressed and parsed on its own, so workers can share a dump by stream ranges
  and a corrupt stream costs only its own pages.
- `read_siteinfo(path, header_end)`: the dump's `<siteinfo>` (first stream of a multistream dump).

`plan_dump(path, index)` turns a dump into `DumpPart` work units (runs of streams, or the whole file when
there is no index) that `read_part` reads, each carrying the dump's siteinfo. `pipeline.sources.wikipedia` is the
source that reads dumps this way.

Parsing never expands entities, loads a DTD or touches the network, and clears each page once read, so
memory stays bounded by one page (or one stream of ~100 pages).
"""

from __future__ import annotations

import bz2
import dataclasses
import datetime as dt
import io
import logging
import lzma
import math
import posixpath
from collections.abc import Iterable, Iterator
from urllib.parse import quote

from lxml import etree

from pipeline.common.remote import open_input
from pipeline.common.schema import ReadError, Skipped

log = logging.getLogger(__name__)

DEFAULT_DUMPS_BASE_URL = "https://dumps.wikimedia.org"
DEFAULT_NAMESPACES = (0,)


@dataclasses.dataclass
class SiteInfo:
    dbname: str = ""
    base_url: str = ""  # https://uk.wikipedia.org/wiki/...
    namespaces: dict = dataclasses.field(default_factory=dict)  # key → localised name

    @property
    def host(self) -> str:
        parts = self.base_url.split("/")
        return parts[2] if len(parts) > 2 else ""

    @property
    def language(self) -> str | None:
        """ukwiki → uk, zh_yuewiki → zh-yue (the wiki's content language, by Wikimedia's naming)."""
        name = self.dbname[:-4] if self.dbname.endswith("wiki") else ""
        return name.replace("_", "-") or None

    def url(self, title: str) -> str | None:
        return f"https://{self.host}/wiki/{quote(title.replace(' ', '_'), safe='/:()_,-.!~*')}" if self.host else None


@dataclasses.dataclass
class Page:
    page_id: int
    title: str
    namespace: int
    text: str
    revision_id: int | None
    timestamp: dt.datetime | None
    offset: int | None  # the bz2 stream (multistream) the page came from
    site: SiteInfo | None = None  # the dump's, filled in by the source


def dump_urls(wiki: str, date: str, base_url: str = DEFAULT_DUMPS_BASE_URL) -> tuple[str, str]:
    """The pages-articles-multistream dump of `wiki` on `date` (`latest` or YYYYMMDD) and its index."""
    stem = f"{base_url.rstrip('/')}/{wiki}/{date}/{wiki}-{date}-pages-articles-multistream"
    return f"{stem}.xml.bz2", f"{stem}-index.txt.bz2"


def read_index(path: str) -> list[int]:
    """Sorted distinct bz2 stream offsets from a multistream index (`offset:page_id:title` lines)."""
    with open_input(path) as stream:
        data = stream.read()
    if path.endswith(".bz2") or data[:3] == b"BZh":
        data = bz2.decompress(data)
    offsets = set()
    for number, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if line.strip():
            head = line.split(":", 1)[0]
            if not head.isdigit():
                raise ValueError(f"{path}:{number}: not an index line (offset:page_id:title): {line[:80]!r}")
            offsets.add(int(head))
    return sorted(offsets)


def stream_groups(offsets: list[int], groups: int) -> list[list[int]]:
    """Consecutive stream offsets split into at most `groups` runs of similar length (work units)."""
    size = max(1, -(-len(offsets) // max(groups, 1)))
    return [offsets[i : i + size] for i in range(0, len(offsets), size)]


def _local(tag) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _child_text(element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return child.text
    return None


def _parse_siteinfo(element) -> SiteInfo:
    info = SiteInfo()
    for child in element:
        name = _local(child.tag)
        if name == "dbname":
            info.dbname = (child.text or "").strip()
        elif name == "base":
            info.base_url = (child.text or "").strip()
        elif name == "namespaces":
            keys = (((ns.get("key") or "").strip(), ns.text or "") for ns in child)
            info.namespaces = {int(key): text for key, text in keys if _is_integer(key)}
    return info


def _is_integer(text: str) -> bool:
    """A namespace key as MediaWiki writes them (`-2`, `0`, `14`); others are ignored, not fatal to the dump."""
    return text.lstrip("-").isdigit()


def _page(element, offset: int | None, namespaces: Iterable[int]) -> Page | Skipped:
    title = _child_text(element, "title")
    try:
        namespace = int(_child_text(element, "ns") or 0)
        page_id = int(_child_text(element, "id") or "")
    except ValueError:
        return Skipped("malformed", title)
    if namespace not in namespaces:
        return Skipped("namespace", title)
    if any(_local(child.tag) == "redirect" for child in element):
        return Skipped("redirect", title)
    revisions = [child for child in element if _local(child.tag) == "revision"]
    if not revisions or title is None:
        return Skipped("malformed", title)
    latest = revisions[-1]  # exports list revisions oldest first
    text = _child_text(latest, "text")
    if not text or not text.strip():
        return Skipped("no_text", title)
    if text.lstrip()[:9].lower() == "#redirect":
        return Skipped("redirect", title)
    revision_id = _child_text(latest, "id")
    stamp = _child_text(latest, "timestamp")
    try:
        timestamp = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None
    except ValueError:
        timestamp = None
    return Page(
        page_id,
        title,
        namespace,
        text,
        int(revision_id) if revision_id and revision_id.isdigit() else None,
        timestamp,
        offset,
    )


def _parser(stream, events=("end",)):
    return etree.iterparse(
        stream,
        events=events,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        remove_comments=True,
        huge_tree=False,
    )


def parse_pages(
    stream, offset: int | None = None, namespaces: Iterable[int] = DEFAULT_NAMESPACES, siteinfo: list | None = None
) -> Iterator[Page | Skipped | ReadError]:
    """Pages of one XML document, each cleared once read. A document that breaks off (truncated
    download) or is not well-formed yields its complete pages and then a ReadError."""
    namespaces = frozenset(namespaces)
    try:
        for _, element in _parser(stream):
            name = _local(element.tag)
            if name == "page":
                yield _page(element, offset, namespaces)
                element.clear()
                parent = element.getparent()
                while parent is not None and element.getprevious() is not None:
                    del parent[0]  # pages already read
            elif name == "siteinfo" and siteinfo is not None:
                siteinfo.append(_parse_siteinfo(element))
    except etree.XMLSyntaxError as exc:
        yield ReadError(f"XML ends or breaks here: {exc}", offset)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        yield ReadError(f"{type(exc).__name__}: {exc}", offset)


def _decompressing(path: str, stream):
    if path.endswith(".bz2"):
        return bz2.BZ2File(stream)  # reads every stream of a multistream file in turn
    if path.endswith(".xz"):
        return lzma.LZMAFile(stream)
    return stream


def read_dump(
    path: str, namespaces: Iterable[int] = DEFAULT_NAMESPACES, siteinfo: list | None = None
) -> Iterator[Page | Skipped | ReadError]:
    """Every page of a dump with one sequential reader."""
    with open_input(path) as raw:
        yield from parse_pages(_decompressing(path, raw), None, namespaces, siteinfo)


def _wrapped(data: bytes) -> io.BytesIO:
    """Pages of one stream as one document: the stream has no root element of its own; the last stream
    of the file also carries the closing tag of the dump's root."""
    body = data.rstrip()
    if body.endswith(b"</mediawiki>"):
        body = body[: -len(b"</mediawiki>")]
    return io.BytesIO(b"<mediawiki>" + body + b"</mediawiki>")


def read_streams(
    path: str, offsets: list[int], next_offset: int | None, namespaces: Iterable[int] = DEFAULT_NAMESPACES
) -> Iterator[Page | Skipped | ReadError]:
    """The pages of the bz2 streams starting at `offsets` (consecutive, from the index); `next_offset`
    is where the stream after the last one starts (None: the end of the file)."""
    ends = [*offsets[1:], next_offset]
    with open_input(path, start=offsets[0]) as raw:
        position = offsets[0]
        for start, end in zip(offsets, ends):
            if position != start:
                raw.seek(start)
            compressed = raw.read(end - start) if end is not None else raw.read()
            position = start + len(compressed)
            try:
                data = bz2.decompress(compressed)
            except (OSError, ValueError, EOFError) as exc:
                yield ReadError(f"bz2 stream cannot be decompressed: {exc}", start)
                continue
            yield from parse_pages(_wrapped(data), start, namespaces)


def read_siteinfo(path: str, header_end: int | None = None) -> SiteInfo:
    """The `<siteinfo>` at the start of a dump (a multistream dump's first stream ends at `header_end`)."""
    found: list[SiteInfo] = []
    with open_input(path) as raw:
        if header_end is not None and path.endswith(".bz2"):
            data = bz2.decompress(raw.read(header_end))
            stream = io.BytesIO(data + b"</mediawiki>")
        else:
            stream = _decompressing(path, raw)
        try:
            for _, element in _parser(stream):
                if _local(element.tag) == "siteinfo":
                    found.append(_parse_siteinfo(element))
                    break
        except (etree.XMLSyntaxError, OSError, EOFError, lzma.LZMAError):
            pass
    return found[0] if found else SiteInfo(dbname=_dbname_from_path(path))


def _dbname_from_path(path: str) -> str:
    """`ukwiki-20230501-pages-articles.xml.bz2` → `ukwiki`, for dumps without a siteinfo."""
    return posixpath.basename(path).split("-", 1)[0]


@dataclasses.dataclass
class DumpPart:
    """A unit of work: the streams at `offsets` (None: the whole dump, read sequentially), ending where
    `next_offset` begins. The first part of a dump counts the dump as an input file."""

    path: str
    offsets: tuple[int, ...] | None
    next_offset: int | None
    siteinfo: SiteInfo
    first: bool

    @property
    def name(self) -> str:
        if self.offsets is None:
            return self.path
        return f"{self.path}@{self.offsets[0]}-{self.offsets[-1]}"


MAX_STREAMS_PER_PART = 100  # 10,000 pages: small enough to spread and to redo after a failure
MIN_PARTS = 64  # so a small dump still spreads over the workers


def plan_dump(path: str, index: str | None = None, streams_per_part: int | None = None) -> list[DumpPart]:
    """The work units of a dump: with a multistream index, runs of consecutive streams (the first
    stream, the header with the siteinfo, holds no pages and is left out); without one, the whole file."""
    if index is None:
        return [DumpPart(path, None, None, read_siteinfo(path), True)]
    offsets = read_index(index)
    if not offsets:
        raise ValueError(f"{index}: the index lists no streams")
    if streams_per_part is None:
        streams_per_part = max(1, min(MAX_STREAMS_PER_PART, math.ceil(len(offsets) / MIN_PARTS)))
    siteinfo = read_siteinfo(path, offsets[0])
    groups = stream_groups(offsets, math.ceil(len(offsets) / streams_per_part))
    parts = []
    for number, group in enumerate(groups):
        following = groups[number + 1][0] if number + 1 < len(groups) else None
        parts.append(DumpPart(path, tuple(group), following, siteinfo, number == 0))
    return parts


def read_part(part: DumpPart, namespaces: Iterable[int] = DEFAULT_NAMESPACES) -> Iterator[Page | Skipped | ReadError]:
    if part.offsets is None:
        return read_dump(part.path, namespaces)
    return read_streams(part.path, list(part.offsets), part.next_offset, namespaces)

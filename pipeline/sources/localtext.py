"""Local text collections (books, papers, any corpus a user has on disk or in a bucket).

`read_texts(path, name)` yields `TextRecord`, `SkippedRecord` or `ReadError` for one file:
- plain text (`.txt`, `.md`, anything not below): the whole file is one document, or each line with
  `lines=True`; UTF-8 (a BOM is dropped), line endings normalised to `\\n`;
- JSON lines (`.jsonl`, `.ndjson`, `.json`): one object per line with a text field (`text_field`) and
  optionally `id`, `title`, `url`, `date`;
- Parquet and Arrow IPC (`.parquet`, `.arrow`): the same fields as columns, read a record batch at a time.
Text and JSON lines may be compressed: `.gz`, `.bz2`, `.xz` or `.zst`.

A document's key is the file's `name` (its path relative to the collection), plus the line or row
number for multi-document files, unless the record carries its own `id`.
"""

from __future__ import annotations

import bz2
import dataclasses
import datetime as dt
import gzip
import io
import json
import lzma
import re
from typing import Iterator

import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq

from pipeline.remote import open_input
from pipeline.schema import parse_warc_date

DEFAULT_SOURCE = "text"
DEFAULT_TEXT_FIELD = "text"
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
TABLE_SUFFIXES = (".parquet", ".arrow")
_COMPRESSED = {".gz": lambda raw: gzip.GzipFile(fileobj=raw), ".bz2": bz2.BZ2File, ".xz": lzma.LZMAFile}
BATCH_ROWS = 1_000


@dataclasses.dataclass
class TextRecord:
    key: str
    text: str
    title: str | None = None
    url: str | None = None
    date: dt.datetime | None = None


@dataclasses.dataclass
class SkippedRecord:
    reason: str  # "no_text", "malformed", "undecodable"
    where: str


@dataclasses.dataclass
class ReadError:
    where: str
    error: str


def _base_suffix(path: str) -> tuple[str, str | None]:
    """(format suffix, compression suffix): `a.jsonl.zst` → (`.jsonl`, `.zst`)."""
    lower = path.lower()
    for compression in (*_COMPRESSED, ".zst"):
        if lower.endswith(compression):
            stem = lower[: -len(compression)]
            return stem[stem.rfind("."):] if "." in stem.rsplit("/", 1)[-1] else "", compression
    name = lower.rsplit("/", 1)[-1]
    return (name[name.rfind("."):] if "." in name else ""), None


def _decompressed(raw, compression: str | None):
    if compression == ".zst":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    if compression:
        return _COMPRESSED[compression](raw)
    return raw


_LINE_ENDINGS = re.compile(r"\r\n?")


def normalise_newlines(text: str) -> str:
    return _LINE_ENDINGS.sub("\n", text)


def _date(value) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    return parse_warc_date(value) if isinstance(value, str) else None


def _record(fields: dict, key: str, text_field: str) -> TextRecord | SkippedRecord:
    text = fields.get(text_field)
    if not isinstance(text, str) or not text.strip():
        return SkippedRecord("no_text", key)
    own_id = fields.get("id")
    title, url = fields.get("title"), fields.get("url")
    return TextRecord(
        key=str(own_id) if own_id not in (None, "") else key,
        text=normalise_newlines(text),
        title=title if isinstance(title, str) else None,
        url=url if isinstance(url, str) else None,
        date=_date(fields.get("date")),
    )


def _plain_text(stream, name: str, lines: bool) -> Iterator[TextRecord | SkippedRecord]:
    data = stream.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        yield SkippedRecord("undecodable", f"{name}: not UTF-8 ({exc.reason} at byte {exc.start})")
        return
    text = normalise_newlines(text)
    if not lines:
        yield _record({"text": text}, name, "text")
        return
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            yield TextRecord(f"{name}/{number}", line)


def _json_lines(stream, name: str, text_field: str) -> Iterator[TextRecord | SkippedRecord]:
    for number, raw_line in enumerate(io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline=""), 1):
        key = f"{name}/{number}"
        if not raw_line.strip():
            continue
        try:
            fields = json.loads(raw_line)
        except json.JSONDecodeError as exc:
            yield SkippedRecord("malformed", f"{key}: {exc}")
            continue
        if not isinstance(fields, dict):
            yield SkippedRecord("malformed", f"{key}: not a JSON object")
            continue
        yield _record(fields, key, text_field)


def _table_rows(stream, name: str, suffix: str, text_field: str) -> Iterator[TextRecord | SkippedRecord]:
    if suffix == ".arrow":
        reader = pa.ipc.open_file(pa.BufferReader(stream.read()))
        schema = reader.schema
        batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
    else:
        parquet = pq.ParquetFile(stream)
        schema = parquet.schema_arrow
        wanted = [c for c in (text_field, "id", "title", "url", "date") if c in schema.names]
        batches = parquet.iter_batches(batch_size=BATCH_ROWS, columns=wanted)
    if text_field not in schema.names:
        raise ValueError(f"no {text_field!r} column (columns: {', '.join(schema.names)}); choose one with --text-field")
    row = 0
    for batch in batches:
        for fields in batch.to_pylist():
            yield _record(fields, f"{name}/{row}", text_field)
            row += 1


def read_texts(path: str, name: str, text_field: str = DEFAULT_TEXT_FIELD,
               lines: bool = False) -> Iterator[TextRecord | SkippedRecord | ReadError]:
    """The documents of one file; a file that cannot be read or breaks off yields a ReadError after the
    documents read before the break."""
    suffix, compression = _base_suffix(path)
    try:
        with open_input(path) as raw:
            stream = _decompressed(raw, compression)
            if suffix in TABLE_SUFFIXES:
                yield from _table_rows(stream, name, suffix, text_field)
            elif suffix in JSON_SUFFIXES:
                yield from _json_lines(stream, name, text_field)
            else:
                yield from _plain_text(stream, name, lines)
    except UnicodeDecodeError as exc:
        yield ReadError(name, f"not UTF-8 ({exc.reason} at byte {exc.start}); lines before it were read")
    except (OSError, EOFError, ValueError, lzma.LZMAError, pa.ArrowException) as exc:
        yield ReadError(name, f"{type(exc).__name__}: {exc}")


# Project Gutenberg's boilerplate: the licence header ends at a START line, the licence footer begins at an
# END line. Older files word the lines differently; these are the variants Gutenberg has used.
_GUTENBERG_START = re.compile(
    r"^\s*\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG E-?(?:BOOK|TEXT).*$"
    r"|^\s*\*END\*THE SMALL PRINT!.*$",
    re.IGNORECASE | re.MULTILINE,
)
_GUTENBERG_END = re.compile(
    r"^\s*\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG E-?(?:BOOK|TEXT).*$"
    r"|^\s*End of (?:the )?Project Gutenberg'?s? .*$",
    re.IGNORECASE | re.MULTILINE,
)


_GUTENBERG_TITLE = re.compile(r"^Title:[ \t]*(.+)$", re.MULTILINE)


def gutenberg_title(text: str) -> str | None:
    """The `Title:` line of a Project Gutenberg header, if the text has one before its START line."""
    start = _GUTENBERG_START.search(text)
    match = _GUTENBERG_TITLE.search(text, 0, start.start() if start else 0)
    return match.group(1).strip() if match else None


def strip_gutenberg(text: str) -> str:
    """The book without Project Gutenberg's header and licence footer; text without the markers is
    returned unchanged."""
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end():]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[: end.start()]
    return text.strip() if (start or end) else text

"""The one reader of corpus files, shared by `python -m pipeline text` and `python -m tokenizer train|encode`.

`read_file(path)` yields a `TextRecord` per document, a `schema.Skipped` per record set aside, and a
`schema.ReadError` when the rest of the file cannot be read (after the documents read before the break):
- Parquet and Arrow IPC (`.parquet`, `.arrow`, `.feather`, `.ipc`): a text column and optionally `id`, `title`,
  `url`, `date`, read a record batch at a time;
- JSON lines (`.jsonl`, `.ndjson`, `.json`): one object per line with a text field;
- plain text (anything else): the whole file is one document, or each line with `lines=True`; UTF-8 (a BOM is
  dropped), line endings normalised to `\\n`.
Text and JSON lines may be compressed: `.gz`, `.bz2`, `.xz` or `.zst`.

A record's key is its own `id` when it has one, else the file's `name` (its path unless given) plus the line or
row number for multi-document files. Only pyarrow and the standard library are needed: the tokenizer uses this
module without Beam.
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
import zlib
from collections.abc import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
import zstandard

from pipeline.common.remote import expand_glob, file_size, open_input
from pipeline.common.schema import ReadError, Skipped, as_utc_datetime, valid_text

DEFAULT_TEXT_FIELD = "text"
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
ARROW_SUFFIXES = (".arrow", ".feather", ".ipc")
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst")
BATCH_ROWS = 1_000
# Files beside shards that are never corpus files: the pipeline's stats, the bins' metadata, unfinished writes.
NOT_CORPUS = ("/stats.json", ".stats.json", "/meta.json", "/recipe.toml")


@dataclasses.dataclass
class TextRecord:
    key: str
    text: str
    title: str | None = None
    url: str | None = None
    date: dt.datetime | None = None
    source_bytes: int = 0  # bytes of the input read since the record before, for progress


Item = TextRecord | Skipped | ReadError


def expand(patterns: Iterable[str]) -> list[str]:
    """Files matching the globs, sorted; raises FileNotFoundError naming a pattern that matches nothing."""
    paths = set()
    for pattern in patterns:
        found = expand_glob(pattern)
        if not found:
            raise FileNotFoundError(f"no file matches {pattern}")
        paths.update(found)
    return sorted(p for p in paths if ".tmp-" not in p and not p.endswith(NOT_CORPUS))


def format_of(path: str) -> tuple[str, str | None]:
    """(format, compression suffix): `a.jsonl.zst` → ("jsonl", ".zst"); formats: parquet, arrow, jsonl, text."""
    lower = path.lower()
    compression = next((c for c in COMPRESSIONS if lower.endswith(c)), None)
    if compression:
        lower = lower[: -len(compression)]
    if lower.endswith(".parquet"):
        return "parquet", compression
    if lower.endswith(ARROW_SUFFIXES):
        return "arrow", compression
    if lower.endswith(JSON_SUFFIXES):
        return "jsonl", compression
    return "text", compression


def decompressed(raw, compression: str | None):
    if compression == ".gz":
        return gzip.GzipFile(fileobj=raw)
    if compression == ".bz2":
        return bz2.BZ2File(raw)
    if compression == ".xz":
        return lzma.LZMAFile(raw)
    if compression == ".zst":
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return raw


_LINE_ENDINGS = re.compile(r"\r\n?")


def normalise_newlines(text: str) -> str:
    return _LINE_ENDINGS.sub("\n", text)


def _record(fields: dict, key: str, text_field: str, id_field: str, source_bytes: int) -> TextRecord | Skipped:
    text = fields.get(text_field)
    if not isinstance(text, str) or not text.strip():
        return Skipped("no_text", key)
    own_id = fields.get(id_field)
    title, url = fields.get("title"), fields.get("url")
    try:
        date = as_utc_datetime(fields.get("date"))
    except ValueError:
        date = None
    return TextRecord(
        key=valid_text(str(own_id)) if own_id not in (None, "") else key,
        text=valid_text(normalise_newlines(text)),
        title=valid_text(title) if isinstance(title, str) else None,
        url=valid_text(url) if isinstance(url, str) else None,
        date=date,
        source_bytes=source_bytes,
    )


class _Consumed:
    """Bytes of the (compressed) file read since the last call: progress counts what was read of it."""

    def __init__(self, raw):
        self.raw = raw
        self.position = 0

    def __call__(self) -> int:
        try:
            now = self.raw.tell()
        except (OSError, ValueError):
            return 0
        before, self.position = self.position, now
        return now - before


def _whole_text(stream, name: str, size: int) -> Iterator[TextRecord | Skipped]:
    try:
        text = stream.read().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        yield Skipped("undecodable", f"{name}: not UTF-8 ({exc.reason} at byte {exc.start})")
        return
    yield _record({"text": normalise_newlines(text)}, name, "text", "id", size)


def _text_lines(raw, stream, name: str) -> Iterator[TextRecord]:
    """A document per non-blank line, streamed: a file of any size is read in bounded memory. Universal newlines
    (\\n, \\r\\n, \\r) end a line, as `normalise_newlines` does for whole files."""
    consumed = _Consumed(raw)
    for number, line in enumerate(io.TextIOWrapper(stream, encoding="utf-8-sig", errors="strict", newline=None), 1):
        line = line.rstrip("\n")
        if line.strip():
            yield TextRecord(f"{name}/{number}", valid_text(line), source_bytes=consumed())


def _json_lines(raw, stream, name: str, text_field: str, id_field: str) -> Iterator[TextRecord | Skipped]:
    consumed = _Consumed(raw)
    for number, line in enumerate(io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline=""), 1):
        key = f"{name}/{number}"
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Skipped("malformed", f"{key}: {exc}")
            continue
        if not isinstance(fields, dict):
            yield Skipped("malformed", f"{key}: not a JSON object")
            continue
        yield _record(fields, key, text_field, id_field, consumed())


def _table_rows(
    stream, name: str, kind: str, text_field: str, id_field: str, size: int, flag: str
) -> Iterator[TextRecord | Skipped]:
    if kind == "arrow":
        reader = pa.ipc.open_file(pa.BufferReader(stream.read()))
        schema, rows = reader.schema, sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
        batches: Iterable[pa.RecordBatch] = (reader.get_batch(i) for i in range(reader.num_record_batches))
    else:
        if not stream.seekable():  # Parquet keeps its footer at the end
            stream = pa.BufferReader(stream.read())
        parquet = pq.ParquetFile(stream)
        schema, rows = parquet.schema_arrow, parquet.metadata.num_rows
        wanted = [c for c in dict.fromkeys((text_field, id_field, "title", "url", "date")) if c in schema.names]
        batches = parquet.iter_batches(batch_size=BATCH_ROWS, columns=wanted)
    if text_field not in schema.names:
        raise ValueError(f"no {text_field!r} column (columns: {', '.join(schema.names)}); choose one with {flag}")
    per_row = size // max(1, rows)
    row = 0
    for batch in batches:
        for fields in batch.to_pylist():
            yield _record(fields, f"{name}/{row}", text_field, id_field, per_row)
            row += 1


def read_file(
    path: str,
    name: str | None = None,
    text_field: str = DEFAULT_TEXT_FIELD,
    lines: bool = False,
    id_field: str = "id",
    opener: Callable = open_input,
    flag: str = "--text-field",
) -> Iterator[Item]:
    """The documents of one file. `name`: the file's name within its collection, which keys are made of
    (default: the path); `flag`: the option that chooses the text column, named when it is missing."""
    name = path if name is None else name
    kind, compression = format_of(path)
    size = file_size(path)
    try:
        with opener(path) as raw:
            if kind in ("parquet", "arrow"):
                yield from _table_rows(decompressed(raw, compression), name, kind, text_field, id_field, size, flag)
            elif kind == "jsonl":
                yield from _json_lines(raw, decompressed(raw, compression), name, text_field, id_field)
            else:
                stream = decompressed(raw, compression)
                yield from _text_lines(raw, stream, name) if lines else _whole_text(stream, name, size)
    except UnicodeDecodeError as exc:
        yield ReadError(f"not UTF-8 ({exc.reason} at byte {exc.start}); lines before it were read")
    except (OSError, EOFError, ValueError, lzma.LZMAError, pa.ArrowException) as exc:
        yield ReadError(f"{type(exc).__name__}: {exc}")
    except (zstandard.ZstdError, zlib.error) as exc:  # the decompressors' own error types
        yield ReadError(f"{type(exc).__name__}: {exc}")

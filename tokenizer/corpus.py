"""Reading training and encoding corpora: any Parquet or Arrow files (a text column, by name), JSON lines
(plain, .gz or .zst) and plain-text files (one document per file, or per line), on any filesystem Beam
knows. Everything streams: Arrow record batches, lines, one plain-text file at a time.

This package reads the pipeline's shards through pyarrow by column name and never imports `pipeline`.
"""

from __future__ import annotations

import dataclasses
import gzip
import heapq
import hashlib
import io
import json
import logging
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

DEFAULT_TEXT_COLUMN = "text"
BATCH_ROWS = 1_000


@dataclasses.dataclass
class CorpusSpec:
    """Where the text is and how to read it."""

    paths: list[str]
    text_column: str = DEFAULT_TEXT_COLUMN
    lines: bool = False  # plain text: a document per line instead of per file
    id_column: str = "id"  # used for the train/validation split when present


@dataclasses.dataclass
class Record:
    text: str
    doc_id: str  # the record's own id, else "<file>:<position>"
    source_bytes: int  # bytes this record occupied in the input, for progress


# Beam's filesystems are imported where used: importing Beam costs a second, and encoding workers that
# only receive texts never need it.


def expand(patterns: Iterable[str]) -> list[str]:
    """Files matching the globs, sorted; stats files and unfinished writes are never corpus files."""
    from apache_beam.io.filesystems import FileSystems

    paths = set()
    for pattern in patterns:
        found = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
        if not found:
            raise FileNotFoundError(f"no file matches {pattern}")
        paths.update(found)
    return sorted(p for p in paths if ".tmp-" not in p and not p.endswith(NOT_CORPUS))


NOT_CORPUS = ("/stats.json", ".stats.json", "/meta.json")  # the pipeline's and the bins' own files


def file_size(path: str) -> int:
    from apache_beam.io.filesystems import FileSystems

    try:
        return FileSystems.match([path])[0].metadata_list[0].size_in_bytes
    except (IndexError, OSError):
        return 0


def _open(path: str):
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def _kind(path: str) -> tuple[str, str | None]:
    lower = path.lower()
    compression = next((c for c in (".gz", ".zst") if lower.endswith(c)), None)
    if compression:
        lower = lower[: -len(compression)]
    if lower.endswith(".parquet"):
        return "parquet", compression
    if lower.endswith((".arrow", ".feather", ".ipc")):
        return "arrow", compression
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl", compression
    return "text", compression


def _decompressed(stream, compression: str | None):
    if compression == ".gz":
        return gzip.GzipFile(fileobj=stream)
    if compression == ".zst":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)
    return stream


def _table_records(path: str, batches, schema: pa.Schema, spec: CorpusSpec, bytes_per_row: int) -> Iterator[Record]:
    """`bytes_per_row`: the file's size spread over its rows, for progress in file bytes."""
    if spec.text_column not in schema.names:
        raise ValueError(f"{path}: no {spec.text_column!r} column (columns: {', '.join(schema.names)}); "
                         f"choose one with --text-column")
    row = 0
    for batch in batches:
        texts = batch.column(spec.text_column).to_pylist()
        ids = batch.column(spec.id_column).to_pylist() if spec.id_column in batch.schema.names else [None] * len(texts)
        for text, doc_id in zip(texts, ids):
            if text:
                yield Record(text, str(doc_id) if doc_id is not None else f"{path}:{row}", bytes_per_row)
            row += 1


def read_records(path: str, spec: CorpusSpec) -> Iterator[Record]:
    """The non-empty documents of one file."""
    kind, compression = _kind(path)
    size = file_size(path)
    with _open(path) as raw:
        if kind == "parquet":
            parquet = pq.ParquetFile(raw)
            columns = [c for c in (spec.text_column, spec.id_column) if c in parquet.schema_arrow.names]
            batches = parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns or None)
            yield from _table_records(path, batches, parquet.schema_arrow, spec, size // max(1, parquet.metadata.num_rows))
            return
        stream = _decompressed(raw, compression)
        if kind == "arrow":
            reader = pa.ipc.open_file(pa.BufferReader(stream.read()))
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
            rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
            yield from _table_records(path, batches, reader.schema, spec, size // max(1, rows))
            return
        if kind == "jsonl":
            position = 0  # of the (compressed) file: progress counts what was read of it

            def consumed() -> int:
                nonlocal position
                before, position = position, raw.tell()
                return position - before

            for number, line in enumerate(io.TextIOWrapper(stream, encoding="utf-8"), 1):
                if not line.strip():
                    continue
                try:
                    fields = json.loads(line)
                except json.JSONDecodeError:
                    log.warning("%s:%d: not JSON, skipped", path, number)
                    continue
                text = fields.get(spec.text_column) if isinstance(fields, dict) else None
                if isinstance(text, str) and text:
                    doc_id = fields.get(spec.id_column)
                    yield Record(text, str(doc_id) if doc_id is not None else f"{path}:{number}", consumed())
            return
        text = stream.read().decode("utf-8-sig", errors="replace")
        if not spec.lines:
            if text:
                yield Record(text, path, size)
            return
        unreported = size  # the file was read whole: its first document carries it
        for number, line in enumerate(text.splitlines(), 1):
            if line:
                yield Record(line, f"{path}:{number}", unreported)
                unreported = 0


def iter_records(spec: CorpusSpec) -> Iterator[Record]:
    for path in spec.paths:
        yield from read_records(path, spec)


def sample_key(seed: int, text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8, key=seed.to_bytes(8, "little")).digest()


def seeded_sample(texts: Iterable[str], max_bytes: int, seed: int) -> list[str]:
    """The documents with the smallest seeded hashes of their text, taken in hash order while their UTF-8
    sizes add up to at most `max_bytes` (documents larger than that on their own are left out): the same
    subset for the same corpus and seed whatever the file order, held in memory bounded by `max_bytes`."""
    heap: list[tuple[bytes, int, str]] = []  # max-heap on the key, through its complement
    total = 0
    cutoff = None  # the smallest key left out for lack of room: nothing at or above it can be in the result
    for text in texts:
        size = len(text.encode("utf-8", "surrogatepass"))
        key = sample_key(seed, text)
        if size > max_bytes or (cutoff is not None and key >= cutoff):
            continue
        heapq.heappush(heap, (bytes(255 - b for b in key), size, text))
        total += size
        while total > max_bytes:
            complement, dropped, _ = heapq.heappop(heap)
            total -= dropped
            cutoff = bytes(255 - b for b in complement)
    return [text for _, _, text in sorted(heap, reverse=True)]

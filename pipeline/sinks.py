"""Writing and reading shards (Parquet with zstd, or Arrow IPC) on any Beam filesystem, atomically:
a file appears under its final name only once it is complete."""

from __future__ import annotations

import json
import posixpath
import uuid
from typing import Iterator

import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipeline.schema import (Document, check_date_column, check_schema_version, documents_to_table, present_fields,
                             table_to_documents)

ROW_GROUP_ROWS = 10_000


def shard_name(index: int, count: int, fmt: str = "parquet") -> str:
    return f"part-{index:05d}-of-{count:05d}.{fmt}"


def join(directory: str, name: str) -> str:
    return FileSystems.join(directory, name) if "://" in directory else posixpath.join(directory, name)


def exists(path: str) -> bool:
    return FileSystems.exists(path)


def _create(path: str):
    return FileSystems.create(path, mime_type="application/octet-stream", compression_type=CompressionTypes.UNCOMPRESSED)


def _open(path: str):
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def write_atomically(path: str, write) -> None:
    """Call `write(stream)` on a temporary file beside `path`, then rename it into place."""
    directory = posixpath.dirname(path) if "://" not in path else FileSystems.split(path)[0]
    if not FileSystems.exists(directory):
        try:
            FileSystems.mkdirs(directory)
        except IOError:  # another worker made it first
            pass
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with _create(temporary) as stream:
            write(stream)
        if FileSystems.exists(path):
            FileSystems.delete([path])
        FileSystems.rename([temporary], [path])
    except BaseException:
        if FileSystems.exists(temporary):
            FileSystems.delete([temporary])
        raise


def write_table(path: str, table: pa.Table, fmt: str = "parquet") -> None:
    def write(stream):
        if fmt == "parquet":
            pq.write_table(table, stream, compression="zstd", row_group_size=ROW_GROUP_ROWS)
        else:
            with pa.ipc.new_file(stream, table.schema) as writer:
                writer.write_table(table, max_chunksize=ROW_GROUP_ROWS)

    write_atomically(path, write)


def write_documents(path: str, docs: list[Document], fmt: str = "parquet") -> None:
    write_table(path, documents_to_table(docs), fmt)


def read_table(path: str) -> pa.Table:
    with _open(path) as stream:
        data = stream.read()
    if path.endswith(".arrow"):
        return pa.ipc.open_file(pa.BufferReader(data)).read_all()
    return pq.read_table(pa.BufferReader(data))


def read_documents(path: str) -> list[Document]:
    return table_to_documents(read_table(path))


def iter_document_batches(path: str) -> Iterator[list[Document]]:
    """Documents of one shard, a record batch at a time, so a large shard never sits in memory whole.
    Shards from other tools work too: only `id` and `text` are required."""
    with _open(path) as stream:
        if path.endswith(".arrow"):
            reader = pa.ipc.open_file(stream)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
            schema = reader.schema
        else:
            parquet = pq.ParquetFile(stream)
            schema = parquet.schema_arrow
            batches = parquet.iter_batches(batch_size=ROW_GROUP_ROWS, columns=present_fields(schema))
        check_schema_version(schema)
        missing = {"id", "text"} - set(schema.names)
        if missing:
            raise ValueError(f"no {' or '.join(sorted(missing))} column")
        check_date_column(schema)
        for batch in batches:
            yield [Document.from_row(row) for row in batch.to_pylist()]


def write_json(path: str, data) -> None:
    payload = (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    write_atomically(path, lambda stream: stream.write(payload))


def read_json(path: str):
    with _open(path) as stream:
        return json.loads(stream.read().decode("utf-8"))

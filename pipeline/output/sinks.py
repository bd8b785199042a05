"""Writing and reading shards (Parquet with zstd, or Arrow IPC) on local disk or any Beam filesystem,
atomically: a file appears under its final name only once it is complete. Beam is imported only for paths
that are not local."""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq

from pipeline.common.remote import beam_filesystems, is_local, local_path
from pipeline.common.schema import (
    Document,
    check_date_column,
    check_schema_version,
    documents_to_table,
    present_fields,
    table_to_documents,
)

ROW_GROUP_ROWS = 10_000


def shard_name(index: int, count: int, fmt: str = "parquet") -> str:
    return f"part-{index:05d}-of-{count:05d}.{fmt}"


def join(directory: str, name: str) -> str:
    return posixpath.join(directory, name) if is_local(directory) else beam_filesystems().join(directory, name)


def exists(path: str) -> bool:
    return os.path.exists(local_path(path)) if is_local(path) else beam_filesystems().exists(path)


def create(path: str):
    """A new file for writing (its folder made when local); see `write_atomically` for files read by others."""
    if is_local(path):
        os.makedirs(os.path.dirname(local_path(path)) or ".", exist_ok=True)
        return open(local_path(path), "wb")
    from apache_beam.io.filesystem import CompressionTypes

    return beam_filesystems().create(
        path, mime_type="application/octet-stream", compression_type=CompressionTypes.UNCOMPRESSED
    )


def _is_arrow(path: str) -> bool:
    """Arrow IPC by name: `….arrow`, and the duplicates report's `….arrow.report`."""
    return "arrow" in posixpath.basename(path).split(".")[1:]


def open_file(path: str):
    """A file for reading, local or on any Beam filesystem."""
    if is_local(path):
        return open(local_path(path), "rb")
    from apache_beam.io.filesystem import CompressionTypes

    return beam_filesystems().open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def read_columns(path: str, columns: list[str]) -> pa.Table:
    """Some columns of a shard (Parquet reads only those)."""
    with open_file(path) as stream:
        if _is_arrow(path):
            return pa.ipc.open_file(stream).read_all().select(columns)
        return pq.ParquetFile(stream).read(columns=columns)


def delete(path: str) -> None:
    if is_local(path):
        os.remove(local_path(path))
    else:
        beam_filesystems().delete([path])


def rename(source: str, target: str) -> None:
    if is_local(source):
        os.replace(local_path(source), local_path(target))
    else:
        beam_filesystems().rename([source], [target])


def write_atomically(path: str, write) -> None:
    """Call `write(stream)` on a temporary file beside `path`, then rename it into place."""
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    if is_local(path):
        try:
            with create(temporary) as stream:
                write(stream)
            os.replace(local_path(temporary), local_path(path))
        except BaseException:
            if os.path.exists(local_path(temporary)):
                os.remove(local_path(temporary))
            raise
        return
    filesystems = beam_filesystems()
    directory = filesystems.split(path)[0]
    if not filesystems.exists(directory):
        try:
            filesystems.mkdirs(directory)
        except OSError:  # another worker made it first
            pass
    try:
        with create(temporary) as stream:
            write(stream)
        if filesystems.exists(path):
            filesystems.delete([path])
        filesystems.rename([temporary], [path])
    except BaseException:
        if filesystems.exists(temporary):
            filesystems.delete([temporary])
        raise


def write_table(path: str, table: pa.Table, fmt: str = "parquet") -> None:
    def write(stream):
        if fmt == "parquet":
            # An empty shard gets no row group: a row group of 0 rows makes datasets' Parquet reader fail
            with pq.ParquetWriter(stream, table.schema, compression="zstd") as writer:
                if table.num_rows:
                    writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        else:
            with pa.ipc.new_file(stream, table.schema) as writer:
                writer.write_table(table, max_chunksize=ROW_GROUP_ROWS)

    write_atomically(path, write)


def write_documents(path: str, docs: list[Document], fmt: str = "parquet") -> None:
    write_table(path, documents_to_table(docs), fmt)


def read_table(path: str) -> pa.Table:
    with open_file(path) as stream:
        data = stream.read()
    if _is_arrow(path):
        return pa.ipc.open_file(pa.BufferReader(data)).read_all()
    return pq.read_table(pa.BufferReader(data))


def read_documents(path: str) -> list[Document]:
    return table_to_documents(read_table(path))


def iter_document_batches(path: str) -> Iterator[list[Document]]:
    """Documents of one shard, a record batch at a time, so a large shard never sits in memory whole.
    Shards from other tools work too: only `id` and `text` are required."""
    with open_file(path) as stream:
        if _is_arrow(path):
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


def write_bytes(path: str, payload: bytes) -> None:
    write_atomically(path, lambda stream: stream.write(payload))


def write_json(path: str, data) -> None:
    write_bytes(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def read_json(path: str):
    with open_file(path) as stream:
        return json.loads(stream.read().decode("utf-8"))

"""Shards already written (by lmforge or by other tools: only `id` and `text` are required), read as they are for
`python -m pipeline dedup`: no language ID, no filters, nothing committed under the work folder."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pyarrow as pa

from pipeline.common.remote import expand_glob
from pipeline.common.schema import Document, Dropped, ReadError, Skipped
from pipeline.common.settings import UsageError
from pipeline.output import sinks
from pipeline.sources import Source


@dataclasses.dataclass
class Settings:
    inputs: list[str] = dataclasses.field(default_factory=list)  # globs of Parquet or Arrow shards


# stats.json and the temporary files of an unfinished write are never shards
_NOT_SHARDS = (".json", ".toml")


class Shards(Source):
    Settings = Settings
    kind = "shards"
    commits = False

    def inputs(self) -> list[str]:
        where = f"sources.{self.name}.inputs"
        paths = set()
        for pattern in self.settings.inputs:
            try:
                matched = [p for p in expand_glob(pattern) if not p.endswith(_NOT_SHARDS) and ".tmp-" not in p]
            except OSError as exc:
                raise UsageError(f"{where}: {exc}")
            if not matched:
                raise UsageError(f"{where}: no file matches {pattern}")
            paths.update(matched)
        if not paths:
            raise UsageError(f"{where}: no shards given")
        return sorted(paths)

    def read(self, path: str) -> Iterator[Document | Dropped | Skipped | ReadError]:
        try:
            for batch in sinks.iter_document_batches(path):
                for doc in batch:
                    if not doc.text:
                        yield Dropped("empty_text", doc.id)
                        continue
                    doc.source = doc.source or "unknown"
                    yield doc
        except (OSError, ValueError, pa.ArrowException) as exc:
            yield ReadError(f"{type(exc).__name__}: {exc}")

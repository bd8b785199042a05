"""The corpus a tokenizer is trained on or encodes: the files of `CorpusSpec`, read by the pipeline's one
corpus reader (`pipeline.common.corpus`: Parquet/Arrow by column name, JSON lines plain or compressed, plain text per
file or per line) so both stages read a file the same way. Everything streams. What cannot be read is counted
in a `ReadReport` and named with its path, and the rest of the corpus is read on.

`pipeline.common.corpus` and `pipeline.common.remote` need neither Beam nor the pipeline's per-document modules.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import heapq
import logging
from collections.abc import Iterable, Iterator

from pipeline.common import corpus as reader
from pipeline.common.remote import file_size
from pipeline.common.schema import ReadError, Skipped

log = logging.getLogger(__name__)

DEFAULT_TEXT_COLUMN = reader.DEFAULT_TEXT_FIELD
Record = reader.TextRecord
expand = reader.expand

__all__ = ["CorpusSpec", "ReadReport", "Record", "expand", "file_size", "iter_records", "seeded_sample"]


@dataclasses.dataclass
class CorpusSpec:
    """Where the text is and how to read it."""

    paths: list[str]
    text_column: str = DEFAULT_TEXT_COLUMN
    lines: bool = False  # plain text: a document per line instead of per file
    id_column: str = "id"  # used for the train/validation split when present


@dataclasses.dataclass
class ReadReport:
    """What reading set aside: records skipped by reason, and files (or their rest) that could not be read."""

    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    errors: list = dataclasses.field(default_factory=list)  # {"file": path, "error": message}

    def to_json(self) -> dict:
        return {"skipped": dict(sorted(self.skipped.items())), "errors": list(self.errors)}

    @staticmethod
    def lines(data: dict) -> list[str]:
        """A report (as `to_json` writes it) for a person: what was skipped, and each unreadable file."""
        lines = []
        if data["skipped"]:
            counts = ", ".join(f"{count} {reason}" for reason, count in data["skipped"].items())
            lines.append(f"skipped: {counts} record(s)")
        return lines + [f"unreadable, skipped: {error['file']}: {error['error']}" for error in data["errors"]]

    def merge(self, data: dict) -> None:
        self.skipped.update(data.get("skipped", {}))
        self.errors.extend(data.get("errors", []))


def iter_records(spec: CorpusSpec, report: ReadReport | None = None) -> Iterator[Record]:
    """The documents of every file in turn; skips and read errors go into `report` (and the log)."""
    report = report if report is not None else ReadReport()
    for path in spec.paths:
        for item in reader.read_file(
            path, text_field=spec.text_column, lines=spec.lines, id_field=spec.id_column, flag="--text-column"
        ):
            if isinstance(item, ReadError):
                log.warning("%s: %s (skipped)", path, item.error)
                report.errors.append({"file": path, "error": item.error})
            elif isinstance(item, Skipped):
                log.debug("%s: skipped (%s)", item.where, item.reason)
                report.skipped[item.reason] += 1
            else:
                yield item


def sample_key(seed: int, text: str) -> bytes:
    return hashlib.blake2b(
        text.encode("utf-8", "surrogatepass"), digest_size=8, key=seed.to_bytes(8, "little")
    ).digest()


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

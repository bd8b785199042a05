"""The funnel counters behind `stats.json`.

Two identities hold for every run, and `Funnel.check()` verifies them:
  records_read == records_in + sum(records_skipped)     (every record read is accounted for)
  records_in   == kept + sum(dropped)                   (every HTML document is accounted for)
"""

from __future__ import annotations

import collections
import dataclasses
import logging

log = logging.getLogger(__name__)

STATS_VERSION = 2  # 2: warc_records became records_read, as non-WARC sources count records too

# Beam metrics namespace for each drop reason that is not a filter rule ("<filter>.<rule>" → "filters").
DROP_STAGES = {
    "url_blocklist": "read",
    "html_too_large": "read",
    "content_encoding": "read",
    "undecodable": "read",
    "extraction_failed": "extract",
    "extraction_timeout": "extract",
    "extraction_empty": "extract",
    "cleaning_failed": "extract",  # wikitext the parser could not clean
    "cleaned_empty": "extract",  # nothing left after wikitext cleaning or Gutenberg stripping
    "language": "langid",
    "language_score": "langid",
    "empty_text": "read",
    "duplicate": "dedup",
    "near_duplicate": "dedup",
}


def stage_of(reason: str) -> str:
    return DROP_STAGES.get(reason, "filters" if "." in reason else "other")


@dataclasses.dataclass
class Funnel:
    """Mergeable counts for one input file, a bundle, or the whole run."""

    input_files: int = 0
    records_read: int = 0
    records_skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    records_in: int = 0
    kept: int = 0
    dropped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    errors: list = dataclasses.field(default_factory=list)

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] += count

    def error(self, file: str, offset: int | None, error: str, retryable: bool = False) -> None:
        self.errors.append({"file": file, "offset": offset, "error": error, "retryable": retryable})

    def merge(self, other: Funnel) -> Funnel:
        self.input_files += other.input_files
        self.records_read += other.records_read
        self.records_skipped.update(other.records_skipped)
        self.records_in += other.records_in
        self.kept += other.kept
        self.dropped.update(other.dropped)
        self.errors.extend(other.errors)
        return self

    def problems(self) -> list[str]:
        found = []
        if self.records_read != self.records_in + sum(self.records_skipped.values()):
            found.append(
                f"records_read {self.records_read} != records_in {self.records_in} + skipped "
                f"{sum(self.records_skipped.values())}"
            )
        if self.records_in != self.kept + sum(self.dropped.values()):
            found.append(f"records_in {self.records_in} != kept {self.kept} + dropped {sum(self.dropped.values())}")
        return found

    def to_json(self) -> dict:
        return {
            "version": STATS_VERSION,
            "input_files": self.input_files,
            "records_read": self.records_read,
            "records_skipped": dict(sorted(self.records_skipped.items())),
            "records_in": self.records_in,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "errors": sorted(self.errors, key=lambda e: (e["file"], e["offset"] or 0)),
        }

    @classmethod
    def from_json(cls, data: dict) -> Funnel:
        if data.get("version", STATS_VERSION) > STATS_VERSION:
            raise ValueError(f"stats version {data['version']} is newer than this lmforge reads")
        return cls(
            input_files=data.get("input_files", 0),
            records_read=data.get("records_read", data.get("warc_records", 0)),
            records_skipped=collections.Counter(data.get("records_skipped", {})),
            records_in=data.get("records_in", 0),
            kept=data.get("kept", 0),
            dropped=collections.Counter(data.get("dropped", {})),
            errors=list(data.get("errors", [])),
        )

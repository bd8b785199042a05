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

# 2: warc_records became records_read, as non-WARC sources count records too. 3: lengths and examples. 4: error_units,
# `error.<step>.<exception>` drop reasons, an example's `error`, and the `duplicate_id` drop and `renamed_ids` count.
# 5: `edits` (what steps changed in documents: PII replacements, decontamination cuts) and an example's `detail`.
# 6: `index` (Common Crawl's columnar index: captures listed, selected, fetched, failed, bytes).
STATS_VERSION = 6
EXAMPLES_PER_REASON = 3  # dropped documents kept per drop reason, for the report (those with the smallest ids)
EXAMPLE_CHARS = 600
STATS_TAG = "stats"  # the tagged output on which each Beam stage emits its funnels

# Beam metrics namespace for each drop reason that is not a filter rule ("<filter>.<rule>" → "filters").
DROP_STAGES = {
    "url_blocklist": "read",
    "url_banned_word": "read",  # FineWeb's URL word rules (pipeline.steps.wordlists.UrlFilter)
    "url_soft_banned_words": "read",
    "url_banned_subword": "read",
    "badwords": "filters",  # C4's bad-words list of the document's language
    "decontaminated": "decontam",  # shares an n-gram with a benchmark (pipeline.steps.decontam)
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
    "language.prefilter": "langid",  # set aside by the language prefilter before extraction (Common Crawl)
    "quality": "quality",  # the quality classifier: under min_quality, or outside the quality_keep fraction
    "empty_text": "read",
    "duplicate": "dedup",
    "duplicate_id": "dedup",  # a second document with the same id and text (an input listed twice)
    "near_duplicate": "dedup",
}


def stage_of(reason: str) -> str:
    if reason.startswith("error."):  # error.<step>.<exception type>: a step raised (pipeline.steps.process.StepGuard)
        return "errors"
    if reason.startswith("line_dedup."):  # left empty, or failing a filter, once its boilerplate lines went
        return "dedup"
    return DROP_STAGES.get(reason, "filters" if "." in reason else "other")


def length_bucket(characters: int) -> int:
    """The power of two at or below a length (0 for none): histogram buckets that span any corpus."""
    return 0 if characters <= 0 else 1 << (characters.bit_length() - 1)


def _smallest_ids(examples: list[dict]) -> list[dict]:
    """The examples with the smallest ids; ties (one id dropped twice) ordered by content, so that funnels merged in
    any order, on any engine, keep the same ones."""
    return sorted(examples, key=lambda e: (e["id"], e["url"] or "", e["text"], e.get("error", "")))[
        :EXAMPLES_PER_REASON
    ]


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
    # characters per document (by length_bucket) when language ID and the filters start, and of those they keep
    lengths_before_filters: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    lengths_after_filters: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    examples: dict = dataclasses.field(default_factory=dict)  # drop reason → a few dropped documents
    error_units: list = dataclasses.field(default_factory=list)  # units with `error.*` drops (see unit_error)
    renamed_ids: int = 0  # documents kept under a new id: another document had theirs (pipeline.dedup.stages.UniqueIds)
    # What steps changed in the documents they passed on, by kind: `pii.email`, `pii.ip`, `pii.extra` (replacements),
    # `decontamination.cut_documents` and `.cut_chars`, `badwords.kept_anyway`, `line_dedup.<source>.documents`,
    # `.lines` and `.bytes` (boilerplate lines removed)
    edits: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    index: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # `schema.Counted` items

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] += count

    def example(
        self, reason: str, doc_id: str, url: str | None, text: str, error: str | None = None, detail: str | None = None
    ) -> None:
        """Keeps a dropped document for the report when it is among the reason's smallest ids so far; `error`: the
        exception a step raised on it; `detail`: what the step found (a benchmark's matching words)."""
        found = self.examples.setdefault(reason, [])
        if len(found) < EXAMPLES_PER_REASON or doc_id < found[-1]["id"]:
            example = {"id": doc_id, "url": url, "text": text[:EXAMPLE_CHARS]}
            if error:
                example["error"] = error
            if detail:
                example["detail"] = detail[:EXAMPLE_CHARS]
            found.append(example)
            self.examples[reason] = _smallest_ids(found)

    def unit_error(self, file: str, unit: str, errors: int, documents: int) -> None:
        """A unit some of whose documents a step failed on (`error.*` drops): the run's summary names the units
        where they are more than a share of the documents."""
        self.error_units.append({"file": file, "unit": unit, "errors": errors, "documents": documents})

    def noisy_units(self, max_share: float) -> list[dict]:
        """The units whose `error.*` drops are more than `max_share` of their documents."""
        return [u for u in self.error_units if u["errors"] > max_share * max(u["documents"], 1)]

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
        self.error_units.extend(other.error_units)
        self.renamed_ids += other.renamed_ids
        self.edits.update(other.edits)
        self.index.update(other.index)
        self.lengths_before_filters.update(other.lengths_before_filters)
        self.lengths_after_filters.update(other.lengths_after_filters)
        for reason, examples in other.examples.items():
            self.examples[reason] = _smallest_ids([*self.examples.get(reason, []), *examples])
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
            "renamed_ids": self.renamed_ids,
            "dropped": dict(sorted(self.dropped.items())),
            "edits": dict(sorted(self.edits.items())),
            "index": dict(sorted(self.index.items())),
            "errors": sorted(self.errors, key=lambda e: (e["file"], e["offset"] or 0, e["error"])),
            "lengths": {
                "before_filters": {str(k): v for k, v in sorted(self.lengths_before_filters.items())},
                "after_filters": {str(k): v for k, v in sorted(self.lengths_after_filters.items())},
            },
            "examples": dict(sorted(self.examples.items())),
            "error_units": sorted(self.error_units, key=lambda u: (u["file"], str(u["unit"]), u["errors"])),
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
            renamed_ids=data.get("renamed_ids", 0),
            dropped=collections.Counter(data.get("dropped", {})),
            edits=collections.Counter(data.get("edits", {})),
            index=collections.Counter(data.get("index", {})),
            errors=list(data.get("errors", [])),
            lengths_before_filters=_buckets(data.get("lengths", {}).get("before_filters", {})),
            lengths_after_filters=_buckets(data.get("lengths", {}).get("after_filters", {})),
            examples=dict(data.get("examples", {})),
            error_units=list(data.get("error_units", [])),
        )


def _buckets(table: dict) -> collections.Counter:
    return collections.Counter({int(bucket): count for bucket, count in table.items()})

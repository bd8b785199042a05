"""The one document schema shared by every source and stage.

A `Document` is what flows between stages; `ARROW_SCHEMA` is how it is stored in shards. Field names,
types and the id rules live here and nowhere else (see docs/formats.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from typing import Any

import pyarrow as pa

# 2: language_label; language is the source's own where it declares one. 3: measures (a map). 4: measures as a
# list of (name, value) structs, which every reader of Parquet has a type for (datasets has none for maps).
# 5: quality (a quality classifier's score). 6: repository, path, revision and license (code; empty elsewhere).
SCHEMA_VERSION = 6
SCHEMA_VERSION_KEY = b"lmforge.schema_version"

MEASURE = pa.struct([pa.field("name", pa.string(), nullable=False), pa.field("value", pa.float64())])
ARROW_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.large_string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("crawl", pa.string()),
        pa.field("date", pa.timestamp("ms", tz="UTC")),  # Parquet has no second unit
        pa.field("language", pa.string()),
        pa.field("language_score", pa.float32()),
        pa.field("title", pa.string()),
        pa.field("language_label", pa.string()),
        # what each quality filter measured ("fineweb.line_punct_ratio": 0.4), when the recipe keeps them
        pa.field("measures", pa.list_(MEASURE)),
        pa.field("quality", pa.float32()),  # the source's quality classifier's score, when it has one
        # code: the repository (its name in the run), the file's path in it, the commit read, the SPDX licence(s)
        pa.field("repository", pa.string()),
        pa.field("path", pa.string()),
        pa.field("revision", pa.string()),
        pa.field("license", pa.string()),
    ],
    metadata={SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode()},
)
FIELD_NAMES = tuple(ARROW_SCHEMA.names)

# The duplicates report written beside deduplicated shards: one row per group of copies.
REPORT_SCHEMA = pa.schema(
    [
        pa.field("cluster_id", pa.string(), nullable=False),  # "<kind>:<kept_id>"
        pa.field("kind", pa.string(), nullable=False),  # "exact" or "near" (MinHash)
        pa.field("cluster_size", pa.int64(), nullable=False),
        pa.field("kept_id", pa.string(), nullable=False),
        pa.field("removed_ids", pa.list_(pa.string()), nullable=False),
    ],
    metadata={SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode()},
)


@dataclasses.dataclass
class Document:
    id: str
    text: str
    source: str
    url: str | None = None
    crawl: str | None = None
    date: dt.datetime | None = None
    language: str | None = None  # the source's own (a wiki's language), else language_label
    language_score: float | None = None  # fastText's probability of language_label
    title: str | None = None
    language_label: str | None = None  # fastText's top label
    measures: dict[str, float] | None = None  # filled by the filters when measures are kept
    quality: float | None = None  # the quality classifier's probability of "keep" (pipeline.steps.quality)
    repository: str | None = None  # code only, as the four below: the repository's name in the run
    path: str | None = None  # the file's path inside its repository
    revision: str | None = None  # the commit read, when the repository records one
    license: str | None = None  # SPDX ids of the repository's licence files ("MIT", "Apache-2.0 AND MIT")

    @classmethod
    def from_row(cls, row: dict) -> Document:
        """A row of this schema, or of another tool's (datatrove and dolma write dates as ISO-8601 strings)."""
        values: dict[str, Any] = {name: row.get(name) for name in FIELD_NAMES}
        values["date"] = as_utc_datetime(values["date"])
        if values["measures"] is not None:
            values["measures"] = dict(_measure_pairs(values["measures"]))
        return cls(**values)

    def make_valid(self) -> Document:
        """Every text field as valid Unicode (`valid_text`), so no step, model or writer meets a lone surrogate."""
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, valid_text(value))
        return self

    def measure(self, name: str, value: float) -> None:
        """Records what a filter measured, when this document keeps measures."""
        if self.measures is not None:
            self.measures[name] = round(float(value), 6)


_TEXT_FIELDS = ("id", "text", "url", "source", "crawl", "language", "title", "language_label", "repository", "path")
REPLACEMENT = "\ufffd"


def valid_text(text: str) -> str:
    """`text` with NULs and lone surrogates (from UTF-7, `&#xD800;`, JSON's `"\\ud800"`) replaced by U+FFFD, and
    surrogate pairs joined: text every encoder, fastText and Arrow accept. Valid text is returned as it is."""
    if "\x00" in text:
        text = text.replace("\x00", REPLACEMENT)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


# What a source yields while it reads a unit of work, besides documents (see pipeline.sources).


@dataclasses.dataclass
class Skipped:
    """A record read and set aside before it became a document (not HTML, a redirect, no text)."""

    reason: str
    where: str | int | None = None  # an offset, a title or a line, for the log


@dataclasses.dataclass
class Dropped:
    """A record that counts as a document but was dropped while it was read (its HTML cannot be decoded)."""

    reason: str
    where: str | int | None = None


@dataclasses.dataclass
class Counted:
    """Something a source counted while it read a unit that is not a record (Common Crawl's index: captures listed,
    selected, fetched, failed, bytes): added to `stats.json` `index`."""

    name: str
    count: int = 1


@dataclasses.dataclass
class ReadError:
    """The rest of a unit, or one stream of it, cannot be read."""

    error: str
    offset: int | None = None
    retryable: bool = False  # the network failed, not the file: a rerun may read it


_UUID = re.compile(r"urn:uuid:([0-9a-fA-F-]{36})")


def wikipedia_id(dbname: str, page_id: int) -> str:
    return f"wikipedia/{dbname}/{page_id}"


def text_id(source: str, key: str) -> str:
    """`<source>/<key>`: a local corpus's documents keyed by their own id, else file name and position."""
    return f"{source}/{key}"


def commoncrawl_id(record_id: str | None, fallback_key: str) -> str:
    """`commoncrawl/<uuid>` from a WARC-Record-ID; records without one (ARC files) hash `fallback_key`
    (file name and offset), which is stable for the same input."""
    match = _UUID.search(record_id or "")
    if match:
        return f"commoncrawl/{match.group(1).lower()}"
    return f"commoncrawl/sha1-{hashlib.sha1(fallback_key.encode()).hexdigest()[:32]}"


def parse_warc_date(value: str | None) -> dt.datetime | None:
    """WARC-Date is ISO 8601 in UTC (`2024-01-31T12:00:00Z`, sometimes with fractions); ARC dates are
    `YYYYMMDDhhmmss`. Returns an aware UTC datetime truncated to seconds, or None if unparseable."""
    if not value:
        return None
    value = value.strip()
    try:
        if value.isdigit() and len(value) == 14:
            parsed = dt.datetime.strptime(value, "%Y%m%d%H%M%S")
        else:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).replace(microsecond=0)


def as_utc_datetime(value) -> dt.datetime | None:
    """A document date as shards store it: a timestamp (a naive one taken as UTC), a date, or a string in
    ISO 8601 or the ARC form (unparseable: None)."""
    if value is None or isinstance(value, str):
        return parse_warc_date(value)
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    raise ValueError(f"date {value!r}: expected a timestamp, a date or an ISO-8601 string")


def check_date_column(schema: pa.Schema) -> None:
    """Refuses a shard whose `date` column no reader of dates understands, naming the column's type."""
    if "date" not in schema.names:
        return
    kind = schema.field("date").type
    if not (
        pa.types.is_timestamp(kind)
        or pa.types.is_date(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_null(kind)
    ):
        raise ValueError(f"column date is {kind}; expected a timestamp, a date or ISO-8601 strings")


def _measure_pairs(measures: list) -> list[tuple[str, float]]:
    """Measures as stored: (name, value) structs (version 4), or the pairs a version-3 map reads back as."""
    return [(m["name"], m["value"]) if isinstance(m, dict) else (m[0], m[1]) for m in measures]


def documents_to_table(docs: list[Document]) -> pa.Table:
    columns = {name: [getattr(doc, name) for doc in docs] for name in FIELD_NAMES}
    columns["measures"] = [
        None if doc.measures is None else [{"name": name, "value": value} for name, value in doc.measures.items()]
        for doc in docs
    ]
    return pa.Table.from_pydict(columns, schema=ARROW_SCHEMA)


def table_to_documents(table: pa.Table) -> list[Document]:
    """Documents of a table of this or an older schema version (columns it lacks are None)."""
    check_schema_version(table.schema)
    return [Document.from_row(row) for row in table.select(present_fields(table.schema)).to_pylist()]


def present_fields(schema: pa.Schema) -> list[str]:
    return [name for name in FIELD_NAMES if name in schema.names]


def check_schema_version(schema: pa.Schema) -> None:
    found = (schema.metadata or {}).get(SCHEMA_VERSION_KEY)
    if found is not None and int(found) > SCHEMA_VERSION:
        raise ValueError(
            f"shard schema version {int(found)} is newer than this lmforge reads ({SCHEMA_VERSION}); upgrade lmforge"
        )

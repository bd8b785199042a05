"""Common Crawl's columnar URL index: which captures of a crawl to fetch, so that a run reads only the records it
may keep instead of whole WARCs.

The index is Parquet, one row per capture (the flat schema of commoncrawl/cc-index-table, `FLAT_SCHEMA`). `select`
reads one index file through range requests (its footer, then only the columns it needs, a row group at a time) and
keeps the captures with `fetch_status` 200 and an HTML MIME type that match every given rule: languages (CLD2's
`content_languages`, up to three ISO 639-3 codes, comma-separated, the likeliest first: `primary` takes the first,
`any` any of them), hosts or registered domains (a listed domain takes its subdomains), URL patterns (RE2 regular
expressions), and a SQL expression over the index's columns (evaluated by DuckDB). `batches` cuts one WARC's
selected captures into units; `coalesce` merges a unit's byte ranges that lie close together, so neighbouring
records cost one request.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# The flat table's columns and Arrow types (commoncrawl/cc-index-table, src/main/resources/schema/
# cc-index-schema-flat.json; `crawl` and `subset` are its partition columns)
_SPARK_TYPES = {"string": pa.string(), "integer": pa.int32(), "short": pa.int16(), "timestamp": pa.timestamp("us")}
FLAT_COLUMNS = (
    ("url_surtkey", "string"), ("url", "string"), ("url_host_name", "string"), ("url_host_tld", "string"),
    ("url_host_2nd_last_part", "string"), ("url_host_3rd_last_part", "string"), ("url_host_4th_last_part", "string"),
    ("url_host_5th_last_part", "string"), ("url_host_registry_suffix", "string"),
    ("url_host_registered_domain", "string"), ("url_host_private_suffix", "string"),
    ("url_host_private_domain", "string"), ("url_host_name_reversed", "string"), ("url_protocol", "string"),
    ("url_port", "integer"), ("url_path", "string"), ("url_query", "string"), ("fetch_time", "timestamp"),
    ("fetch_status", "short"), ("fetch_redirect", "string"), ("content_digest", "string"),
    ("content_mime_type", "string"), ("content_mime_detected", "string"), ("content_charset", "string"),
    ("content_languages", "string"), ("content_truncated", "string"), ("warc_filename", "string"),
    ("warc_record_offset", "integer"), ("warc_record_length", "integer"), ("warc_segment", "string"),
    ("crawl", "string"), ("subset", "string"),
)  # fmt: skip
FLAT_SCHEMA = pa.schema([(name, _SPARK_TYPES[kind]) for name, kind in FLAT_COLUMNS])
# What every selection reads, and the kind of type each must have
REQUIRED = {
    "url": pa.types.is_string,
    "fetch_status": pa.types.is_integer,
    "warc_filename": pa.types.is_string,
    "warc_record_offset": pa.types.is_integer,
    "warc_record_length": pa.types.is_integer,
}
HTML_TYPES = ("text/html", "application/xhtml+xml")
LANGUAGE_MODES = ("primary", "any")
DEFAULT_GAP_BYTES = 64 * 1024  # ranges closer than this are fetched in one request
DEFAULT_UNIT_RECORDS = 2000  # captures of one WARC per unit


def iso639_3(code: str) -> str:
    """A language label as the index writes it: fastText's `en` → `eng`, GlotLID's `eng_Latn` → `eng`; a three-letter
    code stays as it is."""
    import pycountry

    code = code.split("_")[0].split("-")[0]
    if len(code) == 3:
        return code
    language = pycountry.languages.get(alpha_2=code)
    if language is None:
        raise ValueError(f"no ISO 639-3 code for language {code!r}")
    return language.alpha_3


@dataclasses.dataclass(frozen=True)
class Selection:
    """The rules a capture must meet (each empty one is not applied)."""

    languages: tuple[str, ...] = ()  # ISO 639-3
    language_mode: str = "primary"
    hosts: tuple[str, ...] = ()
    url_patterns: tuple[str, ...] = ()
    sql: str = ""

    def columns(self, schema: pa.Schema) -> list[str]:
        """The columns reading needs: the required ones, the rules', and those the SQL expression names."""
        wanted = [*REQUIRED, "content_mime_detected", "content_mime_type"]
        if self.languages:
            wanted.append("content_languages")
        if self.hosts:
            wanted.append("url_host_name")
        if self.sql:
            named = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", self.sql))
            wanted.extend(name for name in schema.names if name in named)
        return [name for name in dict.fromkeys(wanted) if name in schema.names]

    def check(self) -> None:
        """The user's mistakes, before anything is read: a mode, a pattern, the SQL against the flat schema."""
        if self.language_mode not in LANGUAGE_MODES:
            raise ValueError(f"index_language_mode: {self.language_mode!r} is not one of {', '.join(LANGUAGE_MODES)}")
        for pattern in self.url_patterns:
            try:
                pc.match_substring_regex(pa.array([""]), pattern)
            except pa.ArrowInvalid as exc:
                raise ValueError(f"index_url_patterns: {pattern!r} is not an RE2 pattern: {exc}") from None
        if self.sql:
            try:
                self._sql_mask(FLAT_SCHEMA.empty_table())
            except Exception as exc:  # duckdb's parser and binder errors have no common base
                raise ValueError(f"index_filter: {self.sql!r}: {str(exc).splitlines()[0]}") from None

    def mask(self, table: pa.Table) -> pa.ChunkedArray | pa.Array:
        """Which rows of an index table are selected."""
        keep = pc.equal(table["fetch_status"], 200)
        mime = "content_mime_detected" if "content_mime_detected" in table.column_names else "content_mime_type"
        if mime in table.column_names:
            keep = pc.and_(keep, pc.is_in(pc.utf8_lower(table[mime]), value_set=pa.array(HTML_TYPES)))
        if self.languages:
            codes = "|".join(map(re.escape, self.languages))
            pattern = f"^(?:{codes})(?:,|$)" if self.language_mode == "primary" else f"(?:^|,)(?:{codes})(?:,|$)"
            keep = pc.and_(keep, pc.match_substring_regex(table["content_languages"], pattern))
        if self.hosts:
            domains = "|".join(re.escape(host.lower().strip(".")) for host in self.hosts)
            keep = pc.and_(keep, pc.match_substring_regex(pc.utf8_lower(table["url_host_name"]),
                                                          f"(?:^|\\.)(?:{domains})$"))  # fmt: skip
        if self.url_patterns:
            matched = [pc.match_substring_regex(table["url"], pattern) for pattern in self.url_patterns]
            any_pattern = matched[0]
            for more in matched[1:]:
                any_pattern = pc.or_(any_pattern, more)
            keep = pc.and_(keep, any_pattern)
        if self.sql:
            keep = pc.and_(keep, self._sql_mask(table))
        return pc.fill_null(keep, False)

    def _sql_mask(self, table: pa.Table) -> pa.Array:
        import duckdb

        numbered = table.append_column("__row", pa.array(range(len(table)), pa.int64()))
        connection = duckdb.connect()
        try:
            connection.register("captures", numbered)
            rows = connection.execute(f"SELECT __row FROM captures WHERE ({self.sql})").fetchall()
        finally:
            connection.close()
        mask = np.zeros(len(table), dtype=bool)
        mask[[row for (row,) in rows]] = True
        return pa.array(mask)


@dataclasses.dataclass(frozen=True)
class Capture:
    offset: int
    length: int
    url: str


def check_schema(schema: pa.Schema, path: str) -> None:
    """An index file must have the columns a selection reads, of usable types; else a ValueError naming them."""
    for name, usable in REQUIRED.items():
        if name not in schema.names:
            raise ValueError(f"{path}: not a Common Crawl index file: no column {name}")
        if not usable(schema.field(name).type):
            raise ValueError(f"{path}: column {name} is {schema.field(name).type}, which an index does not use")


def select(index_file, path: str, selection: Selection) -> tuple[dict[str, list[Capture]], dict[str, int]]:
    """The selected captures of one index file (opened as `index_file`, a seekable file), by WARC file, each WARC's
    in offset order; and the file's counts: captures listed, selected, and the bytes of every capture listed (the
    records a whole-WARC run would read)."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(index_file)
    schema = parquet.schema_arrow
    check_schema(schema, path)
    columns = selection.columns(schema)
    by_warc: dict[str, list[Capture]] = {}
    counts = {"captures": 0, "selected": 0, "capture_bytes": 0}
    for group in range(parquet.num_row_groups):
        table = parquet.read_row_group(group, columns=columns)
        counts["captures"] += len(table)
        counts["capture_bytes"] += int(pc.sum(table["warc_record_length"]).as_py() or 0)
        chosen = table.filter(selection.mask(table))
        counts["selected"] += len(chosen)
        for warc, offset, length, url in zip(
            chosen["warc_filename"].to_pylist(),
            chosen["warc_record_offset"].to_pylist(),
            chosen["warc_record_length"].to_pylist(),
            chosen["url"].to_pylist(),
        ):
            by_warc.setdefault(warc, []).append(Capture(offset, length, url))
    for captures in by_warc.values():
        captures.sort(key=lambda capture: capture.offset)
    return by_warc, counts


def batches(captures: list[Capture], size: int) -> Iterator[tuple[Capture, ...]]:
    for start in range(0, len(captures), size):
        yield tuple(captures[start : start + size])


def coalesce(captures: Iterable[Capture], gap: int) -> Iterator[tuple[int, int, list[Capture]]]:
    """(start, end, captures) byte ranges to fetch: captures whose records lie at most `gap` bytes apart share
    one range. `captures` in offset order."""
    members: list[Capture] = []
    start = end = 0
    for capture in captures:
        if members and capture.offset - end <= gap:
            end = max(end, capture.offset + capture.length)
            members.append(capture)
            continue
        if members:
            yield start, end, members
        start, end, members = capture.offset, capture.offset + capture.length, [capture]
    if members:
        yield start, end, members

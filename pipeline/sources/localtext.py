"""Local text collections (books, papers, any corpus a user has on disk, on a web server or in a bucket).

One unit per file, read by the one corpus reader (`pipeline.common.corpus`: plain text per file or per line, JSON lines,
Parquet and Arrow; text and JSON lines compressed or not). A document's id is `<source name>/<key>`: the record's
own `id`, else the file's path within the collection plus the line or row number. Project Gutenberg's licence
header and footer can be stripped.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator

from pipeline.common import corpus
from pipeline.common.remote import expand_glob
from pipeline.common.schema import Document, ReadError, Skipped, text_id
from pipeline.common.settings import UsageError
from pipeline.sources import DocumentSettings, Source

DEFAULT_TEXT_FIELD = corpus.DEFAULT_TEXT_FIELD


@dataclasses.dataclass
class Settings(DocumentSettings):
    """A recipe's table for a local collection; the table's name is the documents' source (and id prefix)."""

    inputs: list[str] = dataclasses.field(default_factory=list)  # globs on any filesystem, or URLs
    text_field: str = DEFAULT_TEXT_FIELD  # JSON field or column holding the text
    lines: bool = False  # plain text: one document per line instead of per file
    strip_gutenberg: bool = False  # remove Project Gutenberg's licence header and footer
    language: str = ""  # the corpus's own language, stored as `language` (fastText's label beside it)
    filters: list[str] = dataclasses.field(default_factory=lambda: ["min_length"])
    min_language_score: float = 0.0
    pii: bool = False  # an encyclopedia's or a book's addresses are public ones, not PII


class StripGutenberg:
    name = "gutenberg"

    def __call__(self, doc: Document) -> str | None:
        doc.title = doc.title or gutenberg_title(doc.text)
        doc.text = strip_gutenberg(doc.text)
        return None if doc.text.strip() else "cleaned_empty"


class LocalText(Source):
    """Units are (path, name within the collection) pairs; names are relative to the files' common folder."""

    Settings = Settings
    kind = "text"

    def inputs(self) -> list[tuple[str, str]]:
        where = f"sources.{self.name}"
        if not re.fullmatch(r"[\w.-]+", self.name):
            raise UsageError(f"{where}: a source name has letters, digits, '.', '_' and '-' only: {self.name!r}")
        if not self.settings.inputs:
            raise UsageError(f"{where}.inputs: no files given")
        paths: list[str] = []
        for pattern in self.settings.inputs:
            try:
                matched = [pattern] if "://" in pattern and pattern.startswith("http") else expand_glob(pattern)
            except OSError as exc:
                raise UsageError(f"{where}.inputs: {exc}")
            if not matched:
                raise UsageError(f"{where}.inputs: no file matches {pattern}")
            paths.extend(matched)
        paths = sorted(set(paths))
        common = os.path.commonprefix(paths)
        root = common[: common.rfind("/") + 1]
        return [(path, path[len(root) :]) for path in paths]

    def unit_path(self, unit: tuple[str, str]) -> str:
        return unit[0]

    def unit_settings(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self.settings).items() if k != "inputs"}

    def read(self, unit: tuple[str, str]) -> Iterator[corpus.Item]:
        path, name = unit
        return corpus.read_file(path, name, self.settings.text_field, self.settings.lines)

    def document(self, record: corpus.Item) -> Document | Skipped | ReadError:
        if not isinstance(record, corpus.TextRecord):
            return record
        return Document(
            id=text_id(self.name, record.key),
            text=record.text,
            source=self.name,
            url=record.url,
            date=record.date,
            language=self.settings.language or None,
            title=record.title,
        )

    def steps(self, unit) -> list:
        return [StripGutenberg()] if self.settings.strip_gutenberg else []


# Project Gutenberg's boilerplate: the licence header ends at a START line, the licence footer begins at an
# END line. Older files word the lines differently; these are the variants Gutenberg has used.
_GUTENBERG_START = re.compile(
    r"^\s*\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG E-?(?:BOOK|TEXT).*$"
    r"|^\s*\*END\*THE SMALL PRINT!.*$",
    re.IGNORECASE | re.MULTILINE,
)
_GUTENBERG_END = re.compile(
    r"^\s*\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG E-?(?:BOOK|TEXT).*$"
    r"|^\s*End of (?:the )?Project Gutenberg'?s? .*$",
    re.IGNORECASE | re.MULTILINE,
)


_GUTENBERG_TITLE = re.compile(r"^Title:[ \t]*(.+)$", re.MULTILINE)


def gutenberg_title(text: str) -> str | None:
    """The `Title:` line of a Project Gutenberg header, if the text has one before its START line."""
    start = _GUTENBERG_START.search(text)
    match = _GUTENBERG_TITLE.search(text, 0, start.start() if start else 0)
    return match.group(1).strip() if match else None


def strip_gutenberg(text: str) -> str:
    """The book without Project Gutenberg's header and licence footer; text without the markers is
    returned unchanged."""
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end() :]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[: end.start()]
    return text.strip() if (start or end) else text

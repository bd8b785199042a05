"""Sources: one module each, one protocol, one registry.

A source plans its inputs into units of work and reads one unit into documents, without Beam:

    inputs()          on the driver: what the run reads (paths, dumps), from the source's settings; raises
                      UsageError for the user's mistakes before anything runs
    plan(input)       on a worker: the input's units (a WARC, a run of bz2 streams, a file); OSError or ValueError
                      count the input as unreadable and the run goes on
    read(unit)        the unit's records as read (a WARC's HTML pages, a dump's pages) or Documents, and
                      `schema.Skipped` / `schema.Dropped` / `schema.ReadError` for the rest
    document(record)  a record → its Document (or Skipped / Dropped): the per-record work, run by the unit
                      processor under its guard, so a record that makes it raise costs that record only
    steps(unit)       the source's own per-document steps (extract, clean), run before language ID and filters
    unit_key(unit)    a file-name-safe key, stable across runs, under which a finished unit is committed

`pipeline.steps.process.UnitProcessor` runs any source; `pipeline.beam.read.ReadSource` runs it on Beam. A new source
is one module with a `Settings` dataclass (its recipe table) and a class like those below, plus one line in
`REGISTRY` (or a `register()` call); docs/architecture.md has a short example.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

from pipeline.common.remote import input_key, read_text_lines
from pipeline.common.schema import Document, Dropped, ReadError, Skipped
from pipeline.steps import filters, langid, pii, quality
from pipeline.steps.decontam import NgramIndexes

log = logging.getLogger(__name__)

Item = Document | Dropped | Skipped | ReadError
Step = Callable[[Document], "str | None"]  # a drop reason, or None to keep the (possibly rewritten) document


@dataclasses.dataclass
class DocumentSettings:
    """Language ID and quality filters, in every source's recipe table. The defaults are the web's (Common
    Crawl); encyclopedic and book sources override them (min_length only, every language score), because the
    web heuristics wrongly drop lists, headings, verse and long documents. A source whose documents arrive with
    their language known (code: a file's programming language) sets `identifies_language` False: `languages` then
    selects on that language and fastText does not run."""

    identifies_language: ClassVar[bool] = True

    languages: list[str] = dataclasses.field(default_factory=list)  # empty: keep every language
    min_language_score: float = langid.DEFAULT_MIN_SCORE
    filters: list[str] = dataclasses.field(default_factory=lambda: list(filters.WEB_FILTERS))
    filter_settings: dict = dataclasses.field(default_factory=dict)  # {filter name: {argument: value}}
    keep_measures: bool = False  # store what each filter measured in the `measures` column
    # A quality classifier (`python -m pipeline quality train`: its folder or a fastText .bin), scored after the
    # filters into the `quality` column; "": none. Then drop under `min_quality` (a score; by default the model's own
    # held-out threshold, 0 for none), or keep the best `quality_keep` of the documents (a fraction, its threshold read
    # from the run's own scores).
    quality_model: str = ""
    min_quality: float = quality.MODEL_THRESHOLD  # -1: the threshold `quality train` chose on its held-out split
    quality_keep: float = 1.0
    # C4's bad-words filter: {language: word list file}; a document with a listed word of its language is dropped as
    # `badwords`, but for a share `badwords_keep` of them (chosen by id, the same on every run)
    badwords: dict = dataclasses.field(default_factory=dict)
    badwords_keep: float = 0.0
    # E-mail and public IP addresses replaced by placeholders after the filters, as FineWeb publishes (off for
    # Wikipedia and local text); `pii_patterns`: a file of extra regular expressions, one per line
    pii: bool = True
    pii_patterns: str = ""
    # A benchmark n-gram index (`python -m pipeline decontam index`): a document sharing an n-gram with it is dropped
    # as `decontaminated` ("drop"), or loses the matches and 200 characters each side and is filtered again ("cut")
    decontamination: str = ""
    decontamination_mode: str = "drop"
    decontamination_ngram: int = 0  # the n-gram size the run expects of the index (0: whatever it was built with)

    def files(self) -> dict[str, str]:
        """The settings that name a file whose content, not path, shapes the output: {setting: path}."""
        named = {"pii_patterns": self.pii_patterns, "decontamination": self.decontamination}
        named.update({f"badwords.{language}": path for language, path in sorted(self.badwords.items())})
        return {setting: path for setting, path in named.items() if path}

    def check_filters(self, where: str) -> None:
        unknown = [name for name in self.filters if name not in filters.FILTERS]
        if unknown:
            raise ValueError(f"{where}.filters: unknown filter {unknown[0]!r} (filters: {', '.join(filters.FILTERS)})")
        extra = [name for name in self.filter_settings if name not in self.filters]
        if extra:
            raise ValueError(f"{where}.filter_settings: {extra[0]!r} is not among the filters of this source")
        try:
            filters.build_filters(self.filters, self.filter_settings)
        except TypeError as exc:
            raise ValueError(f"{where}.filter_settings: {exc}")
        quality.check_settings(self.quality_model, self.min_quality, self.quality_keep, where)
        if not 0 <= self.badwords_keep <= 1:
            raise ValueError(
                f"{where}.badwords_keep: a share of the flagged documents, from 0 to 1: {self.badwords_keep}"
            )
        if self.decontamination_mode not in ("drop", "cut"):
            raise ValueError(f"{where}.decontamination_mode: {self.decontamination_mode!r} is not drop or cut")
        if not isinstance(self.badwords, dict) or not all(isinstance(v, str) for v in self.badwords.values()):
            raise ValueError(f'{where}.badwords: a table of language = "word list file", e.g. {{en = "en.txt"}}')
        for setting, path in self.files().items():
            try:
                if setting == "decontamination":
                    index = NgramIndexes.get(path)
                    if self.decontamination_ngram and index.ngram != self.decontamination_ngram:
                        raise ValueError(
                            f"{path} was built with {index.ngram}-grams, not the {self.decontamination_ngram}-grams "
                            "asked for: build it again with --ngram"
                        )
                elif setting == "pii_patterns":
                    pii.read_patterns(path)
                else:
                    read_text_lines(path)
            except (OSError, ValueError) as exc:
                raise ValueError(f"{where}.{setting}: {exc}")


def listed_once(inputs: list, where: str) -> list:
    """`inputs` in their order, each once: an input listed twice (a dump given twice, a listing that repeats a WARC)
    would be read twice, its documents reaching the output under the same ids. The repeats are named in the log."""
    unique = list(dict.fromkeys(inputs))
    if len(unique) < len(inputs):
        repeated = sorted({str(i) for i in inputs if inputs.count(i) > 1})
        log.warning("%s: %d input(s) listed more than once, read once: %s", where, len(repeated), ", ".join(repeated))
    return unique


class Source:
    """The protocol, with the defaults most sources keep. `settings` is the source's recipe table."""

    Settings: type = DocumentSettings
    kind = ""  # the registry name
    commits = True  # finished units are committed under the work folder (not worth it for shards read as they are)
    # The run's language identifier, given by the unit processor before open() to a source with DocumentSettings,
    # for its own steps (Common Crawl's language prefilter)
    language_identifier: langid.LanguageIdentifier | None = None

    def __init__(self, name: str, settings):
        self.name = name
        self.settings = settings

    def inputs(self) -> list:
        raise NotImplementedError

    def plan(self, source_input) -> Iterable[Any]:
        return [source_input]

    @property
    def splits_inputs(self) -> bool:
        """Whether an input may become several units, so that the driver cannot know how many units a run has."""
        return type(self).plan is not Source.plan

    def input_path(self, source_input) -> str:
        """The file an input names, in stats errors when it cannot be planned."""
        return source_input if isinstance(source_input, str) else source_input[0]

    def unit_key(self, unit) -> str:
        return input_key(self.unit_path(unit))

    def unit_path(self, unit) -> str:
        """The file a unit reads, named in stats errors."""
        return unit

    def counts_input(self, unit) -> bool:
        """Whether this unit counts its file in `input_files` (the first part of a dump does)."""
        return True

    def read(self, unit) -> Iterator[Any]:
        raise NotImplementedError

    def document(self, record) -> Item:
        """What `read` yielded, as a Document (sources that read Documents directly keep this default)."""
        return record

    def steps(self, unit) -> list[Step]:
        return []

    def unit_settings(self) -> dict:
        """The settings that change what a unit yields (the resume fingerprint); inputs that only choose which
        units there are stay out, so adding a file to a run reuses the units already done."""
        return dataclasses.asdict(self.settings)

    def open(self) -> None:
        """Worker-side resources (a child process), made once per worker before the first unit."""

    def close(self) -> None:
        pass


REGISTRY: dict[str, str | type] = {
    "commoncrawl": "pipeline.sources.commoncrawl:CommonCrawl",
    "wikipedia": "pipeline.sources.wikipedia:Wikipedia",
    "text": "pipeline.sources.localtext:LocalText",
    "shards": "pipeline.sources.shards:Shards",
    "code": "pipeline.sources.code:Code",
}


def register(kind: str, source_class: type) -> None:
    """Adds a source kind defined outside this package (a recipe table then names it with `kind = "…"`)."""
    REGISTRY[kind] = source_class


def source_class(kind: str) -> type[Source]:
    entry = REGISTRY.get(kind)
    if entry is None:
        raise KeyError(kind)
    if isinstance(entry, str):
        module, name = entry.split(":")
        entry = getattr(importlib.import_module(module), name)
    assert isinstance(entry, type) and issubclass(entry, Source), kind
    return entry

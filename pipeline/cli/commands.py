"""The commands of `python -m pipeline` and their flags: `run` takes a recipe; the presets `commoncrawl`,
`wikipedia`, `text`, `code`, `curate` and `dedup` are a source's inputs (`pipeline.cli.inputs`) with the flags every
preset shares (`pipeline.cli.filtering`, `pipeline.cli.options`); `quality` trains and scores a quality classifier
(`pipeline.cli.quality`); `decontam` builds a benchmark n-gram index (`pipeline.cli.decontam`); `report` and
`synthetic-sample` write files.
"""

from __future__ import annotations

import argparse

from pipeline import recipe as recipes
from pipeline.cli import decontam, quality
from pipeline.cli.filtering import add_process_arguments
from pipeline.cli.inputs import (
    add_code_inputs,
    add_commoncrawl_inputs,
    add_shards_inputs,
    add_text_inputs,
    add_wikipedia_inputs,
)
from pipeline.cli.options import add_dedup_arguments, add_engine_arguments, add_output_arguments
from pipeline.cli.run import PROGRAM, run_preset, run_recipe, run_report

RUN_EXAMPLE = """examples:
  # the recipe `make demo` runs (its generated crawl and Wikipedia dump), into a folder of its own, two shards
  python -m pipeline synthetic-sample --output demo-output/sample --seed 1
  python -m pipeline run --recipe configs/curate-sample.toml --output out/sample --output.num_shards 2
  # the recipe a run wrote, again, into another folder: the same shards
  python -m pipeline run --recipe out/sample/recipe.toml --output out/sample-again
  # the same recipe on Spark (here two local cores; spark://HOST:PORT for a cluster): the same bytes as on Beam
  python -m pipeline run --recipe out/sample/recipe.toml --output out/sample-spark --engine spark \\
      --spark-master 'local[2]' --conf spark.driver.memory=2g
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
  # the same on a Spark cluster (see docs/running-at-scale.md)
  python -m pipeline commoncrawl --crawl CC-MAIN-2024-10 --max-warcs 1000 --output s3://bucket/cc \\
      --engine spark --spark-master spark://master:7077 --conf spark.executor.memory=8g
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


CODE_EXAMPLE = """examples:
  # GitHub archives and a checkout, Python and C only, permissive licences (the default)
  python -m pipeline code --repos 'archives/*.tar.gz' src/myproject --languages python,c --output out/code
  # a bare repository at a tag, any licence
  python -m pipeline code --repos mirrors/project.git --revision v1.2.0 --licenses any --output out/project
"""


CURATE_EXAMPLE = """examples:
  # 10 WARCs of a crawl and English Wikipedia, deduplicated together (Wikipedia's copy survives)
  python -m pipeline curate --crawl CC-MAIN-2024-10 --max-warcs 10 --wiki enwiki --output out/mix
  # local inputs of all three kinds, books with web filters too
  python -m pipeline curate --warcs 'warcs/*.warc.gz' --dump dumps/ltgwiki.xml.bz2 \\
      --text 'books/*.txt' --source-name books --strip-gutenberg --filters books=all --output out/mix
  # web pages and code repositories in one set of shards
  python -m pipeline curate --warcs 'warcs/*.warc.gz' --repos 'archives/*.zip' --languages en --output out/mix
"""


DEDUP_EXAMPLE = """examples:
  # near-duplicates across two crawls' shards, FineWeb's 14 bands × 8 rows
  python -m pipeline dedup --input 'out/cc-*/part-*.parquet' --bands 14 --rows 8 --output out/dedup
  # Wikipedia's copy of an article survives, then the earliest crawl's
  python -m pipeline dedup --input 'out/*/part-*.parquet' --prefer wikipedia,commoncrawl --output out/all
"""


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
    add_engine_arguments(parser)
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
    add_engine_arguments(run)
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

    add_source_command(
        subparsers,
        "code",
        "code repositories (archives, checkouts, bare git) → one document per source file",
        "Curate source code as The Stack does: one document per file with its repository, path, revision, "
        "language and licence; repositories under licences not allowed, vendored, lock, binary and large files "
        "skipped; StarCoder's filters; keys and tokens redacted; deduplicated with the other sources.",
        CODE_EXAMPLE,
        add_code_inputs,
    )

    def add_every_input(parser):
        add_commoncrawl_inputs(parser, required=False)
        add_wikipedia_inputs(parser, required=False)
        add_text_inputs(parser, "--text", required=False)
        add_code_inputs(parser, required=False)

    add_source_command(
        subparsers,
        "curate",
        "every source at once (crawl, Wikipedia, local text, code) → one deduplicated set of shards",
        "Curate Common Crawl, Wikipedia dumps, local text collections and code repositories in one pipeline, with "
        "exact and MinHash "
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
    add_shards_inputs(dedup)
    add_output_arguments(dedup)
    add_dedup_arguments(dedup, switchable=False)
    add_engine_arguments(dedup)
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

    quality.build_parser(subparsers)
    decontam.build_parser(subparsers)
    from pipeline.common import synthetic

    synthetic.build_parser(subparsers)
    return parser

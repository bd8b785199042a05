"""The one rule from a preset's flags to its recipe: an option that sets a recipe setting is declared with
`recipe_option`, whose destination is the setting's dotted key (`--max-warcs` → `sources.commoncrawl.max_warcs`),
and `recipe_table` puts every such option that was given at its key. Nothing else maps flags to settings, apart
from the per-source language-ID and filter flags (`SOURCE=VALUE`, `pipeline.cli.filtering`). Every option defaults
to None, "not given", so the recipe's default stands; a switch gives its value (`--no-dedup`: False), which must
reach the recipe (tests/test_cli_flags.py reads the resolved recipe for every flag of every preset).

The flags every preset shares are here too: the output's and deduplication's.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from pipeline import recipe as recipes
from pipeline.common.settings import set_dotted

TEXT_SOURCE = "{text}"  # in a key: the local-text source, whose name is --source-name


def recipe_option(group, flag: str, key: str, **options) -> argparse.Action:
    """`flag`, whose value (when given) is the recipe setting `key`."""
    if options.get("action") not in ("store_true", "store_false") and "choices" not in options:
        options.setdefault("metavar", flag.lstrip("-").upper().replace("-", "_"))  # argparse's, from the flag
    return group.add_argument(flag, dest=key, default=None, **options)


def recipe_table(args, text_source: str) -> dict:
    """The recipe table of every recipe option given."""
    table: dict = {}
    for key, value in vars(args).items():
        if "." in key and value is not None:
            set_dotted(table, key.replace(TEXT_SOURCE, text_source), value)
    return table


def flags_of(parser: argparse.ArgumentParser, chosen: Callable[[str], bool]) -> list[str]:
    """The options of `parser` whose recipe key is `chosen` (for messages)."""
    return [action.option_strings[0] for action in parser._actions if action.option_strings and chosen(action.dest)]


def csv_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def default_of(section, name: str) -> str:
    value = getattr(section(), name)
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    recipe_option(
        group,
        "--output",
        "output.dir",
        required=True,
        metavar="DIR",
        help="folder (or gs://, s3:// prefix) for shards and stats.json",
    )
    recipe_option(
        group,
        "--format",
        "output.format",
        choices=("parquet", "arrow"),
        help="Parquet with zstd (default) or Arrow IPC",
    )
    recipe_option(
        group,
        "--shard-size",
        "output.shard_size",
        metavar="SIZE",
        help="text per output shard, e.g. 512MB or 1GB: the number of shards follows the corpus "
        f"(default: {default_of(recipes.OutputSettings, 'shard_size')})",
    )
    recipe_option(group, "--num-shards", "output.num_shards", type=int, help="a fixed number of output shards instead")


def add_dedup_arguments(parser: argparse.ArgumentParser, switchable: bool = True) -> None:
    d = recipes.DedupSettings
    group = parser.add_argument_group("deduplication: exact, then MinHash near-duplicates")
    if switchable:
        recipe_option(group, "--no-dedup", "dedup.enabled", action="store_false", help="skip both deduplication stages")
    recipe_option(group, "--no-minhash", "dedup.minhash", action="store_false", help="exact deduplication only")
    recipe_option(
        group,
        "--threshold",
        "dedup.threshold",
        type=float,
        help=f"Jaccard similarity that bands × rows are chosen for (default: {default_of(d, 'threshold')})",
    )
    recipe_option(
        group,
        "--num-perm",
        "dedup.num_perm",
        type=int,
        help=f"MinHash permutations (default: {default_of(d, 'num_perm')})",
    )
    recipe_option(
        group, "--bands", "dedup.bands", type=int, help="LSH bands (with --rows; default: chosen from --threshold)"
    )
    recipe_option(group, "--rows", "dedup.rows", type=int, help="rows per band (with --bands); FineWeb used 14 × 8")
    recipe_option(
        group, "--ngram", "dedup.ngram", type=int, help=f"words per shingle (default: {default_of(d, 'ngram')})"
    )
    recipe_option(
        group,
        "--verify",
        "dedup.verify",
        action="store_true",
        help="join a bucket's documents only when their estimated similarity reaches --threshold",
    )
    recipe_option(
        group,
        "--prefer",
        "dedup.prefer",
        type=csv_list,
        metavar="SOURCE,…",
        help=f"sources whose copy survives first, in order (default: {default_of(d, 'prefer')})",
    )
    recipe_option(
        group,
        "--components-rounds",
        "dedup.components_rounds",
        type=int,
        metavar="N",
        help="large-star/small-star rounds built into the pipeline; if the components have not "
        f"converged, the pipeline runs again with twice as many (default: {default_of(d, 'components_rounds')})",
    )
    recipe_option(
        group,
        "--line-dedup",
        "dedup.line_dedup",
        action="store_true",
        help="CCNet's boilerplate lines: after the copies, remove every line found in --line-min-documents or more "
        "documents, and filter what is left again",
    )
    recipe_option(
        group,
        "--line-min-documents",
        "dedup.line_min_documents",
        type=int,
        metavar="N",
        help=f"documents a line must be in to count as boilerplate (default: {default_of(d, 'line_min_documents')}, "
        "CCNet's)",
    )


ENGINES = ("beam", "spark")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """The engine a curation command runs on. Not recipe settings: the same recipe gives the same bytes on either."""
    group = parser.add_argument_group(
        "engine: Beam (the default; other unknown options are Beam pipeline options) or Spark"
    )
    group.add_argument(
        "--engine",
        choices=ENGINES,
        default="beam",
        help="beam: Apache Beam (DirectRunner here, Dataflow or Flink by --runner); spark: PySpark, on the Spark "
        "cluster given by --spark-master (docs/running-at-scale.md)",
    )
    group.add_argument(
        "--spark-master",
        metavar="URL",
        help="with --engine spark: local[N], spark://HOST:PORT, yarn or k8s://… (default: local[*]; under "
        "spark-submit, the running context's)",
    )
    group.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --engine spark: a Spark setting, as spark-submit takes it (repeat for several), e.g. "
        "--conf spark.executor.memory=8g",
    )

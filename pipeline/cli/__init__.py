"""`python -m pipeline <command>`: the command line of the curation stage, a thin layer over recipes.

`run --recipe FILE` runs a recipe (`pipeline.recipe`); `commoncrawl`, `wikipedia`, `text`, `curate` and `dedup` are
presets whose flags build one (`commands`: the commands; `inputs`: each source's flags; `filtering` and `options`:
the flags every preset shares, and the one rule from a flag to its recipe setting; `run`: the recipe built and
run). `--section.field VALUE` overrides any setting of the recipe; the other arguments this parser does not know
pass through to Beam as pipeline options, so the same command runs on the DirectRunner (the default, in
multi-processing mode), Dataflow or Flink; `--engine spark` runs it with PySpark instead (`pipeline.spark`).
"""

from __future__ import annotations

from pipeline.beam import logs
from pipeline.cli.commands import build_parser
from pipeline.cli.run import PROGRAM, preset_recipe, summarise
from pipeline.common.settings import UsageError, report as report_error

__all__ = ["UsageError", "build_parser", "main", "preset_recipe", "summarise"]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    logs.configure(args.verbose)
    try:
        return args.run(args, extra)
    except UsageError as exc:
        report_error(PROGRAM, exc)
        return 2

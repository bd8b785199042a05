"""What a command does once its flags are parsed: a preset's flags become a recipe (`preset_recipe`), a recipe
runs on Beam (`execute`) and the run is summarised on the terminal (`summarise`).
"""

from __future__ import annotations

import argparse
import difflib
import time

from pipeline import recipe as recipes
from pipeline.cli.filtering import check_source_names, process_settings
from pipeline.cli.inputs import SOURCE_INPUTS
from pipeline.cli.options import TEXT_SOURCE, flags_of, recipe_table
from pipeline.common.settings import UsageError, parse_overrides, report as report_error, set_dotted, split_overrides

MAX_ERRORS_SHOWN = 10

PROGRAM = "python -m pipeline"


def preset_recipe(args, overrides: list[tuple[str, object]]) -> recipes.Recipe:
    """The recipe a preset command's flags describe (then `--section.field` overrides): every recipe option given
    at its key, each source whose input is given with its kind, and the per-source language-ID and filter flags."""
    text_source = getattr(args, "source_name", "text")
    given = {key for key, value in vars(args).items() if "." in key and value is not None}
    present = [
        placeholder
        for placeholder, (_, inputs) in SOURCE_INPUTS.items()
        if any(f"sources.{placeholder}.{name}" in given for name in inputs)
    ]
    if TEXT_SOURCE in present and text_source in present:
        raise UsageError(f"--source-name {text_source!r} is already the name of another source")
    table = recipe_table(args, text_source)
    settings = table.pop("sources", {})
    sources: dict[str, dict] = {}
    for placeholder, (kind, _) in SOURCE_INPUTS.items():
        name = text_source if placeholder == TEXT_SOURCE else placeholder
        if placeholder in present:
            sources[name] = {"kind": kind, **settings.pop(name, {})}
    if settings:  # settings of a source whose input was not given would change nothing: refused
        name = next(iter(settings))
        prefix = f"sources.{TEXT_SOURCE if name == text_source else name}."
        inputs = {prefix + key for key in SOURCE_INPUTS[prefix.split(".")[1]][1]}
        stray = flags_of(args.parser, lambda dest: dest.startswith(prefix) and dest in given)
        needed = flags_of(args.parser, lambda dest: dest in inputs)
        raise UsageError(f"{', '.join(stray)}: no {name} input in this run (give {' or '.join(needed)})")
    if not sources:
        raise UsageError("curate needs at least one source: --crawl/--warc-paths/--warcs, --wiki/--dump or --text")
    if hasattr(args, "filters"):
        check_source_names(args, sources)
        for name, source_table in sources.items():
            source_table.update(process_settings(args, name, source_table["kind"]))
    table["sources"] = sources
    table.setdefault("dedup", {})
    for name, value in overrides:
        set_dotted(table, name, value)
    return recipes.from_table(table)


def run_report(args, extra: list[str]) -> int:
    from pipeline.output import report, sinks

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


def execute(recipe: recipes.Recipe, engine_arguments: list[str], args) -> int:
    """Runs the recipe on the engine the flags chose; `engine_arguments`: what no flag of the command took (Beam's
    pipeline options, which Spark has none of)."""
    started = time.time()
    ours = _options_of(args.parser)
    if args.engine == "spark":
        from pipeline.spark import curate as spark_curate, session

        check_spark_arguments(engine_arguments, ours)
        funnel = spark_curate.run(recipe, args.spark_master, session.parse_conf(args.conf))
    else:
        if args.spark_master or args.conf:
            raise UsageError("--spark-master and --conf are Spark's: add --engine spark, or leave them out for Beam")
        from pipeline.beam import curate

        funnel = curate.run(recipe, engine_arguments, ours)
    return summarise(recipe.output.dir, funnel, time.time() - started, recipe.errors)


def check_spark_arguments(arguments: list[str], ours: list[str]) -> None:
    """With --engine spark every argument is the command's own: anything else (a Beam option, a misspelt flag) is a
    UsageError naming it, with the closest of the command's options."""
    if not arguments:
        return
    problems = []
    for argument in arguments:
        name = argument.split("=", 1)[0]
        if not name.startswith("-"):
            problems.append(f"argument that follows no option: {argument}")
            continue
        close = difflib.get_close_matches(name, ours, n=1, cutoff=0.6)
        problems.append(f"unknown option {name}" + (f" (did you mean {close[0]}?)" if close else ""))
    raise UsageError(
        "; ".join(problems) + " (with --engine spark, Spark settings are given as --conf KEY=VALUE; Beam's "
        "pipeline options do not apply)"
    )


def summarise(output: str, funnel, seconds: float, errors: recipes.ErrorSettings | None = None) -> int:
    from pipeline.output import sinks

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

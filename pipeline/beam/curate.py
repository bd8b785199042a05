"""Running a recipe on Beam, from Python: the command line's `run`, `commoncrawl`, `wikipedia`, `text`, `curate`
and `dedup` all end here, and so can a notebook or a Dataflow template.

    from pipeline.beam import curate

    from pipeline import recipe
    r = recipe.load("cc.toml", [("output.dir", "out/cc")])
    stats = curate.run(r, ["--runner", "DirectRunner"])      # a Funnel, as in OUTPUT/stats.json

    with beam.Pipeline() as p:                                 # or inside a pipeline of your own
        docs, stats = p | curate.ReadSources(r)                # every source, before deduplication
        p | curate.Curate(r)                                   # the whole run: dedup, shards, report, stats, card
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter

from pipeline.beam import logs, read, write
from pipeline.common.remote import is_local, local_path
from pipeline.common.settings import UsageError
from pipeline.dedup import stages
from pipeline.output import card, report, sinks
from pipeline.output.stats import Funnel
from pipeline.recipe import RECIPE_FILE, Recipe, save

log = logging.getLogger(__name__)


class ReadSources(beam.PTransform):
    """A recipe's sources → (documents, stats): each source read by `read.ReadSource`, their documents
    flattened into one collection. Inputs are listed when it is made (UsageError for the user's mistakes)."""

    def __init__(self, recipe: Recipe):
        super().__init__()
        self.readers = {
            name: read.ReadSource(
                recipe.source(name), recipe.output.dir, recipe.langid_model, recipe.output.unit_file_bytes
            )
            for name in recipe.sources
        }

    def expand(self, pbegin):
        outputs = [pbegin | f"Read {name}" >> reader for name, reader in self.readers.items()]
        docs = [docs for docs, _ in outputs]
        stats = [stats for _, stats in outputs]
        if len(outputs) == 1:
            return docs[0], stats[0]
        return docs | "AllSources" >> beam.Flatten(), stats | "SourceStats" >> beam.Flatten()


class Curate(beam.PTransform):
    """A whole recipe from the pipeline's start: its sources, deduplication (unless switched off), shards, the
    duplicates report, stats.json and the dataset card (README.md). `rounds`: the connected-components rounds
    built in. The HTML report is drawn after the pipeline (`run`, or `python -m pipeline report`)."""

    def __init__(self, recipe: Recipe, rounds: int | None = None):
        super().__init__()
        self.recipe = recipe
        self.rounds = rounds or recipe.dedup.components_rounds
        self.read = ReadSources(recipe)

    def expand(self, pbegin):
        recipe, out = self.recipe, self.recipe.output
        docs, read_stats = pbegin | "Sources" >> self.read
        docs, id_stats = docs | "UniqueIds" >> stages.UniqueIds()
        funnels = [read_stats, id_stats]
        report_dir = sinks.join(out.dir, card.REPORT_DIR)
        written = []  # the paths of every shard this run writes: the earlier runs' others go once they exist
        if recipe.dedup.enabled:
            docs, dedup_stats, report = docs | "Dedup" >> stages.Deduplicate(
                recipe.minhash_config(), tuple(recipe.dedup.prefer), self.rounds
            )
            funnels.append(dedup_stats)
            if recipe.dedup.line_dedup:
                docs, line_stats = docs | "Lines" >> stages.RemoveCommonLines(
                    recipe.sources, recipe.kinds, recipe.dedup.line_min_documents
                )
                funnels.append(line_stats)
            report_shards = report | "Report" >> write.WriteShards(
                report_dir, out.num_shards, out.format, write.REPORT, recipe.shard_bytes
            )
            written.append(report_shards | "ReportPaths" >> beam.Keys())
        kept, paths = docs | "Write" >> write.WriteDocuments(out.dir, out.num_shards, out.format, recipe.shard_bytes)
        funnels.append(kept)
        written.append(paths)
        return (
            funnels
            | "AllStats" >> beam.Flatten()
            | "Stats" >> write.WriteStats(sinks.join(out.dir, "stats.json"))
            | "Publish" >> write.PublishShards((out.dir, report_dir), written | "Written" >> beam.Flatten())
            | "Card" >> beam.Map(card.write_card, recipe)
        )


def beam_options(arguments: Sequence[str], ours: Sequence[str] = ()):
    """Beam's pipeline options from command-line style arguments, with local defaults: the DirectRunner (run by
    `local_runner`, never on Prism), one worker process per core, quiet SDK workers. Every argument must
    be a Beam option (runners' included): anything else is a UsageError naming it and the closest option among
    Beam's and `ours` (the command's own flags), since Beam would drop it with only a warning."""
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions, WorkerOptions

    check_beam_arguments(arguments, ours)
    given = " ".join(arguments)
    options = PipelineOptions(list(arguments))
    if options.view_as(StandardOptions).runner is None:
        options.view_as(StandardOptions).runner = "DirectRunner"
    if "--default_sdk_harness_log_level" not in given:
        options.view_as(WorkerOptions).default_sdk_harness_log_level = "WARNING"
    direct = options.view_as(DirectOptions)
    if "--direct_num_workers" not in given:
        direct.direct_num_workers = os.cpu_count() or 1
    if "--direct_running_mode" not in given:
        # One worker gains nothing from a separate SDK process, which costs ~2 s to start.
        direct.direct_running_mode = "multi_processing" if direct.direct_num_workers > 1 else "in_memory"
    return options


def _beam_parser():
    """Beam's own parser of pipeline options, with the options of every `PipelineOptions` subclass imported so far
    (runners' included), as `PipelineOptions.get_all_options` builds it."""
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    classes, pending = {}, list(PipelineOptions.__subclasses__())
    while pending:
        options_class = pending.pop()
        if str(options_class) not in classes:
            classes[str(options_class)] = options_class
            pending.extend(options_class.__subclasses__())
    parser = _BeamArgumentParser(allow_abbrev=False)
    for options_class in classes.values():
        options_class._add_argparse_args(parser)
    return parser


def check_beam_arguments(arguments: Sequence[str], ours: Sequence[str] = ()) -> None:
    """Raises UsageError for an argument Beam would drop with only a warning ("Discarding unparseable args"): an
    option no pipeline option class defines (a misspelt flag: `--ouput`, `--no-minhsh`), with the closest known
    option, or a value that follows no option (a second path after a flag that takes one)."""
    parser = _beam_parser()
    _, unknown = parser.parse_known_args(list(arguments))
    known = [*ours, *(option for action in parser._actions for option in action.option_strings)]
    problems, index = [], 0
    while index < len(unknown):
        argument = unknown[index]
        if argument.startswith("-"):
            name = argument.split("=", 1)[0]
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            problems.append(f"unknown option {name}" + (f" (did you mean {close[0]}?)" if close else ""))
            if "=" not in argument and index + 1 < len(unknown) and not unknown[index + 1].startswith("-"):
                index += 1  # its value goes with it
        else:
            problems.append(
                f"argument that follows no option: {argument} (--warcs, --input and --text take several globs, "
                "other flags one value)"
            )
        index += 1
    if problems:
        raise UsageError("; ".join(problems) + " (Beam would drop it with a warning and run without it)")


class UnitProgress:
    """How far a run is, from the work folders: units committed of the total, and the documents they read. An input
    is one unit, except in sources that split their inputs (Wikipedia parts): their units are known once the
    workers have planned every input (`input-*.plan.json`), and until then the total is None."""

    def __init__(self, read: ReadSources):
        readers = read.readers.values()
        self.folders = [local_path(reader.store.work_dir) for reader in readers]
        self.unsplit = sum(len(reader.inputs) for reader in readers if not reader.source.splits_inputs)
        self.planned: dict[str, int | None] = {  # this run's plan files → their units, once written
            local_path(reader.store.plan_path(reader.source.input_path(source_input))): None
            for reader in readers
            if reader.source.splits_inputs
            for source_input in reader.inputs
        }
        self.seen: dict[str, int] = {}  # committed stats file → its documents

    @property
    def total(self) -> int | None:
        if any(units is None for units in self.planned.values()):
            return None
        return self.unsplit + sum(units or 0 for units in self.planned.values())

    def poll(self) -> tuple[int, int]:
        """(units committed, documents read by them)."""
        for folder in self.folders:
            if not os.path.isdir(folder):
                continue
            for name in os.listdir(folder):
                path = os.path.join(folder, name)
                try:
                    if name.endswith(".stats.json") and path not in self.seen:
                        self.seen[path] = sinks.read_json(path)["funnel"].get("records_in", 0)
                    elif path in self.planned and self.planned[path] is None:
                        self.planned[path] = sinks.read_json(path)["units"]
                except (OSError, ValueError, KeyError):  # removed or damaged: the worker makes it again
                    continue
        return len(self.seen), sum(self.seen.values())

    @contextlib.contextmanager
    def show(self, interval: float = 1.0):
        from tqdm import tqdm

        started, stop = time.time(), threading.Event()
        bar = tqdm(total=self.total, unit="unit", desc="curating", dynamic_ncols=True, leave=False)

        def update():
            units, documents = self.poll()
            bar.total = self.total
            bar.n = units
            bar.set_postfix_str(f"{documents:,} documents, {documents / max(time.time() - started, 1e-9):,.0f}/s")

        def loop():
            while not stop.wait(interval):
                update()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            update()
            bar.close()


def local_runner(options):
    """The runner a pipeline with these options runs on: Beam's DirectRunner, told not to try Prism first, when the
    options name the DirectRunner; else None (Beam makes the runner they name). Since Beam 2.6x the DirectRunner
    runs any pipeline Prism supports on Prism, which downloads its binary from GitHub at run time (or, offline,
    fails and falls back after building a job service for nothing); Beam skips Prism for an interactive runner,
    and that is all `is_interactive` changes."""
    from apache_beam.options.pipeline_options import StandardOptions
    from apache_beam.runners.direct.direct_runner import SwitchingDirectRunner

    if options.view_as(StandardOptions).runner not in ("DirectRunner", "direct"):
        return None
    runner = SwitchingDirectRunner()
    runner.is_interactive()
    return runner


@contextlib.contextmanager
def _local_worker_logs(options):
    """While the DirectRunner starts its worker processes, tells them to log their warnings to stderr."""
    from apache_beam.options.pipeline_options import StandardOptions

    if options.view_as(StandardOptions).runner not in ("DirectRunner", "direct"):
        yield
        return
    previous = os.environ.get(logs.LOCAL_WORKERS)
    os.environ[logs.LOCAL_WORKERS] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[logs.LOCAL_WORKERS]
        else:
            os.environ[logs.LOCAL_WORKERS] = previous


def _progress(recipe: Recipe, curate: Curate):
    """The progress display, for a person at a terminal watching a run that writes to local disk."""
    if sys.stderr.isatty() and is_local(recipe.output.dir):
        return UnitProgress(curate.read).show()
    return contextlib.nullcontext()


def _log_largest_groups(result) -> None:
    """What bounds a worker's memory in the dedup stages: the largest bucket and the largest cluster."""
    for name, what in (("bucket_size", "LSH bucket"), ("cluster_size", "near-duplicate cluster")):
        query = result.metrics().query(MetricsFilter().with_namespace("dedup").with_name(name))
        for distribution in query["distributions"]:
            value = distribution.committed or distribution.attempted
            if value is not None and value.count:
                log.info("largest %s: %d documents (%d of them)", what, value.max, value.count)


def run(recipe: Recipe, beam_arguments: Sequence[str] = (), ours: Sequence[str] = ()) -> Funnel:
    """Checks the recipe, lists its inputs, writes `OUTPUT/recipe.toml` and runs it; when MinHash's connected
    components had not converged within the rounds built in (the graph is fixed before it runs), runs again
    with twice the rounds (finished units are committed, so only the cheap stages repeat). Draws the report
    (`OUTPUT/report.html`) last. Returns the run's Funnel, as written to `OUTPUT/stats.json`. `ours`: the options
    of the command that gave `beam_arguments`, suggested when one of them is misspelt."""
    options = beam_options(beam_arguments, ours)
    FileSystems.set_options(options)  # the object stores' options (--s3_endpoint_url, …) for listing the inputs too
    recipe.check()
    rounds = recipe.dedup.components_rounds
    curate = Curate(recipe, rounds)  # lists the inputs: a user's mistake stops the run before anything is written
    save(recipe, sinks.join(recipe.output.dir, RECIPE_FILE))
    while True:
        pipeline = beam.Pipeline(runner=local_runner(options), options=options)
        _ = pipeline | "Curate" >> curate
        with _local_worker_logs(options), _progress(recipe, curate):
            result = pipeline.run()
            result.wait_until_finish()
        query = result.metrics().query(MetricsFilter().with_namespace("dedup").with_name(stages.UNCONVERGED_COUNTER))
        unconverged = sum((counter.committed or counter.attempted or 0) for counter in query["counters"])
        if not unconverged:
            _log_largest_groups(result)
            break
        log.warning(
            "connected components had not converged after %d rounds (%d nodes); running again with %d",
            rounds,
            unconverged,
            rounds * 2,
        )
        rounds *= 2
        curate = Curate(recipe, rounds)
    report.write(recipe.output.dir)
    return Funnel.from_json(sinks.read_json(sinks.join(recipe.output.dir, "stats.json")))

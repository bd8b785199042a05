"""`python -m train.ablate`: which data makes the better model, from curation recipes to bits per byte.

    each recipe ─► curate (python -m pipeline run; a finished run of the same recipe file is reused)
      all shards ─► one tokenizer for every recipe (or --tokenizer)
    each recipe ─► bins ─► the same proxy model (--config), the same tokens, each seed ─► bits per byte on every
                                                          --eval set, accuracy on every --task (train.eval)

FineWeb, DCLM and DataDecide compare data recipes this way: small proxy models trained on each variant for the
same compute, measured on the same held-out text. Each step is the command a user would type, run as a child
process with its output in `DIR/logs/` (as `train.demo` runs them); the evaluation is `train.eval`'s own, so every
figure in `DIR/results.json` is what `python -m train.eval` prints for the same checkpoint. `DIR/report.html`
overlays the validation curves and sets each recipe's spread over seeds beside the differences between recipes;
for each figure, the order agreement says how often two seeds rank the recipes the same way (a difference that
the seeds do not agree on is noise).
"""

from __future__ import annotations

import argparse
import hashlib
import html
import itertools
import json
import math
import os
import shutil
import statistics
import sys
import time

from pipeline.common import pages, tasks as task_formats
from pipeline.common.settings import UsageError, parse_overrides, report as report_error
from tokenizer import corpus
from train import config as config_module, eval as evaluation, tasks as task_scoring
from train.demo import StepFailed, Steps, training_progress
from train.metrics import METRICS_FILE, read_records
from train.trainer import resolve_device

PROGRAM = "python -m train.ablate"
RESULTS_FILE = "results.json"
REPORT_FILE = "report.html"
FIGURES_DIR = "report"
RESULTS_VERSION = 2  # 2: benchmark tasks, the order agreement
# A run's settings that the ablation chooses: where it goes, its data and tokenizer, its length and curve.
SET_BY_THE_ABLATION = ("run.dir", "data.sources", "data.tokenizer", "training.steps", "logging.eval_interval")
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "ablate.toml")

EXAMPLE = """examples:
  # the web filters off and on, over the same crawl: 1M tokens a run, 3 seeds, bits per byte on two held-out sets
  # and accuracy on two benchmark tasks (their first 500 items)
  python -m train.ablate --recipe recipes/no-filters.toml --recipe recipes/web-filters.toml \\
      --eval wiki='heldout/wiki/*.parquet' --eval web='heldout/web/*.jsonl' \\
      --task piqa=piqa:evals/piqa/valid.jsonl --task arc_easy=arc:evals/arc/ARC-Easy-Dev.jsonl --task-limit 500 \\
      --config configs/ablate.toml --tokens 1000000 --seeds 3 --output ablations/filters
  # a GPU-sized proxy: any training setting as --section.field VALUE (see docs/ablations.md)
  python -m train.ablate --recipe a.toml --recipe b.toml --eval wiki='heldout/*.parquet' --tokens 3000000000 \\
      --model.dim 768 --model.n_layers 12 --model.n_heads 12 --model.n_kv_heads 12 --training.device cuda \\
      --output ablations/150m
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--recipe",
        action="append",
        required=True,
        metavar="TOML",
        help="a curation recipe (python -m pipeline run); repeat for each variant, named by its file name",
    )
    parser.add_argument(
        "--eval",
        action="append",
        default=[],
        metavar="NAME=GLOB",
        help="an evaluation set for bits per byte (any corpus train.eval reads); repeatable",
    )
    task_formats.add_task_argument(parser, help="a benchmark task scored as train.eval --task scores it; repeatable")
    parser.add_argument("--task-limit", type=int, default=0, help="the first N items of each --task (default: all)")
    parser.add_argument("--output", required=True, metavar="DIR", help="where everything goes")
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        metavar="TOML",
        help="the proxy model and its training (default: %(default)s)",
    )
    parser.add_argument("--tokens", type=int, required=True, help="training tokens a run (rounded up to whole steps)")
    parser.add_argument("--seeds", type=int, default=1, help="runs a recipe, with training.seed + 0, 1, … (default: 1)")
    parser.add_argument(
        "--tokenizer", metavar="TOKDIR", help="use this tokenizer instead of training one on all shards"
    )
    parser.add_argument("--vocab-size", type=int, default=4096, help="of the trained tokenizer (default: %(default)s)")
    parser.add_argument(
        "--val-fraction", type=float, default=0.05, help="of each recipe's documents, for its validation curve"
    )
    parser.add_argument("--curve-points", type=int, default=10, help="validation passes a run (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=0, help="curation workers (default: one per core)")
    return parser


def recipe_names(paths: list[str]) -> dict[str, str]:
    """name → recipe file, the name being the file's stem; UsageError for a missing file or a name used twice."""
    names: dict[str, str] = {}
    for path in paths:
        if not os.path.isfile(path):
            raise UsageError(f"--recipe: {path} does not exist")
        name = os.path.splitext(os.path.basename(path))[0]
        if name in names:
            raise UsageError(f"--recipe: {names[name]} and {path} have the same name {name!r}; rename one")
        names[name] = path
    return names


def eval_sets(values: list[str]) -> dict[str, list[str]]:
    """NAME=GLOB values → name → the files (UsageError for a malformed value or a glob that matches nothing)."""
    sets: dict[str, list[str]] = {}
    for value in values:
        name, _, pattern = value.partition("=")
        if not name or not pattern:
            raise UsageError(f"--eval: expected NAME=GLOB, got {value!r}")
        try:
            sets[name] = sorted({*sets.get(name, []), *corpus.expand([pattern])})
        except (FileNotFoundError, OSError) as exc:
            raise UsageError(f"--eval {name}: {exc}")
    return sets


def file_sha1(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha1(handle.read()).hexdigest()


def curated_before(out: str, marker: str, digest: str) -> bool:
    """Whether `out` holds a finished run (its stats.json) of the recipe whose file has the SHA-1 `digest`."""
    if not (os.path.exists(marker) and os.path.exists(os.path.join(out, "stats.json"))):
        return False
    with open(marker, encoding="utf-8") as handle:
        return json.load(handle).get("recipe_sha1") == digest


def spread(values: list[float]) -> dict:
    """Mean, sample standard deviation (None for one value), min and max of the seeds' figures."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "min": min(values),
        "max": max(values),
        "values": values,
    }


class Ablation:
    def __init__(self, args: argparse.Namespace, override_arguments: list[str]):
        """`override_arguments`: the training settings given as `--section.field VALUE`, passed on as given."""
        self.args = args
        self.output = os.path.abspath(args.output)
        self.recipes = recipe_names(args.recipe)
        self.evals = eval_sets(args.eval)
        if not args.eval and not args.task:
            raise UsageError("at least one --eval NAME=GLOB or --task NAME=FORMAT:PATH is needed")
        self.tasks = args.task
        try:
            for spec in self.tasks:  # read now: a malformed file stops the ablation before any work
                task_formats.read_task(spec)
        except task_formats.TaskError as exc:
            raise UsageError(f"--task: {exc}")
        if len({spec.name for spec in self.tasks}) != len(self.tasks):
            raise UsageError("--task: every task needs its own name")
        if args.task_limit < 0:
            raise UsageError(f"--task-limit: a count of items, 0 for all: {args.task_limit}")
        self.override_arguments = override_arguments
        self.overrides = parse_overrides(override_arguments, "--model.dim 256")
        if args.tokens < 1 or args.seeds < 1 or args.curve_points < 1:
            raise UsageError("--tokens, --seeds and --curve-points must be at least 1")
        if not 0 < args.val_fraction < 1:
            raise UsageError(f"--val-fraction: a fraction above 0 and below 1: {args.val_fraction}")
        if args.tokenizer and not os.path.isdir(args.tokenizer):
            raise UsageError(f"--tokenizer: {args.tokenizer} is not a directory")
        fixed = [key for key, _ in self.overrides if key in SET_BY_THE_ABLATION]
        if fixed:
            raise UsageError(f"--{fixed[0]}: set by the ablation for each run ({', '.join(SET_BY_THE_ABLATION)})")
        # the settings' mistakes before any work, with what the ablation gives each run
        placeholders = [("data.sources", [{"path": "bins"}]), ("data.tokenizer", "tokenizer"), ("training.steps", 1)]
        self.config = config_module.load(args.config, [*self.overrides, *placeholders])
        self.config.check()
        self.steps_per_run = math.ceil(args.tokens / self.config.training.batch_tokens)
        stages = 2 * len(self.recipes) + len(self.recipes) * args.seeds + (0 if args.tokenizer else 1)
        self.steps = Steps(self.output, stages)

    def folder(self, *parts: str) -> str:
        return os.path.join(self.output, *parts)

    def curate(self, name: str, recipe: str) -> str:
        """The recipe's output folder, curated unless a finished run of the same recipe file is there."""
        out = self.folder("curated", name)
        marker = self.folder("curated", f"{name}.done.json")
        digest = file_sha1(recipe)
        if curated_before(out, marker, digest):
            self.steps.skip(f"curate-{name}", "reused: the same recipe file curated before")
            return out
        arguments = ["pipeline", "run", "--recipe", os.path.abspath(recipe), "--output", out]
        if self.args.workers:
            arguments.append(f"--direct_num_workers={self.args.workers}")
        self.steps.run(f"curate-{name}", *arguments)
        with open(marker, "w", encoding="utf-8") as handle:
            json.dump({"recipe": os.path.abspath(recipe), "recipe_sha1": digest}, handle)
        return out

    def tokenizer(self, curated: dict[str, str]) -> str:
        if self.args.tokenizer:
            return os.path.abspath(self.args.tokenizer)
        out = self.folder("tokenizer")
        shards = [os.path.join(folder, "part-*") for folder in curated.values()]
        self.steps.run(
            "tokenizer", "tokenizer", "train", "--input", *shards, "--vocab-size", str(self.args.vocab_size),
            "--output", out,
        )  # fmt: skip
        return out

    def encode(self, name: str, curated: str, tokenizer: str) -> str:
        out = self.folder("bins", name)
        shutil.rmtree(out, ignore_errors=True)
        self.steps.run(
            f"bins-{name}", "tokenizer", "encode", "--tokenizer", tokenizer, "--input", os.path.join(curated, "part-*"),
            "--val-fraction", str(self.args.val_fraction), "--output", out,
        )  # fmt: skip
        return out

    def train(self, name: str, bins: str, tokenizer: str, seed: int) -> str:
        run = self.folder("runs", name, f"seed-{self.config.training.seed + seed}")
        shutil.rmtree(run, ignore_errors=True)  # the same tokens from scratch, also when run again
        steps = self.steps_per_run
        interval = max(1, steps // self.args.curve_points)
        arguments = [
            "train", "--config", os.path.abspath(self.args.config),
            *self.override_arguments,
            "--run.dir", run, "--data.sources", f"[{{path={json.dumps(bins)}}}]",
            "--data.tokenizer", tokenizer, "--training.steps", str(steps),
            "--training.seed", str(self.config.training.seed + seed), "--logging.eval_interval", str(interval),
        ]  # fmt: skip
        self.steps.run(f"train-{name}-seed-{self.config.training.seed + seed}", *arguments, progress=training_progress)
        return run

    def evaluate(self, run: str) -> tuple[dict, dict]:
        """Bits per byte on each --eval set, and each --task's summary (as train.eval prints them)."""
        model, encoder = evaluation.load(run, str(resolve_device(self.config.training.device)))
        figures = {}
        for name, paths in self.evals.items():
            _, figures[name] = evaluation.evaluate_files(model, encoder, paths)
        scored = task_scoring.evaluate_tasks(model, encoder, self.tasks, self.args.task_limit) if self.tasks else []
        return figures, {result.name: result.summary() for result in scored}

    def run(self) -> dict:
        started = time.time()
        curated = {name: self.curate(name, recipe) for name, recipe in self.recipes.items()}
        tokenizer = self.tokenizer(curated)
        results: dict = {
            "version": RESULTS_VERSION,
            "tokens": self.args.tokens,
            "steps": self.steps_per_run,
            "tokens_per_run": self.steps_per_run * self.config.training.batch_tokens,
            "seeds": self.args.seeds,
            "config": os.path.abspath(self.args.config),
            "overrides": {key: value for key, value in self.overrides},
            "tokenizer": tokenizer,
            "evals": self.evals,
            "tasks": {spec.name: str(spec) for spec in self.tasks},
            "task_limit": self.args.task_limit,
            "recipes": {},
        }
        for name, folder in curated.items():
            bins = self.encode(name, folder, tokenizer)
            runs = []
            for seed in range(self.args.seeds):
                run = self.train(name, bins, tokenizer, seed)
                records = read_records(os.path.join(run, METRICS_FILE))
                figures, task_results = self.evaluate(run)
                runs.append(
                    {
                        "seed": self.config.training.seed + seed,
                        "run": run,
                        "final_loss": next((r["loss"] for r in reversed(records) if "loss" in r), None),
                        "final_val_loss": next((r["val.loss"] for r in reversed(records) if "val.loss" in r), None),
                        "eval": figures,
                        "tasks": task_results,
                    }
                )
            results["recipes"][name] = recipe_result(self.recipes[name], folder, bins, runs, self.evals)
        results["agreement"] = agreement(results)
        results["seconds"] = round(time.time() - started, 1)
        with open(self.folder(RESULTS_FILE), "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
            handle.write("\n")
        write_report(self.output, results)
        return results


def recipe_result(recipe: str, curated: str, bins: str, runs: list[dict], evals: dict) -> dict:
    with open(os.path.join(curated, "stats.json"), encoding="utf-8") as handle:
        stats = json.load(handle)
    with open(os.path.join(bins, "meta.json"), encoding="utf-8") as handle:
        splits = json.load(handle)["splits"]
    return {
        "recipe": os.path.abspath(recipe),
        "curated": curated,
        "bins": bins,
        "documents": stats["kept"],
        "funnel": {key: stats[key] for key in ("records_read", "records_in", "kept", "dropped")},
        "tokens": {split: splits[split]["tokens"] for split in splits},
        "runs": runs,
        "bits_per_byte": {name: spread([run["eval"][name]["bits_per_byte"] for run in runs]) for name in evals},
        "tasks": {name: spread([run["tasks"][name]["acc"] for run in runs]) for name in runs[0]["tasks"]},
        # the mean over tasks, as train.tasks.aggregate takes it
        "centred_acc": spread([statistics.fmean(t["centred_acc"] for t in run["tasks"].values()) for run in runs])
        if runs[0]["tasks"]
        else None,
    }


def order_agreement(values: dict[str, list[float]], lower_is_better: bool) -> float | None:
    """The share of seed pairs that rank the recipes in the same order: `values` is each recipe's figure per seed
    (seed i of every recipe had the same initial weights and data order). 1: every seed tells the same story;
    None with one seed or one recipe."""
    seeds = min(map(len, values.values()), default=0)
    if seeds < 2 or len(values) < 2:
        return None
    orders = [
        tuple(sorted(values, key=lambda name: values[name][seed] if lower_is_better else -values[name][seed]))
        for seed in range(seeds)
    ]
    pairs = list(itertools.combinations(orders, 2))
    return sum(first == second for first, second in pairs) / len(pairs)


def metrics_of(results: dict) -> list[tuple[str, str, bool]]:
    """(metric, label, lower is better) of every figure the ablation compares recipes by."""
    found = [(f"bits_per_byte.{name}", f"{name} bpb", True) for name in results["evals"]]
    found += [(f"tasks.{name}", f"{name} acc", False) for name in results["tasks"]]
    if results["tasks"]:
        found.append(("centred_acc", "centred acc", False))
    return found


def figures_of(recipe: dict, metric: str) -> dict:
    """A recipe's spread for `metric` ("bits_per_byte.wiki", "tasks.piqa", "centred_acc")."""
    group, _, name = metric.partition(".")
    return recipe[group][name] if name else recipe[group]


def agreement(results: dict) -> dict:
    """Per metric, the order agreement of the recipes over seed pairs (`order_agreement`)."""
    return {
        metric: order_agreement(
            {name: figures_of(recipe, metric)["values"] for name, recipe in results["recipes"].items()}, lower
        )
        for metric, _, lower in metrics_of(results)
    }


# The report


def _plus_minus(figures: dict) -> str:
    std = figures["std"]
    return f"{figures['mean']:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def _agreement_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def table_lines(results: dict) -> list[str]:
    """The plain-text table printed at the end: per recipe, documents, training tokens, bits per byte per eval set
    and accuracy per task (mean ± standard deviation over seeds); then the order agreement of each figure."""
    metrics = metrics_of(results)
    header = f"{'recipe':<20} {'documents':>10} {'tokens':>12}" + "".join(f" {label:>20}" for _, label, _ in metrics)
    lines = [header, "-" * len(header)]
    for name, recipe in results["recipes"].items():
        row = f"{name:<20} {recipe['documents']:>10,} {recipe['tokens'].get('train', 0):>12,}"
        row += "".join(f" {_plus_minus(figures_of(recipe, metric)):>20}" for metric, _, _ in metrics)
        lines.append(row)
    row = f"{'seeds agree on order':<44}" + "".join(
        f" {_agreement_text(results['agreement'][metric]):>20}" for metric, _, _ in metrics
    )
    lines.append(row)
    return lines


def draw_curves(results: dict):
    drawn = pages.figure(height=3.4)
    axes = drawn.add_subplot()
    for index, (name, recipe) in enumerate(results["recipes"].items()):
        colour = f"C{index % 10}"  # one colour a recipe, a line a seed
        for number, run in enumerate(recipe["runs"]):
            records = read_records(os.path.join(run["run"], METRICS_FILE))
            points = [(r["step"], r["val.loss"]) for r in records if isinstance(r.get("val.loss"), (int, float))]
            if points:
                axes.plot(*zip(*points), "o-", color=colour, linewidth=1, markersize=2,
                          label=name if number == 0 else None)  # fmt: skip
    axes.set_xlabel("step", fontsize=8)
    axes.set_ylabel("validation loss (nats per token)", fontsize=8)
    axes.set_title("Validation loss, every seed (each recipe on its own held-out documents)", fontsize=10)
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)
    drawn.tight_layout()
    return drawn


def render(results: dict) -> str:
    evals, metrics = list(results["evals"]), metrics_of(results)
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in metrics)
    rows = []
    for name, recipe in results["recipes"].items():
        cells = "".join(
            f'<td class="n" data-metric="{html.escape(metric)}" data-mean="{figures_of(recipe, metric)["mean"]!r}">'
            f"{html.escape(_plus_minus(figures_of(recipe, metric)))}</td>"
            for metric, _, _ in metrics
        )
        rows.append(
            f'<tr data-recipe="{html.escape(name)}"><td>{html.escape(name)}</td>'
            f'<td class="n">{recipe["documents"]:,}</td><td class="n">{recipe["tokens"].get("train", 0):,}</td>'
            f"{cells}</tr>"
        )
    agreement_cells = "".join(
        f'<td class="n" data-agreement="{html.escape(metric)}">{_agreement_text(results["agreement"][metric])}</td>'
        for metric, _, _ in metrics
    )
    rows.append(f'<tr class="agreement"><td colspan="3">seeds agree on the order</td>{agreement_cells}</tr>')
    reasons = sorted({reason for recipe in results["recipes"].values() for reason in recipe["funnel"]["dropped"]})
    funnel_head = "".join(f"<th>{html.escape(name)}</th>" for name in results["recipes"])
    funnel_rows = []
    for label, pick in (
        ("records read", lambda f: f["records_read"]),
        ("documents", lambda f: f["records_in"]),
        ("kept", lambda f: f["kept"]),
        *((f"dropped: {reason}", lambda f, r=reason: f["dropped"].get(r, 0)) for reason in reasons),
    ):
        cells = "".join(f'<td class="n">{pick(r["funnel"]):,}</td>' for r in results["recipes"].values())
        funnel_rows.append(f"<tr><td>{html.escape(label)}</td>{cells}</tr>")
    per_seed = []
    for name, recipe in results["recipes"].items():
        for run in recipe["runs"]:
            cells = "".join(f'<td class="n">{run["eval"][e]["bits_per_byte"]:.4f}</td>' for e in evals)
            cells += "".join(f'<td class="n">{run["tasks"][t]["acc"]:.4f}</td>' for t in results["tasks"])
            val = run["final_val_loss"]
            per_seed.append(
                f"<tr><td>{html.escape(name)}</td><td class='n'>{run['seed']}</td>"
                f"<td class='n'>{'' if val is None else f'{val:.4f}'}</td>{cells}</tr>"
            )
    seed_head = "".join(f"<th>{html.escape(e)} bpb</th>" for e in evals)
    limit_note = f", the first {results['task_limit']:,} items" if results["task_limit"] else ""
    seed_head += "".join(f"<th>{html.escape(t)} acc</th>" for t in results["tasks"])
    body = [
        "<h1>Data ablation</h1>",
        f"<p>{len(results['recipes'])} recipes, the same proxy model (<code>{html.escape(results['config'])}</code>) "
        f"trained for {results['tokens_per_run']:,} tokens ({results['steps']:,} steps) with "
        f"{results['seeds']} seed(s) each, one tokenizer. Bits per byte (lower is better) and task accuracy (higher "
        "is better): mean ± standard deviation over seeds; a difference between recipes smaller than their spread "
        "is noise. The last row is the share of seed pairs that rank the recipes in the same order: below 100% "
        "the seeds disagree about which recipe is better.</p>",
        f'<table id="results"><tr><th>recipe</th><th>documents</th><th>training tokens</th>{head}</tr>'
        f"{''.join(rows)}</table>",
        "<h2>Validation curves</h2>",
        pages.image("curves", f"{FIGURES_DIR}/curves.png"),
        "<h2>Every run</h2>",
        f'<table id="runs"><tr><th>recipe</th><th>seed</th><th>final validation loss</th>{seed_head}</tr>'
        f"{''.join(per_seed)}</table>",
        "<h2>Curation funnels</h2>",
        f'<table id="funnels"><tr><th></th>{funnel_head}</tr>{"".join(funnel_rows)}</table>',
        "<h2>Evaluation sets and tasks</h2><ul>"
        + "".join(f"<li>{html.escape(name)}: {len(paths)} file(s)</li>" for name, paths in results["evals"].items())
        + "".join(
            f"<li>{html.escape(name)}: <code>{html.escape(spec)}</code>{limit_note}</li>"
            for name, spec in results["tasks"].items()
        )
        + "</ul>",
    ]
    return pages.page("Data ablation", body)


def write_report(output: str, results: dict) -> str:
    os.makedirs(os.path.join(output, FIGURES_DIR), exist_ok=True)
    with open(os.path.join(output, FIGURES_DIR, "curves.png"), "wb") as handle:
        handle.write(pages.png(draw_curves(results)))
    path = os.path.join(output, REPORT_FILE)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(render(results))
    return path


def main(argv: list[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    try:
        ablation = Ablation(args, rest)
        results = ablation.run()
    except (UsageError, config_module.ConfigError) as exc:
        report_error(PROGRAM, exc)
        return 2
    except StepFailed as exc:
        report_error(PROGRAM, exc)
        return 1
    print()
    print("\n".join(table_lines(results)))
    print(
        f"\nresults: {os.path.join(ablation.output, RESULTS_FILE)}; report: {os.path.join(ablation.output, REPORT_FILE)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

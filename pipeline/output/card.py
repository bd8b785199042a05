"""The dataset card, `OUTPUT/README.md`, written at the end of every curation run. Its YAML `configs` are what
`datasets.load_dataset(OUTPUT)` reads (and what the Hugging Face Hub shows once the folder is pushed): the kept
documents are the default config, the duplicates report a second one; the body says what the run read, kept
and dropped (the numbers of `stats.json`), and how to load and reproduce it."""

from __future__ import annotations

import json

from pipeline.output import sinks
from pipeline.output.stats import Funnel
from pipeline.recipe import RECIPE_FILE, Recipe

CARD_FILE = "README.md"
REPORT_DIR = "duplicates"
SHARDS = "part-*.{fmt}"
REPORT_SHARDS = REPORT_DIR + "/part-*.{fmt}.report"  # see pipeline.beam.write.REPORT


def _configs(recipe: Recipe) -> list[str]:
    configs = [("default", SHARDS.format(fmt=recipe.output.format))]
    if recipe.dedup.enabled:
        configs.append((REPORT_DIR, REPORT_SHARDS.format(fmt=recipe.output.format)))
    lines = ["configs:"]
    for name, pattern in configs:
        lines += [
            f"- config_name: {name}",
            "  data_files:",
            "  - split: train",
            f"    path: {json.dumps(pattern)}",  # a JSON string is a YAML string
        ]
    return lines


def dataset_card(funnel: Funnel, recipe: Recipe) -> str:
    shards = SHARDS.format(fmt=recipe.output.format)
    report = REPORT_SHARDS.format(fmt=recipe.output.format)
    sources = ", ".join(f"`{name}` ({recipe.kinds[name]})" for name in recipe.sources)
    lines = ["---", *_configs(recipe), "tags:", "- lmforge", "---", ""]
    lines += [
        "# Curated text",
        "",
        f"Written by lmforge's curation pipeline from the sources {sources}. `{RECIPE_FILE}` is the resolved recipe;",
        "`stats.json` has every count below and the inputs that could not be read.",
        "",
        "| | documents |",
        "|---|---:|",
        f"| records read | {funnel.records_read:,} |",
        f"| set aside before they were documents | {sum(funnel.records_skipped.values()):,} |",
        f"| documents in | {funnel.records_in:,} |",
        f"| **kept** | **{funnel.kept:,}** |",
    ]
    lines += [f"| dropped: `{reason}` | {count:,} |" for reason, count in sorted(funnel.dropped.items())]
    lines += ["", "## Files", "", f"- `{shards}`: the kept documents (schema: lmforge's docs/formats.md)."]
    if recipe.dedup.enabled:
        lines.append(
            f"- `{report}`: every group of copies, with the id kept and the ids removed (the shards' format; "
            "the name keeps it out of a glob of the shards)."
        )
    lines += [
        "- `_work/`: the committed work of each source before deduplication, reused when the recipe is run again.",
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        'docs = load_dataset("PATH/TO/THIS/FOLDER", split="train")',
    ]
    if recipe.dedup.enabled:
        lines.append(f'report = load_dataset("PATH/TO/THIS/FOLDER", "{REPORT_DIR}", split="train")')
    lines += ["```", ""]
    if recipe.output.format == "parquet":
        lines += [
            "DuckDB: `SELECT * FROM read_parquet('PATH/TO/THIS/FOLDER/**/*.parquet')` reads the kept documents.",
            "",
        ]
    lines += [
        "## Reproducing",
        "",
        "```",
        f"python -m pipeline run --recipe {RECIPE_FILE} --output ANOTHER/FOLDER",
        "```",
        "",
    ]
    return "\n".join(lines)


def write_card(funnel: Funnel, recipe: Recipe) -> Funnel:
    sinks.write_bytes(sinks.join(recipe.output.dir, CARD_FILE), dataset_card(funnel, recipe).encode("utf-8"))
    return funnel

"""One data ablation on `make demo`'s sample, timed: the demo's recipe (the web filters on the crawl) against the same
recipe with the crawl's filters off, the CPU proxy of configs/ablate.toml, bits per byte on the sample's held-out
articles.

    .venv/bin/python bench/bench_ablate.py [--tokens 400000] [--seeds 2] [--output DIR]

Prints the ablation's table, its wall time (the whole command: curation, tokenizer, bins, training, evaluation)
and where results.json and report.html are.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.common import synthetic  # noqa: E402
from train import ablate  # noqa: E402


def write_recipes(sample: synthetic.Sample, folder: pathlib.Path) -> list[str]:
    inputs = (
        f'[sources.commoncrawl]\nwarcs = ["{sample.warc}"]\n{{filters}}'
        f'[sources.wikipedia]\ndumps = ["{sample.dump}"]\nindexes = ["{sample.index}"]\n'
        '[dedup]\nprefer = ["wikipedia"]\n'
    )
    recipes = []
    for name, filters in (("web-filters", ""), ("no-crawl-filters", "filters = []\n")):
        path = folder / f"{name}.toml"
        path.write_text(inputs.replace("{filters}", filters))
        recipes.append(str(path))
    return recipes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=400_000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--output", type=pathlib.Path, help="keep the ablation here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.output or pathlib.Path(tmp)
        sample = synthetic.write_sample(str(folder / "sample"), seed=1)  # make demo's sample
        recipes = write_recipes(sample, folder)
        started = time.perf_counter()
        code = ablate.main(
            [
                *(argument for recipe in recipes for argument in ("--recipe", recipe)),
                "--eval",
                f"heldout={sample.heldout}",
                "--tokens",
                str(args.tokens),
                "--seeds",
                str(args.seeds),
                "--vocab-size",
                "2048",
                "--output",
                str(folder / "ablation"),
            ]  # fmt: skip
        )
        print(f"\nwall time: {time.perf_counter() - started:.0f} s (exit {code})")


if __name__ == "__main__":
    main()

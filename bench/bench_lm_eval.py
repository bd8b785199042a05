"""lmforge's task scores against lm-evaluation-harness's, item by item, on the benchmark files of
../shared/fixtures/evals as they are published.

    .venv/bin/python bench/bench_lm_eval.py [--model HF_DIR] [--limit 200]

The model: --model (a folder written by `python -m train.export`), else one trained on the demo's data with the demo's
settings but 2,048 positions (made once under bench/results/lm-eval/). lm-evaluation-harness (`lm-eval[hf]` from PyPI, with this project's torch)
lives in a venv of its own, bench/results/peer-lm-eval, made on first use; it runs its `hf` model on the export with
local task definitions (`bench/lm_eval_tasks.py`: the harness's own prompts for each task, the fixture files as
data). lmforge runs `python -m train.eval --task … --per-item` on the same export. Reports, per task: the items, the
largest difference of a log-likelihood (absolute, and relative to it: a continuation's log-likelihood is a sum over
its tokens), whether every greedy flag agrees, and both tools' accuracies. Goal: every log-likelihood within 1e-4,
the same accuracies.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
EVALS = REPO.parent / "shared" / "fixtures" / "evals"
sys.path.insert(0, str(REPO))

from tests.conftest import FIXTURE_EVALS, fixture_eval_specs  # noqa: E402


def peer_venv(work: pathlib.Path) -> pathlib.Path:
    """lm-evaluation-harness's own venv (made once; torch pinned first, as `make install` does): its python."""
    python = work / "venv" / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "torch==2.13.0"], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "lm-eval[hf]", "torch==2.13.0"], check=True)
    return python


def demo_export(work: pathlib.Path) -> pathlib.Path:
    """The demo's data (`python -m train.demo`, once), trained on with the demo's settings but 2,048 positions (the
    harness refuses a continuation longer than the model's context, and some fixture items are longer than the demo
    model's 256 tokens), 40 steps, exported."""
    folder = work / "demo"
    if not (folder / "hf" / "config.json").exists():
        subprocess.run([sys.executable, "-m", "train.demo", "--output", str(folder)], check=True, cwd=REPO)
    export = work / "hf-2048"
    if not (export / "config.json").exists():
        run = work / "run-2048"
        subprocess.run(
            [sys.executable, "-m", "train", "--config", "configs/demo.toml", "--run.dir", str(run),
             "--data.sources", f'[{{path="{folder / "bins"}"}}]', "--data.tokenizer", str(folder / "tokenizer"),
             "--model.max_seq_len", "2048", "--training.steps", "40", "--checkpoint.interval", "40"],
            check=True, cwd=REPO, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        subprocess.run([sys.executable, "-m", "train.export", "--checkpoint", str(run), "--output", str(export)],
                       check=True, cwd=REPO, stdout=subprocess.DEVNULL)  # fmt: skip
    return export


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=pathlib.Path, help="a train.export folder (default: the demo's)")
    parser.add_argument("--limit", type=int, default=200, help="items per task (the fixtures hold 200)")
    args = parser.parse_args()
    results = REPO / "bench" / "results"
    python = peer_venv(results / "peer-lm-eval")
    model = args.model or demo_export(results / "lm-eval")
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        command = [sys.executable, "-m", "train.eval", "--checkpoint", str(model), "--limit", str(args.limit),
                   "--per-item", str(folder / "ours.jsonl"), "--output", str(folder / "ours.json")]  # fmt: skip
        for spec in fixture_eval_specs():
            command += ["--task", spec]
        started = time.perf_counter()
        subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        ours_seconds = time.perf_counter() - started
        started = time.perf_counter()
        subprocess.run(
            [str(python), str(REPO / "bench" / "lm_eval_tasks.py"), "--model", str(model), "--evals", str(EVALS),
             "--work", str(folder), "--limit", str(args.limit), "--output", str(folder / "theirs.json")],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        theirs_seconds = time.perf_counter() - started
        ours = [json.loads(line) for line in (folder / "ours.jsonl").read_text().splitlines()]
        summaries = json.loads((folder / "ours.json").read_text())["tasks"]["tasks"]
        theirs = json.loads((folder / "theirs.json").read_text())
    report: dict = {"model": str(model), "limit": args.limit, "lm_eval": theirs["version"], "tasks": {}}
    for name in FIXTURE_EVALS:
        mine = [row for row in ours if row["task"] == name]
        peer = theirs["tasks"][name]
        differences, greedy_agree, compared = [], True, 0
        for row in mine:
            other = peer["items"].get(str(row["item"])) or peer["items"].get(row["item"])
            if other is None:
                continue
            compared += 1
            differences += [
                (abs(a - b[0]), abs(a - b[0]) / max(abs(b[0]), 1e-9)) for a, b in zip(row["loglikelihoods"], other)
            ]
            greedy_agree &= row["greedy"] == [b[1] for b in other]
        metrics = {key.split(",")[0]: value for key, value in peer["metrics"].items() if key.endswith(",none")}
        summary = summaries[name]
        report["tasks"][name] = {
            "items": compared,
            "max_loglikelihood_difference": max(d for d, _ in differences) if differences else None,
            "max_relative_difference": max(r for _, r in differences) if differences else None,
            "greedy_flags_agree": greedy_agree,
            "lmforge": {key: summary[key] for key in ("acc", "acc_norm", "perplexity") if key in summary},
            "lm_eval": {key: metrics[key] for key in ("acc", "acc_norm", "perplexity") if key in metrics},
        }
    report["seconds"] = {"lmforge": round(ours_seconds, 1), "lm_eval": round(theirs_seconds, 1)}
    worst = [task["max_loglikelihood_difference"] or 0 for task in report["tasks"].values()]
    report["within_1e-4"] = max(worst) <= 1e-4
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

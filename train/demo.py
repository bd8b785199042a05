"""`python -m train.demo --output DIR`: the whole path on the project's own generated sample, offline, in one
reproducible run (`make demo`).

    sample (a crawl and a Wikipedia dump that overlap, generated from --seed)
      → curate both (configs/curate-sample.toml) → train the tokenizer → write bins
      → train the model (configs/demo.toml) → generate a sample → export to Hugging Face → evaluate the export

Each step is the command a user would type, run as a child process; its output goes to `DIR/logs/`, and a line
per step to the console. It ends with one summary (also `DIR/summary.json`): what curation read, kept and dropped,
the tokens written, the final validation loss, bits per byte on held-out articles, the sample, and where
everything is. The same seed gives the same sample files, shards, bins and losses.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from pipeline.common.settings import report
from pipeline.common.synthetic import SAMPLE_FILE
from train.metrics import METRICS_FILE, read_records

PROGRAM = "python -m train.demo"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CURATE_RECIPE = os.path.join(REPO, "configs", "curate-sample.toml")
TRAIN_CONFIG = os.path.join(REPO, "configs", "demo.toml")
PROMPT = "The harbour town"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python -m train.demo --output demo-output\n"
        "  python -m train.demo --output /tmp/small --pages 60 --articles 12 --steps 4   # a quick look",
    )
    parser.add_argument("--output", default="demo-output", metavar="DIR", help="where everything goes")
    parser.add_argument("--seed", type=int, default=1, help="the sample's seed (default: %(default)s)")
    parser.add_argument("--pages", type=int, default=300, help="crawl records (default: %(default)s)")
    parser.add_argument("--articles", type=int, default=40, help="Wikipedia articles (default: %(default)s)")
    parser.add_argument("--vocab-size", type=int, default=2048, help="tokenizer vocabulary (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=0, help="training steps (default: configs/demo.toml's)")
    parser.add_argument("--workers", type=int, default=0, help="curation workers (default: one per core)")
    return parser


class StepFailed(Exception):
    pass


class Steps:
    """Runs the steps one after another, each a child process with its output in DIR/logs/."""

    def __init__(self, output: str, total: int):
        self.logs = os.path.join(output, "logs")
        self.total = total
        self.done = 0
        os.makedirs(self.logs, exist_ok=True)

    def skip(self, name: str, why: str) -> None:
        self.done += 1
        print(f"[{self.done}/{self.total}] {name} … {why}", flush=True)

    def run(self, name: str, *arguments: str, progress: Callable[[str], str | None] | None = None) -> str:
        """The step's stdout. `progress` picks, from the step's log lines as they come, those to show on the
        console while it runs (a long step is not silent): it returns the text to show, or None."""
        self.done += 1
        log_path = os.path.join(self.logs, f"{self.done:02d}-{name}.log")
        started = time.time()
        print(f"[{self.done}/{self.total}] {name} …", end="", flush=True)
        command = [sys.executable, "-m", *arguments]
        process = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
        )
        stdout: list[str] = []
        reader = threading.Thread(target=lambda: stdout.extend(process.stdout or ()), daemon=True)
        reader.start()
        stderr, shown = [], False
        for line in process.stderr or ():
            stderr.append(line)
            text = progress(line) if progress else None
            if text is not None:
                print(("\n" if not shown else "") + f"    {text}", flush=True)
                shown = True
        returncode = process.wait()
        reader.join()
        out, err = "".join(stdout), "".join(stderr)
        with open(log_path, "w", encoding="utf-8") as log:
            log.write(f"$ {' '.join(command)}\n{out}{err}")
        print(f"    done in {time.time() - started:.1f}s" if shown else f" {time.time() - started:.1f}s")
        if returncode != 0:
            tail = (out + err).strip().splitlines()[-15:]
            print("\n".join(tail), file=sys.stderr)
            raise StepFailed(f"step {name} failed (exit {returncode}); its output: {log_path}")
        return out


def training_progress(line: str) -> str | None:
    """The trainer's step and validation lines ("step     10 | loss 6.1 | …"), without the log's prefix."""
    _, found, text = line.partition(" train INFO ")
    return text.rstrip() if found and text.startswith("step ") else None


def last_validation_loss(run_dir: str) -> float | None:
    """None when no validation pass ran (a validation split shorter than one sequence)."""
    losses = [
        record["val.loss"] for record in read_records(os.path.join(run_dir, METRICS_FILE)) if "val.loss" in record
    ]
    return losses[-1] if losses else None


def summarise(output: str, sample_text: str) -> dict:
    """The run's figures, read back from the files each step wrote."""
    with open(os.path.join(output, "curated", "stats.json")) as handle:
        stats = json.load(handle)
    with open(os.path.join(output, "bins", "meta.json")) as handle:
        bins = json.load(handle)
    with open(os.path.join(output, "eval.json")) as handle:
        evaluation = json.load(handle)
    return {
        "records_read": stats["records_read"],
        "documents_in": stats["records_in"],
        "kept": stats["kept"],
        "dropped": stats["dropped"],
        "tokens": {split: bins["splits"][split]["tokens"] for split in ("train", "val")},
        "final_val_loss": last_validation_loss(os.path.join(output, "run")),
        "heldout_bits_per_byte": evaluation["bits_per_byte"],
        "heldout_loss": evaluation["loss"],
        "sample": sample_text,
        "paths": {
            "curated": os.path.join(output, "curated"),
            "dataset_card": os.path.join(output, "curated", "README.md"),
            "stats": os.path.join(output, "curated", "stats.json"),
            "tokenizer": os.path.join(output, "tokenizer"),
            "bins": os.path.join(output, "bins"),
            "run": os.path.join(output, "run"),
            "curation_report": os.path.join(output, "curated", "report.html"),
            "training_report": os.path.join(output, "run", "report.html"),
            "export": os.path.join(output, "hf"),
            "evaluation": os.path.join(output, "eval.json"),
            "logs": os.path.join(output, "logs"),
        },
    }


def print_summary(summary: dict) -> None:
    dropped = sum(summary["dropped"].values())
    print(f"\ncurated   {summary['records_read']:,} records read, {summary['documents_in']:,} documents,")
    print(f"          {summary['kept']:,} kept, {dropped:,} dropped:")
    for reason, count in sorted(summary["dropped"].items(), key=lambda item: (-item[1], item[0])):
        print(f"            {count:5d}  {reason}")
    tokens = summary["tokens"]
    print(f"tokens    {tokens['train']:,} train, {tokens['val']:,} validation")
    if summary["final_val_loss"] is None:
        print("trained   no validation pass: the validation split is shorter than one sequence")
    else:
        print(f"trained   final validation loss {summary['final_val_loss']:.3f}")
    print(
        f"held out  {summary['heldout_bits_per_byte']:.3f} bits per byte, loss {summary['heldout_loss']:.3f} "
        "(articles in neither source, on the export)"
    )
    print(f"sample    {summary['sample']!r}")
    width = max(len(name) for name in summary["paths"])
    for name, path in summary["paths"].items():
        print(f"  {name.replace('_', ' '):<{width}}  {path}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except StepFailed as exc:
        report(PROGRAM, exc)
        return 1


def run(args: argparse.Namespace) -> int:
    output = os.path.abspath(args.output)
    sample = os.path.join(output, "sample")
    curated, tokenizer, bins, run, hf = (
        os.path.join(output, name) for name in ("curated", "tokenizer", "bins", "run", "hf")
    )
    steps = Steps(output, 8)
    started = time.time()
    steps.run(
        "sample", "pipeline", "synthetic-sample", "--output", sample,
        "--pages", str(args.pages), "--articles", str(args.articles), "--seed", str(args.seed),
    )  # fmt: skip
    with open(os.path.join(sample, SAMPLE_FILE), encoding="utf-8") as handle:
        files = {key: os.path.join(sample, name) for key, name in json.load(handle).items() if key != "republished"}
    curate_arguments = [
        "pipeline", "run", "--recipe", CURATE_RECIPE, "--output", curated,
        "--sources.commoncrawl.warcs", json.dumps([files["warc"]]),
        "--sources.wikipedia.dumps", json.dumps([files["dump"]]),
        "--sources.wikipedia.indexes", json.dumps([files["index"]]),
    ]  # fmt: skip
    if args.workers:
        curate_arguments += [f"--direct_num_workers={args.workers}"]
    steps.run("curate", *curate_arguments)
    shards = os.path.join(curated, "part-*.parquet")
    steps.run(
        "tokenizer", "tokenizer", "train", "--input", shards, "--vocab-size", str(args.vocab_size),
        "--output", tokenizer,
    )  # fmt: skip
    steps.run(
        "bins", "tokenizer", "encode", "--tokenizer", tokenizer, "--input", shards, "--val-fraction", "0.05",
        "--output", bins,
    )  # fmt: skip
    train_arguments = [
        "train", "--config", TRAIN_CONFIG, "--run.dir", run,
        "--data.sources", f'[{{path="{bins}"}}]', "--data.tokenizer", tokenizer,
    ]  # fmt: skip
    if args.steps:
        train_arguments += ["--training.steps", str(args.steps), "--checkpoint.interval", str(args.steps)]
        train_arguments += ["--logging.eval_interval", str(args.steps)]
    shutil.rmtree(run, ignore_errors=True)  # a demo trains from scratch, also when run again in the same folder
    steps.run("train", *train_arguments, progress=training_progress)
    generated = steps.run(
        "generate", "train.generate", "--checkpoint", run, "--prompt", PROMPT, "--max-new-tokens", "60",
        "--seed", str(args.seed),
    )  # fmt: skip
    steps.run("export", "train.export", "--checkpoint", run, "--output", hf)
    steps.run(
        "evaluate", "train.eval", "--checkpoint", hf, "--input", files["heldout"],
        "--output", os.path.join(output, "eval.json"),
    )  # fmt: skip
    summary = summarise(output, generated.strip())
    summary["seconds"] = round(time.time() - started, 1)
    with open(os.path.join(output, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    print_summary(summary)
    print(f"\ndone in {summary['seconds']:.0f}s; this summary is {os.path.join(output, 'summary.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

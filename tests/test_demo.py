"""`make demo`'s steps (`python -m train.demo`) on a reduced sample: the summary's figures are those of the files,
the crawl's copies of Wikipedia articles lose to the Wikipedia copy, and a second run with the same seed gives the
same sample, shards, bins, losses and generated text."""

import json
import pathlib
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.test_quiet_output import NOISE
from train import demo

# one curation worker, in-process: test_quiet_output checks the output of a run on several worker processes
SMALL = ["--pages", "50", "--articles", "10", "--steps", "2", "--vocab-size", "384", "--workers", "1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(a copy of the first run's folder, the folder after the demo ran again in it with the same seed), as a user
    running `make demo` twice. The rewritten sample files have new modification times, so the second run
    curates them again instead of reusing the first run's committed units."""
    folder = tmp_path_factory.mktemp("demo")
    first = tmp_path_factory.mktemp("first") / "demo"
    assert demo.main(["--output", str(folder), *SMALL]) == 0
    shutil.copytree(folder, first)
    assert demo.main(["--output", str(folder), *SMALL]) == 0
    return first, folder


def files(folder: pathlib.Path, *patterns: str) -> dict[str, bytes]:
    found = {}
    for pattern in patterns:
        for path in sorted(folder.glob(pattern)):
            found[str(path.relative_to(folder))] = path.read_bytes()
    assert found, patterns
    return found


def test_the_summary_is_what_the_files_say(runs):
    folder = runs[1]
    summary = json.loads((folder / "summary.json").read_text())
    stats = json.loads((folder / "curated" / "stats.json").read_text())
    shards = pq.read_table(sorted((folder / "curated").glob("part-*.parquet"))).to_pylist()
    assert summary["kept"] == stats["kept"] == len(shards)
    assert summary["documents_in"] == summary["kept"] + sum(summary["dropped"].values())
    assert summary["dropped"] == stats["dropped"] and summary["records_read"] == stats["records_read"]
    for split in ("train", "val"):
        tokens = sum(np.fromfile(path, np.uint16).size for path in (folder / "bins" / split).glob("*.bin"))
        assert summary["tokens"][split] == tokens > 0
    records = [json.loads(line) for line in (folder / "run" / "metrics.jsonl").read_text().splitlines()]
    assert summary["final_val_loss"] == [r["val.loss"] for r in records if "val.loss" in r][-1]
    evaluation = json.loads((folder / "eval.json").read_text())
    assert summary["heldout_bits_per_byte"] == evaluation["bits_per_byte"] > 0 and evaluation["documents"] == 12
    assert summary["sample"].startswith(demo.PROMPT) and len(summary["sample"]) > len(demo.PROMPT)
    assert all(pathlib.Path(path).exists() for path in summary["paths"].values())
    assert (folder / "hf" / "config.json").exists() and (folder / "hf" / "model.safetensors").exists()


def test_both_sources_are_curated_and_the_wikipedia_copy_survives(runs):
    folder = runs[0] / "curated"
    sources = {row["source"] for row in pq.read_table(sorted(folder.glob("part-*.parquet"))).to_pylist()}
    assert sources == {"commoncrawl", "wikipedia"}
    report = pq.read_table(folder / "duplicates").to_pylist()
    cross = [row for row in report if row["kept_id"].startswith("wikipedia/")]
    assert cross and all(all(i.startswith("commoncrawl/") for i in row["removed_ids"]) for row in cross)


def test_the_same_seed_gives_the_same_run(runs):
    first, second = runs
    patterns = ("sample/*", "curated/part-*", "curated/duplicates/*", "tokenizer/tokenizer.json", "bins/*/*.bin")
    assert files(first, *patterns) == files(second, *patterns)
    assert files(first, "bins/*/*.idx") == files(second, "bins/*/*.idx")

    def losses(folder):
        lines = (folder / "run" / "metrics.jsonl").read_text().splitlines()
        return [(r["step"], r.get("loss"), r.get("val.loss")) for r in map(json.loads, lines)]

    assert losses(first) == losses(second)
    assert (
        json.loads((first / "summary.json").read_text())["sample"]
        == json.loads((second / "summary.json").read_text())["sample"]
    )


def test_the_demo_runs_again_in_the_same_folder_with_the_same_result(runs):
    first, again = (json.loads((folder / "summary.json").read_text()) for folder in runs)
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in first.items() if k != "seconds"}
    assert len(list((runs[1] / "run" / "checkpoints").iterdir())) == 1  # trained afresh, not resumed
    # the sample was written again, so its units were curated again, not read back from the first run's
    work = [path.name for path in (runs[1] / "curated" / "_work").glob("*/*.stats.json")]
    assert len(work) == 2 * len([path.name for path in (runs[0] / "curated" / "_work").glob("*/*.stats.json")])


def test_no_step_prints_third_party_noise(runs):
    logs = sorted((runs[1] / "logs").glob("*.log"))
    assert len(logs) == 8
    for path in logs:
        noisy = [line for line in path.read_text().splitlines() if any(fragment in line for fragment in NOISE)]
        assert not noisy, (path.name, noisy)


def test_a_failing_step_stops_the_demo_and_names_its_log(tmp_path, capsys):
    # the first step refuses a sample without articles, so nothing after it runs
    assert demo.main(["--output", str(tmp_path), "--articles", "0"]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        error
        == f"{demo.PROGRAM}: error: step sample failed (exit 2); its output: {tmp_path / 'logs' / '01-sample.log'}"
    )
    log = (tmp_path / "logs" / "01-sample.log").read_text()
    assert "--pages and --articles: at least 1 each (got 300 and 0)" in log
    assert sorted(path.name for path in tmp_path.iterdir()) == ["logs"]


def test_a_run_without_a_validation_pass_has_no_final_validation_loss(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 5.0}\n')
    assert demo.last_validation_loss(str(tmp_path)) is None
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "val.loss": 4.0}\n{"step": 2, "val.loss": 3.5}\n')
    assert demo.last_validation_loss(str(tmp_path)) == 3.5


def test_the_training_step_shows_its_progress_lines_as_they_come(train_data, tmp_path, capsys):
    from tests.trainruns import run_args

    run = tmp_path / "run"
    final = run / "checkpoints" / "step-00000020"
    seen = []

    def progress(line):
        text = demo.training_progress(line)
        if text is not None:
            seen.append((text, final.exists()))
        return text

    steps = demo.Steps(str(tmp_path), 1)
    steps.run("train", "train", *run_args(train_data, run, "--training.steps", "20", "--checkpoint.interval", "0"),
              progress=progress)  # fmt: skip
    training = [text.split("|")[0].split() for text, _ in seen if "| loss" in text]
    assert training == [["step", str(step)] for step in range(1, 21)]
    assert any(text.startswith("step     20 | validation loss") for text, _ in seen)
    assert not seen[0][1]  # the first step's line came while the run went on, long before its last checkpoint
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == "[1/1] train …" and shown[1] == f"    {seen[0][0]}" and shown[-1].startswith("    done in ")
    assert "step      1 | loss" in (tmp_path / "logs" / "01-train.log").read_text()  # the whole output, as before

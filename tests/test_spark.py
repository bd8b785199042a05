"""Curation on Spark (`--engine spark`) writes the bytes Beam's DirectRunner writes, for one recipe of Common Crawl
WARCs, a Wikipedia multistream dump and local text with exact and MinHash deduplication and the quality classifier
on: on `local[2]`, on a real standalone cluster (a master and two workers, JVMs of their own) that loses a worker
mid-run, and after its driver was killed. A bad setup ends in one line naming what to do."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pipeline import cli, recipe as recipes
from pipeline.beam import curate as beam_curate
from pipeline.common import synthetic
from pipeline.common.settings import UsageError
from tests.portable import _free_port
from tests.sparkcluster import spark_available, spark_cluster
from tests.test_portable import outputs

pytestmark = pytest.mark.skipif(spark_available() is not None, reason=f"Spark cannot run: {spark_available()}")

DIRECT = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]


def write_jsonl(path, texts, prefix) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for number, text in enumerate(texts):
            handle.write(json.dumps({"id": f"{prefix}-{number}", "text": text}) + "\n")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """The inputs, a quality classifier, the recipe (as a table) and the DirectRunner's outputs."""
    root = tmp_path_factory.mktemp("spark-inputs")
    sample = synthetic.write_sample(str(root / "sample"), pages=30, articles=12, seed=5, republished=4)
    synthetic.write_sample_warc(str(root / "sample" / "more.warc.gz"), pages=20, seed=12)
    (root / "text").mkdir()
    shutil.copy(sample.heldout, root / "text" / "heldout.jsonl")
    shutil.copy(sample.heldout, root / "text" / "heldout-again.jsonl")  # the same ids: duplicate_id drops
    rng = random.Random(3)
    (root / "labelled").mkdir()
    articles = ["\n\n".join(synthetic.article_paragraphs(rng, "en")) for _ in range(100)]
    write_jsonl(root / "labelled" / "good.jsonl", articles, "good")
    write_jsonl(root / "labelled" / "spam.jsonl", [synthetic.spam_document(rng) for _ in range(100)], "spam")
    model = root / "quality"
    good, spam = root / "labelled" / "good.jsonl", root / "labelled" / "spam.jsonl"
    arguments = ["quality", "train", "--positive", str(good), "--negative", str(spam), "--output", str(model)]
    assert cli.main([*arguments, "--seed", "1"]) == 0
    table = {
        "output": {"shard_size": "40KB"},
        "sources": {
            "commoncrawl": {
                "warcs": [str(root / "sample" / "*.warc.gz")],
                "quality_model": str(model),
                "quality_keep": 0.8,
            },
            "wikipedia": {"dumps": [sample.dump], "indexes": [sample.index], "streams_per_part": 1},
            "books": {"kind": "text", "inputs": [str(root / "text" / "*.jsonl")], "filters": []},
        },
        "dedup": {"prefer": ["wikipedia"]},
    }
    direct = root / "direct"
    stats = beam_curate.run(with_output(table, direct), DIRECT)
    assert stats.dropped["quality"] > 0 and stats.dropped["near_duplicate"] > 0 and stats.dropped["duplicate_id"] > 0
    return root, table, outputs(direct)


def with_output(table: dict, output) -> recipes.Recipe:
    return recipes.from_table({**table, "output": {**table["output"], "dir": str(output)}})


def write_recipe(table: dict, path) -> str:
    import tomli_w

    path.write_bytes(tomli_w.dumps(table).encode())
    return str(path)


def committed_units(output) -> dict[str, int]:
    """Committed units of a run: their stats files and when they were written."""
    return {str(path): path.stat().st_mtime_ns for path in output.glob("_work/*/*.stats.json")}


def spark_command(recipe_file: str, output, master: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "pipeline", "run", "--recipe", recipe_file, "--output", str(output),
        "--engine", "spark", "--spark-master", master, *extra,
    ]  # fmt: skip


def wait_for_units(output, process: subprocess.Popen, count: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while len(committed_units(output)) < count:
        assert process.poll() is None, f"the run ended (code {process.returncode}) before {count} units were committed"
        assert time.monotonic() < deadline, f"{count} units not committed within {timeout:.0f}s"
        time.sleep(0.2)


def test_a_standalone_cluster_that_loses_a_worker_mid_run_writes_the_same_bytes(mixed, tmp_path):
    root, table, direct = mixed
    with spark_cluster(tmp_path / "cluster") as cluster:
        cluster.start_workers(2)
        output = tmp_path / "cluster-run"
        recipe_file = write_recipe(table, tmp_path / "recipe.toml")
        log = open(tmp_path / "driver.log", "wb")
        driver = subprocess.Popen(spark_command(recipe_file, output, cluster.master_url), stdout=log, stderr=log)
        wait_for_units(output, driver, 1)
        assert list((tmp_path / "cluster" / "worker-2").glob("app-*/*")), "worker 2 ran no executor"
        cluster.kill("worker-2")
        assert driver.wait(timeout=400) == 0, (tmp_path / "driver.log").read_text()[-3000:]
        assert cluster.alive_workers() >= 1
    assert outputs(output) == direct


def test_local_spark_killed_and_rerun_writes_the_bytes_beam_writes(mixed, tmp_path):
    """On local[2]: the driver is killed mid-run (with its JVM and Python workers), and the rerun reads the units
    committed before back instead of making them again, and writes what the DirectRunner wrote."""
    root, table, direct = mixed
    output = tmp_path / "spark"
    recipe_file = write_recipe(table, tmp_path / "recipe.toml")
    command = spark_command(recipe_file, output, "local[2]")
    killed = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_units(output, killed, 2)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    before = committed_units(output)
    assert len(before) >= 2 and not (output / "stats.json").exists()
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=400)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = committed_units(output)
    assert len(after) == 6 and all(after[path] == written for path, written in before.items())  # reused, not redone
    assert outputs(output) == direct
    stats = json.loads((output / "stats.json").read_text())
    assert stats["input_files"] == 5 and stats["dropped"]["quality"] > 0 and stats["dropped"]["duplicate_id"] == 12
    assert (output / "report.html").is_file() and not list(output.glob("_work/spark-checkpoints*"))
    # the recipe a run writes names no engine: the same file from either
    assert (output / "recipe.toml").read_text().replace(str(output), "OUT") == (
        root / "direct" / "recipe.toml"
    ).read_text().replace(str(root / "direct"), "OUT")
    assert "records:" in rerun.stdout and "Traceback" not in rerun.stderr


def test_options_of_the_other_engine_are_refused(tmp_path, capsys):
    warcs = ["commoncrawl", "--warcs", str(tmp_path / "*.warc.gz"), "--output", str(tmp_path / "out")]
    assert cli.main([*warcs, "--engine", "spark", "--runner", "DataflowRunner"]) == 2
    assert "unknown option --runner" in capsys.readouterr().err
    assert cli.main([*warcs, "--engine", "spark", "--spark-mastr", "local[2]"]) == 2
    assert "did you mean --spark-master?" in capsys.readouterr().err
    assert cli.main([*warcs, "--spark-master", "local[2]"]) == 2
    assert "add --engine spark" in capsys.readouterr().err
    assert cli.main([*warcs, "--engine", "spark", "--conf", "spark.executor.memory"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


class _NoExecutors:
    """A SparkContext's view of a cluster where no executor registers: only the driver in its memory status."""

    stopped = False

    def __init__(self):
        self._jsc = self

    def sc(self):
        return self

    def getExecutorMemoryStatus(self):
        return self

    def size(self):
        return 1

    def stop(self):
        self.stopped = True


def test_a_cluster_where_no_executor_registers_is_one_line(monkeypatch):
    from pipeline.spark import session

    monkeypatch.setattr(session, "EXECUTOR_TIMEOUT", 0.5)
    context = _NoExecutors()
    with pytest.raises(UsageError, match=r"no executor joined the run on spark://head:7077 within 0 s"):
        session._wait_for_executors(context, "spark://head:7077")
    assert context.stopped


def test_no_java_and_a_silent_master_are_one_line_each(tmp_path, monkeypatch, capsys):
    from pipeline.spark import session

    synthetic.write_sample_warc(str(tmp_path / "a.warc.gz"), pages=3, seed=1)
    command = ["commoncrawl", "--warcs", str(tmp_path / "a.warc.gz"), "--output", str(tmp_path / "out")]
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-java"))
    assert cli.main([*command, "--engine", "spark"]) == 2
    assert "needs Java 17 or later" in capsys.readouterr().err
    monkeypatch.delenv("JAVA_HOME")
    monkeypatch.setattr(session, "MASTER_TIMEOUT", 1.0)
    started = time.monotonic()
    assert cli.main([*command, "--engine", "spark", "--spark-master", f"spark://127.0.0.1:{_free_port()}"]) == 2
    assert "does not answer (tried for 1 s)" in capsys.readouterr().err and time.monotonic() - started < 10


def test_executors_that_cannot_import_lmforge_or_write_the_output_are_named(tmp_path):
    """An executor Python without lmforge (here: the interpreter the venv was made from, run outside the
    repository), and an output folder the executors cannot write: one line each, no Java stack trace."""
    synthetic.write_sample_warc(str(tmp_path / "a.warc.gz"), pages=3, seed=1)
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    command = [sys.executable, "-m", "pipeline", "commoncrawl", "--warcs", str(tmp_path / "a.warc.gz"),
               "--engine", "spark", "--spark-master", "local[1]"]  # fmt: skip
    bare = {**os.environ, "PYSPARK_PYTHON": base, "PYTHONPATH": ""}
    run = subprocess.run([*command, "--output", str(tmp_path / "out")], env=bare, cwd=tmp_path, text=True,
                         capture_output=True, timeout=300)  # fmt: skip
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "Spark's executors failed a check before the run" in run.stderr and "lmforge[spark]" in run.stderr
    (tmp_path / "blocked").mkdir()
    (tmp_path / "blocked" / "_work").write_text("a file where the work folder goes")
    run = subprocess.run([*command, "--output", str(tmp_path / "blocked")], text=True, capture_output=True,
                         timeout=300)  # fmt: skip
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "cannot write" in run.stderr and "_work" in run.stderr

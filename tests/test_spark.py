"""Curation on Spark (`--engine spark`) writes the bytes Beam's DirectRunner writes, for one recipe of Common Crawl
WARCs (through the extraction cascade), a Wikipedia multistream dump and local text with exact and MinHash
deduplication, boilerplate lines, PII, bad words, decontamination and the quality classifier on, on a real standalone
cluster (a master and two workers, JVMs of their own) that loses a worker mid-run. A bad
setup ends in one line naming what to do. The slower Spark checks (`local[2]`, a killed driver and its rerun, the
DirectRunner's bytes on 3,000 real pages) are `bench/bench_spark.py faults` and `engines`."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from pipeline import cli
from pipeline.beam import curate as beam_curate
from pipeline.common import synthetic
from pipeline.common.settings import UsageError
from tests.portable import _free_port
from tests.sparkcluster import (
    QUICK_JVM,
    mixed_recipe,
    spark_available,
    spark_cluster,
    spark_command,
    wait_for_units,
    with_output,
    write_recipe,
)
from tests.test_portable import outputs

pytestmark = pytest.mark.skipif(spark_available() is not None, reason=f"Spark cannot run: {spark_available()}")

DIRECT = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """The recipe (as a table) and the DirectRunner's outputs."""
    root = tmp_path_factory.mktemp("spark-inputs")
    table = mixed_recipe(root)
    stats = beam_curate.run(with_output(table, root / "direct"), DIRECT)
    assert stats.dropped["quality"] > 0 and stats.dropped["near_duplicate"] > 0 and stats.dropped["duplicate_id"] > 0
    assert stats.dropped["decontaminated"] >= 2 and stats.dropped["line_dedup.empty"] == 1
    assert stats.dropped["badwords"] > 0 and stats.edits["badwords.kept_anyway"] > 0
    assert stats.dropped["language.prefilter"] > 0
    assert stats.edits["line_dedup.books.lines"] >= 4 and stats.edits["line_dedup.books.bytes"] > 0
    assert stats.records_skipped["license.not_allowed"] == 4 and stats.edits["secrets.AWSKeyDetector"] == 1
    assert stats.dropped["code_generated.minified"] == 1 and "line_dedup.code.lines" not in stats.edits
    assert stats.index["fetched"] == stats.index["selected"] > 4  # read through the index, in several units
    return root, table, outputs(root / "direct")


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


def test_executors_that_cannot_import_lmforge_are_named(tmp_path):
    """An executor Python without lmforge (here: the interpreter the venv was made from, run outside the
    repository): one line naming what to install, no Java stack trace."""
    synthetic.write_sample_warc(str(tmp_path / "a.warc.gz"), pages=3, seed=1)
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    command = [sys.executable, "-m", "pipeline", "commoncrawl", "--warcs", str(tmp_path / "a.warc.gz"),
               "--output", str(tmp_path / "out"), "--engine", "spark", "--spark-master", "local[1]", *QUICK_JVM]  # fmt: skip
    bare = {**os.environ, "PYSPARK_PYTHON": base, "PYTHONPATH": ""}
    run = subprocess.run(command, env=bare, cwd=tmp_path, text=True, capture_output=True, timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "Spark's executors failed a check before the run" in run.stderr and "lmforge[spark]" in run.stderr


class _LocalExecutors:
    """A SparkContext stand-in whose two "executors" run a job's function here: the checks an executor makes."""

    defaultParallelism = 2

    def parallelize(self, items, slices):
        self.items = list(items)
        return self

    def map(self, function):
        self.function = function
        return self

    def collect(self):
        return [self.function(item) for item in self.items]


def test_the_executor_check_names_a_missing_model_and_an_unwritable_output(tmp_path):
    from pipeline.spark import session

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "_work").write_text("a file where the work folder goes")
    model = tmp_path / "models" / "lid.bin"
    with pytest.raises(UsageError) as error:
        session.check_executors(_LocalExecutors(), [str(model)], str(tmp_path / "out" / "_work"))
    message = str(error.value)
    assert message.startswith("Spark's executors are not ready: ") and f"{model}: not found on the executor" in message
    assert f"cannot write {tmp_path / 'out' / '_work'}" in message
    (tmp_path / "ok").mkdir()
    session.check_executors(_LocalExecutors(), [], str(tmp_path / "ok" / "_work"))  # nothing missing: no error
    assert not list((tmp_path / "ok" / "_work").iterdir())  # the probe file is gone

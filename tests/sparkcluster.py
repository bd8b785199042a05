"""Spark for the tests and `bench/bench_spark.py`: a standalone cluster on this machine, from the `pyspark` wheel (a
master and workers, each a JVM of its own on 127.0.0.1, Debian's OpenJDK, started with `spark-class` and stopped by
process id; a worker's session holds its executor and Python workers too, so killing it is losing a machine); the
recipe of every kind of input both engines are compared on; running and watching the command."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

from pipeline import cli, recipe as recipes
from pipeline.common import synthetic
from tests import ccindexdata, codedata
from tests.portable import _free_port, _wait_for

# The JVMs here compile with C1 alone and collect with one thread: the JVM does little of a run's work, and its JIT
# and GC threads would take the CPU of the test files running beside these
JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
QUICK_JVM = [
    f"--conf=spark.driver.extraJavaOptions={JVM_OPTIONS}",
    f"--conf=spark.executor.extraJavaOptions={JVM_OPTIONS}",
]


def spark_available() -> str | None:
    """Why Spark cannot run here, or None."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed"
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        return "no Java (Debian: openjdk-17-jre-headless)"
    return None


def _spark_home() -> str:
    import pyspark

    return os.path.dirname(pyspark.__file__)


class Cluster:
    def __init__(self, folder):
        self.folder = folder
        self.port, self.ui_port = _free_port(), _free_port()
        self.master_url = f"spark://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen] = {}
        home = _spark_home()
        self.env = {
            **os.environ,
            "SPARK_HOME": home,
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOG_DIR": str(folder),
            "PYSPARK_PYTHON": sys.executable,
            "SPARK_DAEMON_JAVA_OPTS": JVM_OPTIONS,
        }
        self.spark_class = os.path.join(home, "bin", "spark-class")

    def _start(self, name: str, *arguments: str) -> subprocess.Popen:
        log = open(os.path.join(self.folder, f"{name}.log"), "wb")
        # spark-class execs the JVM, so the process id is the JVM's; a session of its own holds its children
        process = subprocess.Popen(
            [self.spark_class, *arguments],
            env=self.env,
            cwd=self.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def start_master(self) -> None:
        master = self._start(
            "master",
            "org.apache.spark.deploy.master.Master",
            "--host", "127.0.0.1", "--port", str(self.port), "--webui-port", str(self.ui_port),
        )  # fmt: skip
        _wait_for(self.port, master, "the Spark master", timeout=90)
        _wait_for(self.ui_port, master, "the Spark master's web UI", timeout=90)

    def start_workers(self, count: int, cores: int = 1, memory: str = "1g", timeout: float = 90) -> None:
        for number in range(1, count + 1):
            work = os.path.join(self.folder, f"worker-{number}")
            os.makedirs(work, exist_ok=True)
            self._start(
                f"worker-{number}",
                "org.apache.spark.deploy.worker.Worker", self.master_url,
                "--host", "127.0.0.1", "--cores", str(cores), "--memory", memory, "--work-dir", work,
                "--webui-port", str(_free_port()),
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while self.alive_workers() < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} Spark workers did not register within {timeout:.0f}s ({self.folder})")
            time.sleep(0.5)

    def alive_workers(self) -> int:
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as response:
                state = json.load(response)
            return sum(worker["state"] == "ALIVE" for worker in state["workers"])
        return 0

    def kill(self, name: str) -> None:
        """SIGKILL to a JVM and everything in its session (its executors and their Python workers)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.processes[name].pid, signal.SIGKILL)
        self.processes[name].wait()

    def stop(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextlib.contextmanager
def spark_cluster(folder):
    """Yields a Cluster whose master is up; workers are started by the caller (`start_workers`)."""
    os.makedirs(folder, exist_ok=True)
    cluster = Cluster(str(folder))
    try:
        cluster.start_master()
        yield cluster
    finally:
        cluster.stop()


def _write_jsonl(path, texts, prefix) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for number, text in enumerate(texts):
            handle.write(json.dumps({"id": f"{prefix}-{number}", "text": text}) + "\n")


def mixed_recipe(root, pages: int = 30, articles: int = 12) -> dict:
    """Inputs of every kind in `root` and the recipe (as a table, without its output) that curates them: two Common
    Crawl WARCs (the crawl republished some Wikipedia articles), a Wikipedia multistream dump read in parts, local
    JSON lines listed twice under two names (the same ids) and forum posts that share boilerplate lines, two of them
    quoting an evaluation set; exact and MinHash dedup, boilerplate lines, PII, bad words (half of the flagged kept),
    decontamination, a quality classifier trained here keeping the best 80% of the crawl; code: a real package (MIT)
    with secrets, vendored, lock, binary and minified files, read in parts, beside one under MPL-2.0; and a third
    WARC laid out as a crawl's, read through its columnar index (CLD2's labels) in units of a few captures."""
    sample = synthetic.write_sample(str(root / "sample"), pages=pages, articles=articles, seed=5, republished=4)
    synthetic.write_sample_warc(str(root / "sample" / "more.warc.gz"), pages=pages * 2 // 3, seed=12)
    (root / "text").mkdir()
    shutil.copy(sample.heldout, root / "text" / "heldout.jsonl")
    shutil.copy(sample.heldout, root / "text" / "heldout-again.jsonl")  # the same ids: duplicate_id drops
    rng = random.Random(3)
    (root / "labelled").mkdir()
    good, spam = root / "labelled" / "good.jsonl", root / "labelled" / "spam.jsonl"
    _write_jsonl(good, ["\n\n".join(synthetic.article_paragraphs(rng, "en")) for _ in range(100)], "good")
    _write_jsonl(spam, [synthetic.spam_document(rng) for _ in range(100)], "spam")
    boilerplate = ["Subscribe to our newsletter for weekly updates!", "© 2026 Example Media. All rights reserved."]
    forum = ["\n".join([*synthetic.article_paragraphs(rng, "en")[:3], *boilerplate]) for _ in range(10)]
    _write_jsonl(root / "text" / "forum.jsonl", [*forum, "\n".join(boilerplate)], "forum")
    # an evaluation set two of the forum posts quote: decontaminated on both engines
    quoted = [post.split("\n")[1] for post in forum[:2]]
    _write_jsonl(root / "labelled" / "eval.jsonl", quoted, "eval")
    (root / "labelled" / "badwords-en.txt").write_text("river\n")  # in three of the bundled English sentences
    index = root / "evals.npz"
    assert cli.main(["decontam", "index", "--task", f"eval=jsonl:{root / 'labelled' / 'eval.jsonl'}",
                     "--output", str(index)]) == 0  # fmt: skip
    model = root / "quality"
    arguments = ["quality", "train", "--positive", str(good), "--negative", str(spam), "--output", str(model)]
    assert cli.main([*arguments, "--seed", "1"]) == 0
    (root / "repos").mkdir()
    files = codedata.with_extras(codedata.package_files("tzlocal", "tzlocal"))
    codedata.write_tar(root / "repos" / "tzlocal.tar.gz", files, "tzlocal-main", "0123456789abcdef" * 2 + "01234567")
    codedata.write_zip(root / "repos" / "pathspec.zip", codedata.package_files("pathspec", "pathspec", limit=3), "p")
    indexed = "crawl-data/CC-MAIN-2026-01/segments/1/warc/indexed.warc.gz"
    (root / "crawl" / indexed).parent.mkdir(parents=True)
    synthetic.write_sample_warc(str(root / "crawl" / indexed), pages=20, seed=31, host="indexed.example.org")
    ccindexdata.write_index(
        root / "crawl" / "index.parquet", ccindexdata.index_rows(str(root / "crawl" / indexed), indexed)
    )
    return {
        "output": {"shard_size": "40KB"},
        "sources": {
            "commoncrawl": {
                "warcs": [str(root / "sample" / "*.warc.gz")],
                "quality_model": str(model),
                "quality_keep": 0.8,
                "languages": ["en", "de"],  # the extraction cascade: pages of other languages set aside first
            },
            "wikipedia": {"dumps": [sample.dump], "indexes": [sample.index], "streams_per_part": 1},
            "books": {
                "kind": "text",
                "inputs": [str(root / "text" / "*.jsonl")],
                "filters": [],
                "pii": True,
                "decontamination": str(index),
                "badwords": {"en": str(root / "labelled" / "badwords-en.txt")},
                "badwords_keep": 0.5,  # a share chosen by id: the same documents on either engine
            },
            "code": {"repos": [str(root / "repos" / "*")], "max_unit_bytes": 20_000},
            "crawl_index": {
                "kind": "commoncrawl",
                "cc_index": [str(root / "crawl" / "index.parquet")],
                "cc_base_url": str(root / "crawl"),
                "languages": ["en", "de"],
                "index_language_mode": "any",
                "index_unit_records": 4,
            },
        },
        "dedup": {"prefer": ["wikipedia"], "line_dedup": True},
    }


def with_output(table: dict, output) -> recipes.Recipe:
    return recipes.from_table({**table, "output": {**table["output"], "dir": str(output)}})


def write_recipe(table: dict, path) -> str:
    import tomli_w

    path.write_bytes(tomli_w.dumps(table).encode())
    return str(path)


def committed_units(output) -> dict[str, int]:
    """Committed units of a run: their stats files and when they were written."""
    return {str(path): path.stat().st_mtime_ns for path in output.glob("_work/*/*.stats.json")}


def spark_command(recipe_file: str, output, master: str) -> list[str]:
    return [
        sys.executable, "-m", "pipeline", "run", "--recipe", recipe_file, "--output", str(output),
        "--engine", "spark", "--spark-master", master, *QUICK_JVM,
    ]  # fmt: skip


def wait_for_units(output, process: subprocess.Popen, count: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while len(committed_units(output)) < count:
        assert process.poll() is None, f"the run ended (code {process.returncode}) before {count} units were committed"
        assert time.monotonic() < deadline, f"{count} units not committed within {timeout:.0f}s"
        time.sleep(0.2)

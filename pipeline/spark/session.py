"""Starting Spark for a curation run, and every check that turns a bad setup into one clear line instead of a hang
or a JVM stack trace: PySpark missing, no Java, a master that does not answer, no executor joining, executors that
cannot import lmforge, cannot read the models or cannot write the output folder.

The run's SparkContext is the one already running when there is one (`spark-submit`, a notebook, Databricks);
otherwise one is started for `master` with the `--conf` settings.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import sys
import time
import uuid
import warnings
from collections.abc import Sequence
from typing import Any

from pipeline.common.remote import is_local
from pipeline.common.settings import UsageError
from pipeline.output import sinks

log = logging.getLogger(__name__)

DEFAULT_MASTER = "local[*]"
MASTER_TIMEOUT = 10.0  # seconds for a spark:// master to accept a connection
EXECUTOR_TIMEOUT = 60.0  # seconds for the first executor to register with a cluster's driver
SETUP_DOC = "docs/running-at-scale.md, 'Spark'"


def parse_conf(pairs: Sequence[str]) -> dict[str, str]:
    """`--conf KEY=VALUE` pairs, as spark-submit takes them."""
    conf = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--conf {pair}: expected KEY=VALUE, e.g. --conf spark.executor.memory=4g")
        conf[key.strip()] = value
    return conf


def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = os.path.join(home, "bin", "java")
        return candidate if os.access(candidate, os.X_OK) else None
    return shutil.which("java")


def _master_addresses(master: str) -> list[tuple[str, int]]:
    """The host:port pairs of a standalone master URL (`spark://a:7077,b:7077` names several for failover)."""
    found = []
    for address in master[len("spark://") :].split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            found.append((host.strip("[]"), int(port)))
        except ValueError:
            raise UsageError(f"--spark-master {master}: expected spark://HOST:PORT")
    return found


def check_master(master: str, timeout: float | None = None) -> None:
    """A standalone master must accept a connection within `timeout` (default MASTER_TIMEOUT; Spark itself would
    retry for minutes)."""
    if not master.startswith("spark://"):
        return
    timeout = MASTER_TIMEOUT if timeout is None else timeout
    addresses = _master_addresses(master)
    deadline = time.monotonic() + timeout
    while True:
        for host, port in addresses:
            with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
                return
        if time.monotonic() >= deadline:
            raise UsageError(
                f"Spark master {master} does not answer (tried for {timeout:.0f} s): is it started, and is the "
                "address the one its log shows ('Starting Spark master at spark://…')?"
            )
        time.sleep(0.5)


def _on_this_machine(master: str) -> bool:
    if master.startswith("local"):
        return True
    hosts = {host for host, _ in _master_addresses(master)} if master.startswith("spark://") else set()
    return bool(hosts) and hosts <= {"127.0.0.1", "localhost", "::1", socket.gethostname()}


def resolve_master(master: str | None) -> str:
    """The master given, else spark-submit's (`--master`, spark-defaults.conf), else local[*]."""
    if master:
        return master
    from pyspark import SparkConf

    return SparkConf(loadDefaults=True).get("spark.master", DEFAULT_MASTER) or DEFAULT_MASTER


def spark_conf(master: str, settings: dict[str, str]):
    """The SparkConf of a run: the user's settings over lmforge's defaults."""
    from pyspark import SparkConf

    defaults = {
        "spark.app.name": "lmforge-curate",
        # Spark's own log: a task's Python error is reported in one line by the run, and a retried task that then
        # succeeds is no error of the run's (--conf spark.log.level=WARN shows it all)
        "spark.log.level": "FATAL",
        "spark.ui.showConsoleProgress": "true" if sys.stderr.isatty() else "false",
        "spark.python.worker.reuse": "true",  # a worker keeps its language model and extraction child across tasks
        "spark.cleaner.referenceTracking.cleanCheckpoints": "true",
        # a unit is one task, and one unit's failure must not end the run before Spark has retried it elsewhere
        "spark.task.maxFailures": "4",
    }
    if master.startswith("local"):  # a run on this machine is watched on the terminal, not in Spark's web UI
        defaults["spark.ui.enabled"] = "false"
    conf = SparkConf(loadDefaults=True).setMaster(master)
    for key, value in {**defaults, **settings}.items():
        if key not in settings and conf.contains(key):
            continue  # spark-defaults.conf or spark-submit set it
        conf.set(key, value)
    return conf


def start(master: str | None, settings: dict[str, str]) -> tuple[Any, bool]:
    """(the SparkContext, whether this call started it). An active context (a notebook, Databricks) is used as
    it is, its master and settings the ones it was started with; `master` None: spark-submit's, else local[*]."""
    # PySpark's note on pandas versions, which a run's RDDs never use
    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
    try:
        from pyspark import SparkContext
    except ImportError:
        raise UsageError("--engine spark needs PySpark: pip install 'lmforge[spark]' (or use the cluster's own)")
    active = SparkContext._active_spark_context
    if active is not None:
        if settings:
            log.warning("a SparkContext is running already: --conf %s not applied", " ".join(settings))
        return active, False
    master = resolve_master(master)
    if _java() is None:
        raise UsageError(
            "--engine spark needs Java 17 or later (Spark runs on a JVM): install it (Debian: apt-get install "
            "openjdk-17-jre-headless) or set JAVA_HOME"
        )
    check_master(master)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    if not (master.startswith(("local", "spark://", "yarn", "k8s://", "mesos://"))):
        raise UsageError(f"--spark-master {master}: expected local[N], spark://HOST:PORT, yarn or k8s://…")
    if _on_this_machine(master) and "PYSPARK_PYTHON" not in os.environ and "spark.pyspark.python" not in settings:
        # the executors' Python, which PySpark takes from the environment: this one, with lmforge in it
        os.environ["PYSPARK_PYTHON"] = sys.executable
    try:
        context = SparkContext(conf=spark_conf(master, settings))
    except Exception as exc:  # the JVM did not start, or a setting was refused
        raise UsageError(f"Spark did not start with --spark-master {master}: {first_line(exc)}")
    if not master.startswith("local"):
        _wait_for_executors(context, master)
    return context, True


def _wait_for_executors(context, master: str) -> None:
    timeout = EXECUTOR_TIMEOUT
    deadline = time.monotonic() + timeout
    while context._jsc.sc().getExecutorMemoryStatus().size() < 2:  # the driver counts as one
        if time.monotonic() >= deadline:
            context.stop()
            raise UsageError(
                f"no executor joined the run on {master} within {timeout:.0f} s: are workers registered with the "
                "master (its web UI lists them), with the cores and memory the run asks for (spark.executor.*)?"
            )
        time.sleep(0.5)


def first_line(exc: BaseException) -> str:
    """The message that matters in an exception from Spark: the Python error an executor raised when there was
    one (not the Java stack around it), else the exception's first line."""
    text = str(exc)
    python_errors = re.findall(r"^(\w+(?:Error|Exception): .+)$", text, re.MULTILINE)
    python_errors = [line for line in python_errors if not line.startswith(("org.", "java.", "py4j"))]
    if python_errors:
        return python_errors[-1]
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)


def _probe(files: list[str], work_dir: str, _) -> list[str]:
    """On an executor: what it lacks for the run (it imported this module, so lmforge is there)."""
    problems = []
    try:
        import pipeline.steps.process  # noqa: F401  (the per-document libraries: trafilatura, fastText, …)
    except ImportError as exc:
        problems.append(f"cannot import the pipeline's libraries ({exc}): install lmforge[spark] on the executors")
    for path in files:
        if not sinks.exists(path):
            problems.append(f"{path}: not found on the executor (put it where every executor reads it)")
    probe = sinks.join(work_dir, f"probe-{uuid.uuid4().hex}")
    try:
        sinks.write_bytes(probe, b"lmforge")
        sinks.delete(probe)
    except Exception as exc:
        problems.append(f"cannot write {work_dir}: {first_line(exc)}")
    return [f"{socket.gethostname()}: {problem}" for problem in problems]


def check_executors(context, files: list[str], work_dir: str) -> None:
    """Runs a task on each executor slot that checks what the run needs there; UsageError listing what is missing."""
    slots = max(context.defaultParallelism, 1)
    try:
        found = context.parallelize(range(slots), slots).map(lambda item: _probe(files, work_dir, item)).collect()
    except Exception as exc:
        message = first_line(exc)
        if "No module named 'pipeline'" in message or "No module named 'lmforge'" in message:
            message = f"the executors cannot import lmforge ({message}): install lmforge[spark] there ({SETUP_DOC})"
        raise UsageError(f"Spark's executors failed a check before the run: {message}")
    problems = sorted({problem for problems in found for problem in problems})
    if problems:
        raise UsageError("Spark's executors are not ready: " + "; ".join(problems))


def checkpoint_dir(context, output_dir: str) -> str:
    """Where connected components checkpoint their edges each round: `spark.checkpoint.dir` when set, else a
    folder of this run under the output's `_work/` (removed at the end)."""
    configured = context.getConf().get("spark.checkpoint.dir")
    folder = configured or sinks.join(sinks.join(output_dir, "_work"), f"spark-checkpoints-{uuid.uuid4().hex[:8]}")
    context.setCheckpointDir(folder if configured or not is_local(folder) else os.path.abspath(folder))
    return folder

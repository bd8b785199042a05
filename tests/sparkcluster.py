"""A Spark standalone cluster on this machine, from the `pyspark` wheel: a master and workers, each a JVM of its own
on 127.0.0.1 (Debian's OpenJDK), started with `spark-class` and stopped by process id (a worker's session holds its
executor and Python workers too, so killing it is losing a machine)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

from tests.portable import _free_port, _wait_for


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

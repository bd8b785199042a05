"""Beam's portability layer on this machine: the Python job service and a worker pool whose SDK workers run in
processes of their own (EXTERNAL environment), so every DoFn is pickled, shipped and set up away from the driver,
as on Dataflow, Flink or Spark. Both services are started here and stopped by process id."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _wait_for(port: int, process: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("localhost", port), timeout=1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f}s")


@contextlib.contextmanager
def portable_services(log_dir):
    """Yields the Beam options of a PortableRunner job against the two services."""
    # The worker pool starts SDK workers with `python` from PATH: the venv's, or they die without apache_beam.
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"}
    job_port, pool_port = _free_port(), _free_port()
    commands = {
        "job service": [
            sys.executable,
            "-m",
            "apache_beam.runners.portability.local_job_service_main",
            "--port",
            str(job_port),
        ],
        "worker pool": [
            sys.executable,
            "-m",
            "apache_beam.runners.worker.worker_pool_main",
            "--service_port",
            str(pool_port),
        ],
    }
    processes = {}
    try:
        for what, command in commands.items():
            log = open(os.path.join(log_dir, f"{what.replace(' ', '-')}.log"), "wb")
            # a session of its own: stopping it stops the SDK workers it started too
            processes[what] = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        _wait_for(job_port, processes["job service"], "the job service")
        _wait_for(pool_port, processes["worker pool"], "the worker pool")
        yield [
            "--runner=PortableRunner",
            f"--job_endpoint=localhost:{job_port}",
            "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{pool_port}",
        ]
    finally:
        for process in processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

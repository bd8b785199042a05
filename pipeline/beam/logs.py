"""Logging of the pipeline's commands and of the worker processes of a local run.

A local run's workers are processes of their own (the DirectRunner's multi-processing mode). Their logs go to the
driver through Beam's log channel, which relays them as protocol-buffer text, start-up chatter included; so the
relay shows errors only, and the first of our transforms set up in a worker (`to_stderr_in_local_workers`) gives
the worker's warnings a line on stderr in the commands' format. Beam's chatter comes before that and is not shown.
"""

from __future__ import annotations

import logging
import os
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOCAL_WORKERS = "LMFORGE_LOCAL_WORKER_LOGS"  # set while a local run's driver starts its workers
NOISY = ("apache_beam", "trafilatura", "htmldate", "courlan", "urllib3")


def configure(verbose: bool = False) -> None:
    """The commands' logging: our INFO lines, the libraries' warnings."""
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format=FORMAT)
    logging.getLogger().setLevel(level)  # in case an import configured the root logger first
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
    # The DirectRunner relays every worker's log entries (their start-up chatter too) as protocol-buffer text;
    # the workers' warnings are on stderr already (to_stderr_in_local_workers), their errors still come through.
    logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)


def to_stderr_in_local_workers() -> None:
    """In a worker process of a local run, warnings and errors to stderr (once; nothing anywhere else)."""
    if not os.environ.get(LOCAL_WORKERS):
        return
    root = logging.getLogger()
    if any(isinstance(handler, logging.StreamHandler) for handler in root.handlers):
        return  # the driver itself (in-memory mode), or a process that logs to a stream already
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(logging.WARNING)
    root.addHandler(handler)

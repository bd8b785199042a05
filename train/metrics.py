"""Where a run reports: a console line per interval, the same as JSON lines in RUN/metrics.jsonl, TensorBoard
when installed, Weights & Biases when asked for, and a progress bar with an ETA on a terminal (train.report
draws the curves)."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

import torch

from train.config import ConfigError

log = logging.getLogger("train")

METRICS_FILE = "metrics.jsonl"

# Dense bf16 tensor-core peak per device, FLOP/s, from the vendors' data sheets; the first match of the device
# name wins, so the more specific names come first.
PEAK_FLOPS = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("GH200", 989e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("V100", 125e12),
    ("T4", 65e12),
)


def peak_flops(device: torch.device, configured: float) -> float:
    """Peak FLOP/s of one device for MFU: the configured figure, else the table's by CUDA device name, else 0
    (unknown: MFU is not reported)."""
    if configured > 0:
        return configured
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, flops in PEAK_FLOPS:
            if key in name:
                return flops
        log.warning("no peak FLOP/s known for %s; pass --logging.peak_flops to get MFU", name)
    return 0.0


class Throughput:
    """Tokens per second of training alone: each step's time is measured from its start to its end (after the
    loss reached the host), so validation and checkpoints in between count for nothing, and an interval's
    tokens and seconds are reset together at each logged line."""

    def __init__(self):
        self.tokens, self.seconds, self._started = 0, 0.0, 0.0
        self.last_step_seconds = 0.0

    def start_step(self) -> None:
        self._started = time.perf_counter()

    def end_step(self, tokens: int) -> None:
        self.last_step_seconds = time.perf_counter() - self._started
        self.tokens += tokens
        self.seconds += self.last_step_seconds

    def take(self) -> float:
        """The interval's rate; the next interval starts empty."""
        rate = self.tokens / self.seconds if self.seconds > 0 else 0.0
        self.tokens, self.seconds = 0, 0.0
        return rate


def read_records(path: str) -> list[dict]:
    """The records of a metrics.jsonl; a line that is not JSON (torn by a crash in the middle of a write) is
    skipped with a warning."""
    records = []
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("%s: line %d is not complete JSON (a crash mid-write?); skipped", path, number)
    return records


def start_wandb(run_dir: str, project: str, mode: str, settings: dict):
    """A Weights & Biases run for RUN (wandb.init): named after the run directory, with the resolved settings as
    its config, its files under RUN/wandb; its id is kept in RUN/wandb-id, so that a resumed run goes on in the
    same W&B run. `mode` "" leaves the choice to W&B (WANDB_MODE, else online)."""
    try:
        import wandb
    except ImportError:
        raise ConfigError("logging.wandb: the wandb package is not installed (pip install wandb)") from None
    id_file = os.path.join(run_dir, "wandb-id")
    run_id = None
    if os.path.exists(id_file):
        with open(id_file) as handle:
            run_id = handle.read().strip()
    options: dict = {"mode": mode} if mode else {}  # checked against W&B's modes by Config.check
    try:
        run = wandb.init(
            project=project,
            name=os.path.basename(os.path.abspath(run_dir)),
            id=run_id,
            resume="allow",
            dir=run_dir,
            config=settings,
            **options,
        )
    except wandb.errors.Error as exc:  # no API key, no network: the run stops before its first step
        raise ConfigError(
            f'logging.wandb: W&B could not start: {exc} (or set logging.wandb_mode = "offline" and `wandb sync` later)'
        ) from None
    if run_id is None:
        with open(id_file, "w") as handle:
            handle.write(run.id + "\n")
    return run


class MetricsLog:
    """Written by one process of a job (rank 0); on the others every method does nothing. `wandb`: the W&B run
    that gets every numeric value too (start_wandb), or None."""

    def __init__(
        self, run_dir: str, total_steps: int, start_step: int, use_tensorboard: bool, enabled: bool = True, wandb=None
    ):
        self.enabled = enabled
        if not enabled:
            return
        self.wandb = wandb
        self.path = os.path.join(run_dir, METRICS_FILE)
        self.run_dir = run_dir
        self._truncate_after(start_step)
        self.file = open(self.path, "a")
        self.tensorboard = None
        if use_tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.info("tensorboard is not installed; metrics go to %s only", self.path)
            else:
                self.tensorboard = SummaryWriter(os.path.join(run_dir, "tensorboard"), purge_step=start_step + 1)
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

    def _truncate_after(self, step: int) -> None:
        """A resumed run rewrites history from its checkpoint on: lines of later steps of the run it replaces go."""
        if not os.path.exists(self.path):
            return
        kept = [record for record in read_records(self.path) if record.get("step", 0) <= step]
        with open(self.path, "w") as handle:
            handle.writelines(json.dumps(record) + "\n" for record in kept)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        scalars = {
            key.replace(".", "/"): value
            for key, value in record.items()
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool)
        }
        if self.tensorboard is not None:
            for key, value in scalars.items():
                self.tensorboard.add_scalar(key, value, record["step"])
        if self.wandb is not None and scalars:
            self.wandb.log(scalars, step=record["step"])

    def line(self, text: str) -> None:
        """A line for a person: above the progress bar on a terminal (never glued to it), else logged."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            log.info(text)

    def step_line(self, record: dict) -> None:
        if not self.enabled:
            return
        mfu = f" | mfu {record['mfu'] * 100:5.1f}%" if "mfu" in record else ""
        memory = f" | peak memory {record['peak_memory_gb']:.1f} GB" if "peak_memory_gb" in record else ""
        line = (
            f"step {record['step']:>6} | loss {record['loss']:.4f} | lr {record['lr']:.2e} | "
            f"grad norm {record['grad_norm']:.3f} | {record['tokens_per_second']:,.0f} tok/s{mfu}{memory}"
        )
        self.line(line)

    def advance(self, steps: int = 1, loss: float | None = None) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(steps)
            if loss is not None:
                self.bar.set_postfix(loss=f"{loss:.4f}")

    def close(self, failed: bool = False) -> None:
        """`failed`: the run ends on an error (W&B marks its run failed)."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish(exit_code=1 if failed else 0)
        self.file.close()

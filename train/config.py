"""Training configuration: TOML sections validated into dataclasses, command-line overrides of any field
(`--optim.lr 6e-4`), and the resolved configuration written back as TOML with every run."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import tomli_w

from model import ModelConfig
from pipeline.common.settings import UsageError, build, describe as describe_section, load_toml, set_dotted
from pipeline.common.tasks import TaskError, parse_spec


class ConfigError(UsageError):
    """A setting of the training configuration is wrong."""


@dataclass
class DataSource:
    path: str  # a bin directory written by `python -m tokenizer encode`
    weight: float = 1.0  # mixture weight; normalised over the sources
    name: str = ""  # in logs and validation metrics; defaults to the directory's name


@dataclass
class DataConfig:
    sources: list[DataSource] = field(default_factory=list)
    tokenizer: str = ""  # the tokenizer directory the bins were encoded with; copied into the run
    seq_len: int = 1024


@dataclass
class TrainingConfig:
    steps: int = 1000
    batch_tokens: int = 524288  # global batch per optimiser step; gradient accumulation makes up the rest
    micro_batch_size: int = 8  # sequences per forward pass
    seed: int = 1337
    device: str = "auto"  # auto: cuda when available, else cpu
    dtype: str = "auto"  # auto: bfloat16 autocast on CUDA, float32 on CPU; or float32 / bfloat16
    compile: bool = False
    activation_checkpointing: str = "none"  # none | selective (recompute all but matmuls and attention) | full
    grad_clip: float = 1.0  # 0 disables clipping (the norm is still logged)
    on_nonfinite: str = "stop"  # stop: end the run naming the step; skip: drop the step's update
    max_skipped_steps: int = 10  # with on_nonfinite = "skip": consecutive skips before the run stops anyway
    # OLMo-core's spike rule: skip the update when the loss or gradient norm exceeds the mean of the last
    # spike_window updates' by spike_sigmas standard deviations (once spike_min_history are known); 0: never
    spike_sigmas: float = 6.0
    spike_window: int = 128
    spike_min_history: int = 32


@dataclass
class OptimConfig:
    lr: float = 6e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1  # not applied to norms and embeddings


@dataclass
class ScheduleConfig:
    kind: str = "cosine"  # cosine | wsd (warmup-stable-decay) | constant
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # final learning rate as a fraction of optim.lr
    decay_fraction: float = 0.2  # wsd: the share of steps spent decaying at the end


@dataclass
class CheckpointConfig:
    interval: int = 1000  # steps between checkpoints; one is always written at the end; 0: only at the end
    keep: int = 3  # complete checkpoints kept; older ones are deleted after a new one is written
    exit_at_step: int = 0  # write a checkpoint and exit after this step (a scheduler's time slot); 0: never
    # a wall-clock budget: stop with a checkpoint when the next step and a checkpoint would not fit in this many
    # minutes from the start of the process (a scheduler's time slot, less a margin); 0: no budget
    exit_after_minutes: float = 0.0
    # write checkpoints in the background (DCP's async save): the loop waits only for a copy of the weights and
    # optimiser state into host memory, which then holds that copy too until the write is done
    async_save: bool = False


@dataclass
class LoggingConfig:
    interval: int = 10  # steps between console and metrics lines; 0: only at the end
    eval_interval: int = 500  # steps between validation passes; 0: only at the end
    eval_batches: int = 20  # micro-batches per source per validation pass
    tensorboard: bool = True  # when the tensorboard package is installed
    wandb: bool = False  # also to Weights & Biases (pip install wandb); the run's files under RUN/wandb
    wandb_project: str = "lmforge"
    wandb_mode: str = ""  # online, offline or disabled; empty: W&B's own choice (WANDB_MODE, else online)
    peak_flops: float = 0.0  # per device, for MFU; 0: looked up from the accelerator's name
    sample_tokens: int = 40  # a sample of this many tokens at each validation pass (single process); 0: none
    sample_prompt: str = ""  # the sample's prompt (empty: the start of a document)


@dataclass
class EvalConfig:
    """Benchmark tasks scored during training (`train.tasks`), as `python -m train.eval --task` scores them."""

    tasks: list[str] = field(default_factory=list)  # NAME=FORMAT:PATH, e.g. "piqa=piqa:evals/piqa/valid.jsonl"
    interval: int = 0  # steps between task evaluations; 0: only at the end
    limit: int = 0  # the first N items of each task (0: all)
    batch_size: int = 16  # pairs per forward pass


@dataclass
class RunConfig:
    dir: str = "runs/default"


@dataclass
class ParallelConfig:
    """How a torchrun job splits the work; data parallelism is what is left: dp = world size / tp."""

    tp: int = 1  # tensor-parallel degree: attention heads and the MLP split over this many devices
    fsdp: bool = False  # shard parameters, gradients and optimiser state over dp (FSDP2) instead of replicating
    sequence_parallel: bool = False  # with tp > 1: norms and residuals split along the sequence, less memory
    timeout_seconds: float = 600.0  # a collective waiting longer than this ends the job (a rank hung or died)


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def check(self) -> None:
        """Cross-field rules; raises ConfigError naming the setting."""
        t = self.training
        if not self.data.sources:
            raise ConfigError("data.sources: at least one bin directory is needed")
        if not self.data.tokenizer:
            raise ConfigError("data.tokenizer: the tokenizer directory is needed (generation uses it)")
        if any(s.weight <= 0 for s in self.data.sources):
            raise ConfigError("data.sources: every weight must be positive")
        names = [s.name for s in self.data.sources]
        if len(set(names)) != len(names):
            raise ConfigError(f"data.sources: names must differ, got {names}")
        if self.data.seq_len > self.model.max_seq_len:
            raise ConfigError(
                f"data.seq_len ({self.data.seq_len}) exceeds model.max_seq_len ({self.model.max_seq_len})"
            )
        per_micro = t.micro_batch_size * self.data.seq_len
        if t.batch_tokens <= 0 or t.batch_tokens % per_micro:
            raise ConfigError(
                f"training.batch_tokens ({t.batch_tokens}) must be a multiple of micro_batch_size × "
                f"data.seq_len ({per_micro})"
            )
        for name, value, allowed in (
            ("training.on_nonfinite", t.on_nonfinite, ("stop", "skip")),
            ("training.dtype", t.dtype, ("auto", "float32", "bfloat16")),
            ("schedule.kind", self.schedule.kind, ("cosine", "wsd", "constant")),
            ("training.activation_checkpointing", t.activation_checkpointing, ("none", "selective", "full")),
            ("logging.wandb_mode", self.logging.wandb_mode, ("", "online", "offline", "disabled")),
        ):
            if value not in allowed:
                raise ConfigError(f"{name}: {value!r} is not one of {', '.join(allowed)}")
        if t.steps <= 0 or self.schedule.warmup_steps < 0 or self.checkpoint.keep < 1:
            raise ConfigError(
                "training.steps must be positive, schedule.warmup_steps non-negative, checkpoint.keep ≥ 1"
            )
        counts: tuple[tuple[str, float], ...] = (
            ("checkpoint.interval", self.checkpoint.interval),
            ("checkpoint.exit_at_step", self.checkpoint.exit_at_step),
            ("checkpoint.exit_after_minutes", self.checkpoint.exit_after_minutes),
            ("logging.interval", self.logging.interval),
            ("logging.eval_interval", self.logging.eval_interval),
            ("logging.sample_tokens", self.logging.sample_tokens),
            ("eval.interval", self.eval.interval),
            ("eval.limit", self.eval.limit),
        )
        for name, number in counts:
            if number < 0:
                raise ConfigError(f"{name} ({number}) must not be negative (0 means only at the end, or never)")
        for task in self.eval.tasks:
            try:
                parse_spec(task)
            except TaskError as exc:
                raise ConfigError(f"eval.tasks: {exc}")
        if t.spike_sigmas < 0 or t.spike_window < 2 or not 2 <= t.spike_min_history <= t.spike_window:
            raise ConfigError(
                "training.spike_sigmas must not be negative, spike_window at least 2, spike_min_history between 2 "
                "and spike_window"
            )
        if self.eval.batch_size < 1:
            raise ConfigError(f"eval.batch_size ({self.eval.batch_size}) must be at least 1")
        if self.logging.eval_batches < 1:
            raise ConfigError(f"logging.eval_batches ({self.logging.eval_batches}) must be at least 1")
        if len(self.optim.betas) != 2:
            raise ConfigError("optim.betas: two numbers, e.g. [0.9, 0.95]")
        if self.parallel.tp < 1 or self.parallel.timeout_seconds <= 0:
            raise ConfigError("parallel.tp must be at least 1 and parallel.timeout_seconds positive")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load(path: str | None, overrides: Sequence[tuple[str, object]] = ()) -> Config:
    table: dict = load_toml(path, "--config") if path else {}
    for name, value in overrides:
        set_dotted(table, name, value)
    config = build(Config, table)
    for source in config.data.sources:
        source.name = source.name or source.path.rstrip("/").rsplit("/", 1)[-1]
    return config


def describe() -> str:
    """Every setting with its default, one section per line, for --help."""
    return "\n".join(describe_section(name, section) for name, section in vars(Config()).items())


def save(config: Config, path: str) -> None:
    with open(path, "wb") as handle:
        tomli_w.dump(config.to_dict(), handle)

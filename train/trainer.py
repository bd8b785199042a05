"""The training loop: batches from the bins, gradient accumulation to a fixed number of tokens per step,
AdamW with warm-up and decay, clipping, validation, checkpoints, and a stop (or a skipped step) on a loss that
is not finite."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model import Transformer
from tokenizer.encoding import Encoder
from train import checkpoint, parallel, report
from train.config import Config, ConfigError, save as save_config
from train.data import Corpus, Prefetcher, validation_batches
from train.generate import complete
from train.metrics import MetricsLog, Throughput, peak_flops, start_wandb
from train.optim import SpikeGuard, build_optimizer, lr_factor, set_lr
from train.tasks import PeriodicTasks

log = logging.getLogger("train")

VOCAB_PADDING = 128  # a vocabulary padded to a multiple of 128 keeps the head's matmul on fast tensor-core tiles


class NonFiniteLoss(RuntimeError):
    pass


def due(step: int, interval: int) -> bool:
    """Whether an every-`interval`-steps action falls on `step`; interval 0 means only at the end."""
    return interval > 0 and step % interval == 0


class Budget:
    """checkpoint.exit_after_minutes: the wall-clock time this process may run. The run stops after the step
    at which the next step plus a checkpoint (as long as the last ones took) would not fit any more."""

    def __init__(self, minutes: float):
        self.end = time.monotonic() + minutes * 60 if minutes > 0 else math.inf

    def exhausted(self, step_seconds: float, checkpoint_seconds: float) -> bool:
        return time.monotonic() + step_seconds + checkpoint_seconds >= self.end


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"training.device: {name} requested but CUDA is not available")
    return device


def autocast_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain float32 (weights stay float32 either way)."""
    if name == "bfloat16" or (name == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def precision_context(name: str, device: torch.device):
    """A no-argument callable giving the context that forward passes run in: bf16 autocast or nothing."""
    dtype = autocast_dtype(name, device)
    return (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext


def resolve_vocab(config: Config, tokenizer_vocab: int) -> None:
    if config.model.vocab_size == 0:
        config.model.vocab_size = VOCAB_PADDING * math.ceil(tokenizer_vocab / VOCAB_PADDING)
    elif config.model.vocab_size < tokenizer_vocab:
        raise ConfigError(
            f"model.vocab_size ({config.model.vocab_size}) is smaller than the tokenizer's "
            f"vocabulary ({tokenizer_vocab}); set it to 0 to follow the tokenizer"
        )


def loss_of(model, batch: torch.Tensor) -> torch.Tensor:
    logits = model(batch[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten())


@torch.no_grad()
def evaluate(model, corpus: Corpus, config: Config, layout: parallel.Layout, amp) -> dict:
    """Mean validation loss per source, and their mixture-weighted mean as `val.loss`. The batches are dealt
    round-robin to the dp ranks; every rank runs the same number of forward passes (a rank short of a batch
    repeats the first one and ignores it), which sharded parameters need."""
    model.eval()
    result, weighted, weight_sum = {}, 0.0, 0.0
    for name, weight, reader in zip(corpus.names, corpus.weights, corpus.val):
        batches = list(
            validation_batches(
                reader, config.data.seq_len, config.training.micro_batch_size, config.logging.eval_batches
            )
        )
        sums = torch.zeros(2, dtype=torch.float64, device=layout.device)  # loss × rows, rows
        for first in range(0, len(batches), layout.dp):
            index = first + layout.dp_rank
            batch = batches[index] if index < len(batches) else batches[0]
            with parallel.loss_context(layout), amp():
                loss = parallel.full_value(loss_of(model, batch.to(layout.device)))
            if index < len(batches):
                sums += torch.stack(
                    [loss.double() * len(batch), torch.tensor(len(batch), dtype=torch.float64, device=layout.device)]
                )
        total, rows = parallel.sum_over_dp(layout, sums).tolist()
        if rows:
            result[f"val.{name}"] = total / rows
            weighted += weight * result[f"val.{name}"]
            weight_sum += weight
    if weight_sum:
        result["val.loss"] = weighted / weight_sum
    parallel.reshard(model)
    model.train()
    return result


class Sampler:
    """A short sample at each validation pass, so that a run's progress can be read. One process only: a sharded
    model would need every rank in each generation step."""

    def __init__(self, config: Config):
        self.encoder = Encoder(config.data.tokenizer)
        self.prompt = config.logging.sample_prompt
        self.tokens = config.logging.sample_tokens
        self.seed = config.training.seed

    def __call__(self, model) -> str:
        # eagerly: generation's shapes change with every token, and compiled blocks would recompile for each
        with torch.compiler.set_stance("force_eager"):
            text = complete(model, self.encoder, self.prompt, self.tokens, seed=self.seed)
        model.train()
        return text


def _prepare_run_dir(config: Config, resume: str) -> str | None:
    """Creates the run directory; returns the checkpoint to resume from, if any."""
    run_dir = config.run.dir
    os.makedirs(run_dir, exist_ok=True)
    newest = checkpoint.latest(run_dir)
    if resume == "auto":
        start = newest
    elif resume in ("", "never"):
        if newest is not None:
            raise ConfigError(
                f"run.dir {run_dir} already has checkpoints (newest {newest}); pass --resume auto to "
                "continue it or choose another --run.dir"
            )
        start = None
    else:
        start = checkpoint.resolve(resume)
        checkpoint.set_aside_future(run_dir, start)
    tokenizer_copy = os.path.join(run_dir, "tokenizer")
    os.makedirs(tokenizer_copy, exist_ok=True)
    for name in ("tokenizer.json", "meta.json"):
        shutil.copyfile(os.path.join(config.data.tokenizer, name), os.path.join(tokenizer_copy, name))
    save_config(config, os.path.join(run_dir, "config.toml"))
    return start


class _StopRequest:
    """SIGTERM (a scheduler's preemption) ends the run after the current step with a checkpoint."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def _handle(self, signum, frame):
        log.warning("SIGTERM: stopping after this step with a checkpoint")
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def train(config: Config, resume: str = "never") -> dict:
    """Runs (or continues) the configured training in this process, one of a torchrun job or alone; returns a
    summary of the run."""
    config.check()
    t = config.training
    device = resolve_device(t.device)
    corpus = Corpus(config.data)
    resolve_vocab(config, corpus.vocab_size)
    parallel.check_layout(config, parallel.world_size_from_env())
    budget = Budget(config.checkpoint.exit_after_minutes)  # counted from here: the process's own start is close
    layout = parallel.init(config.parallel, device)
    try:
        summary = _train(config, resume, corpus, layout, budget)
    except BaseException as exc:
        traceback.clear_frames(exc.__traceback__)  # the model in _train's frame must not outlive the job
        # NonFiniteLoss and ConfigError are reached by every rank alike: the same step, the same settings
        parallel.shutdown(layout, together=isinstance(exc, (NonFiniteLoss, ConfigError)))
        raise
    parallel.shutdown(layout, together=True)
    return summary


@dataclass
class StepResult:
    """What one optimiser step left, agreed by every rank."""

    loss: float
    grad_norm: float
    finite: bool  # loss and gradient norm finite; else the update was skipped
    stop_requested: bool  # SIGTERM or the wall-clock budget, on any rank
    out_of_time: bool


class Trainer:
    """One process's part of a run: the model in its layout, the optimiser, the batches and the counters that
    trainer.json records, built fresh or from the checkpoint `start_from`. `train_step` is one optimiser step and
    `forward_backward_step` one micro-batch of it (torchtitan's split); the periodic work around the steps is in
    `Periodic`s."""

    def __init__(self, config: Config, corpus: Corpus, layout: parallel.Layout, start_from: str | None):
        t, device = config.training, layout.device
        self.config, self.corpus, self.layout = config, corpus, layout
        torch.manual_seed(t.seed)
        with torch.device("meta"):  # no rank ever holds the whole model: it is made in its shards (torchtitan's order)
            self.model = Transformer(config.model)
        self.flops_per_token = self.model.flops_per_token(config.data.seq_len)
        self.parameters = self.model.num_params(), self.model.num_params(embedding=False)
        self.dtype = autocast_dtype(t.dtype, device)
        # bf16 compute over float32 master weights: FSDP2's mixed-precision policy when dp > 1, else autocast
        parallel.parallelize(self.model, layout, config.parallel, t.compile, self.dtype, t.activation_checkpointing)
        parallel.materialize(self.model, device, t.seed)  # the same initial weights on every rank and in every layout
        self.amp = precision_context(t.dtype if parallel.autocast_needed(layout) else "float32", device)
        self.optimizer = build_optimizer(self.model, config.optim, device)
        loader = corpus.loader(config.data.seq_len, t.micro_batch_size, t.seed, layout.dp_rank, layout.dp)
        self.step, self.tokens_seen = 0, 0
        self.skipped = 0  # consecutive non-finite steps
        self.spikes = 0
        self.spike_guard = SpikeGuard(t.spike_sigmas, t.spike_window, t.spike_min_history)
        if start_from is not None:
            self._resume(start_from, loader)
        self.accumulation = t.batch_tokens // (t.micro_batch_size * config.data.seq_len * layout.dp)
        self.throughput = Throughput()
        self.batches = Prefetcher(loader, pin=device.type == "cuda")

    def _resume(self, start_from: str, loader) -> None:
        saved = checkpoint.load_config(start_from)
        if saved.model != self.config.model:
            raise ConfigError(f"the model settings differ from the checkpoint's ({start_from}/config.toml)")
        checkpoint.load_weights(start_from, self.model)
        state = checkpoint.load_training_state(start_from, self.model, self.optimizer, self.layout)
        loader.load_state_dict(state["data"])
        self.step, self.tokens_seen = state["step"], state["tokens"]
        self.skipped = state.get("skipped_steps", 0)  # a run of skipped steps goes on counting across a resume
        self.spikes = state.get("spikes_skipped", 0)
        self.spike_guard.load_state_dict(state.get("spike_guard", {}))
        log.info("resuming from %s (step %d)", start_from, self.step)

    def describe(self) -> str:
        t, layout, parallel_config = self.config.training, self.layout, self.config.parallel
        text = (
            f"model: {self.parameters[0] / 1e6:.2f}M parameters ({self.parameters[1] / 1e6:.2f}M without the "
            f"embedding), {self.flops_per_token:.3g} FLOPs per token; {self.accumulation} micro-batches of "
            f"{t.micro_batch_size} × {self.config.data.seq_len} per step on each of {layout.dp} data-parallel "
            f"ranks; device {layout.device}{', bf16 compute' if self.dtype else ''}"
        )
        if layout.distributed:
            text += (
                f"; {layout.world_size} processes: dp {layout.dp} × tp {layout.tp}"
                f"{', FSDP' if parallel_config.fsdp else ''}"
                f"{', sequence parallel' if parallel_config.sequence_parallel and layout.tp > 1 else ''}"
            )
        return text

    def state_dict(self) -> dict:
        """trainer.json: where the run is, for a resume."""
        return {
            "step": self.step,
            "tokens": self.tokens_seen,
            "skipped_steps": self.skipped,
            "spikes_skipped": self.spikes,
            "spike_guard": self.spike_guard.state_dict(),
            "data": self.batches.state_dict(),
            "schedule": {"kind": self.config.schedule.kind, "lr": self.optimizer.param_groups[0]["lr"]},
        }

    def forward_backward_step(self, batch: torch.Tensor, last: bool) -> torch.Tensor:
        """One micro-batch's loss and its share of the gradient; the gradients are reduced over dp on the last."""
        parallel.set_gradient_sync(self.model, last)  # before the forward pass
        with parallel.loss_context(self.layout):
            with self.amp():
                loss = parallel.full_value(loss_of(self.model, batch))
            (loss / self.accumulation).backward()
        return loss.detach()

    def train_step(self, metrics: MetricsLog, wants_stop: Callable[[], tuple[bool, bool]]) -> StepResult:
        """One optimiser step over `accumulation` micro-batches, or a step whose update is skipped: a loss spike
        (counted), or a loss or gradient norm that is not finite (stops the run, or is counted and skipped).
        `wants_stop()`, asked once the gradients are in: (this rank wants to stop, because it is out of time)."""
        t, device = self.config.training, self.layout.device
        self.step += 1
        self.throughput.start_step()
        set_lr(self.optimizer, self.config.optim.lr * lr_factor(self.step, t.steps, self.config.schedule))
        loss_sum = torch.zeros((), device=device)
        for micro_step in range(self.accumulation):
            batch = self.batches.next_batch().to(device, non_blocking=True)
            loss_sum += self.forward_backward_step(batch, last=micro_step == self.accumulation - 1)
        grad_norm = parallel.clip_grad_norm_(self.model.parameters(), t.grad_clip if t.grad_clip > 0 else math.inf)
        stop_wanted, out_of_time = wants_stop()
        loss, stop_requested = parallel.agree(self.layout, loss_sum / self.accumulation, stop_wanted)
        norm = grad_norm.item()
        self.tokens_seen += t.batch_tokens
        finite = math.isfinite(loss) and math.isfinite(norm)
        spike = self.spike_guard.spike(loss, norm) if finite else None
        if finite and spike is None:
            self.skipped = 0
            self.optimizer.step()
            self.spike_guard.record(loss, norm)
        elif spike is not None:
            self.spikes += 1
            log.warning("step %d: a spike, update skipped (%d in this run): %s", self.step, self.spikes, spike)
            metrics.write({"step": self.step, "skipped": True, "spike": spike, "spikes_skipped": self.spikes})
        self.optimizer.zero_grad(set_to_none=True)
        self.throughput.end_step(t.batch_tokens)
        if not finite:
            self._skip_nonfinite(metrics, loss, norm)
        metrics.advance(loss=loss if finite else None)
        return StepResult(loss, norm, finite, stop_requested, out_of_time)

    def _skip_nonfinite(self, metrics: MetricsLog, loss: float, norm: float) -> None:
        t = self.config.training
        self.skipped += 1
        if t.on_nonfinite == "stop" or self.skipped > t.max_skipped_steps:
            why = (
                ""
                if t.on_nonfinite == "stop"
                else f" after {self.skipped} consecutive skipped steps (training.max_skipped_steps)"
            )
            raise NonFiniteLoss(
                f"step {self.step}: not finite: loss {loss}, gradient norm {norm}{why}; stopped without writing a "
                "checkpoint for it. Lower optim.lr, raise schedule.warmup_steps or check the data; "
                'training.on_nonfinite = "skip" drops such steps instead'
            )
        log.warning(
            "step %d: not finite: loss %s, gradient norm %s; update skipped (%d in a row)",
            self.step,
            loss,
            norm,
            self.skipped,
        )
        metrics.write({"step": self.step, "skipped": True, "nonfinite": f"loss {loss}, grad norm {norm}"})

    def close(self) -> None:
        self.batches.close()


class Periodic:
    """Work done every `interval` steps (0: never) and after the last step. A skipped step writes no loss line,
    but validation, tasks and checkpoints happen on it as on any other."""

    interval = 0

    def due(self, step: int, last: bool) -> bool:
        return last or due(step, self.interval)

    def __call__(self, trainer: Trainer, result: StepResult) -> None:
        raise NotImplementedError


class StepLog(Periodic):
    """The loss line: metrics.jsonl, TensorBoard and the console."""

    def __init__(self, config: Config, metrics: MetricsLog, peak: float):
        self.interval, self.metrics, self.peak = config.logging.interval, metrics, peak

    def __call__(self, trainer: Trainer, result: StepResult) -> None:
        if not result.finite:
            return
        layout = trainer.layout
        record = {
            "step": trainer.step,
            "loss": result.loss,
            "lr": trainer.optimizer.param_groups[0]["lr"],
            "grad_norm": result.grad_norm,
            "tokens": trainer.tokens_seen,
            "tokens_per_second": trainer.throughput.take(),
        }
        if self.peak:
            record["mfu"] = trainer.flops_per_token * record["tokens_per_second"] / (self.peak * layout.world_size)
        if layout.device.type == "cuda":  # rank 0's; the ranks of a balanced layout are alike
            record["peak_memory_gb"] = torch.cuda.max_memory_allocated(layout.device) / 1e9
        self.metrics.write(record)
        self.metrics.step_line(record)


class Validation(Periodic):
    """Validation loss per source, and a sample of text when the run is one process."""

    def __init__(self, config: Config, metrics: MetricsLog, layout: parallel.Layout):
        self.interval, self.metrics = config.logging.eval_interval, metrics
        self.sampler = Sampler(config) if config.logging.sample_tokens and layout.world_size == 1 else None
        self.last: dict = {}

    def __call__(self, trainer: Trainer, result: StepResult) -> None:
        step = trainer.step
        self.last = evaluate(trainer.model, trainer.corpus, trainer.config, trainer.layout, trainer.amp)
        if self.last:
            self.metrics.write({"step": step, **self.last})
            per_source = ", ".join(f"{k[4:]} {v:.4f}" for k, v in self.last.items() if k != "val.loss")
            self.metrics.line(f"step {step:>6} | validation loss {self.last['val.loss']:.4f} ({per_source})")
        if self.sampler is not None:
            text = self.sampler(trainer.model)
            self.metrics.write({"step": step, "sample": text})
            self.metrics.line(f"step {step:>6} | sample {text!r}")


class TaskEvaluation(Periodic):
    """The `[eval]` benchmark tasks, read and encoded before the first step (a missing or malformed file stops the
    run now)."""

    def __init__(self, config: Config, metrics: MetricsLog):
        self.interval, self.metrics = config.eval.interval, metrics
        try:
            self.tasks = PeriodicTasks(
                config.eval.tasks, Encoder(config.data.tokenizer), config.eval.limit, config.eval.batch_size
            )
        except ValueError as exc:  # TaskError too
            raise ConfigError(f"eval.tasks: {exc}")

    def __call__(self, trainer: Trainer, result: StepResult) -> None:
        scores = self.tasks(trainer.model, trainer.layout, trainer.amp)
        self.metrics.write({"step": trainer.step, **scores})
        self.metrics.line(f"step {trainer.step:>6} | {PeriodicTasks.describe(scores)}")


class Checkpoints(Periodic):
    """A checkpoint at its interval, at the end, and before an early stop (checkpoint.exit_at_step, SIGTERM, the
    wall-clock budget); `stop` says whether the run ends here."""

    def __init__(self, config: Config, metrics: MetricsLog, layout: parallel.Layout):
        c = config.checkpoint
        self.interval, self.config, self.metrics = c.interval, config, metrics
        self.writer = checkpoint.Checkpointer(config.run.dir, c.keep, layout, background=c.async_save)
        self.last: str | None = None

    def exit_now(self, trainer: Trainer, result: StepResult) -> bool:
        return trainer.step == self.config.checkpoint.exit_at_step or result.stop_requested

    def __call__(self, trainer: Trainer, result: StepResult) -> None:
        self.last = self.writer.save(trainer.step, trainer.model, trainer.optimizer, trainer.state_dict(), self.config)
        self.metrics.write(
            {"step": trainer.step, "checkpoint": self.last, "checkpoint_stall_seconds": self.writer.stall_seconds}
        )

    def seconds(self) -> float:
        """What a checkpoint costs the run's wall clock, for the budget: a whole write, as the last one at the end
        of a run waits for it."""
        return max(self.writer.stall_seconds, self.writer.write_seconds)


def _train(config: Config, resume: str, corpus: Corpus, layout: parallel.Layout, budget: Budget) -> dict:
    t = config.training
    if not layout.is_main:
        logging.getLogger("train").setLevel(logging.WARNING)
    start_from = parallel.on_main(layout, _prepare_run_dir, config, resume)
    trainer = Trainer(config, corpus, layout, start_from)
    log.info("%s", trainer.describe())
    logging_config, wandb_runs = config.logging, []

    def start_wandb_run() -> None:
        wandb_runs.append(
            start_wandb(config.run.dir, logging_config.wandb_project, logging_config.wandb_mode, config.to_dict())
        )

    if logging_config.wandb:  # by rank 0, and its error raised on every rank: they stop together
        parallel.on_main(layout, start_wandb_run)
    metrics = MetricsLog(
        config.run.dir,
        t.steps,
        trainer.step,
        logging_config.tensorboard,
        enabled=layout.is_main,
        wandb=wandb_runs[0] if wandb_runs else None,
    )
    validation = Validation(config, metrics, layout)
    checkpoints = Checkpoints(config, metrics, layout)
    periodic: list[Periodic] = [StepLog(config, metrics, peak_flops(layout.device, config.logging.peak_flops))]
    periodic.append(validation)
    if config.eval.tasks:
        periodic.append(TaskEvaluation(config, metrics))
    stopped_early, failed = False, False
    try:
        with _StopRequest() as stop:

            def wants_stop() -> tuple[bool, bool]:
                out_of_time = budget.exhausted(trainer.throughput.last_step_seconds, checkpoints.seconds())
                return stop.requested or out_of_time, out_of_time

            while trainer.step < t.steps:
                result = trainer.train_step(metrics, wants_stop)
                last = trainer.step == t.steps
                for work in periodic:
                    if work.due(trainer.step, last):
                        work(trainer, result)
                exit_now = checkpoints.exit_now(trainer, result)
                if checkpoints.due(trainer.step, last) or exit_now:
                    checkpoints(trainer, result)
                if exit_now and not last:
                    _log_early_stop(config, trainer.step, result, checkpoints.last)
                    stopped_early = True
                    break
            checkpoints.writer.wait()  # the last checkpoint is complete before the run says it is done
    except BaseException:
        failed = True
        checkpoints.writer.close(quiet=True)  # the run's own error is the one to raise
        raise
    finally:
        checkpoints.writer.close()
        trainer.close()
        metrics.close(failed)
    report_path = report.write(config.run.dir) if layout.is_main else None
    return {
        "step": trainer.step,
        "tokens": trainer.tokens_seen,
        "checkpoint": checkpoints.last,
        "report": report_path,
        "stopped_early": stopped_early,
        "spikes_skipped": trainer.spikes,
        "is_main": layout.is_main,
        **validation.last,
    }


def _log_early_stop(config: Config, step: int, result: StepResult, last_checkpoint: str | None) -> None:
    if result.out_of_time:
        log.info(
            "checkpoint.exit_after_minutes (%g): the next step and a checkpoint would not fit",
            config.checkpoint.exit_after_minutes,
        )
    log.info("stopping at step %d with checkpoint %s; continue with --resume auto", step, last_checkpoint)

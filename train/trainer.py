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

import torch
import torch.nn.functional as F

from model import Transformer
from tokenizer.encoding import Encoder
from train import checkpoint, parallel, report
from train.config import Config, ConfigError, save as save_config
from train.data import Corpus, Prefetcher, validation_batches
from train.generate import complete
from train.metrics import MetricsLog, Throughput, peak_flops
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


def benchmark_tasks(config: Config) -> PeriodicTasks | None:
    """The `[eval]` tasks, read and encoded before the first step (a missing or malformed file stops the run now)."""
    if not config.eval.tasks:
        return None
    try:
        return PeriodicTasks(
            config.eval.tasks, Encoder(config.data.tokenizer), config.eval.limit, config.eval.batch_size
        )
    except ValueError as exc:  # TaskError too
        raise ConfigError(f"eval.tasks: {exc}")


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


def _train(config: Config, resume: str, corpus: Corpus, layout: parallel.Layout, budget: Budget) -> dict:
    t, device = config.training, layout.device
    if not layout.is_main:
        logging.getLogger("train").setLevel(logging.WARNING)
    start_from = parallel.on_main(layout, _prepare_run_dir, config, resume)

    torch.manual_seed(t.seed)
    with torch.device("meta"):  # no rank ever holds the whole model: it is made in its shards (torchtitan's order)
        model = Transformer(config.model)
    flops_per_token = model.flops_per_token(config.data.seq_len)
    parameters = model.num_params(), model.num_params(embedding=False)
    dtype = autocast_dtype(t.dtype, device)
    # bf16 compute over float32 master weights: FSDP2's mixed-precision policy when dp > 1, else autocast
    parallel.parallelize(model, layout, config.parallel, t.compile, dtype, t.activation_checkpointing)
    parallel.materialize(model, device, t.seed)  # the same initial weights on every rank and in every layout
    amp = precision_context(t.dtype if parallel.autocast_needed(layout) else "float32", device)
    optimizer = build_optimizer(model, config.optim, device)
    loader = corpus.loader(config.data.seq_len, t.micro_batch_size, t.seed, layout.dp_rank, layout.dp)
    step, tokens_seen, skipped, spikes = 0, 0, 0, 0
    spike_guard = SpikeGuard(t.spike_sigmas, t.spike_window, t.spike_min_history)
    if start_from is not None:
        saved = checkpoint.load_config(start_from)
        if saved.model != config.model:
            raise ConfigError(f"the model settings differ from the checkpoint's ({start_from}/config.toml)")
        checkpoint.load_weights(start_from, model)
        state = checkpoint.load_training_state(start_from, model, optimizer, layout)
        loader.load_state_dict(state["data"])
        step, tokens_seen = state["step"], state["tokens"]
        skipped = state.get("skipped_steps", 0)  # a run of skipped steps goes on counting across a resume
        spikes = state.get("spikes_skipped", 0)
        spike_guard.load_state_dict(state.get("spike_guard", {}))
        log.info("resuming from %s (step %d)", start_from, step)

    accumulation = t.batch_tokens // (t.micro_batch_size * config.data.seq_len * layout.dp)
    peak = peak_flops(device, config.logging.peak_flops)
    log.info(
        "model: %.2fM parameters (%.2fM without the embedding), %.3g FLOPs per token; %d micro-batches of "
        "%d × %d per step on each of %d data-parallel ranks; device %s%s%s",
        parameters[0] / 1e6,
        parameters[1] / 1e6,
        flops_per_token,
        accumulation,
        t.micro_batch_size,
        config.data.seq_len,
        layout.dp,
        device,
        ", bf16 compute" if dtype else "",
        f"; {layout.world_size} processes: dp {layout.dp} × tp {layout.tp}"
        f"{', FSDP' if config.parallel.fsdp else ''}"
        f"{', sequence parallel' if config.parallel.sequence_parallel and layout.tp > 1 else ''}"
        if layout.distributed
        else "",
    )

    metrics = MetricsLog(config.run.dir, t.steps, step, config.logging.tensorboard, enabled=layout.is_main)
    sampler = Sampler(config) if config.logging.sample_tokens and layout.world_size == 1 else None
    task_eval = benchmark_tasks(config)
    last_checkpoint, last_eval, stopped_early = None, {}, False
    throughput, checkpoint_seconds = Throughput(), 0.0
    batches = Prefetcher(loader, pin=device.type == "cuda")

    def trainer_state() -> dict:
        return {
            "step": step,
            "tokens": tokens_seen,
            "skipped_steps": skipped,
            "spikes_skipped": spikes,
            "spike_guard": spike_guard.state_dict(),
            "data": batches.state_dict(),
            "schedule": {"kind": config.schedule.kind, "lr": optimizer.param_groups[0]["lr"]},
        }

    try:
        with _StopRequest() as stop:
            while step < t.steps:
                step += 1
                throughput.start_step()
                set_lr(optimizer, config.optim.lr * lr_factor(step, t.steps, config.schedule))
                loss_sum = torch.zeros((), device=device)
                for micro_step in range(accumulation):
                    batch = batches.next_batch().to(device, non_blocking=True)
                    parallel.set_gradient_sync(model, micro_step == accumulation - 1)  # before the forward pass
                    with parallel.loss_context(layout):
                        with amp():
                            loss = parallel.full_value(loss_of(model, batch))
                        (loss / accumulation).backward()
                    loss_sum += loss.detach()
                grad_norm = parallel.clip_grad_norm_(model.parameters(), t.grad_clip if t.grad_clip > 0 else math.inf)
                out_of_time = budget.exhausted(throughput.last_step_seconds, checkpoint_seconds)
                loss_value, stop_requested = parallel.agree(
                    layout, loss_sum / accumulation, stop.requested or out_of_time
                )
                norm_value = grad_norm.item()
                tokens_seen += t.batch_tokens
                finite = math.isfinite(loss_value) and math.isfinite(norm_value)
                spike = spike_guard.spike(loss_value, norm_value) if finite else None
                if finite and spike is None:
                    skipped = 0
                    optimizer.step()
                    spike_guard.record(loss_value, norm_value)
                elif spike is not None:
                    spikes += 1
                    log.warning("step %d: a spike, update skipped (%d in this run): %s", step, spikes, spike)
                    metrics.write({"step": step, "skipped": True, "spike": spike, "spikes_skipped": spikes})
                optimizer.zero_grad(set_to_none=True)
                throughput.end_step(t.batch_tokens)
                if not finite:
                    skipped += 1
                    if t.on_nonfinite == "stop" or skipped > t.max_skipped_steps:
                        why = (
                            ""
                            if t.on_nonfinite == "stop"
                            else f" after {skipped} consecutive skipped steps (training.max_skipped_steps)"
                        )
                        raise NonFiniteLoss(
                            f"step {step}: not finite: loss {loss_value}, gradient norm {norm_value}{why}; stopped without "
                            "writing a checkpoint for it. Lower optim.lr, raise schedule.warmup_steps or check the "
                            'data; training.on_nonfinite = "skip" drops such steps instead'
                        )
                    log.warning(
                        "step %d: not finite: loss %s, gradient norm %s; update skipped (%d in a row)",
                        step,
                        loss_value,
                        norm_value,
                        skipped,
                    )
                    metrics.write(
                        {"step": step, "skipped": True, "nonfinite": f"loss {loss_value}, grad norm {norm_value}"}
                    )
                metrics.advance(loss=loss_value if finite else None)
                # a skipped step writes no loss line, but validation, checkpoints and stops happen as on any other

                if finite and (due(step, config.logging.interval) or step == t.steps):
                    record = {
                        "step": step,
                        "loss": loss_value,
                        "lr": optimizer.param_groups[0]["lr"],
                        "grad_norm": norm_value,
                        "tokens": tokens_seen,
                        "tokens_per_second": throughput.take(),
                    }
                    if peak:
                        record["mfu"] = flops_per_token * record["tokens_per_second"] / (peak * layout.world_size)
                    if device.type == "cuda":  # rank 0's; the ranks of a balanced layout are alike
                        record["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
                    metrics.write(record)
                    metrics.step_line(record)
                if due(step, config.logging.eval_interval) or step == t.steps:
                    last_eval = evaluate(model, corpus, config, layout, amp)
                    if last_eval:
                        metrics.write({"step": step, **last_eval})
                        per_source = ", ".join(f"{k[4:]} {v:.4f}" for k, v in last_eval.items() if k != "val.loss")
                        metrics.line(f"step {step:>6} | validation loss {last_eval['val.loss']:.4f} ({per_source})")
                    if sampler is not None:
                        text = sampler(model)
                        metrics.write({"step": step, "sample": text})
                        metrics.line(f"step {step:>6} | sample {text!r}")
                if task_eval is not None and (due(step, config.eval.interval) or step == t.steps):
                    scores = task_eval(model, layout, amp)
                    metrics.write({"step": step, **scores})
                    metrics.line(f"step {step:>6} | {PeriodicTasks.describe(scores)}")
                exit_now = step == config.checkpoint.exit_at_step or stop_requested
                if due(step, config.checkpoint.interval) or step == t.steps or exit_now:
                    started = time.perf_counter()
                    last_checkpoint = checkpoint.save(
                        config.run.dir, step, model, optimizer, trainer_state(), config, config.checkpoint.keep, layout
                    )
                    checkpoint_seconds = time.perf_counter() - started
                if exit_now and step < t.steps:
                    if out_of_time:
                        log.info(
                            "checkpoint.exit_after_minutes (%g): the next step and a checkpoint would not fit",
                            config.checkpoint.exit_after_minutes,
                        )
                    log.info(
                        "stopping at step %d with checkpoint %s; continue with --resume auto", step, last_checkpoint
                    )
                    stopped_early = True
                    break
    finally:
        batches.close()
        metrics.close()
    report_path = report.write(config.run.dir) if layout.is_main else None
    return {
        "step": step,
        "tokens": tokens_seen,
        "checkpoint": last_checkpoint,
        "report": report_path,
        "stopped_early": stopped_early,
        "spikes_skipped": spikes,
        "is_main": layout.is_main,
        **last_eval,
    }

"""AdamW with weight decay on matrices only, and the learning-rate schedules."""

from __future__ import annotations

import math

import torch
from torch import nn

from train.config import OptimConfig, ScheduleConfig


def build_optimizer(model: nn.Module, config: OptimConfig, device: torch.device) -> torch.optim.AdamW:
    """Decay for the weight matrices of attention, MLP and an untied head; none for norms and embeddings (a tied
    head is the embedding). Fused kernel on CUDA."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 and id(param) not in embeddings else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(
        groups, lr=config.lr, betas=(config.betas[0], config.betas[1]), eps=config.eps, fused=device.type == "cuda"
    )


def lr_factor(step: int, total_steps: int, config: ScheduleConfig) -> float:
    """Multiplier of optim.lr for optimiser step `step` (1-based): linear warm-up, then cosine decay to
    min_lr_ratio, or warmup-stable-decay (constant, then linear decay over the last decay_fraction of steps)."""
    if step <= config.warmup_steps:
        return step / config.warmup_steps
    if config.kind == "constant":
        return 1.0
    floor = config.min_lr_ratio
    if config.kind == "cosine":
        progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    decay_steps = max(1, round(total_steps * config.decay_fraction))
    decay_start = total_steps - decay_steps
    if step <= decay_start:
        return 1.0
    return floor + (1 - floor) * (1 - min(1.0, (step - decay_start) / decay_steps))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class SpikeGuard:
    """OLMo-core's loss-spike rule: an update is skipped when the step's loss or gradient norm is more than `sigmas`
    standard deviations above the mean of the last `window` updates' (once `min_history` of them are known). Skipped
    steps do not enter the window, so one spike cannot widen it. Its state goes into checkpoints, so a resumed run
    makes the decisions the uninterrupted one makes."""

    def __init__(self, sigmas: float = 6.0, window: int = 128, min_history: int = 32):
        self.sigmas, self.window, self.min_history = sigmas, window, min_history
        self.losses: list[float] = []
        self.norms: list[float] = []

    def spike(self, loss: float, norm: float) -> str | None:
        """Why this step's update should be skipped, or None."""
        if self.sigmas <= 0 or len(self.losses) < self.min_history:
            return None
        for name, value, history in (("loss", loss, self.losses), ("gradient norm", norm, self.norms)):
            mean = sum(history) / len(history)
            spread = math.sqrt(sum((x - mean) ** 2 for x in history) / len(history))
            if value > mean + self.sigmas * spread:
                return (
                    f"{name} {value:.4g} > {mean:.4g} + {self.sigmas:g} × {spread:.3g} (the last {len(history)} steps)"
                )
        return None

    def record(self, loss: float, norm: float) -> None:
        self.losses = [*self.losses, loss][-self.window :]
        self.norms = [*self.norms, norm][-self.window :]

    def state_dict(self) -> dict:
        return {"losses": self.losses, "norms": self.norms}

    def load_state_dict(self, state: dict) -> None:
        self.losses, self.norms = list(state.get("losses", [])), list(state.get("norms", []))

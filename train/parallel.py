"""The parallelism plan, applied to the model from outside (as torchtitan's `parallelize` does), and the few
collectives the training loop needs. Nothing else in lmforge knows about process groups or meshes.

A job of N processes (torchrun sets WORLD_SIZE, RANK, LOCAL_RANK) gets one 2-D device mesh (dp, tp), with
dp = N / parallel.tp:
- tensor parallelism over `tp` (torch.distributed.tensor.parallel): q/k/v and the MLP's gate and up
  projections split by column, the attention output and the MLP's down projection by row, the embedding by
  row, the output head by column with the loss computed on the vocabulary shards (loss parallel), and, with
  parallel.sequence_parallel, the norms and residual stream split along the sequence;
- data parallelism over `dp` (when dp > 1) with FSDP2: `fully_shard` (parallel.fsdp) shards parameters,
  gradients and optimiser state; otherwise its `replicate` keeps a full copy per rank and all-reduces gradients
  (DDP's semantics on FSDP2's machinery, which composes with tensor-parallel DTensors on a 2-D mesh and shares
  the mixed-precision policy).
One process (plain `python -m train`, or WORLD_SIZE=1) builds no process group and applies nothing but
compilation.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed._composable.replicate_with_fsdp import replicate
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    PrepareModuleInput,
    RowwiseParallel,
    SequenceParallel,
    loss_parallel,
    parallelize_module,
)
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts, noop_context_fn

from model import Transformer
from train.config import Config, ConfigError, ParallelConfig

log = logging.getLogger(__name__)


@dataclass
class Layout:
    """Where this process sits in the job."""

    device: torch.device
    world_size: int = 1
    rank: int = 0
    tp: int = 1
    mesh: DeviceMesh | None = None  # dims ("dp", "tp"), in a job of several processes

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def dp(self) -> int:
        return self.world_size // self.tp

    @property
    def dp_rank(self) -> int:
        return self.submesh("dp").get_local_rank() if self.distributed else 0

    def submesh(self, name: str) -> DeviceMesh:
        """The "dp" or "tp" dimension of the job's mesh; a single process has none."""
        assert self.mesh is not None, "a single process has no device mesh"
        return self.mesh[name]


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_layout(config: Config, world_size: int) -> None:
    """The rules a layout must meet, checked before any process group or model exists (some of them otherwise
    surface as a gloo abort or a silent misfit deep inside a collective). Raises ConfigError naming the setting."""
    tp, model = config.parallel.tp, config.model
    if world_size % tp:
        raise ConfigError(f"parallel.tp ({tp}) must divide the number of processes ({world_size})")
    for name, value in (
        ("model.n_heads", model.n_heads),
        ("model.n_kv_heads", model.kv_heads),
        ("the MLP width (model.ffn_hidden_dim)", model.hidden_dim),
        ("model.vocab_size", model.vocab_size),
    ):
        if value % tp:
            raise ConfigError(f"parallel.tp ({tp}) must divide {name} ({value})")
    if config.parallel.sequence_parallel and config.data.seq_len % tp:
        raise ConfigError(
            f"data.seq_len ({config.data.seq_len}) must be a multiple of parallel.tp ({tp}) with "
            "parallel.sequence_parallel"
        )
    dp = world_size // tp
    per_step = config.training.micro_batch_size * config.data.seq_len * dp
    if config.training.batch_tokens % per_step:
        raise ConfigError(
            f"training.batch_tokens ({config.training.batch_tokens}) must be a multiple of "
            f"micro_batch_size × data.seq_len × dp ({config.training.micro_batch_size} × "
            f"{config.data.seq_len} × {dp} = {per_step})"
        )


def init(parallel: ParallelConfig, device: torch.device) -> Layout:
    """Joins the job torchrun started (NCCL on CUDA, with gloo beside it for CPU tensors; gloo on CPU) and
    builds the (dp, tp) mesh; a one-process run returns a Layout without either."""
    world_size = world_size_from_env()
    if world_size == 1:
        return Layout(device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "cuda:nccl,cpu:gloo"
    else:
        backend = "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=parallel.timeout_seconds))
    mesh = init_device_mesh(device.type, (world_size // parallel.tp, parallel.tp), mesh_dim_names=("dp", "tp"))
    return Layout(device=device, world_size=world_size, rank=rank, tp=parallel.tp, mesh=mesh)


def shutdown(layout: Layout, together: bool) -> None:
    """Leaves the job. `together`: every rank is here at the same point (the run ended, or all ranks raised the
    same agreed error), so they wait for each other first; after an error of this rank alone there is no waiting:
    its peers may be inside another collective, and torchrun ends them.

    The process groups are gone when this returns, their gloo threads joined. `destroy_process_group` only
    forgets them: the meshes (the layout's, and the copies DTensor's caches and compiled graphs keep) hold them
    until the interpreter exits, and a gloo thread still alive then that needs the GIL of a finalising
    interpreter aborts the process ("terminate called without an active exception", exit -6) after a run that
    checkpointed. So the caller has dropped the model (`traceback.clear_frames` after an error), and here the
    compiled graphs and every mesh's hold on the groups go before the groups are destroyed: destroying them then
    joins their threads (tests/teardown_worker.py checks that none is left)."""
    if layout.distributed and dist.is_initialized():
        if together:
            dist.barrier()
        layout.mesh = None
        torch.compiler.reset()  # compiled graphs hold the groups they call
        # torch's DTensor caches keep meshes for good, and compiling copies them (a compiled TP model leaves
        # dozens): a mesh's registry is what holds the groups, so every mesh's goes
        for mesh in [o for o in gc.get_objects() if issubclass(type(o), DeviceMesh)]:  # type(): weak proxies too
            mesh._pg_registry.clear()
        gc.collect()
        dist.destroy_process_group()


def apply_tensor_parallel(model: Transformer, tp_mesh, sequence_parallel: bool) -> None:
    """Megatron's split of every block, with the embedding and head split over the vocabulary. The head's
    output stays a DTensor sharded over the vocabulary, so the loss must run under `loss_context`."""
    residual = Shard(1) if sequence_parallel else Replicate()  # the layout between blocks
    root_plan = {
        "tok_embeddings": RowwiseParallel(input_layouts=Replicate(), output_layouts=residual),
        "output": ColwiseParallel(input_layouts=residual, output_layouts=Shard(-1), use_local_output=False),
    }
    if sequence_parallel:
        root_plan["norm"] = SequenceParallel()
    parallelize_module(model, tp_mesh, root_plan)
    for block in model.layers:
        plan = {
            "attention.wq": ColwiseParallel(),
            "attention.wk": ColwiseParallel(),
            "attention.wv": ColwiseParallel(),
            "attention.wo": RowwiseParallel(output_layouts=residual),
            "feed_forward.w1": ColwiseParallel(),
            "feed_forward.w3": ColwiseParallel(),
            "feed_forward.w2": RowwiseParallel(output_layouts=residual),
        }
        if sequence_parallel:
            plan.update(
                {
                    "attention_norm": SequenceParallel(),
                    "ffn_norm": SequenceParallel(),
                    # attention(x, freqs, cache, layer) and feed_forward(x) see the whole sequence
                    "attention": PrepareModuleInput(
                        input_layouts=(Shard(1), None, None, None),
                        desired_input_layouts=(Replicate(), None, None, None),
                    ),
                    "feed_forward": PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),)),
                }
            )
        parallelize_module(block, tp_mesh, plan)
    if model.config.tie_embeddings:  # each plan distributed its own copy of the shared weight; share it again
        model.output.weight = model.tok_embeddings.weight


# What selective activation checkpointing keeps from the forward pass: the outputs of the matrix multiplies, of
# attention and of the tensor-parallel reductions; the cheap element-wise work between them (norms, rotary, SwiGLU's
# gate) is recomputed in the backward pass. torchtitan's "op" policy, without its every-other-matmul refinement.
_SAVED_OPS = {
    torch.ops.aten.mm.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten.bmm.default,
    torch.ops.aten._scaled_dot_product_flash_attention.default,
    torch.ops.aten._scaled_dot_product_efficient_attention.default,
    torch.ops.aten._scaled_dot_product_cudnn_attention.default,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default,
    torch.ops._c10d_functional.reduce_scatter_tensor.default,
    torch.ops._c10d_functional.all_reduce.default,
}


def _selective_policy(ctx, op, *args, **kwargs):
    return CheckpointPolicy.MUST_SAVE if op in _SAVED_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def _checkpointed(forward, context_fn, *args, **kwargs):
    if not torch.is_grad_enabled():  # validation and generation: nothing to save
        return forward(*args, **kwargs)
    return checkpoint(forward, *args, use_reentrant=False, context_fn=context_fn, **kwargs)


def apply_activation_checkpointing(model: Transformer, mode: str) -> None:
    """training.activation_checkpointing: "full" keeps only each block's input and recomputes the block in the
    backward pass; "selective" keeps the matmuls' and attention's outputs (_SAVED_OPS) and recomputes the rest.
    The block's forward is wrapped in place, so parameter names (and checkpoints) are unchanged."""
    if mode == "none":
        return
    context_fn = (
        functools.partial(create_selective_checkpoint_contexts, _selective_policy)
        if mode == "selective"
        else noop_context_fn
    )
    for block in model.layers:
        block.forward = functools.partial(_checkpointed, block.forward, context_fn)
    log.info("activation checkpointing: %s, %d blocks", mode, len(model.layers))


def apply_compile(model: Transformer, layout: Layout) -> None:
    """torch.compile each block in place (parameter names unchanged; one graph reused by every block).

    With tensor parallelism on CPU (torch 2.13), compiled blocks silently drop the gradient that flows back into
    the embedding, and compiling the whole model fails under FSDP2's hooks: there the whole model is compiled
    when it has no data-parallel wrapper (dp = 1), and nothing otherwise, saying so in the log."""
    if layout.tp > 1 and layout.device.type == "cpu":
        if layout.dp > 1:
            log.warning(
                "torch.compile is off: with tensor parallelism on CPU, compiled blocks lose the embedding's "
                "gradient and a compiled whole model fails under FSDP2 (torch 2.13); training runs eagerly"
            )
            return
        log.info(
            "torch.compile: the whole model, not each block (with tensor parallelism on CPU, compiled blocks "
            "lose the embedding's gradient in torch 2.13)"
        )
        model.compile()
        return
    for block in model.layers:
        block.compile()


def apply_data_parallel(model: Transformer, dp_mesh, shard: bool, param_dtype: torch.dtype | None) -> None:
    """FSDP2 over dp: each block is one unit (its parameters gathered for its forward and backward), the
    embedding, final norm and head the root's. bf16 compute keeps float32 master weights and reduces gradients in
    float32. Forward inputs are not cast: the rotary table that every block receives must stay float32."""
    wrap = fully_shard if shard else replicate
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32, cast_forward_inputs=False)
    for block in model.layers:
        wrap(block, mesh=dp_mesh, mp_policy=policy)
    wrap(model, mesh=dp_mesh, mp_policy=policy)


def parallelize(
    model: Transformer,
    layout: Layout,
    parallel: ParallelConfig,
    compile: bool,
    param_dtype: torch.dtype | None,
    activation_checkpointing: str = "none",
) -> None:
    """Tensor parallelism, then activation checkpointing, then compilation, then data parallelism (torchtitan's
    order: FSDP shards the DTensors the plan made; compiled blocks see the plan's layouts and compile the
    recomputation with them). `param_dtype` is the compute dtype of the data-parallel wrapper, which exists only
    when dp > 1 (see `autocast_needed`). The model may be on the meta device (see `materialize`)."""
    if layout.tp > 1:
        apply_tensor_parallel(model, layout.submesh("tp"), parallel.sequence_parallel)
    apply_activation_checkpointing(model, activation_checkpointing)
    if compile:
        apply_compile(model, layout)
    if layout.dp > 1:
        apply_data_parallel(model, layout.submesh("dp"), parallel.fsdp, param_dtype)
    elif parallel.fsdp and layout.distributed:
        log.info("parallel.fsdp: nothing to shard over with dp = 1; parameters are split by tensor parallelism only")


@torch.no_grad()
def materialize(model: Transformer, device: torch.device, seed: int) -> None:
    """Gives a model built on the meta device and parallelised its storage on `device` and its initial weights:
    each rank fills only its own shard of each parameter, cut from the parameter's full initial value (made one
    parameter at a time on the CPU), so every layout starts from the weights of one process and no rank ever
    holds the whole model."""
    swapping = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)  # keeps each Parameter, so a tied head stays tied
    try:
        model.to_empty(device=device)
    finally:
        torch.__future__.set_swap_module_params_on_conversion(swapping)
    for name, param in model.named_parameters():
        full = model.initial_value(name, seed)
        if isinstance(param, DTensor):
            # src_data_rank=None: every rank cuts its piece from its own (identical) full value, no communication
            piece = distribute_tensor(full, param.device_mesh, param.placements, src_data_rank=None)
            param.to_local().copy_(piece.to_local())
        else:
            param.copy_(full)
    model.init_buffers()


def autocast_needed(layout: Layout) -> bool:
    """Whether bf16 compute comes from autocast (no data-parallel wrapper) rather than FSDP2's policy."""
    return layout.dp == 1


def loss_context(layout: Layout):
    """The context for forward, loss and backward: with tensor parallelism the head's logits stay sharded over
    the vocabulary and cross-entropy reduces across the shards."""
    if layout.tp > 1:
        return loss_parallel()
    return contextlib.nullcontext()


def set_gradient_sync(model: nn.Module, enabled: bool) -> None:
    """Whether the next backward pass reduces gradients across dp. Set before the micro-batch's forward pass:
    it decides how that pass's backward hooks behave."""
    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(enabled)


def reshard(model: nn.Module) -> None:
    """After forward passes without backward (validation), FSDP still holds the root's gathered parameters in
    their place; put the sharded ones back, which the optimiser and the checkpoint know."""
    if isinstance(model, FSDPModule):
        model.reshard()


def full_value(tensor: torch.Tensor) -> torch.Tensor:
    """A plain tensor of a (possibly DTensor) result such as the loss."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def clip_grad_norm_(parameters, max_norm: float) -> torch.Tensor:
    """Clips to the norm of the whole gradient, over every shard on every rank, and returns that norm (the same
    on all ranks). Gradients on different meshes (or none: replicated norms without sequence parallelism) are
    reduced and scaled group by group."""
    groups = defaultdict(list)
    for param in parameters:
        if param.grad is not None:
            groups[param.grad.device_mesh if isinstance(param.grad, DTensor) else None].append(param)
    norms = [full_value(torch.nn.utils.get_total_norm([p.grad for p in group])) for group in groups.values()]
    total = torch.linalg.vector_norm(torch.stack(norms))
    if max_norm < math.inf:
        for group in groups.values():
            torch.nn.utils.clip_grads_with_norm_(group, max_norm, total)
    return total


def agree(layout: Layout, loss: torch.Tensor, stop_requested: bool) -> tuple[float, bool]:
    """One all-reduce per step: the loss averaged over dp ranks (tp ranks hold the same value) and whether any
    rank was asked to stop, so that every rank takes the same decision on the same step."""
    if not layout.distributed:
        return loss.item(), stop_requested
    values = torch.stack([loss.detach().float(), torch.tensor(float(stop_requested), device=loss.device)])
    dist.all_reduce(values)
    return (values[0] / layout.world_size).item(), bool(values[1] > 0)


def sum_over_dp(layout: Layout, values: torch.Tensor) -> torch.Tensor:
    if layout.distributed:
        dist.all_reduce(values, group=layout.submesh("dp").get_group())
    return values


def broadcast(layout: Layout, value, group=None):
    """Rank 0's value of a small picklable object, on every rank (of `group`, all of them, when given)."""
    if not layout.distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0, group=group)
    return holder[0]


def gather_dicts(layout: Layout, part: dict, group=None) -> dict:
    """The union of every rank's `part` (small, picklable), on every rank."""
    if not layout.distributed:
        return part
    parts: list = [None] * layout.world_size
    dist.all_gather_object(parts, part, group=group)
    return {key: value for each in parts for key, value in each.items()}


def barrier(layout: Layout, group=None) -> None:
    if layout.distributed:
        dist.barrier(group=group)


def new_cpu_group(layout: Layout):
    """A gloo group of every rank for a thread beside the training loop (a background checkpoint): collectives
    issued from two threads on one group would interleave differently on each rank. Every rank calls this."""
    return dist.new_group(backend="gloo") if layout.distributed else None


def on_main(layout: Layout, function, *args, group=None):
    """`function(*args)` run by rank 0 alone (file-system work on a shared run directory); every rank gets its
    result, or raises its error, so that no rank waits for one that has failed."""
    result, error = None, None
    if layout.is_main:
        try:
            result = function(*args)
        except Exception as exc:  # noqa: BLE001 - handed to every rank and raised there
            error = exc
    result, error = broadcast(layout, (result, error), group)
    if error is not None:
        raise error
    return result

"""Run by tests/test_distributed.py under `torchrun --nproc_per_node 2`: the tensor-parallel plan of train/parallel.py
on a (dp 1, tp 2) mesh against the same model in one piece, on the same weights and batches, then FSDP's bf16
policy on a (dp 2, tp 1) mesh. Rank 0 writes what it measured as JSON to the path given as the only argument."""

import json
import sys

import torch
import torch.nn.functional as F

from model import ModelConfig, Transformer
from train import parallel
from train.config import OptimConfig, ParallelConfig
from train.optim import build_optimizer

CONFIG = ModelConfig(vocab_size=256, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, multiple_of=16, max_seq_len=32)


def batches(count: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return [torch.randint(0, CONFIG.vocab_size, (4, 17), generator=generator) for _ in range(count)]


def build(layout, parallel_config, param_dtype=None):
    torch.manual_seed(0)
    model = Transformer(CONFIG)
    if layout is not None:
        parallel.parallelize(model, layout, parallel_config, compile=False, param_dtype=param_dtype)
    return model


def compare(layout, sequence_parallel: bool) -> dict:
    """Logits, losses and clipped gradient norms over four AdamW steps, one model split over tp, one whole."""
    whole, split = build(None, None), build(layout, ParallelConfig(tp=2, sequence_parallel=sequence_parallel))
    result = {"tied_before": split.output.weight is split.tok_embeddings.weight}
    optimizers = [build_optimizer(m, OptimConfig(lr=1e-2), torch.device("cpu")) for m in (whole, split)]

    tokens = batches(1)[0][:, :-1]
    with torch.no_grad():
        result["logits_max_diff"] = (parallel.full_value(split(tokens)) - whole(tokens)).abs().max().item()

    result["losses"], result["grad_norms"] = [], []
    one_process = parallel.Layout(torch.device("cpu"))
    for batch in batches(4):
        step = {}
        for name, model, optimizer in (("whole", whole, optimizers[0]), ("split", split, optimizers[1])):
            with parallel.loss_context(layout if model is split else one_process):
                loss = parallel.full_value(F.cross_entropy(model(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten()))
                loss.backward()
            norm = parallel.clip_grad_norm_(model.parameters(), 0.5)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step[name] = (loss.item(), norm.item())
        result["losses"].append([step["whole"][0], step["split"][0]])
        result["grad_norms"].append([step["whole"][1], step["split"][1]])

    result["tied_after"] = split.output.weight is split.tok_embeddings.weight
    result["weights_max_diff"] = max(
        (parallel.full_value(p.detach()) - whole.state_dict()[name]).abs().max().item()
        for name, p in split.named_parameters()
    )
    return result


def task_scores(tensor_parallel, data_parallel) -> dict:
    """Benchmark pairs scored by `train.tasks.score_pairs` by the model in one piece, split over tp=2 (both ranks
    score every pair) and sharded by FSDP over dp=2 (the pairs dealt to the ranks, an odd count, so that one rank
    runs a filler batch, then gathered)."""
    from train.tasks import score_pairs

    generator = torch.Generator().manual_seed(5)
    pairs = []
    for number in range(7):
        context = torch.randint(0, CONFIG.vocab_size, (3 + number * 4,), generator=generator).tolist()
        pairs.append((context, torch.randint(0, CONFIG.vocab_size, (1 + number % 3,), generator=generator).tolist()))
    return {
        "whole": score_pairs(build(None, None), pairs, batch_size=2),
        "tensor_parallel": score_pairs(build(tensor_parallel, ParallelConfig(tp=2)), pairs, 2, tensor_parallel),
        "fsdp": score_pairs(build(data_parallel, ParallelConfig(fsdp=True)), pairs, 2, data_parallel),
    }


def main(output: str) -> None:
    layout = parallel.init(ParallelConfig(tp=2), torch.device("cpu"))
    result = {"sequence_parallel": compare(layout, True), "replicated_norms": compare(layout, False)}

    # bf16 compute through FSDP2's policy (FSDP over a dp=2 mesh of the same two processes): the rotary table
    # each block receives stays float32
    from torch.distributed.device_mesh import init_device_mesh

    data_parallel = parallel.Layout(
        torch.device("cpu"),
        world_size=2,
        rank=layout.rank,
        tp=1,
        mesh=init_device_mesh("cpu", (2, 1), mesh_dim_names=("dp", "tp")),
    )
    rotary_dtypes = []
    mixed = build(data_parallel, ParallelConfig(fsdp=True), param_dtype=torch.bfloat16)
    mixed.layers[0].attention.register_forward_pre_hook(lambda module, args: rotary_dtypes.append(str(args[1].dtype)))
    reference = build(None, None)
    batch = batches(1)[0]
    mixed_loss = F.cross_entropy(mixed(batch[:, :-1]).flatten(0, 1).float(), batch[:, 1:].flatten())
    mixed_loss.backward()
    with torch.no_grad():
        reference_loss = F.cross_entropy(reference(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
    gradient = parallel.full_value(mixed.layers[0].attention.wq.weight.grad)
    result["task_scores"] = task_scores(layout, data_parallel)
    result["mixed_precision"] = {
        "bf16_loss": mixed_loss.item(),
        "float32_loss": reference_loss.item(),
        "rotary_dtypes": rotary_dtypes,
        "gradient_dtype": str(gradient.dtype),
    }
    if layout.is_main:
        with open(output, "w") as handle:
            json.dump(result, handle)
    parallel.shutdown(layout, together=True)


if __name__ == "__main__":
    main(sys.argv[1])

"""`python -m train.export --checkpoint RUN_DIR|CHECKPOINT --output HF_DIR`: a checkpoint (single-process or
sharded, any layout) as a Hugging Face Llama folder that `AutoModelForCausalLM.from_pretrained(HF_DIR)` and
`AutoTokenizer.from_pretrained(HF_DIR)` load with no custom code: `config.json`, `model.safetensors` (sharded
with an index above `--max-shard-size`), `generation_config.json` and the tokenizer files.

The model rotates neighbouring feature pairs (Meta's layout); transformers' Llama rotates halves. The rows of
the query and key projections are permuted so that the exported model computes the same function — without
this a converted model loads and writes gibberish. Nothing here imports transformers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from model import ModelConfig, Transformer
from pipeline.common.settings import UsageError, parse_size, report
from tokenizer.bins import write_json
from tokenizer.train import TOKENIZER_FILE, start_with_end_of_text, write_transformers_files
from train import checkpoint
from train.generate import add_checkpoint_argument, load_run

PROGRAM = "python -m train.export"
EXAMPLE = """examples:
  python -m train.export --checkpoint runs/demo --output hf/demo
  python -m train.export --checkpoint runs/1b/checkpoints/step-00020000 --output hf/1b --dtype bfloat16
then, in Python: AutoModelForCausalLM.from_pretrained("hf/demo"), AutoTokenizer.from_pretrained("hf/demo")
"""
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SINGLE_FILE = "model.safetensors"
TOKENIZER_SUBDIR = "lmforge-tokenizer"
INDEX_FILE = "model.safetensors.index.json"


def rotate_half_rows(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """A q or k projection whose output pairs (2k, 2k+1) per head become (k, k + head_dim/2): the layout that
    transformers' `rotate_half` turns by the same angles."""
    rows, columns = weight.shape
    return weight.view(heads, rows // heads // 2, 2, columns).transpose(1, 2).reshape(rows, columns)


def hf_state_dict(model: Transformer, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The model's weights under transformers' Llama names (a tied head is the embedding: not stored twice)."""
    config = model.config
    names = _hf_names(model)
    weights = {}
    for name, tensor in model.state_dict().items():
        if name not in names or (name == "output.weight" and config.tie_embeddings):
            continue  # the rotary table is recomputed from rope_theta
        if name.endswith("wq.weight"):
            tensor = rotate_half_rows(tensor, config.n_heads)
        elif name.endswith("wk.weight"):
            tensor = rotate_half_rows(tensor, config.kv_heads)
        weights[names[name]] = tensor.detach().to(dtype).contiguous()
    return weights


def neighbour_pair_rows(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """The inverse of `rotate_half_rows`: a transformers q or k projection in the model's rotary layout."""
    rows, columns = weight.shape
    return weight.view(heads, 2, rows // heads // 2, columns).transpose(1, 2).reshape(rows, columns)


def load_hf(folder: str) -> Transformer:
    """A Llama folder written by this module (or any transformers Llama without biases whose head_dim is
    hidden_size / heads) as the model, in float32."""
    with open(os.path.join(folder, "config.json")) as handle:
        hf = json.load(handle)
    if hf.get("model_type") != "llama" or hf.get("attention_bias") or hf.get("mlp_bias"):
        raise UsageError(f"{folder}: not a Llama model without biases (model_type {hf.get('model_type')!r})")
    rope = hf.get("rope_parameters") or {}
    config = ModelConfig(
        vocab_size=hf["vocab_size"],
        dim=hf["hidden_size"],
        n_layers=hf["num_hidden_layers"],
        n_heads=hf["num_attention_heads"],
        n_kv_heads=hf.get("num_key_value_heads", hf["num_attention_heads"]),
        ffn_hidden_dim=hf["intermediate_size"],
        norm_eps=hf["rms_norm_eps"],
        rope_theta=hf.get("rope_theta", rope.get("rope_theta", 10000.0)),
        max_seq_len=hf["max_position_embeddings"],
        tie_embeddings=hf.get("tie_word_embeddings", False),
    )
    if hf.get("head_dim", config.head_dim) != config.head_dim:
        raise UsageError(f"{folder}: head_dim {hf['head_dim']} is not hidden_size / num_attention_heads")
    files = [SINGLE_FILE]
    if os.path.exists(os.path.join(folder, INDEX_FILE)):
        with open(os.path.join(folder, INDEX_FILE)) as handle:
            files = sorted(set(json.load(handle)["weight_map"].values()))
    weights: dict[str, torch.Tensor] = {}
    for name in files:
        weights.update(load_file(os.path.join(folder, name)))
    with torch.device("meta"):
        model = Transformer(config)
    model.to_empty(device="cpu")
    model.init_buffers()  # the rotary table; every weight is replaced below
    names = {value: key for key, value in _hf_names(model).items()}
    state = {}
    for hf_name, tensor in weights.items():
        tensor = tensor.float()
        if hf_name.endswith("q_proj.weight"):
            tensor = neighbour_pair_rows(tensor, config.n_heads)
        elif hf_name.endswith("k_proj.weight"):
            tensor = neighbour_pair_rows(tensor, config.kv_heads)
        state[names[hf_name]] = tensor
    if config.tie_embeddings:
        state["output.weight"] = state["tok_embeddings.weight"]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UsageError(f"{folder}: the weights do not fit config.json: {str(exc).splitlines()[0]}")
    return model.eval()


def _hf_names(model: Transformer) -> dict[str, str]:
    """The model's parameter names → transformers' Llama names."""
    names = {
        "tok_embeddings.weight": "model.embed_tokens.weight",
        "norm.weight": "model.norm.weight",
        "output.weight": "lm_head.weight",
    }
    per_block = {
        "attention.wq": "self_attn.q_proj",
        "attention.wk": "self_attn.k_proj",
        "attention.wv": "self_attn.v_proj",
        "attention.wo": "self_attn.o_proj",
        "feed_forward.w1": "mlp.gate_proj",
        "feed_forward.w3": "mlp.up_proj",
        "feed_forward.w2": "mlp.down_proj",
        "attention_norm": "input_layernorm",
        "ffn_norm": "post_attention_layernorm",
    }
    for index in range(model.config.n_layers):
        for ours, theirs in per_block.items():
            names[f"layers.{index}.{ours}.weight"] = f"model.layers.{index}.{theirs}.weight"
    return names


def hf_config(model: Transformer, end_of_text: int, dtype: str) -> dict:
    config = model.config
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.dim,
        "intermediate_size": config.hidden_dim,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.kv_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": config.max_seq_len,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": config.tie_embeddings,
        "bos_token_id": end_of_text,  # documents start with <|endoftext|> in training
        "eos_token_id": end_of_text,
        "pad_token_id": end_of_text,
        "torch_dtype": dtype,
    }


def write_weights(weights: dict[str, torch.Tensor], output: str, max_shard_bytes: int) -> list[str]:
    """`model.safetensors`, or numbered shards of at most `max_shard_bytes` and their index."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in weights.items():
        tensor_bytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + tensor_bytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += tensor_bytes
    metadata = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], os.path.join(output, SINGLE_FILE), metadata=metadata)
        return [SINGLE_FILE]
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    for name, shard in zip(names, shards):
        save_file(shard, os.path.join(output, name), metadata=metadata)
        weight_map.update(dict.fromkeys(shard, name))
    total = sum(t.numel() * t.element_size() for t in weights.values())
    write_json(os.path.join(output, INDEX_FILE), {"metadata": {"total_size": total}, "weight_map": weight_map})
    return [*names, INDEX_FILE]


def write_tokenizer(tokenizer_dir: str, output: str, context_length: int) -> None:
    """The run's tokenizer as transformers loads it (`tokenizer.train.write_transformers_files`), with the model's
    context; a tokenizer trained before these files existed gets the <|endoftext|> start here."""
    tokenizer = Tokenizer.from_file(os.path.join(tokenizer_dir, TOKENIZER_FILE))
    start_with_end_of_text(tokenizer)
    tokenizer.save(os.path.join(output, TOKENIZER_FILE))
    write_transformers_files(output, context_length)


def export(target: str, output: str, dtype: str = "float32", max_shard_bytes: int = 5 * 10**9) -> list[str]:
    """Writes the Hugging Face folder; returns the names of the files written."""
    if dtype not in DTYPES:
        raise UsageError(f"--dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    model, encoder = load_run(target)
    tokenizer_dir = os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(checkpoint.resolve(target)))), "tokenizer"
    )
    os.makedirs(output, exist_ok=True)
    files = write_weights(hf_state_dict(model, DTYPES[dtype]), output, max_shard_bytes)
    write_json(os.path.join(output, "config.json"), hf_config(model, encoder.end_of_text, dtype))
    write_json(
        os.path.join(output, "generation_config.json"),
        {"bos_token_id": encoder.end_of_text, "eos_token_id": encoder.end_of_text, "pad_token_id": encoder.end_of_text},
    )
    write_tokenizer(tokenizer_dir, output, model.config.max_seq_len)
    # the tokenizer folder as trained, so lmforge's own tools (train.eval) read the export as they read a run
    shutil.copytree(tokenizer_dir, os.path.join(output, TOKENIZER_SUBDIR), dirs_exist_ok=True)
    return [
        *files,
        "config.json",
        "generation_config.json",
        TOKENIZER_FILE,
        "tokenizer_config.json",
        "special_tokens_map.json",
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description=__doc__.strip(), epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_checkpoint_argument(parser)
    parser.add_argument("--output", required=True, metavar="HF_DIR")
    parser.add_argument("--dtype", default="float32", help=f"{', '.join(DTYPES)} (default: %(default)s)")
    parser.add_argument(
        "--max-shard-size",
        default="5GB",
        metavar="SIZE",
        help="weights above this are split into numbered files with an index (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        files = export(args.checkpoint, args.output, args.dtype, parse_size(args.max_shard_size, "--max-shard-size"))
    except (UsageError, checkpoint.CheckpointError) as exc:
        report(PROGRAM, exc)
        return 2
    print(f"exported: {args.output}  ({', '.join(files)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

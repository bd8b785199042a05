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
import os
import shutil
import sys
import typing

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer

from model import Transformer
from model.model import Block
from pipeline.settings import UsageError, parse_size, report
from tokenizer.bins import write_json
from tokenizer.train import TOKENIZER_FILE, start_with_end_of_text, write_transformers_files
from train import checkpoint
from train.generate import load_run

PROGRAM = "python -m train.export"
EXAMPLE = """examples:
  python -m train.export --checkpoint runs/demo --output hf/demo
  python -m train.export --checkpoint runs/1b/checkpoints/step-00020000 --output hf/1b --dtype bfloat16
then, in Python: AutoModelForCausalLM.from_pretrained("hf/demo"), AutoTokenizer.from_pretrained("hf/demo")
"""
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


def rotate_half_rows(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """A q or k projection whose output pairs (2k, 2k+1) per head become (k, k + head_dim/2): the layout that
    transformers' `rotate_half` turns by the same angles."""
    rows, columns = weight.shape
    return weight.view(heads, rows // heads // 2, 2, columns).transpose(1, 2).reshape(rows, columns)


def hf_state_dict(model: Transformer, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The model's weights under transformers' Llama names (a tied head is the embedding: not stored twice)."""
    config = model.config
    weights = {"model.embed_tokens.weight": model.tok_embeddings.weight, "model.norm.weight": model.norm.weight}
    if not config.tie_embeddings:
        weights["lm_head.weight"] = model.output.weight
    for index, block in enumerate(typing.cast(list[Block], model.layers)):
        prefix = f"model.layers.{index}."
        attention, mlp = block.attention, block.feed_forward
        weights.update(
            {
                prefix + "self_attn.q_proj.weight": rotate_half_rows(attention.wq.weight, config.n_heads),
                prefix + "self_attn.k_proj.weight": rotate_half_rows(attention.wk.weight, config.kv_heads),
                prefix + "self_attn.v_proj.weight": attention.wv.weight,
                prefix + "self_attn.o_proj.weight": attention.wo.weight,
                prefix + "mlp.gate_proj.weight": mlp.w1.weight,
                prefix + "mlp.up_proj.weight": mlp.w3.weight,
                prefix + "mlp.down_proj.weight": mlp.w2.weight,
                prefix + "input_layernorm.weight": block.attention_norm.weight,
                prefix + "post_attention_layernorm.weight": block.ffn_norm.weight,
            }
        )
    return {name: tensor.detach().to(dtype).contiguous() for name, tensor in weights.items()}


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
    shutil.copy(os.path.join(tokenizer_dir, "meta.json"), os.path.join(output, "lmforge_tokenizer_meta.json"))
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
    parser.add_argument(
        "--checkpoint",
        required=True,
        metavar="RUN_DIR|CHECKPOINT",
        help="a run directory (its newest complete checkpoint) or one checkpoint directory",
    )
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

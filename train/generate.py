"""Sampling from a trained run: `python -m train.generate --checkpoint RUN_DIR --prompt "…"`.

The prompt is encoded with the run's own tokenizer (RUN/tokenizer) and preceded by <|endoftext|>, as every
training document is; generation stops at the next <|endoftext|> or after --max-new-tokens.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from model import KVCache, Transformer
from pipeline.common.settings import report
from tokenizer.encoding import Encoder
from train import checkpoint

PROGRAM = "python -m train.generate"
EXAMPLE = """examples:
  python -m train.generate --checkpoint runs/demo --prompt "The history of"
  python -m train.generate --checkpoint runs/demo/checkpoints/step-00000300 --prompt "Once" \\
      --max-new-tokens 200 --temperature 0.8 --top-k 50 --top-p 0.95 --seed 7
"""


def sample_next(logits: torch.Tensor, temperature: float, top_k: int, top_p: float, generator) -> torch.Tensor:
    """One token per row of (batch, vocab) logits: greedy at temperature 0, else sampled from the distribution
    truncated to the top k tokens and to the smallest set whose probability reaches top_p."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0 < top_p < 1:
        ordered, order = logits.sort(dim=-1, descending=True)
        before = ordered.softmax(dim=-1).cumsum(dim=-1) - ordered.softmax(dim=-1)  # mass of the tokens ranked above
        ordered = ordered.masked_fill(before >= top_p, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, ordered)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model: Transformer,
    prompt: list[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    stop_token: int | None = None,
    use_cache: bool = True,
) -> list[int]:
    """The new tokens after `prompt`. With the KV cache each step runs one token through the model; without it
    the whole sequence is recomputed (the reference the cache is tested against)."""
    device = model.rope_freqs.device
    limit = model.config.max_seq_len
    if len(prompt) >= limit:
        raise ValueError(f"the prompt has {len(prompt)} tokens; the model's context is {limit}")
    max_new_tokens = min(max_new_tokens, limit - len(prompt))
    generator = torch.Generator(device=device)
    if seed is not None:
        generator.manual_seed(seed)
    model.eval()
    tokens = torch.tensor([prompt], device=device)
    cache = (
        KVCache(model.config, 1, len(prompt) + max_new_tokens, device=device, dtype=model.tok_embeddings.weight.dtype)
        if use_cache
        else None
    )
    new: list[int] = []
    step_input = tokens
    for _ in range(max_new_tokens):
        logits = model(step_input, cache)[:, -1]
        token = sample_next(logits, temperature, top_k, top_p, generator)
        if stop_token is not None and int(token) == stop_token:
            break
        new.append(int(token))
        tokens = torch.cat([tokens, token[:, None]], dim=1)
        step_input = token[:, None] if use_cache else tokens
    return new


def load_run(target: str, device: str = "cpu") -> tuple[Transformer, Encoder]:
    """The model of a checkpoint (or of a run's newest complete checkpoint) and the run's tokenizer."""
    path = checkpoint.resolve(target)
    config = checkpoint.load_config(path)
    model = Transformer(config.model)
    checkpoint.load_weights(path, model)
    run_dir = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    return model.to(device).eval(), Encoder(os.path.join(run_dir, "tokenizer"), backend="hf")


def add_checkpoint_argument(parser: argparse.ArgumentParser, exports: bool = False, required: bool = True) -> None:
    """--checkpoint, as every command that reads a trained model takes it (`exports`: a train.export folder too)."""
    parser.add_argument(
        "--checkpoint",
        required=required,
        metavar="RUN_DIR|CHECKPOINT" + ("|HF_DIR" if exports else ""),
        help="a run directory (its newest complete checkpoint) or one checkpoint directory"
        + (", or a folder written by python -m train.export" if exports else ""),
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description=__doc__.strip(), epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_checkpoint_argument(parser)
    parser.add_argument("--prompt", default="", help="text to continue (default: start a new document)")
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--temperature", type=float, default=0.8, help="0: greedy (default: %(default)s)")
    parser.add_argument("--top-k", type=int, default=50, help="0: no limit (default: %(default)s)")
    parser.add_argument("--top-p", type=float, default=0.95, help="1: no limit (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the sampler, for a repeatable sample")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    try:
        model, encoder = load_run(args.checkpoint, args.device)
    except checkpoint.CheckpointError as exc:
        report(PROGRAM, exc)
        return 2
    try:
        text = complete(
            model, encoder, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed
        )
    except ValueError as exc:
        report(PROGRAM, exc)
        return 2
    print(text)
    return 0


def complete(
    model: Transformer,
    encoder: Encoder,
    prompt: str,
    max_new_tokens: int,
    temperature: float = 0.8,
    top_k: int = 50,
    top_p: float = 0.95,
    seed: int | None = None,
) -> str:
    """The prompt and its continuation, the prompt read as the start of a document (`<|endoftext|>` first, as in
    the bins), stopping at the end of the document."""
    ids = [encoder.end_of_text, *(encoder.encode([prompt])[0] if prompt else [])]
    new = generate(model, ids, max_new_tokens, temperature, top_k, top_p, seed, stop_token=encoder.end_of_text)
    return prompt + encoder.decode(new)


if __name__ == "__main__":
    sys.exit(main())

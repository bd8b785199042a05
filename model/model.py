"""A Llama-style decoder-only transformer, read top to bottom.

token embedding → N × [RMSNorm → attention (RoPE, grouped-query, SDPA) → residual, RMSNorm → SwiGLU → residual]
→ RMSNorm → output head (optionally tied to the embedding).

Nothing here knows about parallelism or training: head counts are read off the projection shapes (`view(…, -1,
head_dim)`), so a tensor-parallel plan that shards `wq/wk/wv/w1/w3` by column and `wo/w2` by row applies from
outside without touching this file.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ModelConfig:
    vocab_size: int = 0  # 0: the tokenizer's vocabulary, padded (the trainer resolves it before building)
    dim: int = 768
    n_layers: int = 12
    n_heads: int = 12
    n_kv_heads: int = 0  # 0: as many as n_heads (plain multi-head attention)
    ffn_hidden_dim: int = 0  # 0: Llama's rule, 2/3 · 4 · dim rounded up to multiple_of
    multiple_of: int = 256
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_seq_len: int = 1024
    tie_embeddings: bool = True
    init_std: float = 0.02

    def __post_init__(self):
        if self.dim % self.n_heads:
            raise ValueError(f"model.dim ({self.dim}) must be divisible by model.n_heads ({self.n_heads})")
        if self.head_dim % 2:
            raise ValueError(f"head dimension {self.head_dim} must be even for rotary embeddings")
        if self.n_heads % self.kv_heads:
            raise ValueError(f"model.n_heads ({self.n_heads}) must be a multiple of model.n_kv_heads ({self.kv_heads})")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def hidden_dim(self) -> int:
        if self.ffn_hidden_dim:
            return self.ffn_hidden_dim
        hidden = int(2 * 4 * self.dim / 3)
        return self.multiple_of * math.ceil(hidden / self.multiple_of)


class _RMSNormFunction(torch.autograd.Function):
    """RMSNorm with its gradient written out in fused reductions: on CPU about twice as fast as autograd through
    F.rms_norm's pieces."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        mean_square = torch.linalg.vector_norm(x, dim=-1, keepdim=True).square_().div_(x.size(-1))
        rstd = mean_square.add_(eps).rsqrt_()
        normed = x * rstd
        ctx.save_for_backward(normed, weight, rstd)
        return normed * weight

    @staticmethod
    def backward(ctx, grad):
        normed, weight, rstd = ctx.saved_tensors
        grad_normed = grad * weight
        projection = torch.linalg.vecdot(grad_normed, normed).unsqueeze(-1).div_(normed.size(-1))
        grad_x = (grad_normed - normed * projection).mul_(rstd)
        grad_weight = torch.linalg.vecdot(grad.flatten(0, -2).t(), normed.flatten(0, -2).t())
        return grad_x, grad_weight, None


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        if x.is_cuda:  # a fused kernel there, and torch.compile fuses either form
            return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)
        return _RMSNormFunction.apply(x, self.weight, self.eps)


def rotary_frequencies(head_dim: int, max_seq_len: int, theta: float) -> torch.Tensor:
    """cos and sin of position · θ^(-2k/d) for each position and pair k: float32, (max_seq_len, head_dim / 2, 2),
    which is also the memory layout of the complex rotations e^(i · angle)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)
    return torch.stack((angles.cos(), angles.sin()), dim=-1)


def apply_rotary(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotates (batch, seq, heads, head_dim) by position: each pair of neighbouring features (2k, 2k+1) is turned
    by its angle (Meta's Llama layout). Eagerly, one complex multiply (two to four times faster than the same
    rotation from real halves); under torch.compile, real arithmetic, since inductor generates no code for complex
    numbers but fuses this into one kernel."""
    pairs = x.float().unflatten(-1, (-1, 2))
    freqs = freqs[None, :, None]
    if torch.compiler.is_compiling():
        real, imag, cos, sin = pairs[..., 0], pairs[..., 1], freqs[..., 0], freqs[..., 1]
        rotated = torch.stack((real * cos - imag * sin, real * sin + imag * cos), dim=-1)
    else:
        rotated = torch.view_as_real(torch.view_as_complex(pairs) * torch.view_as_complex(freqs))
    return rotated.flatten(-2).type_as(x)


class KVCache:
    """Keys and values of every layer for incremental decoding; `length` tokens are filled."""

    def __init__(self, config: ModelConfig, batch_size: int, max_len: int, device=None, dtype=torch.float32):
        shape = (batch_size, config.kv_heads, max_len, config.head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layers)]
        self.length = 0

    def update(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stores the new (batch, kv_heads, seq, head_dim) keys and values; returns everything cached so far."""
        end = self.length + keys.size(2)
        self.keys[layer][:, :, self.length : end] = keys
        self.values[layer][:, :, self.length : end] = values
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


class Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.head_dim = config.head_dim
        self.wq = nn.Linear(config.dim, config.n_heads * config.head_dim, bias=False)
        self.wk = nn.Linear(config.dim, config.kv_heads * config.head_dim, bias=False)
        self.wv = nn.Linear(config.dim, config.kv_heads * config.head_dim, bias=False)
        self.wo = nn.Linear(config.n_heads * config.head_dim, config.dim, bias=False)

    def forward(self, x, freqs, cache: KVCache | None = None, layer: int = 0):
        batch, seq, _ = x.shape
        q = apply_rotary(self.wq(x).view(batch, seq, -1, self.head_dim), freqs).transpose(1, 2)
        k = apply_rotary(self.wk(x).view(batch, seq, -1, self.head_dim), freqs).transpose(1, 2)
        v = self.wv(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.update(layer, k, v)
        # grouped-query: each key/value head serves n_heads / n_kv_heads query heads, inside SDPA (no copies)
        grouped = q.size(1) != k.size(1)
        if past == 0:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=grouped)
        else:  # new tokens see the whole cache and each other causally
            visible = (
                torch.arange(past + seq, device=x.device)[None, :] <= past + torch.arange(seq, device=x.device)[:, None]
            )
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=visible, enable_gqa=grouped)
        return self.wo(out.transpose(1, 2).reshape(batch, seq, -1))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) · w3 x)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.w1 = nn.Linear(config.dim, config.hidden_dim, bias=False)
        self.w3 = nn.Linear(config.dim, config.hidden_dim, bias=False)
        self.w2 = nn.Linear(config.hidden_dim, config.dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.attention_norm = RMSNorm(config.dim, config.norm_eps)
        self.attention = Attention(config)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)
        self.feed_forward = FeedForward(config)

    def forward(self, x, freqs, cache: KVCache | None = None, layer: int = 0):
        x = x + self.attention(self.attention_norm(x), freqs, cache, layer)
        return x + self.feed_forward(self.ffn_norm(x))


class Transformer(nn.Module):
    rope_freqs: torch.Tensor  # a buffer: (max_seq_len, head_dim / 2, 2) cos and sin

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.vocab_size <= 0:
            raise ValueError("model.vocab_size must be resolved to a positive size before the model is built")
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        self.register_buffer(
            "rope_freqs", rotary_frequencies(config.head_dim, config.max_seq_len, config.rope_theta), persistent=False
        )
        if self.tok_embeddings.weight.device.type != "meta":  # on meta, whoever materialises it initialises it
            self.init_weights(torch.initial_seed())

    def initial_value(self, name: str, seed: int) -> torch.Tensor:
        """The initial value of parameter `name`, on the CPU, in full: a function of the seed and the name alone
        (not of the order of initialisation, nor of how the parameter is later split), so a model made in
        shards gets the weights of one made whole. Normal(0, init_std), with the projections that write into the
        residual stream (wo, w2) scaled by 1/√(2·n_layers) so the residual's variance does not grow with depth
        (GPT-2); norms start at one."""
        shape = self.get_parameter(name).shape
        if name.endswith("norm.weight"):
            return torch.ones(shape)
        std = self.config.init_std
        if name.endswith(("attention.wo.weight", "feed_forward.w2.weight")):
            std /= math.sqrt(2 * self.config.n_layers)
        generator = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(name.encode())) % 2**63)
        return torch.empty(shape).normal_(0.0, std, generator=generator)

    @torch.no_grad()
    def init_weights(self, seed: int) -> None:
        """Every parameter to its initial value (a tied head is the embedding), and the rotary table."""
        for name, param in self.named_parameters():
            param.copy_(self.initial_value(name, seed))
        self.init_buffers()

    @torch.no_grad()
    def init_buffers(self) -> None:
        """The rotary table, which a model built on the meta device and then `to_empty`'d lacks."""
        self.rope_freqs.copy_(rotary_frequencies(self.config.head_dim, self.config.max_seq_len, self.config.rope_theta))

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """tokens (batch, seq) → logits (batch, seq, vocab). With a cache, `tokens` continue what it holds."""
        start = cache.length if cache is not None else 0
        if start + tokens.size(1) > self.config.max_seq_len:
            raise ValueError(f"{start + tokens.size(1)} positions exceed model.max_seq_len ({self.config.max_seq_len})")
        freqs = self.rope_freqs[start : start + tokens.size(1)]
        h = self.tok_embeddings(tokens)
        for index, block in enumerate(self.layers):
            h = block(h, freqs, cache, index)
        if cache is not None:
            cache.length += tokens.size(1)
        return self.output(self.norm(h))

    def num_params(self, embedding: bool = True) -> int:
        total = sum(p.numel() for p in self.parameters())
        return total if embedding else total - self.tok_embeddings.weight.numel()

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward): 6 per weight of every matrix multiply, the output head
        included, plus attention's scores and weighted sum, 12 · layers · dim · seq_len (PaLM's count, which
        charges the full square although the causal half is skipped)."""
        matmul_weights = self.num_params(embedding=False) + self.output.weight.numel() * self.config.tie_embeddings
        norms = sum(p.numel() for name, p in self.named_parameters() if "norm" in name)
        return 6 * (matmul_weights - norms) + 12 * self.config.n_layers * self.config.dim * seq_len

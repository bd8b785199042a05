"""The Llama-style model: causality, rotary embeddings, grouped-query attention, learning, the KV cache."""

import math

import pytest
import torch
import torch.nn.functional as F

from model import KVCache, ModelConfig, Transformer
from model.model import Attention, apply_rotary, rotary_frequencies
from train.generate import generate

TINY = dict(vocab_size=97, dim=32, n_layers=2, n_heads=4, max_seq_len=64, multiple_of=16)


def tiny(**overrides) -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig(**{**TINY, **overrides})).eval()


@pytest.mark.parametrize("n_kv_heads", [0, 2, 1])
def test_changing_a_later_token_never_changes_earlier_logits(n_kv_heads):
    model = tiny(n_kv_heads=n_kv_heads)
    tokens = torch.randint(0, 97, (2, 24), generator=torch.Generator().manual_seed(1))
    changed = tokens.clone()
    changed[:, 15] = (changed[:, 15] + 1) % 97
    with torch.no_grad():
        before, after = model(tokens), model(changed)
    torch.testing.assert_close(before[:, :15], after[:, :15], rtol=0, atol=0)
    assert not torch.allclose(before[:, 15:], after[:, 15:])


def test_rotary_scores_depend_only_on_relative_position():
    head_dim = 16
    freqs = rotary_frequencies(head_dim, 64, theta=10000.0)
    q, k = torch.randn(1, 1, 1, head_dim), torch.randn(1, 1, 1, head_dim)

    def score(query_position, key_position):
        rq = apply_rotary(q, freqs[query_position : query_position + 1])
        rk = apply_rotary(k, freqs[key_position : key_position + 1])
        return (rq * rk).sum().item()

    assert score(3, 1) == pytest.approx(score(40, 38), rel=1e-5, abs=1e-5)
    assert score(7, 7) == pytest.approx(score(0, 0), rel=1e-5, abs=1e-5)
    assert score(5, 1) != pytest.approx(score(3, 1), rel=1e-3)
    norm = apply_rotary(q, freqs[9:10]).norm()  # a rotation: lengths are kept
    assert norm.item() == pytest.approx(q.norm().item(), rel=1e-5)


def reference_attention(attention: Attention, x, freqs, n_heads):
    """Plain multi-head attention written out: explicit scores, causal mask, softmax."""
    batch, seq, dim = x.shape
    head_dim = dim // n_heads

    def heads(t):
        return t.view(batch, seq, n_heads, head_dim)

    q = apply_rotary(heads(attention.wq(x)), freqs).transpose(1, 2)
    k = apply_rotary(heads(attention.wk(x)), freqs).transpose(1, 2)
    v = heads(attention.wv(x)).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim)
    scores = scores.masked_fill(torch.ones(seq, seq, dtype=torch.bool).triu(1), float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, seq, dim)
    return attention.wo(out)


def test_grouped_query_attention_matches_multi_head_attention():
    torch.manual_seed(0)
    config = ModelConfig(**TINY)
    freqs = rotary_frequencies(config.head_dim, 16, config.rope_theta)
    x = torch.randn(2, 16, config.dim)
    with torch.no_grad():
        full = Attention(config)  # n_kv_heads = n_heads
        torch.testing.assert_close(full(x, freqs), reference_attention(full, x, freqs, 4), rtol=1e-5, atol=1e-5)

        grouped = Attention(ModelConfig(**TINY, n_kv_heads=2))
        assert grouped.wk.weight.shape == (2 * config.head_dim, config.dim)
        # the same attention as multi-head attention whose key/value heads are each repeated for their group
        expanded = Attention(config)
        expanded.wq.weight.copy_(grouped.wq.weight)
        expanded.wo.weight.copy_(grouped.wo.weight)
        for name in ("wk", "wv"):
            per_head = getattr(grouped, name).weight.view(2, config.head_dim, config.dim)
            getattr(expanded, name).weight.copy_(per_head.repeat_interleave(2, dim=0).reshape(config.dim, config.dim))
        torch.testing.assert_close(grouped(x, freqs), reference_attention(expanded, x, freqs, 4), rtol=1e-5, atol=1e-5)


def test_a_tiny_model_overfits_one_batch():
    model = tiny(n_kv_heads=2).train()
    batch = torch.randint(0, 97, (4, 33), generator=torch.Generator().manual_seed(2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    first = None
    for _ in range(150):
        loss = F.cross_entropy(model(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert first == pytest.approx(math.log(97), rel=0.1)  # starts at chance
    assert loss.item() < 0.05


def test_the_kv_cache_gives_the_full_forward_logits_and_the_same_generation():
    model = tiny(n_kv_heads=2)
    tokens = torch.randint(0, 97, (1, 20), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(tokens)
        cache = KVCache(model.config, 1, 20)
        pieces = [model(tokens[:, :8], cache), model(tokens[:, 8:13], cache)]
        pieces += [model(tokens[:, i : i + 1], cache) for i in range(13, 20)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-4, atol=1e-5)

    prompt = tokens[0, :5].tolist()
    for settings in (dict(temperature=0.0), dict(temperature=1.0, top_k=20, top_p=0.9, seed=11)):
        cached = generate(model, prompt, 40, use_cache=True, **settings)
        uncached = generate(model, prompt, 40, use_cache=False, **settings)
        assert len(cached) == 40 and cached == uncached
    assert generate(model, prompt, 40, temperature=1.0, seed=11) != generate(
        model, prompt, 40, temperature=1.0, seed=12
    )


def test_positions_past_the_context_are_refused():
    model = tiny()
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match="must be a multiple"):
        ModelConfig(**{**TINY, "n_kv_heads": 3})


def test_initialisation_scales_residual_projections_with_depth_and_counts_flops():
    model = Transformer(ModelConfig(**{**TINY, "dim": 256, "n_layers": 8, "n_heads": 4, "multiple_of": 64}))
    block = model.layers[0]
    assert block.attention.wq.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert block.attention.wo.weight.std().item() == pytest.approx(0.02 / 4, rel=0.05)  # 1/√(2·8)
    assert model.output.weight is model.tok_embeddings.weight
    matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert model.flops_per_token(128) == 6 * matmul + 12 * 8 * 256 * 128
    untied = Transformer(ModelConfig(**{**TINY, "tie_embeddings": False}))
    assert untied.num_params() == tiny().num_params() + 97 * 32


def test_rms_norm_gradients_match_autograd_through_the_formula():
    from model.model import RMSNorm

    norm = RMSNorm(8, eps=1e-5).double()
    torch.nn.init.normal_(norm.weight)
    x = torch.randn(3, 5, 8, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(norm, (x,))
    torch.testing.assert_close(norm(x), F.rms_norm(x, (8,), norm.weight, 1e-5))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # from inside torch.compile
def test_the_compiled_rotation_equals_the_eager_one():
    freqs = rotary_frequencies(16, 32, theta=500000.0)
    x = torch.randn(2, 32, 3, 16)
    compiled = torch.compile(apply_rotary, fullgraph=True)
    torch.testing.assert_close(compiled(x, freqs), apply_rotary(x, freqs), rtol=1e-5, atol=1e-5)

"""Cached causal decoding (longseq.layers.kv_cache): stepwise outputs equal a full recompute
over the whole prefix, with bounded memory."""

from __future__ import annotations

import pytest
import torch

from longseq.layers import Encoder, KVCache, MultiheadAttention, TransformerBlock, cache_capacity
from longseq.patterns import LSH, Dense, SegmentRecurrence, SlidingWindow
from longseq.positions import RoPE1D


def _encoder(pattern, *, kv_heads=2, reversible=False, depth=2) -> Encoder:
    torch.manual_seed(0)
    enc = Encoder(32, depth=depth, heads=4, pattern=pattern, kv_heads=kv_heads, rope=RoPE1D(8),
                  reversible=reversible)
    return enc.double().eval()


def _stepwise(enc: Encoder, x: torch.Tensor, chunks: list[int]) -> torch.Tensor:
    cache = enc.new_cache(x.shape[0], x.device, x.dtype)
    outs, t = [], 0
    for n in chunks:
        outs.append(enc.step(x[:, t : t + n], cache))
        t += n
    assert cache.position == t
    return torch.cat(outs, 1)


PATTERNS = {
    "window": SlidingWindow(4, causal=True),
    "dilated": SlidingWindow(3, dilation=2, causal=True),
    "global": SlidingWindow(4, dilation=2, causal=True, global_tokens=(0, 3, 8)),
    "segment": SegmentRecurrence(segment=5, memory=1),
}


@pytest.mark.parametrize("name", list(PATTERNS))
@pytest.mark.parametrize("reversible", [False, True])
def test_stepwise_decoding_equals_full_recompute(name: str, reversible: bool) -> None:
    pattern = PATTERNS[name]
    enc = _encoder(pattern, reversible=reversible)
    L = 41  # several windows and segments
    x = torch.randn(2, L, 32, dtype=torch.float64)
    with torch.no_grad():
        full = enc(x)
        one_by_one = _stepwise(enc, x, [1] * L)
        chunked = _stepwise(enc, x, [7, 1, 1, 13, 2, 17])
        prefix = enc(x[:, :30])  # a prefix alone: the rows of a shorter sequence
    assert torch.allclose(one_by_one, full, atol=1e-10)
    assert torch.allclose(chunked, full, atol=1e-10)
    assert torch.allclose(one_by_one[:, :30], prefix, atol=1e-10)


def test_float32_step_matches_within_tolerance() -> None:
    torch.manual_seed(1)
    enc = Encoder(32, depth=2, heads=4, pattern=SlidingWindow(8, causal=True), kv_heads=1, rope=RoPE1D(8)).eval()
    x = torch.randn(1, 50, 32)
    with torch.no_grad():
        assert torch.allclose(_stepwise(enc, x, [1] * 50), enc(x), atol=1e-5)


def test_cache_memory_is_bounded() -> None:
    pattern = SlidingWindow(4, dilation=2, causal=True, global_tokens=(0, 5))
    enc = _encoder(pattern)
    cache = enc.new_cache(1, "cpu", torch.float64)
    with torch.no_grad():
        for _ in range(200):
            enc.step(torch.randn(1, 1, 32, dtype=torch.float64), cache)
    assert isinstance(cache, KVCache) and cache.position == 200
    for layer in cache.layers:
        assert layer.k.shape == (1, 2, 8, 8) and layer.capacity == cache_capacity(pattern) == 8
        assert layer.global_k.shape[2] == 2 and layer.global_pos.tolist() == [0, 5]


def test_attention_layer_step_and_capacity() -> None:
    assert cache_capacity(SegmentRecurrence(4, memory=2)) == 11
    torch.manual_seed(2)
    attn = MultiheadAttention(16, 2, SlidingWindow(3, causal=True)).double().eval()
    x = torch.randn(1, 12, 16, dtype=torch.float64)
    cache = attn.new_cache(1, dtype=torch.float64)
    with torch.no_grad():
        steps = torch.cat([attn.step(x[:, i : i + 1], cache) for i in range(12)], 1)
        assert torch.allclose(steps, attn(x), atol=1e-10)


@pytest.mark.parametrize("pattern, words", [
    (SlidingWindow(4), "causal"),
    (Dense(causal=True), "Dense"),
    (LSH(8, 1, causal=True, shared_qk=True), "LSH"),
    (SlidingWindow(2, causal=True, global_tokens=(9,)), "global_tokens must be at most 2"),
])
def test_unsupported_patterns_raise_naming_the_layer(pattern, words: str) -> None:
    enc = Encoder([TransformerBlock(16, 2, SlidingWindow(4, causal=True)), TransformerBlock(16, 2, pattern)])
    with pytest.raises(ValueError, match=words) as err:
        enc.new_cache(1)
    assert "layer 1" in str(err.value)


def test_docs_cached_decoding_example_runs() -> None:
    """The ``py`` blocks of docs/patterns.md (the ``python`` ones run in test_new_patterns_layers)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "patterns.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```py\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert blocks and any("new_cache" in b for b in blocks)
    for block in blocks:
        exec(compile(block, "docs/patterns.md", "exec"), {})


def test_max_len_bounds_the_ring_and_the_steps() -> None:
    pattern = SlidingWindow(1000, causal=True, global_tokens=(0, 20))  # wider than the sequence
    enc = _encoder(pattern)
    x = torch.randn(1, 30, 32, dtype=torch.float64)
    cache = enc.new_cache(1, "cpu", torch.float64, max_len=30)
    assert cache.layers[0].capacity == 30
    with torch.no_grad():
        steps = torch.cat([enc.step(x[:, t : t + 1], cache) for t in range(30)], 1)
        assert torch.allclose(steps, enc(x), atol=1e-10)
        with pytest.raises(ValueError, match="max_len=30"):
            enc.step(x[:, :1], cache)
    with pytest.raises(ValueError, match="global_tokens must be at most 4"):  # a ring that evicts
        _encoder(SlidingWindow(4, causal=True, global_tokens=(20,))).new_cache(1, max_len=30)

"""SegmentRecurrence (one call and streaming) against its causal band mask, and the
Linformer LowRank layer against attention over explicitly projected keys and values."""

from __future__ import annotations

import pytest
import torch

from longseq import attend, explain
from longseq.kernels import use_backend
from longseq.layers import Encoder, LowRank, SegmentStream, lowrank_attention, stream_segments
from longseq.patterns import SegmentRecurrence, SlidingWindow, as_causal

from .test_attend import _compare
from .test_new_patterns import masked_reference


# ---------------------------------------------------------------------------- SegmentRecurrence
def test_segment_recurrence_mask():
    m = SegmentRecurrence(2, memory=1).dense_mask(6)
    assert m.int().tolist() == [[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0],
                                [0, 0, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]]
    assert torch.equal(SegmentRecurrence(3, memory=0).dense_mask(7),
                       torch.block_diag(*[torch.ones(3, 3), torch.ones(3, 3), torch.ones(1, 1)]).bool().tril())
    assert as_causal(SegmentRecurrence(4)) == SegmentRecurrence(4)
    with pytest.raises(ValueError, match="SegmentRecurrence.memory"):
        SegmentRecurrence(4, memory=-1)


@pytest.mark.parametrize("backend", ["auto", "math"])
@pytest.mark.parametrize("key_mask", [False, True])
@pytest.mark.parametrize("L", [37, 64])
@pytest.mark.parametrize("pattern", [SegmentRecurrence(8), SegmentRecurrence(5, memory=2), SegmentRecurrence(16, 0),
                                     SegmentRecurrence(100, 3), SegmentRecurrence(4, 10**9)], ids=repr)
def test_segment_recurrence_matches_dense(pattern, L, key_mask, backend):
    _compare(pattern, L, key_mask=key_mask, backend=backend)
    assert explain(*(torch.randn(1, 1, L, 8),) * 3, pattern).route == "blocked"


def test_segment_recurrence_gqa_and_bf16():
    _compare(SegmentRecurrence(6, 1), 50, H=4, Hkv=2, key_mask=True)
    p = SegmentRecurrence(16, 2)
    q, k, v = (torch.randn(1, 2, 70, 16) for _ in range(3))
    out = attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), p)
    torch.testing.assert_close(out.float(), masked_reference(q, k, v, p.dense_mask(70)[None, None]),
                               atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("key_mask", [False, True])
@pytest.mark.parametrize("L", [40, 45])
@pytest.mark.parametrize("pattern", [SegmentRecurrence(8), SegmentRecurrence(5, memory=3), SegmentRecurrence(10, 0)],
                         ids=repr)
def test_streaming_equals_one_call(pattern, L, key_mask):
    q = torch.randn(2, 4, L, 8)
    k, v = torch.randn(2, 2, L, 8), torch.randn(2, 2, L, 8)
    km = (torch.rand(2, L) > 0.3) if key_mask else None
    whole = attend(q, k, v, pattern, key_mask=km)
    parts = list(stream_segments(pattern, q, k, v, key_mask=km))
    assert [p.shape[2] for p in parts] == [min(pattern.segment, L - s) for s in range(0, L, pattern.segment)]
    torch.testing.assert_close(torch.cat(parts, 2), whole, atol=1e-5, rtol=1e-5)


def test_stream_memory_is_detached_and_checked():
    p = SegmentRecurrence(4, memory=1)
    stream = SegmentStream(p)
    k = torch.randn(1, 1, 4, 8, requires_grad=True)
    stream.step(torch.randn(1, 1, 4, 8), k, torch.randn(1, 1, 4, 8))
    out = stream.step(*(torch.randn(1, 1, 4, 8, requires_grad=True) for _ in range(3)))
    out.sum().backward()
    assert k.grad is None  # the memory carries no gradient to earlier segments
    stream.step(*(torch.randn(1, 1, 3, 8) for _ in range(3)))
    with pytest.raises(ValueError, match="reset"):
        stream.step(*(torch.randn(1, 1, 4, 8) for _ in range(3)))
    stream.reset()
    with pytest.raises(ValueError, match="1 to segment=4"):
        stream.step(*(torch.randn(1, 1, 5, 8) for _ in range(3)))
    with pytest.raises(TypeError, match="SegmentRecurrence"):
        SegmentStream(SlidingWindow(3))


def test_segment_recurrence_in_an_encoder():
    enc = Encoder(32, depth=2, heads=4, pattern=SegmentRecurrence(8, 1))
    x = torch.randn(2, 30, 32, requires_grad=True)
    enc(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    with use_backend("math"):
        assert torch.isfinite(enc(x)).all()


# ---------------------------------------------------------------------------- LowRank
def lowrank_reference(q, k, v, e, f, key_mask=None, variable_length=True):
    """Softmax over explicitly projected keys: Kp = E_L^T K, Vp = F_L^T V, where E_L is
    E's first L rows with padded rows zeroed and, variable_length, times max_len / n."""
    B, H, L, D = q.shape
    out = torch.empty_like(q)
    rows = []
    for b in range(B):
        real = torch.ones(L, dtype=torch.bool) if key_mask is None else key_mask[b]
        c = e.shape[0] / max(int(real.sum()), 1) if variable_length else 1.0
        eb = torch.where(real[:, None], e[:L] * c, torch.zeros_like(e[:L]))
        fb = torch.where(real[:, None], f[:L] * c, torch.zeros_like(f[:L]))
        kp, vp = eb.T @ k[b], fb.T @ v[b]  # (H, r, D)
        p = torch.softmax(q[b] @ kp.transpose(-1, -2) / D**0.5, -1)
        rows.append(p @ vp)
    out = torch.stack(rows)
    return out


@pytest.mark.parametrize("variable_length", [True, False])
@pytest.mark.parametrize("key_mask", [False, True])
@pytest.mark.parametrize("L", [50, 64])
def test_lowrank_matches_projected_reference(L, key_mask, variable_length):
    q, k, v = (torch.randn(2, 2, L, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    e, f = (torch.randn(64, 6, dtype=torch.float64, requires_grad=True) for _ in range(2))
    km = (torch.rand(2, L) > 0.3) if key_mask else None
    out = lowrank_attention(q, k, v, e, f, key_mask=km, variable_length=variable_length)
    ref = lowrank_reference(q, k, v, e, f, km, variable_length)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    dout = torch.randn_like(out)
    inputs = (q, k, v, e, f)
    for g, r in zip(torch.autograd.grad(out, inputs, dout), torch.autograd.grad(ref, inputs, dout)):
        torch.testing.assert_close(g, r, atol=1e-10, rtol=1e-10)


def test_lowrank_layer_lengths_and_bf16():
    layer = LowRank(32, 4, k=8, max_len=64)
    x = torch.randn(2, 40, 32, requires_grad=True)
    y = layer(x, key_mask=torch.rand(2, 40) > 0.2)
    y.sum().backward()
    assert y.shape == x.shape and layer.e.grad is not None and layer.f.grad is not None
    with pytest.raises(ValueError, match="max_len=64"):
        layer(torch.randn(1, 65, 32))
    fixed = LowRank(32, 4, k=8, max_len=64, variable_length=False, share_kv=True)
    assert fixed.e is fixed.f
    # without renormalisation a short input is the full-length one zero-padded
    q, k, v = (torch.randn(1, 2, 20, 8) for _ in range(3))
    e, f = torch.randn(64, 5) / 8, torch.randn(64, 5) / 8  # xavier-like scale
    pad = torch.nn.functional.pad
    padded = lowrank_attention(pad(q, (0, 0, 0, 44)), pad(k, (0, 0, 0, 44)), pad(v, (0, 0, 0, 44)), e, f,
                               variable_length=False)
    torch.testing.assert_close(lowrank_attention(q, k, v, e, f, variable_length=False), padded[:, :, :20])
    qb, kb, vb = (t.bfloat16() for t in (q, k, v))
    out = lowrank_attention(qb, kb, vb, e, f)
    # against the same bf16 inputs, norm-wise: bf16 rounding of the projected keys and of the
    # output (up to 0.008 at values near 3) is relative to the whole row, not to a small element
    ref = lowrank_reference(qb.float(), kb.float(), vb.float(), e, f)
    assert float((out.float() - ref).norm() / ref.norm()) < 2e-2  # at most 5e-3 over 1,000 seeds


# ---------------------------------------------------------------------------- docs
def test_docs_patterns_examples_run():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "patterns.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert len(blocks) == 5
    for block in blocks:
        exec(compile(block, "docs/patterns.md", "exec"), {})

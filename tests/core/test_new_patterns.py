"""TopK and Hierarchical attention against dense references: outputs, gradients, masks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from longseq import attend, explain
from longseq.layers import TransformerBlock
from longseq.patterns import Hierarchical, TopK, as_causal


def masked_reference(q, k, v, mask, scale=None):
    """SDPA with a (B, H or 1, Lq, Lk) bool mask; rows with no allowed key are zeros."""
    has = mask.any(-1, keepdim=True)
    f = torch.zeros(mask.shape, dtype=q.dtype).masked_fill(~mask, float("-inf"))
    f = torch.where(has, f, torch.zeros_like(f))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=f, scale=scale) * has


def _inputs(B, H, L, D, dtype=torch.float64):
    return tuple(torch.randn(B, H, L, D, dtype=dtype, requires_grad=True) for _ in range(3))


def _check_grads(out, ref, inputs, tol):
    dout = torch.randn_like(out)
    for name, g, r in zip("qkv", torch.autograd.grad(out, inputs, dout), torch.autograd.grad(ref, inputs, dout)):
        torch.testing.assert_close(g, r, atol=tol, rtol=tol, msg=lambda m: f"grad {name}: {m}")


# ---------------------------------------------------------------------------- TopK
@pytest.mark.parametrize("key_mask", [False, True])
@pytest.mark.parametrize("L", [37, 64])
@pytest.mark.parametrize("pattern", [TopK(5, block=16), TopK(7, causal=True, block=32), TopK(100), TopK(1)], ids=repr)
def test_topk_matches_dense_reference(pattern, L, key_mask):
    q, k, v = _inputs(2, 2, L, 8)
    km = (torch.rand(2, L) > 0.3) if key_mask else None
    out = attend(q, k, v, pattern, key_mask=km)
    masks = pattern.dense_masks(q, k, km)
    assert torch.equal(masks.sum(-1).clamp(max=pattern.k), masks.sum(-1))  # at most k keys per query
    ref = masked_reference(q, k, v, masks)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    _check_grads(out, ref, (q, k, v), 1e-10)


def test_topk_keeps_the_best_keys():
    q = torch.tensor([[[[1.0, 0.0]]]]).expand(1, 1, 4, 2).contiguous()
    k = torch.tensor([[[[0.1, 0.0], [3.0, 0.0], [-1.0, 0.0], [2.0, 0.0]]]])
    masks = TopK(2).dense_masks(q, k)[0, 0]
    assert masks[0].tolist() == [False, True, False, True]
    causal = TopK(2, causal=True).dense_masks(q, k)[0, 0]
    assert causal[0].tolist() == [True, False, False, False]
    assert causal[2].tolist() == [True, True, False, False]


def test_topk_gqa_dropout_and_errors():
    p = TopK(4, block=8)
    q = torch.randn(1, 4, 20, 8, requires_grad=True)
    k, v = torch.randn(1, 2, 20, 8), torch.randn(1, 2, 20, 8)
    out = attend(q, k, v, p)
    ref = masked_reference(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1),
                           p.dense_masks(q, k.repeat_interleave(2, 1)))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert explain(q, k, v, p).route == "pattern"
    dropped = attend(q, k, v, p, dropout_p=0.5)
    dropped.sum().backward()
    assert torch.isfinite(q.grad).all()
    with pytest.raises(ValueError, match="data-dependent"):
        p.dense_mask(8)
    with pytest.raises(ValueError, match="TopK.k"):
        TopK(0)
    with pytest.raises(TypeError, match="TopK.causal"):
        TopK(3, causal=1)


def test_topk_bf16_forward():
    p = TopK(6, causal=True, block=16)
    q, k, v = (torch.randn(2, 2, 50, 16) for _ in range(3))
    out = attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), p)
    assert out.dtype == torch.bfloat16
    ref = masked_reference(q, k, v, p.dense_masks(q.bfloat16(), k.bfloat16()))
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)


# ---------------------------------------------------------------------------- Hierarchical
def hierarchical_reference(pattern, q, k, v, key_mask=None):
    """Two stages, densely: pool keys and values per segment with an explicit (B, n, L)
    averaging matrix, then one masked softmax over the L tokens and n summaries."""
    B, H, L, D = q.shape
    tok, summ = pattern.dense_masks(L)
    n = summ.shape[1]
    real = torch.ones(B, L, dtype=torch.bool) if key_mask is None else key_mask
    member = (torch.arange(L)[None, :] // pattern.segment == torch.arange(n)[:, None])  # (n, L)
    pool = (member[None] & real[:, None, :]).to(q.dtype)
    count = pool.sum(-1, keepdim=True)
    pool = pool / count.clamp(min=1)
    ks, vs = torch.einsum("bnl,bhld->bhnd", pool, k), torch.einsum("bnl,bhld->bhnd", pool, v)
    mask = torch.cat([tok[None] & real[:, None, :], summ[None] & (count[:, None, :, 0] > 0)], -1)  # (B, L, L+n)
    return masked_reference(q, torch.cat([k, ks], 2), torch.cat([v, vs], 2), mask[:, None])


@pytest.mark.parametrize("key_mask", [False, True])
@pytest.mark.parametrize("L", [37, 64])
@pytest.mark.parametrize("pattern", [Hierarchical(8), Hierarchical(5, causal=True), Hierarchical(100),
                                     Hierarchical(1)], ids=repr)
def test_hierarchical_matches_two_stage_reference(pattern, L, key_mask):
    q, k, v = _inputs(2, 2, L, 8)
    km = (torch.rand(2, L) > 0.3) if key_mask else None
    if key_mask:
        km[0, 8:16] = False  # a segment without a real token has no summary
    out = attend(q, k, v, pattern, key_mask=km)
    ref = hierarchical_reference(pattern, q, k, v, km)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    _check_grads(out, ref, (q, k, v), 1e-10)


def test_hierarchical_masks_and_bf16():
    tok, summ = Hierarchical(2, causal=True).dense_masks(5)
    assert tok.int().tolist() == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0],
                                  [0, 0, 0, 0, 1]]
    assert summ.int().tolist() == [[0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0], [1, 1, 0]]
    assert as_causal(Hierarchical(4)) == Hierarchical(4, causal=True)
    p = Hierarchical(8)
    q, k, v = (torch.randn(1, 2, 45, 16) for _ in range(3))
    out = attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), p)
    torch.testing.assert_close(out.float(), hierarchical_reference(p, q, k, v), atol=3e-2, rtol=3e-2)
    with pytest.raises(ValueError, match="dense_masks"):
        p.dense_mask(8)
    with pytest.raises(ValueError, match="Hierarchical.segment"):
        Hierarchical(0)
    with pytest.raises(TypeError, match="Hierarchical.segment"):
        Hierarchical(2.0)


@pytest.mark.parametrize("pattern", [Hierarchical(6), TopK(5, causal=True, block=8)], ids=repr)
def test_as_layer_pattern(pattern):
    block = TransformerBlock(32, 4, pattern, kv_heads=2)
    x = torch.randn(2, 30, 32, requires_grad=True)
    km = torch.rand(2, 30) > 0.2
    y = block(x, key_mask=km)
    y.sum().backward()
    assert y.shape == x.shape and torch.isfinite(x.grad).all()

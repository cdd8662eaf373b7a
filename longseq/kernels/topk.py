"""Top-k attention: per query block, select the best keys, gather them, softmax over them.

Forward keeps, per query, the indices of its kept keys and their probabilities
(``O(L * k)``); backward gathers the kept keys and values again one query block at a
time, so no ``(L, k, D)`` gather and no ``(L, L)`` score matrix outlives a block.
"""

from __future__ import annotations

import torch
from torch import Tensor

from longseq.kernels.bias import TileBias
from longseq.kernels.registry import register_attention
from longseq.kernels.tracing import is_tracing
from longseq.patterns_topk import TopK

__all__ = ["topk_attention"]


def _gather(x: Tensor, idx: Tensor) -> Tensor:
    """x (B, H, L, D), idx (B, H, n, c) -> (B, H, n, c, D)."""
    B, H, n, c = idx.shape
    flat = idx.reshape(B, H, n * c, 1).expand(B, H, n * c, x.shape[-1])
    return x.gather(2, flat).view(B, H, n, c, x.shape[-1])


def _scatter_add(dst: Tensor, idx: Tensor, src: Tensor) -> None:
    """dst (B, H, L, D) += src (B, H, n, c, D) at key rows idx (B, H, n, c)."""
    B, H, n, c = idx.shape
    D = dst.shape[-1]
    dst.scatter_add_(2, idx.reshape(B, H, n * c, 1).expand(B, H, n * c, D), src.reshape(B, H, n * c, D))


def _topk_forward(q: Tensor, k: Tensor, v: Tensor, pattern: TopK, key_mask: Tensor | None, scale: float,
                  dropout_p: float) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Top-k attention forward: q, k, v ``(B, H, L, D)`` -> ``(out (B, H, L, D), index,
    probs, keep)``; ``index`` (long), ``probs`` (float32 or wider) and ``keep`` (bool, None
    without dropout) are ``(B, H, L, c)`` for the ``c`` kept keys, what backward needs."""
    B, H, L, D = q.shape
    acc = torch.promote_types(q.dtype, torch.float32)  # softmax in float32 for half inputs
    out = torch.empty_like(q)
    c = pattern.kept(L)
    index = torch.empty(B, H, L, c, dtype=torch.long, device=q.device)
    probs = torch.empty(B, H, L, c, dtype=acc, device=q.device)
    keep = torch.empty(B, H, L, c, dtype=torch.bool, device=q.device) if dropout_p > 0 else None
    for s0 in range(0, L, pattern.block):
        s1 = min(L, s0 + pattern.block)
        idx, valid = pattern.select(q[:, :, s0:s1], k, s0, key_mask)
        qb = q[:, :, s0:s1].to(acc)
        s = torch.einsum("bhqd,bhqcd->bhqc", qb, _gather(k, idx).to(acc)) * scale
        s = s.masked_fill(~valid, float("-inf"))
        m = s.amax(-1, keepdim=True)
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # rows with no key: all zeros
        e = torch.exp(s - m)
        den = e.sum(-1, keepdim=True)
        p = e / torch.where(den > 0, den, torch.ones_like(den))
        index[:, :, s0:s1], probs[:, :, s0:s1] = idx, p
        if keep is not None:
            kb = torch.rand(p.shape, device=q.device) >= dropout_p
            keep[:, :, s0:s1] = kb
            p = p * kb / (1.0 - dropout_p)
        out[:, :, s0:s1] = torch.einsum("bhqc,bhqcd->bhqd", p, _gather(v, idx).to(acc)).to(q.dtype)
    return out, index, probs, keep


class _TopKAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, pattern: TopK, key_mask: Tensor | None, scale: float,
                dropout_p: float) -> Tensor:
        out, index, probs, keep = _topk_forward(q, k, v, pattern, key_mask, scale, dropout_p)
        ctx.save_for_backward(q, k, v, index, probs, keep)
        ctx.scale, ctx.block, ctx.dropout_p = scale, pattern.block, dropout_p
        return out

    @staticmethod
    def backward(ctx, dout: Tensor):
        q, k, v, index, probs, keep = ctx.saved_tensors
        scale, block, dropout_p = ctx.scale, ctx.block, ctx.dropout_p
        acc = probs.dtype
        L = q.shape[2]
        dq = torch.empty_like(q)
        dk = torch.zeros(k.shape, dtype=acc, device=k.device)
        dv = torch.zeros(v.shape, dtype=acc, device=v.device)
        for s0 in range(0, L, block):
            s1 = min(L, s0 + block)
            idx, p = index[:, :, s0:s1], probs[:, :, s0:s1]
            do = dout[:, :, s0:s1].to(acc)
            pd = p
            if keep is not None:
                pd = p * keep[:, :, s0:s1] / (1.0 - dropout_p)
            _scatter_add(dv, idx, pd[..., None] * do[:, :, :, None, :])
            dp = torch.einsum("bhqd,bhqcd->bhqc", do, _gather(v, idx).to(acc))
            if keep is not None:
                dp = dp * keep[:, :, s0:s1] / (1.0 - dropout_p)
            # softmax backward: ds = p * (dp - sum(p * dp)); with dropout the row sum is o . dout
            ds = p * (dp - (p * dp).sum(-1, keepdim=True)) * scale
            dq[:, :, s0:s1] = torch.einsum("bhqc,bhqcd->bhqd", ds, _gather(k, idx).to(acc)).to(q.dtype)
            _scatter_add(dk, idx, ds[..., None] * q[:, :, s0:s1, None, :].to(acc))
        return dq, dk.to(k.dtype), dv.to(v.dtype), None, None, None, None


@register_attention(TopK, tiles=False, how="exact top-k per query block: scores against all keys, softmax over the k kept")
def topk_attention(pattern: TopK, q: Tensor, k: Tensor, v: Tensor, *, key_mask: Tensor | None,
                   bias: TileBias | None, dropout_p: float, scale: float) -> Tensor:
    """:func:`longseq.attend` for a :class:`~longseq.patterns_topk.TopK` pattern.

    q, k, v ``(B, H, L, D)`` (k, v already expanded to q's heads), key_mask ``(B, L)``;
    returns ``(B, H, L, D)``.
    """
    if bias is not None:
        raise ValueError("TopK attention does not take a positional bias; use RoPE or absolute embeddings")
    if is_tracing():  # tracers cannot record the autograd Function; a traced graph has no backward
        return _topk_forward(q, k, v, pattern, key_mask, float(scale), float(dropout_p))[0]
    return _TopKAttention.apply(q, k, v, pattern, key_mask, float(scale), float(dropout_p))

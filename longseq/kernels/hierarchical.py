"""Hierarchical attention: own-segment tokens and other segments' mean summaries, one softmax.

Computed on segments laid out as a batch: scores ``(n, S, S)`` for the tokens and
``(n, S, n)`` for the summaries, so memory is ``O(L * (S + L / S))``; plain autograd
differentiates through the pooling into every key and value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from longseq.kernels.bias import TileBias
from longseq.kernels.registry import register_attention
from longseq.patterns_hierarchical import Hierarchical

__all__ = ["hierarchical_attention", "segment_summaries"]


def segment_summaries(x: Tensor, segment: int, key_mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Mean of ``x`` ``(B, H, L, D)`` over each segment's real tokens.

    Returns ``(B, H, n, D)`` means and ``(B, n)`` bool: whether the segment has a real token
    (its mean is 0 otherwise).
    """
    B, H, L, D = x.shape
    n = -(-L // segment)
    real = torch.ones(B, L, dtype=torch.bool, device=x.device) if key_mask is None else key_mask
    w = F.pad(real, (0, n * segment - L)).view(B, n, segment).to(x.dtype)
    count = w.sum(-1)  # (B, n)
    xs = F.pad(x, (0, 0, 0, n * segment - L)).view(B, H, n, segment, D)
    total = torch.einsum("bns,bhnsd->bhnd", w, xs)
    return total / count.clamp(min=1)[:, None, :, None], count > 0


@register_attention(Hierarchical, tiles=False, how="own segment plus every other segment's mean-pooled summary, one softmax")
def hierarchical_attention(pattern: Hierarchical, q: Tensor, k: Tensor, v: Tensor, *, key_mask: Tensor | None,
                           bias: TileBias | None, dropout_p: float, scale: float) -> Tensor:
    """:func:`longseq.attend` for a :class:`~longseq.patterns_hierarchical.Hierarchical` pattern.

    q, k, v ``(B, H, L, D)`` (k, v already expanded to q's heads), key_mask ``(B, L)``;
    returns ``(B, H, L, D)``.
    """
    if bias is not None:
        raise ValueError("Hierarchical attention does not take a positional bias; use RoPE or absolute embeddings")
    B, H, L, D = q.shape
    S = min(pattern.segment, L)
    n = -(-L // S)
    pad = n * S - L
    acc = torch.promote_types(q.dtype, torch.float32)  # softmax in float32 for half inputs
    qf, kf, vf = (t.to(acc) for t in (q, k, v))
    ks, has = segment_summaries(kf, S, key_mask)
    vs, _ = segment_summaries(vf, S, key_mask)
    qb = F.pad(qf, (0, 0, 0, pad)).view(B, H, n, S, D)
    kb = F.pad(kf, (0, 0, 0, pad)).view(B, H, n, S, D)
    vb = F.pad(vf, (0, 0, 0, pad)).view(B, H, n, S, D)

    real = torch.ones(B, L, dtype=torch.bool, device=q.device) if key_mask is None else key_mask
    local_ok = F.pad(real, (0, pad)).view(B, 1, n, 1, S)  # padding is never a key
    if pattern.causal:
        local_ok = local_ok & torch.ones(S, S, dtype=torch.bool, device=q.device).tril()
    seg = torch.arange(n, device=q.device)
    other = (seg[None, :] < seg[:, None]) if pattern.causal else (seg[None, :] != seg[:, None])  # (own, t)
    summary_ok = other[None, None, :, None, :] & has[:, None, None, None, :]  # (B, 1, n, 1, n)

    s_local = torch.einsum("bhnqd,bhnkd->bhnqk", qb, kb) * scale
    s_sum = torch.einsum("bhnqd,bhtd->bhnqt", qb, ks) * scale
    s = torch.cat([s_local.masked_fill(~local_ok, float("-inf")), s_sum.masked_fill(~summary_ok, float("-inf"))], -1)
    m = s.amax(-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m)).detach()  # rows with no key: zeros
    e = torch.exp(s - m)
    den = e.sum(-1, keepdim=True)
    p = e / torch.where(den > 0, den, torch.ones_like(den))
    if dropout_p > 0:
        p = F.dropout(p, dropout_p)
    out = torch.einsum("bhnqk,bhnkd->bhnqd", p[..., :S], vb) + torch.einsum("bhnqt,bhtd->bhnqd", p[..., S:], vs)
    return out.reshape(B, H, n * S, D)[:, :, :L].to(q.dtype)

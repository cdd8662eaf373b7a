"""Linformer attention: keys and values projected along the sequence to ``k`` rows.

Self-attention over ``L`` tokens costs ``L x L``; Linformer (Wang et al. 2020) replaces
the keys ``K (L, D)`` and values ``V (L, D)`` by ``E^T K`` and ``F^T V`` with learned
``(max_len, k)`` projections, so every query attends ``k`` mixed keys: ``O(L * k)`` time
and memory. The projections are shared by all heads of a layer. This is not a pattern
of :func:`longseq.attend` (the keys no longer correspond to positions), hence a layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LowRank", "lowrank_attention"]


def lowrank_attention(q: Tensor, k: Tensor, v: Tensor, e: Tensor, f: Tensor, *, key_mask: Tensor | None = None,
                      variable_length: bool = True, dropout_p: float = 0.0, scale: float | None = None) -> Tensor:
    """Attention of q over the sequence-projected k and v.

    Args:
        q, k, v: ``(B, H, L, D)``.
        e, f: ``(max_len, r)`` projections of keys and values (``L <= max_len``).
        key_mask: ``(B, L)`` bool, True = real token; padded tokens' rows of ``e`` and
            ``f`` are zeroed, so they contribute nothing to the projected keys.
        variable_length: scale the sliced projections by ``max_len / n`` (``n`` real
            tokens per row), so a projected key keeps the magnitude it has at full length:
            ``E^T K`` sums ``max_len`` tokens there and ``n`` here. Without it, a shorter
            input is exactly a full-length one zero-padded at the end.
        dropout_p: attention-probability dropout.
        scale: score scale, default ``D ** -0.5``.

    Returns:
        ``(B, H, L, D)``.
    """
    B, H, L, D = q.shape
    max_len = e.shape[0]
    if L > max_len:
        raise ValueError(f"LowRank projections cover max_len={max_len} tokens, got L={L}")
    # the projections sum up to max_len tokens: accumulated in float32 for half inputs
    acc = torch.promote_types(q.dtype, torch.float32)
    w = torch.ones(B, L, 1, dtype=acc, device=q.device)
    if key_mask is not None:
        w = w * key_mask[..., None].to(w.dtype)
    if variable_length:
        n = w.sum(1, keepdim=True).clamp(min=1)  # (B, 1, 1)
        w = w * (max_len / n)
    ep, fp = e[:L].to(acc) * w, f[:L].to(acc) * w  # (B, L, r)
    kp = torch.einsum("blr,bhld->bhrd", ep, k.to(acc)).to(q.dtype)
    vp = torch.einsum("blr,bhld->bhrd", fp, v.to(acc)).to(q.dtype)
    return F.scaled_dot_product_attention(q, kp, vp, dropout_p=dropout_p, scale=scale)


class LowRank(nn.Module):
    """Multi-head Linformer self-attention.

    Args:
        dim: model width.
        heads: heads; ``dim`` must be divisible by it.
        k: projected length (rows every query attends).
        max_len: the longest input; ``forward`` raises ``ValueError`` beyond it.
        variable_length: inputs shorter than ``max_len`` use the projection's first ``L``
            rows rescaled by ``max_len / (real tokens)`` (see :func:`lowrank_attention`);
            otherwise they are treated as zero-padded to ``max_len``.
        share_kv: one projection for keys and values.
        attn_drop: attention-probability dropout while training.

    Bidirectional only: every projected key mixes the whole sequence, so there is no
    causal form. ``forward(x (B, L, dim), key_mask=None) -> (B, L, dim)``.
    """

    def __init__(self, dim: int, heads: int, k: int, max_len: int, *, variable_length: bool = True,
                 share_kv: bool = False, qkv_bias: bool = True, attn_drop: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        if k < 1 or max_len < 1:
            raise ValueError(f"k and max_len must be positive, got k={k}, max_len={max_len}")
        self.dim, self.heads, self.k, self.max_len = dim, heads, k, max_len
        self.head_dim = dim // heads
        self.variable_length, self.attn_drop = variable_length, attn_drop
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.e = nn.Parameter(torch.empty(max_len, k))
        nn.init.xavier_normal_(self.e)
        if share_kv:
            self.f = self.e
        else:
            self.f = nn.Parameter(torch.empty(max_len, k))
            nn.init.xavier_normal_(self.f)

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be (B, L, {self.dim}), got {tuple(x.shape)}")
        B, L, _ = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = lowrank_attention(q, k, v, self.e, self.f, key_mask=key_mask, variable_length=self.variable_length,
                                dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(B, L, self.dim))

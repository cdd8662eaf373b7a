"""Multi-head attention module: owns projections; the pattern and kernel do the rest."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from longseq.attention import attend
from longseq.patterns import Pattern

__all__ = ["MultiheadAttention"]


class MultiheadAttention(nn.Module):
    """Projections around :func:`longseq.attend`.

    Args:
        dim: model width.
        heads: query heads; ``dim`` must be divisible by it.
        pattern: default pattern (``forward(pattern=...)`` overrides it per call, e.g. when
            an image size changes a ``Window2D`` grid).
        kv_heads: key/value heads for grouped-query attention (divides ``heads``).
        bias: a :mod:`longseq.positions` bias module.
        rope: a rotary module (``RoPE1D`` / ``RoPE2D``) applied to q and k.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        pattern: Pattern,
        kv_heads: int | None = None,
        bias: nn.Module | None = None,
        rope: nn.Module | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        kv_heads = heads if kv_heads is None else kv_heads
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        if kv_heads < 1 or heads % kv_heads:
            raise ValueError(f"kv_heads ({kv_heads}) must divide heads ({heads})")
        self.dim, self.heads, self.kv_heads = dim, heads, kv_heads
        self.head_dim = dim // heads
        self.pattern = pattern
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * kv_heads * self.head_dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.attn_drop = attn_drop
        self.bias = bias
        self.rope = rope

    def forward(
        self,
        x: Tensor,
        key_mask: Tensor | None = None,
        pattern: Pattern | None = None,
        positions: Tensor | None = None,
    ) -> Tensor:
        """x (B, L, dim) -> (B, L, dim)."""
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be (B, L, {self.dim}), got {tuple(x.shape)}")
        B, L, _ = x.shape
        q = self.q(x).view(B, L, self.heads, self.head_dim).transpose(1, 2)  # B, H, L, Dh
        k, v = self.kv(x).view(B, L, 2, self.kv_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # B, Hkv, L, Dh
        if self.rope is not None:
            q, k = self.rope(q, positions), self.rope(k, positions)
        # No .contiguous(): the kernel works token-major, which is how these views already lie.
        out = attend(
            q,
            k,
            v,
            pattern or self.pattern,
            key_mask=key_mask,
            bias=self.bias,
            dropout_p=self.attn_drop if self.training else 0.0,
        )
        out = out.transpose(1, 2).reshape(B, L, self.dim)
        return self.proj_drop(self.proj(out))

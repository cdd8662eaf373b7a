"""Pre-norm transformer block and a (optionally reversible) encoder stack."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from longseq.layers.attention import MultiheadAttention
from longseq.layers.feedforward import ChunkedFeedForward
from longseq.layers.kv_cache import KVCache, LayerKVCache
from longseq.layers.reversible import ReversibleSequence
from longseq.patterns import Pattern, as_causal

__all__ = ["DropPath", "TransformerBlock", "Encoder"]


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch per sample while training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1 - self.p)


class _AttentionBranch(nn.Module):
    """norm -> attention -> drop path: the F of a reversible layer."""

    def __init__(self, norm: nn.Module, attn: MultiheadAttention, drop_path: nn.Module) -> None:
        super().__init__()
        self.norm, self.attn, self.drop_path = norm, attn, drop_path

    def forward(self, x: Tensor, key_mask: Tensor | None = None, pattern: Pattern | None = None,
                positions: Tensor | None = None) -> Tensor:
        return self.drop_path(self.attn(self.norm(x), key_mask=key_mask, pattern=pattern, positions=positions))


class _FeedForwardBranch(nn.Module):
    """norm -> feed-forward -> drop path: the G of a reversible layer."""

    def __init__(self, norm: nn.Module, ff: nn.Module, drop_path: nn.Module) -> None:
        super().__init__()
        self.norm, self.ff, self.drop_path = norm, ff, drop_path

    def forward(self, x: Tensor) -> Tensor:
        return self.drop_path(self.ff(x, pre=self.norm))


class TransformerBlock(nn.Module):
    """``x + attn(norm(x))`` then ``x + ff(norm(x))``; x (B, L, dim) -> (B, L, dim)."""

    def __init__(
        self,
        dim: int,
        heads: int,
        pattern: Pattern,
        mlp_ratio: float = 4.0,
        kv_heads: int | None = None,
        bias: nn.Module | None = None,
        rope: nn.Module | None = None,
        ff_chunks: int | str = 1,
        head_chunks: int | str = 1,
        chunk_above: int = 0,
        drop_path: float = 0.0,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        dropout: float = 0.0,
        global_length_scale: bool = False,
    ) -> None:
        super().__init__()
        dp = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        attn = MultiheadAttention(dim, heads, pattern, kv_heads=kv_heads, bias=bias, rope=rope,
                                  attn_drop=dropout, proj_drop=dropout, head_chunks=head_chunks,
                                  chunk_above=chunk_above, global_length_scale=global_length_scale)
        ff = ChunkedFeedForward(dim, int(dim * mlp_ratio), chunks=ff_chunks, dropout=dropout, chunk_above=chunk_above)
        self.attn_branch = _AttentionBranch(norm_layer(dim), attn, dp)
        self.ff_branch = _FeedForwardBranch(norm_layer(dim), ff, dp)

    @property
    def attn(self) -> MultiheadAttention:
        return self.attn_branch.attn

    @property
    def pattern(self) -> Pattern:
        return self.attn.pattern

    def forward(self, x: Tensor, key_mask: Tensor | None = None, pattern: Pattern | None = None,
                positions: Tensor | None = None) -> Tensor:
        x = x + self.attn_branch(x, key_mask=key_mask, pattern=pattern, positions=positions)
        return x + self.ff_branch(x)

    def attn_step(self, x: Tensor, cache: LayerKVCache) -> Tensor:
        """The attention branch (norm, cached attention, drop path) of new tokens (B, n, dim)."""
        b = self.attn_branch
        return b.drop_path(b.attn.step(b.norm(x), cache))

    def step(self, x: Tensor, cache: LayerKVCache) -> Tensor:
        """:meth:`forward` of ``n`` new tokens x (B, n, dim) with cached keys: (B, n, dim)."""
        x = x + self.attn_step(x, cache)
        return x + self.ff_branch(x)


class Encoder(nn.Module):
    """A stack of :class:`TransformerBlock` with a final norm, optionally reversible.

    Build it from blocks (each may carry its own pattern)::

        Encoder([TransformerBlock(64, 4, SlidingWindow(128)), TransformerBlock(64, 4, Dense())])

    or from sizes, with one pattern or a list of ``depth`` patterns::

        Encoder(64, depth=4, heads=4, pattern=[SlidingWindow(128)] * 3 + [SlidingWindow(128, global_tokens=[0])])

    ``causal=True`` turns every pattern causal (``ValueError`` for patterns without a
    causal form, such as BigBird). With ``reversible=True`` the input is duplicated into two streams that run through a
    :class:`ReversibleSequence` and are averaged at the end, so activation memory does
    not grow with depth. ``forward(x (B, L, dim), key_mask=None, positions=None)``.
    """

    def __init__(
        self,
        blocks: Sequence[TransformerBlock] | int,
        depth: int | None = None,
        heads: int | None = None,
        pattern: Pattern | Sequence[Pattern] | None = None,
        *,
        reversible: bool = False,
        causal: bool = False,
        final_norm: bool = True,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        **block_kwargs,
    ) -> None:
        super().__init__()
        if isinstance(blocks, int):
            dim = blocks
            if depth is None or heads is None or pattern is None:
                raise ValueError("Encoder(dim, depth, heads, pattern) needs depth, heads and pattern")
            patterns = list(pattern) if isinstance(pattern, (list, tuple)) else [pattern] * depth
            if causal:
                patterns = [as_causal(p) for p in patterns]
            if len(patterns) != depth:
                raise ValueError(f"pattern list has {len(patterns)} entries but depth is {depth}")
            blocks = [TransformerBlock(dim, heads, p, norm_layer=norm_layer, **block_kwargs) for p in patterns]
        blocks = list(blocks)
        if not blocks:
            raise ValueError("Encoder needs at least one block")
        if causal:
            for b in blocks:
                b.attn.pattern = as_causal(b.attn.pattern)
        dim = blocks[0].attn.dim
        self.blocks = nn.ModuleList(blocks)
        self.reversible = reversible
        self.rev = ReversibleSequence([(b.attn_branch, b.ff_branch) for b in blocks]) if reversible else None
        self.norm = norm_layer(dim) if final_norm else nn.Identity()

    def new_cache(self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
                  max_len: int | None = None) -> KVCache:
        """An empty :class:`~longseq.layers.kv_cache.KVCache` for :meth:`step`: one bounded
        cache per layer (``ValueError`` naming the layer whose pattern has no bounded causal
        reach). ``max_len``: the total tokens to decode, when known (bounds every ring by it)."""
        layers = []
        for i, block in enumerate(self.blocks):
            try:
                layers.append(block.attn.new_cache(batch, device, dtype, max_len))
            except ValueError as exc:
                raise ValueError(f"layer {i}: {exc}") from None
        return KVCache(layers)

    def step(self, x: Tensor, cache: KVCache) -> Tensor:
        """Features of ``n`` new tokens x (B, n, dim) after the prefix ``cache`` holds: (B, n, dim).

        Equals the last ``n`` rows of :meth:`forward` over the whole sequence so far
        (unpadded), at ``O(n * capacity)`` per layer; appends the new tokens to ``cache``.
        """
        if len(cache.layers) != len(self.blocks):
            raise ValueError(f"cache has {len(cache.layers)} layers, the encoder {len(self.blocks)}")
        if self.rev is not None:  # the reversible couplings, token-wise apart from attention
            x1 = x2 = x
            for block, layer in zip(self.blocks, cache.layers):
                x1 = x1 + block.attn_step(x2, layer)
                x2 = x2 + block.ff_branch(x1)
            x = (x1 + x2) / 2
        else:
            for block, layer in zip(self.blocks, cache.layers):
                x = block.step(x, layer)
        return self.norm(x)

    def forward(self, x: Tensor, key_mask: Tensor | None = None, positions: Tensor | None = None) -> Tensor:
        if self.rev is not None:
            y1, y2 = self.rev(x, x, key_mask=key_mask, positions=positions)
            x = (y1 + y2) / 2
        else:
            for block in self.blocks:
                x = block(x, key_mask=key_mask, positions=positions)
        return self.norm(x)

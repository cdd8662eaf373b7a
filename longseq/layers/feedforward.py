"""Feed-forward applied chunk by chunk along the sequence, so its hidden activations
(``mult`` times wider than the model) are never held for the whole sequence."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

__all__ = ["FeedForward", "ChunkedFeedForward"]


class FeedForward(nn.Module):
    """Linear -> activation -> dropout -> Linear."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, activation: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), activation(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ChunkedFeedForward(nn.Module):
    """Feed-forward over ``chunks`` slices of the sequence axis.

    With ``chunks > 1`` each slice is recomputed in backward (activation checkpointing),
    so the tensors saved for backward are the input slices only, not the wide hidden
    layer. Output equals the unchunked feed-forward exactly (it is position-wise).
    x (B, L, dim) -> (B, L, dim).
    """

    def __init__(self, dim: int, hidden: int, chunks: int = 1, dropout: float = 0.0,
                 activation: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        if chunks < 1:
            raise ValueError(f"chunks must be >= 1, got {chunks}")
        self.chunks = chunks
        self.ff = FeedForward(dim, hidden, dropout, activation)

    def forward(self, x: Tensor, pre: nn.Module | None = None) -> Tensor:
        """``pre`` (a position-wise module such as the block's norm) is applied to x first,
        per chunk, so with ``chunks > 1`` its output is recomputed rather than saved."""
        if self.chunks == 1:
            return self.ff(pre(x) if pre is not None else x)
        def fn(chunk: Tensor) -> Tensor:
            return self.ff(pre(chunk) if pre is not None else chunk)

        parts = x.chunk(self.chunks, dim=1)
        if not torch.is_grad_enabled():
            return torch.cat([fn(p) for p in parts], dim=1)
        return torch.cat([checkpoint(fn, p, use_reentrant=False) for p in parts], dim=1)

"""Pair counts of banded patterns, shared by patterns (FLOP counts) and the kernels' plans.

Pure index arithmetic on ``float64`` vectors of length ``L``: nothing here knows a kernel.
"""

from __future__ import annotations

import torch

__all__ = ["band_pair_count"]


def band_pair_count(L: int, window: int, causal: bool = False, dilation: int = 1) -> int:
    """Pairs with ``|i - j| <= window*dilation``, same residue mod dilation, in O(L)."""
    i = torch.arange(L, dtype=torch.float64)
    t_min = torch.maximum(torch.full_like(i, -window), torch.ceil(-i / dilation))
    t_max = torch.minimum(torch.full_like(i, 0 if causal else window), torch.floor((L - 1 - i) / dilation))
    return int((t_max - t_min + 1).clamp(min=0).sum())

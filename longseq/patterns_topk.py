"""Top-k attention as a pattern: each query keeps the k keys that score highest against it.

The layout depends on q and k, so it is built per call: :meth:`TopK.select` scores one
block of queries against every key and keeps the ``k`` best, which bounds the working
memory by ``block x L`` scores instead of ``L x L``. :mod:`longseq.kernels.topk` computes
the attention over the kept keys; :meth:`TopK.dense_masks` reports the same selection as
boolean masks for tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from longseq.patterns_base import Pattern, check_bool, check_int, set_fields

__all__ = ["TopK"]


@dataclass(frozen=True)
class TopK(Pattern):
    """Each query attends its ``k`` highest-scoring keys (``q . k``).

    Keys excluded by ``causal`` (``j > i``) or by ``key_mask`` never compete; a query
    with fewer than ``k`` admissible keys keeps all of them, and one with none gives a
    zero row. Equal scores are ranked as ``torch.topk`` ranks them. The selection is not differentiable;
    gradients flow through the kept scores and values. ``block`` queries are scored at
    a time: working memory ``O(block * L)``, kept state ``O(L * k)``.
    """

    k: int
    causal: bool = False
    block: int = 128

    def __post_init__(self) -> None:
        set_fields(self, k=check_int("TopK.k", self.k), causal=check_bool("TopK.causal", self.causal),
                   block=check_int("TopK.block", self.block))

    def allowed(self, i: Tensor, j: Tensor) -> Tensor:
        raise ValueError("TopK is data-dependent: use pattern.dense_masks(q, k) for its masks")

    def dense_mask(self, L: int, device=None) -> Tensor:
        raise ValueError("TopK is data-dependent: use pattern.dense_masks(q, k) for its masks")

    def kept(self, L: int) -> int:
        """Keys kept per query at length ``L``."""
        return min(self.k, L)

    def select(self, q: Tensor, k: Tensor, start: int, key_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Top keys of the queries ``q`` ``(B, H, n, D)`` at positions ``start .. start + n``.

        k ``(B, H, L, D)``, key_mask ``(B, L)``. Returns ``(index, valid)``, both
        ``(B, H, n, kept(L))``: key indices in score order, and whether each is an
        admissible key (False where a query has fewer than ``k`` of them).
        Scores are computed in float32 at least, without gradient.
        """
        L, kept = k.shape[2], self.kept(k.shape[2])
        # causal: keys after the block's last query are never kept, so they are not scored
        # (at least ``kept`` columns remain, so every index stays a key of the sequence)
        n_keys = max(kept, min(L, start + q.shape[2])) if self.causal else L
        acc = torch.promote_types(q.dtype, torch.float32)
        with torch.no_grad():
            s = q.detach().to(acc) @ k[:, :, :n_keys].detach().to(acc).transpose(-1, -2)  # (B, H, n, n_keys)
            bad = None
            if self.causal:
                i = torch.arange(start, start + q.shape[2], device=q.device)[:, None]
                bad = torch.arange(n_keys, device=q.device)[None, :] > i
            if key_mask is not None:
                km = ~key_mask[:, None, None, :n_keys]
                bad = km if bad is None else bad | km
            if bad is not None:
                s = s.masked_fill(bad, float("-inf"))
            vals, idx = torch.topk(s, kept, dim=-1, sorted=True)
        return idx, torch.isfinite(vals)

    def dense_masks(self, q: Tensor, k: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """``(B, H, L, L)`` bool: the keys each query keeps, as :func:`longseq.attend` selects them.

        q, k ``(B, H, L, D)`` (k expanded to q's heads), key_mask ``(B, L)``. For tests
        and small inputs only.
        """
        B, H, L, _ = q.shape
        out = torch.zeros(B, H, L, L, dtype=torch.bool, device=q.device)
        for s0 in range(0, L, self.block):
            idx, valid = self.select(q[:, :, s0 : s0 + self.block], k, s0, key_mask)
            out[:, :, s0 : s0 + self.block].scatter_(-1, idx, valid)
        return out

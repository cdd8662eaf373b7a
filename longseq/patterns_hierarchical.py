"""Two-level attention as a pattern: tokens of the own segment, summaries of the others.

The sequence is cut into segments of ``segment`` tokens (the last may be shorter). Each
segment is summarised by the mean of its real tokens' keys and values. A query attends,
in one softmax, the tokens of its own segment and the summary of every other segment.
:mod:`longseq.kernels.hierarchical` computes it; :meth:`Hierarchical.dense_masks` gives
the token-level and summary-level masks for tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from longseq.patterns_base import Pattern, check_bool, check_int, set_fields

__all__ = ["Hierarchical"]


@dataclass(frozen=True)
class Hierarchical(Pattern):
    """Local attention inside segments plus attention to the other segments' summaries.

    Query ``i`` in segment ``s = i // segment`` attends key ``j`` iff ``j // segment == s``
    (and ``j <= i`` when ``causal``), and the summary of every segment ``t != s`` (``t < s``
    when ``causal``, so a summary never holds a future token). A summary's key and value
    are the means of the segment's keys and values over the tokens ``key_mask`` admits; a
    segment without such tokens has no summary. Both kinds of keys share one softmax
    (equivalently: the local and the summary-level partial attentions merged by
    log-sum-exp), with the query's own ``q`` against the summary keys. Cost per query:
    ``segment + ceil(L / segment)`` keys, minimal near ``segment = sqrt(L)``.
    """

    segment: int
    causal: bool = False

    def __post_init__(self) -> None:
        set_fields(self, segment=check_int("Hierarchical.segment", self.segment),
                   causal=check_bool("Hierarchical.causal", self.causal))

    def n_segments(self, L: int) -> int:
        return math.ceil(L / self.segment)

    def allowed(self, i: Tensor, j: Tensor) -> Tensor:
        """The token-level part only (same segment); summaries are keys of their own."""
        m = (i // self.segment) == (j // self.segment)
        return m & (j <= i) if self.causal else m

    def dense_mask(self, L: int, device=None) -> Tensor:
        raise ValueError("Hierarchical also attends segment summaries: use pattern.dense_masks(L) for both masks")

    def dense_masks(self, L: int, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """``(L, L)`` token mask and ``(L, n_segments)`` summary mask (True = may attend).

        Segments without a real token must still be removed from the summary mask by the
        caller (they depend on ``key_mask``). For tests and small inputs only.
        """
        idx = torch.arange(L, device=device)
        seg = torch.arange(self.n_segments(L), device=device)
        own = (idx // self.segment)[:, None]
        summary = (seg[None, :] < own) if self.causal else (seg[None, :] != own)
        return self.allowed(idx[:, None], idx[None, :]), summary

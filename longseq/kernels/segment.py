"""Blocked-kernel tiling of :class:`~longseq.patterns_segment.SegmentRecurrence`.

One query block per segment; its key span is the ``memory`` previous segments and its
own. Blocks start on segment boundaries, so every full tile is a translate of the first
full one by whole segments and shares its template mask (the rule is invariant under
such translations).
"""

from __future__ import annotations

import math

import torch

from longseq.kernels.plan import Plan, Tiling, mark_regular
from longseq.kernels.registry import register_tiling
from longseq.patterns_segment import SegmentRecurrence

__all__ = ["segment_recurrence_tiling"]


@register_tiling(SegmentRecurrence)
def segment_recurrence_tiling(pattern: SegmentRecurrence, L: int, device: torch.device) -> Tiling:
    """Segment-aligned band tiles: block ``segment``, span ``(memory + 1) * segment``.

    A segment longer than the sequence is cut to it, and the memory to the segments that
    exist, so the layout stays ``O(L)`` whatever the fields; the rule keeps the uncapped
    values and decides the same pairs."""
    s = min(pattern.segment, L)
    n = math.ceil(L / s)
    m = min(pattern.memory, n - 1)
    plan = Plan(L=L, block=s, n_blocks=n, left=m * s, span=(m + 1) * s, rule=pattern.allowed)
    return Tiling([mark_regular(plan, device)])

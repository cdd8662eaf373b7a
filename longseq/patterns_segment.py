"""Transformer-XL style segment recurrence as a pattern: causal attention over the own
segment and a fixed number of previous segments.

Streaming a sequence segment by segment while carrying the previous segments' keys and
values as memory (:class:`longseq.layers.SegmentStream`) computes exactly this pattern
over the concatenated sequence; :func:`longseq.attend` computes it in one call on the
blocked kernel (one query block per segment).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from longseq.patterns_base import Pattern, check_int, set_fields

__all__ = ["SegmentRecurrence"]


@dataclass(frozen=True)
class SegmentRecurrence(Pattern):
    """Query ``i`` attends key ``j`` iff ``j <= i`` and ``j // segment >= i // segment - memory``.

    Each query sees its own segment causally and the whole of the ``memory`` segments
    before it (Transformer-XL with a memory of ``memory * segment`` tokens), so a query
    sees between ``memory * segment + 1`` and ``(memory + 1) * segment`` keys. Always
    causal. Cost ``O(L * (memory + 1) * segment)``.
    """

    segment: int
    memory: int = 1

    #: a class attribute, not a field: the pattern has no bidirectional form
    causal = True

    def __post_init__(self) -> None:
        set_fields(self, segment=check_int("SegmentRecurrence.segment", self.segment),
                   memory=check_int("SegmentRecurrence.memory", self.memory, 0))

    def allowed(self, i: Tensor, j: Tensor) -> Tensor:
        s = self.segment
        return (j <= i) & (j // s >= i // s - self.memory)

"""Streaming attention for :class:`~longseq.patterns.SegmentRecurrence` (Transformer-XL).

A :class:`SegmentStream` takes one segment of queries, keys and values at a time and
keeps the keys and values of the last ``memory`` segments, detached, as memory: the
outputs equal :func:`longseq.attend` over the concatenated sequence with the pattern
(the same keys are seen with the same mask), while backward stops at the segment.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from longseq.patterns_segment import SegmentRecurrence

__all__ = ["SegmentStream", "stream_segments"]


class SegmentStream:
    """Segment-by-segment attention with a memory of previous segments.

    Args:
        pattern: segment length and memory (in segments).
        scale: score scale, default ``D ** -0.5``.

    :meth:`step` takes q ``(B, H, n, D)`` and k, v ``(B, Hkv, n, D)`` for the next ``n``
    tokens: ``n == segment``, except that the last segment of a stream may be shorter
    (no step may follow it until :meth:`reset`). ``key_mask`` ``(B, n)`` marks real tokens.
    """

    def __init__(self, pattern: SegmentRecurrence, scale: float | None = None) -> None:
        if not isinstance(pattern, SegmentRecurrence):
            raise TypeError(f"SegmentStream needs a SegmentRecurrence pattern, got {type(pattern).__name__}")
        self.pattern, self.scale = pattern, scale
        self.reset()

    def reset(self) -> None:
        """Forget the memory: the next step starts a new sequence."""
        self._memory: list[tuple[Tensor, Tensor, Tensor | None]] = []
        self._closed = False
        self.position = 0  # tokens seen so far

    def step(self, q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """Attention output ``(B, H, n, D)`` of the next segment."""
        n = q.shape[2]
        if self._closed:
            raise ValueError("a shorter segment ended this stream: call reset() before the next step")
        if n < 1 or n > self.pattern.segment:
            raise ValueError(f"a step takes 1 to segment={self.pattern.segment} tokens, got {n}")
        if k.shape[1] != q.shape[1]:
            rep = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        B = q.shape[0]
        mem = self._memory[-self.pattern.memory:] if self.pattern.memory else []
        keys = torch.cat([m[0] for m in mem] + [k], 2)
        values = torch.cat([m[1] for m in mem] + [v], 2)
        real = [m[2] if m[2] is not None else torch.ones(B, m[0].shape[2], dtype=torch.bool, device=q.device)
                for m in mem]
        real.append(key_mask if key_mask is not None else torch.ones(B, n, dtype=torch.bool, device=q.device))
        M = keys.shape[2] - n
        # memory entirely, the own segment causally
        ok = torch.ones(n, M + n, dtype=torch.bool, device=q.device)
        ok[:, M:] = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
        ok = ok[None, None] & torch.cat(real, 1)[:, None, None, :]
        has = ok.any(-1, keepdim=True)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=ok | ~has, scale=self.scale)
        out = out * has.to(out.dtype)  # queries without a key give zeros, as attend does
        if self.pattern.memory:
            self._memory.append((k.detach(), v.detach(), key_mask))
            del self._memory[: -self.pattern.memory]
        self._closed = n < self.pattern.segment
        self.position += n
        return out


def stream_segments(pattern: SegmentRecurrence, q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None = None,
                    scale: float | None = None) -> Iterator[Tensor]:
    """Yield the outputs ``(B, H, n, D)`` of q, k, v ``(B, H, L, D)`` one segment at a time.

    Concatenated along the sequence they equal ``attend(q, k, v, pattern, key_mask=key_mask)``.
    """
    stream = SegmentStream(pattern, scale)
    for s0 in range(0, q.shape[2], pattern.segment):
        s1 = s0 + pattern.segment
        yield stream.step(q[:, :, s0:s1], k[:, :, s0:s1], v[:, :, s0:s1],
                          None if key_mask is None else key_mask[:, s0:s1])

"""Batches of one rank's slice of every window, for a window split over ranks (``--sequence-parallel``).

:class:`SliceCollate` pads the items as :func:`~genomics.data.datasets.pad_collate` does, then
keeps bases ``start .. stop - 1`` of every window
(:func:`genomics.models.sequence_parallel.slice_bounds`) in each per-base entry
(``input_ids``, ``mask``, ``labels``), and adds what a slice cannot see by itself:

* ``next_ids``, ``next_mask`` ``(B, stop - start)``: the base after each one (the base at
  ``stop`` for the slice's last position; padding after the window's end), the next-base
  targets of a causal language model;
* ``window_targets`` ``(B,)``: the next-base targets of each whole window (bases A, C, G, T
  after the first), which a causal language model's loss is the mean over;
* ``slice_bounds`` ``(2,)`` and ``slices`` ``()``: ``start, stop`` and the number of slices.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from genomics.data.datasets import pad_collate
from genomics.data.tokenizers import NUM_BASES, PAD, is_unknown

__all__ = ["SliceCollate"]

_PER_BASE = ("input_ids", "mask", "labels")


class SliceCollate:
    """``collate_fn`` giving rank ``rank`` of ``slices`` its slice of each padded batch."""

    def __init__(self, rank: int, slices: int) -> None:
        if not 0 <= rank < slices:
            raise ValueError(f"need 0 <= rank < slices, got rank={rank}, slices={slices}")
        self.rank, self.slices = int(rank), int(slices)

    def __call__(self, items: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
        from genomics.models.sequence_parallel import slice_bounds

        full = pad_collate(items)
        ids, mask = full["input_ids"], full["mask"]
        start, stop = slice_bounds(ids.shape[1], self.rank, self.slices)
        out = {k: (v[:, start:stop] if k in _PER_BASE else v) for k, v in full.items()}
        out["next_ids"] = F.pad(ids[:, start + 1:stop + 1], (0, stop - min(stop, ids.shape[1] - 1)), value=PAD)
        out["next_mask"] = F.pad(mask[:, start + 1:stop + 1], (0, stop - min(stop, ids.shape[1] - 1)), value=False)
        base = mask & (ids < NUM_BASES) & ~is_unknown(ids)
        out["window_targets"] = base[:, 1:].sum(1)
        out["slice_bounds"] = torch.tensor([start, stop])
        out["slices"] = torch.tensor(self.slices)
        return out

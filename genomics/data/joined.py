"""Windows over the records of one split joined end to end by a separator token.

By default a window never spans two records (contigs, chromosomes). Genomes made of many
short contigs then waste or drop most of their sequence at long window lengths; joining
reads the split's regions as one stream with a ``SEP`` token between consecutive regions.
The separator's ``mask`` entry is False, so attention never reads it as a key and the
language-model loss skips it; annotation labels there are ``IGNORE_INDEX``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from genomics.data.datasets import IGNORE_INDEX, OnShort, pad_collate
from genomics.data.splits import Region
from genomics.data.tokenizers import SEP, is_unknown, reverse_complement
from genomics.io.cache import GenomeArray

__all__ = ["JoinedWindowDataset"]


class JoinedWindowDataset(Dataset):
    """Windows of ``seq_len`` over ``regions`` joined in order, one ``SEP`` between regions.

    Items are the dicts of :class:`~genomics.data.datasets.WindowDataset` (``input_ids``,
    ``mask``, optionally ``labels``), with ``mask`` False at separators. Windows tile the
    joined stream from its start (a trailing partial window is dropped); windows with more
    than ``max_n_frac`` N among their bases are skipped. A split shorter than one window is
    an error, or one shorter window (``on_short="clip"``, padded for ``"pad"``). ``augment=True`` shifts each window
    by up to ``max_shift`` (default one window) and reverse-complements it with probability
    ``rc_prob``.
    """

    def __init__(
        self,
        genomes: Sequence[GenomeArray],
        regions: Sequence[Region],
        seq_len: int,
        *,
        on_short: OnShort = "error",
        max_n_frac: float = 0.1,
        augment: bool = False,
        rc_prob: float = 0.5,
        max_shift: int | None = None,
        with_labels: bool = False,
        split: str = "",
    ) -> None:
        if seq_len < 2:
            raise ValueError(f"seq_len must be >= 2, got {seq_len}")
        if not regions:
            raise ValueError(f"split {split!r} has no region to join")
        self.genomes, self.regions, self.seq_len = list(genomes), list(regions), seq_len
        self.augment, self.rc_prob, self.with_labels = augment, rc_prob, with_labels
        self.max_n_frac, self.on_short = max_n_frac, on_short
        self.max_shift = seq_len if max_shift is None else max_shift
        self.lengths = np.array([len(r.interval) for r in self.regions], dtype=np.int64)
        # joined coordinate of each region's first base; a separator follows every region but the last
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths + 1)[:-1]])
        self.total = int(self.offsets[-1] + self.lengths[-1])
        self.span = seq_len
        if self.total < seq_len:
            if on_short == "error":
                raise ValueError(
                    f"the joined {split or ''} regions hold {self.total} positions, fewer than seq_len={seq_len}; "
                    "set on_short='pad' or 'clip'"
                )
            self.span = self.total  # one shorter window ("clip"), padded back to seq_len for "pad"
        starts = np.arange(0, self.total - self.span + 1, self.span)
        n_frac = np.array([self._n_fraction(int(s), int(s) + self.span) for s in starts])
        self.starts = starts[n_frac <= max_n_frac]
        if not len(self.starts):
            raise ValueError(f"no joined {split or ''} window of {seq_len} bases has <= {max_n_frac:.0%} N")

    def __len__(self) -> int:
        return len(self.starts)

    def fetch(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """ids, mask (False at separators) and labels (or None) of joined positions [start, end)."""
        ids = np.full(end - start, SEP, dtype=np.uint8)
        mask = np.zeros(end - start, dtype=bool)
        labels = np.full(end - start, IGNORE_INDEX, dtype=np.int64) if self.with_labels else None
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        for r in range(first, len(self.regions)):
            lo = int(self.offsets[r])
            if lo >= end:
                break
            a, b = max(start, lo), min(end, lo + int(self.lengths[r]))  # this region's part, joined coordinates
            if b <= a:
                continue
            region = self.regions[r]
            genome, iv = self.genomes[region.genome], region.interval
            s0 = iv.start + a - lo
            ids[a - start : b - start] = genome.window(iv.record, s0, s0 + b - a)
            mask[a - start : b - start] = True
            if labels is not None:
                labels[a - start : b - start] = genome.label_window(iv.record, s0, s0 + b - a)
        return ids, mask, labels

    def _n_fraction(self, start: int, end: int) -> float:
        ids, mask, _ = self.fetch(start, end)
        return float(is_unknown(ids[mask]).sum()) / max(1, int(mask.sum()))

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        start = int(self.starts[index])
        if self.augment and self.max_shift > 0:
            lo, hi = max(0, start - self.max_shift), min(self.total - self.span, start + self.max_shift)
            shifted = int(torch.randint(lo, hi + 1, ()).item())
            if self._n_fraction(shifted, shifted + self.span) <= self.max_n_frac:
                start = shifted
        ids, mask, labels = self.fetch(start, start + self.span)
        if self.augment and self.rc_prob > 0 and torch.rand(()).item() < self.rc_prob:
            ids = np.ascontiguousarray(reverse_complement(ids))  # SEP is its own complement
            mask = np.ascontiguousarray(mask[::-1])
            labels = np.ascontiguousarray(labels[::-1]) if labels is not None else None
        item = {"input_ids": torch.from_numpy(ids.astype(np.int64)), "mask": torch.from_numpy(mask)}
        if labels is not None:
            item["labels"] = torch.from_numpy(labels)
        if self.on_short == "pad" and self.span < self.seq_len:
            item = {k: v[0] for k, v in pad_collate([item], length=self.seq_len).items()}
        return item

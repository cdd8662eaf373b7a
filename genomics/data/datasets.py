"""Torch datasets of genome windows (no Lightning here).

Windows are cut from :class:`~genomics.data.splits.Region` s, so a window never crosses a split
boundary or a record boundary. Items are dicts::

    input_ids  (L,) int64   nucleotide ids
    mask       (L,) bool    True = real base (False = padding)
    labels     (L,) int64   per-base labels, only for annotation genomes
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from genomics.data.splits import Region
from genomics.data.tokenizers import PAD, is_unknown, reverse_complement
from genomics.io.cache import GenomeArray
from genomics.io.readers import DataInputError

__all__ = ["OnShort", "Cell", "plan_cells", "WindowDataset", "SequenceDataset", "pad_collate", "IGNORE_INDEX"]

OnShort = Literal["error", "pad", "clip"]
IGNORE_INDEX = -100
#: (region index, start, end) of one window slot, absolute coordinates inside the record.
Cell = tuple[int, int, int]


def plan_cells(
    genomes: Sequence[GenomeArray],
    regions: Sequence[Region],
    seq_len: int,
    *,
    on_short: OnShort = "error",
    max_n_frac: float = 0.1,
    split: str = "",
) -> np.ndarray:
    """``(n, 3)`` int64 rows of :data:`Cell`: non-overlapping ``seq_len`` slots tiling each
    region from its start (a trailing partial slot is dropped), skipping slots with more than
    ``max_n_frac`` N. A region shorter than ``seq_len`` gives one short slot (``on_short`` =
    ``"pad"``/``"clip"``) or an error. An array, not a list of tuples: a genome has millions
    of short slots and the dataset is pickled into every DataLoader worker."""
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2, got {seq_len}")
    if on_short not in ("error", "pad", "clip"):
        raise ValueError(f"on_short must be 'error', 'pad' or 'clip', got {on_short!r}")
    cells: list[np.ndarray] = []
    for r, region in enumerate(regions):
        iv = region.interval
        if len(iv) < seq_len:
            if on_short == "error":
                raise DataInputError(
                    f"{split or 'a'} region {iv.record}:{iv.start}-{iv.end} ({len(iv)} bases) is shorter than "
                    f"seq_len={seq_len}; lower the window (--seq-len) or set data.on_short: pad or clip"
                )
            starts, span = np.array([iv.start]), len(iv)
        else:
            starts, span = np.arange(iv.start, iv.end - seq_len + 1, seq_len), seq_len
        ids = genomes[region.genome].window(iv.record, int(starts[0]), int(starts[-1]) + span)
        # N count per slot, one vectorised pass over the region
        n_count = np.add.reduceat(is_unknown(ids).astype(np.int64), np.arange(0, ids.size, span))
        keep = starts[n_count <= max_n_frac * span]
        cells.append(np.stack([np.full_like(keep, r), keep, keep + span], axis=1))
    return np.concatenate(cells).astype(np.int64) if cells else np.zeros((0, 3), dtype=np.int64)


class WindowDataset(Dataset):
    """Windows of ``seq_len`` over regions, one item per planned cell.

    ``augment=True`` (training) shifts each window by a random offset in ``[-max_shift,
    max_shift]`` (clamped inside its region; falls back to the planned cell if the shifted
    window has too many N) and reverse-complements it with probability ``rc_prob``.
    ``augment=False`` gives the fixed, deterministic windows used for validation.
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
        self.genomes = list(genomes)
        self.regions = list(regions)
        self.seq_len = seq_len
        self.on_short = on_short
        self.max_n_frac = max_n_frac
        self.augment = augment
        self.rc_prob = rc_prob
        self.max_shift = seq_len if max_shift is None else max_shift
        self.with_labels = with_labels
        self.cells = plan_cells(genomes, regions, seq_len, on_short=on_short, max_n_frac=max_n_frac, split=split)
        if not len(self.cells):
            raise ValueError(
                f"no {split or ''} window of {seq_len} bases has <= {max_n_frac:.0%} N; "
                "lower seq_len or raise max_n_frac"
            )

    def __len__(self) -> int:
        return len(self.cells)

    def _shifted(self, r: int, start: int, end: int) -> tuple[int, int]:
        iv = self.regions[r].interval
        span = end - start
        lo, hi = max(iv.start, start - self.max_shift), min(iv.end - span, start + self.max_shift)
        if hi <= lo:
            return start, end
        new = int(torch.randint(lo, hi + 1, ()).item())
        ids = self.genomes[self.regions[r].genome].window(iv.record, new, new + span)
        if is_unknown(ids).sum() > self.max_n_frac * span:
            return start, end
        return new, new + span

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        r, start, end = (int(v) for v in self.cells[index])
        if self.augment:
            start, end = self._shifted(r, start, end)
        region = self.regions[r]
        genome = self.genomes[region.genome]
        ids = genome.window(region.interval.record, start, end)
        labels = genome.label_window(region.interval.record, start, end) if self.with_labels else None
        if self.augment and self.rc_prob > 0 and torch.rand(()).item() < self.rc_prob:
            ids = np.ascontiguousarray(reverse_complement(ids))
            labels = np.ascontiguousarray(labels[::-1]) if labels is not None else None
        item = {"input_ids": torch.from_numpy(ids.astype(np.int64)), "mask": torch.ones(ids.size, dtype=torch.bool)}
        if labels is not None:
            item["labels"] = torch.from_numpy(labels.astype(np.int64))
        if self.on_short == "pad" and ids.size < self.seq_len:
            item = pad_collate([item], length=self.seq_len)
            item = {k: v[0] for k, v in item.items()}
        return item


class SequenceDataset(Dataset):
    """In-memory labelled sequences (ids arrays) for classification."""

    def __init__(self, sequences: Sequence[np.ndarray], labels: Sequence[int], *, rc_prob: float = 0.0) -> None:
        if len(sequences) != len(labels):
            raise ValueError(f"sequences and labels differ in length: {len(sequences)} vs {len(labels)}")
        self.sequences, self.labels, self.rc_prob = list(sequences), list(labels), rc_prob

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        ids = self.sequences[index]
        if self.rc_prob > 0 and torch.rand(()).item() < self.rc_prob:
            ids = np.ascontiguousarray(reverse_complement(ids))
        return {
            "input_ids": torch.from_numpy(ids.astype(np.int64)),
            "mask": torch.ones(ids.size, dtype=torch.bool),
            "label": torch.tensor(self.labels[index], dtype=torch.int64),
        }


def pad_collate(items: Sequence[dict[str, Tensor]], length: int | None = None) -> dict[str, Tensor]:
    """Stack items, padding ``input_ids`` with PAD, ``mask`` with False, ``labels`` with -100,
    to the longest item (or ``length``). Scalars (``label``) are stacked."""
    longest = max(int(it["input_ids"].shape[0]) for it in items)
    length = longest if length is None else max(length, longest)
    fill = {"input_ids": PAD, "mask": False, "labels": IGNORE_INDEX}
    out: dict[str, Tensor] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if values[0].dim() == 0:
            out[key] = torch.stack(values)
            continue
        batch = torch.full((len(values), length), fill[key], dtype=values[0].dtype)
        for i, v in enumerate(values):
            batch[i, : v.shape[0]] = v
        out[key] = batch
    return out

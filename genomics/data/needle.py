"""Long-range check ("needle"): does a model use its context, or only tolerate it?

Each example is a real genome window in which one of two fixed random 16-base motifs
(class 0 or 1) is planted at a uniformly random position in the first half, and a fixed
16-base query marker is planted in the last 64 bases. The label is the class of the
motif; the model predicts it at the marker (``DNAClassifier(pool="query")`` reads the
marker's last base, ``query_index``). Training windows come from the training region;
validation windows (same length) from the validation region; test windows are
``eval_seq_len`` long (default 1,048,576), may come from the whole genome, and put the
motif at least ``min_distance`` bases before the marker. Motif positions and window
starts of validation and test examples are fixed by ``seed``, and their classes alternate
(0, 1, 0, ...), so the sets are balanced and a model blind to the motif scores 50%.

Learning where to look in 65,536 bases from scratch is slow (the motif is 16 of 65,536
keys, so its share of any attention average, and of the gradient, starts near 2e-4):
``NeedleDataModule.set_schedule`` trains on growing windows, as the LM's length warm-up.
"""

from __future__ import annotations

from typing import Sequence

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from genomics.data.datamodules import GenomeWindowDataModule
from genomics.data.length_warmup import Stage, split_into_epochs
from genomics.data.loaders import PaddedSplitLoaders
from genomics.data.splits import Region
from genomics.io.bed import Interval
from genomics.io.cache import GenomeArray
from genomics.io.readers import DataInputError

__all__ = ["MARKER_ZONE", "NeedleSpec", "NeedleDataset", "NeedleDataModule"]

MARKER_ZONE = 64


class NeedleSpec:
    """The two class motifs and the query marker, drawn once from ``seed`` (uint8 ids, A/C/G/T)."""

    def __init__(self, motif_len: int = 16, seed: int = 0) -> None:
        if motif_len < 4 or motif_len > MARKER_ZONE // 2:
            raise ValueError(f"motif_len must be in [4, {MARKER_ZONE // 2}], got {motif_len}")
        rng = np.random.default_rng(seed)
        while True:
            motifs = rng.integers(0, 4, size=(3, motif_len)).astype(np.uint8)
            if len({m.tobytes() for m in motifs}) == 3:
                break
        self.motif_len = motif_len
        self.motifs, self.marker = motifs[:2], motifs[2]


class NeedleDataset(Dataset):
    """``num_samples`` needle examples over ``regions``; items add ``label`` and ``query_index``.

    ``fixed=True`` draws every example from ``(seed, index)`` (validation/test);
    otherwise from torch's per-worker random state (training).
    """

    def __init__(
        self,
        genomes: Sequence[GenomeArray],
        regions: Sequence[Region],
        seq_len: int,
        num_samples: int,
        spec: NeedleSpec,
        *,
        min_distance: int = 0,
        fixed: bool = False,
        seed: int = 0,
    ) -> None:
        if seq_len < 4 * MARKER_ZONE:
            raise ValueError(f"seq_len must be >= {4 * MARKER_ZONE}, got {seq_len}")
        self.regions = [r for r in regions if len(r.interval) >= seq_len]
        if not self.regions:
            longest = max((len(r.interval) for r in regions), default=0)
            raise ValueError(f"no region holds a {seq_len}-base needle window (longest: {longest})")
        marker_min = seq_len - MARKER_ZONE
        if marker_min - min_distance - spec.motif_len < 0 and min_distance:
            raise ValueError(f"min_distance={min_distance} does not fit in seq_len={seq_len}")
        self.genomes, self.seq_len, self.num_samples = list(genomes), seq_len, num_samples
        self.spec, self.min_distance, self.fixed, self.seed = spec, min_distance, fixed, seed

    def __len__(self) -> int:
        return self.num_samples

    def _draw(self, index: int) -> tuple[int, int, int, int, int]:
        """(region, start, motif position, marker position, label)."""
        if self.fixed:
            rng = np.random.default_rng((self.seed, index))
            uniform = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731 (inclusive bounds)
        else:
            uniform = lambda lo, hi: int(torch.randint(lo, hi + 1, ()).item())  # noqa: E731
        r = uniform(0, len(self.regions) - 1)
        iv = self.regions[r].interval
        start = uniform(iv.start, iv.end - self.seq_len)
        m = self.spec.motif_len
        marker = uniform(self.seq_len - MARKER_ZONE, self.seq_len - m)
        hi = self.seq_len // 2 - m
        if self.min_distance:
            hi = min(hi, marker - self.min_distance - m)
        motif = uniform(0, hi)
        label = index % 2 if self.fixed else uniform(0, 1)  # fixed sets are balanced
        return r, start, motif, marker, label

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        r, start, motif, marker, label = self._draw(index)
        region = self.regions[r]
        ids = self.genomes[region.genome].window(region.interval.record, start, start + self.seq_len)
        m = self.spec.motif_len
        ids[motif : motif + m] = self.spec.motifs[label]
        ids[marker : marker + m] = self.spec.marker
        return {
            "input_ids": torch.from_numpy(ids.astype(np.int64)),
            "mask": torch.ones(self.seq_len, dtype=torch.bool),
            "label": torch.tensor(label),
            "query_index": torch.tensor(marker + m - 1),
        }


class NeedleDataModule(PaddedSplitLoaders, L.LightningDataModule):
    """Needle examples over a genome (default *E. coli* K-12): train/val at ``seq_len`` from the
    first 90% / last 10%, test at ``eval_seq_len`` over whole records with ``min_distance``.

    ``num_classes`` is 2. Other genome arguments are as in :class:`GenomeWindowDataModule`.
    After :meth:`set_schedule`, training epoch e draws ``epochs[e].steps`` batches of windows
    of ``epochs[e].seq_len`` (a length warm-up; needs
    ``Trainer(reload_dataloaders_every_n_epochs=1)``); validation stays at ``seq_len``.
    """

    num_classes = 2

    def __init__(
        self,
        fasta: str | Sequence[str] | None = None,
        seq_len: int = 65536,
        *,
        eval_seq_len: int = 1_048_576,
        min_distance: int = 500_000,
        motif_len: int = 16,
        train_samples: int = 2048,
        val_samples: int = 64,
        test_samples: int = 64,
        batch_size: int = 1,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        cache_dir: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.datasets: dict[str, NeedleDataset] = {}
        self.epochs: list[Stage] = []

    def set_schedule(self, stages: Sequence[Stage], val_every: int | None = None) -> int:
        """Train by stages of growing window length; returns the number of epochs."""
        self.epochs = split_into_epochs(list(stages), val_every)
        return len(self.epochs)

    def train_dataloader(self) -> DataLoader:
        if not self.epochs:
            return super().train_dataloader()
        if "train" not in self.datasets:
            raise ValueError("call setup('fit') before train_dataloader")
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        stage = self.epochs[min(epoch, len(self.epochs) - 1)]
        base = self.datasets["train"]
        dataset = NeedleDataset(base.genomes, base.regions, stage.seq_len, stage.steps * stage.batch_size,
                                base.spec, seed=base.seed)
        return self.train_loader(dataset, stage.batch_size, shuffle=False, epoch_steps=[e.steps for e in self.epochs],
                                 num_workers=self.hparams.num_workers)

    def _genome(self) -> GenomeWindowDataModule:
        h = self.hparams
        return GenomeWindowDataModule(h.fasta, h.seq_len, val_fraction=h.val_fraction, cache_dir=h.cache_dir,
                                      on_short="clip")

    def prepare_data(self) -> None:
        self._genome().prepare_data()

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        genome_dm = self._genome()
        genome_dm.setup(stage)
        genomes, splits = genome_dm.genomes, genome_dm.splits
        spec = NeedleSpec(h.motif_len, h.seed)
        whole = [Region(g, Interval(rec.name, 0, rec.length, "test"))
                 for g, gen in enumerate(genomes) for rec in gen.records]
        try:
            train = NeedleDataset(genomes, splits["train"], h.seq_len, h.train_samples, spec, seed=h.seed)
            val = NeedleDataset(genomes, splits["val"], h.seq_len, h.val_samples, spec, fixed=True, seed=h.seed + 1)
        except ValueError as exc:
            raise DataInputError(f"--seq-len {h.seq_len:,} (schedule.seq_len): {exc}") from None
        try:
            test = NeedleDataset(genomes, whole, h.eval_seq_len, h.test_samples, spec, min_distance=h.min_distance,
                                 fixed=True, seed=h.seed + 2)
        except ValueError as exc:
            raise DataInputError(f"data.eval_seq_len {h.eval_seq_len:,}: {exc}") from None
        self.datasets = {"train": train, "val": val, "test": test}


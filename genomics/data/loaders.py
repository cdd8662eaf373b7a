"""Train/val/test DataLoaders with padding masks, shared by the sequence data modules.

Training loaders draw their order with :class:`~longseq.training.sampling.ResumableSampler`
(a function of ``shuffle_seed`` and the epoch) and build each item under a seed of its own
(:class:`~longseq.training.sampling.SeededDataset`), so a run resumed from a checkpoint in the
middle of an epoch trains the very batches the uninterrupted run would have.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from genomics.data.datasets import pad_collate

__all__ = ["PaddedSplitLoaders", "ResumableTrainOrder"]


class ResumableTrainOrder:
    """Mixin of the data modules: :meth:`train_loader` over a dataset in a resumable order.

    ``shuffle_seed`` (set by ``longseq-train-dna`` from ``--seed``) seeds the order; the
    epoch and the position to resume from come from the attached trainer.
    """

    shuffle_seed: int = 0
    trainer: Any

    def train_loader(self, dataset: Dataset, batch_size: int, *, num_samples: int | None = None, shuffle: bool = True,
                     replacement: bool = False, epoch_steps: Sequence[int] | int | None = None,
                     num_workers: int = 0, collate_fn: Any = pad_collate) -> DataLoader:
        """A training DataLoader over ``dataset``: ``num_samples`` draws per epoch (default one
        pass), ``batch_size`` at a time. ``epoch_steps``: optimizer steps of each epoch (default
        ``ceil(num_samples / batch_size)`` for every epoch), to find where a resumed run stands.

        On several processes (the trainer's ``world_size``) ``batch_size`` and ``num_samples``
        are each process's: the order is drawn for all of them and dealt out
        (:class:`~longseq.training.sampling.ShardedResumableSampler`), so step ``k`` trains the
        items a 1-process run with a ``world_size`` times larger batch trains at step ``k``."""
        from longseq.training.sampling import ResumableSampler, SeededDataset, ShardedResumableSampler, items_done

        n = len(dataset)  # type: ignore[arg-type]
        rank, world = self.data_rank()
        num_samples = -(-n // world) if num_samples is None else num_samples
        steps = math.ceil(num_samples / batch_size) if epoch_steps is None else epoch_steps

        def position() -> tuple[int, int]:  # read when an epoch's iteration starts: after a restore
            trainer = getattr(self, "trainer", None)
            epoch = int(trainer.current_epoch) if trainer is not None else 0
            return epoch, items_done(trainer, steps, batch_size)

        kind = ShardedResumableSampler if world > 1 else ResumableSampler
        sampler = kind(n, num_samples, shuffle=shuffle, replacement=replacement, seed=self.shuffle_seed,
                       position=position, rank=rank, world_size=world)
        generator = torch.Generator().manual_seed(self.shuffle_seed)  # worker seeds: not from the global stream
        return DataLoader(SeededDataset(dataset), batch_size=batch_size, sampler=sampler, collate_fn=collate_fn,
                          num_workers=num_workers, generator=generator)


    def data_rank(self) -> tuple[int, int]:
        """(this process's share of the training order, the number of shares): the attached
        trainer's ``global_rank`` and ``world_size``, (0, 1) without one."""
        trainer = getattr(self, "trainer", None)
        world = int(getattr(trainer, "world_size", 1) or 1) if trainer is not None else 1
        rank = int(getattr(trainer, "global_rank", 0) or 0) if trainer is not None else 0
        return rank, world


class PaddedSplitLoaders(ResumableTrainOrder):
    """Train/val/test loaders over ``self.datasets[split]`` with padding masks.

    For data modules whose ``hparams`` hold ``batch_size`` and ``num_workers``.
    """

    datasets: dict

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            raise ValueError(f"no {split!r} split in {type(self).__name__}")
        if shuffle:
            return self.train_loader(self.datasets[split], self.hparams.batch_size,
                                     num_workers=self.hparams.num_workers)
        return DataLoader(self.datasets[split], batch_size=self.hparams.batch_size, shuffle=False,
                          collate_fn=pad_collate, num_workers=self.hparams.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

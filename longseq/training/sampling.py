"""A training data order that a resumed run reproduces exactly.

:class:`ResumableSampler` derives each epoch's order from ``(seed, epoch)`` alone, never from
the global random state, and pairs every drawn index with a seed of its own;
:class:`SeededDataset` runs the wrapped dataset's ``__getitem__`` under that seed, so random
augmentation is a function of the item's place in the run, whichever DataLoader worker loads
it. At the start of each epoch's iteration the sampler asks where training stands (``position``:
the epoch, and the items of it already trained, :func:`items_done`), so a run resumed in
the middle of an epoch continues with the very next item.

On ``world_size`` processes the epoch's order is drawn for all of them at once
(``num_samples * world_size`` draws, the same on every process) and dealt out as
``DistributedSampler`` deals: process ``rank`` takes positions ``rank, rank + W, ...``. So
step ``k`` of a ``W``-process run with batch ``B`` per process trains the items of step ``k``
of a 1-process run with batch ``W * B``; :class:`ShardedResumableSampler` is that sampler as a
``DistributedSampler``, which Lightning leaves in place instead of wrapping it.

    position = lambda: (trainer.current_epoch, items_done(trainer, steps_per_epoch, batch_size))
    sampler = ResumableSampler(len(ds), num_samples=n, seed=seed, position=position)
    loader = DataLoader(SeededDataset(ds), batch_size=b, sampler=sampler)
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

__all__ = ["ResumableSampler", "SeededDataset", "ShardedResumableSampler", "items_done", "steps_before_epoch"]

_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant: spreads (seed, epoch) over the generator's seeds


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * _MIX + int(epoch) * 0x632BE59BD9B4E019 + 0x5851F42D4C957F2D) % (2**63 - 1)


class ResumableSampler(Sampler[tuple[int, int]]):
    """``(index, item_seed)`` pairs of one epoch, a function of ``(seed, epoch)`` only.

    Args:
        size: items in the dataset.
        num_samples: draws per epoch of this process (default ``size``, or ``ceil(size /
            world_size)`` on several processes: one pass over the dataset between them).
        shuffle: random order (False: ``0, 1, ...`` cycling over ``size``).
        replacement: with ``shuffle``, draw with replacement (as ``RandomSampler``).
        seed, epoch: the order's seed and epoch (``set_epoch`` changes the epoch; Lightning
            calls it at each epoch start).
        position: called when an epoch's iteration starts; returns ``(epoch, items already
            trained in it)``, so the order and the place to start are read from the trainer at
            that moment (after a checkpoint is restored), not when the loader was built. The
            skipped draws are left out of the iteration, while ``len()`` stays the full epoch,
            as Lightning counts a resumed epoch's batches from the restored position.
            The items are this process's own (the trainer's ``items_done``).
        rank, world_size: this process and the number of processes sharing the order
            (``num_samples * world_size`` draws per epoch; ``rank`` takes every
            ``world_size``-th one, starting at position ``rank``).
    """

    def __init__(self, size: int, num_samples: int | None = None, *, shuffle: bool = True, replacement: bool = False,
                 seed: int = 0, epoch: int = 0, position: Callable[[], tuple[int, int]] | None = None,
                 rank: int = 0, world_size: int = 1) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        if num_samples is not None and num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.rank, self.world_size = int(rank), int(world_size)
        self.num_replicas = self.world_size  # DistributedSampler's name for it
        default = -(-int(size) // self.world_size)
        self.size, self.num_samples = int(size), int(num_samples if num_samples is not None else default)
        self.total_size = self.num_samples * self.world_size
        self.shuffle, self.replacement, self.seed, self.epoch = shuffle, replacement, int(seed), int(epoch)
        self.position = position
        self.skipped = 0  # draws left out of the last iteration

    def set_epoch(self, epoch: int) -> None:
        """Draw the order of ``epoch`` next."""
        self.epoch = int(epoch)

    def order(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices, item seeds) of the whole current epoch over all processes, int64,
        ``num_samples * world_size`` each (process ``rank`` trains positions ``rank::world_size``)."""
        g = torch.Generator().manual_seed(_epoch_seed(self.seed, self.epoch))
        n = self.total_size
        if not self.shuffle:
            index = torch.arange(n) % self.size
        elif self.replacement:
            index = torch.randint(self.size, (n,), generator=g)
        else:
            rounds = -(-n // self.size)
            index = torch.cat([torch.randperm(self.size, generator=g) for _ in range(rounds)])[:n]
        seeds = torch.randint(2**62, (n,), generator=g)
        return index, seeds

    def __iter__(self) -> Iterator[tuple[int, int]]:
        skip = 0
        if self.position is not None:
            self.epoch, skip = self.position()
        index, seeds = self.order()
        index, seeds = index[self.rank::self.world_size], seeds[self.rank::self.world_size]
        self.skipped = min(max(0, int(skip)), self.num_samples)
        return iter(zip(index[self.skipped:].tolist(), seeds[self.skipped:].tolist()))

    def __len__(self) -> int:
        return self.num_samples


class ShardedResumableSampler(ResumableSampler, DistributedSampler):
    """A :class:`ResumableSampler` that is a ``DistributedSampler`` by type, so Lightning
    (``use_distributed_sampler``) keeps it instead of wrapping it in one: it shards its order
    itself (``rank``, ``world_size``) and resumes in the middle of an epoch, which Lightning's
    wrapper does not. Every method is :class:`ResumableSampler`'s (first in the MRO);
    ``DistributedSampler.__init__``, which needs a process group, is never called."""


class SeededDataset(Dataset):
    """``dataset`` whose items, requested as ``(index, seed)``, are built under ``seed``:
    torch's CPU random state is set to it for the call and restored afterwards, so the
    augmentation of an item never depends on (or disturbs) the global random stream.
    A plain index reads the item as the wrapped dataset would."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        if not isinstance(key, tuple):
            return self.dataset[key]
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]

    def __getattr__(self, name: str) -> Any:
        """The wrapped dataset's attributes (``seq_len``, ``cells``, ...)."""
        if name == "dataset" or name.startswith("__"):  # not set yet (unpickling), or protocol lookups
            raise AttributeError(name)
        return getattr(self.dataset, name)


def steps_before_epoch(epoch: int, epoch_steps: Sequence[int] | int) -> int:
    """Optimizer steps of the epochs before ``epoch``: ``epoch * epoch_steps`` for epochs of
    one size, else the sum of the first ``epoch`` entries (the last repeats past the end)."""
    if isinstance(epoch_steps, int):
        return epoch * epoch_steps
    steps = list(epoch_steps)
    if not steps:
        return 0
    return sum(steps[:epoch]) + max(0, epoch - len(steps)) * steps[-1]


def items_done(trainer: Any, epoch_steps: Sequence[int] | int, batch_size: int) -> int:
    """Items of the trainer's current epoch already trained: nonzero only in a run resumed in
    the middle of an epoch (``global_step`` past the epoch's first step). ``epoch_steps``:
    optimizer steps per epoch (see :func:`steps_before_epoch`)."""
    step = getattr(trainer, "global_step", None)
    if step is None:  # no trainer (or a stand-in without steps): the epoch's start
        return 0
    epoch = int(trainer.current_epoch)
    done = int(step) - steps_before_epoch(epoch, epoch_steps)
    accumulate = int(getattr(trainer, "accumulate_grad_batches", 1) or 1)
    return max(0, done) * accumulate * batch_size

"""Training callbacks shared by the domains' scripts."""

from __future__ import annotations

import time
from typing import Any, Callable

import lightning as L
import torch

__all__ = ["Throughput"]


def _first_dim(batch: Any) -> int:
    """Items in a batch: the leading size of its first tensor (a tuple's first element, a dict's first value)."""
    if isinstance(batch, dict):
        batch = next(iter(batch.values()))
    if isinstance(batch, (list, tuple)):
        batch = batch[0]
    return int(batch.shape[0]) if isinstance(batch, torch.Tensor) else len(batch)


class Throughput(L.Callback):
    """Items per second over training batches only (validation and checkpointing excluded).

    ``count(batch)`` says how many items a batch holds (default: its leading size; the DNA
    scripts count unpadded bases). The first ``skip`` batches pay one-off costs (allocation,
    attention plans) and are left out. With ``prog_bar`` set, the rate over the last
    ``window`` batches is shown on the progress bar under that name. ``length(batch)``, when
    given, records the longest sequence seen in ``max_length``.

    Totals for a summary: ``items``, ``seconds``, ``per_second``.
    """

    def __init__(self, count: Callable[[Any], int] = _first_dim, *, skip: int = 0, window: int = 10,
                 prog_bar: str | None = None, length: Callable[[Any], int] | None = None) -> None:
        self.count, self.skip, self.window, self.prog_bar, self.length = count, skip, window, prog_bar, length
        self.items, self.seconds, self.seen, self.max_length = 0, 0.0, 0, 0
        self._recent: list[tuple[int, float]] = []
        self._t0 = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)  # kernels are asynchronous: time their completion
        dt = time.perf_counter() - self._t0
        self.seen += 1
        if self.length is not None:
            self.max_length = max(self.max_length, int(self.length(batch)))
        if self.seen <= self.skip:
            return
        n = int(self.count(batch))
        self.items += n
        self.seconds += dt
        if self.prog_bar:
            self._recent = (self._recent + [(n, dt)])[-self.window:]
            rate = sum(c for c, _ in self._recent) / max(sum(s for _, s in self._recent), 1e-9)
            pl_module.log(self.prog_bar, rate, prog_bar=True, on_step=True, on_epoch=False, batch_size=1)

    @property
    def per_second(self) -> float:
        """Items per second over the timed batches; NaN before any."""
        return self.items / self.seconds if self.seconds else float("nan")

"""What a detector training run did, for an honest summary: a Lightning callback.

:class:`RunProgress` counts training batches (so a run stopped by a step or time limit
reports a fraction of an epoch), clocks training without validation, and records every
validation (sanity checks excluded) with the epoch and step it saw. From those records
come the best validation and the last one, and whether the final weights were
validated at all (:meth:`RunProgress.validated_final_weights`). With ``best_checkpoint``
set, each new best validation's state is saved there (atomically). The records travel in the
training checkpoint, so a resumed run's summary covers the whole run.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L

from longseq.training.checkpointing import atomic_save_checkpoint

__all__ = ["RunProgress", "Validation"]


@dataclass(frozen=True)
class Validation:
    """One validation: ``epoch`` (fractional: epochs of training done when it ran), ``step``
    (optimizer steps done), and its metrics (``map``, ``map_50``, ...)."""

    epoch: float
    step: int
    metrics: dict[str, float]


class RunProgress(L.Callback):
    """Training batches, training seconds without validation, and every validation.

    ``metrics`` names the logged metrics to record (``val/<name>``); ``best_by`` picks the
    best validation (highest value); ``best_checkpoint``, when given, receives the weights
    of every new best (``trainer.save_checkpoint``).
    """

    def __init__(self, metrics: tuple[str, ...] = ("map", "map_50", "map_75"), best_by: str = "map",
                 best_checkpoint: str | Path | None = None) -> None:
        self.metric_names, self.best_by = metrics, best_by
        self.best_checkpoint = Path(best_checkpoint) if best_checkpoint is not None else None
        self.batches = 0
        self.batches_per_epoch = 0
        self.train_seconds = 0.0
        self.validation_seconds = 0.0
        self.validations: list[Validation] = []
        self._train_t0: float | None = None
        self._val_t0 = 0.0
        self._resume_after_validation = False

    # -- clocks -----------------------------------------------------------------------
    def _pause(self) -> None:
        if self._train_t0 is not None:
            self.train_seconds += time.perf_counter() - self._train_t0
            self._train_t0 = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        nb = trainer.num_training_batches
        self.batches_per_epoch = int(nb) if isinstance(nb, int) or (isinstance(nb, float) and math.isfinite(nb)) else 0
        self._train_t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.batches += 1

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._resume_after_validation = self._train_t0 is not None  # validation inside a training epoch
        self._pause()
        self._val_t0 = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.validation_seconds += time.perf_counter() - self._val_t0
        if self._resume_after_validation:
            self._train_t0 = time.perf_counter()
        if trainer.sanity_checking:
            return
        logged = trainer.callback_metrics
        metrics = {k: float(logged[f"val/{k}"]) for k in self.metric_names if f"val/{k}" in logged}
        before = self.best
        self.validations.append(Validation(self.epochs_done, int(trainer.global_step), metrics))
        if self.best_checkpoint is not None and self.best is not before and self.best is self.validations[-1]:
            atomic_save_checkpoint(trainer, self.best_checkpoint)

    def state_dict(self) -> dict[str, Any]:
        running = time.perf_counter() - self._train_t0 if self._train_t0 is not None else 0.0  # a save mid-epoch
        return {"batches": self.batches, "train_seconds": self.train_seconds + running,
                "validation_seconds": self.validation_seconds, "validations": [asdict(v) for v in self.validations]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.batches = int(state_dict.get("batches", 0))
        self.train_seconds = float(state_dict.get("train_seconds", 0.0))
        self.validation_seconds = float(state_dict.get("validation_seconds", 0.0))
        self.validations = [Validation(**v) for v in state_dict.get("validations", [])]

    # -- results ----------------------------------------------------------------------
    @property
    def epochs_done(self) -> float:
        """Training batches done over batches per epoch (NaN before the first epoch starts)."""
        return self.batches / self.batches_per_epoch if self.batches_per_epoch else float("nan")

    def validated_final_weights(self, global_step: int) -> bool:
        """Whether the last validation saw the weights after ``global_step`` optimizer steps."""
        return bool(self.validations) and self.validations[-1].step == global_step

    @property
    def best(self) -> Validation | None:
        """The validation with the highest ``best_by`` metric (the first of equals); None if none ran."""
        scored = [v for v in self.validations if not math.isnan(v.metrics.get(self.best_by, math.nan))]
        return max(scored, key=lambda v: v.metrics[self.best_by]) if scored else None

    @property
    def last(self) -> Validation | None:
        return self.validations[-1] if self.validations else None

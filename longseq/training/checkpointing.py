"""Checkpoints that survive a kill: ``last.ckpt`` kept current on a cadence of its own, written atomically.

:class:`PeriodicCheckpoint` saves ``last.ckpt`` every ``every_steps`` optimizer steps and
every ``every_minutes`` minutes of training, independent of validation, plus once more when
training ends. :class:`AtomicModelCheckpoint` is Lightning's best-by-metric callback with the
same atomic writes. Every file is written to a temporary name in its own folder and moved
into place with ``os.replace``, so a kill leaves the previous file whole, never half of a
new one.

Where a save lands in the training loop decides what a resumed run repeats:

* the checkpoint holds the state of ``on_train_batch_end`` in the middle of an epoch, where
  Lightning resumes with the next batch; a save due on the last batch of an epoch, or on a
  batch a validation pass follows, is made one batch later (a resumed run would otherwise
  skip that validation or the epoch's end);
* the file is moved into place only at the next batch, once the step's logged metrics are
  flushed to disk, so the metrics file of a killed run always reaches the step its
  ``last.ckpt`` holds.

    cadence = CheckpointCadence(every_steps=None, every_minutes=10)   # steps: 5% of the run
    callbacks = [PeriodicCheckpoint(run_dir / "checkpoints", cadence), ...]
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any
from weakref import proxy

import lightning as L
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint

from longseq.schedules import time_budget_seconds
from longseq.training.cadence import DEFAULT_EVERY_MINUTES, DEFAULT_RUN_FRACTION, CheckpointCadence, default_every_steps

__all__ = ["DEFAULT_EVERY_MINUTES", "DEFAULT_RUN_FRACTION", "LAST_NAME", "AtomicModelCheckpoint", "CheckpointCadence",
           "PeriodicCheckpoint", "atomic_save_checkpoint", "default_every_steps"]

log = logging.getLogger(__name__)

#: The file name of the checkpoint a run keeps current.
LAST_NAME = "last.ckpt"
_PARTIAL = ".tmp"  # suffix of a file being written; never ends in .ckpt


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def atomic_save_checkpoint(trainer: L.Trainer, path: str | Path, weights_only: bool = False) -> Path:
    """``trainer.save_checkpoint`` to a temporary file beside ``path``, then ``os.replace``.
    Call on every rank (the strategy writes on rank 0 only); returns ``path``."""
    path = Path(path)
    partial = path.with_name(path.name + _PARTIAL)
    trainer.save_checkpoint(partial, weights_only=weights_only)
    if trainer.is_global_zero:
        _fsync(partial)
        os.replace(partial, path)
    trainer.strategy.barrier("atomic_save_checkpoint")
    return path


def _flush_loggers(trainer: L.Trainer) -> None:
    """Write the loggers' buffered rows, so a metrics file reaches the step being saved."""
    if trainer.is_global_zero:
        for logger in trainer.loggers:
            logger.save()


def _validates_after(trainer: L.Trainer, batch_idx: int) -> bool:
    """Whether a validation pass runs after training batch ``batch_idx`` before the epoch ends
    (``val_check_interval`` below one epoch); time-based intervals cannot be told ahead."""
    every = getattr(trainer, "val_check_batch", None)
    if not trainer.enable_validation or not every or not math.isfinite(every):
        return False
    n_epochs = trainer.check_val_every_n_epoch
    if n_epochs is not None and (trainer.current_epoch + 1) % n_epochs:
        return False
    return (batch_idx + 1) % int(every) == 0


class AtomicModelCheckpoint(ModelCheckpoint):
    """:class:`~lightning.pytorch.callbacks.ModelCheckpoint` whose files are written to a
    temporary name and moved into place (a kill never leaves half a best checkpoint)."""

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        atomic_save_checkpoint(trainer, filepath, self.save_weights_only)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))


class PeriodicCheckpoint(Checkpoint):
    """Keep ``dirpath/last.ckpt`` current on a cadence of optimizer steps and minutes.

    Args:
        dirpath: the run's checkpoint folder.
        cadence: :class:`CheckpointCadence`; ``every_steps=None`` takes ``ceil(5%)`` of
            ``total_steps``, or of ``trainer.max_steps`` / the trainer's estimate when not given.
        total_steps: the planned optimizer steps of the whole run, when known.
        clock: seconds since an arbitrary origin (``time.monotonic``; replaceable in tests).

    ``saves`` lists the global steps saved (the final save included); ``every_steps`` holds
    the step cadence in force once training starts.
    """

    def __init__(self, dirpath: str | Path, cadence: CheckpointCadence = CheckpointCadence(), *,
                 total_steps: int | None = None, clock: Any = time.monotonic) -> None:
        self.dirpath = Path(dirpath)
        self.cadence, self.total_steps, self.clock = cadence, total_steps, clock
        self.every_steps: int | None = cadence.every_steps
        self.every_minutes: float | None = cadence.every_minutes
        self.saves: list[int] = []
        self._last_time = 0.0
        self._last_step = -1
        self._pending: Path | None = None  # a finished save waiting for its metrics to be flushed
        self._carry = False  # a save postponed by one batch
        self._seen_step = -1

    @property
    def path(self) -> Path:
        """``dirpath/last.ckpt``."""
        return self.dirpath / LAST_NAME

    @property
    def last_model_path(self) -> str:
        """The last checkpoint saved ("" before the first)."""
        return str(self.path) if self.saves else ""

    def _planned_steps(self, trainer: L.Trainer) -> int | float | None:
        if self.total_steps is not None:
            return self.total_steps
        if trainer.max_steps and trainer.max_steps > 0:
            return trainer.max_steps
        return trainer.estimated_stepping_batches

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_steps is None:
            self.every_steps = default_every_steps(self._planned_steps(trainer))

    def _time_cadence(self, trainer: L.Trainer) -> float | None:
        """The default minutes, capped at 5% of a time budget (a kill loses at most that share)."""
        minutes = self.cadence.every_minutes
        budget = time_budget_seconds(trainer)
        if minutes == DEFAULT_EVERY_MINUTES and budget:
            return min(minutes, DEFAULT_RUN_FRACTION * budget / 60.0)
        return minutes

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_time = self.clock()
        self._last_step = self._seen_step = trainer.global_step
        self.every_minutes = self._time_cadence(trainer)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        minutes = "no" if self.every_minutes is None else f"{self.every_minutes:.3g}"
        log.info("last.ckpt every %s steps and every %s minutes in %s", self.every_steps, minutes, self.dirpath)

    def _due(self, trainer: L.Trainer) -> bool:
        step = trainer.global_step
        if step == self._last_step:
            return False
        if self._carry:
            return True
        by_steps = bool(self.every_steps) and step % self.every_steps == 0
        minutes = self.every_minutes
        by_time = minutes is not None and self.clock() - self._last_time >= 60.0 * minutes
        return bool(trainer.strategy.broadcast(by_steps or by_time))

    def _mark_saved(self, trainer: L.Trainer) -> None:
        self._last_time, self._last_step = self.clock(), trainer.global_step
        self.saves.append(trainer.global_step)

    def _publish(self, trainer: L.Trainer) -> None:
        """Move a finished save into place once the loggers hold its step."""
        if self._pending is None:
            return
        _flush_loggers(trainer)
        if trainer.is_global_zero:
            os.replace(self._pending, self.path)
        trainer.strategy.barrier("PeriodicCheckpoint publish")
        self._pending = None

    def _save_now(self, trainer: L.Trainer) -> None:
        _flush_loggers(trainer)
        atomic_save_checkpoint(trainer, self.path)
        self._mark_saved(trainer)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._publish(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        stepped, self._seen_step = trainer.global_step != self._seen_step, trainer.global_step
        if not stepped or not self._due(trainer):  # no optimizer step in this batch (gradient accumulation)
            return
        # Lightning resumes well from the middle of an epoch only: a save due on an epoch's last
        # batch, or on one a validation pass follows, is made one batch later.
        last = batch_idx + 1 >= trainer.num_training_batches
        self._carry = last or _validates_after(trainer, batch_idx)
        if self._carry:
            return
        partial = self.path.with_name(self.path.name + _PARTIAL)
        trainer.save_checkpoint(partial, weights_only=False)
        if trainer.is_global_zero:
            _fsync(partial)
        self._pending = partial
        self._mark_saved(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._publish(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The final state, always (also when the last validation was not the best)."""
        self._publish(trainer)
        self._save_now(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._publish(trainer)  # a save whose metrics are logged already is still good

    def state_dict(self) -> dict[str, Any]:
        return {"every_steps": self.every_steps, "saves": list(self.saves)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.saves = list(state_dict.get("saves", []))

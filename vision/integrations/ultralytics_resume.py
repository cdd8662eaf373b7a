"""Checkpoints of an ultralytics training run that survive a kill, and a resume that continues
the interrupted epoch.

Ultralytics writes ``weights/last.pt`` once per epoch, in place, and resumes at the next epoch
boundary. :class:`YoloCheckpointCadence` also writes it in the middle of an epoch, every
``every_steps`` training batches and every ``every_minutes`` minutes of training; every write
(ultralytics' own included, through :func:`atomic_save_model`) goes to a temporary file in the
weights folder, then ``os.replace``. Every file records, under :data:`RESUME_KEY`, the epoch
and batch to continue at, the training seconds so far and the run's progress. A mid-epoch
file's ``epoch`` is the last *completed* epoch, so ultralytics' plain ``resume`` restarts the
interrupted epoch from its first batch with the saved weights (and refuses a file written
inside the first epoch). Resumed through ``longseq-train-yolo --ckpt-path``,
:func:`continue_interrupted_epoch` skips the batches the interrupted epoch had trained, and
the time budget's clock goes on from where it stopped.

What a resumed run does not repeat exactly: ultralytics' loader draws each epoch's order
from a generator seeded when the process starts, so after a resume in a later epoch the
rest of that epoch (and the epochs after it) come from another shuffle than the
uninterrupted run's; inside the first epoch the learning-rate warm-up, which counts the
epoch's batches, starts its ramp again.
"""

from __future__ import annotations

import logging
import os
import time
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = ["RESUME_KEY", "YoloCheckpointCadence", "atomic_save_model", "atomic_strip_optimizer",
           "continue_interrupted_epoch", "default_cadence", "full_epochs_again", "resume_record"]

log = logging.getLogger(__name__)

#: Key of a mid-epoch checkpoint's resume record: ``epoch``, ``batches_done`` (of that
#: epoch), ``train_seconds`` (of the whole run), ``progress`` (``YoloRunProgress.state_dict``).
RESUME_KEY = "longseq_resume"
_PARTIAL = ".tmp"


def atomic_save_model(trainer: Any, save: Callable[[], Any], extra: dict[str, Any] | None = None,
                      keep_best: bool = True) -> Any:
    """Run ultralytics' ``save`` (its ``BaseTrainer.save_model``) with ``last.pt`` and ``best.pt``
    written to temporary names, then moved into place (``extra`` keys added to ``last.pt``;
    ``keep_best=False`` discards a ``best.pt`` written mid-epoch)."""
    import torch

    last, best = Path(trainer.last), Path(trainer.best)
    partial_last, partial_best = last.with_name(last.name + _PARTIAL), best.with_name(best.name + _PARTIAL)
    trainer.last, trainer.best = partial_last, partial_best
    try:
        result = save()
    finally:
        trainer.last, trainer.best = last, best
    if extra and partial_last.exists():
        checkpoint = torch.load(partial_last, map_location="cpu", weights_only=False)
        checkpoint.update(extra)
        torch.save(checkpoint, partial_last)
    for partial, final, keep in ((partial_last, last, True), (partial_best, best, keep_best)):
        if partial.exists():
            if keep:
                with open(partial, "rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(partial, final)
            else:
                partial.unlink()
    return result


def resume_record(checkpoint: dict[str, Any] | None) -> dict[str, Any] | None:
    """The resume record a checkpoint written with a :class:`YoloCheckpointCadence` holds
    (None for one ultralytics wrote alone)."""
    return (checkpoint or {}).get(RESUME_KEY)


class _RestOfEpoch:
    """The trainer's loader for one epoch, skipping its first ``done`` batches (loaded, not
    trained on) and yielding the rest; ``len`` stays the full epoch, which ultralytics reads
    once before the loop."""

    def __init__(self, loader: Any, done: int) -> None:
        self.loader, self.done = loader, done

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        batches = iter(self.loader)
        for _ in islice(batches, self.done):
            pass
        return batches

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


def continue_interrupted_epoch(trainer: Any, batches_done: int) -> None:
    """Make the trainer's next epoch skip the ``batches_done`` batches an interrupted epoch had
    trained (call at ``on_train_epoch_start``); the loader is put back at ``on_train_epoch_end``.

    The loader's order is seeded when it is built, so in the first epoch the skipped batches
    are the very ones the interrupted run trained; in a later epoch the resumed process draws
    that epoch's order afresh, and the skipped batches are a random share of it."""
    trainer.train_loader = _RestOfEpoch(trainer.train_loader, batches_done)
    log.info("resuming epoch %d after its batch %d: %d batches left", trainer.epoch + 1, batches_done,
             max(len(trainer.train_loader) - batches_done, 0))


def full_epochs_again(trainer: Any) -> None:
    """Put back the loader :func:`continue_interrupted_epoch` wrapped (at ``on_train_epoch_end``)."""
    if isinstance(trainer.train_loader, _RestOfEpoch):
        trainer.train_loader = trainer.train_loader.loader


def atomic_strip_optimizer(path: Path, updates: dict[str, Any] | None = None) -> dict[str, Any]:
    """ultralytics' ``strip_optimizer`` (the final weights without the optimizer), written to a
    temporary file and moved over ``path``."""
    from ultralytics.utils.torch_utils import strip_optimizer

    partial = Path(path).with_name(Path(path).name + _PARTIAL)
    checkpoint = strip_optimizer(path, str(partial), updates=updates)
    if partial.exists():
        os.replace(partial, path)
    return checkpoint


class YoloCheckpointCadence:
    """Writes ``weights/last.pt`` every ``every_steps`` training batches and every
    ``every_minutes`` minutes of training (either None: not on that clock), between
    ultralytics' end-of-epoch saves, and gives every save its resume record (:meth:`record`):
    the epoch and batch to continue at and the run's ``progress`` (a ``YoloRunProgress``, which
    also keeps the clock), so a resumed run's budget and summary count the whole run.
    ``saves`` lists (epoch, batches done) of each mid-epoch write.

    ``attach(yolo)`` before ``yolo.train(trainer=detection_trainer(cadence), ...)``.
    """

    def __init__(self, every_steps: int | None, every_minutes: float | None, progress: Any) -> None:
        self.every_steps, self.every_minutes, self.progress = every_steps, every_minutes, progress
        self.saves: list[tuple[int, int]] = []
        self._batch = 0
        self._since = 0
        self._t_saved = 0.0

    def attach(self, yolo: Any) -> YoloCheckpointCadence:
        for event in ("on_train_epoch_start", "on_train_batch_end", "on_train_epoch_end"):
            yolo.add_callback(event, getattr(self, event))
        return self

    def resume_from(self, record: dict[str, Any]) -> None:
        """Continue the counts and the clock of the run a checkpoint's resume record describes."""
        self.progress.load_state_dict(record["progress"])
        self._t_saved = self.progress.train_seconds_now()

    def record(self, trainer: Any, epoch: int, batches_done: int) -> dict[str, Any]:
        """The resume record of a save made after ``batches_done`` batches of ``epoch``:
        ``clock_seconds`` is ultralytics' time-budget clock (training and validation)."""
        self.progress.take_validation(trainer)  # an epoch's validation runs before its save
        return {"epoch": epoch, "batches_done": batches_done, "clock_seconds": time.time() - trainer.train_time_start,
                "train_seconds": self.progress.train_seconds_now(), "progress": self.progress.state_dict()}

    # -- callbacks ---------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: Any) -> None:
        self._batch = getattr(trainer, "epoch_batches_skipped", 0)

    def on_train_epoch_end(self, trainer: Any) -> None:
        self._since = 0
        self._t_saved = self.progress.train_seconds_now()  # ultralytics saves after every epoch

    def on_train_batch_end(self, trainer: Any) -> None:
        self._batch += 1
        self._since += 1
        if self._batch >= len(trainer.train_loader) or getattr(trainer, "stop", False):
            return  # the epoch's end saves anyway
        due_steps = self.every_steps is not None and self._since >= self.every_steps
        due_time = (self.every_minutes is not None
                    and self.progress.train_seconds_now() - self._t_saved >= 60 * self.every_minutes)
        if due_steps or due_time:
            self.save(trainer)

    def save(self, trainer: Any) -> None:
        """Write ``last.pt`` now: the state after ``self._batch`` batches of the current epoch."""
        record = self.record(trainer, trainer.epoch, self._batch)
        epoch, period = trainer.epoch, trainer.save_period
        trainer.epoch = epoch - 1  # the file's "epoch" is the last completed one, as ultralytics reads it
        trainer.save_period = -1  # no epoch{N}.pt in the middle of an epoch
        try:
            atomic_save_model(trainer, trainer.write_checkpoints, {RESUME_KEY: record}, keep_best=False)
        finally:
            trainer.epoch, trainer.save_period = epoch, period
        self.saves.append((epoch, self._batch))
        self._since = 0
        self._t_saved = self.progress.train_seconds_now()


def default_cadence(time_minutes: float, every_steps: int | None,
                    every_minutes: float | None) -> tuple[int | None, float | None]:
    """(every_steps, every_minutes) with the toolkit's defaults filled in: 10 minutes, or 5% of
    a time budget when that is shorter; steps only when given (a run under a time budget
    does not know its number of batches ahead)."""
    from longseq.training.cadence import DEFAULT_EVERY_MINUTES, DEFAULT_RUN_FRACTION

    if every_minutes is None:
        every_minutes = DEFAULT_EVERY_MINUTES
        if time_minutes and time_minutes > 0:
            every_minutes = min(every_minutes, DEFAULT_RUN_FRACTION * time_minutes)
    return every_steps, every_minutes

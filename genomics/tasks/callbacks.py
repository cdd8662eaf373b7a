"""Training-loop callbacks of ``longseq-train-dna`` beyond the shared ones of :mod:`longseq.training`.

* :class:`SignalSafeCheckpoint`: :class:`~longseq.training.checkpointing.PeriodicCheckpoint`
  that also saves ``last.ckpt`` when a SIGTERM (what a batch scheduler sends before it kills
  a job) stops training, at a batch from which the run resumes exactly (``--ckpt-path last``).
* :class:`TimeBudgetBar`: Lightning's progress bar for a run whose last length stage is
  open-ended (``schedule.train_tokens: null``: the clock, ``trainer.max_time``, ends it).
  The stage's step count is a placeholder (:data:`~genomics.data.length_warmup.OPEN_ENDED_STEPS`),
  so the bar has no total there, and shows the time left of the budget instead of a
  remaining time computed from that count.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from datetime import timedelta
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.imports import _RICH_AVAILABLE

from longseq.schedules import time_budget_fraction, time_budget_seconds
from longseq.training.checkpointing import PeriodicCheckpoint, _validates_after

__all__ = ["SignalSafeCheckpoint", "TimeBudgetBar"]

log = logging.getLogger(__name__)


class SignalSafeCheckpoint(PeriodicCheckpoint):
    """:class:`PeriodicCheckpoint` that saves ``last.ckpt`` once more when SIGTERM stops training.

    Lightning stops on SIGTERM after the batch at hand by raising
    :class:`~lightning.pytorch.utilities.exceptions.SIGTERMException` (a ``SystemExit`` with
    status 0). A state saved right there resumes exactly only in the middle of an epoch: at
    an epoch's end Lightning counts the epoch as done before it stops, and the resumed run
    would skip the next one. So from ``on_train_start`` on, this callback holds SIGTERM
    itself and passes it on to Lightning's handler at the first training batch after which
    a save on the cadence would be made too (not an epoch's last batch, nor one a validation
    pass follows); ``on_exception`` then writes ``last.ckpt`` (atomically, as every save),
    and the work since the last save on the cadence is not lost. On several processes the
    stop is agreed on: any process signalled stops them all at the same batch.

    ``signalled``: a SIGTERM arrived during training; ``stopped_at``: the optimizer step
    saved for it (None when training ended first, e.g. at its last step: ``last.ckpt`` is
    then the final save).
    """

    signalled: bool = False
    stopped_at: int | None = None
    _passed_on: bool = False
    _lightning_handler: Any = None

    def _hold(self, signum: int, frame: Any) -> None:
        log.warning("SIGTERM received: training stops after the next batch that can be saved for an exact resume")
        self.signalled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._lightning_handler = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._hold)  # Lightning puts the handlers of before fit back

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        stepped = trainer.global_step != self._seen_step  # not in the middle of gradient accumulation
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        stop = trainer.strategy.reduce_boolean_decision(self.signalled, all=False)  # every process, every batch
        if not stop or self._passed_on:
            return
        self.signalled = True
        if not stepped or batch_idx + 1 >= trainer.num_training_batches or _validates_after(trainer, batch_idx):
            return  # the stop waits one batch, as a save on the cadence does
        self._passed_on = True
        if callable(self._lightning_handler):
            self._lightning_handler(signal.SIGTERM, None)  # Lightning stops after this batch
        else:  # no Lightning handler (not the main thread): stop the same way it does
            raise SIGTERMException

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)  # a save waiting for its metrics is published first
        # Only a stop inside fit saves: in a later validate or test the module may hold the best
        # checkpoint's weights, and last.ckpt must keep the final ones.
        if isinstance(exception, SIGTERMException) and self.stopped_at is None and trainer.state.fn == "fit":
            self._save_now(trainer)
            self.stopped_at = trainer.global_step
            log.info("SIGTERM: last.ckpt saved at step %d in %s", trainer.global_step, self.dirpath)


_ProgressBar: type = RichProgressBar if _RICH_AVAILABLE else TQDMProgressBar


class TimeBudgetBar(_ProgressBar):  # type: ignore[misc, valid-type]
    """Lightning's default progress bar (Rich where installed, else tqdm), for a run whose
    epochs from ``first_open_epoch`` on belong to an open-ended stage: those epochs show
    the steps done without a total, and every epoch shows ``time_left`` of the Trainer's
    ``max_time``."""

    def __init__(self, first_open_epoch: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.first_open_epoch = first_open_epoch

    def _open_ended(self) -> bool:
        return self.trainer.current_epoch >= self.first_open_epoch

    @property
    def total_train_batches(self) -> int | float:
        return math.inf if self._open_ended() else super().total_train_batches

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Rich resets an existing bar to the new total, but only a new task takes an unknown one
        bar = getattr(self, "train_progress_bar_id", None)
        progress = getattr(self, "progress", None)
        if bar is not None and progress is not None and self._open_ended():
            progress.remove_task(bar)
            self.train_progress_bar_id = None
        super().on_train_epoch_start(trainer, pl_module)

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        budget = time_budget_seconds(trainer)
        if budget:
            left = max(0.0, budget * (1.0 - time_budget_fraction(trainer)))
            metrics["time_left"] = str(timedelta(seconds=round(left)))
        return metrics

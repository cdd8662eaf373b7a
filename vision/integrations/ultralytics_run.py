"""What an ultralytics training run did, for an honest summary, and a trainer that does not
validate its best weights a second time.

:class:`YoloRunProgress` hooks ultralytics' callbacks: it counts training batches (so a
run stopped by its time budget reports a fraction of an epoch), clocks the training
epochs without validation, and records every validation's mAP50, mAP50-95 and fitness
with the epoch it saw. :func:`detection_trainer` is ultralytics' ``DetectionTrainer``
whose ``final_eval`` strips the optimizer from ``last.pt`` and ``best.pt`` as usual but
does not validate ``best.pt`` again: its epoch was validated during training, and those
metrics are recorded. Ultralytics is imported inside the functions only.
"""

from __future__ import annotations

import math
import time
from dataclasses import astuple, dataclass
from typing import Any

__all__ = ["YoloRunProgress", "YoloValidation", "detection_trainer"]

#: ultralytics' names of the box metrics in ``trainer.metrics``.
MAP50, MAP50_95 = "metrics/mAP50(B)", "metrics/mAP50-95(B)"


@dataclass(frozen=True)
class YoloValidation:
    """One validation during training: ``epoch`` (fractional epochs trained when it ran),
    ``map50``, ``map50_95`` and ultralytics' ``fitness`` (what picks ``best.pt``)."""

    epoch: float
    map50: float
    map50_95: float
    fitness: float


class YoloRunProgress:
    """Training batches, training seconds without validation, and every validation of one run
    (``validation_runs`` counts every validator call, ``validations`` those after an epoch).

    ``attach(yolo)`` before ``yolo.train(...)``; read the attributes after it.
    """

    def __init__(self) -> None:
        self.batches = 0
        self.batches_per_epoch = 0
        self.train_seconds = 0.0
        self.validation_seconds = 0.0
        self.validation_runs = 0
        self.validations: list[YoloValidation] = []
        self._epoch_t0: float | None = None
        self._val_t0 = 0.0
        self._validated = False

    def attach(self, yolo: Any) -> YoloRunProgress:
        """Register the callbacks on an ultralytics ``YOLO`` model (its trainer and validator inherit them)."""
        for event in ("on_train_epoch_start", "on_train_batch_start", "on_train_epoch_end", "on_val_start",
                      "on_val_end", "on_fit_epoch_end"):
            yolo.add_callback(event, getattr(self, event))
        return self

    # -- callbacks ---------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: Any) -> None:
        self.batches_per_epoch = len(trainer.train_loader)
        self._epoch_t0 = time.perf_counter()

    def on_train_batch_start(self, trainer: Any) -> None:
        self.batches += 1  # counted at the start: a time-limited epoch breaks after its last batch's step

    def on_train_epoch_end(self, trainer: Any) -> None:
        if self._epoch_t0 is not None:
            self.train_seconds += time.perf_counter() - self._epoch_t0
            self._epoch_t0 = None

    def on_val_start(self, validator: Any) -> None:
        self._val_t0 = time.perf_counter()

    def on_val_end(self, validator: Any) -> None:
        self.validation_seconds += time.perf_counter() - self._val_t0
        self.validation_runs += 1
        self._validated = True

    def on_fit_epoch_end(self, trainer: Any) -> None:
        self.take_validation(trainer)

    def take_validation(self, trainer: Any) -> None:
        """Record the metrics of the validation that just ran (once; nothing when none ran)."""
        if not self._validated:  # an epoch without validation (val=False) leaves stale metrics
            return
        self._validated = False
        m = trainer.metrics or {}
        fitness = float(trainer.fitness) if trainer.fitness is not None else math.nan
        self.validations.append(YoloValidation(self.epochs_done, float(m.get(MAP50, math.nan)),
                                               float(m.get(MAP50_95, math.nan)), fitness))

    # -- state (a resumed run's summary counts the whole run) ---------------------------
    def train_seconds_now(self) -> float:
        """Training seconds so far, the running epoch's included."""
        running = time.perf_counter() - self._epoch_t0 if self._epoch_t0 is not None else 0.0
        return self.train_seconds + running

    def state_dict(self) -> dict[str, Any]:
        """Plain values: the counts so far, the running epoch's seconds included."""
        return {"batches": self.batches, "batches_per_epoch": self.batches_per_epoch,
                "train_seconds": self.train_seconds_now(), "validation_seconds": self.validation_seconds,
                "validation_runs": self.validation_runs, "validations": [list(astuple(v)) for v in self.validations]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("batches", "batches_per_epoch", "train_seconds", "validation_seconds", "validation_runs"):
            setattr(self, key, state[key])
        self.validations = [YoloValidation(*v) for v in state["validations"]]

    # -- results -----------------------------------------------------------------------
    @property
    def epochs_done(self) -> float:
        """Training batches run over batches per epoch (NaN before the first epoch)."""
        return self.batches / self.batches_per_epoch if self.batches_per_epoch else math.nan

    @property
    def best(self) -> YoloValidation | None:
        """The validation with the highest fitness, the latest on ties (the one ``best.pt`` holds)."""
        scored = [(v.fitness, i) for i, v in enumerate(self.validations) if not math.isnan(v.fitness)]
        return self.validations[max(scored)[1]] if scored else None

    @property
    def last(self) -> YoloValidation | None:
        return self.validations[-1] if self.validations else None


def detection_trainer(cadence: Any = None) -> type:
    """ultralytics' ``DetectionTrainer`` without the second validation of ``best.pt``, with
    atomic checkpoint writes, and, given a ``YoloCheckpointCadence``
    (:mod:`vision.integrations.ultralytics_resume`), a resume record in every ``last.pt`` and a
    resume that continues an interrupted epoch (pass it as ``yolo.train(trainer=...)``)."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    from vision.integrations.ultralytics_resume import (RESUME_KEY, atomic_save_model, atomic_strip_optimizer,
                                                        continue_interrupted_epoch, full_epochs_again, resume_record)

    class OneValidationTrainer(DetectionTrainer):
        """Validates each epoch as usual; the final weights are not validated again after training."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.cadence = cadence
            self.resumed: dict[str, Any] | None = None  # the resume record, until the first epoch starts
            self.epoch_batches_skipped = 0  # batches of the current epoch trained before a resume
            # first in line, so the other epoch-start callbacks see the resumed state
            self.callbacks["on_train_start"].insert(0, self._continue_the_clock)
            self.callbacks["on_train_epoch_start"].insert(0, self._continue_interrupted_epoch)
            self.add_callback("on_train_epoch_end", self._full_epochs_again)

        def write_checkpoints(self) -> Any:
            """ultralytics' own ``save_model`` (``last.pt``, and ``best.pt`` at a best fitness)."""
            return DetectionTrainer.save_model(self)

        def save_model(self) -> Any:
            extra = {RESUME_KEY: cadence.record(self, self.epoch + 1, 0)} if cadence is not None else None
            return atomic_save_model(self, self.write_checkpoints, extra)

        def resume_training(self, ckpt: Any) -> None:
            record = resume_record(ckpt) if self.resume else None
            if record is None:
                return super().resume_training(ckpt)
            # ultralytics resumes at the epoch after the file's and checks it against the epoch count
            first = max(record["epoch"], 1)
            epochs = self.epochs
            self.epochs = max(epochs, first + 1)
            try:
                super().resume_training({**ckpt, "epoch": first - 1})
            finally:
                self.epochs = epochs
            self.start_epoch, self.resumed = record["epoch"], record
            if cadence is not None:
                cadence.resume_from(record)

        def _continue_the_clock(self, trainer: Any) -> None:
            """The time budget counts the interrupted run's clock (training and validation)."""
            if self.resumed is not None:
                self.train_time_start -= self.resumed.get("clock_seconds", 0.0)

        def _continue_interrupted_epoch(self, trainer: Any) -> None:
            self.epoch_batches_skipped = 0
            if self.resumed is None:
                return
            self.epoch_batches_skipped = self.resumed["batches_done"]
            if self.epoch_batches_skipped:
                continue_interrupted_epoch(self, self.epoch_batches_skipped)
            # From here ultralytics' epoch estimate under a time budget divides the whole run's
            # clock by the epochs since start_epoch: count them from the run's first epoch.
            self.start_epoch, self.resumed = 0, None

        def _full_epochs_again(self, trainer: Any) -> None:
            full_epochs_again(self)

        def final_eval(self) -> None:
            ckpt = atomic_strip_optimizer(self.last) if self.last.exists() else {}
            if self.best.exists():
                atomic_strip_optimizer(self.best, {"train_results": ckpt.get("train_results")})

    return OneValidationTrainer

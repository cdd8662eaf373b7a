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
from dataclasses import dataclass
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
        if not self._validated:  # an epoch without validation (val=False) leaves stale metrics
            return
        self._validated = False
        m = trainer.metrics or {}
        fitness = float(trainer.fitness) if trainer.fitness is not None else math.nan
        self.validations.append(YoloValidation(self.epochs_done, float(m.get(MAP50, math.nan)),
                                               float(m.get(MAP50_95, math.nan)), fitness))

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


def detection_trainer() -> type:
    """ultralytics' ``DetectionTrainer`` without the second validation of ``best.pt``
    (pass it as ``yolo.train(trainer=...)``)."""
    from ultralytics.models.yolo.detect import DetectionTrainer
    from ultralytics.utils.torch_utils import strip_optimizer

    class OneValidationTrainer(DetectionTrainer):
        """Validates each epoch as usual; the final weights are not validated again after training."""

        def final_eval(self) -> None:
            ckpt = strip_optimizer(self.last) if self.last.exists() else {}
            if self.best.exists():
                strip_optimizer(self.best, updates={"train_results": ckpt.get("train_results")})

    return OneValidationTrainer

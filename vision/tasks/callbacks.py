"""What a classification run records for its summary: every validation's metrics, and the
time spent validating (so the training time can leave it out)."""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L

__all__ = ["ValidationHistory", "epochs_done"]


def epochs_done(trainer: L.Trainer) -> float:
    """Epochs trained so far as a fraction: training batches run / batches per epoch."""
    per_epoch = trainer.num_training_batches
    if not per_epoch or math.isinf(per_epoch):
        return float(trainer.current_epoch)
    return trainer.global_step * trainer.accumulate_grad_batches / per_epoch


class ValidationHistory(L.Callback):
    """One record per validation (sanity checks left out): ``epoch`` (a fraction, see
    :func:`epochs_done`), ``step`` and every ``val/*`` metric; plus ``seconds``, the time
    spent in validation loops, sanity checks included.

    ``best(monitor, mode)`` is the record with the best ``monitor``; ``last`` the latest.
    """

    def __init__(self) -> None:
        self.records: list[dict[str, float]] = []
        self.seconds = 0.0
        self._t0 = 0.0

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds += time.perf_counter() - self._t0
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self.records.append({"epoch": round(epochs_done(trainer), 3), "step": trainer.global_step, **metrics})

    @property
    def last(self) -> dict[str, float] | None:
        return self.records[-1] if self.records else None

    def best(self, monitor: str = "val/top1", mode: str = "max") -> dict[str, float] | None:
        """The record with the highest (``mode="max"``) or lowest ``monitor``; the earliest on ties."""
        scored = [r for r in self.records if monitor in r and not math.isnan(r[monitor])]
        if not scored:
            return None
        pick = max if mode == "max" else min
        return pick(scored, key=lambda r: r[monitor])

    def state_dict(self) -> dict[str, Any]:
        return {"records": self.records}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.records = list(state_dict.get("records", []))

"""How often a training run refreshes its resumable checkpoint: :class:`CheckpointCadence` and
its defaults, shared by the Lightning scripts (``longseq.training.checkpointing``) and the
ultralytics one. Imports nothing beyond the standard library."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["DEFAULT_EVERY_MINUTES", "DEFAULT_RUN_FRACTION", "CheckpointCadence", "default_every_steps"]

#: Default time cadence: a kill loses at most this many minutes of training.
DEFAULT_EVERY_MINUTES = 10.0
#: Default step cadence, as a share of the planned steps: a kill loses at most 5% of the run.
DEFAULT_RUN_FRACTION = 0.05


@dataclass(frozen=True)
class CheckpointCadence:
    """How often ``last.ckpt`` is refreshed (the ``checkpoint`` config section).

    Attributes:
        every_steps: optimizer steps between saves; None: ``ceil(5%)`` of the planned steps
            (:func:`default_every_steps`).
        every_minutes: minutes of training between saves (default 10; under a Trainer
            ``max_time``, the default shrinks to 5% of it when that is shorter).
    """

    every_steps: int | None = None
    every_minutes: float | None = DEFAULT_EVERY_MINUTES

    def __post_init__(self) -> None:
        steps = self.every_steps
        if steps is not None and (isinstance(steps, bool) or int(steps) != steps or steps < 1):
            raise ValueError(f"every_steps must be a whole number >= 1, got {self.every_steps!r}")
        if self.every_minutes is not None and not self.every_minutes > 0:
            raise ValueError(f"every_minutes must be > 0, got {self.every_minutes!r}")


def default_every_steps(total_steps: int | float | None, fraction: float = DEFAULT_RUN_FRACTION) -> int | None:
    """``ceil(fraction * total_steps)`` (at least 1); None when the total is unknown or infinite."""
    if total_steps is None or not math.isfinite(total_steps) or total_steps < 1:
        return None
    return max(1, math.ceil(fraction * total_steps))

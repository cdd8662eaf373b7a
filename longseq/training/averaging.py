"""An exponential moving average (EMA) of the weights, the ``averaging`` config section:
Lightning's :class:`~lightning.pytorch.callbacks.WeightAveraging` with a warmed-up EMA update.

Validation, the best checkpoint and everything loaded from it (test scoring, prediction,
``--init-from``) see the averaged weights; the raw ones travel in the checkpoint beside them
(``current_model_state``), so a resumed run continues both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

__all__ = ["Averaging", "ema_callback", "ema_update"]


@dataclass(frozen=True)
class Averaging:
    """How the weights are averaged (the ``averaging`` config section).

    Attributes:
        ema_decay: weight kept by the running average at each optimizer step once warmed up
            (0.999: about the last 1,000 steps count); None or 0 turns averaging off.
    """

    ema_decay: float | None = None

    def __post_init__(self) -> None:
        d = self.ema_decay
        if d is not None and (isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 <= d < 1.0):
            raise ValueError(f"ema_decay must be in [0, 1) (or null: off), got {self.ema_decay!r}")

    @property
    def enabled(self) -> bool:
        return bool(self.ema_decay)


def ema_update(decay: float) -> Callable[[list[Tensor], list[Tensor], Tensor], None]:
    """An ``AveragedModel`` ``multi_avg_fn``: ``avg <- d * avg + (1 - d) * w`` with
    ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the first weights (a random
    start) fade within tens of steps instead of ``1 / (1 - decay)``. Integer buffers are copied."""

    def update(averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        if not averaged[0].is_floating_point():
            torch._foreach_copy_(averaged, current)
            return
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(averaged, current, 1.0 - d)

    return update


def ema_callback(averaging: Averaging):
    """The Lightning callback keeping the EMA ``averaging`` asks for, or None when it is off."""
    if not averaging.enabled:
        return None
    from lightning.pytorch.callbacks import WeightAveraging

    assert averaging.ema_decay is not None
    return WeightAveraging(multi_avg_fn=ema_update(float(averaging.ema_decay)))

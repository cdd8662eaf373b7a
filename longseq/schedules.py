"""Learning-rate schedule shared by the training tasks (vision and genomics).

Linear warm-up, then cosine decay that ends when the *first* budget runs out: the step
budget or the wall-clock budget. Short CPU runs are usually stopped by the clock
(``Trainer(max_time=...)``) long before the step estimate; a schedule that only counts
steps would then stop at a high learning rate and give up the gain of annealing (the
512 x 512 scattered-digits run stopped at 66% of its peak rate before this existed).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["warmup_cosine", "time_budget_fraction", "time_budget_seconds"]


def warmup_cosine(step: int, warmup_steps: int, total_steps: int | None, min_ratio: float,
                  time_fraction: float = 0.0) -> float:
    """Learning-rate multiplier at optimiser step ``step``.

    ``(step + 1) / warmup_steps`` during warm-up; then ``min_ratio + (1 - min_ratio) *
    (1 + cos(pi * t)) / 2`` where ``t`` is the larger of the step progress after warm-up
    (``0`` when ``total_steps`` is unknown) and ``time_fraction`` (the share of a time
    budget already spent, see :func:`time_budget_fraction`), clipped to ``[0, 1]``.
    """
    if warmup_steps < 0 or not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f"need warmup_steps >= 0 and 0 <= min_ratio <= 1, got {warmup_steps}, {min_ratio}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps) if total_steps else 0.0
    t = min(1.0, max(t, time_fraction, 0.0))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def _timer(trainer: Any) -> Any:
    for callback in getattr(trainer, "callbacks", None) or ():
        if hasattr(callback, "time_remaining") and hasattr(callback, "time_elapsed"):
            return callback
    return None


def time_budget_seconds(trainer: Any) -> float | None:
    """The Trainer's ``max_time`` in seconds (elapsed + remaining), or None without one."""
    timer = _timer(trainer)
    remaining = timer.time_remaining() if timer is not None else None
    return None if remaining is None else float(timer.time_elapsed() + remaining)


def time_budget_fraction(trainer: Any) -> float:
    """Share of the Trainer's ``max_time`` spent in training so far, in ``[0, 1]``.

    ``0`` when there is no trainer or no time budget. Reads Lightning's ``Timer``
    callback through its public ``time_elapsed``/``time_remaining`` (duck-typed, so this
    core module does not import Lightning). The clock includes validation inside ``fit``,
    exactly as ``max_time`` does, so the decay ends where training stops.
    """
    total = time_budget_seconds(trainer)
    if total is None:
        return 0.0
    return min(1.0, max(0.0, _timer(trainer).time_elapsed() / total)) if total > 0 else 1.0

"""The shared warm-up + cosine schedule and its wall-clock budget."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from lightning.pytorch.callbacks import Timer

from longseq.schedules import time_budget_fraction, warmup_cosine


def test_warmup_is_linear_then_cosine_ends_at_min_ratio():
    assert warmup_cosine(0, 10, 110, 0.05) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 110, 0.05) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 110, 0.05) == pytest.approx(1.0)
    assert warmup_cosine(60, 10, 110, 0.05) == pytest.approx(0.05 + 0.95 * 0.5)
    assert warmup_cosine(110, 10, 110, 0.05) == pytest.approx(0.05)
    assert warmup_cosine(500, 10, 110, 0.05) == pytest.approx(0.05)  # never below the floor


def test_the_budget_spent_first_sets_the_decay():
    # Step 20 of 1000 is early, but 75% of the time budget is gone: decay follows the clock.
    by_clock = warmup_cosine(20, 10, 1000, 0.0, time_fraction=0.75)
    assert by_clock == pytest.approx(0.5 * (1 + math.cos(0.75 * math.pi)))
    # And the other way round: a small time fraction does not undo the step progress.
    assert warmup_cosine(1000, 10, 1000, 0.0, time_fraction=0.1) == pytest.approx(0.0)
    # Unknown step total: only the clock decays the rate.
    assert warmup_cosine(10**6, 10, None, 0.2) == pytest.approx(1.0)
    assert warmup_cosine(10**6, 10, None, 0.2, time_fraction=1.0) == pytest.approx(0.2)


def test_bad_schedule_arguments_are_errors():
    with pytest.raises(ValueError):
        warmup_cosine(0, -1, 10, 0.1)
    with pytest.raises(ValueError):
        warmup_cosine(0, 1, 10, 1.5)


def test_time_budget_fraction_reads_lightnings_timer(monkeypatch):
    clock = SimpleNamespace(now=1000.0)
    import lightning.pytorch.callbacks.timer as timer_module

    monkeypatch.setattr(timer_module.time, "monotonic", lambda: clock.now)
    timer = Timer(duration={"minutes": 10})
    trainer = SimpleNamespace(callbacks=[object(), timer])
    assert time_budget_fraction(trainer) == 0.0  # not started
    timer.on_train_start(trainer, None)
    clock.now += 150.0
    assert time_budget_fraction(trainer) == pytest.approx(0.25)
    clock.now += 10_000.0
    assert time_budget_fraction(trainer) == 1.0
    # No time budget, no Timer, no trainer: the clock plays no part.
    assert time_budget_fraction(SimpleNamespace(callbacks=[Timer(duration=None)])) == 0.0
    assert time_budget_fraction(SimpleNamespace(callbacks=[])) == 0.0
    assert time_budget_fraction(None) == 0.0

"""The run records behind the detection summaries: fractional epochs, training time without
validation, the best validation beside the last, and how the summaries print them."""

from __future__ import annotations

import math
from types import SimpleNamespace

from vision.cli import train_yolo_baseline
from vision.integrations.ultralytics_run import MAP50, MAP50_95, YoloRunProgress


def _epoch(progress: YoloRunProgress, trainer: SimpleNamespace, batches: int, map50: float, map50_95: float) -> None:
    """One ultralytics epoch as its callbacks see it: ``batches`` batches, then a validation."""
    progress.on_train_epoch_start(trainer)
    for _ in range(batches):
        progress.on_train_batch_start(trainer)
    progress.on_train_epoch_end(trainer)
    progress.on_val_start(None)
    progress.on_val_end(None)
    trainer.metrics, trainer.fitness = {MAP50: map50, MAP50_95: map50_95}, map50_95
    progress.on_fit_epoch_end(trainer)


def test_yolo_progress_counts_a_time_limited_epoch_as_a_fraction() -> None:
    trainer = SimpleNamespace(train_loader=[0] * 4, metrics=None, fitness=None)
    progress = YoloRunProgress()
    _epoch(progress, trainer, 4, 0.5, 0.30)
    _epoch(progress, trainer, 4, 0.7, 0.40)
    _epoch(progress, trainer, 1, 0.6, 0.35)  # the time budget ran out after one batch
    assert progress.epochs_done == 2.25 and progress.batches == 9 and progress.validation_runs == 3
    assert [v.epoch for v in progress.validations] == [1.0, 2.0, 2.25]
    assert (progress.best.epoch, progress.best.map50) == (2.0, 0.7)  # best.pt: the highest fitness
    assert (progress.last.epoch, progress.last.map50_95) == (2.25, 0.35)
    progress.on_fit_epoch_end(trainer)  # an epoch end without a validation records nothing
    assert len(progress.validations) == 3
    assert progress.train_seconds >= 0 and progress.validation_seconds >= 0
    assert math.isnan(YoloRunProgress().epochs_done) and YoloRunProgress().best is None


def test_yolo_summary_prints_best_beside_last() -> None:
    s = {"model": "yolo11n.yaml", "params": 2_583_322, "num_classes": 2, "img_size": 64, "epochs_done": 2.25,
         "batches": 9, "batches_per_epoch": 4, "train_seconds": 90.0, "validation_seconds": 12.0, "validations": 3,
         "best_epoch": 2.0, "map50": 0.7, "map50_95": 0.4, "last_epoch": 2.25, "last_map50": 0.6,
         "last_map50_95": 0.35, "infer_images_per_s": 10.0, "peak_rss_gb": 1.5, "weights": "best.pt",
         "summary_json": "summary.json", "data": "data.yaml", "recipe": {"time_minutes": 2.0}}
    text = train_yolo_baseline.format_summary(s)
    assert "2.58 M params (2 classes)" in text
    assert "2.25 epochs (9 batches, 4 per epoch) in 1.5 min of training (limit 2 min), 3 validation(s)" in text
    assert "best  epoch 2.00: mAP50 0.7000  mAP50-95 0.4000  (weights)" in text
    assert "last  epoch 2.25: mAP50 0.6000  mAP50-95 0.3500" in text

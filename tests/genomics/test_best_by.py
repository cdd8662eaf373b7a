"""``task.best_by``: the validation figure that picks the checkpoint a classification run keeps
and scores at the end."""

from __future__ import annotations

import csv

import pytest
import torch

from genomics.cli import train_dna

from .labelled_data import write_split_folder


def test_best_checkpoint_is_the_highest_validation_mcc(tmp_path):
    data = write_split_folder(tmp_path / "bench", {"train": 48, "dev": 20, "test": 10})
    summary = train_dna.run(["--task", "classification", "--data", str(data), "--set", "task.best_by=mcc",
                             "--set", "trainer.max_epochs=4", "--out-dir", str(tmp_path / "runs")])
    with open(summary["metrics_csv"]) as f:
        rows = [(int(r["step"]), float(r["val/mcc"])) for r in csv.DictReader(f) if r.get("val/mcc")]
    assert len(rows) >= 4
    best_step, best_mcc = max(rows, key=lambda r: (r[1], -r[0]))  # the first of equal highs is kept
    assert summary["best_val_mcc"] == pytest.approx(best_mcc) and "best_val_loss" not in summary
    assert torch.load(summary["checkpoint"], weights_only=False)["global_step"] == best_step + 1
    assert summary["val"]["mcc"] == pytest.approx(best_mcc, abs=1e-6)


def test_unknown_best_by_is_an_error_before_training(tmp_path):
    from longseq.training.config import ConfigError

    data = write_split_folder(tmp_path / "bench")
    with pytest.raises(ConfigError, match=r"^task: best_by must be one of loss, mcc, auroc, acc, f1_macro, got 'f1'"):
        train_dna.run(["--task", "classification", "--data", str(data), "--set", "task.best_by=f1",
                       "--out-dir", str(tmp_path / "runs")])
    assert not (tmp_path / "runs").exists()

"""Finding a run's last.ckpt, continuing its metrics file, and the random state in checkpoints."""

import random

import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from longseq.training.errors import UserError
from longseq.training.random_state import capture_random_state, restore_random_state
from longseq.training.resume import ContinuedMetrics, find_last_checkpoint, read_metrics, run_version


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_find_last_checkpoint_takes_the_newest_run_that_has_one(tmp_path):
    root = tmp_path / "runs" / "lm"
    with pytest.raises(UserError, match=r"^--ckpt-path last: no .*lm/version_\*/checkpoints/last\.ckpt"):
        find_last_checkpoint(root)
    _touch(root / "version_2" / "checkpoints" / "last.ckpt")
    newest = _touch(root / "version_10" / "checkpoints" / "last.ckpt")
    (root / "version_11" / "checkpoints").mkdir(parents=True)  # started, killed before its first save
    assert find_last_checkpoint(root) == newest


def test_run_version_of_a_checkpoint(tmp_path):
    path = tmp_path / "runs" / "lm" / "version_3" / "checkpoints" / "last.ckpt"
    assert run_version(path) == ((tmp_path / "runs" / "lm").resolve(), 3)
    assert run_version(tmp_path / "elsewhere" / "last.ckpt") is None


def test_continued_metrics_keep_rows_before_the_checkpoint(tmp_path):
    logger = CSVLogger(tmp_path, name="lm", version=0)
    metrics = tmp_path / "lm" / "version_0" / "metrics.csv"
    metrics.parent.mkdir(parents=True)
    metrics.write_text("epoch,step,train/loss\n0,0,2.0\n0,1,1.9\n0,2,1.8\n0,3,1.7\n")
    kept = ContinuedMetrics(metrics, before_step=2)
    assert [r["step"] for r in kept.rows] == ["0", "1"] and kept.dropped == 2
    kept.restore(logger)  # the logger's writer replaces the old file; the kept rows come back
    logger.log_metrics({"train/loss": 1.75, "val/loss": 1.6}, step=2)
    logger.save()
    header, rows = read_metrics(metrics)
    assert [r["step"] for r in rows] == ["0", "1", "2"] and "val/loss" in header and rows[0]["train/loss"] == "2.0"


def test_random_state_round_trip_through_a_weights_only_file(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    torch.save(capture_random_state(), tmp_path / "state.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9)
    np.random.seed(9)
    random.seed(9)
    restore_random_state(torch.load(tmp_path / "state.pt", weights_only=True))
    assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]

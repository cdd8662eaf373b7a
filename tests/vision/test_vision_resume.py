"""A ``longseq-train-vit`` run killed with SIGKILL right after a cadence checkpoint and resumed
with ``--ckpt-path last`` ends where the uninterrupted run ends: same steps, weights, learning
rate, and the same training losses at the same steps (data order and augmentation included)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ..kill import kill_at_first_checkpoint
from .photo_data import make_photo_folder

STEPS = 12
#: A tiny ViT at 64 px on an image folder of 2 x 7 images: 5 batches of 2 per epoch, random
#: crops and flips, dropout, validation every 3 batches, float64 and deterministic.
TINY = {
    "model": {"name": "longseq_vit_digits", "patch_size": 16, "embed_dim": 16, "depth": 1, "num_heads": 2,
              "window_size": 2, "global_blocks": [0], "drop_rate": 0.1, "mlp_ratio": 2.0},
    "data": {"img_size": 64, "batch_size": 2, "num_workers": 0, "val_fraction": 0.2, "scale": [0.3, 1.0],
             "hflip": 0.5},
    "task": {"lr": 0.01, "warmup_steps": 2},
    "trainer": {"seed": 0, "max_epochs": 100, "deterministic": True, "log_every_n_steps": 1,
                "enable_progress_bar": False, "val_check_interval": 3, "accelerator": "cpu", "devices": 1},
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("resume")
    photos = make_photo_folder(root / "photos", per_class=7)
    config = root / "tiny_vit.yaml"
    config.write_text(yaml.safe_dump(TINY))
    return photos, config


def _command(photos: Path, config: Path, out_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "vision.cli.train_vit", "--config", str(config), "--data", str(photos),
            "--max-steps", str(STEPS), "--max-minutes", "0", "--precision", "64-true", "--ckpt-every-steps", "4",
            "--out-dir", str(out_dir), *extra]


def _env(root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONHASHSEED": "0", "MPLCONFIGDIR": str(root / "mpl"), "OMP_NUM_THREADS": "1"}


def _losses(out_dir: Path) -> dict[int, str]:
    """``train/loss`` per step over every logged run folder of ``out_dir``, later folders last."""
    found: dict[int, str] = {}
    for run in sorted((out_dir / "lightning_logs").glob("version_*")):
        with open(run / "metrics.csv", newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("train/loss"):
                    found[int(row["step"])] = row["train/loss"]
    return found


def test_killed_run_resumes_exactly(inputs, tmp_path):
    photos, config = inputs
    env = _env(tmp_path)
    whole = subprocess.run(_command(photos, config, tmp_path / "whole"), env=env, capture_output=True, text=True,
                           timeout=120)
    assert whole.returncode == 0, whole.stderr[-3000:]

    cut = tmp_path / "cut"
    last = cut / "checkpoints" / "last.ckpt"
    kill_at_first_checkpoint(_command(photos, config, cut), env, last)
    killed_at = torch.load(last, weights_only=False)["global_step"]
    assert 0 < killed_at < STEPS

    resumed = subprocess.run(_command(photos, config, cut, "--ckpt-path", "last"), env=env, capture_output=True,
                             text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["steps"] == STEPS and summary["last_checkpoint"] == str(last)

    a = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=False)
    b = torch.load(last, weights_only=False)
    assert a["global_step"] == b["global_step"] == STEPS
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for name, tensor in a["state_dict"].items():
        assert torch.allclose(tensor, b["state_dict"][name], atol=1e-6, rtol=0), name
    assert a["lr_schedulers"][0]["_last_lr"] == pytest.approx(b["lr_schedulers"][0]["_last_lr"], abs=1e-12)

    whole_losses, cut_losses = _losses(tmp_path / "whole"), _losses(cut)
    assert sorted(whole_losses) == sorted(cut_losses) and len(whole_losses) >= STEPS - 1
    for step, loss in whole_losses.items():  # every step once, none shifted, the same batch and augmentation
        assert float(cut_losses[step]) == pytest.approx(float(loss), abs=1e-6), step


def test_cadence_flags_reach_the_config(capsys):
    from vision.cli import train_vit

    train_vit.main(["--ckpt-every-steps", "7", "--ckpt-every-minutes", "2.5", "--print-config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["checkpoint"] == {"every_steps": 7, "every_minutes": 2.5}


def test_epoch_shuffle_resumes_mid_epoch_with_the_same_items_and_seeds():
    from vision.data.datamodules import EpochShuffle

    whole = list(EpochShuffle(range(10), seed=3, item_seeds=True, position=lambda: (2, 0)))
    resumed = EpochShuffle(range(10), seed=3, item_seeds=True, position=lambda: (2, 4))
    assert list(resumed) == whole[4:] and resumed.skipped == 4 and len(resumed) == 10
    plain = EpochShuffle(range(10), seed=3)
    plain.set_epoch(2)
    assert list(plain) == [i for i, _ in whole]  # the order of a run on several devices is unchanged
    assert len({s for _, s in whole}) == 10

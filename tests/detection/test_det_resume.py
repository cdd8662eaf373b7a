"""``longseq-train-detector`` keeps ``last.ckpt`` current on its cadence; a run killed with
SIGKILL right after a cadence checkpoint and resumed with ``--ckpt-path last`` ends where the
uninterrupted run ends (same steps, weights and learning rate: data order and the detector's
random proposal sampling included). Bad flags and files are one line and exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ..kill import kill_at_first_checkpoint

STEPS = 7
#: FCOS on timm's tiny test ViT at 64 px, 4 training images in batches of 2 (2 steps an epoch),
#: one validation batch per epoch, float64 and deterministic.
TINY = {
    "model": {"name": "test_vit", "channels": [16, 16, 16]},
    "data": {"img_size": 64, "batch_size": 2, "num_workers": 0},
    "task": {"detector": "fcos", "fpn_channels": 32, "lr": 1e-3},
    "trainer": {"seed": 0, "max_epochs": 100, "deterministic": True, "enable_progress_bar": False,
                "enable_model_summary": False, "limit_val_batches": 1, "num_sanity_val_steps": 0,
                "accelerator": "cpu", "devices": 1, "precision": "64-true", "logger": False},
}


def _command(config: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "vision.cli.train_detector", "--config", str(config), "--data", str(data),
            "--max-steps", str(STEPS), "--ckpt-every-steps", "3", "--out", str(out), *extra]


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_detector.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_killed_detector_run_resumes_exactly(config, tiny_digits_yaml, yolo_env, tmp_path):
    env = {**yolo_env, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    whole = subprocess.run(_command(config, tiny_digits_yaml, tmp_path / "whole"), env=env, capture_output=True,
                           text=True, timeout=180)
    assert whole.returncode == 0, whole.stderr[-3000:]

    cut = tmp_path / "cut"
    last = cut / "last.ckpt"
    kill_at_first_checkpoint(_command(config, tiny_digits_yaml, cut), env, last, timeout=150)
    killed_at = torch.load(last, weights_only=False)["global_step"]
    assert 0 < killed_at < STEPS

    resumed = subprocess.run(_command(config, tiny_digits_yaml, cut, "--ckpt-path", "last"), env=env,
                             capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{STEPS} steps)" in resumed.stdout  # the summary counts the whole run, not the resumed part

    a = torch.load(tmp_path / "whole" / "last.ckpt", weights_only=False)
    b = torch.load(last, weights_only=False)
    assert a["global_step"] == b["global_step"] == STEPS
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for name, tensor in a["state_dict"].items():
        assert torch.allclose(tensor, b["state_dict"][name], atol=1e-6, rtol=0), name


@pytest.mark.parametrize(("argv", "named"), [
    (["--img-size", "0"], "--img-size: must be a positive whole number, got 0"),
    (["--max-steps", "0"], "--max-steps: must be a positive whole number"),
    (["--ckpt-every-minutes", "0"], "--ckpt-every-minutes: must be > 0"),
    (["--val-fraction", "1.5"], "--val-fraction: must be in (0, 1)"),
    (["--data", "{tmp}/missing"], "--data: {tmp}/missing: no such file or folder"),
    (["--ckpt-path", "last", "--out", "{tmp}/empty"], "--ckpt-path last: no last*.ckpt in {tmp}/empty"),
    (["--ckpt-path", "{tmp}/junk.ckpt"], "--ckpt-path: {tmp}/junk.ckpt: not a checkpoint"),
], ids=["img-size", "max-steps", "cadence", "val-fraction", "data", "no-last", "junk-ckpt"])
def test_detector_errors_are_one_line(argv, named, tmp_path, capsys):
    from vision.cli import train_detector

    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        train_detector.main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith("longseq-train-detector: error: ") and named.replace("{tmp}", str(tmp_path)) in err
    assert not (tmp_path / "empty").exists()  # nothing written before the error


@pytest.mark.parametrize(("argv", "named"), [
    (["--img-size", "-1"], "--img-size: must be a positive whole number"),
    (["--time-minutes", "-5"], "--time-minutes: must be >= 0"),
    (["--data", "{tmp}/missing"], "--data: {tmp}/missing: no such file or folder"),
], ids=["img-size", "time", "data"])
def test_yolo_errors_are_one_line(argv, named, tmp_path, capsys):
    from vision.cli import train_yolo_baseline

    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        train_yolo_baseline.main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith("longseq-train-yolo: error: ") and named.replace("{tmp}", str(tmp_path)) in err


def test_detector_cadence_flags_reach_the_config(capsys):
    from vision.cli import train_detector

    train_detector.main(["--ckpt-every-steps", "7", "--ckpt-every-minutes", "2.5", "--print-config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["checkpoint"] == {"every_steps": 7, "every_minutes": 2.5}

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
    (["--ckpt-every-steps", "0"], "--ckpt-every-steps: must be a positive whole number"),
    (["--ckpt-every-minutes", "-1"], "--ckpt-every-minutes: must be > 0"),
    (["--data", "{data}", "--ckpt-path", "last", "--project", "{tmp}/none", "--name", "x"],
     "--ckpt-path last: no checkpoint at {tmp}/none/x/weights/last.pt"),
    (["--data", "{data}", "--ckpt-path", "{tmp}/junk.pt", "--project", "{tmp}/p"],
     "--ckpt-path: {tmp}/junk.pt: not a checkpoint"),
], ids=["img-size", "time", "data", "cadence-steps", "cadence-minutes", "no-last", "junk"])
def test_yolo_errors_are_one_line(argv, named, tmp_path, capsys, tiny_digits_yaml, yolo_env):
    from vision.cli import train_yolo_baseline

    (tmp_path / "junk.pt").write_text("not a checkpoint")
    argv = [a.replace("{data}", str(tiny_digits_yaml)) for a in argv]
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


# --- longseq-train-yolo: last.pt between epochs, and a resume that finishes the interrupted epoch

def _yolo_command(data: Path, project: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "vision.cli.train_yolo_baseline", "--data", str(data), "--img-size", "64",
            "--epochs", "2", "--time-minutes", "0", "--batch", "1", "--workers", "0", "--ckpt-every-steps", "3",
            "--project", str(project), "--name", "run", *extra]


def test_killed_yolo_run_resumes_the_interrupted_epoch(tiny_digits_yaml, yolo_env, tmp_path, capsys):
    """4 training images in batches of 1 (4 batches an epoch), 2 epochs, last.pt every 3
    batches: killed right after the save at batch 3 of epoch 1, the resumed run trains the
    epoch's last batch and epoch 2, and its summary counts the whole run (8 batches, 2
    validations). Resuming the finished run is a one-line error."""
    from vision.cli import train_yolo_baseline
    from vision.integrations.ultralytics_resume import RESUME_KEY

    env = {**yolo_env, "OMP_NUM_THREADS": "1"}
    last = tmp_path / "runs" / "run" / "weights" / "last.pt"
    kill_at_first_checkpoint(_yolo_command(tiny_digits_yaml, tmp_path / "runs"), env, last, timeout=240)
    saved = torch.load(last, weights_only=False)
    record = saved[RESUME_KEY]
    assert (record["epoch"], record["batches_done"], saved["epoch"]) == (0, 3, -1)  # ultralytics: no epoch completed
    assert record["progress"]["batches"] == 3 and saved["optimizer"] is not None and record["clock_seconds"] > 0
    assert not list(last.parent.glob("*.tmp"))  # the write was moved into place

    with pytest.raises(SystemExit) as exit_info:  # a budget the killed run has already spent
        train_yolo_baseline.main(_yolo_command(tiny_digits_yaml, tmp_path / "runs", "--ckpt-path", "last",
                                               "--time-minutes", "0.0001")[3:])
    assert exit_info.value.code == 2 and "the run has spent its 0.0001 minutes" in capsys.readouterr().err

    summary = tmp_path / "summary.json"
    resumed = subprocess.run(_yolo_command(tiny_digits_yaml, tmp_path / "runs", "--ckpt-path", "last",
                                           "--summary-json", str(summary)),
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    import json

    s = json.loads(summary.read_text())
    assert (s["batches"], s["batches_per_epoch"], s["epochs_done"], s["validations"]) == (8, 4, 2.0, 2)
    assert s["resumed_from"] == str(last) and s["checkpoint_every_steps"] == 3
    assert s["mid_epoch_saves"] == 1  # batch 3 of epoch 2 (the epoch ends after batch 4 of epoch 1)
    assert "2.00 epochs (8 batches, 4 per epoch)" in resumed.stdout and "resumed from" in resumed.stdout

    with pytest.raises(SystemExit) as exit_info:
        train_yolo_baseline.main(_yolo_command(tiny_digits_yaml, tmp_path / "runs", "--ckpt-path", "last")[3:])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert f"--ckpt-path: {last}: the run finished" in err

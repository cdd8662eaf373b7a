"""``longseq-train-vit`` input errors: one line on stderr naming the flag or file, exit status 2,
before any model or Trainer is built, nothing written under --out-dir; --debug shows the traceback."""

from __future__ import annotations

import functools
from pathlib import Path

import lightning  # noqa: F401 (its log handler binds the stderr of the moment it is imported: not a test's)
import pytest
import torch
import yaml

from longseq.training.errors import UserError
from vision.cli import train_vit

from .photo_data import make_photo_folder

PROG = "longseq-train-vit: error: "


@pytest.fixture
def no_model(monkeypatch):
    """Input errors must come before any model or Trainer is built."""
    def refusing(original):
        @functools.wraps(original)  # keeps the signature the config's trainer section is checked against
        def refuse(*args, **kwargs):
            raise AssertionError("a model or Trainer was built before the input was checked")
        return refuse

    monkeypatch.setattr(train_vit, "_backbone", refusing(train_vit._backbone))
    monkeypatch.setattr(lightning.Trainer, "__init__", refusing(lightning.Trainer.__init__))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return make_photo_folder(tmp_path_factory.mktemp("photos"), per_class=3)


def _error(argv: list[str], capsys, out_dir: Path) -> str:
    """The one stderr line of ``main(argv)``, which must exit with status 2 and write nothing."""
    with pytest.raises(SystemExit) as exit_info:
        train_vit.main([*argv, "--out-dir", str(out_dir)])
    assert exit_info.value.code == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("INFO ")]
    assert len(err) == 1 and err[0].startswith(PROG), err
    assert not out_dir.exists(), f"{argv} wrote to --out-dir"
    return err[0].removeprefix(PROG)


@pytest.mark.parametrize("argv,message", [
    (["--img-size", "0"], "--img-size: must be a positive whole number, got 0"),
    (["--batch-size", "0"], "--batch-size: must be a positive whole number, got 0"),
    (["--batch-size", "-4"], "--batch-size: must be a positive whole number, got -4"),
    (["--epochs", "0"], "--epochs: must be a positive whole number, got 0"),
    (["--max-steps", "-2"], "--max-steps: must be a positive whole number (or -1: no limit), got -2"),
    (["--max-steps", "0"], "--max-steps: must be a positive whole number (or -1: no limit), got 0"),
    (["--num-workers", "-1"], "--num-workers: must be >= 0, got -1"),
    (["--max-minutes", "-5"], "--max-minutes: must be >= 0 (0: no time budget), got -5"),
    (["--ckpt-every-steps", "0"], "--ckpt-every-steps: must be a positive whole number, got 0"),
    (["--ckpt-every-minutes", "0"], "--ckpt-every-minutes: must be > 0, got 0"),
    (["--layer-decay", "1.5"], "--layer-decay: must be in (0, 1], got 1.5"),
    (["--init-from", "a.ckpt", "--ckpt-path", "b.ckpt"], "--init-from, --ckpt-path: exclude each other"),
])
def test_flag_errors(argv, message, tmp_path, capsys, no_model):
    assert _error(argv, capsys, tmp_path / "out").startswith(message)


def test_minus_one_max_steps_is_no_limit(capsys):
    train_vit.main(["--max-steps", "-1", "--print-config"])
    assert yaml.safe_load(capsys.readouterr().out)["trainer"]["max_steps"] == -1


def _write_bad(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.mark.parametrize("layout,named,message", [
    ("missing", "", "no such folder"),
    ("a_file", "", "not a folder"),
    ("empty", "", "empty"),
    ("no_class_folders", "", "no class sub-folders"),
    ("class_without_images", "cats", "class folder with no images"),
    ("only_corrupt_images", "cats", "no readable image in this class folder"),
])
def test_data_errors(layout, named, message, photos, tmp_path, capsys, no_model):
    root = tmp_path / "data"
    if layout == "a_file":
        _write_bad(root, b"not a folder")
    elif layout == "empty":
        root.mkdir()
    elif layout == "no_class_folders":
        _write_bad(root / "a.png", (photos / "red_car" / "0.png").read_bytes())
    elif layout == "class_without_images":
        make_photo_folder(root, per_class=2)
        _write_bad(root / "cats" / "notes.txt", b"no images here")
    elif layout == "only_corrupt_images":
        make_photo_folder(root, per_class=2)
        _write_bad(root / "cats" / "broken.jpg", b"\xff\xd8\xff\xe0 truncated")
    error = _error(["--data", str(root)], capsys, tmp_path / "out")
    assert error.startswith(f"--data: {root / named if named else root}: {message}"), error


def test_checkpoint_files(photos, tmp_path, capsys, no_model):
    bad = tmp_path / "notes.ckpt"
    bad.write_text("not a checkpoint\n")
    weights_only = tmp_path / "weights.ckpt"
    torch.save({"x": torch.zeros(2)}, weights_only)
    out = tmp_path / "out"
    data = ["--data", str(photos)]
    assert _error([*data, "--pretrained", str(tmp_path / "nope.pth")], capsys, out).startswith(
        f"--pretrained: {tmp_path / 'nope.pth'}: no such checkpoint file")
    assert _error([*data, "--ckpt-path", str(tmp_path / "nope.ckpt")], capsys, out).startswith(
        f"--ckpt-path: no checkpoint at {tmp_path / 'nope.ckpt'}")
    assert _error([*data, "--ckpt-path", "last"], capsys, out).startswith(
        f"--ckpt-path last: no last*.ckpt in {out / 'checkpoints'}")
    assert _error([*data, "--ckpt-path", str(bad)], capsys, out).startswith(f"--ckpt-path: {bad}: not a checkpoint")
    assert _error([*data, "--init-from", str(bad)], capsys, out).startswith(f"--init-from: {bad}: not a checkpoint")
    assert _error([*data, "--init-from", str(tmp_path / "nope.ckpt")], capsys, out).startswith(
        f"--init-from: {tmp_path / 'nope.ckpt'}: no checkpoint there")
    assert _error([*data, "--init-from", str(weights_only)], capsys, out).startswith(
        f"--init-from: {weights_only}: not a training checkpoint of longseq-train-vit (no state_dict)")


def test_config_errors(tmp_path, capsys, no_model):
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  name: [unclosed\n")
    assert _error(["--config", str(broken)], capsys, tmp_path / "out").startswith(f"{broken}:")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(yaml.safe_dump({"trainer": {"max_epoch": 3}}))
    error = _error(["--config", str(unknown)], capsys, tmp_path / "out")
    assert error.startswith(f"{unknown}:2: trainer.max_epoch: unknown key (did you mean 'max_epochs'?)"), error
    section = tmp_path / "section.yaml"
    section.write_text(yaml.safe_dump({"checkpoints": {"every_steps": 3}}))
    assert "unknown section 'checkpoints' (did you mean 'checkpoint'?)" in _error(
        ["--config", str(section)], capsys, tmp_path / "out")


def test_debug_shows_the_traceback(no_model):
    with pytest.raises(UserError, match="--img-size: must be a positive whole number"):
        train_vit.main(["--img-size", "0", "--debug"])


def _tiny_config() -> dict:
    """A one-block ViT on 32-pixel images: a run of a step or two takes seconds."""
    return {"model": {"name": "longseq_vit_digits", "patch_size": 16, "embed_dim": 16, "depth": 1, "num_heads": 2,
                      "window_size": 2, "global_blocks": [0]},
            "data": {"img_size": 32, "batch_size": 2, "num_workers": 0},
            "trainer": {"enable_progress_bar": False, "accelerator": "cpu"}}


def test_checkpoint_of_another_architecture(photos, tmp_path, capsys):
    """A --ckpt-path whose weights do not fit the configured model: refused before training."""
    config, tiny = tmp_path / "tiny.yaml", _tiny_config()
    config.write_text(yaml.safe_dump(tiny))
    first = tmp_path / "first"
    train_vit.main(["--config", str(config), "--data", str(photos), "--max-steps", "1", "--max-minutes", "0",
                    "--out-dir", str(first)])
    capsys.readouterr()
    last = first / "checkpoints" / "last.ckpt"
    wider = ["--config", str(config), "--data", str(photos), "--max-steps", "2", "--backbone", "longseq_vit_digits"]
    tiny["model"]["embed_dim"] = 32
    config.write_text(yaml.safe_dump(tiny))
    for flag in ("--ckpt-path", "--init-from"):
        error = _error([*wider, flag, str(last)], capsys, tmp_path / "out")
        assert error.startswith(f"{flag}: {last}: ") and "fit the configured model" in error, error


def test_resuming_a_finished_run_names_the_limit_it_reached(photos, tmp_path, capsys):
    """A run that already spent its steps (or epochs) would resume, stop at once and train
    nothing: refused, naming the limit; a larger limit resumes it."""
    config, tiny = tmp_path / "tiny.yaml", _tiny_config()
    config.write_text(yaml.safe_dump(tiny))
    out = tmp_path / "run"
    argv = ["--config", str(config), "--data", str(photos), "--max-minutes", "0", "--out-dir", str(out)]
    train_vit.main([*argv, "--max-steps", "1"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        train_vit.main([*argv, "--max-steps", "1", "--ckpt-path", "last"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "the run is finished (it ran 1 of trainer.max_steps 1 optimizer steps)" in error, error
    assert "--max-steps" in error
    train_vit.main([*argv, "--max-steps", "2", "--ckpt-path", "last"])
    assert '"steps": 2' in capsys.readouterr().out


def test_finished_reason_reads_steps_epochs_and_the_timer():
    from longseq.training.resume import finished_reason

    ckpt = {"global_step": 10, "loops": {"fit_loop": {"epoch_progress": {"current": {"completed": 2}}}},
            "callbacks": {"Timer": {"time_elapsed": {"train": 125.0}}}}
    assert finished_reason(ckpt, max_steps=10) == "it ran 10 of trainer.max_steps 10 optimizer steps"
    assert finished_reason(ckpt, max_steps=11, max_epochs=2) == "it ran 2 of trainer.max_epochs 2 epochs"
    assert finished_reason(ckpt, max_steps=-1, max_epochs=3, max_time={"minutes": 2}).startswith(
        "its training took 2.1 of trainer.max_time's 2 minutes")
    assert finished_reason(ckpt, max_steps=-1, max_epochs=3, max_time="00:00:03:00") is None
    assert finished_reason(ckpt, max_steps=-1, max_epochs=-1, max_time=None) is None

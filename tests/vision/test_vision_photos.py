"""Training on a folder of photos: the photo config chosen by --data, micro and macro
accuracy, the validation history. (The documented runs from a timm checkpoint, resumed and
started from a run's weights, are checked in test_vision_photos_doc.py.)"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

from vision.cli import train_vit
from vision.tasks.callbacks import ValidationHistory, epochs_done
from vision.tasks.classification import ImageClassificationTask

from .photo_data import make_photo_folder

ROOT = Path(__file__).resolve().parents[2]
PHOTO_YAML = ROOT / "configs" / "vision" / "train_vit_photos.yaml"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return make_photo_folder(tmp_path_factory.mktemp("photos"), per_class=5)


def _printed(argv: list[str], capsys) -> dict:
    train_vit.main([*argv, "--print-config"])
    return yaml.safe_load(capsys.readouterr().out)


def test_data_without_config_prints_the_photo_defaults(tmp_path, capsys):
    printed = _printed(["--data", str(tmp_path)], capsys)
    assert printed["model"] == {"name": "longseq_vit_small", "pretrained": None, "drop_path_rate": 0.1}
    data = printed["data"]
    assert data["img_size"] == 224 and data["scale"] == [0.08, 1.0] and data["crop_pct"] == 0.9
    assert data["interpolation"] == "bicubic" and data["mean"] == [0.5, 0.5, 0.5] and data["root"] == str(tmp_path)
    assert not {"train_size", "val_size", "cache_dir"} & set(data)
    assert printed["trainer"]["default_root_dir"] == "runs/train_vit_photos"
    assert _printed(["--data", str(tmp_path), "--pretrained", "w.pth"], capsys)["model"]["pretrained"] == "w.pth"


def test_explicit_config_wins_over_the_photo_default(tmp_path, capsys):
    digits = _printed(["--config", "configs/vision/train_vit.yaml", "--data", str(tmp_path)], capsys)
    assert digits["model"]["name"] == "longseq_vit_digits" and digits["data"]["root"] == str(tmp_path)
    assert _printed([], capsys)["model"]["name"] == "longseq_vit_digits"  # no --data: the digits default


def test_photo_config_without_a_folder_is_refused(capsys, monkeypatch):
    monkeypatch.setattr(train_vit, "run", lambda *a, **k: pytest.fail("ran without an image folder"))
    with pytest.raises(SystemExit) as info:
        train_vit.main(["--config", str(PHOTO_YAML)])
    assert info.value.code == 2 and "no image folder" in capsys.readouterr().err


def test_resume_and_init_from_refuse_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="no last"):
        train_vit.resolve_ckpt_path("last", tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_vit.resolve_ckpt_path(str(tmp_path / "x.ckpt"), tmp_path)
    with pytest.raises(SystemExit):
        train_vit.main(["--ckpt-path", "a", "--init-from", "b", "--data", str(tmp_path)])


class _Logits(torch.nn.Module):
    """A stand-in backbone whose 'images' are already the logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _validate(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    task = ImageClassificationTask(_Logits(), num_classes=logits.shape[1])
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    loader = DataLoader(TensorDataset(logits, labels), batch_size=len(labels))
    trainer.validate(task, dataloaders=loader, verbose=False)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def test_top1_is_micro_and_macro_is_logged_beside_it():
    # 8 images of class 0, all right; 1 of class 1, wrong; 1 of class 2, right.
    labels = torch.tensor([0] * 8 + [1, 2])
    predicted = torch.tensor([0] * 8 + [0, 2])
    logits = torch.nn.functional.one_hot(predicted, 3).float()
    metrics = _validate(logits, labels)
    assert metrics["val/top1"] == pytest.approx(9 / 10)  # images right / images
    assert metrics["val/top1_macro"] == pytest.approx((1 + 0 + 1) / 3)  # mean of per-class accuracies
    assert "val/top5" not in metrics  # 3 classes: every image is in its top 5


@pytest.mark.parametrize(("classes", "logged"), [(5, False), (6, True)])
def test_top5_only_with_more_than_five_classes(classes, logged):
    labels = torch.arange(classes)
    metrics = _validate(torch.randn(classes, classes), labels)
    assert ("val/top5" in metrics) is logged


def test_history_best_and_fractional_epochs():
    history = ValidationHistory()
    history.records = [{"epoch": 0.5, "step": 1, "val/top1": 0.4}, {"epoch": 1.0, "step": 2, "val/top1": 0.7},
                       {"epoch": 1.5, "step": 3, "val/top1": 0.6}]
    assert history.best()["step"] == 2 and history.last["step"] == 3
    assert history.best("val/top1", "min")["step"] == 1
    trainer = SimpleNamespace(num_training_batches=4, global_step=3, accumulate_grad_batches=2, current_epoch=1)
    assert epochs_done(trainer) == 1.5

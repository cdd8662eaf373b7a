"""torchvision detectors on the longseq pyramid, trained by the LightningModule."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

import vision  # noqa: F401  (registers the longseq_* timm models)
from vision.detection.dataset import YoloDetectionDataset, collate_detection
from vision.detection.lightning import DetectionModule, DetectionTask, YoloDataModule
from vision.detection.pyramid import MultiScaleBackbone
from vision.detection.torchvision_detectors import build_detector


def _batch(root: Path, split: str = "train", n: int = 2) -> tuple[list[torch.Tensor], list[dict]]:
    ds = YoloDetectionDataset(root, split, 10)
    return collate_detection([ds[i] for i in range(n)])


def test_dataset_items(tiny_digits_yaml: Path) -> None:
    ds = YoloDetectionDataset(tiny_digits_yaml.parent, "train", 10)
    assert len(ds) == 4 and ds.report.count == 0
    image, target = ds[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    boxes, labels = target["boxes"], target["labels"]
    assert boxes.shape == (len(labels), 4) and len(labels) >= 1
    assert (boxes[:, 2:] > boxes[:, :2]).all() and (boxes >= 0).all() and (boxes <= 64).all()
    assert ((labels >= 0) & (labels < 10)).all()


@pytest.mark.parametrize("kind", ["retinanet", "fcos"])
def test_single_stage_detectors_give_losses_and_detections(kind: str, tiny_digits_yaml: Path) -> None:
    torch.manual_seed(0)
    det = build_detector(kind, MultiScaleBackbone("test_vit", channels=(16, 16, 16)), 10, image_size=64, fpn_channels=32)
    images, targets = _batch(tiny_digits_yaml.parent)
    losses = det.train()(images, targets)
    assert set(losses) >= {"classification", "bbox_regression"}
    assert all(torch.isfinite(v) for v in losses.values())
    with torch.no_grad():
        out = det.eval()(images)
    assert len(out) == 2 and all(((o["labels"] >= 0) & (o["labels"] < 10)).all() for o in out)


def test_fasterrcnn_trains_two_steps_and_reloads(tmp_path: Path, tiny_digits_yaml: Path) -> None:
    torch.manual_seed(0)
    backbone = MultiScaleBackbone("longseq_vit_tiny", channels=(32, 32, 32))
    assert DetectionModule is DetectionTask  # the former name still imports
    module = DetectionTask(backbone, num_classes=10, detector="fasterrcnn", image_size=64, fpn_channels=32, lr=1e-3)
    before = {k: v.detach().clone() for k, v in module.state_dict().items()}
    dm = YoloDataModule(str(tiny_digits_yaml), batch_size=2)
    trainer = L.Trainer(
        max_steps=2,
        accelerator="cpu",
        devices=1,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 2
    m = trainer.callback_metrics
    assert torch.isfinite(m["train/loss"]) and {"val/map", "val/map_50"} <= set(m)
    assert 0.0 <= float(m["val/map_50"]) <= 1.0 or float(m["val/map_50"]) == -1.0
    after = module.state_dict()
    changed = [k for k in before if before[k].dtype.is_floating_point and not torch.equal(before[k], after[k])]
    assert any(k.startswith("model.detector.backbone.body.body.") for k in changed)  # the longseq ViT learned
    assert any(k.startswith("model.detector.roi_heads.") for k in changed)

    ckpt = tmp_path / "det.ckpt"
    trainer.save_checkpoint(ckpt)
    fresh = MultiScaleBackbone("longseq_vit_tiny", channels=(32, 32, 32))
    loaded = DetectionTask.load_from_checkpoint(ckpt, backbone=fresh)
    assert loaded.hparams.detector == "fasterrcnn" and loaded.hparams.image_size == 64
    images, _ = _batch(tiny_digits_yaml.parent, "val", 1)
    module.eval()
    loaded.eval()
    with torch.no_grad():
        a, b = module(images)[0], loaded(images)[0]
    torch.testing.assert_close(a["boxes"], b["boxes"])
    torch.testing.assert_close(a["scores"], b["scores"])
    assert (a["labels"] < 10).all()


def test_bad_detector_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        build_detector("yolo", MultiScaleBackbone("test_vit", channels=(8, 8, 8)), 10)  # type: ignore[arg-type]

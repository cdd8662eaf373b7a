"""Lightning training for the torchvision detectors: a LightningModule and a data module."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader
from torchmetrics.detection import MeanAveragePrecision

from longseq.schedules import time_budget_fraction, time_budget_seconds, warmup_cosine
from vision.data.datamodules import shuffled_loader
from vision.detection.dataset import YoloDetectionDataset, collate_detection
from vision.detection.generate import make_scattered_digits_yolo
from vision.detection.pyramid import MultiScaleBackbone
from vision.detection.torchvision_detectors import DetectorKind, build_detector
from vision.detection.yolo_format import load_data_yaml

__all__ = ["DetectionTask", "DetectionModule", "YoloDataModule"]

log = logging.getLogger(__name__)


class DetectionTask(L.LightningModule):
    """Trains a torchvision detector built around ``backbone``; validates with COCO mAP.

    Args:
        backbone: the multi-scale backbone; or None with ``backbone_spec``, from which it is
            built. A task built with a spec reloads alone: ``load_from_checkpoint(path)``
            (``train_detector.py`` saves one); otherwise pass the backbone again:
            ``load_from_checkpoint(path, backbone=...)``.
        backbone_spec: ``MultiScaleBackbone`` keywords with a timm name, ``{"model":
            "longseq_vit_tiny", "channels": [...], ...}``; saved in the hyperparameters.
        class_names: the object classes in label order, saved so predictions can be named.
        num_classes: object classes (background excluded).
        detector: ``"fasterrcnn"``, ``"retinanet"`` or ``"fcos"``.
        image_size: training canvas side (torchvision's transform then resizes nothing).
        fpn_channels: FPN width.
        lr, weight_decay: AdamW settings; cosine decay to zero at the end of the trainer's
            estimated steps or of its ``max_time``, whichever comes first (a run with no
            epoch limit under a time budget decays by the clock alone).

    Logs ``train/loss`` (and each loss term) and ``val/map``, ``val/map_50``, ``val/map_75``.
    """

    def __init__(
        self,
        backbone: MultiScaleBackbone | None = None,
        num_classes: int = 10,
        detector: DetectorKind = "fasterrcnn",
        image_size: int = 1024,
        fpn_channels: int = 128,
        lr: float = 1e-4,
        weight_decay: float = 0.05,
        backbone_spec: dict[str, Any] | None = None,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        if backbone is None:
            if not backbone_spec:
                raise ValueError("DetectionTask needs a backbone, or a backbone_spec to build it from "
                                 "(load_from_checkpoint(path, backbone=...) for a checkpoint saved without one)")
            backbone = MultiScaleBackbone(**backbone_spec)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names for num_classes={num_classes}")
        self.save_hyperparameters(ignore=["backbone"])
        self.model = build_detector(detector, backbone, num_classes, image_size, fpn_channels)
        self.val_map = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """images: list of (3, H, W) in [0, 1] -> per image ``{"boxes" (N, 4), "labels" (N,), "scores" (N,)}``."""
        return self.model(images)

    def training_step(self, batch: tuple[list[torch.Tensor], list[dict]], batch_idx: int) -> torch.Tensor:
        images, targets = batch
        losses = self.model(images, targets)
        loss = sum(losses.values())
        bs = len(images)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for k, v in losses.items():
            self.log(f"train/{k}", v, batch_size=bs)
        return loss

    def validation_step(self, batch: tuple[list[torch.Tensor], list[dict]], batch_idx: int) -> None:
        images, targets = batch
        self.val_map.update(self.model(images), targets)

    def on_validation_epoch_end(self) -> None:
        res = self.val_map.compute()
        for k in ("map", "map_50", "map_75"):
            self.log(f"val/{k}", res[k], prog_bar=k == "map_50")
        self.val_map.reset()

    def _time_fraction(self) -> float:
        """The share of ``max_time`` spent (:func:`longseq.schedules.time_budget_fraction`), the
        first process's on every process: replicas stepping with learning rates read from
        slightly different clocks would drift apart."""
        trainer = self._trainer
        fraction = time_budget_fraction(trainer)
        if trainer is not None and trainer.world_size > 1 and time_budget_seconds(trainer) is not None:
            fraction = float(trainer.strategy.broadcast(fraction, src=0))
        return fraction

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        estimate = self.trainer.estimated_stepping_batches  # inf: no epoch or step limit, the clock decides
        steps = max(int(estimate), 1) if math.isfinite(estimate) else None

        def schedule(step: int) -> float:
            return warmup_cosine(step, 0, steps, 0.0, self._time_fraction())

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Runs saved with a ``CosineAnnealingLR`` resume on the ``LambdaLR`` schedule: their
        scheduler state has no ``lr_lambdas``, which ``LambdaLR.load_state_dict`` requires
        (its step count carries over, and the schedule continues from it)."""
        for state in checkpoint.get("lr_schedulers") or []:
            state.setdefault("lr_lambdas", [None] * len(state.get("base_lrs") or [None]))


#: The name this class had before the ``*Task`` naming of LightningModules; kept for imports.
DetectionModule = DetectionTask


class YoloDataModule(L.LightningDataModule):
    """A YOLO-format data set (``data_yaml``), or the scattered-digits default generated
    on first use in ``prepare_data``.

    Args:
        data_yaml: path to a ``data.yaml``; None generates the default data set.
        img_size, n_train, n_val, seed: settings of the generated default.
        batch_size, num_workers: DataLoader settings.
    """

    def __init__(
        self,
        data_yaml: str | None = None,
        img_size: int = 1024,
        n_train: int = 512,
        n_val: int = 64,
        seed: int = 0,
        batch_size: int = 2,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.data_yaml: Path | None = Path(data_yaml) if data_yaml else None
        self.train_set: YoloDetectionDataset | None = None
        self.val_set: YoloDetectionDataset | None = None

    def prepare_data(self) -> None:
        if self.data_yaml is None:
            h = self.hparams
            self.data_yaml = make_scattered_digits_yolo(
                img_size=h.img_size, n_train=h.n_train, n_val=h.n_val, seed=h.seed
            )

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None and self.val_set is not None:
            return  # scanned already (a command checks the data before building the model): not twice
        if self.data_yaml is None:  # prepare_data ran in another process (multi-device)
            self.prepare_data()
        data = load_data_yaml(self.data_yaml)
        names = data["names"]
        self.class_names = [str(n) for n in (names.values() if isinstance(names, dict) else names)]
        self.num_classes = len(self.class_names)
        self.train_set = YoloDetectionDataset.from_data(data, "train")
        self.val_set = YoloDetectionDataset.from_data(data, "val")

    def _loader(self, ds: YoloDetectionDataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            num_workers=self.hparams.num_workers,
            collate_fn=collate_detection,
        )

    def train_dataloader(self) -> DataLoader:
        # every image, in an order a resumed run continues exactly (drop_last off: small sets)
        return shuffled_loader(self.train_set, trainer=getattr(self, "trainer", None),
                               batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers,
                               collate_fn=collate_detection, drop_last=False)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

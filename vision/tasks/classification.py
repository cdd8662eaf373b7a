"""Image classification with any backbone (Lightning)."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import ConfusionMatrix
from torchmetrics.classification import MulticlassAccuracy

from longseq.schedules import time_budget_fraction, warmup_cosine

__all__ = ["ImageClassificationTask", "ImageClassifier"]

log = logging.getLogger(__name__)


class ImageClassificationTask(L.LightningModule):
    """Cross-entropy training of ``backbone`` (any ``nn.Module`` mapping images to logits).

    Args:
        backbone: ``(B, 3, H, W) -> (B, num_classes)``. Not saved in hparams; when None it
            is rebuilt with ``timm.create_model(backbone_name, num_classes=num_classes,
            **backbone_kwargs)``, so a checkpoint of a timm backbone reloads with
            ``ImageClassificationTask.load_from_checkpoint(path)`` alone.
        num_classes: number of classes.
        backbone_name, backbone_kwargs: how to rebuild a timm backbone (see above).
        lr, weight_decay: AdamW settings; ``warmup_steps`` of linear warm-up, then cosine
            decay to ``min_lr_ratio * lr`` over ``total_steps`` (the Trainer's estimate
            when None) or over the Trainer's ``max_time``, whichever ends first
            (:func:`longseq.schedules.warmup_cosine`).
        label_smoothing: cross-entropy label smoothing.
        classes: class names for the confusion-matrix plot.
        confusion_dir: where ``confusion_epoch{N}.png`` is written at the end of each
            validation (the logger's folder when None; no plot when no folder is known).
    """

    def __init__(
        self,
        backbone: nn.Module | None = None,
        num_classes: int = 10,
        backbone_name: str | None = None,
        backbone_kwargs: dict | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_steps: int = 100,
        total_steps: int | None = None,
        min_lr_ratio: float = 0.05,
        label_smoothing: float = 0.0,
        classes: list[str] | None = None,
        confusion_dir: str | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if classes is not None and len(classes) != num_classes:
            raise ValueError(f"classes has {len(classes)} names but num_classes is {num_classes}")
        self.save_hyperparameters(ignore=["backbone"])
        if backbone is None:
            if backbone_name is None:
                raise ValueError("pass a backbone module, or backbone_name to build one with timm")
            import timm

            import vision  # noqa: F401  (registers the longseq backbones with timm)

            backbone = timm.create_model(backbone_name, pretrained=False, num_classes=num_classes,
                                         **(backbone_kwargs or {}))
        self.backbone = backbone
        self.train_top1 = MulticlassAccuracy(num_classes, top_k=1)
        self.val_top1 = MulticlassAccuracy(num_classes, top_k=1)
        self.val_top5 = MulticlassAccuracy(num_classes, top_k=min(5, num_classes))
        self.val_confusion = ConfusionMatrix(task="multiclass", num_classes=num_classes)
        self.last_confusion_png: Path | None = None

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W)`` -> logits ``(B, num_classes)``."""
        return self.backbone(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
        self.train_top1(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/top1", self.train_top1, prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val/loss", F.cross_entropy(logits, y), prog_bar=True, sync_dist=True)
        self.val_top1(logits, y)
        self.val_top5(logits, y)
        self.val_confusion(logits, y)
        self.log("val/top1", self.val_top1, prog_bar=True)
        self.log("val/top5", self.val_top5)

    def on_validation_epoch_end(self) -> None:
        matrix = self.val_confusion.compute()
        self.val_confusion.reset()
        folder = self.hparams.confusion_dir or (self.logger.log_dir if self.logger is not None else None)
        if folder is None or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        classes = self.hparams.classes or [str(i) for i in range(self.hparams.num_classes)]
        self.last_confusion_png = self._save_confusion(
            matrix, classes, Path(folder) / f"confusion_epoch{self.current_epoch}.png",
            title=f"validation, epoch {self.current_epoch}",
        )

    def _save_confusion(self, matrix: Tensor, classes: list[str], path: Path, title: str) -> Path:
        """Write the ``(C, C)`` confusion matrix (rows = truth, columns = prediction) as a PNG,
        drawn by torchmetrics on a figure of its own (no pyplot state, no display needed)."""
        from matplotlib.figure import Figure

        side = max(4.0, 0.5 * len(classes) + 2)
        fig = Figure(figsize=(side, side))
        ax = fig.subplots()
        # Counts in the cells stay legible up to ~30 classes.
        self.val_confusion.plot(val=matrix.detach().cpu(), ax=ax, add_text=len(classes) <= 30, labels=classes,
                                cmap="Blues")
        ax.set_title(title)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        return path

    def configure_optimizers(self):
        hp = self.hparams
        # No weight decay on norms, biases and relative-position tables, as in timm.
        decay, no_decay = [], []
        for name, p in self.backbone.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 or name.endswith("table") else decay).append(p)
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=hp.lr
        )
        total = hp.total_steps or int(self.trainer.estimated_stepping_batches)
        warmup = min(hp.warmup_steps, max(total // 10, 1))

        def schedule(step: int) -> float:
            # Annealing also follows Trainer(max_time): a clock-stopped run still ends decayed.
            return warmup_cosine(step, warmup, total, hp.min_lr_ratio, time_budget_fraction(self._trainer))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


#: The name this class had before the ``*Task`` naming of LightningModules; kept for imports.
ImageClassifier = ImageClassificationTask

"""Sequence classification and per-base annotation as LightningModules."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC, MulticlassMatthewsCorrCoef

from genomics.data.datasets import IGNORE_INDEX
from genomics.models.classifier import DNAClassifier
from genomics.tasks.base import DNATask

__all__ = ["ClassificationTask", "AnnotationTask"]



def _cls_metrics(num_classes: int) -> MetricCollection:
    return MetricCollection({
        "acc": MulticlassAccuracy(num_classes, average="micro", ignore_index=IGNORE_INDEX),
        "mcc": MulticlassMatthewsCorrCoef(num_classes, ignore_index=IGNORE_INDEX),
        # binned AUROC: memory stays bounded over million-base annotation windows
        "auroc": MulticlassAUROC(num_classes, thresholds=200, ignore_index=IGNORE_INDEX),
    })


class ClassificationTask(DNATask):
    """Sequence classification with loss, accuracy, MCC and AUROC."""

    model_class = DNAClassifier

    def __init__(
        self,
        backbone: DNAClassifier | None = None,
        model_config: dict[str, Any] | None = None,
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_steps: int = 50,
        max_steps: int | None = None,
    ) -> None:
        super().__init__(backbone, model_config, lr, weight_decay, warmup_steps, max_steps)
        self.save_hyperparameters(ignore=["backbone"])
        self._save_hparams()
        c = self.backbone.num_classes
        self.val_metrics = _cls_metrics(c).clone(prefix="val/")
        self.test_metrics = _cls_metrics(c).clone(prefix="test/")

    def forward(self, input_ids: Tensor, mask: Tensor | None = None, query_index: Tensor | None = None) -> Tensor:
        return self.backbone(input_ids, mask, query_index)

    def _targets(self, batch: dict[str, Tensor]) -> Tensor:
        return batch["label"]

    def _step(self, batch: dict[str, Tensor], split: str) -> Tensor:
        logits = self(batch["input_ids"], batch["mask"], batch.get("query_index"))
        targets = self._targets(batch)
        flat_logits, flat_t = logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1)
        loss = F.cross_entropy(flat_logits, flat_t, ignore_index=IGNORE_INDEX)
        keep = flat_t != IGNORE_INDEX
        n = max(int(keep.sum()), 1)
        on_step = split == "train"
        self.log(f"{split}/loss", loss.detach(), on_step=on_step, on_epoch=not on_step, prog_bar=True, batch_size=n)
        if not on_step:  # training logs the loss only: epoch metrics would hold every prediction
            metrics = getattr(self, f"{split}_metrics")
            metrics.update(flat_logits.detach()[keep].softmax(-1), flat_t[keep])
            self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._step(batch, "test")


class AnnotationTask(ClassificationTask):
    """Per-base labelling (``DNAClassifier(pool="none")``): labels (B, L), padding = -100."""

    def _targets(self, batch: dict[str, Tensor]) -> Tensor:
        return batch["labels"]

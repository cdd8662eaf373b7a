"""Sequence classification and per-base annotation as LightningModules."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from genomics.data.datasets import IGNORE_INDEX
from genomics.models.classifier import DNAClassifier
from genomics.models.inference import base_labels, class_probabilities
from genomics.tasks.base import DNATask
from genomics.tasks.metrics import PER_CLASS, eval_metrics, metric_results, safe_name

__all__ = ["BEST_BY", "best_mode", "ClassificationTask", "AnnotationTask"]

#: Validation metrics a run may pick its best checkpoint by (``best_by``): the loss is
#: minimised, the others maximised.
BEST_BY = ("loss", "mcc", "auroc", "acc", "f1_macro")


def best_mode(metric: str) -> str:
    """``"min"`` for a loss (``loss``, or the language model's ``bpb``), ``"max"`` for a score."""
    return "min" if metric in ("loss", "bpb") else "max"


class ClassificationTask(DNATask):
    """Sequence classification. Validation and test compute, over the whole split,
    accuracy, MCC, AUROC, macro-F1 and per-class F1 and recall
    (:func:`~genomics.tasks.metrics.eval_metrics`), logged as ``val/<name>`` and
    ``val/<name>/<class>`` and kept in ``eval_results[split]`` for the run summary.

    ``best_by`` names the validation metric (:data:`BEST_BY`) that picks the checkpoint a
    run keeps as its best and scores at the end: ``"loss"`` (lowest) or a metric (highest)."""

    model_class = DNAClassifier
    task_name = "classification"
    #: Exact AUROC over sequences; per-base annotation bins it (bounded memory).
    auroc_thresholds: int | None = None

    def __init__(
        self,
        backbone: DNAClassifier | None = None,
        model_config: dict[str, Any] | None = None,
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_steps: int = 50,
        max_steps: int | None = None,
        best_by: str = "loss",
    ) -> None:
        if best_by not in BEST_BY:
            raise ValueError(f"best_by must be one of {', '.join(BEST_BY)}, got {best_by!r}")
        super().__init__(backbone, model_config, lr, weight_decay, warmup_steps, max_steps)
        self.best_by = best_by
        self.save_hyperparameters(ignore=["backbone"])
        self._save_hparams()
        c = self.backbone.num_classes
        self.val_metrics = eval_metrics(c, auroc_thresholds=self.auroc_thresholds)
        self.test_metrics = eval_metrics(c, auroc_thresholds=self.auroc_thresholds)
        self._updates = {"val": 0, "test": 0}
        #: The metrics of the last validation / test pass (plain values), by split.
        self.eval_results: dict[str, dict[str, Any]] = {}

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
        if not on_step and bool(keep.any()):  # training logs the loss only
            getattr(self, f"{split}_metrics").update(flat_logits.detach()[keep].softmax(-1), flat_t[keep])
            self._updates[split] += 1
        return loss

    def _class_names(self) -> list[str]:
        names = getattr(getattr(self._trainer, "datamodule", None), "class_names", None) if self._trainer else None
        c = self.backbone.num_classes
        return [str(n) for n in names] if names is not None and len(names) == c else [str(i) for i in range(c)]

    def _log_eval(self, split: str) -> None:
        """Compute the split's metrics over the whole pass, log them, keep them in ``eval_results``."""
        metrics = getattr(self, f"{split}_metrics")
        if not self._updates[split]:
            return
        names = self._class_names()
        results = metric_results(metrics.compute(), names)
        metrics.reset()
        self._updates[split] = 0
        for key, value in results.items():
            if key in PER_CLASS:
                for name, v in value.items():
                    if v is not None:
                        self.log(f"{split}/{key}/{safe_name(name)}", v)
            elif isinstance(value, float):
                self.log(f"{split}/{key}", value)
        self.eval_results[split] = results

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Class probabilities (B, C), rows summing to 1 (``Trainer.predict``)."""
        return class_probabilities(self.backbone, batch["input_ids"], batch.get("mask"), batch.get("query_index"))


class AnnotationTask(ClassificationTask):
    """Per-base labelling (``DNAClassifier(pool="none")``): labels (B, L), padding = -100."""

    task_name = "annotation"
    auroc_thresholds = 200  # binned: memory stays bounded over million-base windows

    def _targets(self, batch: dict[str, Tensor]) -> Tensor:
        return batch["labels"]

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Arg-max class per base (B, L) int64, -100 at padding (``Trainer.predict``)."""
        return base_labels(self.backbone, batch["input_ids"], batch.get("mask"))

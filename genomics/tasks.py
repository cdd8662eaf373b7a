"""LightningModules for DNA: language modelling, sequence classification, per-base annotation.

Each receives its backbone (a :mod:`genomics.models` module) as an argument and saves
hyper-parameters without it, plus the backbone's ``config`` so ``load_from_checkpoint``
rebuilds the model from a local checkpoint alone.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassMatthewsCorrCoef,
)

from longseq.schedules import time_budget_fraction, warmup_cosine

from genomics.datasets import IGNORE_INDEX
from genomics.models import DNAClassifier, DNALanguageModel
from genomics.tokenizers import MASK, NUM_BASES, is_unknown

__all__ = ["LanguageModelTask", "ClassificationTask", "AnnotationTask"]

_LN2 = math.log(2.0)


class _Task(L.LightningModule):
    """Shared optimiser: AdamW, linear warm-up, cosine decay to 10% over ``max_steps`` or ``max_time``."""

    model_class: type[nn.Module]

    def __init__(self, backbone: nn.Module | None, model_config: dict[str, Any] | None, lr: float,
                 weight_decay: float, warmup_steps: int, max_steps: int | None) -> None:
        super().__init__()
        if backbone is None:
            if model_config is None:
                raise ValueError("give backbone or model_config")
            backbone = self.model_class(**model_config)
        self.backbone = backbone

    def _save_hparams(self) -> None:
        """Called by subclasses after ``save_hyperparameters``: the backbone's config rides along."""
        if self.hparams.get("model_config") is None:
            self.hparams["model_config"] = dict(getattr(self.backbone, "config", {}))

    def configure_optimizers(self):
        h = self.hparams
        decay = [p for n, p in self.named_parameters() if p.ndim >= 2 and "embed" not in n]
        other = [p for n, p in self.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": h.weight_decay},
                                 {"params": other, "weight_decay": 0.0}], lr=h.lr, betas=(0.9, 0.95))
        total = h.max_steps or self.trainer.estimated_stepping_batches
        warm = max(1, min(h.warmup_steps, int(total) // 2 if total else h.warmup_steps))

        def schedule(step: int) -> float:
            return warmup_cosine(step, warm, int(total) if total else None, 0.1, time_budget_fraction(self._trainer))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class LanguageModelTask(_Task):
    """Causal or masked LM over nucleotides with loss, bits per base, perplexity, accuracy.

    Only A/C/G/T targets count (N and padding are ignored), so bits per base compares
    directly with :class:`genomics.markov.MarkovModel`. Masked LM hides ``mask_prob`` of
    the bases (replaced by [MASK]) and scores those.
    """

    model_class = DNALanguageModel

    def __init__(
        self,
        backbone: DNALanguageModel | None = None,
        model_config: dict[str, Any] | None = None,
        *,
        lr: float = 2e-3,
        weight_decay: float = 0.1,
        warmup_steps: int = 100,
        max_steps: int | None = None,
        mask_prob: float = 0.15,
    ) -> None:
        super().__init__(backbone, model_config, lr, weight_decay, warmup_steps, max_steps)
        self.save_hyperparameters(ignore=["backbone"])
        self._save_hparams()
        vocab = self.backbone.vocab_size
        for split in ("val", "test"):  # training logs the step loss only
            setattr(self, f"{split}_loss", MeanMetric())
            setattr(self, f"{split}_acc", MulticlassAccuracy(vocab, average="micro", ignore_index=IGNORE_INDEX))

    def forward(self, input_ids: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.backbone(input_ids, mask)

    def _inputs_targets(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        ids, mask = batch["input_ids"], batch["mask"]
        base = mask & (ids < NUM_BASES) & ~is_unknown(ids)
        if self.backbone.objective == "causal":
            targets = torch.where(base, ids, IGNORE_INDEX)[:, 1:]
            return ids, mask, F.pad(targets, (0, 1), value=IGNORE_INDEX)  # logits at i predict i + 1
        hide = base & (torch.rand(ids.shape, device=ids.device) < self.hparams.mask_prob)
        if not self.training:  # fixed masking for comparable validation numbers
            g = torch.Generator(device="cpu").manual_seed(0)
            hide = base & (torch.rand(ids.shape, generator=g).to(ids.device) < self.hparams.mask_prob)
        return torch.where(hide, MASK, ids), mask, torch.where(hide, ids, IGNORE_INDEX)

    def _step(self, batch: dict[str, Tensor], split: str) -> Tensor:
        inputs, mask, targets = self._inputs_targets(batch)
        logits = self(inputs, mask)  # B, L, V
        flat_t = targets.reshape(-1)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), flat_t, ignore_index=IGNORE_INDEX)
        n = int((flat_t != IGNORE_INDEX).sum())
        if n == 0:  # nothing to score (all N or padding): a zero loss that keeps the graph
            loss = logits.sum() * 0.0
        if split == "train":
            self.log("train/loss", loss.detach(), prog_bar=True, batch_size=max(n, 1))
            self.log("train/bpb", loss.detach() / _LN2, batch_size=max(n, 1))
            return loss
        loss_metric, acc = getattr(self, f"{split}_loss"), getattr(self, f"{split}_acc")
        if n:  # token-weighted mean over the whole split
            loss_metric.update(loss.detach(), weight=n)
            acc.update(logits.detach().reshape(-1, logits.shape[-1]), flat_t)
        self.log(f"{split}/loss", loss_metric, on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{split}/acc", acc, on_step=False, on_epoch=True)
        return loss

    def _log_derived(self, split: str) -> None:
        loss_metric = getattr(self, f"{split}_loss")
        if loss_metric.update_count:
            mean = float(loss_metric.compute())
            self.log(f"{split}/bpb", mean / _LN2, prog_bar=True)
            self.log(f"{split}/ppl", math.exp(min(mean, 50.0)))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_derived("val")

    def on_test_epoch_end(self) -> None:
        self._log_derived("test")


def _cls_metrics(num_classes: int) -> MetricCollection:
    return MetricCollection({
        "acc": MulticlassAccuracy(num_classes, average="micro", ignore_index=IGNORE_INDEX),
        "mcc": MulticlassMatthewsCorrCoef(num_classes, ignore_index=IGNORE_INDEX),
        # binned AUROC: memory stays bounded over million-base annotation windows
        "auroc": MulticlassAUROC(num_classes, thresholds=200, ignore_index=IGNORE_INDEX),
    })


class ClassificationTask(_Task):
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

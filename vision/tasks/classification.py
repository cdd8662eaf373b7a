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

__all__ = ["ImageClassificationTask", "ImageClassifier", "TOP_K"]

log = logging.getLogger(__name__)

#: Top-k accuracies logged beside top-1, each only with more than k classes.
TOP_K = (5,)


class ImageClassificationTask(L.LightningModule):
    """Cross-entropy training of ``backbone`` (any ``nn.Module`` mapping images to logits).

    Args:
        backbone: ``(B, 3, H, W) -> (B, num_classes)``. Not saved in hparams; when None it
            is rebuilt with ``timm.create_model(backbone_name, num_classes=num_classes,
            **backbone_kwargs)``, so a checkpoint of a timm backbone reloads with
            ``ImageClassificationTask.load_from_checkpoint(path)`` alone.
        num_classes: number of classes.
        backbone_name, backbone_kwargs: how to rebuild a timm backbone (see above).
        lr, weight_decay: AdamW settings (no decay on norms, biases, and what the backbone's
            ``no_weight_decay()`` names: position tables, class tokens); ``warmup_steps`` of linear warm-up, then cosine
            decay to ``min_lr_ratio * lr`` over ``total_steps`` (the Trainer's estimate
            when None) or over the Trainer's ``max_time``, whichever ends first
            (:func:`longseq.schedules.warmup_cosine`).
        label_smoothing: cross-entropy label smoothing.
        layer_decay: layer-wise learning-rate decay for fine-tuning a pretrained backbone
            (BEiT, ViTDet): the rate of a parameter group ``d`` groups below the top is
            ``lr * layer_decay**d`` (timm's ``param_groups_layer_decay``, grouped by the
            backbone's ``group_matcher``; the head keeps ``lr``). None: one rate for all.
        classes: class names for the confusion-matrix plot.

    Logged metrics: ``train/loss``, ``train/top1``, ``val/loss``, ``val/top1`` (micro:
    images classified right / images), ``val/top1_macro`` (the mean of per-class
    accuracies, which weighs a rare class as much as a common one) and ``val/top5`` where
    there are more than 5 classes (a top-k over k or fewer classes is always 1).
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
        layer_decay: float | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if classes is not None and len(classes) != num_classes:
            raise ValueError(f"classes has {len(classes)} names but num_classes is {num_classes}")
        if layer_decay is not None and not 0.0 < layer_decay <= 1.0:
            raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
        self.save_hyperparameters(ignore=["backbone"])
        if backbone is None:
            if backbone_name is None:
                raise ValueError("pass a backbone module, or backbone_name to build one with timm")
            import timm

            import vision  # noqa: F401  (registers the longseq backbones with timm)

            backbone = timm.create_model(backbone_name, pretrained=False, num_classes=num_classes,
                                         **(backbone_kwargs or {}))
        self.backbone = backbone
        self.train_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_top1_macro = MulticlassAccuracy(num_classes, top_k=1, average="macro")
        #: ``val/top{k}`` metrics, for the k below the class count.
        self.val_topk = nn.ModuleDict({f"top{k}": MulticlassAccuracy(num_classes, top_k=k, average="micro")
                                       for k in TOP_K if k < num_classes})
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
        self.val_top1_macro(logits, y)
        self.val_confusion(logits, y)
        self.log("val/top1", self.val_top1, prog_bar=True)
        self.log("val/top1_macro", self.val_top1_macro)
        for name, metric in self.val_topk.items():
            metric(logits, y)
            self.log(f"val/{name}", metric)

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
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.tick_params(axis="x", labelrotation=90 if max(map(len, classes), default=0) > 3 else 0)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, bbox_inches="tight")  # long class names stay inside the image
        return path

    def parameter_groups(self) -> list[dict]:
        """AdamW parameter groups: decayed and undecayed, and with ``layer_decay`` one pair
        per depth, each with its own ``lr``."""
        hp = self.hparams
        named = getattr(self.backbone, "no_weight_decay", None)
        no_decay_names = set(named()) if callable(named) else set()
        if hp.layer_decay is not None and hasattr(self.backbone, "group_matcher"):
            from timm.optim import param_groups_layer_decay

            groups = param_groups_layer_decay(self.backbone, hp.weight_decay, no_weight_decay_list=no_decay_names,
                                              layer_decay=hp.layer_decay)
            return [{**g, "lr": hp.lr * g.get("lr_scale", 1.0)} for g in groups]
        if hp.layer_decay is not None:
            log.warning("layer_decay=%s ignored: %s has no group_matcher", hp.layer_decay, type(self.backbone).__name__)
        # No weight decay on norms, biases, relative-position tables and the backbone's own list, as in timm.
        decay, no_decay = [], []
        for name, p in self.backbone.named_parameters():
            if p.requires_grad:
                undecayed = p.ndim <= 1 or name.endswith("table") or name in no_decay_names
                (no_decay if undecayed else decay).append(p)
        return [{"params": decay, "weight_decay": hp.weight_decay, "lr": hp.lr},
                {"params": no_decay, "weight_decay": 0.0, "lr": hp.lr}]

    def _time_fraction(self) -> float:
        """The share of ``max_time`` spent (:func:`longseq.schedules.time_budget_fraction`),
        the first process's on every process of a distributed run: each process's clock reads
        a little differently, and replicas stepping with different learning rates would drift
        apart. (Lightning's ``Timer`` broadcasts its stop decision the same way.)"""
        trainer = self._trainer
        fraction = time_budget_fraction(trainer)
        if trainer is not None and trainer.world_size > 1 and any(
                hasattr(c, "time_remaining") and c.time_remaining() is not None for c in trainer.callbacks):
            fraction = float(trainer.strategy.broadcast(fraction, src=0))
        return fraction

    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.AdamW(self.parameter_groups(), lr=hp.lr)
        total = hp.total_steps or int(self.trainer.estimated_stepping_batches)
        warmup = min(hp.warmup_steps, max(total // 10, 1))

        def schedule(step: int) -> float:
            # Annealing also follows Trainer(max_time): a clock-stopped run still ends decayed.
            return warmup_cosine(step, warmup, total, hp.min_lr_ratio, self._time_fraction())

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


#: The name this class had before the ``*Task`` naming of LightningModules; kept for imports.
ImageClassifier = ImageClassificationTask

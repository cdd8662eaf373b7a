"""Nucleotide language modelling (causal or masked) as a LightningModule."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from genomics.data.datasets import IGNORE_INDEX
from genomics.data.tokenizers import MASK, NUM_BASES, is_unknown
from genomics.models.inference import base_bits
from genomics.models.language_model import DNALanguageModel
from genomics.tasks.base import DNATask

__all__ = ["LanguageModelTask"]

_LN2 = math.log(2.0)


class LanguageModelTask(DNATask):
    """Causal or masked LM over nucleotides with loss, bits per base, perplexity, accuracy.

    Only A/C/G/T targets count (N and padding are ignored), so bits per base compares
    directly with :class:`genomics.baselines.MarkovModel`. Masked LM hides ``mask_prob`` of
    the bases (replaced by [MASK]) and scores those.
    """

    model_class = DNALanguageModel
    task_name = "lm"

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
            if "next_ids" in batch:  # a slice of a split window: the next bases come with it
                nxt, nxt_mask = batch["next_ids"], batch["next_mask"]
                nxt_base = nxt_mask & (nxt < NUM_BASES) & ~is_unknown(nxt)
                return ids, mask, torch.where(mask & nxt_base, nxt, IGNORE_INDEX)
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
        if split == "train" and "window_targets" in batch:  # one slice of windows split over `slices` ranks
            loss = self._slice_loss(logits, flat_t, batch)
            self.log("train/loss", loss.detach(), prog_bar=True, batch_size=max(n, 1))
            return loss
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

    def _slice_loss(self, logits: Tensor, flat_t: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """This slice's share of the window loss, scaled for DDP's average over the ranks that
        split a window: ``slices * (sum of the slice's losses) / targets of the whole windows``.
        Averaged over the slices (as DDP averages gradients) it is the whole windows' mean loss. (The logged ``train/loss``
        is this share.)"""
        total = int(batch["window_targets"].sum())
        summed = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), flat_t, ignore_index=IGNORE_INDEX,
                                 reduction="sum")
        return summed * (float(batch["slices"]) / max(total, 1))

    def _log_derived(self, split: str) -> None:
        loss_metric = getattr(self, f"{split}_loss")
        if loss_metric.update_count:
            mean = float(loss_metric.compute())
            self.log(f"{split}/bpb", mean / _LN2, prog_bar=True)
            self.log(f"{split}/ppl", math.exp(min(mean, 50.0)))

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Per-base bits ``-log2 p(x_i | x_<i)`` (B, L) float32, NaN where unscored (first base, N,
        padding); causal models only (``Trainer.predict``)."""
        return base_bits(self.backbone, batch["input_ids"], batch.get("mask"))

    def on_validation_epoch_end(self) -> None:
        self._log_derived("val")

    def on_test_epoch_end(self) -> None:
        self._log_derived("test")

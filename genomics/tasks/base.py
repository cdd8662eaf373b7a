"""The optimiser and checkpoint plumbing shared by the DNA tasks.

A task receives its backbone (a :mod:`genomics.models` module) as an argument and saves
hyper-parameters without it, plus the backbone's ``config``, so ``load_from_checkpoint``
rebuilds the model from a local checkpoint alone.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from longseq.schedules import time_budget_fraction, warmup_cosine

__all__ = ["DNATask"]


class DNATask(L.LightningModule):
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

    def configure_optimizers(self) -> dict[str, Any]:
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

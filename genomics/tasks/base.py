"""The optimiser and checkpoint plumbing shared by the DNA tasks.

A task receives its backbone (a :mod:`genomics.models` module) as an argument and saves
hyper-parameters without it, plus the backbone's ``config``, so ``load_from_checkpoint``
rebuilds the model from a local checkpoint alone. Each checkpoint also carries a
:data:`~genomics.models.loading.RECORD_KEY` record (task name, class names, longest input
trained, the length schedule by epoch) that :func:`genomics.models.load_model` and a resumed
``longseq-train-dna`` read.
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
    #: The ``--task`` name written into checkpoints (the needle check reuses ClassificationTask).
    task_name: str = ""

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

    def on_train_batch_start(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Keep the longest input trained on, for the checkpoint record."""
        length = int(batch["input_ids"].shape[1])
        self._longest_train_input = max(getattr(self, "_longest_train_input", 0), length)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the task, the class names and the longest input trained (plain values only)."""
        from genomics.models.loading import RECORD_KEY

        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        task = self.task_name
        if type(datamodule).__name__ == "NeedleDataModule":
            task = "needle"
        names = getattr(datamodule, "class_names", None) or getattr(datamodule, "label_names", None)
        if not names and task == "annotation":
            from genomics.io.annotation import LABEL_NAMES

            names = LABEL_NAMES
        epochs = getattr(datamodule, "epochs", None) or []
        checkpoint[RECORD_KEY] = {
            "task": task,
            "class_names": [str(n) for n in names] if names else None,
            "longest_train_input": getattr(self, "_longest_train_input", None),
            # the length schedule, one [seq_len, batch_size, steps] per epoch: a resume must match it
            "schedule": [[int(e.seq_len), int(e.batch_size), int(e.steps)] for e in epochs] or None,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A resumed run keeps counting from the checkpoint's longest input."""
        from genomics.models.loading import RECORD_KEY

        self._longest_train_input = (checkpoint.get(RECORD_KEY) or {}).get("longest_train_input") or 0

    def _step(self, batch: dict[str, Any], split: str) -> Any:
        """The loss of ``batch``, its metrics logged under ``split`` (train, val or test)."""
        raise NotImplementedError

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Any:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "test")

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

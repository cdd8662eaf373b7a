"""Train a torchvision detector (Faster R-CNN, RetinaNet, FCOS) on a longseq backbone with Lightning.

Default: ``longseq_vit_tiny`` + simple feature pyramid + FPN + Faster R-CNN on the
scattered-digits detection set at 1024 x 1024 (generated offline, cached).

    python scripts/train_detector.py                                        # Faster R-CNN, 1024², 1 epoch
    python scripts/train_detector.py --backbone longseq_swin_tiny --detector retinanet --epochs 5
    python scripts/train_detector.py --data path/to/data.yaml --img-size 800
    python scripts/train_detector.py --data path/to/VOCdevkit/VOC2012 --img-size 800 --time-minutes 60
    python scripts/train_detector.py --img-size 2048 --batch-size 2 --max-steps 3   # memory check at 2048²
    python scripts/train_detector.py --img-size 64 --n-train 4 --n-val 2 --max-steps 2   # smoke
    python scripts/train_detector.py --ckpt-path last     # resume the run in --out from its last.ckpt

``--data`` takes a YOLO ``data.yaml`` (or a folder holding one) or a Pascal VOC folder
(``Annotations/``, ``JPEGImages/``, optional ``ImageSets/Main/{train,val}.txt``, else a
seeded split with ``--val-fraction``), which is converted once into ``<out>/data``.
COCO json is not read. Images are not augmented (no flips), on any data set.

Installed, the command is ``longseq-train-detector``. ``--config`` reads a YAML with the
sections ``model`` (``name``: a timm backbone, plus ``MultiScaleBackbone``'s arguments),
``data`` (``YoloDataModule``'s: ``data_yaml: null`` generates scattered digits; plus
``val_fraction``), ``task`` (``DetectionTask``'s; its ``image_size`` is ``data.img_size``),
``checkpoint`` (``every_steps``, ``every_minutes``: how often ``last.ckpt`` is refreshed)
and ``trainer`` (any ``lightning.Trainer`` argument, plus ``seed`` and ``time_minutes``);
default configs/detection/train_detector.yaml. Flags override the YAML,
``--print-config`` prints the merged config and exits.

The run ends at ``--epochs``, ``--max-steps`` or ``--time-minutes``, whichever comes
first. Without ``--epochs`` (``trainer.max_epochs: null``) it trains one epoch, or, with
``--time-minutes``, as many as the time allows: the clock ends the run, as in
``train_yolo_baseline``. The learning rate follows a cosine down to zero at the end of the
planned steps or of the time, whichever comes first. The final weights are validated once
(at the last epoch's end, or after training when it stopped inside an epoch). The summary
gives the epochs done as a fraction (training batches / batches per epoch), training
minutes without validation, the best validation's mAP50 and mAP50-95 beside the last
one's, the trained model's parameters, training images/s, peak memory, the bad labels
left out (whole files and single boxes) and the checkpoints: ``last.ckpt`` (final weights)
and ``best.ckpt`` (best mAP50-95). Both hold the backbone's keywords and the class names,
and reload alone: ``DetectionTask.load_from_checkpoint(path)``.

``last.ckpt`` in ``--out`` is refreshed every 5% of the planned steps and every 10 minutes of
training (with ``--time-minutes``, every 5% of it when that is shorter), written to a
temporary file and moved into place; ``--ckpt-path last`` resumes the run exactly where it
stopped (same steps, learning rate, data order and validations). Flags, the data and
checkpoint files are checked before any model is built: a problem is one line on stderr and
exit status 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from longseq.training.config import (
    Section, add_cadence_arguments, add_config_arguments, config_file, dump_config, parse_set_overrides,
    refused_values, trainer_accepts,
)
from longseq.training.errors import UserError, check_positive, run_cli

from vision.cli._shared import Config, build_config, find_config, signature_keys, timm_name_error, use_all_cores
from vision.cli.checkpoints import read_training_checkpoint, resolve_ckpt_path

__all__ = ["DEFAULTS", "PROG", "build_config_from_args", "check_flags", "check_inputs", "epoch_limit",
           "format_summary", "main", "parser", "run", "sections"]

PROG = "longseq-train-detector"

#: The bare run; configs/detection/train_detector.yaml restates it.
DEFAULTS: Config = {
    "model": {"name": "longseq_vit_tiny", "channels": [128, 128, 128]},
    "data": {"data_yaml": None, "val_fraction": 0.2, "img_size": 1024, "n_train": 512, "n_val": 64, "seed": 0,
             "batch_size": 2, "num_workers": 2},
    "task": {"detector": "fasterrcnn", "fpn_channels": 128, "lr": 1e-4, "weight_decay": 0.05},
    "checkpoint": {"every_steps": None, "every_minutes": 10.0},
    "trainer": {"seed": 0, "max_epochs": None, "max_steps": -1, "time_minutes": None, "precision": "32-true",
                "devices": "auto", "default_root_dir": "runs/detector", "log_every_n_steps": 10},
}


def sections(model_name: str) -> list[Section]:
    """``model``: ``name`` and ``MultiScaleBackbone``'s arguments; ``data``: the data module's
    plus ``val_fraction``; ``task``: ``DetectionTask``'s but the backbone, class count and
    image size (set from the other sections); ``checkpoint``: the ``last.ckpt`` cadence;
    ``trainer``: Lightning's plus ``seed`` and ``time_minutes``."""
    from vision.detection.lightning import DetectionTask, YoloDataModule
    from vision.detection.pyramid import MultiScaleBackbone

    return [
        Section("model", ("name", *signature_keys(MultiScaleBackbone, exclude=("model",)))),
        Section("data", (YoloDataModule, "val_fraction")),
        Section("task", signature_keys(DetectionTask, exclude=("backbone", "num_classes", "image_size"))),
        Section("checkpoint", ("every_steps", "every_minutes")),
        Section("trainer", trainer_accepts("seed", "time_minutes")),
    ]


def parser() -> argparse.ArgumentParser:
    from vision.detection.torchvision_detectors import DETECTORS

    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
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
    p.add_argument("--epochs", type=int, help="trainer.max_epochs (default: 1, or no limit with --time-minutes)")
    p.add_argument("--max-steps", type=int, help="trainer.max_steps (-1: none)")
    p.add_argument("--time-minutes", type=float, help="trainer.time_minutes: training time limit (Lightning's "
                   "max_time; validation included); without --epochs the run trains until it is spent")
    p.add_argument("--batch-size", type=int, help="data.batch_size")
    p.add_argument("--lr", type=float, help="task.lr")
    p.add_argument("--precision", help="trainer.precision")
    p.add_argument("--devices", help="trainer.devices (int or 'auto')")
    p.add_argument("--workers", type=int, help="data.num_workers")
    p.add_argument("--out", help="trainer.default_root_dir: logs and checkpoints")
    p.add_argument("--ckpt-path", help="resume from this checkpoint (weights, optimizer, schedule, data order); "
                   "'last': the newest last*.ckpt in --out")
    add_cadence_arguments(p)
    p.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    return p


def check_flags(args: argparse.Namespace) -> None:
    """Numeric flags out of range, as :class:`UserError` naming the flag."""
    check_positive({"--img-size": args.img_size, "--batch-size": args.batch_size, "--epochs": args.epochs,
                    "--n-train": args.n_train, "--n-val": args.n_val, "--fpn-channels": args.fpn_channels,
                    "--ckpt-every-steps": args.ckpt_every_steps}, what="must be a positive whole number")
    check_positive({"--workers": args.workers}, minimum=0, what="must be >= 0")
    if args.channels is not None:
        check_positive({"--channels": min(args.channels)}, what="must be positive whole numbers")
    if args.max_steps is not None and (args.max_steps == 0 or args.max_steps < -1):
        raise UserError(f"--max-steps: must be a positive whole number (or -1: no limit), got {args.max_steps}")
    for flag, value in (("--time-minutes", args.time_minutes), ("--ckpt-every-minutes", args.ckpt_every_minutes),
                        ("--lr", args.lr)):
        if value is not None and not value > 0:
            raise UserError(f"{flag}: must be > 0, got {value:g}")
    if args.val_fraction is not None and not 0.0 < args.val_fraction < 1.0:
        raise UserError(f"--val-fraction: must be in (0, 1), got {args.val_fraction:g}")


def check_inputs(args: argparse.Namespace, cfg: Config) -> None:
    """Every input the run reads, before any work: the data path and the checkpoint file."""
    data = cfg["data"].get("data_yaml")
    if data and not Path(data).expanduser().exists():
        raise UserError(f"{'--data' if args.data else 'data.data_yaml'}: {data}: no such file or folder")
    if args.ckpt_path:
        root = Path(cfg["trainer"].get("default_root_dir") or "runs/detector")
        read_training_checkpoint(resolve_ckpt_path(args.ckpt_path, root, out_flag="--out"), "--ckpt-path", PROG)


def build_config_from_args(args: argparse.Namespace) -> Config:
    """The run's config: defaults, the ``--config`` YAML, then the flags given."""
    devices = int(args.devices) if args.devices is not None and args.devices.isdigit() else args.devices
    overrides = {
        "model": {"name": args.backbone, "channels": args.channels},
        "data": {"data_yaml": args.data, "val_fraction": args.val_fraction, "img_size": args.img_size,
                 "n_train": args.n_train, "n_val": args.n_val, "seed": args.seed, "batch_size": args.batch_size,
                 "num_workers": args.workers},
        "task": {"detector": args.detector, "fpn_channels": args.fpn_channels, "lr": args.lr},
        "checkpoint": {"every_steps": args.ckpt_every_steps, "every_minutes": args.ckpt_every_minutes},
        "trainer": {"seed": args.seed, "max_epochs": args.epochs, "max_steps": args.max_steps,
                    "time_minutes": args.time_minutes, "precision": args.precision, "devices": devices,
                    "default_root_dir": args.out},
    }
    return build_config(find_config(args.config), sections, DEFAULTS, overrides, name_error=timm_name_error,
                        sets=parse_set_overrides(getattr(args, "set_values", None) or []))


def epoch_limit(max_epochs: int | None, time_minutes: float | None) -> int:
    """Lightning's ``max_epochs`` for ``trainer.max_epochs``: as set, or when null 1 without a
    time limit and -1 (none) with one, so the clock ends a timed run instead of a silent
    epoch cap (``train_yolo_baseline`` does the same: ultralytics re-estimates its epochs
    from the clock)."""
    if max_epochs is not None:
        return int(max_epochs)
    return -1 if time_minutes else 1


def run(cfg: Config, ckpt_path: str | None = None, data_flag: str = "data.data_yaml") -> dict[str, Any]:
    """Train and validate as ``cfg`` says, keeping ``<default_root_dir>/last.ckpt`` current
    (and ``best.ckpt``); returns the summary (see :func:`format_summary`). ``ckpt_path``
    resumes a run (``"last"``: the newest ``last*.ckpt`` there). Data that cannot be read is a
    :class:`UserError` starting with ``data_flag``."""
    import lightning as L

    import vision  # noqa: F401  (registers the longseq backbones with timm)
    from longseq.hardware import peak_memory_gb
    from longseq.training.callbacks import Throughput
    from longseq.training.checkpointing import CheckpointCadence, PeriodicCheckpoint
    from longseq.training.console import lightning_through_root
    from longseq.training.random_state import RandomStateCheckpoint
    from vision.detection.lightning import DetectionTask, YoloDataModule
    from vision.detection.progress import RunProgress
    from vision.detection.pyramid import MultiScaleBackbone
    from vision.detection.voc_folder import import_report, resolve_data

    lightning_through_root()

    trainer_kwargs = dict(cfg["trainer"])
    L.seed_everything(trainer_kwargs.pop("seed", 0))
    extra_callbacks = list(trainer_kwargs.pop("callbacks", None) or [])
    time_minutes = trainer_kwargs.pop("time_minutes", None)
    trainer_kwargs["max_epochs"] = epoch_limit(trainer_kwargs.get("max_epochs"), time_minutes)
    if time_minutes:
        trainer_kwargs["max_time"] = {"seconds": round(float(time_minutes) * 60)}
    root = Path(trainer_kwargs.get("default_root_dir") or "runs/detector")
    ckpt_path = resolve_ckpt_path(ckpt_path, root, out_flag="--out")
    data = dict(cfg["data"])
    val_fraction = data.pop("val_fraction", 0.2)
    try:
        if data.get("data_yaml"):
            data["data_yaml"] = str(resolve_data(data["data_yaml"], root, val_fraction=val_fraction,
                                                 seed=data.get("seed", 0)))
        dm = YoloDataModule(**data)
        dm.prepare_data()
        dm.setup()
    except (ValueError, OSError) as exc:
        if not cfg["data"].get("data_yaml"):
            raise
        raise UserError(f"{data_flag}: {exc}") from None
    model_kwargs = dict(cfg["model"])
    name = model_kwargs.pop("name")
    spec = {"model": name, **model_kwargs}  # saved with the task: its checkpoints reload alone
    with refused_values(f"model: {name}"):
        backbone = MultiScaleBackbone(**spec)
    with refused_values("task"):
        task = DetectionTask(backbone, num_classes=dm.num_classes, image_size=dm.hparams.img_size,
                             backbone_spec=spec, class_names=dm.class_names, **cfg["task"])
    speed = Throughput(skip=1)  # the first batch pays one-off costs
    progress = RunProgress(best_checkpoint=root / "best.ckpt")
    # last.ckpt on a cadence of its own (and at the end), so a killed run loses little.
    periodic = PeriodicCheckpoint(root, CheckpointCadence(**(cfg.get("checkpoint") or {})))
    callbacks = [speed, progress, RandomStateCheckpoint(), periodic, *extra_callbacks]
    trainer = L.Trainer(**trainer_kwargs, callbacks=callbacks)
    trainer.fit(task, datamodule=dm, ckpt_path=ckpt_path, weights_only=False)
    if not progress.validated_final_weights(trainer.global_step):  # stopped inside an epoch
        trainer.validate(task, datamodule=dm, verbose=False)
    ckpt = periodic.path
    best, last = progress.best, progress.last
    nan = float("nan")
    # what a VOC import left out (recorded beside its data.yaml) and what the scan of each split dropped
    bad = import_report(dm.data_yaml).update(dm.train_set.report).update(dm.val_set.report)
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
        **bad.counts(),
    }


def format_summary(s: dict[str, Any]) -> str:
    """The summary as the command prints it."""
    from vision.detection.yolo_format import bad_labels_text

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
        + bad_labels_text(s)
    )


def _main(argv: list[str] | None) -> None:
    args = parser().parse_args(argv)
    check_flags(args)
    cfg = build_config_from_args(args)
    if args.print_config:
        print(dump_config(cfg), end="")
        return
    check_inputs(args, cfg)
    use_all_cores()
    summary = run(cfg, ckpt_path=args.ckpt_path, data_flag="--data" if args.data else "data.data_yaml")
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:  # one summary for a run on several processes
        print(format_summary(summary))


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``longseq-train-detector``). Unusable flags, files, configs and
    checkpoints print ``longseq-train-detector: error: <flag or file>: <what is wrong>`` and
    exit with status 2 (``--debug``: the traceback)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_cli(_main, argv, prog=PROG)


if __name__ == "__main__":
    main()

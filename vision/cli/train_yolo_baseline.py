"""Train an ultralytics YOLO model from its YAML on a detection set, within a time budget.

Default: stock ``yolo11n.yaml`` (built from its YAML; no pretrained weights, nothing
downloaded) on the scattered-digits detection set at 1024 x 1024 (512 train / 64 val
canvases with 3-10 digits each, generated offline and cached on first use), for 30 minutes.
The same command trains the longseq models: pass a longseq model YAML, e.g.
``--model configs/detection/longseq_vit_tiny_yolo.yaml`` (the longseq modules are always
registered with ultralytics).

    python scripts/train_yolo_baseline.py                                  # yolo11n, 1024², 30 min
    python scripts/train_yolo_baseline.py --model yolo11s.yaml --time-minutes 60
    python scripts/train_yolo_baseline.py --model configs/detection/longseq_vit_tiny_yolo.yaml
    python scripts/train_yolo_baseline.py --data path/to/data.yaml --img-size 640
    python scripts/train_yolo_baseline.py --data path/to/VOCdevkit/VOC2012 --img-size 640 --time-minutes 60
    python scripts/train_yolo_baseline.py --img-size 64 --n-train 4 --n-val 2 --epochs 1 --time-minutes 0  # smoke
    python scripts/train_yolo_baseline.py --ckpt-path last    # resume the run in runs/detection/yolo11n

``--data`` takes a YOLO ``data.yaml`` (or a folder holding one) or a Pascal VOC folder
(``Annotations/``, ``JPEGImages/``, optional ``ImageSets/Main/{train,val}.txt``, else a
seeded split with ``--val-fraction``), which is converted once into ``<run folder>/data``.
COCO json is not read. Horizontal flips (``--fliplr``) default to 0.0 on the generated digits
(a mirrored digit is another digit) and to ultralytics' 0.5 on any other data set.

The run ends when ``--time-minutes`` is spent (ultralytics re-estimates the epoch count from
the clock after every epoch, so ``--epochs`` then binds only at 1), or after ``--epochs``
with ``--time-minutes 0``.

Installed, the command is ``longseq-train-yolo``. ``--config`` reads a YAML with the sections
``model`` (``name``: an ultralytics model YAML or weights), ``data`` (``data_yaml``, or
null to generate scattered digits with the generator's arguments; ``val_fraction``) and
``trainer`` (ultralytics' train arguments, plus ``time_minutes``, ``threads`` and
``summary_json``); default configs/detection/train_yolo_baseline.yaml. Flags override the
YAML, ``--print-config`` prints the merged config and exits.

``weights/last.pt`` in the run folder is written at the end of every epoch (ultralytics) and,
in between, every 10 minutes of training, or 5% of the time budget when that is shorter
(``--ckpt-every-minutes``; ``--ckpt-every-steps`` adds a batch count); every write goes to a
temporary file, then ``os.replace``. ``--ckpt-path last`` resumes the run's ``last.pt`` (or
give a path): the interrupted epoch goes on after the batches it had trained, and the time
budget's clock continues from where it stopped (docs/detection.md, "Resuming a YOLO run").

Every epoch is validated once, during training (the final weights too); nothing is
validated again afterwards. Prints one summary and writes it as ``summary.json`` in the
run folder (``--summary-json`` to choose): epochs done as a fraction (training batches /
batches per epoch), training time without validation, the best epoch's mAP50 and
mAP50-95 (``best.pt``, the weights kept) beside the last epoch's, inference images/s,
the trained model's parameters, peak memory, the bad labels left out (``bad_labels``:
``files_dropped`` whole files, e.g. a VOC annotation without its image, and
``boxes_rejected``), and the predictions on the first validation image, which
``scripts/compare_detection.py`` draws.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

from longseq.training.cadence import CheckpointCadence
from longseq.training.config import (
    Section, add_cadence_arguments, add_config_arguments, config_file, dump_config, parse_set_overrides,
    refused_values,
)

from longseq.training.errors import UserError, check_positive, run_cli
from longseq.training.json_values import json_safe

from vision.cli._shared import Config, build_config, find_config, signature_keys

# Offline before ultralytics is imported (only inside functions here): it checks
# connectivity and settings at import.
os.environ.setdefault("YOLO_OFFLINE", "1")

PROG = "longseq-train-yolo"

__all__ = ["DEFAULTS", "PROG", "check_flags", "add_training_arguments", "build_config_from_args", "format_summary", "inference_speed", "main", "parser", "run",
           "sections", "ultralytics_train_keys"]

#: The bare run; configs/detection/train_yolo_baseline.yaml restates it (with the reasons).
DEFAULTS: Config = {
    "model": {"name": "yolo11n.yaml"},
    "data": {"data_yaml": None, "val_fraction": 0.2, "img_size": 1024, "n_train": 512, "n_val": 64, "seed": 0},
    "checkpoint": {"every_steps": None, "every_minutes": None},
    "trainer": {
        "time_minutes": 30.0, "epochs": 1000, "imgsz": None, "batch": 4, "nbs": None, "workers": 2, "device": "cpu",
        "threads": None, "project": "runs/detection", "name": None, "summary_json": None, "exist_ok": True,
        "plots": False, "fliplr": None, "amp": False, "optimizer": "AdamW", "lr0": 0.001, "warmup_epochs": 0.25,
        "seed": 0, "pretrained": False, "verbose": False,
    },
}

#: Train arguments other sections set (``time``: the budget is ``time_minutes``).
_SET_HERE = ("model", "data", "mode", "task", "cfg", "time")
#: Trainer keys the command reads itself.
TRAINER_EXTRAS = ("time_minutes", "threads", "summary_json")


def ultralytics_train_keys() -> tuple[str, ...]:
    """Every argument ultralytics' ``train`` accepts: the keys of its ``cfg/default.yaml``
    (what ``ultralytics.cfg.DEFAULT_CFG_DICT`` holds), read without importing ultralytics,
    whose import sets ``OMP_NUM_THREADS`` and may print a settings notice."""
    import yaml

    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("ultralytics is not installed: pip install 'longseq[yolo]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "cfg" / "default.yaml"
    return tuple(yaml.safe_load(path.read_text(encoding="utf-8")))


def sections(model_name: str) -> list[Section]:
    """``model``: ``name`` (and ultralytics' ``task``); ``data``: ``data_yaml``,
    ``val_fraction`` and the generator's arguments; ``trainer``: ultralytics' train
    arguments plus the extras."""
    from vision.detection.generate import make_scattered_digits_yolo

    trainer = tuple(k for k in ultralytics_train_keys() if k not in _SET_HERE) + TRAINER_EXTRAS
    return [
        Section("model", ("name", "task")),
        Section("data", ("data_yaml", "val_fraction", *signature_keys(make_scattered_digits_yolo))),
        Section("trainer", trainer),
        Section("checkpoint", ("every_steps", "every_minutes")),
    ]


def add_training_arguments(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The flags of how one run trains (budget, batch, recipe, device), all defaulting to
    None (= the config's value): ``parser()`` has them, and ``compare_detection`` lists
    and passes on the same ones."""
    p.add_argument("--time-minutes", type=float, help="trainer.time_minutes: training budget (0: epochs only)")
    p.add_argument("--epochs", type=int, help="trainer.epochs: the epoch cap; under a time budget ultralytics "
                   "re-estimates it from the clock after each epoch, so it binds only at 1 (or with --time-minutes 0)")
    p.add_argument("--batch", type=int, help="trainer.batch")
    p.add_argument("--workers", type=int, help="trainer.workers")
    p.add_argument("--device", help="trainer.device")
    p.add_argument("--threads", type=int, help="trainer.threads: torch CPU threads (default: all cores)")
    p.add_argument("--plots", action="store_true", default=None, help="trainer.plots")
    p.add_argument("--fliplr", type=float, help="trainer.fliplr: horizontal flip probability (default: 0.0 on the "
                   "generated digits, ultralytics' 0.5 on other data)")
    p.add_argument("--amp", action="store_true", default=None, help="trainer.amp: mixed precision on GPU (needs "
                   "network once)")
    p.add_argument("--optimizer", help="trainer.optimizer")
    p.add_argument("--lr0", type=float, help="trainer.lr0: initial learning rate")
    p.add_argument("--nbs", type=int, help="trainer.nbs: nominal batch size for gradient accumulation (null: "
                   "--batch, no accumulation)")
    p.add_argument("--warmup-epochs", type=float, help="trainer.warmup_epochs")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p, config_file("detection/train_yolo_baseline.yaml"))
    p.add_argument("--model", help="model.name: ultralytics model YAML name or path, or weights")
    p.add_argument("--data", help="data.data_yaml: a YOLO data.yaml, a folder holding one, or a VOC folder "
                   "(converted once into <run folder>/data); default: generated scattered digits")
    p.add_argument("--val-fraction", type=float, help="data.val_fraction: VOC images held out for validation "
                   "when the folder has no ImageSets/Main/{train,val}.txt")
    p.add_argument("--img-size", type=int, help="data.img_size and trainer.imgsz")
    p.add_argument("--n-train", type=int, help="data.n_train")
    p.add_argument("--n-val", type=int, help="data.n_val")
    p.add_argument("--seed", type=int, help="data.seed and trainer.seed")
    p.add_argument("--project", help="trainer.project")
    p.add_argument("--name", help="trainer.name (default: the model's file stem)")
    p.add_argument("--summary-json", help="trainer.summary_json (default: <run>/summary.json)")
    p.add_argument("--ckpt-path", help="resume from this weights/last.pt; 'last': the run folder's (--project, "
                   "--name)")
    add_cadence_arguments(p)
    add_training_arguments(p)
    p.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    return p


def check_flags(args: argparse.Namespace) -> None:
    """Numeric flags out of range, as :class:`UserError` naming the flag (before ultralytics is
    imported or any data generated)."""
    check_positive({"--img-size": args.img_size, "--n-train": args.n_train, "--n-val": args.n_val,
                    "--epochs": args.epochs, "--batch": args.batch, "--threads": args.threads, "--nbs": args.nbs},
                   what="must be a positive whole number")
    check_positive({"--workers": args.workers}, minimum=0, what="must be >= 0")
    check_positive({"--ckpt-every-steps": getattr(args, "ckpt_every_steps", None)},
                   what="must be a positive whole number")
    minutes = getattr(args, "ckpt_every_minutes", None)
    if minutes is not None and not minutes > 0:
        raise UserError(f"--ckpt-every-minutes: must be > 0, got {minutes:g}")
    for flag, value in (("--time-minutes", args.time_minutes), ("--warmup-epochs", args.warmup_epochs)):
        if value is not None and value < 0:
            raise UserError(f"{flag}: must be >= 0, got {value:g}")
    if args.lr0 is not None and not args.lr0 > 0:
        raise UserError(f"--lr0: must be > 0, got {args.lr0:g}")
    if args.val_fraction is not None and not 0.0 < args.val_fraction < 1.0:
        raise UserError(f"--val-fraction: must be in (0, 1), got {args.val_fraction:g}")


def build_config_from_args(args: argparse.Namespace) -> Config:
    """The run's config: defaults, the ``--config`` YAML, then the flags given."""
    overrides = {
        "checkpoint": {"every_steps": getattr(args, "ckpt_every_steps", None),
                       "every_minutes": getattr(args, "ckpt_every_minutes", None)},
        "model": {"name": args.model},
        "data": {"data_yaml": args.data, "val_fraction": args.val_fraction, "img_size": args.img_size,
                 "n_train": args.n_train, "n_val": args.n_val, "seed": args.seed},
        "trainer": {
            "imgsz": args.img_size, "seed": args.seed, "time_minutes": args.time_minutes, "epochs": args.epochs,
            "batch": args.batch, "workers": args.workers, "device": args.device, "threads": args.threads,
            "project": args.project, "name": args.name, "summary_json": args.summary_json, "plots": args.plots,
            "fliplr": args.fliplr, "amp": args.amp, "optimizer": args.optimizer, "lr0": args.lr0, "nbs": args.nbs,
            "warmup_epochs": args.warmup_epochs,
        },
    }
    return build_config(find_config(args.config), sections, DEFAULTS, overrides,
                        sets=parse_set_overrides(getattr(args, "set_values", None) or []))


def inference_speed(model: Any, images: list[Path], img_size: int, device: str, n: int = 16) -> float:
    """Images per second of ``model.predict`` at batch 1 (pre/post-processing included), after one warm-up."""
    images = images[: n + 1]
    model.predict(str(images[0]), imgsz=img_size, device=device, verbose=False)
    t0 = time.perf_counter()
    for p in images[1:] or images:
        model.predict(str(p), imgsz=img_size, device=device, verbose=False)
    return len(images[1:] or images) / (time.perf_counter() - t0)


def flip_probability(fliplr: float | None, data_yaml: str | Path) -> float:
    """``trainer.fliplr`` for a run on ``data_yaml``: as set, or when null 0.0 on the generated
    scattered digits (a mirrored digit is another digit, or none) and ultralytics' own
    default (0.5) on any other data set, where mirrored photos are as real as the originals."""
    if fliplr is not None:
        return float(fliplr)
    from vision.detection.generate import is_scattered_digits

    if is_scattered_digits(data_yaml):
        return 0.0
    from ultralytics.cfg import DEFAULT_CFG_DICT

    return float(DEFAULT_CFG_DICT["fliplr"])


def _torch_device(device: Any) -> str:
    """The torch device an ultralytics ``device`` setting trains on, for the peak-memory query."""
    return "cpu" if str(device).lower() in ("cpu", "mps", "") else "cuda"


def resume_point(ckpt_path: str | None, run_dir: Path) -> tuple[Path, dict[str, Any] | None] | None:
    """(the ``last.pt`` to resume, its resume record or None) for ``--ckpt-path`` (``last``: the
    run folder's); None without one. A file that is missing, not an ultralytics training
    checkpoint, or one whose run finished is a :class:`UserError` naming it."""
    if ckpt_path is None:
        return None
    import pickle
    import zipfile

    import torch

    from vision.integrations.ultralytics_resume import resume_record

    path = run_dir / "weights" / "last.pt" if ckpt_path == "last" else Path(ckpt_path).expanduser()
    if not path.is_file():
        where = f" (is {run_dir} the run folder? --project and --name choose it)" if ckpt_path == "last" else ""
        raise UserError(f"--ckpt-path {ckpt_path}: no checkpoint at {path}{where}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, ValueError,
            AttributeError, ModuleNotFoundError) as exc:
        raise UserError(f"--ckpt-path: {path}: not a checkpoint ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(checkpoint, dict) or "train_args" not in checkpoint:
        raise UserError(f"--ckpt-path: {path}: not an ultralytics training checkpoint (no train_args)")
    record = resume_record(checkpoint)
    epochs = (checkpoint.get("train_args") or {}).get("epochs")
    if checkpoint.get("optimizer") is None or (record and epochs and record["epoch"] >= epochs):
        raise UserError(f"--ckpt-path: {path}: the run finished (its weights hold no optimizer state to resume); "
                        f"start a new run (--model {path} starts from its weights)")
    return path, record


def run(cfg: Config, ckpt_path: str | None = None) -> dict[str, Any]:
    """Train ``model.name`` as ``cfg`` says; returns the summary (see :func:`format_summary`).
    ``ckpt_path`` resumes a run (``"last"``: the run folder's ``weights/last.pt``).

    Settings the command fills in: ``imgsz`` null is ``data.img_size``, ``nbs`` null is
    ``batch`` (one optimizer step per batch), ``name`` null is the model's file stem,
    ``fliplr`` null is :func:`flip_probability`'s choice for the data, ``time_minutes`` 0
    means no budget, and ``amp`` is off on the CPU.
    """
    import torch
    import ultralytics.utils.torch_utils as ul_torch

    from longseq.hardware import command_threads, peak_memory_gb
    from vision.detection.generate import make_scattered_digits_yolo
    from vision.detection.voc_folder import import_report, resolve_data
    from vision.detection.yolo_format import IMAGE_SUFFIXES, check_dataset, load_data_yaml, split_dirs
    from vision.integrations.ultralytics import YOLO
    from vision.integrations.ultralytics_resume import YoloCheckpointCadence, default_cadence
    from vision.integrations.ultralytics_run import YoloRunProgress, detection_trainer

    train = dict(cfg["trainer"])
    threads = train.pop("threads", None) or command_threads()
    ul_torch.NUM_THREADS = threads  # select_device() resets torch threads to this on CPU
    torch.set_num_threads(threads)

    model_kwargs = dict(cfg["model"])
    model = model_kwargs.pop("name")
    time_minutes = train.pop("time_minutes", 0) or 0
    summary_json = train.pop("summary_json", None)
    data = dict(cfg["data"])
    given = data.pop("data_yaml", None)
    val_fraction = data.pop("val_fraction", 0.2)
    train["imgsz"] = img_size = train.get("imgsz") or data.get("img_size", 640)
    train["nbs"] = train.get("nbs") or train.get("batch", 16)
    train["name"] = train.get("name") or Path(model).stem
    device = train.get("device", "cpu")
    train["amp"] = bool(train.get("amp")) and _torch_device(device) != "cpu"
    train["project"] = str(Path(train.get("project") or "runs/detection").resolve())
    run_dir = Path(train["project"]) / train["name"]
    resume = resume_point(ckpt_path, run_dir)
    if resume is not None and resume[1] is not None and time_minutes > 0:
        if resume[1].get("clock_seconds", 0.0) >= time_minutes * 60:
            raise UserError(f"--ckpt-path: {resume[0]}: the run has spent its {time_minutes:g} minutes; "
                            "raise --time-minutes to train on")
    with refused_values("checkpoint"):
        CheckpointCadence(**(cfg.get("checkpoint") or {}))  # the intervals, checked before any work

    try:
        if given:
            data_yaml = resolve_data(given, run_dir, val_fraction=val_fraction, seed=data.get("seed", 0))
        else:
            data_yaml = make_scattered_digits_yolo(**data)
        report = check_dataset(data_yaml)
    except (ValueError, OSError) as exc:
        if not given:
            raise
        raise UserError(f"data.data_yaml: {given}: {exc}") from None
    for line in report.lines():
        print(f"bad labels: {line}")
    # What a VOC import left out (logged when it converted, recorded beside its data.yaml, so a
    # reused conversion or a comparison's run counts it too) belongs to the run's bad labels.
    report = import_report(data_yaml).update(report)
    info = load_data_yaml(data_yaml)
    train["fliplr"] = flip_probability(train.get("fliplr"), data_yaml)

    yolo = YOLO(model, **model_kwargs)
    progress = YoloRunProgress().attach(yolo)
    cadence_cfg = cfg.get("checkpoint") or {}
    cadence = YoloCheckpointCadence(*default_cadence(time_minutes, cadence_cfg.get("every_steps"),
                                                     cadence_cfg.get("every_minutes")), progress).attach(yolo)
    if resume is not None:
        train["resume"] = str(resume[0])
    yolo.train(data=str(data_yaml), time=time_minutes / 60 if time_minutes > 0 else None,
               trainer=detection_trainer(cadence), **train)
    trainer = yolo.trainer
    weights = Path(trainer.best if Path(trainer.best).is_file() else trainer.last)

    best_model = YOLO(str(weights))
    params = sum(p.numel() for p in best_model.model.parameters())  # the trained model: its classes, its head
    val_images = sorted(p for p in split_dirs(info, "val")[0].iterdir()
                        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    speed = inference_speed(best_model, val_images, img_size, device)
    pred = best_model.predict(str(val_images[0]), imgsz=img_size, device=device, conf=0.25, verbose=False)[0]
    best, last = progress.best, progress.last
    nan = float("nan")
    summary = {
        "model": model,
        "params": params,
        "num_classes": len(info["names"]),
        "img_size": img_size,
        "data": str(data_yaml),
        "epochs_done": progress.epochs_done,
        "batches": progress.batches,
        "batches_per_epoch": progress.batches_per_epoch,
        "train_seconds": progress.train_seconds,
        "validation_seconds": progress.validation_seconds,
        "validations": progress.validation_runs,
        "best_epoch": best.epoch if best else nan,
        "map50": best.map50 if best else nan,
        "map50_95": best.map50_95 if best else nan,
        "last_epoch": last.epoch if last else nan,
        "last_map50": last.map50 if last else nan,
        "last_map50_95": last.map50_95 if last else nan,
        "infer_images_per_s": speed,
        **peak_memory_gb(_torch_device(device)),
        "weights": str(weights),
        "last_checkpoint": str(trainer.last),
        "checkpoint_every_minutes": cadence.every_minutes,
        "checkpoint_every_steps": cadence.every_steps,
        "mid_epoch_saves": len(cadence.saves),
        "resumed_from": str(resume[0]) if resume is not None else None,
        **report.counts(),
        "recipe": {k: train.get(k) for k in ("batch", "nbs", "optimizer", "lr0", "warmup_epochs", "fliplr")}
        | {"time_minutes": time_minutes},
        "prediction": {
            "image": str(val_images[0]),
            "boxes": pred.boxes.xyxy.tolist(),
            "classes": pred.boxes.cls.int().tolist(),
            "scores": pred.boxes.conf.tolist(),
            "names": info["names"],
        },
    }
    out = Path(summary_json) if summary_json else Path(trainer.save_dir) / "summary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(json_safe(summary), indent=1))
    summary["summary_json"] = str(out)
    return summary


def format_summary(s: dict[str, Any]) -> str:
    """The summary as the command prints it."""
    from vision.detection.yolo_format import bad_labels_text

    limit = s["recipe"].get("time_minutes") if isinstance(s.get("recipe"), dict) else None
    return (
        f"\n{s['model']}: {s['params'] / 1e6:.2f} M params ({s['num_classes']} classes) at {s['img_size']}²\n"
        f"  {s['epochs_done']:.2f} epochs ({s['batches']} batches, {s['batches_per_epoch']} per epoch) in "
        f"{s['train_seconds'] / 60:.1f} min of training" + (f" (limit {limit:g} min)" if limit else "")
        + f", {s['validations']} validation(s) in {s['validation_seconds'] / 60:.1f} min\n"
        f"  best  epoch {s['best_epoch']:.2f}: mAP50 {s['map50']:.4f}  mAP50-95 {s['map50_95']:.4f}  (weights)\n"
        f"  last  epoch {s['last_epoch']:.2f}: mAP50 {s['last_map50']:.4f}  mAP50-95 {s['last_map50_95']:.4f}\n"
        f"  inference {s['infer_images_per_s']:.2f} img/s  peak RSS {s['peak_rss_gb']:.2f} GB"
        + (f"  peak CUDA {s['peak_cuda_gb']:.2f} GB" if "peak_cuda_gb" in s else "")
        + f"\n  weights {s['weights']}" + _checkpoint_line(s) + f"\n  summary {s['summary_json']}\n  data {s['data']}"
        + bad_labels_text(s)
    )


def _checkpoint_line(s: dict[str, Any]) -> str:
    """Where last.pt is and how often it was written ('' for summaries without it)."""
    if not s.get("last_checkpoint"):
        return ""
    every = [f"every {s['checkpoint_every_minutes']:g} min"] if s.get("checkpoint_every_minutes") else []
    every += [f"every {s['checkpoint_every_steps']} batches"] if s.get("checkpoint_every_steps") else []
    line = (f"\n  resume  {s['last_checkpoint']} (each epoch's end" + "".join(f", {e}" for e in every)
            + f"; {s.get('mid_epoch_saves', 0)} mid-epoch save(s))")
    return line + (f", resumed from {s['resumed_from']}" if s.get("resumed_from") else "")


def _main(argv: list[str] | None) -> None:
    args = parser().parse_args(argv)
    check_flags(args)
    cfg = build_config_from_args(args)
    if args.print_config:
        print(dump_config(cfg), end="")
        return
    if args.data and not Path(args.data).expanduser().exists():
        raise UserError(f"--data: {args.data}: no such file or folder")
    print(format_summary(run(cfg, ckpt_path=args.ckpt_path)))


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``longseq-train-yolo``). Unusable flags, data and configs print
    ``longseq-train-yolo: error: <flag or file>: <what is wrong>`` and exit with status 2
    (``--debug``: the traceback)."""
    run_cli(_main, argv, prog=PROG)


if __name__ == "__main__":
    main()

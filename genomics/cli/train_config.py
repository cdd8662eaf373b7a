"""The config of ``longseq-train-dna``: its sections for each task, the default YAML of each
task, the trainer defaults, and which flag overrides which key.

Sections (see :mod:`longseq.training.config`), each checked against what it feeds:

* ``model``: the task's ``nn.Module`` (:class:`~genomics.models.DNALanguageModel` or
  :class:`~genomics.models.DNAClassifier`, whose ``num_classes`` comes from the data).
* ``data``: the task's data module.
* ``task``: the task's LightningModule (its ``max_steps`` defaults to the schedule's steps).
* ``schedule`` (not for classification): :func:`~genomics.data.warmup_schedule`'s arguments,
  ``seq_len`` (final window; each task's YAML sets it, see :func:`default_seq_lens`; 65,536
  in a config without it) and ``batch_size`` included, plus ``val_every`` (validate every
  this many steps of a long stage instead of once at the end).
* ``averaging``: an exponential moving average of the weights
  (:class:`~longseq.training.averaging.Averaging`): ``ema_decay`` (null: off).
* ``checkpoint``: how often ``last.ckpt`` is refreshed
  (:class:`~longseq.training.checkpointing.CheckpointCadence`): ``every_steps`` (default:
  5% of the planned steps, rounded up) and ``every_minutes`` (default 10); the flags
  ``--ckpt-every-steps`` and ``--ckpt-every-minutes`` override them.
* ``trainer``: any ``lightning.Trainer`` argument. Precedence: :data:`TRAINER_DEFAULTS` <
  the YAML < flags; ``precision``, ``max_steps``, ``max_epochs`` and the dataloader reload /
  validation interval follow the device and the length schedule unless the YAML sets them.

:func:`check_split_values` checks the split keys of the ``data`` section (``val_fraction``,
``test_fraction``) before any file is read: validation picks the best checkpoint, so a run
without a validation split is refused.
"""

from __future__ import annotations

import argparse
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from longseq.training.config import (
    ConfigError, Section, apply_overrides, config_file, find_config, parse_set_overrides, read_yaml, trainer_accepts,
    validate_config,
)

__all__ = [
    "Config", "DEFAULT_CONFIGS", "DEFAULT_SEQ_LEN", "TASKS", "TRAINER_DEFAULTS", "TaskSpec", "check_split_values",
    "default_config_path", "default_seq_lens", "flag_overrides", "load_task_config", "merged_config", "task_sections",
    "task_spec",
]

Config = dict[str, dict[str, Any]]
TASKS = ("lm", "classification", "annotation", "needle")
#: The default YAML of each task, relative to ``configs/``.
DEFAULT_CONFIGS = {"lm": "genomics/tiny.yaml", "classification": "genomics/classification.yaml",
                   "annotation": "genomics/annotation.yaml", "needle": "genomics/needle_global.yaml"}
#: ``schedule.seq_len`` of a config that does not set it.
DEFAULT_SEQ_LEN = 65536
#: The script's own trainer settings; a YAML ``trainer:`` key replaces any of them.
TRAINER_DEFAULTS: dict[str, Any] = {
    "accelerator": "auto", "devices": "auto", "strategy": "auto",
    "gradient_clip_val": 1.0,
    "num_sanity_val_steps": 0,  # validation windows are full length: a sanity pass costs a real one
    "log_every_n_steps": 5,
    "deterministic": False,
}


@dataclass(frozen=True)
class TaskSpec:
    """What a ``--task`` trains: its model, data module and LightningModule classes, its
    default YAML (relative to ``configs/``), and whether it trains by length-schedule stages."""

    model: Callable[..., Any]
    data: Callable[..., Any]
    task: Callable[..., Any]
    default_config: str
    staged: bool

    @property
    def reserved(self) -> dict[str, dict[str, str]]:
        """Keys the script sets itself, per section, with where to set them instead."""
        built = "the script builds it from the model section; remove it"
        out = {"task": {"backbone": built, "model_config": built},
               "trainer": {"logger": "the script sets it (a CSV logger under --out-dir); remove it",
                           "callbacks": "the script sets them; remove it"}}
        if "num_classes" in inspect.signature(self.model).parameters:
            out["model"] = {"num_classes": "the data module gives it; remove it"}
        if self.staged:
            out["data"] = {"seq_len": "set schedule.seq_len (or --seq-len) instead",
                           "batch_size": "set schedule.batch_size (or --batch-size) instead"}
        return out


def task_spec(task: str) -> TaskSpec:
    """The :class:`TaskSpec` of ``task`` (imports the genomics classes, which need Lightning)."""
    from genomics.data import AnnotationDataModule, GenomeWindowDataModule, NeedleDataModule
    from genomics.data import SequenceClassificationDataModule
    from genomics.models import DNAClassifier, DNALanguageModel
    from genomics.tasks import AnnotationTask, ClassificationTask, LanguageModelTask

    specs = {
        "lm": TaskSpec(DNALanguageModel, GenomeWindowDataModule, LanguageModelTask, DEFAULT_CONFIGS["lm"], True),
        "classification": TaskSpec(DNAClassifier, SequenceClassificationDataModule, ClassificationTask,
                                   DEFAULT_CONFIGS["classification"], False),
        "annotation": TaskSpec(DNAClassifier, AnnotationDataModule, AnnotationTask, DEFAULT_CONFIGS["annotation"],
                               True),
        "needle": TaskSpec(DNAClassifier, NeedleDataModule, ClassificationTask, DEFAULT_CONFIGS["needle"], True),
    }
    if task not in specs:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return specs[task]


def default_config_path(task: str) -> Path:
    """The shipped default YAML of ``task`` (``configs/genomics/...``)."""
    return config_file(task_spec(task).default_config)


def default_seq_lens() -> dict[str, int]:
    """``schedule.seq_len`` of each staged task's default YAML (the final training window
    when ``--seq-len`` is not given), read from the files themselves, without importing the
    task classes (``--help`` shows them)."""
    import yaml

    out = {}
    for task, relative in DEFAULT_CONFIGS.items():
        schedule = (yaml.safe_load(config_file(relative).read_text()) or {}).get("schedule")
        if schedule is not None:
            out[task] = int(schedule.get("seq_len") or DEFAULT_SEQ_LEN)
    return out


def task_sections(task: str) -> list[Section]:
    """The config sections of ``task``, each with the signatures it is checked against."""
    from longseq.training.averaging import Averaging
    from longseq.training.checkpointing import CheckpointCadence

    from genomics.data import warmup_schedule

    spec = task_spec(task)
    sections = [Section("model", (spec.model,)), Section("data", (spec.data,)), Section("task", (spec.task,))]
    if spec.staged:
        sections.append(Section("schedule", (warmup_schedule, "val_every")))
    return [*sections, Section("averaging", (Averaging,)), Section("checkpoint", (CheckpointCadence,)),
            Section("trainer", trainer_accepts())]


def load_task_config(path: str | Path, task: str) -> Config:
    """Read the YAML at ``path`` and check it against ``task``'s sections; every section is
    present in the result. Raises :class:`ConfigError` starting with ``<file>:<line>:``."""
    path = find_config(path)
    data, lines = read_yaml(path)
    cfg = validate_config(data, task_sections(task), source=str(path), lines=lines)
    for section, keys in task_spec(task).reserved.items():
        for key, instead in keys.items():
            if key in cfg.get(section, {}):
                line = lines.get((section, key))
                where = f"{path}:{line}" if line else str(path)
                raise ConfigError(f"{where}: {section}.{key}: {instead}")
    return cfg


def flag_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """``{section: {key: value}}`` from the flags of ``longseq-train-dna`` (None = flag not
    given). A flag that does not apply to ``args.task`` is an error."""
    staged = args.task != "classification"
    classify = args.task == "classification"
    misplaced = [flag for flag, given, ok in (
        ("--fasta", args.fasta, not classify),
        ("--data", args.data, classify),
        ("--test-data", args.test_data, classify),
        ("--sequence-column", args.sequence_column, classify),
        ("--label-column", args.label_column, classify),
        ("--gff", args.gff, args.task == "annotation"),
        ("--join-records", args.join_records, args.task in ("lm", "annotation")),
        ("--no-warmup", args.no_warmup, staged),
        ("--sequence-parallel", args.sequence_parallel, args.task == "lm"),
    ) if given and not ok]
    if misplaced:
        hint = ""
        if "--data" in misplaced and not args.fasta:
            hint = f"; --task {args.task} reads its genome from --fasta"
        elif "--fasta" in misplaced and not args.data:
            hint = "; --task classification reads its labelled sequences from --data"
        raise ConfigError(f"{', '.join(misplaced)}: not used by --task {args.task}{hint}")
    if args.sequence_parallel is not None and args.sequence_parallel < 1:
        raise ConfigError(f"--sequence-parallel: processes per window, >= 1; got {args.sequence_parallel}")
    trainer = {"max_time": args.max_time, "precision": args.precision, "accelerator": args.accelerator,
               "devices": args.devices, "strategy": args.strategy, "num_nodes": args.num_nodes}
    checkpoint = {"every_steps": args.ckpt_every_steps, "every_minutes": args.ckpt_every_minutes}
    if not staged:  # classification: whole sequences, no length schedule
        return {"data": {"data": args.data, "test_data": args.test_data, "sequence_column": args.sequence_column,
                         "label_column": args.label_column, "max_len": args.seq_len, "batch_size": args.batch_size,
                         "num_workers": args.num_workers},
                "task": {"max_steps": args.max_steps}, "checkpoint": checkpoint, "trainer": trainer}
    data = {"fasta": args.fasta, "num_workers": args.num_workers, "join_records": True if args.join_records else None,
            "sequence_parallel": args.sequence_parallel}
    if args.gff:
        data["gff"] = args.gff[0] if len(args.gff) == 1 else args.gff
    schedule = {"seq_len": args.seq_len, "batch_size": args.batch_size, "max_steps": args.max_steps}
    return {"data": data, "schedule": schedule, "checkpoint": checkpoint, "trainer": trainer}


def merged_config(args: argparse.Namespace) -> tuple[Config, Path]:
    """(the config ``longseq-train-dna`` runs with, the YAML it came from): :data:`TRAINER_DEFAULTS`,
    then ``--config`` (default: the task's default YAML), then the flags."""
    path = Path(args.config) if args.config is not None else default_config_path(args.task)
    cfg = load_task_config(path, args.task)
    cfg["trainer"] = {**TRAINER_DEFAULTS, **cfg["trainer"]}
    cfg = apply_overrides(cfg, flag_overrides(args))
    sets = parse_set_overrides(getattr(args, "set_values", None) or [])
    if sets:  # --set: any key, None included; checked against the task's sections like the YAML
        for section, values in sets.items():
            cfg.setdefault(section, {}).update(values)
        cfg = validate_config(cfg, task_sections(args.task), source=f"{path} with --set")
    if args.no_warmup:  # the first stage is the last: train at the final length throughout
        cfg["schedule"]["start_len"] = cfg["schedule"].get("seq_len", DEFAULT_SEQ_LEN)
    return cfg, path


def check_split_values(cfg: Config, task: str, source: str | Path, set_keys: Iterable[str] = ()) -> None:
    """``data.val_fraction`` and ``data.test_fraction`` in range, before any file is read.

    Validation picks the best checkpoint and gives the run's scores, so the fraction held
    out must be above 0 and below 1 wherever it is used: for the genome tasks unless
    ``data.split_bed`` or ``data.val_records``/``data.test_records`` split the genome
    instead, for classification when ``--data`` has no validation split. ``set_keys`` are
    the data keys ``--set`` gave (named as ``--set data.KEY=VALUE``, others by ``source``).
    Raises :class:`~longseq.training.errors.UserError`."""
    from longseq.training.errors import UserError

    data = cfg.get("data", {})
    given = set(set_keys)

    def name(key: str) -> str:
        return f"--set data.{key}={data.get(key)}" if key in given else f"{source}: data.{key}={data.get(key)}"

    by_records = bool(data.get("split_bed") or data.get("val_records") or data.get("test_records"))
    if task in ("lm", "annotation") and by_records:
        return  # the BED or the record names decide; the fractions are not read
    val, test = data.get("val_fraction"), data.get("test_fraction")
    what = ("the share of the training rows held out for validation when --data has no validation split"
            if task == "classification" else "the share of each record held out for validation")
    for key, value in (("val_fraction", val), ("test_fraction", test)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UserError(f"{name(key)}: must be a number, got {value!r}")
    if task == "classification":
        return  # used only when --data has no validation split: the data module checks it then
    if val is not None and not 0 < val < 1:
        hint = "; for a small validation split give e.g. --set data.val_fraction=0.01" if val <= 0 else ""
        raise UserError(f"{name('val_fraction')}: must be > 0 and < 1 ({what}; validation picks the best "
                        f"checkpoint){hint}")
    if test is not None and not 0 <= test < 1:
        raise UserError(f"{name('test_fraction')}: must be >= 0 and < 1 (the share of each record held out for "
                        f"testing, after the validation share)")
    if val is not None and test and val + test >= 1:
        raise UserError(f"{name('val_fraction')}, data.test_fraction={test}: their sum must be below 1 (the rest of "
                        f"each record trains)")

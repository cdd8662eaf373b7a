"""Where a ``longseq-train-dna`` run starts: from scratch, from another run's weights
(``--init-from``), or where an interrupted run stopped (``--ckpt-path``, ``last`` for the
out-dir's newest ``last.ckpt``).

Checkpoints are read with ``torch.load(weights_only=True)``
(:func:`genomics.models.loading.read_checkpoint`) and checked against the run before the
Trainer exists: a file that is not a checkpoint, one of another task, weights of another
architecture (the first parameter names with both shapes) and, for a resume, another step
budget, length schedule or weight averaging setting are errors naming the flag and the file.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from longseq.training.errors import UserError
from longseq.training.resume import find_last_checkpoint, run_version

from genomics.models.loading import CheckpointError, CheckpointInfo, checkpoint_info, read_checkpoint

__all__ = ["StartPoint", "adopt_checkpoint_model", "check_resume_fits", "resolve_start"]

log = logging.getLogger("longseq-train-dna")


@dataclass
class StartPoint:
    """A run's start. ``path`` and ``ckpt`` (the checkpoint dict, dropped once it is checked
    and loaded) are set for ``--init-from`` (``resume`` False) and ``--ckpt-path`` (``resume``
    True); ``version`` is the run folder (``version_N`` under ``<out-dir>/<task>``) a resumed
    run logs into, when the checkpoint lies in one there."""

    path: Path | None = None
    ckpt: dict[str, Any] | None = None
    info: CheckpointInfo | None = None
    resume: bool = False
    version: int | None = None
    #: The optimizer steps the checkpoint's run had taken (0 without a checkpoint).
    global_step: int = 0
    #: For ``--init-from``: the model keys taken from the checkpoint (see :func:`adopt_checkpoint_model`),
    #: so a problem with one of them can say where it came from.
    adopted: dict[str, Any] = field(default_factory=dict)


def _read(path: Path, flag: str) -> tuple[dict[str, Any], CheckpointInfo]:
    try:
        ckpt = read_checkpoint(path)
        return ckpt, checkpoint_info(ckpt, path)
    except CheckpointError as exc:
        raise CheckpointError(f"{flag} {exc}") from None


def resolve_start(args: argparse.Namespace) -> StartPoint:
    """The :class:`StartPoint` of the command line (checkpoints read and their task checked)."""
    from genomics.models.transfer import check_init_task

    if args.init_from and args.ckpt_path:
        raise UserError("--init-from, --ckpt-path: exclude each other (weights only vs a full resume)")
    if args.init_from:
        path = Path(args.init_from)
        ckpt, info = _read(path, "--init-from")
        check_init_task(info, args.task)
        return StartPoint(path, ckpt, info, global_step=int(ckpt.get("global_step", 0)))
    if not args.ckpt_path:
        return StartPoint()
    root = Path(args.out_dir) / args.task
    path = find_last_checkpoint(root) if args.ckpt_path == "last" else Path(args.ckpt_path)
    ckpt, info = _read(path, "--ckpt-path")
    if info.task != args.task:
        raise CheckpointError(f"--ckpt-path {path}: a {info.task} checkpoint; resume it with --task {info.task}")
    found = run_version(path)
    version = found[1] if found is not None and found[0] == root.resolve() else None
    log.info("resuming %s at step %d", path, int(ckpt.get("global_step", 0)))
    return StartPoint(path, ckpt, info, resume=True, version=version, global_step=int(ckpt.get("global_step", 0)))


def adopt_checkpoint_model(cfg: dict[str, dict[str, Any]], start: StartPoint, user_keys: Iterable[str],
                           task: str) -> dict[str, dict[str, Any]]:
    """For ``--init-from``: the config with the model keys the checkpoint decides (see
    :func:`genomics.models.transfer.adopt_model_config`) taken from it; they are kept in
    ``start.adopted``."""
    from genomics.models.transfer import adopt_model_config

    if start.info is None or start.resume:
        return cfg
    model, taken = adopt_model_config(cfg["model"], start.info, user_keys, task)
    start.adopted = dict(taken)
    if taken:
        log.info("--init-from %s: model keys taken from the checkpoint: %s", start.path,
                 ", ".join(f"{k}={v!r}" for k, v in taken.items()))
    return {**cfg, "model": model}


def _schedule_text(schedule: Iterable[Iterable[int]]) -> str:
    return ", ".join("{} x {} x {:,}".format(*(int(v) for v in (s[2], s[1], s[0]))) for s in schedule)


def check_resume_fits(module: Any, dm: Any, start: StartPoint, averaging: bool = False) -> None:
    """For ``--ckpt-path``: the checkpoint's weights fit ``module`` and its run planned the same
    optimizer steps and length schedule as this one, and averaged its weights (``averaging``:
    this run keeps an EMA) or not as this one does (an exact resume needs the original run's
    flags and config)."""
    from genomics.models.loading import RECORD_KEY, fit_problems, state_differences

    if not start.resume or start.ckpt is None:
        return
    problems = fit_problems(state_differences(module.state_dict(), start.ckpt["state_dict"]))
    hint = "resume with the --config and flags of the run that wrote it (its config.yaml, beside metrics.csv)"
    if problems:
        raise CheckpointError(f"--ckpt-path {start.path}: the weights do not fit this run's model; {problems}; {hint}")
    theirs = (start.ckpt.get("hyper_parameters") or {}).get("max_steps")
    ours = module.hparams.get("max_steps")
    if theirs != ours:
        raise UserError(f"--ckpt-path {start.path}: its run plans {theirs} optimizer steps, this command {ours}; "
                        f"{hint}, or start a new schedule from its weights with --init-from")
    saved = (start.ckpt.get(RECORD_KEY) or {}).get("schedule")
    planned = [[e.seq_len, e.batch_size, e.steps] for e in getattr(dm, "epochs", [])]
    if saved is not None and [list(s) for s in saved] != planned:
        raise UserError(f"--ckpt-path {start.path}: its length schedule is {_schedule_text(saved)}, this command's "
                        f"{_schedule_text(planned) or 'none'} (steps x batch x bases); {hint}")
    # Its averaged weights are its state_dict and its raw ones sit beside them: resumed without
    # averaging, training would continue from the average; with it, from no average at all.
    averaged = "current_model_state" in start.ckpt
    if averaged != averaging:
        theirs_avg, ours_avg = ("averaged", "does not") if averaged else ("did not average", "does")
        raise UserError(f"--ckpt-path {start.path}: its run {theirs_avg} the weights (averaging.ema_decay), this "
                        f"command {ours_avg}; {hint}")

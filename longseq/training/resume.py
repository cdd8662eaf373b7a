"""Resuming a run in its own folder: find its ``last.ckpt``, continue its ``metrics.csv``.

Runs are laid out as Lightning's ``CSVLogger`` lays them out::

    <out-dir>/<name>/version_N/metrics.csv
    <out-dir>/<name>/version_N/checkpoints/last.ckpt

:func:`find_last_checkpoint` picks the newest run's ``last.ckpt`` (``--ckpt-path last``);
:func:`run_version` tells which ``version_N`` a checkpoint belongs to, so the resumed run
logs into the same folder; :class:`ContinuedMetrics` keeps the metrics rows the first run
logged up to the checkpoint and lets the resumed run append after them, so the file reads
as one uninterrupted run. :func:`finished_reason` says when a checkpoint's run has already
spent the limits it would resume under, so resuming it would train nothing.
"""

from __future__ import annotations

import csv
import datetime
import logging
import re
from pathlib import Path
from typing import Any, Mapping

from longseq.training.checkpointing import LAST_NAME
from longseq.training.errors import UserError

__all__ = ["ContinuedMetrics", "find_last_checkpoint", "finished_reason", "read_metrics", "run_version",
           "time_limit_seconds"]

log = logging.getLogger(__name__)
_VERSION = re.compile(r"^version_(\d+)$")


def _versions(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _VERSION.match(p.name))]
    return sorted(found)


def find_last_checkpoint(root: str | Path, flag: str = "--ckpt-path last") -> Path:
    """``root/version_N/checkpoints/last.ckpt`` of the highest N that has one (the newest run).
    Raises :class:`~longseq.training.errors.UserError` naming ``root`` when there is none."""
    root = Path(root)
    for _, folder in reversed(_versions(root)):
        path = folder / "checkpoints" / LAST_NAME
        if path.is_file():
            return path
    raise UserError(f"{flag}: no {root}/version_*/checkpoints/{LAST_NAME} to resume from "
                    f"(is --out-dir the folder of the run, and --task its task?)")


def run_version(checkpoint: str | Path) -> tuple[Path, int] | None:
    """``(<out-dir>/<name>, N)`` when ``checkpoint`` lies in ``.../version_N/checkpoints/``, else None."""
    path = Path(checkpoint).resolve()
    folder = path.parent
    if folder.name != "checkpoints" or not (m := _VERSION.match(folder.parent.name)):
        return None
    return folder.parent.parent, int(m.group(1))


def read_metrics(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a CSV metrics file; ([], []) when it does not exist."""
    path = Path(path)
    if not path.is_file():
        return [], []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


class ContinuedMetrics:
    """The rows of a run's ``metrics.csv`` that precede a checkpoint, put back after the
    resumed run's CSV logger has started its file.

    ``ContinuedMetrics(path, before_step)`` reads the file and keeps the rows whose ``step``
    is below ``before_step`` (the checkpoint's global step: rows the first run logged after
    it are logged again by the resumed run). :meth:`restore` writes them back into the
    logger's (new, empty) file and tells its writer the header.
    """

    def __init__(self, path: str | Path, before_step: int) -> None:
        self.path = Path(path)
        self.header, rows = read_metrics(self.path)
        self.rows = [r for r in rows if _step(r) is not None and _step(r) < before_step]
        self.dropped = len(rows) - len(self.rows)

    def restore(self, logger: Any) -> None:
        """Write the kept rows into ``logger``'s metrics file (a Lightning ``CSVLogger``,
        after its log folder exists) and register their columns with its writer."""
        if not self.rows:
            return
        writer = logger.experiment  # creating it deletes an old metrics.csv: write after
        target = Path(writer.metrics_file_path)
        header = sorted(set(self.header) | set(writer.metrics_keys))
        with open(target, "w", newline="") as fh:
            out = csv.DictWriter(fh, fieldnames=header)
            out.writeheader()
            out.writerows(self.rows)
        writer.metrics_keys = header
        log.info("kept %d metrics rows of %s logged before the checkpoint (%d after it dropped)", len(self.rows),
                 self.path, self.dropped)


def _step(row: dict[str, str]) -> int | None:
    try:
        return int(float(row.get("step") or ""))
    except ValueError:
        return None


def time_limit_seconds(max_time: Any) -> float | None:
    """Seconds of a ``Trainer(max_time=...)`` value: ``"DD:HH:MM:SS"``, a dict of
    ``datetime.timedelta`` keywords, a timedelta or None."""
    if max_time is None or max_time == {}:
        return None
    if isinstance(max_time, datetime.timedelta):
        return max_time.total_seconds()
    if isinstance(max_time, Mapping):
        return datetime.timedelta(**max_time).total_seconds()
    days, hours, minutes, seconds = (int(x) for x in str(max_time).split(":"))
    return datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds).total_seconds()


def finished_reason(checkpoint: Mapping[str, Any], max_epochs: int | None = None, max_steps: int | None = None,
                    max_time: Any = None) -> str | None:
    """Why the Lightning run saved in ``checkpoint`` has nothing left to train under these
    ``Trainer`` limits (``"it ran 6 of trainer.max_epochs 6 epochs"``), or None when it has.

    Lightning resumes such a run, stops at once and reports nothing; a command that checks
    first can tell the user which limit to raise."""
    step = int(checkpoint.get("global_step") or 0)
    if max_steps is not None and max_steps >= 0 and step >= max_steps:
        return f"it ran {step} of trainer.max_steps {max_steps} optimizer steps"
    progress = (((checkpoint.get("loops") or {}).get("fit_loop") or {}).get("epoch_progress") or {}).get("current")
    epochs = int(progress["completed"]) if progress else int(checkpoint.get("epoch") or 0)
    if max_epochs is not None and max_epochs >= 0 and epochs >= max_epochs:
        return f"it ran {epochs} of trainer.max_epochs {max_epochs} epochs"
    limit = time_limit_seconds(max_time)
    timer = next((v for k, v in (checkpoint.get("callbacks") or {}).items() if str(k).startswith("Timer")), None)
    if limit is not None and timer:
        spent = float((timer.get("time_elapsed") or {}).get("train") or 0.0)
        if spent >= limit:
            return f"its training took {spent / 60:.1f} of trainer.max_time's {limit / 60:g} minutes"
    return None

"""The ``--ckpt-path`` and ``--init-from`` files of the Lightning vision commands.

A run keeps ``last.ckpt`` current in its checkpoint folder (``longseq.training.checkpointing``);
``--ckpt-path last`` names the newest ``last*.ckpt`` there. Every file is opened and checked
before any model is built, so a wrong path or a file that is not a checkpoint is one line
naming the flag and the file (:class:`~longseq.training.errors.UserError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from longseq.training.errors import UserError

__all__ = ["CheckpointPathError", "read_training_checkpoint", "resolve_ckpt_path"]


class CheckpointPathError(UserError, FileNotFoundError):
    """A ``--ckpt-path`` that names no checkpoint file."""


def resolve_ckpt_path(ckpt_path: str | None, folder: Path, flag: str = "--ckpt-path",
                      out_flag: str = "--out-dir") -> str | None:
    """``ckpt_path``, with ``last`` read as the newest ``last*.ckpt`` in ``folder`` (the one the
    command keeps current); other values must name an existing file. Raises
    :class:`CheckpointPathError`."""
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        found = sorted(Path(folder).glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise CheckpointPathError(f"{flag} last: no last*.ckpt in {folder} to resume "
                                      f"(is {out_flag} the folder of the run?)")
        return str(found[-1])
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise CheckpointPathError(f"{flag}: no checkpoint at {path}")
    return str(path)


def read_training_checkpoint(path: str | Path, flag: str, prog: str) -> dict[str, Any]:
    """A Lightning checkpoint written by ``prog``, or :class:`UserError` naming ``flag`` and the file.

    Loaded with ``weights_only=False``: a resumed run restores the optimizer and callback
    states Lightning pickles; use it on checkpoints you wrote yourself."""
    import pickle
    import zipfile

    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointPathError(f"{flag}: {path}: no checkpoint there (no such file)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, ValueError,
            AttributeError, ModuleNotFoundError) as exc:
        raise UserError(f"{flag}: {path}: not a checkpoint ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserError(f"{flag}: {path}: not a training checkpoint of {prog} (no state_dict)")
    return checkpoint

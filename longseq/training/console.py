"""Log records of the training scripts on stderr, as ``WARNING name: message`` lines.

:func:`log_to_stderr` gives the root logger one handler that writes to whatever
``sys.stderr`` is when a record is emitted (not the stream of the moment it was installed),
so a script's ``main`` can be called several times in one process, as tests do.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["log_to_stderr"]


class _CurrentStderr(logging.StreamHandler):
    """A stream handler bound to ``sys.stderr`` at emit time."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def log_to_stderr(level: int = logging.WARNING, fmt: str = "%(levelname)s %(name)s: %(message)s") -> None:
    """Show records of ``level`` and above on stderr (once per process; later calls only
    change the level)."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _CurrentStderr)), None)
    if handler is None:
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter(fmt))
        root.addHandler(handler)
    handler.setLevel(level)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)

"""Log records of the training scripts on stderr, as ``WARNING name: message`` lines.

:func:`log_to_stderr` gives the root logger one handler that writes to whatever
``sys.stderr`` is when a record is emitted (not the stream of the moment it was installed),
so a script's ``main`` can be called several times in one process, as tests do.
:func:`lightning_through_root` keeps Lightning's own handler from printing each of its
records a second time.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["lightning_through_root", "log_to_stderr"]


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


def lightning_through_root() -> None:
    """Lightning's records through the root logger's handlers only (call after importing
    lightning). Lightning gives its ``lightning`` logger a stream handler of its own and lets
    records propagate, so under a root handler every line would be printed twice."""
    if not logging.getLogger().handlers:
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric", "pytorch_lightning"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
                logger.propagate = True  # a logger that kept its records to itself now hands them on

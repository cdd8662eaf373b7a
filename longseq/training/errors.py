"""User errors of the training scripts: one line on stderr and exit status 2, no traceback.

A script raises :class:`UserError` (or another known error type) for a problem the user can
fix: a missing file, a bad flag value, a config key of the wrong kind. :func:`run_cli` runs
the script's ``main`` and turns such an error into ``<prog>: error: <file or flag>: <what is
wrong>`` on stderr and exit status 2, before anything else is printed about it; with
``--debug`` on the command line the error propagates with its traceback instead.

    def main(argv=None):
        return run_cli(run, argv, prog="longseq-train-dna", known=(DataInputError,))
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable, Sequence

__all__ = ["EXIT_USER_ERROR", "UserError", "check_positive", "known_errors", "run_cli"]

log = logging.getLogger(__name__)

#: Exit status of a user error (as ``argparse`` uses for a bad command line).
EXIT_USER_ERROR = 2


class UserError(ValueError):
    """A problem with the user's input; the message starts with the file or flag at fault."""


def known_errors(*extra: type[BaseException]) -> tuple[type[BaseException], ...]:
    """:class:`UserError` and the config errors of :mod:`longseq.training.config`, plus ``extra``."""
    from longseq.training.config import ConfigError

    return (UserError, ConfigError, *extra)


def check_positive(values: dict[str, int | float | None], *, minimum: int | float = 1,
                   what: str = "must be >= 1") -> None:
    """Raise :class:`UserError` for the first ``{flag: value}`` given (not None) below ``minimum``."""
    for flag, value in values.items():
        if value is not None and value < minimum:
            raise UserError(f"{flag}: {what}, got {value}")


def run_cli(main_fn: Callable[[list[str] | None], Any], argv: Sequence[str] | None = None, debug: bool | None = None,
            *, prog: str | None = None, known: Sequence[type[BaseException]] = ()) -> Any:
    """``main_fn(argv)``; a :func:`known_errors` exception (``known`` adds types) is printed as
    one line, ``<prog>: error: <message>``, on stderr and ends the process with status 2.

    ``debug`` (default: ``--debug`` is in ``argv``) lets the error propagate with its traceback.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if debug is None:
        debug = "--debug" in args
    errors = known_errors(*known)
    try:
        return main_fn(args)
    except errors as exc:
        if debug:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__  # one line, whatever the message holds
        print(f"{prog}: error: {message}" if prog else f"error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USER_ERROR) from None

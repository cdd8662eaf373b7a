"""The :class:`Pattern` base class and argument checks shared by every pattern module.

Kept apart from :mod:`longseq.patterns` so that pattern families defined in their own
modules (such as :mod:`longseq.patterns_lsh`) can subclass it while
:mod:`longseq.patterns` imports them eagerly, without an import cycle.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import Tensor

__all__ = ["Pattern", "ArgumentTypeError"]

# torch.Generator.manual_seed accepts seeds in this range
_SEED_RANGE = (-(2**63), 2**64 - 1)


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a pattern field, or an argument of ``attend``).

    Also a :class:`ValueError`, so ``except ValueError`` catches every invalid argument,
    whether its type or its value is wrong.
    """


def _check_positive_int(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, torch.SymInt):  # symbolic sizes while exporting
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _int_kind(minimum: int | None) -> str:
    if minimum == 1:
        return "a positive int"
    if minimum == 0:
        return "a non-negative int"
    return "an int" if minimum is None else f"an int >= {minimum}"


def check_int(label: str, value: Any, minimum: int | None = 1, kind: str | None = None) -> int:
    """``value`` as a plain ``int`` (numpy and 0-d tensor integers accepted), at least ``minimum``.

    ``label`` names the field in the message (``"SlidingWindow.window"``). Raises
    :class:`ArgumentTypeError` for a non-integer (bools and floats included) and
    ``ValueError`` for an integer below ``minimum``. Symbolic sizes (``torch.SymInt``,
    while exporting) pass unchecked.
    """
    if isinstance(value, torch.SymInt):
        return value  # type: ignore[return-value]
    kind = kind or _int_kind(minimum)
    if isinstance(value, (bool, float, str)):  # index() would take True as 1
        raise ArgumentTypeError(f"{label} must be {kind}, got {value!r}")
    try:
        out = operator.index(value)
    except TypeError:
        raise ArgumentTypeError(f"{label} must be {kind}, got {value!r}") from None
    if isinstance(out, bool):  # a 0-d bool tensor
        raise ArgumentTypeError(f"{label} must be {kind}, got {value!r}")
    if minimum is not None and out < minimum:
        raise ValueError(f"{label} must be {kind}, got {value!r}")
    return out


def check_bool(label: str, value: Any) -> bool:
    """``value`` if it is a ``bool``; :class:`ArgumentTypeError` naming ``label`` otherwise."""
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{label} must be a bool, got {value!r}")
    return value


def check_seed(label: str, value: Any, optional: bool = False) -> int | None:
    """A seed for :class:`torch.Generator` (an int in its range; None too if ``optional``)."""
    if value is None and optional:
        return None
    kind = "an int or None" if optional else "an int"
    seed = check_int(label, value, None, kind)
    if not _SEED_RANGE[0] <= seed <= _SEED_RANGE[1]:
        raise ValueError(f"{label} must be in [-2**63, 2**64 - 1], got {value!r}")
    return seed


def set_fields(obj: Any, **values: Any) -> None:
    """Store normalised field values on a frozen dataclass (from ``__post_init__``)."""
    for name, value in values.items():
        object.__setattr__(obj, name, value)


class Pattern:
    """Base class. Subclasses are frozen dataclasses and implement :meth:`allowed`.

    How a pattern is computed is not its concern: the kernels turn it into a tiling
    (:func:`longseq.kernels.plan.tiling_for`) or run an implementation registered for
    its type (:func:`longseq.kernels.registry.register_attention`). A pattern defined
    outside longseq may still provide its own ``tiling(L, device)`` or
    ``attend(q, k, v, *, key_mask, bias, dropout_p, scale)`` method; those take precedence.
    """

    causal: bool = False
    #: Whether :func:`longseq.attend` may be called with ``Hkv != H`` for this pattern.
    supports_gqa: bool = True

    def allowed(self, i: Tensor, j: Tensor) -> Tensor:
        """Boolean rule on broadcastable integer tensors of query and key indices."""
        raise NotImplementedError

    def dense_mask(self, L: int, device: torch.device | str | None = None) -> Tensor:
        """``(L, L)`` bool mask, True = may attend. For tests and small inputs only."""
        _check_positive_int("L", L)
        idx = torch.arange(L, device=device)
        return self.allowed(idx[:, None], idx[None, :])

    def check_length(self, L: int) -> None:
        """Raise ``ValueError`` when the pattern cannot serve a sequence of length ``L``."""
